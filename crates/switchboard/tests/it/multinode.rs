//! Several real `switchboard serve` processes sharing one PostgreSQL database: load spread over
//! the nodes, one node killed with SIGKILL and restarted mid-load, every acknowledged event
//! delivered; and a resource created through one node's API used by another.
//!
//! The tests need a PostgreSQL server: `SWITCHBOARD_TEST_PG=postgres://user@host:port/database`.
//! Each test works in a schema of its own (`sb_multi_…`, created with `psql` and dropped after
//! it, also when the test fails), which the nodes select with the URL option
//! `options=-csearch_path%3D<schema>`. Without the variable each test reports `SKIPPED …` on
//! stderr and passes.

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::support::pg::{Schema, master_key};
use crate::support::process::{ADMIN_TOKEN, Process};
use crate::support::{ApiClient, eventually};

/// The variable naming the test server.
const ENV: &str = "SWITCHBOARD_TEST_PG";

/// The test server's URL, or `None` after reporting the test as skipped.
fn pg_base(test: &str) -> Option<String> {
    match std::env::var(ENV) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            // Past the harness's capture, so that CI sees it.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: set {ENV}=postgres://… to run the multi-node tests"
            );
            None
        }
    }
}

/// The configuration every node of a test runs with. With `source`, source `src` (no
/// verification) is routed to one HTTP destination `dst` at `url`.
fn node_config(database_url: &str, url: &str, source: bool) -> String {
    let mut toml = format!(
        r#"
[server]
database_url = "{database_url}"
database_max_connections = 8

[security]
allow_private_networks = true

[delivery]
lease = "5s"
poll_interval = "100ms"
"#
    );
    if source {
        toml.push_str(&format!(
            r#"
[[sources]]
id = "src"
verifier = {{ kind = "none" }}

[[destinations]]
id = "dst"
kind = "http"
url = "{url}"
timeout = "2s"
retry = {{ schedule = ["100ms", "500ms", "1s", "2s", "5s"] }}

[[routes]]
source = "src"
destination = "dst"
"#
        ));
    }
    toml
}

/// Starts `n` nodes at once on ephemeral ports (they migrate the schema together, taking turns
/// under the advisory lock), each with its own data directory.
async fn start_nodes(
    n: usize,
    toml: &str,
    key: &str,
) -> (Vec<tempfile::TempDir>, Vec<Option<Process>>) {
    let dirs: Vec<tempfile::TempDir> = (0..n)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let starting: Vec<_> = dirs
        .iter()
        .map(|dir| {
            let (dir, toml, key) = (dir.path().to_owned(), toml.to_owned(), key.to_owned());
            tokio::task::spawn_blocking(move || {
                Process::spawn_with(
                    &dir,
                    &toml,
                    "127.0.0.1:0",
                    &[("SWITCHBOARD_MASTER_KEY", &key)],
                )
            })
        })
        .collect();
    let mut nodes = Vec::new();
    for node in starting {
        nodes.push(Some(node.await.expect("start node")));
    }
    (dirs, nodes)
}

/// What the receiver saw.
#[derive(Default)]
struct Seen {
    /// Requests received in all.
    requests: usize,
    /// Receptions per `webhook-id`.
    by_id: HashMap<String, u32>,
    /// `(n, try)` markers of the bodies received (see [`body`]).
    marks: HashSet<(u64, u32)>,
    /// Bodies as JSON, in arrival order.
    bodies: Vec<Value>,
}

/// A loopback receiver answering `200` to every request and recording its `webhook-id` and
/// body; cheap to poll (no copies of what it recorded).
#[derive(Clone)]
struct Sink {
    url: String,
    seen: Arc<Mutex<Seen>>,
}

