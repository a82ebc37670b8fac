//! Delivery states and the outcome of one attempt.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where a delivery stands. Stored as its `as_str()` form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (possibly scheduled in the future).
    Pending,
    /// Claimed by a worker under a lease.
    InFlight,
    /// The destination accepted it.
    Succeeded,
    /// Retries exhausted or a permanent error: the dead-letter state. Replay re-queues it.
    Failed,
    /// Cancelled (its destination was deleted).
    Cancelled,
    /// Not sent: the route's filter did not match the event.
    Filtered,
}

impl DeliveryStatus {
    /// All states, in lifecycle order.
    pub const ALL: [DeliveryStatus; 6] = [
        Self::Pending,
        Self::InFlight,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
        Self::Filtered,
    ];

    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InFlight => "in_flight",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Filtered => "filtered",
        }
    }

    /// Parses the stored name.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

impl std::fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one attempt came to, as far as scheduling is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// 2xx: done.
    Delivered,
    /// Worth another try (connection error, timeout, 408, 425, 429, 5xx).
    Retryable {
        /// The receiver's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help (other 4xx, bad URL, refused by policy).
    Permanent,
}

impl AttemptOutcome {
    /// Classifies an HTTP status code (with any `Retry-After` already parsed).
    pub fn from_status(status: u16, retry_after: Option<Duration>) -> Self {
        match status {
            200..=299 => Self::Delivered,
            408 | 425 | 429 | 500..=599 => Self::Retryable { retry_after },
            _ => Self::Permanent,
        }
    }
}

/// Parses a `Retry-After` header: delay-seconds or an HTTP date, relative to `now`.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    #[test]
    fn classification() {
        assert_eq!(
            AttemptOutcome::from_status(204, None),
            AttemptOutcome::Delivered
        );
        for s in [408, 425, 429, 500, 503, 599] {
            assert!(matches!(
                AttemptOutcome::from_status(s, None),
                AttemptOutcome::Retryable { .. }
            ));
        }
        for s in [301, 400, 401, 404, 410, 422] {
            assert_eq!(
                AttemptOutcome::from_status(s, None),
                AttemptOutcome::Permanent
            );
        }
    }

    #[test]
    fn retry_after_forms() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", SystemTime::now()), None);
        assert_eq!(parse_retry_after("-5", SystemTime::now()), None);
    }

    #[test]
    fn status_names_round_trip() {
        for s in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(s.as_str()), Some(s));
        }
    }
}
