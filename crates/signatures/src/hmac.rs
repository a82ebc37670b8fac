//! A configurable HMAC verifier for providers without a dedicated module.
//!
//! Configure the hash, the signature encoding, the header that carries the signature (with an
//! optional prefix such as `sha256=`), and a template for the signed content built from `{body}`,
//! `{timestamp}` and `{id}` (`{{` and `}}` are literal braces). With a timestamp header, the
//! timestamp must be unix seconds within an inclusive window in both directions, and its **raw
//! header string** is what `{timestamp}` signs (as Slack and Zoom do).
//!
//! ```
//! use switchboard_signatures::hmac::{Encoding, GenericHmac, GenericHmacConfig};
//! use switchboard_signatures::{HmacAlgorithm, header_list};
//!
//! // Zoom: `x-zm-signature: v0=<hex>` over `v0:{timestamp}:{body}`.
//! let zoom = GenericHmac::new(GenericHmacConfig {
//!     algorithm: HmacAlgorithm::Sha256,
//!     encoding: Encoding::Hex,
//!     signature_header: "x-zm-signature".into(),
//!     prefix: Some("v0=".into()),
//!     template: "v0:{timestamp}:{body}".into(),
//!     timestamp_header: Some("x-zm-request-timestamp".into()),
//!     id_header: None,
//!     tolerance_secs: Some(300),
//! })?;
//! let headers = zoom.sign(b"secret", b"{}", 1_700_000_000, "");
//! let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
//! zoom.verify(&["secret"], &header_list(&pairs), b"{}", 1_700_000_000)?;
//! # Ok::<(), switchboard_signatures::SignatureError>(())
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::SignatureError;
use crate::common::{
    HeaderLookup, HmacAlgorithm, check_secrets, check_window, decode_hex, hex_encode,
    timestamp_from_header,
};

/// The default window, in seconds, when a timestamp header is configured without a tolerance.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// How the MAC is written in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Encoding {
    /// Hex. Lowercase is produced; either case is accepted.
    #[default]
    Hex,
    /// Standard base64 with padding.
    Base64,
}

/// The configuration of a [`GenericHmac`], as written by an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericHmacConfig {
    /// The hash under the HMAC.
    pub algorithm: HmacAlgorithm,
    /// How the MAC is encoded in the signature header.
    pub encoding: Encoding,
    /// The header carrying the signature (any case; matched case-insensitively).
    pub signature_header: String,
    /// A literal prefix before the encoded MAC, such as `sha256=` or `v0=`.
    pub prefix: Option<String>,
    /// The signed content, with `{body}` (required), `{timestamp}` and `{id}` placeholders.
    pub template: String,
    /// The header carrying unix seconds; required if the template uses `{timestamp}`.
    pub timestamp_header: Option<String>,
    /// The header carrying a message id; required if the template uses `{id}`.
    pub id_header: Option<String>,
    /// The inclusive window in seconds, both directions; needs `timestamp_header`. When a
    /// timestamp header is set and this is `None`, [`DEFAULT_TOLERANCE_SECS`] applies.
    pub tolerance_secs: Option<i64>,
}

impl Default for GenericHmacConfig {
    fn default() -> Self {
        Self {
            algorithm: HmacAlgorithm::Sha256,
            encoding: Encoding::Hex,
            signature_header: String::new(),
            prefix: None,
            template: "{body}".to_owned(),
            timestamp_header: None,
            id_header: None,
            tolerance_secs: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Vec<u8>),
    Body,
    Timestamp,
    Id,
}

/// A validated, ready-to-use generic HMAC verifier and signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericHmac {
    algorithm: HmacAlgorithm,
    encoding: Encoding,
    signature_header: String,
    prefix: String,
    template: Vec<Segment>,
    timestamp_header: Option<String>,
    id_header: Option<String>,
    tolerance_secs: i64,
}

// Role names used in errors: header names here are configured at run time, while
// `SignatureError` carries `&'static str`.
const SIGNATURE_ROLE: &str = "configured signature header";
const TIMESTAMP_ROLE: &str = "configured timestamp header";
const ID_ROLE: &str = "configured id header";