impl Sink {
    async fn start() -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let state = seen.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move {
                    let id = headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let mark = json["n"]
                        .as_u64()
                        .zip(json["try"].as_u64())
                        .map(|(n, t)| (n, t as u32));
                    let mut seen = state.lock().expect("lock");
                    seen.requests += 1;
                    *seen.by_id.entry(id).or_default() += 1;
                    match mark {
                        Some(mark) => {
                            seen.marks.insert(mark);
                        }
                        None => seen.bodies.push(json),
                    }
                    axum::http::StatusCode::OK
                }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, seen }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().expect("lock")
    }
}

/// The body of ingest request `try_no` for event `n`: unique per request, so that an event
/// committed by a request whose answer was lost is told apart from its retry's.
fn body(n: u64, try_no: u32) -> String {
    format!(
        r#"{{"n":{n},"try":{try_no},"type":"order.created","pad":"{}"}}"#,
        "x".repeat(120)
    )
}

/// The shared state of the load generator.
#[derive(Default)]
struct Load {
    /// Next event number to send.
    next: AtomicU64,
    /// `202` answers so far.
    acks: AtomicUsize,
    /// Requests answered `202`.
    acked: Mutex<HashSet<(u64, u32)>>,
    /// Requests to the killed node, sent before it was back, that got no answer: they may or
    /// may not have committed.
    cut: Mutex<HashSet<(u64, u32)>>,
    /// Connections refused (nothing sent).
    refused: AtomicUsize,
    /// Answers other than `202` (the server says: not stored).
    rejected: Mutex<Vec<(u64, u32, u16)>>,
    /// Requests that failed without an answer on a live node (should not happen).
    failed_live: Mutex<Vec<String>>,
    /// 0: all up; 1: the victim is killed (or being restarted); 2: the victim is back.
    phase: AtomicU8,
}

