//! GitHub webhooks: `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 of the raw body keyed with
//! the secret's UTF-8 bytes. The legacy `X-Hub-Signature: sha1=<hex>` (HMAC-SHA1) is also
//! supported, for GitHub-legacy-style senders such as Intercom.
//!
//! There is no timestamp, so no replay window; dedupe on `X-GitHub-Delivery`. GitHub sends one
//! signature, so rotation means trying each configured secret. Hex must be lowercase, as GitHub
//! sends it and as `@octokit/webhooks-methods` compares it.

use crate::SignatureError;
use crate::common::{HmacAlgorithm, check_secrets, hex_encode, mac_from_lower_hex, required};

/// The SHA-256 signature header (lowercase).
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// The legacy SHA-1 signature header (lowercase).
pub const SIGNATURE_SHA1_HEADER: &str = "x-hub-signature";
/// The delivery GUID header, usable as an idempotency key.
pub const DELIVERY_HEADER: &str = "x-github-delivery";

const SHA256_PREFIX: &str = "sha256=";
const SHA1_PREFIX: &str = "sha1=";

/// Returns the `X-Hub-Signature-256` value, `sha256=<hex>`, for `body`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let tag = HmacAlgorithm::Sha256.compute(secret, &[body]);
    format!("{SHA256_PREFIX}{}", hex_encode(&tag))
}

/// Returns the legacy `X-Hub-Signature` value, `sha1=<hex>`, for `body`.
pub fn sign_sha1(secret: &[u8], body: &[u8]) -> String {
    let tag = HmacAlgorithm::Sha1.compute(secret, &[body]);
    format!("{SHA1_PREFIX}{}", hex_encode(&tag))
}

/// Verifies `X-Hub-Signature-256` (`signature`) against any of `secrets`.
pub fn verify<S: AsRef<[u8]>>(
    secrets: &[S],
    signature: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    verify_with(
        HmacAlgorithm::Sha256,
        SHA256_PREFIX,
        SIGNATURE_HEADER,
        secrets,
        signature,
        body,
    )
}

/// Verifies the legacy `X-Hub-Signature` (`signature`, `sha1=<hex>`) against any of `secrets`.
///
/// Prefer [`verify`]; use this only for senders that do not send the SHA-256 header.
pub fn verify_sha1<S: AsRef<[u8]>>(
    secrets: &[S],
    signature: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    verify_with(
        HmacAlgorithm::Sha1,
        SHA1_PREFIX,
        SIGNATURE_SHA1_HEADER,
        secrets,
        signature,
        body,
    )
}

fn verify_with<S: AsRef<[u8]>>(
    algorithm: HmacAlgorithm,
    prefix: &str,
    header: &'static str,
    secrets: &[S],
    signature: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    check_secrets(secrets)?;
    let value = required(signature, header)?;
    let encoded = value
        .strip_prefix(prefix)
        .ok_or(SignatureError::MalformedHeader {
            header,
            reason: "missing the algorithm prefix",
        })?;
    let tag = mac_from_lower_hex(encoded, algorithm.output_len(), header)?;
    if secrets
        .iter()
        .any(|secret| algorithm.verify(secret.as_ref(), &[body], &tag))
    {
        Ok(())
    } else {
        Err(SignatureError::NoMatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "It's a Secret to Everybody";

    #[test]
    fn docs_vector() {
        let expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign(SECRET.as_bytes(), b"Hello, World!"), expected);
        assert_eq!(verify(&[SECRET], Some(expected), b"Hello, World!"), Ok(()));
        assert_eq!(
            verify(&["other", SECRET], Some(expected), b"Hello, World!"),
            Ok(())
        );
        assert_eq!(
            verify(&["other"], Some(expected), b"Hello, World!"),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn prefix_case_and_length_are_checked() {
        let sig = sign(SECRET.as_bytes(), b"x");
        let upper = format!("sha256={}", sig["sha256=".len()..].to_uppercase());
        assert_eq!(
            verify(&[SECRET], Some(&upper), b"x"),
            Err(SignatureError::NoMatch)
        );
        assert!(matches!(
            verify(&[SECRET], Some(&sig["sha256=".len()..]), b"x"),
            Err(SignatureError::MalformedHeader { .. })
        ));
        assert!(matches!(
            verify(&[SECRET], Some(&sig[..sig.len() - 2]), b"x"),
            Err(SignatureError::MalformedHeader { .. })
        ));
        assert!(matches!(
            verify(&[SECRET], Some("sha256="), b"x"),
            Err(SignatureError::MalformedHeader { .. })
        ));
    }

    #[test]
    fn secrets_must_be_configured() {
        let sig = sign(b"", b"x");
        let none: [&str; 0] = [];
        assert!(matches!(
            verify(&none, Some(&sig), b"x"),
            Err(SignatureError::InvalidSecret(_))
        ));
        assert!(matches!(
            verify(&[""], Some(&sig), b"x"),
            Err(SignatureError::InvalidSecret(_))
        ));
    }
}
