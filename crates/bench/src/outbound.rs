//! Outbound webhooks: one tenant whose endpoints all point at in-process receivers, fed through
//! the publish API (`POST /v1/tenants/{t}/events`), as a product user would.
//!
//! Every endpoint `i` gets the URL `…/e/{i}` so the receiver attributes each request to its
//! endpoint; every payload carries the event's sequence number (`{"pad":…,"seq":n}`), and the
//! receiver notes the instant each request arrived. Lags are computed after the run: arrival at
//! the receiver minus the instant the publisher got the event's `202` (a delivery that arrives
//! before the `202` reached the client counts as 0).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::Args;
use crate::harness::{Server, Settings};
use crate::load::{HttpClient, Percentiles, per_second};
use crate::report::{Output, cpu_time, ms};

/// The tenant every outbound benchmark publishes to.
const TENANT: &str = "bench";
/// The admin token the in-process server is started with.
pub(crate) const ADMIN_TOKEN: &str = "bench-admin-token-not-a-secret";
/// One second, the product's delivery-lag target for healthy endpoints.
const TARGET: Duration = Duration::from_secs(1);

/// Starts Switchboard with the management API enabled (admin token) and no sources.
async fn start_server(settings: &Settings) -> anyhow::Result<Server> {
    Server::start_with(settings, None, |config| {
        config.server.admin_token = Some(ADMIN_TOKEN.into());
    })
    .await
}

/// A client that keeps up to `idle` connections to one host: shared by concurrent callers.
fn pooled_client(idle: usize) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(idle)
        .pool_idle_timeout(None)
        .build(connector)
}

