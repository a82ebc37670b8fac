//! Test helpers: an in-process server on 127.0.0.1:0, a scriptable recording receiver, a
//! spawned `switchboard` process, and polling helpers with deadlines (never fixed sleeps for
//! correctness).

#![allow(dead_code)]

pub mod process;
pub mod receiver;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use switchboard_core::config::{DestinationConfig, HttpDestination, RouteConfig, SourceConfig};
use switchboard_core::{Config, RetryPolicy};
use switchboard_store::{DeliveryFilter, DeliveryRecord, Store};
use tokio_util::sync::CancellationToken;

pub use receiver::{Receiver, Reply};

/// The Standard Webhooks secret from the shared SDK vectors.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A config with source `src` routed to one HTTP destination `dst` at `url`.
pub fn config_to(url: &str, retry: RetryPolicy) -> Config {
    let mut config = Config::default();
    config.security.allow_private_networks = true;
    config.delivery.poll_interval = Duration::from_millis(100);
    config
        .sources
        .push(SourceConfig::new("src", Default::default()));
    config
        .destinations
        .push(http_destination("dst", url, retry));
    config.routes.push(RouteConfig {
        id: None,
        source: "src".into(),
        destination: "dst".into(),
    });
    config
}

/// An HTTP destination with the shared secret and a short timeout.
pub fn http_destination(id: &str, url: &str, retry: RetryPolicy) -> DestinationConfig {
    DestinationConfig::Http(HttpDestination {
        id: id.into(),
        url: url.into(),
        secret: Some(SECRET.into()),
        timeout: Duration::from_secs(5),
        retry,
        headers: Default::default(),
        max_in_flight: None,
    })
}

/// Retries after the given millisecond delays.
pub fn schedule_ms(delays: &[u64]) -> RetryPolicy {
    RetryPolicy::Schedule(delays.iter().map(|ms| Duration::from_millis(*ms)).collect())
}

/// A Switchboard running in this process.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// The data directory (kept alive with the server).
    pub dir: tempfile::TempDir,
    /// The configuration it runs with.
    pub config: Config,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), switchboard_server::ServerError>>,
    store: Arc<dyn Store>,
}

impl TestServer {
    /// Starts the server with `config` (its listen address and data dir are replaced).
    pub async fn start(config: Config) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(config, dir).await
    }

    /// Starts the server on an existing data directory.
    pub async fn start_in(mut config: Config, dir: tempfile::TempDir) -> Self {
        config.server.data_dir = dir.path().to_path_buf();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(switchboard_server::run(
            config.clone(),
            listener,
            shutdown.clone(),
        ));
        // The server creates the database before it serves; wait for it to answer.
        let client = reqwest::Client::new();
        eventually(Duration::from_secs(10), "server ready", || async {
            let ok = client
                .get(format!("{base}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            ok.then_some(())
        })
        .await;
        let store = switchboard_server::open_store(&config)
            .await
            .expect("open store");
        Self {
            base,
            dir,
            config,
            shutdown,
            task,
            store,
        }
    }

    /// A handle on the same SQLite file, for assertions.
    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// Posts `body` to `/in/{source}`.
    pub async fn ingest(&self, source: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}/in/{source}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("ingest request")
    }

    /// Posts and returns the event id from a `202`.
    pub async fn ingest_ok(&self, source: &str, body: impl Into<reqwest::Body>) -> String {
        let response = self.ingest(source, body).await;
        assert_eq!(response.status(), 202, "ingest should be accepted");
        let json: serde_json::Value = response.json().await.expect("json");
        json["id"].as_str().expect("id").to_owned()
    }

    /// Deliveries of one event.
    pub async fn deliveries_of(&self, event_id: &str) -> Vec<DeliveryRecord> {
        self.store()
            .list_deliveries(&DeliveryFilter {
                event_id: Some(event_id.into()),
                limit: 100,
                ..Default::default()
            })
            .await
            .expect("list deliveries")
    }

    /// Waits until the event's first delivery satisfies `pred`.
    pub async fn wait_delivery(
        &self,
        event_id: &str,
        what: &str,
        pred: impl Fn(&DeliveryRecord) -> bool,
    ) -> DeliveryRecord {
        eventually(Duration::from_secs(15), what, || async {
            self.deliveries_of(event_id)
                .await
                .into_iter()
                .next()
                .filter(|d| pred(d))
        })
        .await
    }

    /// Cancels and waits for a clean stop; returns the data directory.
    pub async fn stop(self) -> tempfile::TempDir {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("server stops within 30s")
            .expect("server task")
            .expect("server exits cleanly");
        self.dir
    }
}

/// Polls `check` until it yields `Some`, or panics naming `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
