//! The load generator: `concurrency` clients, each with its own keep-alive HTTP/1.1 connection,
//! posting the same JSON body to `/in/bench` back to back (closed loop: a client sends its next
//! request as soon as the previous one is answered). With several server nodes, client `i` posts
//! to node `i mod nodes` (round robin).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::CONTENT_TYPE;
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinSet;

/// The HTTP client type: plain HTTP/1.1 over TCP with a whole-body request.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A client that keeps at most one idle connection: used by one sequential caller, it keeps
/// reusing a single keep-alive connection.
pub fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1)
        .pool_idle_timeout(None)
        .build(connector)
}

/// A JSON body of about `size` bytes shaped like a payment provider's webhook.
pub fn body(size: usize) -> Bytes {
    let head = r#"{"id":"evt_1QbQ8d2eZvKYlo2C0x3kD5Rf","type":"invoice.paid","created":1735689600,"livemode":false,"data":{"object":{"id":"in_1QbQ8c2eZvKYlo2CkWj7mQ9p","object":"invoice","amount_due":4200,"amount_paid":4200,"currency":"usd","customer":"cus_RUy3x9Lw2mQp7Z","status":"paid","lines":[{"id":"il_1QbQ8c2eZvKYlo2C","amount":4200,"description":"Pro plan (monthly)"}],"note":""#;
    let tail = r#""}}}"#;
    let padding = size.saturating_sub(head.len() + tail.len());
    let mut text = String::with_capacity(head.len() + padding + tail.len());
    text.push_str(head);
    text.extend(std::iter::repeat_n('x', padding));
    text.push_str(tail);
    Bytes::from(text)
}

/// When the clients stop.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// Run for `warmup + duration`; only requests that start after the warm-up and finish
    /// before the end are measured.
    Timed {
        /// Excluded start-up period.
        warmup: Duration,
        /// Measured period.
        duration: Duration,
    },
    /// Send exactly this many requests in total (all measured), e.g. to pre-load a backlog.
    Count(u64),
}

/// One load run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Switchboard's addresses (one per node); clients are spread over them round robin.
    pub addrs: Vec<SocketAddr>,
    /// Concurrent clients (= connections).
    pub concurrency: usize,
    /// Request body.
    pub body: Bytes,
    /// When to stop.
    pub stop: Stop,
    /// Keep per-request latencies (4 bytes each) for percentiles.
    pub record_latencies: bool,
    /// Print progress to stderr every this many requests (count runs only).
    pub progress_every: Option<u64>,
}

/// What a load run measured.
#[derive(Debug, Default)]
pub struct Outcome {
    /// `202 Accepted` responses (events stored).
    pub accepted: u64,
    /// Responses with any other status.
    pub rejected: u64,
    /// Requests that got no response (connection or protocol errors).
    pub transport_errors: u64,
    /// One example of a failure, for the report.
    pub example_error: Option<String>,
    /// Length of the measured period.
    pub elapsed: Duration,
    /// Latencies in microseconds of measured `202` responses (empty unless recorded).
    pub latencies_us: Vec<u32>,
}

impl Outcome {
    /// Accepted requests per second over the measured period.
    pub fn rate(&self) -> f64 {
        per_second(self.accepted, self.elapsed)
    }

    /// Requests that did not get a `202`.
    pub fn errors(&self) -> u64 {
        self.rejected + self.transport_errors
    }

    fn merge(&mut self, other: Self) {
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        self.transport_errors += other.transport_errors;
        if self.example_error.is_none() {
            self.example_error = other.example_error;
        }
        self.latencies_us.extend(other.latencies_us);
    }
}

/// `count / elapsed`, 0 for an empty period.
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    if elapsed.is_zero() {
        0.0
    } else {
        count as f64 / elapsed.as_secs_f64()
    }
}

/// Shared between the clients of one run.
struct Plan {
    /// `/in/bench` of each node.
    uris: Vec<Uri>,
    body: Bytes,
    record: bool,
    /// Measurement window (timed runs).
    window: Option<(Instant, Instant)>,
    /// Total requests (count runs) and how many were handed out so far.
    count: Option<u64>,
    issued: AtomicU64,
    progress_every: Option<u64>,
    started: Instant,
}