impl GenericHmac {
    /// Validates `config`: non-empty header names, a template that parses and contains `{body}`,
    /// and a header for every placeholder used.
    pub fn new(config: GenericHmacConfig) -> Result<Self, SignatureError> {
        let header_name = |name: String| -> Result<String, SignatureError> {
            let name = name.trim().to_ascii_lowercase();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
            {
                return Err(SignatureError::InvalidConfig("invalid header name"));
            }
            Ok(name)
        };
        let signature_header = header_name(config.signature_header)?;
        let timestamp_header = config.timestamp_header.map(header_name).transpose()?;
        let id_header = config.id_header.map(header_name).transpose()?;
        let template = parse_template(&config.template)?;
        if !template.contains(&Segment::Body) {
            return Err(SignatureError::InvalidConfig(
                "template must contain `{body}`",
            ));
        }
        if template.contains(&Segment::Timestamp) && timestamp_header.is_none() {
            return Err(SignatureError::InvalidConfig(
                "template uses `{timestamp}` but no timestamp header is configured",
            ));
        }
        if template.contains(&Segment::Id) && id_header.is_none() {
            return Err(SignatureError::InvalidConfig(
                "template uses `{id}` but no id header is configured",
            ));
        }
        if config.tolerance_secs.is_some() && timestamp_header.is_none() {
            return Err(SignatureError::InvalidConfig(
                "a tolerance needs a timestamp header",
            ));
        }
        let tolerance_secs = config.tolerance_secs.unwrap_or(DEFAULT_TOLERANCE_SECS);
        if tolerance_secs < 0 {
            return Err(SignatureError::InvalidConfig(
                "tolerance must not be negative",
            ));
        }
        Ok(Self {
            algorithm: config.algorithm,
            encoding: config.encoding,
            signature_header,
            prefix: config.prefix.unwrap_or_default(),
            template,
            timestamp_header,
            id_header,
            tolerance_secs,
        })
    }

    /// The signature header name (lowercase).
    pub fn signature_header(&self) -> &str {
        &self.signature_header
    }

    /// The timestamp header name (lowercase), if configured.
    pub fn timestamp_header(&self) -> Option<&str> {
        self.timestamp_header.as_deref()
    }

    /// The id header name (lowercase), if configured.
    pub fn id_header(&self) -> Option<&str> {
        self.id_header.as_deref()
    }

    fn parts<'a>(&'a self, body: &'a [u8], timestamp: &'a str, id: &'a str) -> Vec<&'a [u8]> {
        self.template
            .iter()
            .map(|segment| match segment {
                Segment::Literal(bytes) => bytes.as_slice(),
                Segment::Body => body,
                Segment::Timestamp => timestamp.as_bytes(),
                Segment::Id => id.as_bytes(),
            })
            .collect()
    }

    /// The signature header value (prefix + encoded MAC) for `body`, where `timestamp` and `id`
    /// are the exact header strings substituted into the template (ignored if unused).
    pub fn signature(&self, secret: &[u8], body: &[u8], timestamp: &str, id: &str) -> String {
        let tag = self
            .algorithm
            .compute(secret, &self.parts(body, timestamp, id));
        let encoded = match self.encoding {
            Encoding::Hex => hex_encode(&tag),
            Encoding::Base64 => STANDARD.encode(tag),
        };
        format!("{}{encoded}", self.prefix)
    }

    /// Signs `body` and returns the headers to send, `(lowercase name, value)`: the signature,
    /// plus the timestamp (`timestamp` in decimal) and id headers when configured.
    pub fn sign(
        &self,
        secret: &[u8],
        body: &[u8],
        timestamp: i64,
        id: &str,
    ) -> Vec<(String, String)> {
        let ts = timestamp.to_string();
        let mut headers = vec![(
            self.signature_header.clone(),
            self.signature(secret, body, &ts, id),
        )];
        if let Some(name) = &self.timestamp_header {
            headers.push((name.clone(), ts));
        }
        if let Some(name) = &self.id_header {
            headers.push((name.clone(), id.to_owned()));
        }
        headers
    }

