//! Building blocks shared by every scheme: header lookup, HMAC over several parts with a
//! constant-time check, strict hex and base64 decoding, timestamp parsing and windows.
//!
//! Nothing here compares a received value against an expected one with `==`: MACs go through
//! [`hmac::Mac::verify_slice`] (constant-time, length-checked) and other secrets-derived values
//! through [`constant_time_eq`].

use ::hmac::{Hmac, KeyInit, Mac};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha1::Sha1;
use sha2::{Digest as _, Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::SignatureError;

/// Looks request headers up by name.
///
/// Verifiers always pass **lowercase** names; an implementation should match them
/// case-insensitively (HTTP header maps already do). Any closure `Fn(&str) -> Option<&'h str>`
/// implements it, for example `|name| map.get(name).and_then(|v| v.to_str().ok())`.
pub trait HeaderLookup<'h> {
    /// Returns the value of header `name` (given in lowercase), or `None` if absent.
    fn header(&self, name: &str) -> Option<&'h str>;
}

impl<'h, F> HeaderLookup<'h> for F
where
    F: Fn(&str) -> Option<&'h str>,
{
    fn header(&self, name: &str) -> Option<&'h str> {
        self(name)
    }
}

/// A [`HeaderLookup`] over a list of `(name, value)` pairs, matching names case-insensitively and
/// returning the first match. Handy in tests and for callers that keep headers as pairs.
pub fn header_list<'h>(pairs: &'h [(&'h str, &'h str)]) -> impl Fn(&str) -> Option<&'h str> + 'h {
    move |name: &str| {
        pairs
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| *value)
    }
}

/// The hash function under an HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HmacAlgorithm {
    /// HMAC-SHA1 (20-byte tag). Legacy; still used by Twilio and GitHub's old header.
    Sha1,
    /// HMAC-SHA256 (32-byte tag).
    #[default]
    Sha256,
    /// HMAC-SHA512 (64-byte tag).
    Sha512,
}

impl HmacAlgorithm {
    /// Length of the MAC in bytes.
    pub const fn output_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    /// Computes `HMAC(key, parts[0] || parts[1] || …)`.
    pub fn compute(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        match self {
            Self::Sha1 => keyed::<Hmac<Sha1>>(key, parts)
                .finalize()
                .into_bytes()
                .to_vec(),
            Self::Sha256 => keyed::<Hmac<Sha256>>(key, parts)
                .finalize()
                .into_bytes()
                .to_vec(),
            Self::Sha512 => keyed::<Hmac<Sha512>>(key, parts)
                .finalize()
                .into_bytes()
                .to_vec(),
        }
    }

    /// Checks `tag` against `HMAC(key, parts…)` in constant time; a tag of the wrong length never
    /// matches.
    pub fn verify(self, key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
        match self {
            Self::Sha1 => keyed::<Hmac<Sha1>>(key, parts).verify_slice(tag).is_ok(),
            Self::Sha256 => keyed::<Hmac<Sha256>>(key, parts).verify_slice(tag).is_ok(),
            Self::Sha512 => keyed::<Hmac<Sha512>>(key, parts).verify_slice(tag).is_ok(),
        }
    }
}

fn keyed<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> M {
    // HMAC accepts keys of every length, so `new_from_slice` cannot fail for it.
    let mut mac = match <M as KeyInit>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable_hmac(),
    };
    for part in parts {
        mac.update(part);
    }
    mac
}

#[cold]
pub(crate) fn unreachable_hmac() -> ! {
    // HMAC takes keys of every length, so this cannot happen; abort loudly if it ever does.
    panic!("HMAC rejected a key")
}

/// Compares two byte strings in constant time (for equal lengths); different lengths are unequal.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Lowercase hex encoding.
pub fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// Lowercase hex of the SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex_encode(&Sha256::digest(data))
}

/// Why a hex string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HexError {
    /// Odd length or a non-hex character.
    Malformed,
    /// Valid hex, but with uppercase digits where the reference SDK compares lowercase strings.
    Uppercase,
}

/// Decodes hex of either case.
pub(crate) fn decode_hex(s: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some((nibble(pair[0])? << 4) | nibble(pair[1])?))
        .collect()
}

/// Decodes hex that must be lowercase, as the SDKs that compare hex strings require.
pub(crate) fn decode_lower_hex(s: &str) -> Result<Vec<u8>, HexError> {
    let bytes = decode_hex(s).ok_or(HexError::Malformed)?;
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(HexError::Uppercase);
    }
    Ok(bytes)
}

/// Decodes a lowercase-hex MAC of exactly `len` bytes from header `header`.
///
/// Uppercase hex is refused with [`SignatureError::NoMatch`], as the reference SDKs' string
/// comparison would.
pub(crate) fn mac_from_lower_hex(
    value: &str,
    len: usize,
    header: &'static str,
) -> Result<Vec<u8>, SignatureError> {
    let tag = decode_lower_hex(value).map_err(|err| match err {
        HexError::Malformed => SignatureError::MalformedHeader {
            header,
            reason: "signature is not hex",
        },
        HexError::Uppercase => SignatureError::NoMatch,
    })?;
    if tag.len() != len {
        return Err(SignatureError::MalformedHeader {
            header,
            reason: "signature has the wrong length",
        });
    }
    Ok(tag)
}

