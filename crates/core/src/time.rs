//! Wall-clock helpers. Timestamps are unix milliseconds (`i64`) everywhere in storage.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the unix epoch, UTC.
pub type UnixMillis = i64;

/// The current time in unix milliseconds.
pub fn now_millis() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Formats unix milliseconds as RFC 3339 (UTC, millisecond precision).
pub fn format_rfc3339(millis: UnixMillis) -> String {
    let time = UNIX_EPOCH + std::time::Duration::from_millis(millis.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

/// Parses an RFC 3339 timestamp (or a relative age such as `2h`, meaning "two hours ago").
pub fn parse_time_or_age(input: &str, now: UnixMillis) -> Option<UnixMillis> {
    if let Ok(time) = humantime::parse_rfc3339_weak(input) {
        return time
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_millis() as i64);
    }
    humantime::parse_duration(input)
        .ok()
        .map(|age| now - age.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_absolute_and_relative_times() {
        assert_eq!(parse_time_or_age("1970-01-01T00:00:01Z", 0), Some(1000));
        assert_eq!(
            parse_time_or_age("2h", 10_000_000),
            Some(10_000_000 - 7_200_000)
        );
        assert_eq!(parse_time_or_age("yesterday-ish", 0), None);
        assert_eq!(format_rfc3339(1500), "1970-01-01T00:00:01.500Z");
    }
}