    /// Verifies a request against any of `secrets`, reading the configured headers through
    /// `headers`, with `now` in unix seconds.
    pub fn verify<'h, S: AsRef<[u8]>>(
        &self,
        secrets: &[S],
        headers: &(impl HeaderLookup<'h> + ?Sized),
        body: &[u8],
        now: i64,
    ) -> Result<(), SignatureError> {
        check_secrets(secrets)?;
        let value = headers
            .header(&self.signature_header)
            .ok_or(SignatureError::MissingHeader(SIGNATURE_ROLE))?;
        let timestamp = match &self.timestamp_header {
            Some(name) => {
                let raw = headers
                    .header(name)
                    .ok_or(SignatureError::MissingHeader(TIMESTAMP_ROLE))?;
                let ts = timestamp_from_header(raw, TIMESTAMP_ROLE)?;
                check_window(ts, now, self.tolerance_secs)?;
                raw
            }
            None => "",
        };
        let id = match &self.id_header {
            Some(name) => headers
                .header(name)
                .ok_or(SignatureError::MissingHeader(ID_ROLE))?,
            None => "",
        };
        let encoded =
            value
                .strip_prefix(self.prefix.as_str())
                .ok_or(SignatureError::MalformedHeader {
                    header: SIGNATURE_ROLE,
                    reason: "missing the configured prefix",
                })?;
        let tag = match self.encoding {
            Encoding::Hex => decode_hex(encoded),
            Encoding::Base64 => STANDARD.decode(encoded).ok(),
        }
        .ok_or(SignatureError::MalformedHeader {
            header: SIGNATURE_ROLE,
            reason: "signature is not in the configured encoding",
        })?;
        if tag.len() != self.algorithm.output_len() {
            return Err(SignatureError::MalformedHeader {
                header: SIGNATURE_ROLE,
                reason: "signature has the wrong length",
            });
        }
        let parts = self.parts(body, timestamp, id);
        if secrets
            .iter()
            .any(|secret| self.algorithm.verify(secret.as_ref(), &parts, &tag))
        {
            Ok(())
        } else {
            Err(SignatureError::NoMatch)
        }
    }
}

fn parse_template(template: &str) -> Result<Vec<Segment>, SignatureError> {
    let mut segments = Vec::new();
    let mut literal = String::new();
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        literal.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("{{") {
            literal.push('{');
            rest = after;
            continue;
        }
        if let Some(after) = tail.strip_prefix("}}") {
            literal.push('}');
            rest = after;
            continue;
        }
        if tail.starts_with('}') {
            return Err(SignatureError::InvalidConfig(
                "unmatched `}` in template (write `}}`)",
            ));
        }
        let close = tail
            .find('}')
            .ok_or(SignatureError::InvalidConfig("unclosed `{` in template"))?;
        let segment = match &tail[1..close] {
            "body" => Segment::Body,
            "timestamp" => Segment::Timestamp,
            "id" => Segment::Id,
            _ => {
                return Err(SignatureError::InvalidConfig(
                    "unknown template placeholder (expected {body}, {timestamp} or {id})",
                ));
            }
        };
        if !literal.is_empty() {
            segments.push(Segment::Literal(std::mem::take(&mut literal).into_bytes()));
        }
        segments.push(segment);
        rest = &tail[close + 1..];
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        segments.push(Segment::Literal(literal.into_bytes()));
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parsing() {
        assert_eq!(
            parse_template("v0:{timestamp}:{body}"),
            Ok(vec![
                Segment::Literal(b"v0:".to_vec()),
                Segment::Timestamp,
                Segment::Literal(b":".to_vec()),
                Segment::Body,
            ])
        );
        assert_eq!(
            parse_template("{{{id}}}.{body}"),
            Ok(vec![
                Segment::Literal(b"{".to_vec()),
                Segment::Id,
                Segment::Literal(b"}.".to_vec()),
                Segment::Body,
            ])
        );
        for bad in ["{bod}", "{body", "}{body}", "{ body }"] {
            assert!(parse_template(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_validation() {
        let base = GenericHmacConfig {
            signature_header: "X-Sig".into(),
            ..GenericHmacConfig::default()
        };
        let ok = GenericHmac::new(base.clone()).expect("valid");
        assert_eq!(ok.signature_header(), "x-sig");
        let invalid = [
            GenericHmacConfig {
                signature_header: String::new(),
                ..base.clone()
            },
            GenericHmacConfig {
                signature_header: "x sig".into(),
                ..base.clone()
            },
            GenericHmacConfig {
                template: "{timestamp}".into(),
                ..base.clone()
            },
            GenericHmacConfig {
                template: "{timestamp}.{body}".into(),
                ..base.clone()
            },
            GenericHmacConfig {
                template: "{id}.{body}".into(),
                ..base.clone()
            },
            GenericHmacConfig {
                tolerance_secs: Some(300),
                ..base.clone()
            },
            GenericHmacConfig {
                timestamp_header: Some("x-ts".into()),
                tolerance_secs: Some(-1),
                ..base.clone()
            },
        ];
        for config in invalid {
            assert!(
                matches!(
                    GenericHmac::new(config.clone()),
                    Err(SignatureError::InvalidConfig(_))
                ),
                "{config:?}"
            );
        }
    }
}
