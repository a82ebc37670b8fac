//! Queue destinations and sources against the real brokers of this machine: NATS JetStream
//! (`SWITCHBOARD_TEST_NATS`), RabbitMQ (`SWITCHBOARD_TEST_AMQP`) and Redis
//! (`SWITCHBOARD_TEST_REDIS`). Each test uses its own stream, queue or key, so they run
//! concurrently; a test whose variable is unset prints `SKIPPED` and passes.
//!
//! Per broker: HTTP ingest → route → queue destination → the message is on the broker
//! (confirmed); broker message → queue source → route → HTTP receiver; a broker that refuses
//! fails the attempt with a clear, retryable error; and `kill -9` mid-consumption, restart,
//! every message stored exactly once and delivered.

mod nats;
mod rabbitmq;
mod redis;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_core::config::{
    DestinationConfig, QueueDestination, QueueSource, RouteConfig, SourceConfig, SourceKind,
    VerifierConfig,
};
use switchboard_store::{EventFilter, EventRecord};

use crate::support::process::Process;
use crate::support::{Receiver, eventually, schedule_ms};

/// The broker URL in `var`, or `None` after printing why the test is skipped.
pub fn broker_url(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("SKIPPED {test}: set {var}");
            None
        }
    }
}

/// A name no other test (or earlier run) uses: `prefix` + pid + counter + random.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}x{}x{:04x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand::random::<u16>()
    )
}

/// A queue destination `out` from JSON settings (`broker`, `url`, `subject`…).
pub fn queue_destination(settings: Value) -> DestinationConfig {
    let mut settings = settings;
    settings["id"] = json!("out");
    settings["timeout"] = json!("5s");
    // Retried every 300 ms for 30 s: long enough for a test to fix a refusing broker while
    // the delivery still has retries left, however loaded the machine.
    settings["retry"] = json!({"schedule": vec!["300ms"; 100]});
    let destination: QueueDestination = serde_json::from_value(settings).expect("valid settings");
    DestinationConfig::Queue(destination)
}

/// Routes `src` to the queue destination `out` (replacing the HTTP destination).
pub fn to_queue(config: &mut switchboard_core::Config, destination: DestinationConfig) {
    config.destinations = vec![destination];
    config.routes = vec![RouteConfig {
        id: Some("to-queue".into()),
        source: "src".into(),
        destination: "out".into(),
        filter: None,
        transform: None,
        enabled: true,
    }];
}

/// A queue source `qin` from JSON settings, routed to the HTTP destination `dst`.
pub fn from_queue(config: &mut switchboard_core::Config, settings: Value) {
    let queue: QueueSource = serde_json::from_value(settings).expect("valid settings");
    queue.validate().expect("valid settings");
    config.sources.push(SourceConfig {
        id: "qin".into(),
        verifier: VerifierConfig::None,
        max_body_bytes: None,
        rate_limit: None,
        kind: SourceKind::Queue(Box::new(queue)),
        enabled: true,
    });
    config.routes.push(RouteConfig {
        id: Some("from-queue".into()),
        source: "qin".into(),
        destination: "dst".into(),
        filter: None,
        transform: None,
        enabled: true,
    });
}

/// Every event of `source` (all pages).
pub async fn events_of(store: &dyn switchboard_store::Store, source: &str) -> Vec<EventRecord> {
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list_events(&EventFilter {
                source: Some(source.into()),
                before_seq: before,
                limit: 500,
                ..Default::default()
            })
            .await
            .expect("list events");
        let Some(last) = page.last() else {
            return out;
        };
        before = Some(last.seq);
        out.extend(page);
    }
}

/// The header `name` of a stored event.
pub fn header<'a>(event: &'a EventRecord, name: &str) -> Option<&'a str> {
    event
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The marker `n` of a body `{"n": …}`.
pub fn marker(body: &[u8]) -> Option<u64> {
    serde_json::from_slice::<Value>(body)
        .ok()?
        .get("n")?
        .as_u64()
}

/// A config file with the queue source `qin` (its TOML settings) routed to `receiver`.
pub fn crash_toml(receiver: &str, source_settings: &str) -> String {
    format!(
        r#"
[security]
allow_private_networks = true

[delivery]
poll_interval = "100ms"

[[sources]]
id = "qin"
kind = "queue"
{source_settings}

[[destinations]]
id = "dst"
kind = "http"
url = "{receiver}"
timeout = "5s"
retry = {{ schedule = ["200ms", "500ms", "1s", "2s"] }}

[[routes]]
source = "qin"
destination = "dst"
"#
    )
}

