//! The three measurements.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;
use switchboard_core::RetryPolicy;

use crate::harness::{Cluster, DeliveryCounts, Receiver, Route, Server, Settings};
use crate::load::{self, Outcome, Percentiles, Spec, Stop, per_second};
use crate::report::{Memory, Output, cpu_time, cpu_time_of, mib, ms};
use crate::{Args, BacklogTarget};

/// Attempt timeout towards a receiver that may hold requests for the whole pre-load.
const PATIENT: Duration = Duration::from_secs(3600);

/// A route to `receiver` that waits as long as the receiver holds requests.
fn route_to(receiver: &Receiver) -> Route {
    Route {
        url: receiver.url.clone(),
        timeout: PATIENT,
        retry: RetryPolicy::default(),
        filter: None,
        transform: None,
    }
}

/// GitHub's `pull_request.opened` sample, as `switchboard trigger` sends it.
const GITHUB_PULL_REQUEST: &[u8] =
    include_bytes!("../../../samples/github/pull_request.opened.json");

/// The route programs of `--transform`: what a GitHub → Slack route does.
const GITHUB_FILTER: &str = r#".body.action == "opened""#;
const GITHUB_TRANSFORM: &str = r#"{text: "PR #\(.body.number) \(.body.pull_request.title) by \(.body.sender.login)", repository: .body.repository.full_name, url: .body.pull_request.html_url}"#;

/// CPU used during one phase: this process (servers, receiver and load generator) and, with
/// PostgreSQL, the backends serving the nodes' connections (found by `application_name`;
/// PostgreSQL's shared background processes such as the WAL writer are not counted).
struct CpuPhase {
    wall: Instant,
    bench: Duration,
    postgres: Option<Vec<(u32, Duration)>>,
}

impl CpuPhase {
    fn start(cluster: &Cluster) -> Self {
        let postgres =
            (cluster.store() == "postgres").then(|| cpu_time_of(&cluster.postgres_backends()));
        Self {
            wall: Instant::now(),
            bench: cpu_time(),
            postgres,
        }
    }

    /// `(wall s, bench CPU s, postgres backends' CPU s)` since the start. Backends that
    /// connected meanwhile count in full.
    fn end(&self, cluster: &Cluster) -> (f64, f64, Option<f64>) {
        let wall = self.wall.elapsed().as_secs_f64();
        let bench = cpu_time().saturating_sub(self.bench).as_secs_f64();
        // Backends are matched by TCP client port: none are found over a Unix socket.
        let backends = cpu_time_of(&cluster.postgres_backends());
        let postgres = self
            .postgres
            .as_ref()
            .filter(|_| !backends.is_empty())
            .map(|before| {
                backends
                    .into_iter()
                    .map(|(pid, now)| {
                        let then = before
                            .iter()
                            .find(|(p, _)| *p == pid)
                            .map_or(Duration::ZERO, |(_, t)| *t);
                        now.saturating_sub(then)
                    })
                    .sum::<Duration>()
                    .as_secs_f64()
            });
        (wall, bench, postgres)
    }

    /// A report line: CPU as a share of one core over the wall time.
    fn line(what: &str, (wall, bench, postgres): (f64, f64, Option<f64>)) -> String {
        let share = |cpu: f64| if wall > 0.0 { 100.0 * cpu / wall } else { 0.0 };
        let mut line = format!(
            "  CPU {what} ({wall:.1} s): bench process (servers + clients + receiver) {bench:.1} s \
             = {:.0} % of a core",
            share(bench)
        );
        if let Some(pg) = postgres {
            line.push_str(&format!(
                ", its PostgreSQL backends {pg:.1} s = {:.0} % of a core",
                share(pg)
            ));
        }
        line
    }
}

