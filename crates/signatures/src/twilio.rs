//! Twilio: `X-Twilio-Signature: <base64 HMAC>` over the full public URL plus the sorted form
//! parameters, following `twilio.request_validator.RequestValidator` (twilio-python 9.13):
//!
//! * **Form POST** (`application/x-www-form-urlencoded`): signed string = URL, then for each
//!   parameter name in code-point order, for each *distinct* value in code-point order,
//!   `name + value` (form-decoded, no separators).
//! * **Other bodies** (JSON): Twilio adds `bodySHA256=<hex sha256 of the body>` to the URL's
//!   query and signs the URL alone; the body must hash to that value.
//! * **No body** (GET): the URL alone.
//! * **Ports**: a signature over the URL with its port removed, or over the URL with the port
//!   present (`:443`/`:80` added when missing), is accepted, as the SDK's `validate` does.
//! * **Algorithm and key**: HMAC-SHA1 keyed with the Auth Token by default. With a SharedKey the
//!   request carries `X-Twilio-Webhooks-Signature-Settings: key=<id>,algorithm=HMAC_SHA256`, and the
//!   key is the SharedKey secret; configure it as one of the secrets.
//!
//! There is no timestamp, so no replay window.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use crate::SignatureError;
use crate::common::{
    HeaderLookup, HmacAlgorithm, base64_encode, check_secrets, constant_time_eq, mac_from_base64,
    required, sha256_hex,
};

/// The signature header (lowercase).
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";
/// The SharedKey settings header (lowercase), `key=<sharedKeyId>,algorithm=<HMAC_SHA1|HMAC_SHA256>`.
pub const SIGNATURE_SETTINGS_HEADER: &str = "x-twilio-webhooks-signature-settings";
/// The content-type header (lowercase).
pub const CONTENT_TYPE_HEADER: &str = "content-type";
/// The query parameter that carries the body hash for non-form bodies.
pub const BODY_HASH_PARAM: &str = "bodySHA256";

const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// The HMAC a Twilio signature uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// `HMAC_SHA1`: the legacy Auth Token signature.
    #[default]
    HmacSha1,
    /// `HMAC_SHA256`: available for SharedKey signatures.
    HmacSha256,
}

impl Algorithm {
    /// The name Twilio uses in the settings header.
    pub const fn name(self) -> &'static str {
        match self {
            Self::HmacSha1 => "HMAC_SHA1",
            Self::HmacSha256 => "HMAC_SHA256",
        }
    }

    /// Parses a name case-insensitively, like the SDK's `algorithm.upper()` lookup.
    pub fn from_name(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("HMAC_SHA1") {
            Some(Self::HmacSha1)
        } else if name.eq_ignore_ascii_case("HMAC_SHA256") {
            Some(Self::HmacSha256)
        } else {
            None
        }
    }

    const fn hmac(self) -> HmacAlgorithm {
        match self {
            Self::HmacSha1 => HmacAlgorithm::Sha1,
            Self::HmacSha256 => HmacAlgorithm::Sha256,
        }
    }
}

/// The parsed `X-Twilio-Webhooks-Signature-Settings` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SignatureSettings<'a> {
    /// The SharedKey id (`key=`), if any; use it to pick the secret when several are configured.
    pub key_id: Option<&'a str>,
    /// The signing algorithm (`algorithm=`); `HMAC_SHA1` when absent.
    pub algorithm: Algorithm,
}

/// Parses the settings header as the SDK's `get_signature_algorithm` does: comma-separated
/// `name=value` parts, names and values trimmed, the first non-empty `algorithm` wins, and a
/// missing or empty header means legacy `HMAC_SHA1`. An unknown algorithm is an error (the SDK
/// fails validation).
pub fn parse_signature_settings(
    header: Option<&str>,
) -> Result<SignatureSettings<'_>, SignatureError> {
    let mut settings = SignatureSettings::default();
    let mut algorithm = None;
    for part in header.unwrap_or_default().split(',') {
        let Some((name, value)) = part.split_once('=') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if value.is_empty() {
            continue;
        }
        if name == "algorithm" && algorithm.is_none() {
            algorithm = Some(value);
        } else if name == "key" && settings.key_id.is_none() {
            settings.key_id = Some(value);
        }
    }
    if let Some(name) = algorithm {
        settings.algorithm = Algorithm::from_name(name).ok_or(SignatureError::MalformedHeader {
            header: SIGNATURE_SETTINGS_HEADER,
            reason: "unsupported signature algorithm",
        })?;
    }
    Ok(settings)
}