/// Decodes a standard-base64 (padded) MAC of exactly `len` bytes from header `header`.
pub(crate) fn mac_from_base64(
    value: &str,
    len: usize,
    header: &'static str,
) -> Result<Vec<u8>, SignatureError> {
    let tag = STANDARD
        .decode(value)
        .map_err(|_| SignatureError::MalformedHeader {
            header,
            reason: "signature is not base64",
        })?;
    if tag.len() != len {
        return Err(SignatureError::MalformedHeader {
            header,
            reason: "signature has the wrong length",
        });
    }
    Ok(tag)
}

/// Standard base64 with padding.
pub(crate) fn base64_encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Parses unix seconds written as plain decimal digits (`^[0-9]{1,18}$`).
pub(crate) fn parse_unix_seconds(raw: &str) -> Option<i64> {
    if raw.is_empty() || raw.len() > 18 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok()
}

/// Parses a timestamp header or reports it as malformed.
pub(crate) fn timestamp_from_header(
    raw: &str,
    header: &'static str,
) -> Result<i64, SignatureError> {
    parse_unix_seconds(raw).ok_or(SignatureError::MalformedHeader {
        header,
        reason: "expected unix seconds",
    })
}

/// Accepts `timestamp` when `|timestamp − now| ≤ tolerance_secs` (inclusive, both directions).
pub(crate) fn check_window(
    timestamp: i64,
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let skew = timestamp.saturating_sub(now);
    let tolerance = u64::try_from(tolerance_secs).unwrap_or(0);
    if skew.unsigned_abs() > tolerance {
        return Err(SignatureError::TimestampOutOfTolerance { skew_secs: skew });
    }
    Ok(())
}

/// Refuses an empty secret list or an empty secret: an empty HMAC key is no protection.
pub(crate) fn check_secrets<S: AsRef<[u8]>>(secrets: &[S]) -> Result<(), SignatureError> {
    if secrets.is_empty() {
        return Err(SignatureError::InvalidSecret("no secret configured"));
    }
    if secrets.iter().any(|secret| secret.as_ref().is_empty()) {
        return Err(SignatureError::InvalidSecret("empty secret"));
    }
    Ok(())
}

/// Fetches a required header value.
pub(crate) fn required<'a>(
    value: Option<&'a str>,
    header: &'static str,
) -> Result<&'a str, SignatureError> {
    value.ok_or(SignatureError::MissingHeader(header))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_case() {
        assert_eq!(hex_encode(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(decode_hex("00ABff"), Some(vec![0x00, 0xab, 0xff]));
        assert_eq!(decode_lower_hex("00ABff"), Err(HexError::Uppercase));
        assert_eq!(decode_lower_hex("0g"), Err(HexError::Malformed));
        assert_eq!(decode_lower_hex("abc"), Err(HexError::Malformed));
        assert_eq!(decode_lower_hex(""), Ok(vec![]));
    }

    #[test]
    fn hmac_known_answers() {
        // RFC 4231 test case 2 and RFC 2202 test case 2.
        let sha256 =
            HmacAlgorithm::Sha256.compute(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex_encode(&sha256),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let sha1 = HmacAlgorithm::Sha1.compute(b"Jefe", &[b"what do ya want for nothing?"]);
        assert_eq!(
            hex_encode(&sha1),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        let sha512 = HmacAlgorithm::Sha512.compute(b"Jefe", &[b"what do ya want for nothing?"]);
        assert!(hex_encode(&sha512).starts_with("164b7a7bfcf819e2e395fbe73b56e0a387bd6422"));
        assert!(HmacAlgorithm::Sha256.verify(b"Jefe", &[b"what do ya want for nothing?"], &sha256));
        assert!(!HmacAlgorithm::Sha256.verify(
            b"Jefe",
            &[b"what do ya want for nothing?"],
            &sha256[..31]
        ));
        assert!(!HmacAlgorithm::Sha256.verify(b"Jefe", &[b"what do ya want for nothing?"], &[]));
    }

    #[test]
    fn windows_are_inclusive() {
        assert!(check_window(1000, 1300, 300).is_ok());
        assert!(check_window(1300, 1000, 300).is_ok());
        assert_eq!(
            check_window(1000, 1301, 300),
            Err(SignatureError::TimestampOutOfTolerance { skew_secs: -301 })
        );
        assert!(check_window(0, i64::MAX, 300).is_err());
        assert!(check_window(i64::MAX, i64::MIN, 300).is_err());
    }

    #[test]
    fn constant_time_eq_checks_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn header_list_is_case_insensitive() {
        let pairs = [("X-Hub-Signature-256", "a"), ("x-hub-signature-256", "b")];
        let lookup = header_list(&pairs);
        assert_eq!(lookup.header("x-hub-signature-256"), Some("a"));
        assert_eq!(lookup.header("x-other"), None);
    }

    #[test]
    fn plain_closures_over_a_map_are_lookups() {
        let map: std::collections::HashMap<String, String> =
            [("x-slack-signature".to_owned(), "v0=00".to_owned())].into();
        let lookup = |name: &str| map.get(name).map(String::as_str);
        let headers = crate::slack::Headers::from_lookup(&lookup);
        assert_eq!(headers.signature, Some("v0=00"));
        assert_eq!(headers.timestamp, None);
        let dynamic: &dyn HeaderLookup<'_> = &lookup;
        assert_eq!(
            crate::slack::Headers::from_lookup(dynamic).signature,
            Some("v0=00")
        );
    }
}
