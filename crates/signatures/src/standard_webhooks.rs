//! Standard Webhooks v1 (HMAC-SHA256), as also used by Svix.
//!
//! Signed content is `{msg_id}.{timestamp}.{body}`; the key is the base64 decoding of the secret
//! after its `whsec_` prefix; the header carries space-separated `v1,<base64>` entries so that
//! several keys can sign during a rotation.
//!
//! The asymmetric variant `v1a` (Ed25519, `whsk_`/`whpk_` keys) signs the same content; see
//! [`AsymmetricSigningKey`], [`PublicKey`] and [`verify_asymmetric`]. Svix uses the same scheme
//! with `svix-*` header names; [`Headers::from_lookup`] reads either.

use ::hmac::{KeyInit, Mac};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signer as _;
use sha2::Sha256;

use crate::SignatureError;
use crate::common::{HeaderLookup, parse_unix_seconds, unreachable_hmac};

type HmacSha256 = ::hmac::Hmac<Sha256>;

/// Default tolerance for `webhook-timestamp`, in seconds, in both directions.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// The prefix of a symmetric Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// The prefix of an asymmetric (`v1a`, Ed25519) signing key: base64 of the 32-byte seed.
pub const ASYMMETRIC_SECRET_PREFIX: &str = "whsk_";
/// The prefix of an asymmetric (`v1a`, Ed25519) public key: base64 of the 32-byte key.
pub const PUBLIC_KEY_PREFIX: &str = "whpk_";

/// Header names (lowercase).
pub mod header {
    /// `webhook-id`.
    pub const ID: &str = "webhook-id";
    /// `webhook-timestamp`.
    pub const TIMESTAMP: &str = "webhook-timestamp";
    /// `webhook-signature`.
    pub const SIGNATURE: &str = "webhook-signature";
    /// Svix's name for `webhook-id`.
    pub const SVIX_ID: &str = "svix-id";
    /// Svix's name for `webhook-timestamp`.
    pub const SVIX_TIMESTAMP: &str = "svix-timestamp";
    /// Svix's name for `webhook-signature`.
    pub const SVIX_SIGNATURE: &str = "svix-signature";
}

/// A decoded signing key. Construct it once per destination and reuse it.
#[derive(Clone)]
pub struct SigningKey {
    key: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

impl SigningKey {
    /// Parses a `whsec_<base64>` secret (the prefix is optional, as in the reference SDKs).
    pub fn from_secret(secret: &str) -> Result<Self, SignatureError> {
        let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| SignatureError::InvalidSecret("not valid base64 after `whsec_`"))?;
        if key.is_empty() {
            return Err(SignatureError::InvalidSecret("empty key"));
        }
        Ok(Self { key })
    }

    /// Wraps raw key bytes.
    pub fn from_bytes(key: impl Into<Vec<u8>>) -> Self {
        Self { key: key.into() }
    }

    /// Renders the key as a `whsec_` secret.
    pub fn to_secret(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.key))
    }

    fn mac(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = match HmacSha256::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => unreachable_hmac(),
        };
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// Signs one message and returns the header entry `v1,<base64>`.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.mac(msg_id, timestamp, body).finalize().into_bytes();
        format!("v1,{}", STANDARD.encode(tag))
    }

    fn matches(&self, msg_id: &str, timestamp: i64, body: &[u8], tag: &[u8]) -> bool {
        // `verify_slice` is constant-time and rejects a tag of the wrong length.
        self.mac(msg_id, timestamp, body).verify_slice(tag).is_ok()
    }
}