/// The Twilio headers of a request, as received.
#[derive(Debug, Clone, Copy, Default)]
pub struct Headers<'a> {
    /// `X-Twilio-Signature`.
    pub signature: Option<&'a str>,
    /// `X-Twilio-Webhooks-Signature-Settings` (SharedKey requests only).
    pub signature_settings: Option<&'a str>,
    /// `Content-Type`.
    pub content_type: Option<&'a str>,
}

impl<'a> Headers<'a> {
    /// Reads the three headers through `lookup`.
    pub fn from_lookup(lookup: &(impl HeaderLookup<'a> + ?Sized)) -> Self {
        Self {
            signature: lookup.header(SIGNATURE_HEADER),
            signature_settings: lookup.header(SIGNATURE_SETTINGS_HEADER),
            content_type: lookup.header(CONTENT_TYPE_HEADER),
        }
    }
}

/// Computes a signature exactly like the SDK's `compute_signature(uri, params, algorithm)`: `url`
/// is used verbatim, then every distinct `(name, value)` in code-point order is appended.
pub fn compute_signature<K: AsRef<str>, V: AsRef<str>>(
    secret: &[u8],
    url: &str,
    params: &[(K, V)],
    algorithm: Algorithm,
) -> String {
    let params = params
        .iter()
        .map(|(k, v)| (Cow::Borrowed(k.as_ref()), Cow::Borrowed(v.as_ref())));
    let data = signed_string(url, &sorted_params(params));
    base64_encode(&algorithm.hmac().compute(secret, &[data.as_bytes()]))
}

/// Signs a form POST: `form_body` is the raw `application/x-www-form-urlencoded` body.
pub fn sign_form(secret: &[u8], url: &str, form_body: &[u8], algorithm: Algorithm) -> String {
    let data = signed_string(url, &sorted_params(form_params(form_body)));
    base64_encode(&algorithm.hmac().compute(secret, &[data.as_bytes()]))
}

/// A URL to send to and the signature over it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedUrl {
    /// The request URL, with `bodySHA256` added to its query.
    pub url: String,
    /// The `X-Twilio-Signature` value.
    pub signature: String,
}

/// Signs a non-form (for example JSON) body: adds `bodySHA256` to `url` and signs that URL.
pub fn sign_with_body_hash(
    secret: &[u8],
    url: &str,
    body: &[u8],
    algorithm: Algorithm,
) -> SignedUrl {
    let url = url_with_body_hash(url, body);
    let signature = base64_encode(&algorithm.hmac().compute(secret, &[url.as_bytes()]));
    SignedUrl { url, signature }
}

/// Adds `bodySHA256=<lowercase hex sha256 of body>` to the query of `url` (before any fragment).
pub fn url_with_body_hash(url: &str, body: &[u8]) -> String {
    let (base, fragment) = match url.find('#') {
        Some(i) => url.split_at(i),
        None => (url, ""),
    };
    let separator = match base.find('?') {
        None => "?",
        Some(i) if i + 1 == base.len() || base.ends_with('&') => "",
        Some(_) => "&",
    };
    format!(
        "{base}{separator}{BODY_HASH_PARAM}={}{fragment}",
        sha256_hex(body)
    )
}

