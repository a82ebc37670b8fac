//! Retry schedules: when the next attempt of a delivery happens, if at all.
//!
//! The first attempt is immediate. A schedule lists the delays before each retry; exponential
//! policies compute them. Every delay gets ±20% jitter so that a recovering receiver is not hit by
//! a synchronized wave. A receiver's `Retry-After` is honoured as a lower bound, capped so that a
//! hostile or confused receiver cannot park a delivery for days.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::duration;

/// The longest `Retry-After` we honour; longer values are clamped to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60 * 60);

/// Jitter applied to every computed delay: the delay is multiplied by a uniform factor in
/// `[1 - JITTER, 1 + JITTER]`.
pub const JITTER: f64 = 0.2;

/// How a destination retries. In TOML: `retry = { schedule = ["5s", "5m"] }` or
/// `retry = { exponential = { base = "1s", factor = 2.0, max_delay = "1h", attempts = 10 } }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RetryPolicy {
    /// Explicit delays before each retry; total attempts are `len + 1`.
    Schedule(#[serde(with = "duration::human_list")] Vec<Duration>),
    /// Exponential back-off.
    Exponential(Exponential),
}

/// Parameters of an exponential back-off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exponential {
    /// Delay before the first retry.
    #[serde(with = "duration::human")]
    pub base: Duration,
    /// Multiplier between consecutive delays (≥ 1.0).
    pub factor: f64,
    /// Upper bound of any single delay.
    #[serde(with = "duration::human")]
    pub max_delay: Duration,
    /// Total number of attempts, the first one included (≥ 1).
    pub attempts: u32,
}

impl Default for RetryPolicy {
    /// Svix's schedule: immediately, then 5s, 5m, 30m, 2h, 5h, 10h, 10h.
    fn default() -> Self {
        const MIN: u64 = 60;
        const HOUR: u64 = 60 * MIN;
        Self::Schedule(
            [
                5,
                5 * MIN,
                30 * MIN,
                2 * HOUR,
                5 * HOUR,
                10 * HOUR,
                10 * HOUR,
            ]
            .into_iter()
            .map(Duration::from_secs)
            .collect(),
        )
    }
}

impl RetryPolicy {
    /// Checks the policy's parameters; returns a message for the user otherwise.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Self::Schedule(delays) if delays.len() > 100 => {
                Err("retry schedule has more than 100 entries".into())
            }
            Self::Schedule(_) => Ok(()),
            Self::Exponential(e) => {
                if !(e.factor.is_finite() && e.factor >= 1.0) {
                    return Err("retry.exponential.factor must be a number ≥ 1.0".into());
                }
                if e.attempts == 0 || e.attempts > 100 {
                    return Err("retry.exponential.attempts must be between 1 and 100".into());
                }
                if e.max_delay < e.base {
                    return Err("retry.exponential.max_delay must be ≥ base".into());
                }
                Ok(())
            }
        }
    }

    /// Total attempts allowed, the first one included.
    pub fn max_attempts(&self) -> u32 {
        match self {
            Self::Schedule(delays) => delays.len() as u32 + 1,
            Self::Exponential(e) => e.attempts,
        }
    }

    /// The un-jittered delay after `attempts_made` attempts have failed, or `None` when the
    /// delivery has used up its attempts.
    pub fn base_delay(&self, attempts_made: u32) -> Option<Duration> {
        if attempts_made == 0 {
            return Some(Duration::ZERO);
        }
        if attempts_made >= self.max_attempts() {
            return None;
        }
        match self {
            Self::Schedule(delays) => delays.get(attempts_made as usize - 1).copied(),
            Self::Exponential(e) => {
                let exp = e.factor.powi(attempts_made as i32 - 1);
                let secs = (e.base.as_secs_f64() * exp).min(e.max_delay.as_secs_f64());
                Some(Duration::from_secs_f64(secs))
            }
        }
    }

    /// When to try again after `attempts_made` failed attempts: the jittered delay, raised to the
    /// receiver's `Retry-After` (clamped to [`MAX_RETRY_AFTER`]) when that is longer. `None`
    /// means no attempts are left.
    pub fn next_delay(
        &self,
        attempts_made: u32,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Option<Duration> {
        let base = self.base_delay(attempts_made)?;
        let jittered = jitter(base, rng);
        Some(match retry_after {
            Some(ra) => jittered.max(ra.min(MAX_RETRY_AFTER)),
            None => jittered,
        })
    }
}

