//! `kind = "hmac"`: any HMAC scheme described by configuration.

use switchboard_core::config::HmacVerifierConfig;
use switchboard_signatures::HmacAlgorithm;
use switchboard_signatures::hmac::{Encoding, GenericHmac, GenericHmacConfig};

use super::{Accepted, Inbound, Rejection, Verdict, Verify, secret_bytes};

/// Generic HMAC verifier.
#[derive(Debug)]
pub struct Hmac {
    scheme: GenericHmac,
    secrets: Vec<Vec<u8>>,
    id_header: Option<String>,
    event_type_header: Option<String>,
}

impl Hmac {
    /// Validates the configuration and builds the verifier.
    pub fn new(config: &HmacVerifierConfig) -> Result<Self, String> {
        let algorithm = match config.algorithm.to_ascii_lowercase().as_str() {
            "sha1" => HmacAlgorithm::Sha1,
            "sha256" => HmacAlgorithm::Sha256,
            "sha512" => HmacAlgorithm::Sha512,
            other => {
                return Err(format!(
                    "hmac algorithm `{other}`: expected sha1, sha256 or sha512"
                ));
            }
        };
        let encoding = match config.encoding.to_ascii_lowercase().as_str() {
            "hex" => Encoding::Hex,
            "base64" => Encoding::Base64,
            other => return Err(format!("hmac encoding `{other}`: expected hex or base64")),
        };
        let scheme = GenericHmac::new(GenericHmacConfig {
            algorithm,
            encoding,
            signature_header: config.header.clone(),
            prefix: config.prefix.clone(),
            template: config.signed_content.clone(),
            timestamp_header: config.timestamp_header.clone(),
            id_header: config.id_header.clone(),
            tolerance_secs: config.tolerance.map(|t| t.as_secs() as i64),
        })
        .map_err(|e| format!("hmac verifier: {e}"))?;
        Ok(Self {
            scheme,
            secrets: secret_bytes(&config.secrets),
            id_header: config.id_header.as_ref().map(|h| h.to_ascii_lowercase()),
            event_type_header: config
                .event_type_header
                .as_ref()
                .map(|h| h.to_ascii_lowercase()),
        })
    }
}

impl Verify for Hmac {
    fn verify(&self, request: &Inbound<'_>) -> Result<Verdict, Rejection> {
        self.scheme
            .verify(&self.secrets, request, request.body, request.now)?;
        Ok(Verdict::Accept(Accepted {
            dedup_key: self
                .id_header
                .as_deref()
                .and_then(|h| request.header_owned(h)),
            event_type: self
                .event_type_header
                .as_deref()
                .and_then(|h| request.header_owned(h)),
            empty_ack: false,
        }))
    }
}
