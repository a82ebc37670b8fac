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
