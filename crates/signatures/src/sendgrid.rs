//! SendGrid signed Event Webhook: ECDSA P-256 with SHA-256 over `timestamp header string + raw
//! body`; `X-Twilio-Email-Event-Webhook-Signature` is base64 of a DER-encoded signature, and the
//! verification key is base64 of a DER SubjectPublicKeyInfo, as shown in SendGrid's Mail Settings.
//!
//! Verify only: SendGrid signs, and ECDSA signatures are randomized, so there is no signer to
//! match. The SDK checks no timestamp window; an optional one is offered here as gateway policy.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::MultipartVerifier as _;
use p256::ecdsa::{DerSignature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;

use crate::SignatureError;
use crate::common::{HeaderLookup, check_window, required, timestamp_from_header};

/// The signature header (lowercase).
pub const SIGNATURE_HEADER: &str = "x-twilio-email-event-webhook-signature";
/// The timestamp header (lowercase).
pub const TIMESTAMP_HEADER: &str = "x-twilio-email-event-webhook-timestamp";

/// A SendGrid verification key (P-256 public key).
#[derive(Clone)]
pub struct PublicKey {
    key: VerifyingKey,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sendgrid::PublicKey(P-256)")
    }
}

impl PublicKey {
    /// Parses the verification key as SendGrid shows it: base64 of a DER SubjectPublicKeyInfo.
    /// PEM armor (`-----BEGIN PUBLIC KEY-----` lines) and whitespace are tolerated.
    pub fn from_base64_der(encoded: &str) -> Result<Self, SignatureError> {
        let compact: String = encoded
            .lines()
            .filter(|line| !line.trim_start().starts_with("-----"))
            .flat_map(|line| line.chars().filter(|c| !c.is_ascii_whitespace()))
            .collect();
        let der = STANDARD
            .decode(compact)
            .map_err(|_| SignatureError::InvalidSecret("SendGrid public key is not base64"))?;
        Self::from_der(&der)
    }

    /// Parses a DER SubjectPublicKeyInfo.
    pub fn from_der(der: &[u8]) -> Result<Self, SignatureError> {
        let key = VerifyingKey::from_public_key_der(der).map_err(|_| {
            SignatureError::InvalidSecret("not a DER SubjectPublicKeyInfo for a P-256 key")
        })?;
        Ok(Self { key })
    }
}

/// The two SendGrid headers, as received.
#[derive(Debug, Clone, Copy, Default)]
pub struct Headers<'a> {
    /// `X-Twilio-Email-Event-Webhook-Signature`.
    pub signature: Option<&'a str>,
    /// `X-Twilio-Email-Event-Webhook-Timestamp`.
    pub timestamp: Option<&'a str>,
}

impl<'a> Headers<'a> {
    /// Reads both headers through `lookup`.
    pub fn from_lookup(lookup: &(impl HeaderLookup<'a> + ?Sized)) -> Self {
        Self {
            signature: lookup.header(SIGNATURE_HEADER),
            timestamp: lookup.header(TIMESTAMP_HEADER),
        }
    }
}

/// Verifies a SendGrid event POST against any of `keys`, with `now` in unix seconds.
///
/// The timestamp must be plain decimal digits. `tolerance_secs` is an inclusive window in both
/// directions; `None` checks no window, like the SDK.
pub fn verify(
    keys: &[PublicKey],
    headers: Headers<'_>,
    body: &[u8],
    now: i64,
    tolerance_secs: Option<i64>,
) -> Result<(), SignatureError> {
    if keys.is_empty() {
        return Err(SignatureError::InvalidSecret("no public key configured"));
    }
    let value = required(headers.signature, SIGNATURE_HEADER)?;
    let ts_raw = required(headers.timestamp, TIMESTAMP_HEADER)?;
    let timestamp = timestamp_from_header(ts_raw, TIMESTAMP_HEADER)?;
    if let Some(tolerance) = tolerance_secs {
        check_window(timestamp, now, tolerance)?;
    }
    let der = STANDARD
        .decode(value)
        .map_err(|_| SignatureError::MalformedHeader {
            header: SIGNATURE_HEADER,
            reason: "signature is not base64",
        })?;
    let signature =
        DerSignature::from_bytes(&der).map_err(|_| SignatureError::MalformedHeader {
            header: SIGNATURE_HEADER,
            reason: "signature is not a DER ECDSA signature",
        })?;
    let message: [&[u8]; 2] = [ts_raw.as_bytes(), body];
    if keys
        .iter()
        .any(|key| key.key.multipart_verify(&message, &signature).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::NoMatch)
    }
}