/// Verifies a Twilio request against any of `secrets` (Auth Tokens and/or SharedKey secrets).
///
/// `url` is the full URL as Twilio requested it (scheme, host, optional port, path and query);
/// behind a proxy, rebuild it from the public base URL. `body` is the raw body.
///
/// Errors: a missing or undecodable signature header, or an unknown settings algorithm, is a
/// header error; a non-`http(s)` or unparseable URL, or a non-form body without `bodySHA256` in
/// the URL (the signature would not cover it), is [`SignatureError::InvalidRequest`]; a body that
/// does not hash to `bodySHA256` is [`SignatureError::BodyHashMismatch`].
pub fn verify<S: AsRef<[u8]>>(
    secrets: &[S],
    url: &str,
    headers: Headers<'_>,
    body: &[u8],
) -> Result<(), SignatureError> {
    check_secrets(secrets)?;
    let value = required(headers.signature, SIGNATURE_HEADER)?;
    let algorithm = parse_signature_settings(headers.signature_settings)?.algorithm;
    let hmac = algorithm.hmac();
    let tag = mac_from_base64(value, hmac.output_len(), SIGNATURE_HEADER)?;
    let parsed = ParsedUrl::parse(url).ok_or(SignatureError::InvalidRequest(
        "URL is not an absolute http(s) URL",
    ))?;

    let is_form = headers.content_type.is_some_and(is_form_content_type);
    let body_hash = if is_form {
        None
    } else {
        parsed.body_hash_param()
    };
    let params = if is_form {
        sorted_params(form_params(body))
    } else if body_hash.is_some() || body.is_empty() {
        BTreeMap::new()
    } else {
        return Err(SignatureError::InvalidRequest(
            "non-form body without `bodySHA256` in the URL is not covered by the signature",
        ));
    };

    let candidates = [parsed.without_port(), parsed.with_port()];
    let data: Vec<String> = candidates
        .iter()
        .map(|candidate| signed_string(candidate, &params))
        .collect();
    let matched = secrets.iter().any(|secret| {
        data.iter()
            .any(|data| hmac.verify(secret.as_ref(), &[data.as_bytes()], &tag))
    });
    if !matched {
        return Err(SignatureError::NoMatch);
    }
    if let Some(expected) = body_hash
        && !constant_time_eq(sha256_hex(body).as_bytes(), expected.as_bytes())
    {
        return Err(SignatureError::BodyHashMismatch);
    }
    Ok(())
}

fn is_form_content_type(value: &str) -> bool {
    let media_type = value.split(';').next().unwrap_or_default().trim();
    media_type.eq_ignore_ascii_case(FORM_CONTENT_TYPE)
}

fn form_params(body: &[u8]) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    form_urlencoded::parse(body)
}

type SortedParams<'a> = BTreeMap<Cow<'a, str>, BTreeSet<Cow<'a, str>>>;

/// Names sorted, values per name sorted and de-duplicated (the SDK's `sorted(set(values))`).
/// `str` ordering is byte order, which for UTF-8 is code-point order, as in Python.
fn sorted_params<'a>(
    params: impl Iterator<Item = (Cow<'a, str>, Cow<'a, str>)>,
) -> SortedParams<'a> {
    let mut sorted = SortedParams::new();
    for (name, value) in params {
        sorted.entry(name).or_default().insert(value);
    }
    sorted
}

fn signed_string(url: &str, params: &SortedParams<'_>) -> String {
    let mut data = String::from(url);
    for (name, values) in params {
        for value in values {
            data.push_str(name);
            data.push_str(value);
        }
    }
    data
}

/// The parts of an absolute URL needed for the port variants, as Python's `urlparse` sees them.
struct ParsedUrl<'a> {
    scheme: String,
    userinfo: Option<&'a str>,
    host: &'a str,
    /// The port as written (the SDK keeps it verbatim, leading zeros included).
    port: Option<&'a str>,
    path: &'a str,
    query: &'a str,
    fragment: &'a str,
}