/// Sends events `next..total` round-robin over `bases` (event `n` to node `n % 3`); a request
/// that is not acknowledged is retried on the next node with a new body.
async fn load(
    client: reqwest::Client,
    bases: Arc<Vec<String>>,
    state: Arc<Load>,
    total: u64,
    victim: usize,
) {
    loop {
        let n = state.next.fetch_add(1, Ordering::Relaxed);
        if n >= total {
            return;
        }
        let mut node = (n % bases.len() as u64) as usize;
        for try_no in 0u32.. {
            assert!(try_no < 1000, "event {n} was never acknowledged");
            let phase = state.phase.load(Ordering::Acquire);
            let sent = client
                .post(format!("{}/in/src", bases[node]))
                .header("content-type", "application/json")
                .body(body(n, try_no))
                .send()
                .await;
            match sent {
                Ok(response) if response.status() == 202 => {
                    // Acknowledged with the status line: committed, whatever the body does.
                    let _ = response.bytes().await;
                    state.acked.lock().expect("lock").insert((n, try_no));
                    state.acks.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    let _ = response.bytes().await;
                    state
                        .rejected
                        .lock()
                        .expect("lock")
                        .push((n, try_no, status));
                }
                Err(error) if error.is_connect() => {
                    state.refused.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    // Sent to the victim before it was back, failed once it was killed.
                    if node == victim && phase < 2 && state.phase.load(Ordering::Acquire) >= 1 {
                        state.cut.lock().expect("lock").insert((n, try_no));
                    } else {
                        state
                            .failed_live
                            .lock()
                            .expect("lock")
                            .push(format!("event {n} try {try_no} to node {node}: {error}"));
                    }
                }
            }
            node = (node + 1) % bases.len();
            if try_no % 3 == 2 {
                // Every node refused it once: back off a little (not a correctness wait).
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// `pending` + `in_flight` deliveries of the whole database, from a node's `/metrics`.
async fn backlog(client: &reqwest::Client, base: &str) -> Option<f64> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let mut sum = 0.0;
    let mut found = 0;
    for line in text.lines() {
        for status in ["pending", "in_flight"] {
            let prefix = format!("switchboard_deliveries{{status=\"{status}\"}} ");
            if let Some(value) = line.strip_prefix(&prefix) {
                sum += value.trim().parse::<f64>().ok()?;
                found += 1;
            }
        }
    }
    (found == 2).then_some(sum)
}

/// Three nodes, 50,000 events round-robin with one node killed (SIGKILL) and restarted on the
/// same port after ~20,000 acknowledgements: every acknowledged event is delivered, duplicates
/// (the same `webhook-id` received again) stay under 1 %, and nothing is delivered that was
/// never acknowledged except what the kill cut off mid-request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_deliver_every_acknowledged_event_through_a_kill_9() {
    const TEST: &str = "multinode::three_nodes_deliver_every_acknowledged_event_through_a_kill_9";
    const TOTAL: u64 = 50_000;
    const KILL_AT: usize = 20_000;
    const CLIENTS: usize = 48;
    const VICTIM: usize = 1;
    /// Acknowledgements (by the other two nodes) before the killed node is started again.
    const DOWN_FOR_ACKS: usize = 2_000;
    let Some(base) = pg_base(TEST) else { return };
    // Declared before the nodes, so dropped after them, also on a panic.
    let schema = Schema::create(&base, "sb_multi");
    let sink = Sink::start().await;
    let key = master_key();
    let toml = node_config(&schema.url(), &sink.url, true);
    let (dirs, mut nodes) = start_nodes(3, &toml, &key).await;
    let bases: Arc<Vec<String>> = Arc::new(
        nodes
            .iter()
            .map(|n| n.as_ref().expect("node").base.clone())
            .collect(),
    );

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .expect("client");
    let state = Arc::new(Load::default());
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(load(
                client.clone(),
                bases.clone(),
                state.clone(),
                TOTAL,
                VICTIM,
            ))
        })
        .collect();

    eventually(
        Duration::from_secs(180),
        &format!("{KILL_AT} acknowledgements before the kill"),
        || async { (state.acks.load(Ordering::Relaxed) >= KILL_AT).then_some(()) },
    )
    .await;
    state.phase.store(1, Ordering::Release);
    let victim = nodes[VICTIM].take().expect("victim");
    let listen = victim.base.trim_start_matches("http://").to_owned();
    let acks_at_kill = state.acks.load(Ordering::Relaxed);
    let killed_at = started.elapsed();
    tokio::task::spawn_blocking(move || victim.kill_hard())
        .await
        .expect("kill -9");
    // Stay down for a while, so that requests to the dead node fail over to the others.
    eventually(
        Duration::from_secs(120),
        "acknowledgements by the other nodes while one is down",
        || async {
            (state.acks.load(Ordering::Relaxed) >= acks_at_kill + DOWN_FOR_ACKS).then_some(())
        },
    )
    .await;
    let restarted = {
        let (dir, toml, key, listen) = (
            dirs[VICTIM].path().to_owned(),
            toml.clone(),
            key.clone(),
            listen.clone(),
        );
        tokio::task::spawn_blocking(move || {
            Process::spawn_with(&dir, &toml, &listen, &[("SWITCHBOARD_MASTER_KEY", &key)])
        })
        .await
        .expect("restart")
    };
    assert_eq!(restarted.base, bases[VICTIM], "restarted on the same port");
    nodes[VICTIM] = Some(restarted);
    let down_for = started.elapsed() - killed_at;
    state.phase.store(2, Ordering::Release);

    tokio::time::timeout(Duration::from_secs(600), async {
        for task in tasks {
            task.await.expect("load task");
        }
    })
    .await
    .expect("the load finishes within 10 minutes");
    let ingest_time = started.elapsed();
    let delivered_during_ingest = sink.seen().marks.len();
    let acked: HashSet<(u64, u32)> = state.acked.lock().expect("lock").clone();
    assert_eq!(acked.len() as u64, TOTAL, "every event acknowledged once");

    // Every acknowledged event arrives…
    eventually(
        Duration::from_secs(180),
        "every acknowledged event delivered",
        || async {
            let seen = sink.seen();
            (seen.marks.len() >= acked.len() && acked.iter().all(|m| seen.marks.contains(m)))
                .then_some(())
        },
    )
    .await;
    let all_delivered = started.elapsed();
    // …and nothing is left to send (the killed node's leases expired and were taken over), so
    // the counts below are final.
    let metrics_client = reqwest::Client::new();
    eventually(Duration::from_secs(60), "an empty backlog", || async {
        backlog(&metrics_client, &bases[0])
            .await
            .filter(|b| *b == 0.0)
    })
    .await;

    let cut = state.cut.lock().expect("lock").clone();
    let (requests, distinct, duplicated_ids, cut_delivered, unexpected) = {
        let seen = sink.seen();
        let cut_delivered = seen
            .marks
            .iter()
            .filter(|m| !acked.contains(m) && cut.contains(m))
            .count();
        let unexpected: Vec<(u64, u32)> = seen
            .marks
            .iter()
            .filter(|m| !acked.contains(m) && !cut.contains(m))
            .copied()
            .collect();
        (
            seen.requests,
            seen.by_id.len(),
            seen.by_id.values().filter(|c| **c > 1).count(),
            cut_delivered,
            unexpected,
        )
    };
    let duplicates = requests - distinct;
    let rejected = state.rejected.lock().expect("lock").clone();
    let failed_live = state.failed_live.lock().expect("lock").clone();
    let percent = 100.0 * duplicates as f64 / TOTAL as f64;
    let secs = |d: Duration| d.as_secs_f64();
    eprintln!(
        "multinode: {TOTAL} events acknowledged by 3 nodes in {:.1}s ({:.0} acks/s, {CLIENTS} clients); \
         node {VICTIM} killed after {acks_at_kill} acks at {:.1}s, back after {:.1}s",
        secs(ingest_time),
        TOTAL as f64 / secs(ingest_time),
        secs(killed_at),
        secs(down_for),
    );
    eprintln!(
        "multinode: {delivered_during_ingest} delivered during ingest ({:.0}/s); all delivered after {:.1}s \
         ({:.0} deliveries/s overall); {requests} requests received, {distinct} distinct webhook-ids",
        delivered_during_ingest as f64 / secs(ingest_time),
        secs(all_delivered),
        distinct as f64 / secs(all_delivered),
    );
    eprintln!(
        "multinode: duplicates (same webhook-id again): {duplicates} ({percent:.3}% of {TOTAL}) on \
         {duplicated_ids} webhook-ids; target < 0.1%: {}",
        if percent < 0.1 { "MET" } else { "NOT MET" }
    );
    eprintln!(
        "multinode: requests cut by the kill: {} ({cut_delivered} of them committed and delivered \
         as events of their own); connections refused: {}; non-202 answers: {}; failures on live \
         nodes: {}",
        cut.len(),
        state.refused.load(Ordering::Relaxed),
        rejected.len(),
        failed_live.len(),
    );

    assert!(
        unexpected.is_empty(),
        "delivered but never acknowledged (and not cut by the kill): {} requests, e.g. {:?}; \
         non-202 answers: {:?}",
        unexpected.len(),
        &unexpected[..unexpected.len().min(10)],
        &rejected[..rejected.len().min(10)],
    );
    assert!(
        failed_live.is_empty(),
        "requests to live nodes failed without an answer: {:?}",
        &failed_live[..failed_live.len().min(10)]
    );
    assert!(
        percent < 1.0,
        "{duplicates} duplicates ({percent:.3}%) exceed 1%"
    );

    // SIGTERM: every node stops cleanly.
    let stopping: Vec<_> = nodes
        .iter_mut()
        .map(|node| {
            let node = node.take().expect("node");
            node.terminate();
            tokio::task::spawn_blocking(move || node.wait(Duration::from_secs(30)))
        })
        .collect();
    for node in stopping {
        let status = node.await.expect("wait");
        assert!(status.success(), "exit status {status:?}");
    }
    drop(schema);
}