/// Signs as SendGrid does, for tests and sample events.
///
/// `private_key` is a P-256 private key as base64 of its PKCS#8 DER encoding (PEM armor and
/// whitespace are tolerated), `timestamp` the exact `X-Twilio-Email-Event-Webhook-Timestamp`
/// string and `body` the raw body. Returns `(verification key, signature)`: the matching public
/// key as base64 of its DER SubjectPublicKeyInfo (the form SendGrid shows and [`PublicKey`]
/// parses) and the `X-Twilio-Email-Event-Webhook-Signature` value, base64 of a DER ECDSA
/// signature (deterministic, RFC 6979).
pub fn sign(
    private_key: &str,
    timestamp: &str,
    body: &[u8],
) -> Result<(String, String), SignatureError> {
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer as _;
    use p256::pkcs8::DecodePrivateKey as _;

    // SubjectPublicKeyInfo header for an uncompressed P-256 point: SEQUENCE { SEQUENCE {
    // id-ecPublicKey, prime256v1 }, BIT STRING (65 bytes + unused-bits octet) }.
    const SPKI_PREFIX: [u8; 26] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];

    let compact: String = private_key
        .lines()
        .filter(|line| !line.trim_start().starts_with("-----"))
        .flat_map(|line| line.chars().filter(|c| !c.is_ascii_whitespace()))
        .collect();
    let der = STANDARD
        .decode(compact)
        .map_err(|_| SignatureError::InvalidSecret("SendGrid private key is not base64"))?;
    let key = SigningKey::from_pkcs8_der(&der).map_err(|_| {
        SignatureError::InvalidSecret("not a PKCS#8 DER private key for a P-256 key")
    })?;
    let mut message = Vec::with_capacity(timestamp.len() + body.len());
    message.extend_from_slice(timestamp.as_bytes());
    message.extend_from_slice(body);
    let signature: DerSignature = key
        .try_sign(&message)
        .map_err(|_| SignatureError::InvalidSecret("ECDSA signing failed"))?;
    let point = key.verifying_key().to_sec1_point(false);
    let mut spki = Vec::with_capacity(SPKI_PREFIX.len() + point.as_bytes().len());
    spki.extend_from_slice(&SPKI_PREFIX);
    spki.extend_from_slice(point.as_bytes());
    Ok((STANDARD.encode(spki), STANDARD.encode(signature.as_bytes())))
}

#[cfg(test)]
mod sign_tests {
    use super::*;

    /// The worked-vector key of `schemes.md` §8 (test key only), as PKCS#8 DER.
    const PRIVATE_KEY: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgEtu9t+611S6m5WMPpRwhjkoLv+pZN0MPYZU+i/cYJfShRANCAARUeUhCjpi0+7apRnHzU8koeWsgaTj6iQzdPbiA3MTLEK5/bH060tiuOtmIUqdWU3k3OtQm2c3Y7AeHYzeSt/uH";
    const PUBLIC_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEVHlIQo6YtPu2qUZx81PJKHlrIGk4+okM3T24gNzEyxCuf2x9OtLYrjrZiFKnVlN5NzrUJtnN2OwHh2M3krf7hw==";
    const BODY: &[u8] =
        br#"[{"email":"example@test.com","event":"processed","sg_event_id":"evt1","timestamp":1700000000}]"#;

    #[test]
    fn signs_what_the_verifier_and_the_worked_vector_accept() {
        let (public, signature) = sign(PRIVATE_KEY, "1700000000", BODY).expect("signs");
        assert_eq!(public, PUBLIC_KEY);
        // RFC 6979 signatures are deterministic: the same as the SDK-verified worked vector.
        assert_eq!(
            signature,
            "MEYCIQC6JNiHiHcQOqV/hs53Y58XG2Nmhcoy6cqXbKxgYtWnOwIhAID+d92tpxZWM2qg/p+weOTPD85zIqDwTUGXx4Igo8XM"
        );
        let keys = [PublicKey::from_base64_der(&public).expect("key")];
        let headers = Headers {
            signature: Some(&signature),
            timestamp: Some("1700000000"),
        };
        assert_eq!(
            verify(&keys, headers, BODY, 1_700_000_000, Some(300)),
            Ok(())
        );
        assert_eq!(
            verify(&keys, headers, b"[]", 1_700_000_000, None),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn unusable_private_keys_are_refused() {
        for bad in ["", "***", PUBLIC_KEY, "AAAA"] {
            assert!(
                matches!(sign(bad, "1", b"x"), Err(SignatureError::InvalidSecret(_))),
                "{bad:?}"
            );
        }
    }
}