/// `POST`s `body` with the admin token; returns the status and the whole response body.
async fn post(client: &HttpClient, uri: &Uri, body: Bytes) -> anyhow::Result<(StatusCode, Bytes)> {
    let request = Request::post(uri.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
        .body(Full::new(body))?;
    let response = client.request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// `POST`s JSON to the management API and fails unless it answers `expect`.
pub(crate) async fn api(
    client: &HttpClient,
    addr: SocketAddr,
    path: &str,
    body: &Value,
    expect: StatusCode,
) -> anyhow::Result<Value> {
    let uri: Uri = format!("http://{addr}{path}").parse()?;
    let (status, body) = post(client, &uri, Bytes::from(body.to_string())).await?;
    if status != expect {
        bail!(
            "POST {path} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// One endpoint to create.
struct EndpointPlan {
    url: String,
    /// Event types it subscribes to (empty: all).
    event_types: Vec<String>,
    /// Per-attempt timeout (`None`: the default).
    timeout: Option<Duration>,
}

/// Creates the tenant and its endpoints (ids `ep-00000`…, in order, `concurrency` at a time).
async fn create_endpoints(
    addr: SocketAddr,
    plans: Vec<EndpointPlan>,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let client = crate::load::client();
    api(
        &client,
        addr,
        "/v1/tenants",
        &json!({"id": TENANT, "name": "Benchmark tenant"}),
        StatusCode::CREATED,
    )
    .await?;
    let plans = Arc::new(plans);
    let next = Arc::new(AtomicU64::new(0));
    let mut creators = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (plans, next) = (plans.clone(), next.clone());
        creators.spawn(async move {
            let client = crate::load::client();
            let path = format!("/v1/tenants/{TENANT}/endpoints");
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(plan) = plans.get(i) else {
                    return anyhow::Ok(());
                };
                let mut body = json!({"id": format!("ep-{i:05}"), "url": plan.url});
                if !plan.event_types.is_empty() {
                    body["event_types"] = json!(plan.event_types);
                }
                if let Some(timeout) = plan.timeout {
                    body["timeout"] = json!(humantime::format_duration(timeout).to_string());
                }
                api(&client, addr, &path, &body, StatusCode::CREATED).await?;
            }
        });
    }
    while let Some(joined) = creators.join_next().await {
        joined??;
    }
    Ok(started.elapsed())
}

/// The publish request of event `seq`: type `event_type`, payload of about `size` bytes.
fn publish_body(seq: u32, event_type: &str, size: usize) -> Bytes {
    let pad = "x".repeat(size.saturating_sub(24));
    Bytes::from(json!({"type": event_type, "payload": {"seq": seq, "pad": pad}}).to_string())
}

/// The `seq` of a delivered payload (`…"seq":123…`), without a full JSON parse.
fn parse_seq(body: &[u8]) -> Option<u32> {
    const KEY: &[u8] = b"\"seq\":";
    let at = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits = body[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&body[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// One published event.
#[derive(Debug, Clone, Copy)]
struct Publish {
    seq: u32,
    sent: Instant,
    /// When the `202` was read; `None` when the publish failed.
    acked: Option<Instant>,
}

/// Publishes event `seq` and times it; the error text on failure.
async fn publish_one(
    client: &HttpClient,
    uri: &Uri,
    seq: u32,
    body: Bytes,
) -> (Publish, Option<String>) {
    let sent = Instant::now();
    let result = post(client, uri, body).await;
    let acked = Instant::now();
    match result {
        Ok((StatusCode::ACCEPTED, _)) => (
            Publish {
                seq,
                sent,
                acked: Some(acked),
            },
            None,
        ),
        Ok((status, body)) => (
            Publish {
                seq,
                sent,
                acked: None,
            },
            Some(format!("HTTP {status}: {}", String::from_utf8_lossy(&body))),
        ),
        Err(error) => (
            Publish {
                seq,
                sent,
                acked: None,
            },
            Some(error.to_string()),
        ),
    }
}

/// A request as the receiver saw it.
#[derive(Debug, Clone, Copy)]
struct Sample {
    endpoint: u32,
    seq: u32,
    at: Instant,
}

struct SinkState {
    /// How long to wait before answering `200`.
    delay: Duration,
    arrived: AtomicU64,
    answered: AtomicU64,
    samples: Mutex<Vec<Sample>>,
}

/// A loopback receiver for many endpoints: `POST /e/{endpoint}` answers `200` after `delay`
/// and notes which endpoint got which event when.
struct Sink {
    base: String,
    state: Arc<SinkState>,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl Sink {
    async fn start(delay: Duration, expected: usize) -> anyhow::Result<Self> {
        let state = Arc::new(SinkState {
            delay,
            arrived: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            samples: Mutex::new(Vec::with_capacity(expected)),
        });
        let app = Router::new()
            .route("/e/{endpoint}", routing::post(sink))
            .with_state(state.clone());
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let base = format!("http://{}/e", listener.local_addr()?);
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        });
        Ok(Self {
            base,
            state,
            shutdown,
            task,
        })
    }

    fn url(&self, endpoint: usize) -> String {
        format!("{}/{endpoint}", self.base)
    }

    /// Requests that arrived (answered or not yet).
    fn arrived(&self) -> u64 {
        self.state.arrived.load(Ordering::Relaxed)
    }

    /// Requests answered.
    fn answered(&self) -> u64 {
        self.state.answered.load(Ordering::Relaxed)
    }

    fn samples(&self) -> Vec<Sample> {
        lock(&self.state.samples).clone()
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        // Held requests and kept-alive connections may delay a graceful stop: don't wait.
        if tokio::time::timeout(Duration::from_secs(2), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

async fn sink(
    State(state): State<Arc<SinkState>>,
    Path(endpoint): Path<u32>,
    body: Bytes,
) -> StatusCode {
    let at = Instant::now();
    state.arrived.fetch_add(1, Ordering::Relaxed);
    let seq = parse_seq(&body).unwrap_or(u32::MAX);
    lock(&state.samples).push(Sample { endpoint, seq, at });
    if !state.delay.is_zero() {
        tokio::time::sleep(state.delay).await;
    }
    state.answered.fetch_add(1, Ordering::Relaxed);
    StatusCode::OK
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// When each event's `202` was read, by sequence number.
fn acks(publishes: &[Publish]) -> Vec<Option<Instant>> {
    let len = publishes
        .iter()
        .map(|p| p.seq as usize + 1)
        .max()
        .unwrap_or(0);
    let mut acked = vec![None; len];
    for p in publishes {
        acked[p.seq as usize] = p.acked;
    }
    acked
}

/// Lags of the samples, as far as they are known.
struct Lags {
    /// `(event acknowledged, endpoint, lag in µs)` per attributed sample: arrival minus
    /// acknowledgement, 0 for a delivery that arrived before its `202` was read.
    lags: Vec<(Instant, u32, u32)>,
    /// Deliveries that arrived before their `202` was read.
    early: u64,
    /// Samples of unknown or failed events.
    unknown: u64,
}

impl Lags {
    fn of(samples: &[Sample], acked: &[Option<Instant>]) -> Self {
        let mut lags = Self {
            lags: Vec::with_capacity(samples.len()),
            early: 0,
            unknown: 0,
        };
        for s in samples {
            match acked.get(s.seq as usize).copied().flatten() {
                Some(ack) => {
                    if s.at < ack {
                        lags.early += 1;
                    }
                    let micros = s.at.saturating_duration_since(ack).as_micros();
                    let micros = u32::try_from(micros).unwrap_or(u32::MAX);
                    lags.lags.push((ack, s.endpoint, micros));
                }
                None => lags.unknown += 1,
            }
        }
        lags
    }

    fn percentiles(&self) -> Option<Percentiles> {
        let mut micros: Vec<u32> = self.lags.iter().map(|&(_, _, us)| us).collect();
        Percentiles::of(&mut micros)
    }
}

fn seconds(micros: u32) -> String {
    format!("{:.3}", f64::from(micros) / 1e6)
}

/// Waits until `progress()` reaches `target`; fails after `patience` without progress.
async fn wait_for(
    what: &str,
    target: u64,
    patience: Duration,
    progress: impl Fn() -> u64,
) -> anyhow::Result<()> {
    let (mut seen, mut since) = (progress(), Instant::now());
    while seen < target {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let now = progress();
        if now != seen {
            (seen, since) = (now, Instant::now());
        } else if since.elapsed() > patience {
            bail!(
                "gave up waiting for {what}: {seen} of {target}, no progress for {} s",
                patience.as_secs()
            );
        }
    }
    Ok(())
}

/// `--mode fanout`: one tenant with `--endpoints` endpoints (default 100), every one subscribed
/// to everything; `--events` events (default 1,000) published by `--publishers` closed-loop
/// clients. Each publish commits the event and one delivery per endpoint in one transaction.
pub async fn fanout(args: &Args, settings: &Settings, out: Output) -> anyhow::Result<()> {
    let endpoints = args.endpoints.unwrap_or(100);
    let events = args.events.unwrap_or(1_000) as u32;
    let expected = endpoints as u64 * u64::from(events);
    let receiver = Sink::start(Duration::ZERO, expected as usize).await?;
    let server = start_server(settings).await?;
    let plans = (0..endpoints)
        .map(|i| EndpointPlan {
            url: receiver.url(i),
            event_types: Vec::new(),
            timeout: None,
        })
        .collect();
    let setup = create_endpoints(server.addr, plans, 8).await?;
    out.line(&format!(
        "created tenant `{TENANT}` with {endpoints} endpoints in {:.2} s; publishing {events} \
         events with {} clients…",
        setup.as_secs_f64(),
        args.publishers,
    ));

    let uri: Uri = format!("http://{}/v1/tenants/{TENANT}/events", server.addr).parse()?;
    let next = Arc::new(AtomicU64::new(0));
    let cpu_start = cpu_time();
    let started = Instant::now();
    let mut publishers = JoinSet::new();
    for _ in 0..args.publishers.max(1) {
        let (uri, next) = (uri.clone(), next.clone());
        let size = args.body_bytes;
        publishers.spawn(async move {
            let client = crate::load::client();
            let mut done = Vec::new();
            let mut error = None;
            loop {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if seq >= u64::from(events) {
                    return (done, error);
                }
                let seq = seq as u32;
                let (publish, failure) =
                    publish_one(&client, &uri, seq, publish_body(seq, "bench.fanout", size)).await;
                done.push(publish);
                error = error.or(failure);
            }
        });
    }
    let mut publishes = Vec::with_capacity(events as usize);
    let mut example_error = None;
    while let Some(joined) = publishers.join_next().await {
        let (done, error) = joined?;
        publishes.extend(done);
        example_error = example_error.or(error);
    }
    let publish_elapsed = started.elapsed();
    let accepted = publishes.iter().filter(|p| p.acked.is_some()).count() as u64;
    let expected = accepted * endpoints as u64;

    wait_for(
        "the receiver to see every delivery",
        expected,
        Duration::from_secs(60),
        || receiver.arrived(),
    )
    .await?;
    let samples = receiver.samples();
    let last = samples.iter().map(|s| s.at).max().unwrap_or(started);
    let end_to_end = last - started;
    let cpu = cpu_time() - cpu_start;
    // Every outcome recorded: each poll is a `/metrics` scrape (a COUNT), so poll gently.
    let counts = loop {
        let counts = server.delivery_counts().await?;
        if counts.backlog() == 0 || started.elapsed() > end_to_end + Duration::from_secs(60) {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let settled = started.elapsed();
    server.stop().await?;
    receiver.stop().await;

    let mut publish_us: Vec<u32> = publishes
        .iter()
        .filter_map(|p| p.acked.map(|a| (a - p.sent).as_micros()))
        .map(|us| u32::try_from(us).unwrap_or(u32::MAX))
        .collect();
    let publish_p = Percentiles::of(&mut publish_us);
    let lags = Lags::of(&samples, &acks(&publishes));
    let lag_p = lags.percentiles();
    let (early, unknown) = (lags.early, lags.unknown);
    let mut per_endpoint = vec![0u64; endpoints];
    for s in &samples {
        if let Some(n) = per_endpoint.get_mut(s.endpoint as usize) {
            *n += 1;
        }
    }
    let (fewest, most) = (
        per_endpoint.iter().min().copied().unwrap_or(0),
        per_endpoint.iter().max().copied().unwrap_or(0),
    );
    let received = samples.len() as u64;
    let publish_rate = per_second(accepted, publish_elapsed);
    let delivery_rate = per_second(received, end_to_end);
    if let Some(error) = &example_error {
        out.line(&format!(
            "  {} publishes failed; e.g. {error}",
            u64::from(events) - accepted
        ));
    }
    out.line(&format!(
        "publish: {accepted} events × {endpoints} endpoints in {:.2} s = {publish_rate:.0} \
         publishes/s ({:.0} deliveries queued/s); latency p50 {} ms, p99 {} ms, max {} ms",
        publish_elapsed.as_secs_f64(),
        publish_rate * endpoints as f64,
        publish_p.map_or("-".into(), |p| ms(p.p50)),
        publish_p.map_or("-".into(), |p| ms(p.p99)),
        publish_p.map_or("-".into(), |p| ms(p.max)),
    ));
    out.line(&format!(
        "deliver: {received} deliveries (expected {expected}, {} duplicates, per endpoint \
         {fewest}–{most}) in {:.2} s from first publish to last delivery = {delivery_rate:.0} \
         deliveries/s; CPU {:.1} s ({:.0} µs per delivery)",
        received.saturating_sub(expected),
        end_to_end.as_secs_f64(),
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / received.max(1) as f64,
    ));
    out.line(&format!(
        "lag (arrival − publish 202): p50 {} s, p99 {} s, p99.9 {} s, max {} s ({early} arrived \
         before their 202 was read, {unknown} unattributed); store: {} succeeded, {} failed, {} \
         pending/in flight {:.2} s after the first publish",
        lag_p.map_or("-".into(), |p| seconds(p.p50)),
        lag_p.map_or("-".into(), |p| seconds(p.p99)),
        lag_p.map_or("-".into(), |p| seconds(p.p999)),
        lag_p.map_or("-".into(), |p| seconds(p.max)),
        counts.succeeded,
        counts.failed,
        counts.backlog(),
        settled.as_secs_f64(),
    ));
    out.record(&json!({
        "mode": "fanout",
        "durability": args.durability.name(),
        "endpoints": endpoints,
        "events": events,
        "accepted": accepted,
        "publishers": args.publishers,
        "publish_s": publish_elapsed.as_secs_f64(),
        "publishes_per_s": publish_rate,
        "publish_p50_us": publish_p.map(|p| p.p50),
        "publish_p99_us": publish_p.map(|p| p.p99),
        "publish_max_us": publish_p.map(|p| p.max),
        "received": received,
        "expected": expected,
        "end_to_end_s": end_to_end.as_secs_f64(),
        "deliveries_per_s": delivery_rate,
        "lag_p50_us": lag_p.map(|p| p.p50),
        "lag_p99_us": lag_p.map(|p| p.p99),
        "lag_p999_us": lag_p.map(|p| p.p999),
        "lag_max_us": lag_p.map(|p| p.max),
        "cpu_s": cpu.as_secs_f64(),
    }));
    Ok(())
}

/// `--mode hang`: `--endpoints` endpoints (default 1,000), the first `--hanging` (default 10)
/// pointing at a receiver that answers only after `--hang-for` (default 10 s; their attempt
/// timeout is `--hang-timeout`, default 15 s, so every attempt succeeds, slowly), the rest at a
/// receiver that answers at once. Events are published open-loop at `--rate` per second for
/// `--duration`. With `--event-types K` (default 10) endpoint `i` subscribes to type `t{i % K}`
/// and event `n` has type `t{n % K}`: each event fans out to `endpoints / K` endpoints, one
/// hanging endpoint among them when `hanging ≥ K`; `--event-types 1` fans every event out to
/// every endpoint.
pub async fn hang(args: &Args, settings: &Settings, out: Output) -> anyhow::Result<()> {
    let endpoints = args.endpoints.unwrap_or(1_000);
    let hanging = args.hanging.min(endpoints);
    let groups = args.event_types.clamp(1, endpoints.max(1));
    let duration = args.duration.unwrap_or(Duration::from_secs(30));
    let events = (args.rate * duration.as_secs_f64()).round() as u32;
    let group_of = |i: usize| i % groups;
    let is_hanging = |i: usize| i < hanging;
    let event_type = |g: usize| format!("bench.t{g}");
    let mut healthy_in_group = vec![0u64; groups];
    let mut hanging_in_group = vec![0u64; groups];
    for i in 0..endpoints {
        match is_hanging(i) {
            true => hanging_in_group[group_of(i)] += 1,
            false => healthy_in_group[group_of(i)] += 1,
        }
    }
    let fan = |seq: u32, per: &[u64]| per[seq as usize % groups];
    let expected_healthy: u64 = (0..events).map(|n| fan(n, &healthy_in_group)).sum();
    let healthy = Sink::start(Duration::ZERO, expected_healthy as usize).await?;
    let slow = Sink::start(args.hang_for, 1024).await?;
    let server = start_server(settings).await?;
    let plans = (0..endpoints)
        .map(|i| EndpointPlan {
            url: match is_hanging(i) {
                true => slow.url(i),
                false => healthy.url(i),
            },
            event_types: match groups {
                1 => Vec::new(),
                _ => vec![event_type(group_of(i))],
            },
            timeout: Some(args.hang_timeout),
        })
        .collect();
    let setup = create_endpoints(server.addr, plans, 8).await?;
    out.line(&format!(
        "created tenant `{TENANT}` with {endpoints} endpoints ({hanging} hanging {} s, timeout \
         {} s) in {:.2} s; {groups} event types, so each event fans out to ~{} endpoints; \
         publishing {events} events at {}/s for {} s…",
        args.hang_for.as_secs_f64(),
        args.hang_timeout.as_secs_f64(),
        setup.as_secs_f64(),
        endpoints / groups,
        args.rate,
        duration.as_secs_f64(),
    ));

    let uri: Uri = format!("http://{}/v1/tenants/{TENANT}/events", server.addr).parse()?;
    let client = pooled_client(64);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate.max(0.001)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let cpu_start = cpu_time();
    let started = Instant::now();
    // The store's backlog every 5 s (one `/metrics` scrape, a COUNT, each time).
    let sampling = CancellationToken::new();
    let sampler = {
        let (addr, stop) = (server.addr, sampling.clone());
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return samples,
                    _ = every.tick() => {}
                }
                if let Ok(counts) = crate::harness::delivery_counts_at(addr).await {
                    samples.push((started.elapsed().as_secs(), counts));
                }
            }
        })
    };
    let mut publishers = JoinSet::new();
    let mut publishes = Vec::with_capacity(events as usize);
    let mut example_error = None;
    let mut take = |joined: Result<(Publish, Option<String>), tokio::task::JoinError>| {
        let (publish, error) = joined?;
        publishes.push(publish);
        if example_error.is_none() {
            example_error = error;
        }
        anyhow::Ok(())
    };
    for seq in 0..events {
        ticker.tick().await;
        let (client, uri) = (client.clone(), uri.clone());
        let body = publish_body(seq, &event_type(seq as usize % groups), args.body_bytes);
        publishers.spawn(async move { publish_one(&client, &uri, seq, body).await });
        while let Some(joined) = publishers.try_join_next() {
            take(joined)?;
        }
    }
    while let Some(joined) = publishers.join_next().await {
        take(joined)?;
    }
    let publish_elapsed = started.elapsed();
    let accepted: Vec<u32> = publishes
        .iter()
        .filter(|p| p.acked.is_some())
        .map(|p| p.seq)
        .collect();
    let expected_healthy: u64 = accepted.iter().map(|&n| fan(n, &healthy_in_group)).sum();
    let expected_hanging: u64 = accepted.iter().map(|&n| fan(n, &hanging_in_group)).sum();
    let at_publish_end = (slow.arrived(), slow.answered());

    wait_for(
        "the healthy endpoints to see every delivery",
        expected_healthy,
        Duration::from_secs(60),
        || healthy.arrived(),
    )
    .await?;
    let healthy_done = started.elapsed();
    let cpu = cpu_time() - cpu_start;
    sampling.cancel();
    let backlog_samples = sampler.await?;
    let at_healthy_done = (slow.arrived(), slow.answered());
    let hanging_wait = wait_for(
        "the hanging endpoints to answer every delivery",
        expected_hanging,
        args.hang_for + Duration::from_secs(20),
        || slow.answered(),
    )
    .await;
    let hanging_done = started.elapsed();
    let counts = server.delivery_counts().await?;
    server.stop().await?;
    let healthy_samples = healthy.samples();
    let slow_samples = slow.samples();
    let slow_answered = slow.answered();
    healthy.stop().await;
    slow.stop().await;

    let acked = acks(&publishes);
    let lags = Lags::of(&healthy_samples, &acked);
    let lag_p = lags.percentiles();
    let under_target = lags
        .lags
        .iter()
        .filter(|&&(_, _, us)| u128::from(us) < TARGET.as_micros())
        .count();
    let slow_lags = Lags::of(&slow_samples, &acked);
    let slow_lag_p = slow_lags.percentiles();
    // Healthy p99 per 5-s window of publish time: does the lag drift as slow attempts pile up?
    let window = 5.0;
    let windows = (duration.as_secs_f64() / window).ceil().max(1.0) as usize;
    let mut by_window = vec![Vec::new(); windows];
    // … and per tenth of the endpoints (by id): are some destinations served later than others?
    let mut by_tenth = vec![Vec::new(); 10];
    for &(ack, endpoint, us) in &lags.lags {
        let w = ((ack - started).as_secs_f64() / window) as usize;
        by_window[w.min(windows - 1)].push(us);
        by_tenth[(endpoint as usize * 10 / endpoints.max(1)).min(9)].push(us);
    }
    let tenth_p50_p99: Vec<Option<(u32, u32)>> = by_tenth
        .iter_mut()
        .map(|v| Percentiles::of(v).map(|p| (p.p50, p.p99)))
        .collect();
    let window_p99: Vec<Option<u32>> = by_window
        .iter_mut()
        .map(|v| Percentiles::of(v).map(|p| p.p99))
        .collect();
    let healthy_received = healthy_samples.len() as u64;
    let last_healthy = healthy_samples
        .iter()
        .map(|s| s.at)
        .max()
        .unwrap_or(started);
    let delivery_rate = per_second(healthy_received, last_healthy - started);
    let met = lag_p.is_some_and(|p| u128::from(p.p99) < TARGET.as_micros());

    if let Some(error) = &example_error {
        out.line(&format!(
            "  {} publishes failed; e.g. {error}",
            u64::from(events) - accepted.len() as u64
        ));
    }
    out.line(&format!(
        "publish: {} of {events} accepted in {:.2} s ({:.1}/s)",
        accepted.len(),
        publish_elapsed.as_secs_f64(),
        per_second(accepted.len() as u64, publish_elapsed),
    ));
    out.line(&format!(
        "healthy: {healthy_received} deliveries (expected {expected_healthy}) by {:.2} s after \
         the first publish = {delivery_rate:.0} deliveries/s; CPU {:.1} s over that time ({:.0}% \
         of the {} cores, {:.0} µs per delivery)",
        healthy_done.as_secs_f64(),
        cpu.as_secs_f64(),
        100.0 * cpu.as_secs_f64()
            / healthy_done.as_secs_f64()
            / std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu.as_secs_f64() * 1e6 / healthy_received.max(1) as f64,
    ));
    out.line(&format!(
        "healthy lag (arrival − publish 202): p50 {} s, p99 {} s, p99.9 {} s, max {} s; {:.2}% \
         under {} s ({} arrived before their 202 was read, {} unattributed) → p99 target < 1 s \
         {}",
        lag_p.map_or("-".into(), |p| seconds(p.p50)),
        lag_p.map_or("-".into(), |p| seconds(p.p99)),
        lag_p.map_or("-".into(), |p| seconds(p.p999)),
        lag_p.map_or("-".into(), |p| seconds(p.max)),
        100.0 * under_target as f64 / lags.lags.len().max(1) as f64,
        TARGET.as_secs(),
        lags.early,
        lags.unknown,
        if met { "MET" } else { "MISSED" },
    ));
    out.line(&format!(
        "healthy p99 lag by 5-s window of publishing: {}",
        window_p99
            .iter()
            .map(|p| p.map_or("-".into(), seconds))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    out.line(&format!(
        "healthy p50/p99 lag by tenth of the endpoints (ep-00000 first): {}",
        tenth_p50_p99
            .iter()
            .map(|p| p.map_or("-".into(), |(p50, p99)| format!(
                "{}/{}",
                seconds(p50),
                seconds(p99)
            )))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    out.line(&format!(
        "store backlog (pending+in flight / in flight) every 5 s: {}",
        backlog_samples
            .iter()
            .map(|(t, c)| format!("{t}s:{}/{}", c.backlog(), c.in_flight))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    out.line(&format!(
        "hanging: {expected_hanging} deliveries due; arrived/answered {}/{} when publishing \
         ended, {}/{} when the healthy ones were done, {}/{} at {:.1} s{}; arrival lag p50 {} s, \
         max {} s; store at the end: {} succeeded, {} failed, {} pending/in flight",
        at_publish_end.0,
        at_publish_end.1,
        at_healthy_done.0,
        at_healthy_done.1,
        slow_samples.len(),
        slow_answered,
        hanging_done.as_secs_f64(),
        match &hanging_wait {
            Ok(()) => String::new(),
            Err(error) => format!(" ({error})"),
        },
        slow_lag_p.map_or("-".into(), |p| seconds(p.p50)),
        slow_lag_p.map_or("-".into(), |p| seconds(p.max)),
        counts.succeeded,
        counts.failed,
        counts.backlog(),
    ));
    out.record(&json!({
        "mode": "hang",
        "durability": args.durability.name(),
        "endpoints": endpoints,
        "hanging": hanging,
        "hang_for_s": args.hang_for.as_secs_f64(),
        "event_types": groups,
        "rate": args.rate,
        "duration_s": duration.as_secs_f64(),
        "events": events,
        "accepted": accepted.len(),
        "healthy_expected": expected_healthy,
        "healthy_received": healthy_received,
        "healthy_done_s": healthy_done.as_secs_f64(),
        "healthy_deliveries_per_s": delivery_rate,
        "cpu_s": cpu.as_secs_f64(),
        "lag_p50_us": lag_p.map(|p| p.p50),
        "lag_p99_us": lag_p.map(|p| p.p99),
        "lag_p999_us": lag_p.map(|p| p.p999),
        "lag_max_us": lag_p.map(|p| p.max),
        "lag_p99_by_5s_window_us": window_p99,
        "p99_under_1s": met,
        "hanging_expected": expected_hanging,
        "hanging_arrived": slow_samples.len(),
        "hanging_answered_at_publish_end": at_publish_end.1,
        "hanging_arrived_at_healthy_done": at_healthy_done.0,
    }));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_number_survives_the_round_trip() {
        let request: Value = serde_json::from_slice(&publish_body(4242, "t", 500)).expect("json");
        assert!(request.to_string().len() >= 500);
        // The server sends the payload re-serialized (keys in any order).
        let delivered = serde_json::to_vec(&request["payload"]).expect("payload");
        assert_eq!(parse_seq(&delivered), Some(4242));
        assert_eq!(parse_seq(br#"{"pad":"x"}"#), None);
    }
}
