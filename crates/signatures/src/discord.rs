//! Discord interactions: Ed25519 over `X-Signature-Timestamp + raw body`, with the signature in
//! `X-Signature-Ed25519` as hex (64 bytes) and the application's public key as hex (32 bytes).
//!
//! Discord documents no window and sends deliberately invalid probes; answer any error with 401.
//! Verification uses the strict Ed25519 rules (no small-order keys or non-canonical signatures).

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use crate::SignatureError;
use crate::common::{
    HeaderLookup, check_window, decode_hex, hex_encode, required, timestamp_from_header,
};

/// The signature header (lowercase).
pub const SIGNATURE_HEADER: &str = "x-signature-ed25519";
/// The timestamp header (lowercase).
pub const TIMESTAMP_HEADER: &str = "x-signature-timestamp";

/// An application's Ed25519 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "discord::PublicKey({})", self.to_hex())
    }
}

impl PublicKey {
    /// Parses the 64-hex-digit public key shown in the Discord developer portal.
    pub fn from_hex(hex: &str) -> Result<Self, SignatureError> {
        let bytes: [u8; 32] = decode_hex(hex.trim())
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(SignatureError::InvalidSecret(
                "Discord public key must be 64 hex digits",
            ))?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| SignatureError::InvalidSecret("not an Ed25519 public key"))?;
        Ok(Self { key })
    }

    /// The key as lowercase hex.
    pub fn to_hex(&self) -> String {
        hex_encode(self.key.as_bytes())
    }
}

/// The two Discord headers, as received.
#[derive(Debug, Clone, Copy, Default)]
pub struct Headers<'a> {
    /// `X-Signature-Ed25519`.
    pub signature: Option<&'a str>,
    /// `X-Signature-Timestamp`.
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

/// Signs as Discord would, for tests and sample events: returns `(public key, signature hex)` for
/// a 32-byte Ed25519 `seed`, `timestamp` (the exact header string) and `body`.
pub fn sign(seed: &[u8; 32], timestamp: &str, body: &[u8]) -> (PublicKey, String) {
    let signing = SigningKey::from_bytes(seed);
    let mut message = Vec::with_capacity(timestamp.len() + body.len());
    message.extend_from_slice(timestamp.as_bytes());
    message.extend_from_slice(body);
    let signature = signing.sign(&message);
    let public = PublicKey {
        key: signing.verifying_key(),
    };
    (public, hex_encode(&signature.to_bytes()))
}

/// Verifies a Discord interaction against `key`, with `now` in unix seconds.
///
/// The timestamp must be plain decimal digits; `tolerance_secs` is an optional inclusive window in
/// both directions. Hex of either case is accepted (the signature is decoded, not compared as a
/// string).
pub fn verify(
    key: &PublicKey,
    headers: Headers<'_>,
    body: &[u8],
    now: i64,
    tolerance_secs: Option<i64>,
) -> Result<(), SignatureError> {
    let value = required(headers.signature, SIGNATURE_HEADER)?;
    let ts_raw = required(headers.timestamp, TIMESTAMP_HEADER)?;
    let timestamp = timestamp_from_header(ts_raw, TIMESTAMP_HEADER)?;
    if let Some(tolerance) = tolerance_secs {
        check_window(timestamp, now, tolerance)?;
    }
    let bytes: [u8; 64] = decode_hex(value)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(SignatureError::MalformedHeader {
            header: SIGNATURE_HEADER,
            reason: "expected 128 hex digits",
        })?;
    let signature = Signature::from_bytes(&bytes);
    let mut message = Vec::with_capacity(ts_raw.len() + body.len());
    message.extend_from_slice(ts_raw.as_bytes());
    message.extend_from_slice(body);
    key.key
        .verify_strict(&message, &signature)
        .map_err(|_| SignatureError::NoMatch)
}