impl<'a> ParsedUrl<'a> {
    fn parse(url: &'a str) -> Option<Self> {
        let (scheme, rest) = url.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return None;
        }
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, rest) = rest.split_at(authority_end);
        let (rest, fragment) = rest.split_once('#').unwrap_or((rest, ""));
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some((userinfo, host_port)) => (Some(userinfo), host_port),
            None => (None, authority),
        };
        let (host, port) = if host_port.starts_with('[') {
            let close = host_port.find(']')?;
            let (host, after) = host_port.split_at(close + 1);
            match after {
                "" => (host, ""),
                _ => (host, after.strip_prefix(':')?),
            }
        } else {
            host_port.split_once(':').unwrap_or((host_port, ""))
        };
        if host.is_empty() {
            return None;
        }
        let port = if port.is_empty() {
            None
        } else {
            // Python's `urlparse(...).port`: ASCII digits, 1..=65535 (0 reads as "no port" there,
            // which then yields nonsense such as `host:0:443`; refuse it instead).
            if !port.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            match port.parse::<u16>().ok()? {
                0 => return None,
                _ => Some(port),
            }
        };
        Some(Self {
            scheme,
            userinfo,
            host,
            port,
            path,
            query,
            fragment,
        })
    }

    fn render(&self, port: Option<&str>) -> String {
        let mut out = format!("{}://", self.scheme);
        if let Some(userinfo) = self.userinfo {
            out.push_str(userinfo);
            out.push('@');
        }
        out.push_str(self.host);
        if let Some(port) = port {
            out.push(':');
            out.push_str(port);
        }
        out.push_str(self.path);
        // `urlunparse` drops an empty query or fragment together with its delimiter.
        if !self.query.is_empty() {
            out.push('?');
            out.push_str(self.query);
        }
        if !self.fragment.is_empty() {
            out.push('#');
            out.push_str(self.fragment);
        }
        out
    }

    fn without_port(&self) -> String {
        self.render(None)
    }

    fn with_port(&self) -> String {
        let default = if self.scheme == "https" { "443" } else { "80" };
        self.render(Some(self.port.unwrap_or(default)))
    }

    /// The first non-empty `bodySHA256` value of the query (Python's `parse_qs(query)[…][0]`).
    fn body_hash_param(&self) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(name, value)| name == BODY_HASH_PARAM && !value.is_empty())
            .map(|(_, value)| value.into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_port_variants() {
        let cases = [
            (
                "https://example.com/a?b=1",
                "https://example.com/a?b=1",
                "https://example.com:443/a?b=1",
            ),
            (
                "HTTP://example.com:8080",
                "http://example.com",
                "http://example.com:8080",
            ),
            (
                "https://u:p@[::1]:1234/x#f",
                "https://u:p@[::1]/x#f",
                "https://u:p@[::1]:1234/x#f",
            ),
            (
                "https://example.com/a?#",
                "https://example.com/a",
                "https://example.com:443/a",
            ),
        ];
        for (url, without, with) in cases {
            let parsed = ParsedUrl::parse(url).expect(url);
            assert_eq!(parsed.without_port(), without);
            assert_eq!(parsed.with_port(), with);
        }
        for bad in [
            "example.com/a",
            "ftp://example.com/",
            "https:///a",
            "https://h:0/",
            "https://h:70000/",
            "https://h:8a/",
            "https://[::1/",
        ] {
            assert!(ParsedUrl::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn settings_header() {
        let parse = |h| parse_signature_settings(Some(h));
        assert_eq!(parse(""), Ok(SignatureSettings::default()));
        assert_eq!(
            parse("key=k1, algorithm = hmac_sha256"),
            Ok(SignatureSettings {
                key_id: Some("k1"),
                algorithm: Algorithm::HmacSha256
            })
        );
        assert_eq!(
            parse("algorithm=,algorithm=HMAC_SHA256").map(|s| s.algorithm),
            Ok(Algorithm::HmacSha256)
        );
        assert!(parse("algorithm=HMAC_MD5").is_err());
        assert_eq!(
            parse_signature_settings(None).map(|s| s.algorithm),
            Ok(Algorithm::HmacSha1)
        );
    }

    #[test]
    fn body_hash_is_appended_to_the_query() {
        let hash = sha256_hex(b"{}");
        assert_eq!(
            url_with_body_hash("https://h/p", b"{}"),
            format!("https://h/p?bodySHA256={hash}")
        );
        assert_eq!(
            url_with_body_hash("https://h/p?a=1#frag", b"{}"),
            format!("https://h/p?a=1&bodySHA256={hash}#frag")
        );
        assert_eq!(
            url_with_body_hash("https://h/p?", b"{}"),
            format!("https://h/p?bodySHA256={hash}")
        );
    }

    #[test]
    fn content_type_parameters_are_ignored() {
        assert!(is_form_content_type(
            "Application/X-WWW-Form-URLEncoded; charset=utf-8"
        ));
        assert!(!is_form_content_type("application/json"));
    }
}
