//! Shopify: `X-Shopify-Hmac-Sha256`; dedup on `X-Shopify-Webhook-Id` (or the newer
//! `X-Shopify-Event-Id`), type from `X-Shopify-Topic`.

use switchboard_signatures::shopify;

use super::{Accepted, Inbound, Rejection, Verdict, Verify, secret_bytes};

/// Shopify webhook verifier.
#[derive(Debug)]
pub struct Shopify {
    secrets: Vec<Vec<u8>>,
}

impl Shopify {
    /// Builds it from the app's client secrets.
    pub fn new(secrets: &[String]) -> Self {
        Self {
            secrets: secret_bytes(secrets),
        }
    }
}

impl Verify for Shopify {
    fn verify(&self, request: &Inbound<'_>) -> Result<Verdict, Rejection> {
        shopify::verify(
            &self.secrets,
            request.header(shopify::SIGNATURE_HEADER),
            request.body,
        )?;
        Ok(Verdict::Accept(Accepted {
            dedup_key: request
                .header_owned(shopify::WEBHOOK_ID_HEADER)
                .or_else(|| request.header_owned("x-shopify-event-id")),
            event_type: request.header_owned("x-shopify-topic"),
            empty_ack: false,
        }))
    }
}