/// Applies ±[`JITTER`] to a delay.
pub fn jitter(delay: Duration, rng: &mut impl Rng) -> Duration {
    if delay.is_zero() {
        return delay;
    }
    let factor = rng.random_range((1.0 - JITTER)..=(1.0 + JITTER));
    Duration::from_secs_f64(delay.as_secs_f64() * factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    #[test]
    fn default_is_svix_schedule() {
        let p = RetryPolicy::default();
        assert_eq!(p.max_attempts(), 8);
        assert_eq!(p.base_delay(0), Some(Duration::ZERO));
        assert_eq!(p.base_delay(1), Some(Duration::from_secs(5)));
        assert_eq!(p.base_delay(2), Some(Duration::from_secs(300)));
        assert_eq!(p.base_delay(7), Some(Duration::from_secs(36_000)));
        assert_eq!(p.base_delay(8), None);
    }

    #[test]
    fn exponential_caps_and_stops() {
        let p = RetryPolicy::Exponential(Exponential {
            base: Duration::from_secs(1),
            factor: 2.0,
            max_delay: Duration::from_secs(10),
            attempts: 6,
        });
        let delays: Vec<_> = (1..7).map(|n| p.base_delay(n)).collect();
        assert_eq!(
            delays,
            vec![
                Some(Duration::from_secs(1)),
                Some(Duration::from_secs(2)),
                Some(Duration::from_secs(4)),
                Some(Duration::from_secs(8)),
                Some(Duration::from_secs(10)),
                None
            ]
        );
    }

    #[test]
    fn retry_after_is_a_lower_bound_with_a_cap() {
        let p = RetryPolicy::Schedule(vec![Duration::from_secs(1)]);
        let d = p
            .next_delay(1, Some(Duration::from_secs(30)), &mut rng())
            .expect("attempt left");
        assert_eq!(d, Duration::from_secs(30));
        let d = p
            .next_delay(1, Some(Duration::from_secs(86_400)), &mut rng())
            .expect("attempt left");
        assert_eq!(d, MAX_RETRY_AFTER);
        assert_eq!(
            p.next_delay(2, Some(Duration::from_secs(1)), &mut rng()),
            None
        );
    }

    #[test]
    fn toml_forms() {
        #[derive(Deserialize)]
        struct W {
            retry: RetryPolicy,
        }
        let w: W = toml::from_str(r#"retry = { schedule = ["5s", "5m"] }"#).expect("schedule");
        assert_eq!(w.retry.max_attempts(), 3);
        let w: W = toml::from_str(
            r#"retry = { exponential = { base = "1s", factor = 2.0, max_delay = "1h", attempts = 10 } }"#,
        )
        .expect("exponential");
        assert_eq!(w.retry.max_attempts(), 10);
        assert!(toml::from_str::<W>(r#"retry = { linear = 3 }"#).is_err());
    }

    proptest! {
        #[test]
        fn jitter_stays_within_twenty_percent(secs in 1u64..1_000_000, seed: u64) {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let d = jitter(Duration::from_secs(secs), &mut rng).as_secs_f64();
            let s = secs as f64;
            prop_assert!(d >= s * 0.8 - 1e-6 && d <= s * 1.2 + 1e-6);
        }

        #[test]
        fn schedules_terminate(delays in proptest::collection::vec(0u64..100_000, 0..20), seed: u64) {
            let p = RetryPolicy::Schedule(delays.iter().map(|s| Duration::from_secs(*s)).collect());
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut n = 0;
            while p.next_delay(n, None, &mut rng).is_some() { n += 1; }
            prop_assert_eq!(n, delays.len() as u32 + 1);
        }
    }
}