/// Builds the full `webhook-signature` value for several keys (rotation), space-separated.
pub fn sign_header(keys: &[SigningKey], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|key| key.sign(msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The three headers of a Standard Webhooks request, as received.
#[derive(Debug, Clone, Copy)]
pub struct Headers<'a> {
    /// `webhook-id` (or `svix-id`).
    pub id: Option<&'a str>,
    /// `webhook-timestamp` (or `svix-timestamp`).
    pub timestamp: Option<&'a str>,
    /// `webhook-signature` (or `svix-signature`).
    pub signature: Option<&'a str>,
}

impl<'a> Headers<'a> {
    /// Reads the headers through `lookup`, each `svix-*` header taking precedence over its
    /// `webhook-*` twin (as the Svix libraries do).
    pub fn from_lookup(lookup: &(impl HeaderLookup<'a> + ?Sized)) -> Self {
        let either =
            |svix: &str, standard: &str| lookup.header(svix).or_else(|| lookup.header(standard));
        Self {
            id: either(header::SVIX_ID, header::ID),
            timestamp: either(header::SVIX_TIMESTAMP, header::TIMESTAMP),
            signature: either(header::SVIX_SIGNATURE, header::SIGNATURE),
        }
    }
}

/// Verifies a request against any of `keys`, with `now` in unix seconds.
///
/// Malformed entries in the signature list are skipped (like the Go reference library); entries
/// with versions other than `v1` are ignored. The timestamp must be plain decimal digits.
pub fn verify(
    keys: &[SigningKey],
    headers: Headers<'_>,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    verify_entries(
        headers,
        now,
        tolerance_secs,
        "v1",
        |msg_id, timestamp, tag| {
            keys.iter()
                .any(|key| key.matches(msg_id, timestamp, body, tag))
        },
    )
}

/// Checks the headers and window, then calls `matches(msg_id, timestamp, decoded_tag)` for every
/// well-formed entry of `version` until one matches.
fn verify_entries(
    headers: Headers<'_>,
    now: i64,
    tolerance_secs: i64,
    version: &str,
    mut matches: impl FnMut(&str, i64, &[u8]) -> bool,
) -> Result<(), SignatureError> {
    let msg_id = headers
        .id
        .ok_or(SignatureError::MissingHeader(header::ID))?;
    let ts_raw = headers
        .timestamp
        .ok_or(SignatureError::MissingHeader(header::TIMESTAMP))?;
    let signature = headers
        .signature
        .ok_or(SignatureError::MissingHeader(header::SIGNATURE))?;
    let timestamp = parse_unix_seconds(ts_raw).ok_or(SignatureError::MalformedHeader {
        header: header::TIMESTAMP,
        reason: "expected unix seconds",
    })?;
    crate::common::check_window(timestamp, now, tolerance_secs)?;
    let mut saw_version = false;
    for entry in signature.split(' ').filter(|e| !e.is_empty()) {
        let Some((entry_version, encoded)) = entry.split_once(',') else {
            continue;
        };
        if entry_version != version {
            continue;
        }
        let Ok(tag) = STANDARD.decode(encoded) else {
            continue;
        };
        saw_version = true;
        if matches(msg_id, timestamp, &tag) {
            return Ok(());
        }
    }
    if saw_version {
        Err(SignatureError::NoMatch)
    } else {
        Err(SignatureError::MalformedHeader {
            header: header::SIGNATURE,
            reason: if version == "v1" {
                "no `v1,<base64>` entry"
            } else {
                "no `v1a,<base64>` entry"
            },
        })
    }
}

fn signed_content(msg_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let timestamp = timestamp.to_string();
    let mut content = Vec::with_capacity(msg_id.len() + timestamp.len() + body.len() + 2);
    content.extend_from_slice(msg_id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

fn decode_32(encoded: &str, prefix: &str, what: &'static str) -> Result<[u8; 32], SignatureError> {
    let encoded = encoded.strip_prefix(prefix).unwrap_or(encoded);
    STANDARD
        .decode(encoded)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or(SignatureError::InvalidSecret(what))
}

/// A `v1a` (Ed25519) signing key, `whsk_` + base64 of the 32-byte seed.
#[derive(Clone)]
pub struct AsymmetricSigningKey {
    key: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for AsymmetricSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AsymmetricSigningKey(<redacted>)")
    }
}

impl AsymmetricSigningKey {
    /// Parses a `whsk_<base64 seed>` key (the prefix is optional).
    pub fn from_secret(secret: &str) -> Result<Self, SignatureError> {
        let seed = decode_32(
            secret,
            ASYMMETRIC_SECRET_PREFIX,
            "expected `whsk_` + base64 of a 32-byte Ed25519 seed",
        )?;
        Ok(Self::from_seed(&seed))
    }

    /// Wraps a 32-byte Ed25519 seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            key: ed25519_dalek::SigningKey::from_bytes(seed),
        }
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            key: self.key.verifying_key(),
        }
    }

    /// Signs one message and returns the header entry `v1a,<base64>`.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let signature = self.key.sign(&signed_content(msg_id, timestamp, body));
        format!("v1a,{}", STANDARD.encode(signature.to_bytes()))
    }
}

/// A `v1a` (Ed25519) public key, `whpk_` + base64 of the 32-byte key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: ed25519_dalek::VerifyingKey,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.to_secret())
    }
}

impl PublicKey {
    /// Parses a `whpk_<base64>` public key (the prefix is optional).
    pub fn from_secret(public_key: &str) -> Result<Self, SignatureError> {
        let bytes = decode_32(
            public_key,
            PUBLIC_KEY_PREFIX,
            "expected `whpk_` + base64 of a 32-byte Ed25519 public key",
        )?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map_err(|_| SignatureError::InvalidSecret("not an Ed25519 public key"))?;
        Ok(Self { key })
    }

    /// Renders the key as `whpk_<base64>`.
    pub fn to_secret(&self) -> String {
        format!(
            "{PUBLIC_KEY_PREFIX}{}",
            STANDARD.encode(self.key.as_bytes())
        )
    }

