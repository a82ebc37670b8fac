//! Test helpers: an in-process server on 127.0.0.1:0, a scriptable recording receiver, a
//! spawned `switchboard` process, and polling helpers with deadlines (never fixed sleeps for
//! correctness).

#![allow(dead_code)]

pub mod pg;
pub mod process;
pub mod receiver;
pub mod records_api;

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
    config.server.admin_token = Some(process::ADMIN_TOKEN.into());
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
        filter: None,
        transform: None,
        enabled: true,
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
        rate_limit: None,
        ordered: false,
        enabled: true,
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
    pub async fn start_in(config: Config, dir: tempfile::TempDir) -> Self {
        Self::start_on(config, dir, "127.0.0.1:0").await
    }

    /// Starts the server on an existing data directory and a given address (a restart on the
    /// port clients know).
    pub async fn start_on(mut config: Config, dir: tempfile::TempDir, addr: &str) -> Self {
        config.server.data_dir = dir.path().to_path_buf();
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
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

    /// A management API client holding the bootstrap admin token of [`config_to`].
    pub fn api(&self) -> ApiClient {
        ApiClient::new(&self.base, Some(process::ADMIN_TOKEN))
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

/// An answer of the management API, body parsed as JSON (`Null` when it is not JSON).
#[derive(Debug)]
pub struct ApiResponse {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body as JSON.
    pub body: serde_json::Value,
    /// The body as text.
    pub text: String,
}

impl ApiResponse {
    /// A header as a string (empty when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts a success status and returns the body.
    pub fn ok(&self, status: u16) -> &serde_json::Value {
        assert_eq!(self.status, status, "expected {status}: {}", self.text);
        &self.body
    }

    /// Asserts an RFC 9457 problem with `status` and `code`; returns the problem.
    pub fn problem(&self, status: u16, code: &str) -> &serde_json::Value {
        assert_eq!(
            self.status, status,
            "expected {status} {code}: {}",
            self.text
        );
        assert!(
            self.header("content-type")
                .starts_with("application/problem+json"),
            "problem content type, got {:?}: {}",
            self.header("content-type"),
            self.text
        );
        assert_eq!(self.body["code"], code, "problem code: {}", self.text);
        assert_eq!(self.body["status"], status, "problem status: {}", self.text);
        assert!(
            self.body["title"].is_string() && self.body["detail"].is_string(),
            "problem has title and detail: {}",
            self.text
        );
        &self.body
    }
}

/// A client for `/v1` that sends `Authorization: Bearer <token>` when it has one.
#[derive(Clone)]
pub struct ApiClient {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    token: Option<String>,
    client: reqwest::Client,
}

impl ApiClient {
    /// A client for the server at `base`.
    pub fn new(base: &str, token: Option<&str>) -> Self {
        Self {
            base: base.to_owned(),
            token: token.map(str::to_owned),
            client: reqwest::Client::new(),
        }
    }

    /// The same server with another token.
    pub fn with_token(&self, token: &str) -> Self {
        Self::new(&self.base, Some(token))
    }

    /// The same server without a token.
    pub fn anonymous(&self) -> Self {
        Self::new(&self.base, None)
    }

    /// A request to `path` (starting with `/`), authenticated when the client has a token.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends a request and reads the answer.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> ApiResponse {
        let response = request.send().await.expect("API request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("API response body");
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        ApiResponse {
            status,
            headers,
            body,
            text,
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> ApiResponse {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> ApiResponse {
        self.send(self.request(reqwest::Method::DELETE, path)).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> ApiResponse {
        self.send(self.request(reqwest::Method::POST, path).json(body))
            .await
    }

    /// `PATCH path` with a JSON body.
    pub async fn patch(&self, path: &str, body: &serde_json::Value) -> ApiResponse {
        self.send(self.request(reqwest::Method::PATCH, path).json(body))
            .await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, body: &serde_json::Value) -> ApiResponse {
        self.send(self.request(reqwest::Method::PUT, path).json(body))
            .await
    }
}