/// Ingest throughput and latency: for each concurrency level, a fresh server (so levels do not
/// inherit each other's database size), `warmup` unmeasured, then `duration` measured. With
/// `--nodes N` (PostgreSQL), N fresh nodes and the clients spread over them round robin.
pub async fn ingest(args: &Args, settings: &Settings, out: Output) -> anyhow::Result<()> {
    let body = load::body(args.body_bytes);
    out.line(&format!(
        "{:<7} {:>5} {:<10} {:<6} {:>9} {:>7} {:>9} {:>8} {:>8} {:>8} {:>8} {:>10}",
        "mode",
        "conc",
        "durability",
        "routes",
        "accepted",
        "errors",
        "req/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "deliv/s"
    ));
    let duration = args.duration.unwrap_or(Duration::from_secs(10));
    for &concurrency in &args.concurrency {
        let receiver = match args.with_routes {
            true => Some(Receiver::start(true).await?),
            false => None,
        };
        let route = receiver.as_ref().map(route_to);
        let server =
            Cluster::start(settings, route.as_ref(), args.database_url(), args.nodes).await?;
        if server.store() != "sqlite" {
            out.line(&format!("  {}", server.describe()));
        }
        let cpu = CpuPhase::start(&server);
        // Deliveries made during the measured window, counted alongside the load.
        let delivered = receiver.as_ref().map(|receiver| {
            let counter = receiver.counter();
            let warmup = args.warmup;
            tokio::spawn(async move {
                tokio::time::sleep(warmup).await;
                let before = counter.load(Ordering::Relaxed);
                tokio::time::sleep(duration).await;
                counter.load(Ordering::Relaxed) - before
            })
        });
        let mut outcome = load::run(&Spec {
            addrs: server.addrs(),
            concurrency,
            body: body.clone(),
            stop: Stop::Timed {
                warmup: args.warmup,
                duration,
            },
            record_latencies: true,
            progress_every: None,
        })
        .await?;
        let delivered = match delivered {
            Some(task) => Some(task.await?),
            None => None,
        };
        let delivery_rate = delivered.map(|n| per_second(n, duration));
        let cpu = cpu.end(&server);
        let store = server.store();
        let nodes = server.nodes.len();
        server.stop().await?;
        if let Some(receiver) = receiver {
            receiver.stop().await;
        }
        let p = Percentiles::of(&mut outcome.latencies_us);
        let cell = |f: fn(&Percentiles) -> u32| p.as_ref().map_or("-".into(), |p| ms(f(p)));
        out.line(&format!(
            "{:<7} {:>5} {:<10} {:<6} {:>9} {:>7} {:>9.0} {:>8} {:>8} {:>8} {:>8} {:>10}",
            "ingest",
            concurrency,
            args.durability.name(),
            if args.with_routes { "1" } else { "0" },
            outcome.accepted,
            outcome.errors(),
            outcome.rate(),
            cell(|p| p.p50),
            cell(|p| p.p99),
            cell(|p| p.p999),
            cell(|p| p.max),
            delivery_rate.map_or("-".into(), |r| format!("{r:.0}")),
        ));
        report_errors(&outcome, out);
        out.line(&CpuPhase::line("incl. warm-up", cpu));
        out.record(&json!({
            "mode": "ingest",
            "store": store,
            "nodes": nodes,
            "cpu_wall_s": cpu.0,
            "cpu_bench_s": cpu.1,
            "cpu_postgres_s": cpu.2,
            "concurrency": concurrency,
            "durability": args.durability.name(),
            "routes": usize::from(args.with_routes),
            "body_bytes": args.body_bytes,
            "duration_s": duration.as_secs_f64(),
            "accepted": outcome.accepted,
            "rejected": outcome.rejected,
            "transport_errors": outcome.transport_errors,
            "requests_per_s": outcome.rate(),
            "p50_us": p.map(|p| p.p50),
            "p99_us": p.map(|p| p.p99),
            "p999_us": p.map(|p| p.p999),
            "max_us": p.map(|p| p.max),
            "delivered": delivered,
            "deliveries_per_s": delivery_rate,
        }));
    }
    Ok(())
}

