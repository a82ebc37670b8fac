//! Per-connection call policies: pacing (GCRA at the connection's pace shared out between the
//! live nodes, adapted from the provider's rate-limit headers), a bulkhead (most calls in
//! flight), and a circuit breaker.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::HeaderMap;
use switchboard_core::providers::{RateLimitSpec, ResetFormat};
use switchboard_core::time::{UnixMillis, now_millis};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::nodes::NodeCount;

/// The longest a reset header may push calls back (a bogus reset must not park a connection).
const MAX_PAUSE: Duration = Duration::from_secs(15 * 60);

/// The longest gap between two calls a pace may ask for (a rate below one call an hour is
/// paced at one call an hour).
const MAX_PERIOD: Duration = Duration::from_secs(60 * 60);

/// A pace: calls per second, and how many may go at once after a quiet spell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    /// Calls per second (finite and above 0).
    pub requests_per_second: f64,
    /// Calls that may start back to back (at least 1).
    pub burst: u32,
}

impl Pace {
    /// The pace of `requests_per_second` with `burst` (1 when unset, at least 1); `None` when
    /// the rate is unset, not finite or not above 0 (calls are then paced only by headers).
    pub fn new(requests_per_second: Option<f64>, burst: Option<u32>) -> Option<Self> {
        let rate = requests_per_second.filter(|r| r.is_finite() && *r > 0.0)?;
        Some(Self {
            requests_per_second: rate,
            burst: burst.unwrap_or(1).max(1),
        })
    }

    /// One node's share of this pace (a total across nodes) when `nodes` nodes are live: the
    /// rate divided by the count (never 0), the burst divided by it and rounded down (so the
    /// shares never add up to more than the burst), but at least 1.
    pub fn per_node(self, nodes: u32) -> Self {
        let nodes = nodes.max(1);
        let rate = self.requests_per_second / f64::from(nodes);
        Self {
            requests_per_second: if rate > 0.0 { rate } else { f64::MIN_POSITIVE },
            burst: (self.burst / nodes).max(1),
        }
    }

    /// A GCRA limiter of this pace, starting with its whole burst available.
    fn limiter(self) -> DefaultDirectRateLimiter {
        let period = Duration::try_from_secs_f64(1.0 / self.requests_per_second)
            .unwrap_or(MAX_PERIOD)
            .clamp(Duration::from_nanos(1), MAX_PERIOD);
        // GCRA keeps `period × burst` in u64 nanoseconds: bound the burst so it cannot overflow.
        let most = u64::MAX / 4 / (period.as_nanos() as u64).max(1);
        let burst = u32::try_from(u64::from(self.burst).min(most)).unwrap_or(u32::MAX);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        RateLimiter::direct(quota)
    }
}

/// The limiter a pacer uses now and the node count it was built for.
struct Built {
    nodes: u32,
    limiter: Arc<DefaultDirectRateLimiter>,
}

/// Paces calls before the provider says no.
///
/// The configured pace is the connection's total across every node sharing the store: each
/// node paces at its [`Pace::per_node`] share for the live node count ([`NodeCount`], set by
/// the delivery worker's heartbeat). When the count changes, the next call rebuilds the GCRA
/// limiter with the new share; the holds set by the provider's headers are kept.
pub struct Pacer {
    /// Connection id (the metric's label).
    connection: String,
    /// The configured pace (the total across nodes); `None` paces only by headers.
    pace: Option<Pace>,
    /// Live nodes sharing the pace.
    nodes: NodeCount,
    /// The limiter of this node's share, built for the node count it names.
    built: RwLock<Option<Built>>,
    /// No call before this instant (unix ms): set by `Retry-After`, or a window with no calls
    /// left until its reset.
    paused_until: AtomicI64,
    /// The provider's last rate-limit headers and when they were read (for `/v1/health`).
    last_seen: Mutex<Option<(RateState, UnixMillis)>>,
}

impl Pacer {
    /// A pacer of connection `connection` at `pace` in all (`None`: only by headers), shared
    /// between the `nodes` live nodes.
    pub fn new(connection: &str, pace: Option<Pace>, nodes: NodeCount) -> Self {
        Self {
            connection: connection.to_owned(),
            pace,
            nodes,
            built: RwLock::new(None),
            paused_until: AtomicI64::new(0),
            last_seen: Mutex::new(None),
        }
    }

    /// The configured pace (the total across nodes).
    pub fn pace(&self) -> Option<Pace> {
        self.pace
    }

    /// The live node count this pacer divides by now.
    pub fn nodes(&self) -> u32 {
        self.nodes.get()
    }

    /// This node's share of the pace now.
    pub fn node_pace(&self) -> Option<Pace> {
        self.pace.map(|pace| pace.per_node(self.nodes()))
    }

