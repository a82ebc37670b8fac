//! `--mode proxy`: what the connection proxy (`ANY /v1/proxy/{connection}/…`) adds to a call.
//!
//! A loopback API (axum, in the same process) answers `GET /api/items/{n}` with a small JSON
//! document. A connection (`api_key` in a header, from a provider file pointing at that API)
//! is created through the management API. Then:
//!
//! - **Added latency, open loop:** requests start at `--rps` per second (default 1,000) for
//!   `--duration` (10 s) after a one-second warm-up, first straight to the API, then through
//!   the proxy. Each request has its own path (`items/{n}`), so the proxy's coalescing of
//!   identical GETs never merges two of them, and the API sends no `ETag`, so nothing is
//!   served from the cache: every proxied request is a full upstream call with auth injected,
//!   pacing, the bulkhead, the circuit breaker and metrics. The difference of the percentiles
//!   is what the proxy adds.
//! - **Throughput, closed loop:** `--concurrency` clients (default 1, 16, 64), each with its own
//!   keep-alive connection, call back to back for `--duration`, straight and through the proxy.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use axum::body::Bytes;
use axum::extract::Path;
use http_body_util::{BodyExt, Full};
use hyper::header::AUTHORIZATION;
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::Args;
use crate::harness::{Server, Settings};
use crate::load::{HttpClient, Percentiles};
use crate::outbound::{ADMIN_TOKEN, api};
use crate::report::{Output, ms};

/// Where requests go.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// Straight to the loopback API.
    Direct(SocketAddr),
    /// Through Switchboard's proxy.
    Proxy(SocketAddr),
}

impl Target {
    fn label(self) -> &'static str {
        match self {
            Self::Direct(_) => "direct",
            Self::Proxy(_) => "proxy",
        }
    }

    fn request(self, n: u64) -> anyhow::Result<Request<Full<Bytes>>> {
        let builder = match self {
            Self::Direct(addr) => {
                let uri: Uri = format!("http://{addr}/api/items/{n}").parse()?;
                Request::get(uri).header("x-api-key", "k")
            }
            Self::Proxy(addr) => {
                let uri: Uri = format!("http://{addr}/v1/proxy/bench/items/{n}").parse()?;
                Request::get(uri).header(AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
            }
        };
        Ok(builder.body(Full::new(Bytes::new()))?)
    }
}

/// The loopback API's answer: a small record, as a list or detail endpoint returns.
async fn item(Path(n): Path<u64>) -> axum::Json<serde_json::Value> {
    axum::Json(json!({
        "id": n, "title": format!("item {n}"), "state": "open",
        "labels": ["bench", "proxy"], "updated_at": "2026-11-24T00:00:00Z"
    }))
}

/// A client pooling up to `idle` keep-alive connections.
fn pooled_client(idle: usize) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(idle)
        .pool_idle_timeout(None)
        .build(connector)
}

/// One request; its latency in microseconds, or why it failed.
async fn call(client: &HttpClient, target: Target, n: u64) -> anyhow::Result<u32> {
    let request = target.request(n)?;
    let started = Instant::now();
    let response = client.request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    let micros = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
    if status != StatusCode::OK {
        bail!(
            "{} answered {status}: {}",
            target.label(),
            String::from_utf8_lossy(&body)
        );
    }
    Ok(micros)
}

/// What a run measured.
struct Measured {
    latencies: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
    seconds: f64,
}

/// Starts `rps` requests a second for `duration` (open loop: a slow answer does not delay the
/// next start) and waits for them all.
async fn open_loop(
    client: &HttpClient,
    target: Target,
    rps: u32,
    duration: Duration,
    first: u64,
) -> Measured {
    let interval = Duration::from_secs_f64(1.0 / f64::from(rps.max(1)));
    let total = (duration.as_secs_f64() * f64::from(rps)) as u64;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..total {
        ticks.tick().await;
        let client = client.clone();
        tasks.spawn(async move { call(&client, target, first + i).await });
    }
    collect(tasks, started).await
}

/// `concurrency` clients calling back to back for `duration`.
async fn closed_loop(
    target: Target,
    concurrency: usize,
    duration: Duration,
    first: u64,
) -> Measured {
    let started = Instant::now();
    let end = started + duration;
    let mut tasks = JoinSet::new();
    for c in 0..concurrency {
        tasks.spawn(async move {
            let client = pooled_client(1);
            let mut results = Vec::new();
            let mut n = first + (c as u64) * 10_000_000;
            while Instant::now() < end {
                results.push(call(&client, target, n).await);
                n += 1;
            }
            results
        });
    }
    let mut measured = Measured {
        latencies: Vec::new(),
        errors: 0,
        first_error: None,
        seconds: 0.0,
    };
    while let Some(joined) = tasks.join_next().await {
        for result in joined.unwrap_or_default() {
            record(&mut measured, result);
        }
    }
    measured.seconds = started.elapsed().as_secs_f64();
    measured
}

