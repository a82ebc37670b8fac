//! Destination health: a circuit breaker per destination plus the failure bookkeeping that
//! auto-disabling and the health API read.
//!
//! - **Closed**: attempts flow. `failure_threshold` consecutive failed attempts open it.
//! - **Open**: nothing is claimed for the destination (its deliveries wait, pending, without
//!   spending retries) until `cooldown` has passed.
//! - **Half-open**: one probe attempt at a time. `success_threshold` consecutive successful
//!   probes close the circuit; a failed probe opens it again for another cooldown.
//!
//! The book lives in memory (it decides on every dispatcher pass) and is written to the store
//! in the background, so it survives restarts and the API can show it.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use switchboard_core::config::CircuitConfig;
use switchboard_core::time::UnixMillis;
use switchboard_store::HealthRecord;

/// Circuit state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Attempts flow.
    Closed,
    /// Attempts wait until the cooldown ends.
    Open,
    /// One probe at a time.
    HalfOpen,
}

impl CircuitState {
    /// Wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "open" => Self::Open,
            "half_open" => Self::HalfOpen,
            _ => Self::Closed,
        }
    }
}

/// What the dispatcher may claim for a destination now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// As much as its room allows.
    Open,
    /// A single probe attempt.
    Probe,
    /// Nothing until this instant.
    WaitUntil(UnixMillis),
}

/// A state change worth telling users about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The circuit opened.
    Opened {
        /// Failures in a row.
        consecutive_failures: u32,
        /// Last error.
        last_error: Option<String>,
    },
    /// The circuit closed again after being open.
    Closed,
}

#[derive(Debug, Clone)]
struct Entry {
    state: CircuitState,
    consecutive_failures: u32,
    probe_successes: u32,
    probe_in_flight: bool,
    failing_since: Option<UnixMillis>,
    last_failure_at: Option<UnixMillis>,
    last_success_at: Option<UnixMillis>,
    last_error: Option<String>,
    opened_at: Option<UnixMillis>,
    updated_at: UnixMillis,
}

impl Entry {
    fn new(now: UnixMillis) -> Self {
        Self {
            state: CircuitState::Closed,
            consecutive_failures: 0,
            probe_successes: 0,
            probe_in_flight: false,
            failing_since: None,
            last_failure_at: None,
            last_success_at: None,
            last_error: None,
            opened_at: None,
            updated_at: now,
        }
    }

    fn record(&self, destination: &str) -> HealthRecord {
        HealthRecord {
            destination: destination.to_owned(),
            state: self.state.as_str().to_owned(),
            consecutive_failures: self.consecutive_failures,
            failing_since: self.failing_since,
            last_failure_at: self.last_failure_at,
            last_success_at: self.last_success_at,
            last_error: self.last_error.clone(),
            opened_at: self.opened_at,
            updated_at: self.updated_at,
        }
    }
}

/// Per-destination circuit breakers and failure bookkeeping.
pub struct HealthBook {
    config: CircuitConfig,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    dirty: HashSet<String>,
}

impl HealthBook {
    /// An empty book with these thresholds.
    pub fn new(config: CircuitConfig) -> Self {
        Self {
            config,
            inner: Mutex::default(),
        }
    }

    /// Restores state written by an earlier run.
    pub fn load(&self, records: Vec<HealthRecord>) {
        let mut inner = self.lock();
        for r in records {
            let state = CircuitState::parse(&r.state);
            inner.entries.insert(
                r.destination,
                Entry {
                    // A half-open circuit lost its probe with the process: open it again so
                    // that a fresh probe follows after the cooldown.
                    state: if state == CircuitState::HalfOpen {
                        CircuitState::Open
                    } else {
                        state
                    },
                    consecutive_failures: r.consecutive_failures,
                    probe_successes: 0,
                    probe_in_flight: false,
                    failing_since: r.failing_since,
                    last_failure_at: r.last_failure_at,
                    last_success_at: r.last_success_at,
                    last_error: r.last_error,
                    opened_at: r.opened_at,
                    updated_at: r.updated_at,
                },
            );
        }
    }