/// Runs the load and returns what it measured.
pub async fn run(spec: &Spec) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let (window, count) = match spec.stop {
        Stop::Timed { warmup, duration } => {
            let from = started + warmup;
            (Some((from, from + duration)), None)
        }
        Stop::Count(n) => (None, Some(n)),
    };
    if spec.addrs.is_empty() {
        anyhow::bail!("no server address to send to");
    }
    let uris = spec
        .addrs
        .iter()
        .map(|addr| format!("http://{addr}/in/{}", crate::harness::SOURCE).parse())
        .collect::<Result<Vec<Uri>, _>>()?;
    let plan = Arc::new(Plan {
        uris,
        body: spec.body.clone(),
        record: spec.record_latencies,
        window,
        count,
        issued: AtomicU64::new(0),
        progress_every: spec.progress_every,
        started,
    });
    let mut clients = JoinSet::new();
    for index in 0..spec.concurrency.max(1) {
        clients.spawn(client_loop(plan.clone(), index));
    }
    let mut outcome = Outcome::default();
    while let Some(joined) = clients.join_next().await {
        outcome.merge(joined?);
    }
    outcome.elapsed = match window {
        Some((from, to)) => to - from,
        None => started.elapsed(),
    };
    Ok(outcome)
}

async fn client_loop(plan: Arc<Plan>, index: usize) -> Outcome {
    let client = client();
    let uri = plan.uris[index % plan.uris.len()].clone();
    let mut outcome = Outcome::default();
    loop {
        let started = Instant::now();
        if let Some((_, end)) = plan.window
            && started >= end
        {
            break;
        }
        if let Some(total) = plan.count {
            let n = plan.issued.fetch_add(1, Ordering::Relaxed);
            if n >= total {
                break;
            }
            if let Some(every) = plan.progress_every
                && n > 0
                && n.is_multiple_of(every)
            {
                eprintln!(
                    "  … {n}/{total} sent, {:.0} req/s, RSS {} MiB",
                    per_second(n, plan.started.elapsed()),
                    crate::report::Memory::read().rss_kib / 1024
                );
            }
        }
        let request = Request::post(uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(plan.body.clone()));
        let result = match request {
            Ok(request) => match client.request(request).await {
                // Read the whole response so the connection can be reused.
                Ok(response) => {
                    let status = response.status();
                    match response.into_body().collect().await {
                        Ok(_) => Ok(status),
                        Err(error) => Err(error.to_string()),
                    }
                }
                Err(error) => Err(error.to_string()),
            },
            Err(error) => Err(error.to_string()),
        };
        let finished = Instant::now();
        let measured = match plan.window {
            Some((from, to)) => started >= from && finished <= to,
            None => true,
        };
        if !measured {
            continue;
        }
        match result {
            Ok(StatusCode::ACCEPTED) => {
                outcome.accepted += 1;
                if plan.record {
                    let micros = (finished - started).as_micros();
                    outcome
                        .latencies_us
                        .push(u32::try_from(micros).unwrap_or(u32::MAX));
                }
            }
            Ok(status) => {
                outcome.rejected += 1;
                outcome
                    .example_error
                    .get_or_insert_with(|| format!("HTTP {status}"));
            }
            Err(error) => {
                outcome.transport_errors += 1;
                outcome.example_error.get_or_insert(error);
                // Don't spin on a dead server.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    outcome
}

/// Latency percentiles of one run, in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    /// Median.
    pub p50: u32,
    /// 99th percentile.
    pub p99: u32,
    /// 99.9th percentile.
    pub p999: u32,
    /// Slowest request.
    pub max: u32,
}

impl Percentiles {
    /// Nearest-rank percentiles of `latencies` (sorted in place); `None` when empty.
    pub fn of(latencies: &mut [u32]) -> Option<Self> {
        if latencies.is_empty() {
            return None;
        }
        latencies.sort_unstable();
        let rank = |q: f64| {
            let index = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
            latencies[index - 1]
        };
        Some(Self {
            p50: rank(0.50),
            p99: rank(0.99),
            p999: rank(0.999),
            max: latencies[latencies.len() - 1],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_requested_size_and_is_json() {
        let b = body(500);
        assert_eq!(b.len(), 500);
        assert!(b.starts_with(b"{") && b.ends_with(b"}"));
    }

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<u32> = (1..=1000).rev().collect();
        let p = Percentiles::of(&mut v).expect("non-empty");
        assert_eq!((p.p50, p.p99, p.p999, p.max), (500, 990, 999, 1000));
        assert!(Percentiles::of(&mut []).is_none());
    }
}