/// The crash test shared by the brokers. `total` messages `{"n": i}` are on the broker;
/// Switchboard consumes them one at a time (`slow` settings) and is killed with SIGKILL once
/// some have been delivered; restarted (`fast` settings) it must store every message exactly
/// once — the redeliveries of what it had stored but not acknowledged are recognised by their
/// de-duplication keys — and deliver every one.
pub async fn crash_and_restart(total: u64, slow: &str, fast: &str) {
    let receiver = Receiver::always(200).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let process = Process::spawn(dir.path(), &crash_toml(&receiver.url, slow));
    eventually(
        Duration::from_secs(60),
        "the first messages delivered",
        || async { (receiver.requests().len() as u64 >= total / 5).then_some(()) },
    )
    .await;
    process.kill_hard();
    let stored_at_kill = stored(dir.path()).await.len() as u64;
    assert!(
        stored_at_kill > 0 && stored_at_kill < total,
        "the kill came mid-consumption: {stored_at_kill} of {total} stored"
    );

    let restarted = Process::spawn(dir.path(), &crash_toml(&receiver.url, fast));
    eventually(
        Duration::from_secs(120),
        "every message delivered after the restart",
        || async {
            let seen: HashSet<u64> = receiver
                .requests()
                .iter()
                .filter_map(|r| marker(&r.body))
                .collect();
            (seen.len() as u64 == total).then_some(())
        },
    )
    .await;
    restarted.terminate();
    assert!(restarted.wait(Duration::from_secs(30)).success());

    let events = stored(dir.path()).await;
    let keys: HashSet<&str> = events
        .iter()
        .filter_map(|e| e.dedup_key.as_deref())
        .collect();
    assert_eq!(
        events.len() as u64,
        total,
        "every message stored exactly once (stored {} before the kill)",
        stored_at_kill
    );
    assert_eq!(keys.len() as u64, total, "each with its own broker id");
    let webhook_ids: HashSet<String> = receiver
        .requests()
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    assert_eq!(
        webhook_ids.len() as u64,
        total,
        "one delivery per message (retries of a delivery share its webhook-id)"
    );
    eprintln!(
        "crash test: {total} messages, {stored_at_kill} stored before kill -9, {} requests received",
        receiver.requests().len()
    );
}

/// The events of `qin` in the SQLite store of a stopped process.
async fn stored(dir: &Path) -> Vec<EventRecord> {
    let mut config = switchboard_core::Config::default();
    config.server.data_dir = dir.to_path_buf();
    let store = switchboard_server::open_store(&config)
        .await
        .expect("open store");
    events_of(&*store, "qin").await
}

/// Retries after 100 ms, ten times.
pub fn quick_retries() -> switchboard_core::RetryPolicy {
    schedule_ms(&[100; 10])
}

/// The TOML blocks of a Markdown text (between "```toml" and "```").
pub fn toml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut rest = markdown;
    while let Some(start) = rest.find("```toml\n") {
        let body = &rest[start + "```toml\n".len()..];
        let Some(end) = body.find("```") else {
            break;
        };
        blocks.push(body[..end].to_owned());
        rest = &body[end..];
    }
    blocks
}

/// A file of the repository, by path from its root.
pub fn repository_file(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::read_to_string(root.join(path)).expect("read a repository file")
}

/// The queue examples of `docs/configuration.md` parse, and their destinations build (templates
/// compile) without touching a broker.
#[test]
fn configuration_examples_parse_and_build() {
    let docs = repository_file("docs/configuration.md");
    let start = docs
        .find("### `[[destinations]]` (`kind = \"queue\"`)")
        .expect("the queue destination section");
    let end = start
        + docs[start..]
            .find("### `[[routes]]`")
            .expect("the section after");
    let blocks = toml_blocks(&docs[start..end]);
    assert_eq!(blocks.len(), 2, "a destination and a source example");
    let mut queues = 0;
    for block in blocks {
        let config = switchboard_core::Config::from_toml(&block).expect("example parses");
        for destination in &config.destinations {
            destination.validate_kind().expect("example is valid");
            switchboard_server::delivery::connectors::build(destination)
                .expect("example builds")
                .expect("a connector");
            queues += 1;
        }
        for source in &config.sources {
            assert!(matches!(source.kind, SourceKind::Queue(_)));
            queues += 1;
        }
    }
    assert_eq!(queues, 6, "three destinations and three sources");
}

/// Cuts every TCP connection process `pid` has to `127.0.0.1:{port}` (`ss -K`, as root), as a
/// broker restart or a network failure would. Returns how many were cut.
pub fn drop_connections(pid: u32, port: u16) -> usize {
    let listing = std::process::Command::new("ss")
        .args([
            "-tnpH",
            "state",
            "established",
            &format!("( dport = :{port} )"),
        ])
        .output()
        .expect("run ss");
    let text = String::from_utf8_lossy(&listing.stdout);
    let mut cut = 0;
    for line in text.lines().filter(|l| l.contains(&format!("pid={pid},"))) {
        let Some(local) = line
            .split_whitespace()
            .find(|w| w.starts_with("127.0.0.1:"))
        else {
            continue;
        };
        let local_port = local.trim_start_matches("127.0.0.1:");
        let killed = std::process::Command::new("ss")
            .args([
                "-K",
                "-tn",
                &format!("( sport = :{local_port} and dport = :{port} )"),
            ])
            .output()
            .expect("run ss -K");
        assert!(killed.status.success(), "ss -K failed: {killed:?}");
        cut += 1;
    }
    cut
}

