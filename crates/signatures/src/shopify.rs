//! Shopify: `X-Shopify-Hmac-Sha256: <base64>`, HMAC-SHA256 of the raw body keyed with the app's
//! client secret (UTF-8), standard base64 with padding.
//!
//! No timestamp, so no replay window; dedupe on `X-Shopify-Webhook-Id`. After a secret rotation
//! Shopify may sign with the old secret for up to an hour, so configure both.

use crate::SignatureError;
use crate::common::{HmacAlgorithm, base64_encode, check_secrets, mac_from_base64, required};

/// The signature header (lowercase).
pub const SIGNATURE_HEADER: &str = "x-shopify-hmac-sha256";
/// The delivery id header, usable as an idempotency key.
pub const WEBHOOK_ID_HEADER: &str = "x-shopify-webhook-id";

/// Returns the `X-Shopify-Hmac-Sha256` value for `body`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    base64_encode(&HmacAlgorithm::Sha256.compute(secret, &[body]))
}

/// Verifies `X-Shopify-Hmac-Sha256` (`signature`) against any of `secrets`.
///
/// The header is base64-decoded (strict, padded) and the 32-byte MAC compared in constant time.
pub fn verify<S: AsRef<[u8]>>(
    secrets: &[S],
    signature: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    check_secrets(secrets)?;
    let value = required(signature, SIGNATURE_HEADER)?;
    let tag = mac_from_base64(value, HmacAlgorithm::Sha256.output_len(), SIGNATURE_HEADER)?;
    if secrets
        .iter()
        .any(|secret| HmacAlgorithm::Sha256.verify(secret.as_ref(), &[body], &tag))
    {
        Ok(())
    } else {
        Err(SignatureError::NoMatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_vector() {
        let body = br#"{"id":"evt_123","type":"test.event","data":{"amount":1000}}"#;
        let sig = "NJj9ehmT4qpifELTgVLfonI+v/ji5PQg0wq144Lqp9w=";
        assert_eq!(sign(b"hush", body), sig);
        assert_eq!(verify(&["old", "hush"], Some(sig), body), Ok(()));
        assert!(matches!(
            verify(&["hush"], Some(sig.trim_end_matches('=')), body),
            Err(SignatureError::MalformedHeader { .. })
        ));
        assert!(matches!(
            verify(&["hush"], Some("AAAA"), body),
            Err(SignatureError::MalformedHeader { .. })
        ));
    }
}
