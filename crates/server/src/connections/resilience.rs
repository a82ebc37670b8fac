//! Per-connection call policies: pacing (GCRA, adapted from the provider's rate-limit headers),
//! a bulkhead (most calls in flight), and a circuit breaker.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::HeaderMap;
use switchboard_core::providers::{RateLimitSpec, ResetFormat};
use switchboard_core::time::{UnixMillis, now_millis};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The longest a reset header may push calls back (a bogus reset must not park a connection).
const MAX_PAUSE: Duration = Duration::from_secs(15 * 60);

/// Paces calls before the provider says no.
pub struct Pacer {
    limiter: Option<DefaultDirectRateLimiter>,
    /// No call before this instant (unix ms): set by `Retry-After`, or a window with no calls
    /// left until its reset.
    paused_until: AtomicI64,
    /// The provider's last rate-limit headers and when they were read (for `/v1/health`).
    last_seen: Mutex<Option<(RateState, UnixMillis)>>,
}

impl Pacer {
    /// A pacer of `requests_per_second` with `burst` (at least 1); `None` paces only by headers.
    pub fn new(requests_per_second: Option<f64>, burst: Option<u32>) -> Self {
        let limiter = requests_per_second
            .filter(|r| r.is_finite() && *r > 0.0)
            .and_then(|rate| {
                let period = Duration::from_secs_f64(1.0 / rate);
                let burst = NonZeroU32::new(burst.unwrap_or(1).max(1))?;
                Quota::with_period(period).map(|q| RateLimiter::direct(q.allow_burst(burst)))
            });
        Self {
            limiter,
            paused_until: AtomicI64::new(0),
            last_seen: Mutex::new(None),
        }
    }

    /// How long the next call must wait, if it may not start now. Taking a GCRA cell is part
    /// of the answer: call again after waiting.
    fn wait(&self) -> Option<Duration> {
        let paused = self.paused_until.load(Ordering::Acquire) - now_millis();
        if paused > 0 {
            return Some(Duration::from_millis(paused as u64));
        }
        let limiter = self.limiter.as_ref()?;
        match limiter.check() {
            Ok(()) => None,
            Err(not_until) => Some(not_until.wait_time_from(DefaultClock::default().now())),
        }
    }

    /// Waits until a call may start, or fails with the wait when it would exceed `budget`.
    pub async fn ready(&self, budget: Duration) -> Result<(), Duration> {
        let deadline = Instant::now() + budget;
        while let Some(wait) = self.wait() {
            if Instant::now() + wait > deadline {
                return Err(wait);
            }
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }

    /// Holds every call until `until` (unix ms), unless already held longer.
    pub fn pause_until(&self, until: UnixMillis) {
        let until = until.min(now_millis() + MAX_PAUSE.as_millis() as i64);
        self.paused_until.fetch_max(until, Ordering::AcqRel);
    }

    /// Remembers what the provider's rate-limit headers said at `now` (when they said anything).
    pub fn observe(&self, rate: RateState, now: UnixMillis) {
        if rate != RateState::default() {
            *self.last_seen.lock().unwrap_or_else(|p| p.into_inner()) = Some((rate, now));
        }
    }

    /// The last rate-limit headers seen, and when.
    pub fn last_seen(&self) -> Option<(RateState, UnixMillis)> {
        *self.last_seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When calls are held until, if in the future.
    pub fn paused_until(&self) -> Option<UnixMillis> {
        let until = self.paused_until.load(Ordering::Acquire);
        (until > now_millis()).then_some(until)
    }
}

/// What the provider's rate-limit headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateState {
    /// Calls left in the window.
    pub remaining: Option<u64>,
    /// When the window resets (unix ms).
    pub reset_at: Option<UnixMillis>,
}

fn header<'a>(headers: &'a HeaderMap, name: &Option<String>) -> Option<&'a str> {
    headers.get(name.as_deref()?)?.to_str().ok().map(str::trim)
}