/// A tenant and endpoint created through node A's API are used by node B within a few seconds
/// (nodes refresh API resources every 2 s): B accepts a publish for the tenant and the endpoint
/// receives it. The same for a destination and route created on A and an ingest on B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_created_on_one_node_is_used_by_another() {
    const TEST: &str = "multinode::a_resource_created_on_one_node_is_used_by_another";
    let Some(base) = pg_base(TEST) else { return };
    let schema = Schema::create(&base, "sb_multi");
    let sink = Sink::start().await;
    let key = master_key();
    let toml = node_config(&schema.url(), &sink.url, false);
    let (_dirs, nodes) = start_nodes(2, &toml, &key).await;
    let a = ApiClient::new(&nodes[0].as_ref().expect("A").base, Some(ADMIN_TOKEN));
    let b = ApiClient::new(&nodes[1].as_ref().expect("B").base, Some(ADMIN_TOKEN));

    // Outbound: tenant and endpoint on A, publish on B.
    let created = Instant::now();
    a.post("/v1/tenants", &json!({"id": "acme", "name": "Acme"}))
        .await
        .ok(201);
    // The nodes run with a 5 s lease; an endpoint's timeout must be shorter.
    a.post(
        "/v1/tenants/acme/endpoints",
        &json!({"url": sink.url, "timeout": "2s"}),
    )
    .await
    .ok(201);
    // Until B has refreshed it answers 404 (unknown tenant), or 202 with no endpoint when it
    // saw the tenant but not yet the endpoint.
    let mut tries = 0u64;
    let published = eventually(
        Duration::from_secs(15),
        "B publishes to A's endpoint",
        || {
            tries += 1;
            let (b, tries) = (b.clone(), tries);
            async move {
                let response = b
                    .post(
                        "/v1/tenants/acme/events",
                        &json!({"type": "user.created", "payload": {"publish": tries}}),
                    )
                    .await;
                (response.status == 202 && response.body["endpoints"] == 1).then_some(tries)
            }
        },
    )
    .await;
    let seen_by_b = created.elapsed();
    eventually(
        Duration::from_secs(15),
        "the endpoint receives B's event",
        || async {
            sink.seen()
                .bodies
                .contains(&json!({"publish": published}))
                .then_some(())
        },
    )
    .await;
    eprintln!(
        "multinode: B used A's endpoint {:.1}s after it was created ({published} publishes)",
        seen_by_b.as_secs_f64()
    );
    assert!(
        seen_by_b < Duration::from_secs(10),
        "propagation took {seen_by_b:?}"
    );

    // Inbound: source, destination and route on A, ingest on B.
    let created = Instant::now();
    a.post("/v1/sources", &json!({"id": "shop"})).await.ok(201);
    a.post(
        "/v1/destinations",
        &json!({"id": "hooks", "url": sink.url, "timeout": "2s"}),
    )
    .await
    .ok(201);
    a.post(
        "/v1/routes",
        &json!({"source": "shop", "destination": "hooks"}),
    )
    .await
    .ok(201);
    // B answers 404 until it knows the source; an event it accepts before it knows the route
    // has no delivery. Keep sending until one of B's events arrives.
    let client = reqwest::Client::new();
    let mut n = 0u64;
    eventually(
        Duration::from_secs(15),
        "an event ingested on B delivered",
        || {
            n += 1;
            let (client, url, sink, n) = (
                client.clone(),
                format!("{}/in/shop", b.base),
                sink.clone(),
                n,
            );
            async move {
                let status = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(json!({"ingest": n}).to_string())
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                assert!(matches!(status, 202 | 404), "ingest on B answered {status}");
                let seen = sink.seen();
                seen.bodies
                    .iter()
                    .any(|b| b.get("ingest").is_some())
                    .then_some(())
            }
        },
    )
    .await;
    let used_by_b = created.elapsed();
    eprintln!(
        "multinode: B delivered through A's route {:.1}s after it was created",
        used_by_b.as_secs_f64()
    );
    assert!(
        used_by_b < Duration::from_secs(10),
        "propagation took {used_by_b:?}"
    );
    drop(nodes);
    drop(schema);
}