    /// What may be claimed for `destination` at `now`.
    pub fn gate(&self, destination: &str, now: UnixMillis) -> Gate {
        if self.config.failure_threshold == 0 {
            return Gate::Open;
        }
        let inner = self.lock();
        let Some(entry) = inner.entries.get(destination) else {
            return Gate::Open;
        };
        match entry.state {
            CircuitState::Closed => Gate::Open,
            CircuitState::Open => {
                let until =
                    entry.opened_at.unwrap_or(now) + self.config.cooldown.as_millis() as i64;
                if now >= until {
                    Gate::Probe
                } else {
                    Gate::WaitUntil(until)
                }
            }
            CircuitState::HalfOpen if entry.probe_in_flight => {
                // The probe's completion wakes the dispatcher; until then nothing else goes.
                Gate::WaitUntil(now + self.config.cooldown.as_millis() as i64)
            }
            CircuitState::HalfOpen => Gate::Probe,
        }
    }

    /// Notes that a probe was claimed (the circuit is half-open until it completes).
    pub fn probe_started(&self, destination: &str, now: UnixMillis) {
        let mut inner = self.lock();
        let entry = inner
            .entries
            .entry(destination.to_owned())
            .or_insert_with(|| Entry::new(now));
        entry.state = CircuitState::HalfOpen;
        entry.probe_in_flight = true;
        entry.updated_at = now;
        inner.dirty.insert(destination.to_owned());
    }

    /// Records an attempt's result; returns a transition when the circuit opened or closed.
    pub fn record(
        &self,
        destination: &str,
        success: bool,
        error: Option<&str>,
        now: UnixMillis,
    ) -> Option<Transition> {
        let mut inner = self.lock();
        let entry = inner
            .entries
            .entry(destination.to_owned())
            .or_insert_with(|| Entry::new(now));
        let before = entry.state;
        let was_probe = entry.probe_in_flight;
        entry.probe_in_flight = false;
        entry.updated_at = now;
        let mut transition = None;
        if success {
            entry.consecutive_failures = 0;
            entry.failing_since = None;
            entry.last_success_at = Some(now);
            match before {
                CircuitState::Closed => {}
                CircuitState::HalfOpen | CircuitState::Open => {
                    entry.probe_successes += 1;
                    if entry.probe_successes >= self.config.success_threshold.max(1) {
                        entry.state = CircuitState::Closed;
                        entry.probe_successes = 0;
                        entry.opened_at = None;
                        transition = Some(Transition::Closed);
                    } else {
                        entry.state = CircuitState::HalfOpen;
                    }
                }
            }
        } else {
            entry.consecutive_failures = entry.consecutive_failures.saturating_add(1);
            entry.failing_since.get_or_insert(now);
            entry.last_failure_at = Some(now);
            entry.last_error = error.map(str::to_owned);
            entry.probe_successes = 0;
            let threshold = self.config.failure_threshold;
            let opens = threshold > 0
                && match before {
                    CircuitState::Closed => entry.consecutive_failures >= threshold,
                    // A failed probe (or a straggler finishing after the circuit opened)
                    // restarts the cooldown.
                    CircuitState::HalfOpen => true,
                    CircuitState::Open => was_probe,
                };
            if opens {
                entry.state = CircuitState::Open;
                entry.opened_at = Some(now);
                if before == CircuitState::Closed {
                    transition = Some(Transition::Opened {
                        consecutive_failures: entry.consecutive_failures,
                        last_error: entry.last_error.clone(),
                    });
                }
            }
        }
        inner.dirty.insert(destination.to_owned());
        transition
    }

    /// Current record of `destination`, if it ever had an attempt.
    pub fn get(&self, destination: &str) -> Option<HealthRecord> {
        self.lock()
            .entries
            .get(destination)
            .map(|e| e.record(destination))
    }

    /// How long `destination` has been failing without a success, if it is failing.
    pub fn failing_since(&self, destination: &str) -> Option<UnixMillis> {
        self.lock()
            .entries
            .get(destination)
            .and_then(|e| e.failing_since)
    }

    /// Forgets a destination's failures (after a user re-enables it).
    pub fn reset(&self, destination: &str, now: UnixMillis) {
        let mut inner = self.lock();
        inner
            .entries
            .insert(destination.to_owned(), Entry::new(now));
        inner.dirty.insert(destination.to_owned());
    }

