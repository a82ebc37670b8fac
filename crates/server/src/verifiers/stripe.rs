//! Stripe: `Stripe-Signature`, old timestamps rejected; dedup on the event `id`, type `type`.

use std::time::Duration;

use switchboard_signatures::stripe;

use super::{Accepted, Inbound, Rejection, Verdict, Verify, json_str, secret_bytes};

/// Stripe webhook verifier.
#[derive(Debug)]
pub struct Stripe {
    secrets: Vec<Vec<u8>>,
    tolerance: Duration,
}

impl Stripe {
    /// Builds it from the configured `whsec_…` secrets (used whole, as bytes).
    pub fn new(secrets: &[String], tolerance: Duration) -> Self {
        Self {
            secrets: secret_bytes(secrets),
            tolerance,
        }
    }
}

impl Verify for Stripe {
    fn verify(&self, request: &Inbound<'_>) -> Result<Verdict, Rejection> {
        stripe::verify(
            &self.secrets,
            request.header(stripe::SIGNATURE_HEADER),
            request.body,
            request.now,
            Some(self.tolerance.as_secs() as i64),
        )?;
        let payload = request.json();
        Ok(Verdict::Accept(Accepted {
            dedup_key: payload.as_ref().and_then(|p| json_str(p, "/id")),
            event_type: payload.as_ref().and_then(|p| json_str(p, "/type")),
            empty_ack: false,
        }))
    }
}
