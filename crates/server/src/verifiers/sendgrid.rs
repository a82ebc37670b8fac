//! SendGrid signed Event Webhook: ECDSA P-256 over `{timestamp}{body}` with the account's
//! verification key.

use std::time::Duration;

use switchboard_signatures::sendgrid;

use super::{Accepted, Inbound, Rejection, Verdict, Verify};

/// SendGrid Event Webhook verifier.
#[derive(Debug)]
pub struct Sendgrid {
    keys: Vec<sendgrid::PublicKey>,
    tolerance: Option<Duration>,
}

impl Sendgrid {
    /// Builds it from the base64 DER verification key.
    pub fn new(public_key: &str, tolerance: Option<Duration>) -> Result<Self, String> {
        let key = sendgrid::PublicKey::from_base64_der(public_key)
            .map_err(|e| format!("sendgrid public_key: {e}"))?;
        Ok(Self {
            keys: vec![key],
            tolerance,
        })
    }
}

impl Verify for Sendgrid {
    fn verify(&self, request: &Inbound<'_>) -> Result<Verdict, Rejection> {
        sendgrid::verify(
            &self.keys,
            sendgrid::Headers::from_lookup(request),
            request.body,
            request.now,
            self.tolerance.map(|t| t.as_secs() as i64),
        )?;
        Ok(Verdict::Accept(Accepted {
            dedup_key: None,
            event_type: Some("sendgrid.events".into()),
            empty_ack: false,
        }))
    }
}
