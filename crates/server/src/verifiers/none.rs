//! `kind = "none"`: accepts every request.

use super::{Accepted, Inbound, Rejection, Verdict, Verify};

/// Accepts everything; the event type may come from an `x-event-type` header.
#[derive(Debug)]
pub struct NoVerifier;

impl Verify for NoVerifier {
    fn verify(&self, request: &Inbound<'_>) -> Result<Verdict, Rejection> {
        Ok(Verdict::Accept(Accepted {
            dedup_key: request.header_owned("idempotency-key"),
            event_type: request.header_owned("x-event-type"),
            empty_ack: false,
        }))
    }
}
