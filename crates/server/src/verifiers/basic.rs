//! `kind = "basic"`: HTTP Basic authentication. Credentials are compared as SHA-256 digests in
//! constant time, so neither content nor length leaks through timing.

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Accepted, Inbound, Rejection, Verdict, Verify};

/// Basic-auth verifier.
#[derive(Debug)]
pub struct Basic {
    accepted: Vec<[u8; 32]>,
}

fn digest(value: &[u8]) -> [u8; 32] {
    Sha256::digest(value).into()
}

impl Basic {
    /// Builds it from the user name and accepted passwords.
    pub fn new(username: &str, passwords: &[String]) -> Self {
        Self {
            accepted: passwords
                .iter()
                .map(|p| digest(format!("{username}:{p}").as_bytes()))
                .collect(),
        }
    }
}

/// Whether `candidate`'s digest equals any of `accepted`, checking all of them.
pub(super) fn matches_any(accepted: &[[u8; 32]], candidate: &[u8]) -> bool {
    let candidate = digest(candidate);
    accepted
        .iter()
        .fold(subtle::Choice::from(0), |found, a| {
            found | a.ct_eq(&candidate)
        })
        .into()
}

impl Verify for Basic {
    fn verify(&self, request: &Inbound<'_>) -> Result<Verdict, Rejection> {
        let header = request.header("authorization").ok_or_else(|| {
            Rejection::new("missing_credentials", "missing `authorization` header")
        })?;
        let encoded = header
            .strip_prefix("Basic ")
            .or_else(|| header.strip_prefix("basic "))
            .ok_or_else(|| Rejection::new("malformed_credentials", "expected `Basic <base64>`"))?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| Rejection::new("malformed_credentials", "credentials are not base64"))?;
        if !matches_any(&self.accepted, &decoded) {
            return Err(Rejection::new(
                "invalid_credentials",
                "user name or password is wrong",
            ));
        }
        Ok(Verdict::Accept(Accepted {
            dedup_key: request.header_owned("idempotency-key"),
            event_type: request.header_owned("x-event-type"),
            empty_ack: false,
        }))
    }
}
