//! Per-source request counts on this node, for the reject rate `GET /v1/health` shows.
//! Only configured sources are counted (the caller checks), so the map stays bounded.

use std::collections::HashMap;
use std::sync::Mutex;

/// Accepted and rejected requests per source since this node started.
#[derive(Debug, Default)]
pub struct SourceActivity {
    counts: Mutex<HashMap<String, Counts>>,
}

/// One source's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests answered 2xx (stored events and duplicates).
    pub accepted: u64,
    /// Requests refused: verification failures, too large, rate limited.
    pub rejected: u64,
}

impl Counts {
    /// Rejected share of all requests (0.0 without requests).
    pub fn reject_rate(&self) -> f64 {
        let total = self.accepted + self.rejected;
        if total == 0 {
            0.0
        } else {
            self.rejected as f64 / total as f64
        }
    }
}

impl SourceActivity {
    /// Counts one request to `source`.
    pub fn record(&self, source: &str, accepted: bool) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let entry = match counts.get_mut(source) {
            Some(entry) => entry,
            None => counts.entry(source.to_owned()).or_default(),
        };
        if accepted {
            entry.accepted += 1;
        } else {
            entry.rejected += 1;
        }
    }

    /// The counts of `source`.
    pub fn get(&self, source: &str) -> Counts {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(source)
            .copied()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_rate() {
        let activity = SourceActivity::default();
        assert_eq!(activity.get("a").reject_rate(), 0.0);
        activity.record("a", true);
        activity.record("a", true);
        activity.record("a", true);
        activity.record("a", false);
        let a = activity.get("a");
        assert_eq!((a.accepted, a.rejected), (3, 1));
        assert!((a.reject_rate() - 0.25).abs() < 1e-9);
        assert_eq!(activity.get("b"), Counts::default());
    }
}
