//! Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…][,v0=<hex>]`.
//!
//! The MAC is HMAC-SHA256 over `{t}.{raw body}`, keyed with the **whole** endpoint secret string
//! (including `whsec_`, not base64-decoded), in lowercase hex. During a secret roll Stripe sends
//! one `v1` per active secret; every `v1` is tried and every other scheme (`v0`, …) is ignored.
//!
//! Parsing and ordering follow the `stripe` Python SDK's `WebhookSignature.verify_header`: split on
//! `,` and then on `=`, take the first `t`, compare exact keys (so `" v1"` is not `v1`), compare the
//! MAC first and the timestamp second, and reject only timestamps **older** than the tolerance
//! (future timestamps are accepted).

use crate::SignatureError;
use crate::common::{
    HexError, HmacAlgorithm, check_secrets, decode_lower_hex, hex_encode, parse_unix_seconds,
    required,
};

/// The signature header (lowercase).
pub const SIGNATURE_HEADER: &str = "stripe-signature";
/// The SDK's default tolerance (`Webhook.DEFAULT_TOLERANCE`), in seconds, for old timestamps.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

const SCHEME: &str = "v1";

/// Returns the lowercase-hex `v1` MAC of `body` at `timestamp` under `secret`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    hex_encode(&HmacAlgorithm::Sha256.compute(secret, &[ts.as_bytes(), b".", body]))
}

/// Builds a `Stripe-Signature` value, `t=<timestamp>,v1=<hex>[,v1=<hex>…]`, with one `v1` per
/// secret in order (as Stripe does while a rolled secret is still active).
///
/// Like the SDK's `generate_signature_header`, but for several secrets at once.
pub fn sign<S: AsRef<[u8]>>(secrets: &[S], timestamp: i64, body: &[u8]) -> String {
    let mut header = format!("t={timestamp}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&signature(secret.as_ref(), timestamp, body));
    }
    header
}

/// Verifies a `Stripe-Signature` value against any of `secrets`, with `now` in unix seconds.
///
/// `tolerance_secs` is the maximum age of `t`; `None` skips the age check (the SDK's
/// `verify_header` default). Future timestamps are never rejected, as in the SDK.
///
/// Deviations from the SDK, both stricter: `t` must be plain decimal digits (the SDK takes
/// anything `int()` accepts, such as `+1` or ` 1`), and `Some(0)` means zero tolerance instead of
/// "disabled".
pub fn verify<S: AsRef<[u8]>>(
    secrets: &[S],
    header: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance_secs: Option<i64>,
) -> Result<(), SignatureError> {
    check_secrets(secrets)?;
    let header = required(header, SIGNATURE_HEADER)?;
    let (timestamp, signatures) = parse_header(header)?;

    let ts = timestamp.to_string();
    let mut matched = false;
    for candidate in &signatures {
        // A `v1` that is not lowercase hex of the right length cannot equal the SDK's expected
        // string, so it is skipped, not reported as malformed.
        let tag = match decode_lower_hex(candidate) {
            Ok(tag) if tag.len() == HmacAlgorithm::Sha256.output_len() => tag,
            Ok(_) | Err(HexError::Malformed | HexError::Uppercase) => continue,
        };
        if secrets.iter().any(|secret| {
            HmacAlgorithm::Sha256.verify(secret.as_ref(), &[ts.as_bytes(), b".", body], &tag)
        }) {
            matched = true;
            break;
        }
    }
    if !matched {
        return Err(SignatureError::NoMatch);
    }

    if let Some(tolerance) = tolerance_secs
        && timestamp < now.saturating_sub(tolerance)
    {
        return Err(SignatureError::TimestampOutOfTolerance {
            skew_secs: timestamp.saturating_sub(now),
        });
    }
    Ok(())
}

