//! Source verifiers at run time, built once from configuration.

use std::time::{Duration, SystemTime};

use axum::http::HeaderMap;
use switchboard_core::config::VerifierConfig;
use switchboard_signatures::SignatureError;
use switchboard_signatures::standard_webhooks::{self, SigningKey};

/// A verifier ready to check requests.
#[derive(Debug)]
pub enum Verifier {
    /// Accepts everything.
    None,
    /// Standard Webhooks v1 with any of several keys.
    StandardWebhooks {
        /// Decoded keys.
        keys: Vec<SigningKey>,
        /// Allowed skew.
        tolerance: Duration,
    },
}

/// What a successful verification learned about the event.
#[derive(Debug, Default)]
pub struct Verified {
    /// Provider's de-duplication key.
    pub dedup_key: Option<String>,
}

impl Verifier {
    /// Builds a verifier, rejecting unusable secrets.
    pub fn build(config: &VerifierConfig) -> Result<Self, String> {
        Ok(match config {
            VerifierConfig::None => Self::None,
            VerifierConfig::StandardWebhooks { secrets, tolerance } => Self::StandardWebhooks {
                keys: secrets
                    .iter()
                    .map(|s| SigningKey::from_secret(s).map_err(|e| e.to_string()))
                    .collect::<Result<_, _>>()?,
                tolerance: *tolerance,
            },
        })
    }

    /// Checks a request's headers and raw body.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<Verified, SignatureError> {
        match self {
            Self::None => Ok(Verified::default()),
            Self::StandardWebhooks { keys, tolerance } => {
                let get = |a: &str, b: &str| {
                    headers
                        .get(a)
                        .or_else(|| headers.get(b))
                        .and_then(|v| v.to_str().ok())
                };
                let parsed = standard_webhooks::Headers {
                    id: get("webhook-id", "svix-id"),
                    timestamp: get("webhook-timestamp", "svix-timestamp"),
                    signature: get("webhook-signature", "svix-signature"),
                };
                let now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                standard_webhooks::verify(keys, parsed, body, now, tolerance.as_secs() as i64)?;
                Ok(Verified {
                    dedup_key: parsed.id.map(str::to_owned),
                })
            }
        }
    }
}