    /// Records changed since the last call, for persisting.
    pub fn take_dirty(&self) -> Vec<HealthRecord> {
        let mut inner = self.lock();
        let dirty: Vec<String> = inner.dirty.drain().collect();
        dirty
            .iter()
            .filter_map(|d| inner.entries.get(d).map(|e| e.record(d)))
            .collect()
    }

    /// Number of destinations per circuit state, for metrics.
    pub fn state_counts(&self) -> [(CircuitState, usize); 3] {
        let inner = self.lock();
        let count = |s| inner.entries.values().filter(|e| e.state == s).count();
        [
            (CircuitState::Closed, count(CircuitState::Closed)),
            (CircuitState::Open, count(CircuitState::Open)),
            (CircuitState::HalfOpen, count(CircuitState::HalfOpen)),
        ]
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn book() -> HealthBook {
        HealthBook::new(CircuitConfig {
            failure_threshold: 3,
            cooldown: Duration::from_secs(10),
            success_threshold: 2,
        })
    }

    #[test]
    fn opens_after_consecutive_failures_and_probes_after_cooldown() {
        let b = book();
        assert_eq!(b.gate("d", 0), Gate::Open);
        assert_eq!(b.record("d", false, Some("HTTP 500"), 1), None);
        assert_eq!(
            b.record("d", true, None, 2),
            None,
            "a success resets the count"
        );
        assert_eq!(b.record("d", false, Some("HTTP 500"), 3), None);
        assert_eq!(b.record("d", false, Some("HTTP 500"), 4), None);
        assert_eq!(
            b.record("d", false, Some("HTTP 502"), 5),
            Some(Transition::Opened {
                consecutive_failures: 3,
                last_error: Some("HTTP 502".into())
            })
        );
        assert_eq!(b.gate("d", 6), Gate::WaitUntil(10_005));
        assert_eq!(b.gate("d", 10_005), Gate::Probe);
        b.probe_started("d", 10_005);
        assert!(
            matches!(b.gate("d", 10_006), Gate::WaitUntil(_)),
            "one probe at a time"
        );
        // A failed probe opens the circuit for another cooldown, without a new transition.
        assert_eq!(b.record("d", false, Some("timeout"), 10_010), None);
        assert_eq!(b.gate("d", 10_011), Gate::WaitUntil(20_010));
        b.probe_started("d", 20_010);
        assert_eq!(b.record("d", true, None, 20_011), None);
        assert_eq!(b.gate("d", 20_012), Gate::Probe, "half-open: next probe");
        b.probe_started("d", 20_012);
        assert_eq!(b.record("d", true, None, 20_013), Some(Transition::Closed));
        assert_eq!(b.gate("d", 20_014), Gate::Open);
        let record = b.get("d").expect("record");
        assert_eq!(record.state, "closed");
        assert_eq!(record.consecutive_failures, 0);
        assert_eq!(record.last_error.as_deref(), Some("timeout"));
    }

    #[test]
    fn failing_since_tracks_the_first_failure_after_a_success() {
        let b = book();
        b.record("d", false, None, 100);
        b.record("d", false, None, 200);
        assert_eq!(b.failing_since("d"), Some(100));
        b.record("d", true, None, 300);
        assert_eq!(b.failing_since("d"), None);
    }

    #[test]
    fn state_survives_a_restart_through_records() {
        let b = book();
        for t in 0..3 {
            b.record("d", false, Some("HTTP 503"), t);
        }
        let records = b.take_dirty();
        assert!(b.take_dirty().is_empty());
        let restored = book();
        restored.load(records);
        assert_eq!(restored.gate("d", 5), Gate::WaitUntil(10_002));
        assert_eq!(restored.failing_since("d"), Some(0));
    }

    #[test]
    fn threshold_zero_turns_the_breaker_off() {
        let b = HealthBook::new(CircuitConfig {
            failure_threshold: 0,
            ..CircuitConfig::default()
        });
        for t in 0..100 {
            b.record("d", false, None, t);
        }
        assert_eq!(b.gate("d", 100), Gate::Open);
    }
}