/// Reads the rate-limit headers a provider file names.
pub fn rate_state(spec: &RateLimitSpec, headers: &HeaderMap, now: UnixMillis) -> RateState {
    if spec.reset_format == ResetFormat::UsedOfLimit {
        // Shopify: `used/limit` of a leaky bucket draining about one call a second.
        let used = header(headers, &spec.limit_header)
            .or_else(|| header(headers, &spec.remaining_header))
            .and_then(|v| v.split_once('/'))
            .and_then(|(used, limit)| {
                Some((used.parse::<u64>().ok()?, limit.parse::<u64>().ok()?))
            });
        return match used {
            Some((used, limit)) => RateState {
                remaining: Some(limit.saturating_sub(used)),
                reset_at: Some(now + 1_000),
            },
            None => RateState::default(),
        };
    }
    let remaining = header(headers, &spec.remaining_header).and_then(|v| v.parse::<u64>().ok());
    let reset_at = header(headers, &spec.reset_header).and_then(|v| match spec.reset_format {
        ResetFormat::UnixSeconds => v.parse::<f64>().ok().map(|s| (s * 1000.0) as i64),
        ResetFormat::UnixMillis => v.parse::<i64>().ok(),
        ResetFormat::Seconds => v.parse::<f64>().ok().map(|s| now + (s * 1000.0) as i64),
        ResetFormat::WindowMillis => v.parse::<i64>().ok().map(|ms| now + ms),
        ResetFormat::HttpDate => httpdate::parse_http_date(v)
            .ok()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64),
        ResetFormat::UsedOfLimit => None,
    });
    RateState {
        remaining,
        reset_at,
    }
}

/// Most calls in flight on one connection.
pub struct Bulkhead {
    slots: std::sync::Arc<Semaphore>,
}

impl Bulkhead {
    /// A bulkhead of `max` slots.
    pub fn new(max: usize) -> Self {
        Self {
            slots: std::sync::Arc::new(Semaphore::new(max.max(1))),
        }
    }

    /// Waits up to `budget` for a slot.
    pub async fn enter(&self, budget: Duration) -> Option<OwnedSemaphorePermit> {
        tokio::time::timeout(budget, self.slots.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }

    /// Calls in flight.
    pub fn in_flight(&self, max: usize) -> usize {
        max.saturating_sub(self.slots.available_permits())
    }
}

/// The state of a circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls flow.
    Closed,
    /// Calls are refused until the cooldown has passed.
    Open,
    /// One probe is in flight; its result closes or reopens the circuit.
    HalfOpen,
}

