//! `kind = "api-key"`: a static key in a header (default `x-api-key`) or a query parameter,
//! compared as SHA-256 digests in constant time.

use sha2::{Digest, Sha256};

use super::basic::matches_any;
use super::{Accepted, Inbound, Rejection, Verdict, Verify};

/// API-key verifier.
#[derive(Debug)]
pub struct ApiKey {
    accepted: Vec<[u8; 32]>,
    header: Option<String>,
    query: Option<String>,
}

impl ApiKey {
    /// Builds it; with neither `header` nor `query`, the key is read from `x-api-key`.
    pub fn new(keys: &[String], header: Option<String>, query: Option<String>) -> Self {
        let header = match (&header, &query) {
            (None, None) => Some("x-api-key".to_owned()),
            _ => header.map(|h| h.to_ascii_lowercase()),
        };
        Self {
            accepted: keys
                .iter()
                .map(|k| Sha256::digest(k.as_bytes()).into())
                .collect(),
            header,
            query,
        }
    }
}

impl Verify for ApiKey {
    fn credential_headers(&self) -> Vec<String> {
        self.header.iter().cloned().collect()
    }

    fn verify(&self, request: &Inbound<'_>) -> Result<Verdict, Rejection> {
        let presented = match (&self.header, &self.query) {
            (Some(header), _) => request.header(header).map(|v| v.as_bytes().to_vec()),
            (None, Some(param)) => request.uri.query().and_then(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == param)
                    .map(|(_, v)| v.as_bytes().to_vec())
            }),
            (None, None) => None,
        };
        let presented = presented
            .ok_or_else(|| Rejection::new("missing_credentials", "no API key in the request"))?;
        if !matches_any(&self.accepted, &presented) {
            return Err(Rejection::new(
                "invalid_credentials",
                "the API key is not valid",
            ));
        }
        Ok(Verdict::Accept(Accepted {
            dedup_key: request.header_owned("idempotency-key"),
            event_type: request.header_owned("x-event-type"),
            empty_ack: false,
        }))
    }
}
