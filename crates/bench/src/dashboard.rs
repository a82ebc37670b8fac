//! `--mode dashboard`: what the dashboard's store queries cost at volume. Seeds `--events`
//! events (300,000) of `--body-bytes` (500) spread evenly over the last day from 4 sources into
//! a fresh SQLite store (and a fresh PostgreSQL schema with `--postgres`/`--database-url`),
//! then times each query 5 times and reports the median:
//!
//! - the overview's event chart: counts per bucket and source for the last hour (12 buckets)
//!   and the last day (24 buckets);
//! - a body text search whose only match is the oldest event, so it examines every body: the
//!   first page (stopped by the scan bound) and the whole search followed page by page to the
//!   match, as the dashboard's "Older events" link and `GET /v1/events?body_contains=` do.

use std::time::{Duration, Instant};

use serde_json::json;
use switchboard_core::Config;
use switchboard_core::time::now_millis;
use switchboard_store::{Buckets, EventFilter, NewEvent, Store};

use crate::Args;
use crate::harness::{Schema, Settings};
use crate::report::Output;

/// Bodies examined by one search page at most (the API's `BODY_SCAN`).
const SCAN: u32 = 10_000;
/// Times each query runs; the median is reported.
const REPEATS: usize = 5;
/// The needle only the oldest event's body holds.
const NEEDLE: &str = "needle-only-in-the-oldest-event";

/// Runs the dashboard mode.
pub async fn dashboard(args: &Args, settings: &Settings, out: Output) -> anyhow::Result<()> {
    let n = args.events.unwrap_or(300_000) as usize;
    let body_bytes = args.body_bytes.max(64);
    out.line(&format!(
        "dashboard queries: {n} events of {body_bytes} bytes over the last day, median of {REPEATS}"
    ));
    out.line("store       query                                      ms");
    let dir = tempfile::tempdir_in(&settings.data_parent)?;
    let mut stores: Vec<(&str, Option<Schema>)> = vec![("sqlite", None)];
    if let Some(url) = args.database_url() {
        stores.push(("postgres", Some(Schema::create(url)?)));
    }
    for (name, schema) in &mut stores {
        let mut config = Config::default();
        config.server.data_dir = dir.path().join(*name);
        config.server.database_url = schema.as_ref().map(Schema::url);
        std::fs::create_dir_all(&config.server.data_dir)?;
        let store = switchboard_server::open_store(&config).await?;
        let now = now_millis();
        seed(&*store, n, body_bytes, now).await?;
        measure(&*store, name, now, out).await?;
        drop(store);
        if let Some(schema) = schema {
            schema.drop_now()?;
        }
    }
    Ok(())
}

/// Inserts `n` events, oldest first, evenly over the day before `now`.
async fn seed(store: &dyn Store, n: usize, body_bytes: usize, now: i64) -> anyhow::Result<()> {
    let day = 24 * 3600 * 1000_i64;
    let step = (day / n.max(1) as i64).max(1);
    let pad = "x".repeat(body_bytes.saturating_sub(60));
    let started = Instant::now();
    let mut batch = Vec::with_capacity(1000);
    for i in 0..n {
        let text = if i == 0 { NEEDLE } else { "ordinary" };
        batch.push(NewEvent {
            id: format!("evt_bench_{i:08}"),
            source: format!("source-{}", i % 4),
            tenant: None,
            event_type: Some("bench.event".into()),
            dedup_key: None,
            headers: vec![("content-type".into(), "application/json".into())],
            content_type: Some("application/json".into()),
            body: json!({"n": i, "text": text, "pad": pad})
                .to_string()
                .into_bytes(),
            received_at: now - day + i as i64 * step,
            forward_headers: Vec::new(),
            deliveries: Vec::new(),
        });
        if batch.len() == 1000 {
            store.insert_events(&batch).await?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        store.insert_events(&batch).await?;
    }
    eprintln!("seeded {n} events in {:.1?}", started.elapsed());
    Ok(())
}

/// The median duration of `REPEATS` runs of `query`.
async fn median<F, Fut, T>(mut query: F) -> anyhow::Result<(Duration, T)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut times = Vec::with_capacity(REPEATS);
    let mut last = None;
    for _ in 0..REPEATS {
        let started = Instant::now();
        last = Some(query().await?);
        times.push(started.elapsed());
    }
    times.sort();
    let result = last.ok_or_else(|| anyhow::anyhow!("no run"))?;
    Ok((times[REPEATS / 2], result))
}

async fn measure(store: &dyn Store, name: &str, now: i64, out: Output) -> anyhow::Result<()> {
    let report = |query: &str, took: Duration, detail: &str| {
        out.line(&format!(
            "{name:<11} {query:<42} {:>8.1}   {detail}",
            took.as_secs_f64() * 1000.0
        ));
        out.record(&json!({"mode": "dashboard", "store": name, "query": query,
                           "ms": took.as_secs_f64() * 1000.0}));
    };
    for (label, width, count) in [
        ("event chart, last hour (12 buckets)", 300_000_i64, 12_u32),
        ("event chart, last day (24 buckets)", 3_600_000, 24),
    ] {
        let buckets = Buckets {
            start: now - width * i64::from(count),
            width_ms: width,
            count,
        };
        let (took, counts) =
            median(|| async { Ok(store.event_histogram(&buckets).await?) }).await?;
        let total: u64 = counts.iter().map(|c| c.count).sum();
        report(label, took, &format!("{total} events counted"));
    }
    let filter = EventFilter {
        body_contains: Some(NEEDLE.into()),
        limit: 50,
        ..Default::default()
    };
    let (took, first) = median(|| async { Ok(store.search_events(&filter, SCAN).await?) }).await?;
    report(
        "body search, first page",
        took,
        &format!("{} found, bounded by the scan", first.events.len()),
    );
    let (took, (found, pages)) = median(|| async {
        let mut filter = filter.clone();
        let mut pages = 0;
        loop {
            pages += 1;
            let page = store.search_events(&filter, SCAN).await?;
            if !page.events.is_empty() {
                return Ok((page.events.len(), pages));
            }
            match page.scan_floor {
                Some(floor) => filter.before_seq = Some(floor),
                None => return Ok((0, pages)),
            }
        }
    })
    .await?;
    report(
        "body search, whole history to the match",
        took,
        &format!("{found} found after {pages} pages"),
    );
    Ok(())
}