impl CircuitState {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

struct CircuitInner {
    state: CircuitState,
    failures: u32,
    opened_at: Option<Instant>,
}

/// Opens after `threshold` consecutive failures; after `cooldown` lets one probe through.
pub struct Circuit {
    threshold: u32,
    cooldown: Duration,
    inner: Mutex<CircuitInner>,
}

impl Circuit {
    /// A closed circuit; `threshold` 0 never opens.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold,
            cooldown,
            inner: Mutex::new(CircuitInner {
                state: CircuitState::Closed,
                failures: 0,
                opened_at: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CircuitInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a call may go now; `Err(wait)` while open (or while a probe is out).
    pub fn admit(&self) -> Result<(), Duration> {
        let mut inner = self.lock();
        match inner.state {
            CircuitState::Closed => Ok(()),
            CircuitState::HalfOpen => Err(self.cooldown),
            CircuitState::Open => {
                let elapsed = inner.opened_at.map(|t| t.elapsed()).unwrap_or_default();
                if elapsed >= self.cooldown {
                    inner.state = CircuitState::HalfOpen;
                    Ok(())
                } else {
                    Err(self.cooldown - elapsed)
                }
            }
        }
    }

    /// A call succeeded (or failed in a way that says nothing about the provider's health).
    pub fn success(&self) {
        let mut inner = self.lock();
        inner.failures = 0;
        inner.state = CircuitState::Closed;
        inner.opened_at = None;
    }

    /// A call failed (network error, timeout, 5xx).
    pub fn failure(&self) {
        if self.threshold == 0 {
            return;
        }
        let mut inner = self.lock();
        inner.failures = inner.failures.saturating_add(1);
        if inner.state == CircuitState::HalfOpen || inner.failures >= self.threshold {
            if inner.state != CircuitState::Open {
                tracing::warn!(failures = inner.failures, "connection circuit opened");
            }
            inner.state = CircuitState::Open;
            inner.opened_at = Some(Instant::now());
        }
    }

    /// The current state.
    pub fn state(&self) -> CircuitState {
        self.lock().state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn reset_headers_in_every_format() {
        let now = 1_700_000_000_000;
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        headers.insert("x-ratelimit-reset", HeaderValue::from_static("1700000030"));
        let mut spec = RateLimitSpec {
            remaining_header: Some("x-ratelimit-remaining".into()),
            reset_header: Some("x-ratelimit-reset".into()),
            ..Default::default()
        };
        assert_eq!(
            rate_state(&spec, &headers, now),
            RateState {
                remaining: Some(0),
                reset_at: Some(now + 30_000)
            }
        );
        spec.reset_format = ResetFormat::Seconds;
        headers.insert("x-ratelimit-reset", HeaderValue::from_static("2"));
        assert_eq!(rate_state(&spec, &headers, now).reset_at, Some(now + 2_000));
        spec.reset_format = ResetFormat::UnixMillis;
        headers.insert(
            "x-ratelimit-reset",
            HeaderValue::from_static("1700000000500"),
        );
        assert_eq!(rate_state(&spec, &headers, now).reset_at, Some(now + 500));
        spec.reset_format = ResetFormat::UsedOfLimit;
        spec.limit_header = Some("x-shopify-shop-api-call-limit".into());
        headers.insert(
            "x-shopify-shop-api-call-limit",
            HeaderValue::from_static("40/40"),
        );
        assert_eq!(rate_state(&spec, &headers, now).remaining, Some(0));
        // Garbage is ignored, never a panic.
        spec.reset_format = ResetFormat::HttpDate;
        headers.insert("x-ratelimit-reset", HeaderValue::from_static("soon"));
        assert_eq!(rate_state(&spec, &headers, now).reset_at, None);
    }

    #[test]
    fn circuit_opens_probes_and_closes() {
        let circuit = Circuit::new(2, Duration::from_millis(30));
        circuit.failure();
        assert!(circuit.admit().is_ok());
        circuit.failure();
        assert_eq!(circuit.state(), CircuitState::Open);
        assert!(circuit.admit().is_err());
        std::thread::sleep(Duration::from_millis(40));
        assert!(circuit.admit().is_ok(), "one probe after the cooldown");
        assert!(circuit.admit().is_err(), "only one");
        circuit.failure();
        assert_eq!(circuit.state(), CircuitState::Open);
        std::thread::sleep(Duration::from_millis(40));
        assert!(circuit.admit().is_ok());
        circuit.success();
        assert_eq!(circuit.state(), CircuitState::Closed);
    }

    #[tokio::test]
    async fn pacer_spaces_calls_and_honours_pauses() {
        let pacer = Pacer::new(Some(50.0), Some(1));
        let started = Instant::now();
        for _ in 0..5 {
            pacer.ready(Duration::from_secs(5)).await.expect("ready");
        }
        // Four gaps of 20 ms.
        assert!(started.elapsed() >= Duration::from_millis(75));
        pacer.pause_until(now_millis() + 10_000);
        let wait = pacer
            .ready(Duration::from_millis(10))
            .await
            .expect_err("paused");
        assert!(wait > Duration::from_secs(5));
    }
}