    /// The limiter for the current node count, rebuilt when the count has changed since it
    /// was built. `None` without a configured pace.
    fn limiter(&self) -> Option<Arc<DefaultDirectRateLimiter>> {
        let pace = self.pace?;
        let nodes = self.nodes.get();
        {
            let built = self.built.read().unwrap_or_else(|p| p.into_inner());
            if let Some(built) = built.as_ref().filter(|b| b.nodes == nodes) {
                return Some(built.limiter.clone());
            }
        }
        let mut built = self.built.write().unwrap_or_else(|p| p.into_inner());
        if let Some(built) = built.as_ref().filter(|b| b.nodes == nodes) {
            return Some(built.limiter.clone());
        }
        let share = pace.per_node(nodes);
        if built.is_some() {
            tracing::info!(
                connection = %self.connection,
                nodes,
                requests_per_second = share.requests_per_second,
                burst = share.burst,
                "connection pace shared out again between the live nodes"
            );
        }
        metrics::gauge!("switchboard_connection_node_requests_per_second", "connection" => self.connection.clone())
            .set(share.requests_per_second);
        let limiter = Arc::new(share.limiter());
        *built = Some(Built {
            nodes,
            limiter: limiter.clone(),
        });
        Some(limiter)
    }

    /// How long the next call must wait, if it may not start now. Taking a GCRA cell is part
    /// of the answer: call again after waiting.
    fn wait(&self) -> Option<Duration> {
        let paused = self.paused_until.load(Ordering::Acquire) - now_millis();
        if paused > 0 {
            return Some(Duration::from_millis(paused as u64));
        }
        let limiter = self.limiter()?;
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

    #[test]
    fn pace_is_split_between_live_nodes() {
        let pace = |rate, burst| Pace::new(Some(rate), Some(burst)).expect("pace");
        let split = |rate, burst, nodes| {
            let share = pace(rate, burst).per_node(nodes);
            (share.requests_per_second, share.burst)
        };
        // One node (SQLite, or a lone PostgreSQL node): nothing changes.
        assert_eq!(split(10.0, 5, 1), (10.0, 5));
        assert_eq!(split(10.0, 5, 2), (5.0, 2), "burst rounded down");
        let (rate, burst) = split(10.0, 5, 3);
        assert!((rate - 10.0 / 3.0).abs() < 1e-12, "{rate}");
        assert_eq!(burst, 1);
        assert_eq!(split(0.5, 1, 3).1, 1, "burst at least 1");
        assert!(split(0.5, 1, 3).0 > 0.0, "rate never 0");
        assert!(split(f64::MIN_POSITIVE, 1, 7).0 > 0.0, "rate never 0");
        assert_eq!(split(100.0, 40, 3), (100.0 / 3.0, 13));
        // 0 nodes (never reported) counts as 1.
        assert_eq!(split(10.0, 4, 0), (10.0, 4));
        // A pace needs a usable rate; the burst defaults to 1.
        assert_eq!(Pace::new(None, Some(3)), None);
        assert_eq!(Pace::new(Some(0.0), None), None);
        assert_eq!(Pace::new(Some(f64::NAN), None), None);
        assert_eq!(Pace::new(Some(2.0), None).map(|p| p.burst), Some(1));
        assert_eq!(Pace::new(Some(2.0), Some(0)).map(|p| p.burst), Some(1));
    }

    #[tokio::test]
    async fn pacer_follows_the_node_count_and_keeps_its_holds() {
        let nodes = NodeCount::new();
        let pacer = Pacer::new("c", Pace::new(Some(1.0), Some(4)), nodes.clone());
        assert_eq!(pacer.node_pace().map(|p| p.burst), Some(4));
        // Alone: a burst of 4 goes at once, the fifth call waits.
        for _ in 0..4 {
            assert_eq!(pacer.wait(), None);
        }
        assert!(pacer.wait().is_some());
        // Two nodes: the limiter is rebuilt for a burst of 2 at 0.5/s.
        nodes.set(2);
        assert_eq!(pacer.nodes(), 2);
        assert_eq!(
            pacer.node_pace(),
            Some(Pace {
                requests_per_second: 0.5,
                burst: 2
            })
        );
        assert_eq!(pacer.wait(), None);
        assert_eq!(pacer.wait(), None);
        let wait = pacer.wait().expect("the third call waits");
        assert!(wait > Duration::from_millis(1500), "{wait:?}");
        // A hold the provider set survives a change of the node count.
        pacer.pause_until(now_millis() + 60_000);
        nodes.set(3);
        let held = pacer.wait().expect("held");
        assert!(held > Duration::from_secs(50), "{held:?}");
        assert!(pacer.paused_until().is_some());
    }

    #[tokio::test]
    async fn pacer_spaces_calls_and_honours_pauses() {
        let pacer = Pacer::new("c", Pace::new(Some(50.0), Some(1)), NodeCount::new());
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