/// Delivery throughput.
///
/// Delivery is measured separately from ingest by holding the receiver shut during the
/// pre-load: the server runs with its route from the start, so every ingest creates its delivery
/// in the same transaction, and the worker starts sending at once, but the receiver reads each
/// request and then holds it unanswered until its gate opens (the attempt timeout is an hour and
/// the lease two, so nothing times out or is re-queued meanwhile). At most the destination's
/// in-flight cap of attempts is waiting at the gate; everything else stays `pending` in the store.
/// The clock starts when the gate opens and stops when the receiver has answered every stored
/// event and the store reports no `pending` or `in_flight` deliveries (all outcomes recorded).
///
/// With `--nodes N` (PostgreSQL), the pre-load is spread over all nodes and every node's worker
/// delivers; the receiver counts distinct `webhook-id`s (the delivery id), so a delivery sent by
/// two nodes shows up as a duplicate.
pub async fn deliver(args: &Args, settings: &Settings, out: Output) -> anyhow::Result<()> {
    let events = args.events.unwrap_or(50_000);
    let receiver = Receiver::start_tracking(false, true).await?;
    let mut route = route_to(&receiver);
    if args.transform {
        route.filter = Some(GITHUB_FILTER.into());
        route.transform = Some(GITHUB_TRANSFORM.into());
    }
    let body = if args.github_payload {
        bytes::Bytes::from_static(GITHUB_PULL_REQUEST)
    } else {
        load::body(args.body_bytes)
    };
    let server = Cluster::start(settings, Some(&route), args.database_url(), args.nodes).await?;
    let postgres = server.store() == "postgres";
    if postgres {
        out.line(&server.describe());
    }
    out.line(&format!(
        "pre-loading {events} events with {} clients, receiver held shut…",
        args.preload_concurrency
    ));
    let mut preload = load::run(&Spec {
        addrs: server.addrs(),
        concurrency: args.preload_concurrency,
        body: body.clone(),
        stop: Stop::Count(events),
        record_latencies: true,
        progress_every: Some((events / 10).max(1)),
    })
    .await?;
    report_errors(&preload, out);
    let stored = preload.accepted;
    let at_gate = server.delivery_counts().await?;

    let cpu = CpuPhase::start(&server);
    let opened = Instant::now();
    receiver.open();
    let mut stall = Stall::new("the receiver to see every delivery");
    while receiver.distinct() < stored {
        stall.check(receiver.distinct())?;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let all_received = opened.elapsed();
    // Each poll is a `/metrics` scrape, i.e. a COUNT over the deliveries table: poll gently.
    let mut stall = Stall::new("the store to record every outcome");
    let last = loop {
        let counts = server.delivery_counts().await?;
        if counts.backlog() == 0 {
            break counts;
        }
        stall.check(counts.succeeded + counts.failed)?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let settled = opened.elapsed();
    let cpu = cpu.end(&server);
    let received = receiver.received();
    let duplicates = receiver.duplicates();
    let peak = receiver.peak_concurrency();
    let store = server.store();
    let nodes = server.nodes.len();
    server.stop().await?;
    receiver.stop().await;

    let p = Percentiles::of(&mut preload.latencies_us);
    let rate = per_second(stored, settled);
    out.line(&format!(
        "pre-load: {stored} stored in {:.2} s = {:.0} ev/s with the route (p50 {} ms, p99 {} ms), \
         {} errors; at gate opening {} in flight, {} pending",
        preload.elapsed.as_secs_f64(),
        preload.rate(),
        p.map_or("-".into(), |p| ms(p.p50)),
        p.map_or("-".into(), |p| ms(p.p99)),
        preload.errors(),
        at_gate.in_flight,
        at_gate.pending,
    ));
    out.line(&format!(
        "deliver: {stored} deliveries in {:.2} s = {rate:.0} deliveries/s (receiver had all after \
         {:.2} s = {:.0}/s); succeeded {}, failed {}, receiver saw {received} ({duplicates} \
         duplicates by webhook-id), at most {peak} at once",
        settled.as_secs_f64(),
        all_received.as_secs_f64(),
        per_second(stored, all_received),
        last.succeeded,
        last.failed,
    ));
    out.line(&CpuPhase::line("while delivering", cpu));
    out.record(&json!({
        "mode": "deliver",
        "store": store,
        "nodes": nodes,
        "duplicates": duplicates,
        "cpu_wall_s": cpu.0,
        "cpu_bench_s": cpu.1,
        "cpu_postgres_s": cpu.2,
        "durability": args.durability.name(),
        "body_bytes": body.len(),
        "transform": args.transform,
        "events": events,
        "stored": stored,
        "preload_s": preload.elapsed.as_secs_f64(),
        "preload_events_per_s": preload.rate(),
        "preload_errors": preload.errors(),
        "delivery_s": settled.as_secs_f64(),
        "deliveries_per_s": rate,
        "all_received_s": all_received.as_secs_f64(),
        "succeeded": last.succeeded,
        "failed": last.failed,
        "received": received,
        "receiver_peak_concurrency": peak,
    }));
    Ok(())
}

/// Backlog memory: pre-load events whose deliveries cannot complete, then watch the process's
/// memory with the worker running. The store holds the backlog; the worker claims it in bounded
/// batches, so memory should not grow with the number of events.
pub async fn backlog(args: &Args, settings: &Settings, out: Output) -> anyhow::Result<()> {
    let events = args.events.unwrap_or(1_000_000);
    let receiver = match args.backlog_target {
        BacklogTarget::Gated => Some(Receiver::start(false).await?),
        BacklogTarget::Refused => {
            if std::net::TcpStream::connect(("127.0.0.1", 9)).is_ok() {
                bail!("something listens on 127.0.0.1:9; use --backlog-target gated");
            }
            None
        }
    };
    let route = match &receiver {
        Some(receiver) => route_to(receiver),
        None => Route {
            url: "http://127.0.0.1:9/".into(),
            timeout: Duration::from_secs(5),
            retry: RetryPolicy::Schedule(vec![Duration::from_secs(3600)]),
            filter: None,
            transform: None,
        },
    };
    let server = Server::start(settings, Some(&route)).await?;
    out.line(&format!(
        "{:<16} {:>9} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "phase", "RSS MiB", "peak MiB", "CPU s", "pending", "in_flight", "failed", "succeeded"
    ));
    let cpu_start = cpu_time();
    let mut rows = Vec::new();
    let mut row = |phase: &str, memory: Memory, cpu: Duration, counts: DeliveryCounts| {
        out.line(&format!(
            "{phase:<16} {:>9} {:>9} {:>8.1} {:>9} {:>9} {:>9} {:>9}",
            mib(memory.rss_kib),
            mib(memory.peak_kib),
            cpu.as_secs_f64(),
            counts.pending,
            counts.in_flight,
            counts.failed,
            counts.succeeded,
        ));
        rows.push(json!({
            "phase": phase,
            "rss_kib": memory.rss_kib,
            "peak_kib": memory.peak_kib,
            "cpu_s": cpu.as_secs_f64(),
            "pending": counts.pending,
            "in_flight": counts.in_flight,
            "failed": counts.failed,
            "succeeded": counts.succeeded,
        }));
    };
    row(
        "server started",
        Memory::read(),
        Duration::ZERO,
        server.delivery_counts().await?,
    );

    let preload = load::run(&Spec {
        addrs: vec![server.addr],
        concurrency: args.preload_concurrency,
        body: load::body(args.body_bytes),
        stop: Stop::Count(events),
        record_latencies: false,
        progress_every: Some((events / 10).max(1)),
    })
    .await?;
    let ingested = Memory::read();
    let cpu_ingested = cpu_time();
    row(
        "after ingest",
        ingested,
        cpu_ingested - cpu_start,
        server.delivery_counts().await?,
    );

    // Watch with the worker running; sample RSS every second to catch growth between readings.
    let mut max_rss = ingested.rss_kib;
    let settle_end = Instant::now() + args.settle;
    while Instant::now() < settle_end {
        tokio::time::sleep(Duration::from_secs(1).min(args.settle)).await;
        max_rss = max_rss.max(Memory::read().rss_kib);
    }
    let settled = Memory::read();
    let cpu_settled = cpu_time();
    let settle_label = format!("after {} idle", humantime::format_duration(args.settle));
    row(
        &settle_label,
        settled,
        cpu_settled - cpu_ingested,
        server.delivery_counts().await?,
    );
    let received = receiver.as_ref().map(Receiver::received);
    server.stop().await?;
    if let Some(receiver) = receiver {
        receiver.stop().await;
    }

    report_errors(&preload, out);
    out.line(&format!(
        "ingest: {} events in {:.1} s = {:.0} ev/s; max RSS while idle {} MiB; CPU column: time \
         used during that phase (server + load generator)",
        preload.accepted,
        preload.elapsed.as_secs_f64(),
        preload.rate(),
        mib(max_rss),
    ));
    out.record(&json!({
        "mode": "backlog",
        "durability": args.durability.name(),
        "target": match args.backlog_target {
            BacklogTarget::Refused => "refused",
            BacklogTarget::Gated => "gated",
        },
        "body_bytes": args.body_bytes,
        "events": events,
        "stored": preload.accepted,
        "ingest_s": preload.elapsed.as_secs_f64(),
        "ingest_events_per_s": preload.rate(),
        "settle_s": args.settle.as_secs_f64(),
        "max_rss_kib_while_settling": max_rss,
        "received_by_gated_receiver": received,
        "phases": rows,
    }));
    Ok(())
}

fn report_errors(outcome: &Outcome, out: Output) {
    if outcome.errors() > 0 {
        out.line(&format!(
            "  {} rejected, {} transport errors; e.g. {}",
            outcome.rejected,
            outcome.transport_errors,
            outcome.example_error.as_deref().unwrap_or("?")
        ));
    }
}

/// Fails a wait when its progress counter has not moved for a minute.
struct Stall {
    what: &'static str,
    seen: u64,
    since: Instant,
}

impl Stall {
    const LIMIT: Duration = Duration::from_secs(60);

    fn new(what: &'static str) -> Self {
        Self {
            what,
            seen: 0,
            since: Instant::now(),
        }
    }

    fn check(&mut self, progress: u64) -> anyhow::Result<()> {
        if progress != self.seen {
            self.seen = progress;
            self.since = Instant::now();
        } else if self.since.elapsed() > Self::LIMIT {
            bail!(
                "gave up waiting for {}: no progress for {} s (at {progress})",
                self.what,
                Self::LIMIT.as_secs()
            );
        }
        Ok(())
    }
}
