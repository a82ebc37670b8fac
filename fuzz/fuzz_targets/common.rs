//! Shared by every target: how one fuzz input becomes header values and a body.
//!
//! The input is split at its first `N` newline bytes: part `i < N` is header value `i` (absent
//! when it is not UTF-8, as a server's `to_str()` would treat it, or when it is exactly `-`), and
//! everything after the `N`-th newline is the raw body. Header values cannot contain newlines on
//! the wire, so nothing real is lost, and seed files stay readable.

#![allow(dead_code)]

/// The clock used when a target does not derive one from its input.
pub const NOW: i64 = 1_700_000_000;

/// Clocks each target tries: a plausible now, and the extremes (overflow paths).
pub const CLOCKS: [i64; 3] = [NOW, i64::MIN, i64::MAX];

/// Splits `data` into `N` optional header values and the body.
pub fn split<const N: usize>(data: &[u8]) -> ([Option<&str>; N], &[u8]) {
    let mut headers = [None; N];
    let mut rest = data;
    for slot in headers.iter_mut() {
        let (part, after) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        *slot = std::str::from_utf8(part).ok().filter(|s| *s != "-");
        rest = after;
    }
    (headers, rest)
}