fn parse_header(header: &str) -> Result<(i64, Vec<&str>), SignatureError> {
    const UNPARSEABLE: SignatureError = SignatureError::MalformedHeader {
        header: SIGNATURE_HEADER,
        reason: "unable to extract timestamp and signatures",
    };
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        // Python's `item.split("=", 2)`: the value is the text between the first and second `=`.
        let mut parts = item.splitn(3, '=');
        let key = parts.next().unwrap_or_default();
        let value = parts.next();
        match key {
            "t" => {
                let value = value.ok_or(UNPARSEABLE)?;
                if timestamp.is_none() {
                    timestamp = Some(parse_unix_seconds(value).ok_or(UNPARSEABLE)?);
                }
            }
            SCHEME => signatures.push(value.ok_or(UNPARSEABLE)?),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(UNPARSEABLE)?;
    if signatures.is_empty() {
        return Err(SignatureError::MalformedHeader {
            header: SIGNATURE_HEADER,
            reason: "no signatures found with expected scheme v1",
        });
    }
    Ok((timestamp, signatures))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const BODY: &[u8] = br#"{"id":"evt_123"}"#;
    const SIG: &str = "8e61be0adce412e660c8e15569d0620ea854513ca976219f74156022e546edb1";

    #[test]
    fn sdk_vector_and_sign() {
        let header = format!("t=1700000000,v1={SIG}");
        assert_eq!(sign(&[SECRET], 1_700_000_000, BODY), header);
        assert_eq!(
            verify(&[SECRET], Some(&header), BODY, 1_700_000_000, Some(300)),
            Ok(())
        );
    }

    #[test]
    fn tolerance_is_one_sided_and_checked_after_the_mac() {
        let header = format!("t=1700000000,v1={SIG}");
        let ok = |now| verify(&[SECRET], Some(&header), BODY, now, Some(300));
        assert_eq!(ok(1_700_000_300), Ok(()));
        assert_eq!(
            ok(1_700_000_301),
            Err(SignatureError::TimestampOutOfTolerance { skew_secs: -301 })
        );
        assert_eq!(ok(1_600_000_000), Ok(()), "future timestamps are accepted");
        assert_eq!(
            verify(&[SECRET], Some(&header), BODY, 1_800_000_000, None),
            Ok(())
        );
        // A bad MAC is reported as such even when the timestamp is also stale.
        assert_eq!(
            verify(&[SECRET], Some(&header), b"x", 1_800_000_000, Some(300)),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn header_parsing_follows_the_sdk() {
        let at = |h: &str| verify(&[SECRET], Some(h), BODY, 1_700_000_000, Some(300));
        // Any order, first `t` wins, unknown schemes ignored.
        assert_eq!(at(&format!("v0=abc,v1={SIG},t=1700000000")), Ok(()));
        assert_eq!(at(&format!("t=1700000000,t=1,v1={SIG}")), Ok(()));
        assert_eq!(
            at(&format!("t=1,t=1700000000,v1={SIG}")),
            Err(SignatureError::NoMatch)
        );
        // Leading zeros parse to the same integer, which is what gets signed.
        assert_eq!(at(&format!("t=01700000000,v1={SIG}")), Ok(()));
        // Space after a comma: `" v1"` is not `v1`.
        assert!(matches!(
            at(&format!("t=1700000000, v1={SIG}")),
            Err(SignatureError::MalformedHeader { .. })
        ));
        // Only v0.
        assert!(matches!(
            at(&format!("t=1700000000,v0={SIG}")),
            Err(SignatureError::MalformedHeader { .. })
        ));
        // Uppercase hex never equals the expected string.
        assert_eq!(
            at(&format!("t=1700000000,v1={}", SIG.to_uppercase())),
            Err(SignatureError::NoMatch)
        );
        for bad in [
            "",
            "t=",
            "t=abc,v1=00",
            "v1=00",
            "t=1700000000.5,v1=00",
            "t,v1=00",
        ] {
            assert!(
                matches!(at(bad), Err(SignatureError::MalformedHeader { .. })),
                "{bad:?}"
            );
        }
    }
}