async fn collect(mut tasks: JoinSet<anyhow::Result<u32>>, started: Instant) -> Measured {
    let mut measured = Measured {
        latencies: Vec::with_capacity(tasks.len()),
        errors: 0,
        first_error: None,
        seconds: 0.0,
    };
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(result) => record(&mut measured, result),
            Err(error) => record(&mut measured, Err(error.into())),
        }
    }
    measured.seconds = started.elapsed().as_secs_f64();
    measured
}

fn record(measured: &mut Measured, result: anyhow::Result<u32>) {
    match result {
        Ok(micros) => measured.latencies.push(micros),
        Err(error) => {
            measured.errors += 1;
            measured
                .first_error
                .get_or_insert_with(|| error.to_string());
        }
    }
}

/// Runs the proxy mode.
pub async fn proxy(args: &Args, settings: &Settings, out: Output) -> anyhow::Result<()> {
    let duration = args.duration.unwrap_or(Duration::from_secs(10));
    let rps = args.rps;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let api_addr = listener.local_addr()?;
    let app = axum::Router::new().route("/api/items/{n}", axum::routing::get(item));
    let api_task = tokio::spawn(async move { axum::serve(listener, app).await });
    let providers = tempfile::tempdir()?;
    std::fs::write(
        providers.path().join("bench.toml"),
        format!(
            "id = \"bench\"\nname = \"Bench API\"\nbase_url = \"http://{api_addr}/api\"\n\
             auth_modes = [\"api_key\"]\n[api_key]\nheader = \"x-api-key\"\n"
        ),
    )?;
    let providers_dir = providers.path().to_owned();
    let server = Server::start_with(settings, None, |config| {
        config.server.admin_token = Some(ADMIN_TOKEN.into());
        config.security.allow_private_networks = true;
        config.connections.providers_dir = Some(providers_dir);
    })
    .await?;
    api(
        &pooled_client(1),
        server.addr,
        "/v1/connections",
        &json!({"id": "bench", "provider": "bench", "credentials": {"api_key": "k"}}),
        StatusCode::CREATED,
    )
    .await
    .context("creating the connection")?;
    let targets = [Target::Direct(api_addr), Target::Proxy(server.addr)];

    out.line(&format!(
        "proxy: added latency at {rps} requests/s (open loop, {}s each), then throughput",
        duration.as_secs()
    ));
    out.line("target   requests  errors       p50       p99     p99.9       max");
    let mut first = 0;
    let mut p = Vec::new();
    for target in targets {
        let client = pooled_client(256);
        // Warm-up: connections opened, code paths touched.
        open_loop(&client, target, rps, Duration::from_secs(1), first).await;
        first += 1_000_000;
        let mut m = open_loop(&client, target, rps, duration, first).await;
        first += 1_000_000;
        let Some(pct) = Percentiles::of(&mut m.latencies) else {
            bail!(
                "{}: every request failed: {}",
                target.label(),
                m.first_error.unwrap_or_default()
            );
        };
        out.line(&format!(
            "{:<8} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9}",
            target.label(),
            m.latencies.len(),
            m.errors,
            ms(pct.p50),
            ms(pct.p99),
            ms(pct.p999),
            ms(pct.max)
        ));
        if let Some(error) = &m.first_error {
            out.line(&format!("  first error: {error}"));
        }
        out.record(
            &json!({"mode": "proxy", "kind": "latency", "target": target.label(),
            "rps": rps, "requests": m.latencies.len(), "errors": m.errors,
            "p50_us": pct.p50, "p99_us": pct.p99, "p999_us": pct.p999, "max_us": pct.max}),
        );
        p.push(pct);
    }
    if let [direct, proxied] = p.as_slice() {
        let added = |a: u32, b: u32| ms(b.saturating_sub(a));
        out.line(&format!(
            "added by the proxy: p50 {}  p99 {}",
            added(direct.p50, proxied.p50),
            added(direct.p99, proxied.p99)
        ));
    }

    out.line("");
    out.line("target   clients  requests/s  errors       p50       p99");
    for &concurrency in &args.concurrency {
        for target in targets {
            let mut m = closed_loop(target, concurrency, duration, first).await;
            first += 100_000_000;
            let rate = m.latencies.len() as f64 / m.seconds;
            let pct = Percentiles::of(&mut m.latencies);
            out.line(&format!(
                "{:<8} {:>7} {:>11.0} {:>7} {:>9} {:>9}",
                target.label(),
                concurrency,
                rate,
                m.errors,
                pct.as_ref().map_or("-".into(), |p| ms(p.p50)),
                pct.as_ref().map_or("-".into(), |p| ms(p.p99)),
            ));
            out.record(
                &json!({"mode": "proxy", "kind": "throughput", "target": target.label(),
                "clients": concurrency, "requests_per_second": rate, "errors": m.errors,
                "p50_us": pct.as_ref().map(|p| p.p50), "p99_us": pct.as_ref().map(|p| p.p99)}),
            );
        }
    }
    server.stop().await?;
    api_task.abort();
    Ok(())
}
