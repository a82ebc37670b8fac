//! Per-destination throttling: a token bucket per destination, consulted before claiming.
//!
//! The dispatcher claims at most as many deliveries as a destination has tokens, so a throttled
//! destination's backlog stays in the store (pending) and never occupies a worker slot or delays
//! another destination: there is no head-of-line blocking. Buckets hold up to one second of
//! tokens (at least one), so a burst never exceeds the configured rate over any second.
//!
//! With several nodes sharing a database, each node enforces `rate / live nodes` (node count
//! from heartbeats), so the total holds while all nodes are up; for a few seconds after a node
//! joins or leaves the total may be off by one node's share.

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    rate: f64,
    at: Instant,
}

/// Token buckets by destination id. Owned by the dispatcher task (no locking).
#[derive(Debug, Default)]
pub struct Throttle {
    buckets: HashMap<String, Bucket>,
}

impl Throttle {
    /// Whole tokens available to `destination` at `now` under `rate` per second (`None`:
    /// unlimited).
    pub fn available(&mut self, destination: &str, rate: Option<f64>, now: Instant) -> usize {
        let Some(rate) = rate else {
            self.buckets.remove(destination);
            return usize::MAX;
        };
        let bucket = self.refill(destination, rate, now);
        bucket.tokens.floor().max(0.0) as usize
    }

    /// Spends `n` tokens (after a claim of `n` deliveries).
    pub fn spend(&mut self, destination: &str, n: usize) {
        if let Some(bucket) = self.buckets.get_mut(destination) {
            bucket.tokens -= n as f64;
        }
    }

    /// When the next whole token arrives, for a destination without one now.
    pub fn next_token_in(&self, destination: &str) -> Option<Duration> {
        let bucket = self.buckets.get(destination)?;
        let missing = (1.0 - bucket.tokens).max(0.0);
        Some(Duration::from_secs_f64(missing / bucket.rate).max(Duration::from_millis(1)))
    }

    fn refill(&mut self, destination: &str, rate: f64, now: Instant) -> &mut Bucket {
        let capacity = rate.max(1.0);
        let bucket = self
            .buckets
            .entry(destination.to_owned())
            .or_insert(Bucket {
                tokens: capacity,
                rate,
                at: now,
            });
        if bucket.rate != rate {
            // The limit changed: start over at the new rate.
            *bucket = Bucket {
                tokens: bucket.tokens.min(capacity),
                rate,
                at: now,
            };
        }
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(capacity);
        bucket.at = now;
        bucket
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_without_a_rate() {
        let mut t = Throttle::default();
        assert_eq!(t.available("d", None, Instant::now()), usize::MAX);
    }

    #[test]
    fn bucket_holds_one_second_and_refills_at_the_rate() {
        let mut t = Throttle::default();
        let start = Instant::now();
        assert_eq!(t.available("d", Some(10.0), start), 10);
        t.spend("d", 10);
        assert_eq!(t.available("d", Some(10.0), start), 0);
        let wait = t.next_token_in("d").expect("bucket");
        assert!(wait <= Duration::from_millis(100) && wait > Duration::ZERO);
        assert_eq!(
            t.available("d", Some(10.0), start + Duration::from_millis(350)),
            3
        );
        assert_eq!(
            t.available("d", Some(10.0), start + Duration::from_secs(60)),
            10
        );
    }

    #[test]
    fn slow_rates_allow_one_at_a_time() {
        let mut t = Throttle::default();
        let start = Instant::now();
        assert_eq!(t.available("d", Some(0.5), start), 1);
        t.spend("d", 1);
        assert_eq!(
            t.available("d", Some(0.5), start + Duration::from_secs(1)),
            0
        );
        assert_eq!(
            t.available("d", Some(0.5), start + Duration::from_secs(2)),
            1
        );
    }

    #[test]
    fn destinations_are_independent() {
        let mut t = Throttle::default();
        let now = Instant::now();
        t.available("a", Some(1.0), now);
        t.spend("a", 1);
        assert_eq!(t.available("a", Some(1.0), now), 0);
        assert_eq!(t.available("b", Some(1.0), now), 1);
    }
}
