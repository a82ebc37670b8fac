//! Slack: `X-Slack-Signature: v0=<hex>`, HMAC-SHA256 over `v0:{X-Slack-Request-Timestamp}:{raw
//! body}`, keyed with the signing secret's UTF-8 bytes.
//!
//! As in `slack_sdk.signature.SignatureVerifier`: the timestamp goes into the MAC as the **raw
//! header string**, the window is `|now − ts| ≤ 300` in both directions and is checked before the
//! MAC, and hex must be lowercase. Rotation means trying each configured secret.

use crate::SignatureError;
use crate::common::{
    HeaderLookup, HmacAlgorithm, check_secrets, check_window, hex_encode, mac_from_lower_hex,
    required, timestamp_from_header,
};

/// The signature header (lowercase).
pub const SIGNATURE_HEADER: &str = "x-slack-signature";
/// The timestamp header (lowercase).
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
/// The SDK's window, in seconds, in both directions.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

const PREFIX: &str = "v0=";

/// The two Slack headers, as received.
#[derive(Debug, Clone, Copy, Default)]
pub struct Headers<'a> {
    /// `X-Slack-Request-Timestamp`.
    pub timestamp: Option<&'a str>,
    /// `X-Slack-Signature`.
    pub signature: Option<&'a str>,
}

impl<'a> Headers<'a> {
    /// Reads both headers through `lookup`.
    pub fn from_lookup(lookup: &(impl HeaderLookup<'a> + ?Sized)) -> Self {
        Self {
            timestamp: lookup.header(TIMESTAMP_HEADER),
            signature: lookup.header(SIGNATURE_HEADER),
        }
    }
}

/// Returns the `X-Slack-Signature` value, `v0=<hex>`, for `timestamp` (the exact header string
/// that will be sent) and `body`. Same as the SDK's `generate_signature`.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let tag = HmacAlgorithm::Sha256.compute(secret, &[b"v0:", timestamp.as_bytes(), b":", body]);
    format!("{PREFIX}{}", hex_encode(&tag))
}

/// Verifies a Slack request against any of `secrets`, with `now` in unix seconds and an inclusive
/// window of `tolerance_secs` in both directions (use [`DEFAULT_TOLERANCE_SECS`]).
///
/// The timestamp must be plain decimal digits; the SDK raises on anything `int()` refuses.
pub fn verify<S: AsRef<[u8]>>(
    secrets: &[S],
    headers: Headers<'_>,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    check_secrets(secrets)?;
    let ts_raw = required(headers.timestamp, TIMESTAMP_HEADER)?;
    let value = required(headers.signature, SIGNATURE_HEADER)?;
    let timestamp = timestamp_from_header(ts_raw, TIMESTAMP_HEADER)?;
    check_window(timestamp, now, tolerance_secs)?;
    let encoded = value
        .strip_prefix(PREFIX)
        .ok_or(SignatureError::MalformedHeader {
            header: SIGNATURE_HEADER,
            reason: "missing the `v0=` prefix",
        })?;
    let tag = mac_from_lower_hex(
        encoded,
        HmacAlgorithm::Sha256.output_len(),
        SIGNATURE_HEADER,
    )?;
    let parts: [&[u8]; 4] = [b"v0:", ts_raw.as_bytes(), b":", body];
    if secrets
        .iter()
        .any(|secret| HmacAlgorithm::Sha256.verify(secret.as_ref(), &parts, &tag))
    {
        Ok(())
    } else {
        Err(SignatureError::NoMatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

    #[test]
    fn raw_timestamp_string_is_signed() {
        let sig = sign(SECRET.as_bytes(), "1700000000", b"body");
        let headers = |ts| Headers {
            timestamp: Some(ts),
            signature: Some(&sig),
        };
        assert_eq!(
            verify(
                &[SECRET],
                headers("1700000000"),
                b"body",
                1_700_000_000,
                300
            ),
            Ok(())
        );
        assert_eq!(
            verify(
                &[SECRET],
                headers("01700000000"),
                b"body",
                1_700_000_000,
                300
            ),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn window_is_inclusive_both_ways() {
        let sig = sign(SECRET.as_bytes(), "1700000000", b"body");
        let headers = Headers {
            timestamp: Some("1700000000"),
            signature: Some(&sig),
        };
        for now in [1_699_999_700, 1_700_000_300] {
            assert_eq!(verify(&[SECRET], headers, b"body", now, 300), Ok(()));
        }
        assert_eq!(
            verify(&[SECRET], headers, b"body", 1_699_999_699, 300),
            Err(SignatureError::TimestampOutOfTolerance { skew_secs: 301 })
        );
        assert_eq!(
            verify(&[SECRET], headers, b"body", 1_700_000_301, 300),
            Err(SignatureError::TimestampOutOfTolerance { skew_secs: -301 })
        );
    }
}