    fn matches(&self, msg_id: &str, timestamp: i64, body: &[u8], tag: &[u8]) -> bool {
        let Ok(signature) = ed25519_dalek::Signature::from_slice(tag) else {
            return false;
        };
        self.key
            .verify_strict(&signed_content(msg_id, timestamp, body), &signature)
            .is_ok()
    }
}

/// Verifies the `v1a` (Ed25519) entries of a request against any of `keys`, with `now` in unix
/// seconds. Same rules as [`verify`], for `v1a` instead of `v1`.
pub fn verify_asymmetric(
    keys: &[PublicKey],
    headers: Headers<'_>,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    verify_entries(
        headers,
        now,
        tolerance_secs,
        "v1a",
        |msg_id, timestamp, tag| {
            keys.iter()
                .any(|key| key.matches(msg_id, timestamp, body, tag))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn key() -> SigningKey {
        SigningKey::from_secret(SECRET).expect("valid secret")
    }

    #[test]
    fn reference_sdk_vector() {
        // From the reference Python SDK's test_sign_function.
        let sig = key().sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    fn headers<'a>(sig: &'a str, ts: &'a str) -> Headers<'a> {
        Headers {
            id: Some("msg_1"),
            timestamp: Some(ts),
            signature: Some(sig),
        }
    }

    #[test]
    fn round_trip_and_tolerance() {
        let sig = key().sign("msg_1", 1000, b"body");
        assert!(verify(&[key()], headers(&sig, "1000"), b"body", 1300, 300).is_ok());
        assert!(verify(&[key()], headers(&sig, "1000"), b"body", 700, 300).is_ok());
        assert_eq!(
            verify(&[key()], headers(&sig, "1000"), b"body", 1301, 300),
            Err(SignatureError::TimestampOutOfTolerance { skew_secs: -301 })
        );
        assert_eq!(
            verify(&[key()], headers(&sig, "1000"), b"bodx", 1000, 300),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn truncated_and_empty_signatures_are_rejected() {
        let sig = key().sign("msg_1", 1000, b"body");
        let truncated = &sig[..sig.len() - 8];
        assert!(verify(&[key()], headers(truncated, "1000"), b"body", 1000, 300).is_err());
        assert!(verify(&[key()], headers("v1,", "1000"), b"body", 1000, 300).is_err());
    }

    #[test]
    fn malformed_entries_are_skipped_and_unknown_versions_ignored() {
        let sig = key().sign("msg_1", 1000, b"body");
        let header = format!("garbage v2,abc  v1,@@@ {sig}");
        assert!(verify(&[key()], headers(&header, "1000"), b"body", 1000, 300).is_ok());
    }

    #[test]
    fn non_decimal_timestamps_are_rejected() {
        let sig = key().sign("msg_1", 1000, b"body");
        for ts in ["1000.0", "1e3", "", "-1000", " 1000"] {
            assert!(matches!(
                verify(&[key()], headers(&sig, ts), b"body", 1000, 300),
                Err(SignatureError::MalformedHeader { .. })
            ));
        }
    }

    #[test]
    fn secret_round_trips() {
        assert_eq!(key().to_secret(), SECRET);
        assert!(SigningKey::from_secret("whsec_***").is_err());
    }

    #[test]
    fn asymmetric_reference_vector() {
        // Go library `TestAsymmetricWebhookSign` (schemes.md §1).
        let signer =
            AsymmetricSigningKey::from_secret("whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=")
                .expect("valid seed");
        let public = [signer.public_key()];
        assert_eq!(
            public[0].to_secret(),
            "whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g="
        );
        let sig = signer.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(
            sig,
            "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag=="
        );
        let headers = Headers {
            id: Some("msg_p5jXN8AQM9LWM0D4loKWxJek"),
            timestamp: Some("1614265330"),
            signature: Some(&sig),
        };
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            verify_asymmetric(&public, headers, body, 1614265330, 300),
            Ok(())
        );
        assert_eq!(
            verify_asymmetric(&public, headers, b"{}", 1614265330, 300),
            Err(SignatureError::NoMatch)
        );
        // A v1a entry does not satisfy the symmetric verifier, and vice versa.
        assert!(matches!(
            verify(&[key()], headers, body, 1614265330, 300),
            Err(SignatureError::MalformedHeader { .. })
        ));
    }

    #[test]
    fn svix_headers_take_precedence() {
        let pairs = [
            ("webhook-id", "wrong"),
            ("svix-id", "msg_1"),
            ("Webhook-Timestamp", "1000"),
            ("webhook-signature", "v1,x"),
        ];
        let lookup = crate::common::header_list(&pairs);
        let headers = Headers::from_lookup(&lookup);
        assert_eq!(headers.id, Some("msg_1"));
        assert_eq!(headers.timestamp, Some("1000"));
        assert_eq!(headers.signature, Some("v1,x"));
    }
}