/// A config file: queue source `qin` routed to `receiver`, and webhook source `src` routed to
/// the queue destination `out` (TOML settings of each).
pub fn both_ways_toml(receiver: &str, source_settings: &str, destination_settings: &str) -> String {
    format!(
        r#"{}
[[sources]]
id = "src"

[[destinations]]
id = "out"
kind = "queue"
timeout = "2s"
retry = {{ schedule = ["200ms", "200ms", "200ms", "500ms", "500ms", "1s", "1s", "1s", "2s", "2s"] }}
{destination_settings}

[[routes]]
source = "src"
destination = "out"
"#,
        crash_toml(receiver, source_settings)
    )
}

/// Both directions keep working after the connections to the broker (on `port`) are cut:
/// `consumed(n)` waits until the receiver got marker `n` through the source, `publish(n)` puts
/// marker `n` on the broker for the source, `published(n)` says whether marker `n`, ingested
/// over HTTP, reached the broker through the destination.
pub async fn survive_connection_loss<P, PF, Q, QF>(toml: &str, port: u16, publish: P, published: Q)
where
    P: Fn(u64) -> PF,
    PF: std::future::Future<Output = ()>,
    Q: Fn(u64) -> QF,
    QF: std::future::Future<Output = bool>,
{
    let receiver = Receiver::always(200).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let process = Process::spawn(dir.path(), &toml.replace("RECEIVER_URL", &receiver.url));
    let client = reqwest::Client::new();
    let ingest = |n: u64| {
        let request = client
            .post(format!("{}/in/src", process.base))
            .header("content-type", "application/json")
            .body(format!(r#"{{"n":{n}}}"#));
        async move {
            let response = request.send().await.expect("ingest");
            assert_eq!(response.status(), 202);
        }
    };
    let received = |n: u64| {
        let receiver = &receiver;
        async move {
            receiver
                .requests()
                .iter()
                .any(|r| marker(&r.body) == Some(n))
                .then_some(())
        }
    };
    for round in 0..3u64 {
        let (from_broker, to_broker) = (round * 2, round * 2 + 1);
        publish(from_broker).await;
        eventually(
            Duration::from_secs(60),
            "a message through the source",
            || received(from_broker),
        )
        .await;
        ingest(to_broker).await;
        eventually(
            Duration::from_secs(60),
            "a message through the destination",
            || async { published(to_broker).await.then_some(()) },
        )
        .await;
        let cut = drop_connections(process.pid(), port);
        assert!(
            cut >= 2,
            "the source's and the destination's connections were cut ({cut})"
        );
    }
    process.terminate();
    assert!(process.wait(Duration::from_secs(30)).success());
}

/// Queue sources through the management API: created with their settings, shown with the
/// URL's password redacted, refused with the reason when the settings are wrong. (The broker
/// is never reached: the port refuses connections, so the source only logs and retries.)
#[tokio::test]
async fn queue_sources_through_the_api() {
    let server = crate::support::TestServer::start(crate::support::config_to(
        "http://127.0.0.1:9/unused",
        quick_retries(),
    ))
    .await;
    let api = server.api();
    let created = api
        .post(
            "/v1/sources",
            &json!({"id": "orders", "kind": "queue", "settings": {
                "broker": "redis", "url": "redis://app:hunter2@127.0.0.1:9/0",
                "stream": "orders", "type_header": "type",
            }}),
        )
        .await;
    let body = created.ok(201).clone();
    assert_eq!(body["kind"], "queue");
    assert_eq!(body["settings"]["stream"], "orders");
    assert_eq!(
        body["settings"]["url"],
        "redis://app:<redacted>@127.0.0.1:9/0"
    );
    assert!(!created.text.contains("hunter2"), "{}", created.text);
    let shown = api.get("/v1/sources/orders").await;
    assert!(!shown.text.contains("hunter2"), "{}", shown.text);
    assert!(body["ingest_path"].is_null());

    let refused = api
        .post(
            "/v1/sources",
            &json!({"id": "bad", "kind": "queue", "settings": {
                "broker": "nats", "url": "nats://127.0.0.1:9", "queue": "x",
            }}),
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert!(
        refused
            .text
            .contains("`queue` is not a setting of broker `nats`"),
        "{}",
        refused.text
    );
    server.stop().await;
}
