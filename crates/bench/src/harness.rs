//! The system under test: Switchboard started in-process on a loopback port with a throw-away
//! data directory (or several nodes sharing a throw-away PostgreSQL schema), and a loopback
//! receiver that counts deliveries and can be held shut.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use http_body_util::BodyExt;
use switchboard_core::config::{
    Config, DestinationConfig, Durability, HttpDestination, RouteConfig, SourceConfig,
    VerifierConfig,
};
use switchboard_core::{DeliveryStatus, RetryPolicy};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The one source every benchmark posts to (`/in/bench`).
pub const SOURCE: &str = "bench";
/// The id of the single destination, when there is one.
pub const DESTINATION: &str = "sink";
/// Signing secret of the destination: deliveries are signed as in production.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Where the single route (if any) delivers.
#[derive(Debug, Clone)]
pub struct Route {
    /// Destination URL.
    pub url: String,
    /// Per-attempt timeout; long when the receiver is held shut on purpose.
    pub timeout: Duration,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// jq filter of the route.
    pub filter: Option<String>,
    /// jq transform of the route.
    pub transform: Option<String>,
}

/// The knobs a benchmark run varies.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `storage.durability`.
    pub durability: Durability,
    /// `storage.max_batch` override.
    pub max_batch: Option<usize>,
    /// `delivery.per_destination_concurrency` override.
    pub per_destination_concurrency: Option<usize>,
    /// `delivery.concurrency` override.
    pub concurrency: Option<usize>,
    /// Where temporary data directories are created.
    pub data_parent: PathBuf,
}

/// Builds the server configuration: source `bench` (no verifier) and, with `route`, one signed
/// HTTP destination fed by it.
pub fn config(settings: &Settings, data_dir: &Path, route: Option<&Route>) -> Config {
    let mut config = Config::default();
    config.server.data_dir = data_dir.to_path_buf();
    config.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    // In-flight attempts against a receiver held shut are abandoned quickly at the end of a run.
    config.server.shutdown_grace = Duration::from_secs(1);
    config.security.allow_private_networks = true;
    config.storage.durability = settings.durability;
    if let Some(max_batch) = settings.max_batch {
        config.storage.max_batch = max_batch;
    }
    if let Some(n) = settings.per_destination_concurrency {
        config.delivery.per_destination_concurrency = n;
        config.delivery.concurrency = config.delivery.concurrency.max(n);
    }
    if let Some(n) = settings.concurrency {
        config.delivery.concurrency = n;
    }
    // Attempts may legitimately wait at a gated receiver for as long as the pre-load takes; a
    // short lease would re-queue them meanwhile and the receiver would see duplicates. (It must
    // also exceed every destination's attempt timeout, which is at most an hour here.)
    config.delivery.lease = Duration::from_secs(2 * 3600);
    config.sources = vec![SourceConfig::new(SOURCE, VerifierConfig::None)];
    if let Some(route) = route {
        config.destinations = vec![DestinationConfig::Http(HttpDestination {
            id: DESTINATION.into(),
            url: route.url.clone(),
            secret: Some(SECRET.into()),
            timeout: route.timeout,
            retry: route.retry.clone(),
            headers: BTreeMap::new(),
            max_in_flight: None,
            rate_limit: None,
            ordered: false,
            enabled: true,
        })];
        config.routes = vec![RouteConfig {
            id: None,
            source: SOURCE.into(),
            destination: DESTINATION.into(),
            filter: route.filter.clone(),
            transform: route.transform.clone(),
            enabled: true,
        }];
    }
    config
}

/// A running in-process Switchboard.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), switchboard_server::ServerError>>,
    // Kept last so the directory is removed only after the server has stopped. Nodes sharing a
    // database share it too (and so the master key file it holds).
    _data_dir: Arc<TempDir>,
}

/// A fresh data directory under `settings.data_parent`.
fn temp_data_dir(settings: &Settings) -> anyhow::Result<TempDir> {
    tempfile::Builder::new()
        .prefix("switchboard-bench-")
        .tempdir_in(&settings.data_parent)
        .with_context(|| format!("creating a data dir in {}", settings.data_parent.display()))
}

impl Server {
    /// Starts Switchboard on `127.0.0.1:0` with a fresh data directory and waits until
    /// `/readyz` answers.
    pub async fn start(settings: &Settings, route: Option<&Route>) -> anyhow::Result<Self> {
        Self::start_with(settings, route, |_| {}).await
    }

    /// Like [`Server::start`], with `tweak` applied to the configuration first.
    pub async fn start_with(
        settings: &Settings,
        route: Option<&Route>,
        tweak: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Self> {
        let data_dir = Arc::new(temp_data_dir(settings)?);
        Self::start_in(settings, route, data_dir, tweak).await
    }

    /// Like [`Server::start_with`], in the given data directory.
    async fn start_in(
        settings: &Settings,
        route: Option<&Route>,
        data_dir: Arc<TempDir>,
        tweak: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Self> {
        let mut config = config(settings, data_dir.path(), route);
        tweak(&mut config);
        let listener = TcpListener::bind(config.server.listen).await?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(switchboard_server::run(config, listener, shutdown.clone()));
        let mut server = Self {
            addr,
            shutdown,
            task,
            _data_dir: data_dir,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let client = crate::load::client();
        let uri: hyper::Uri = format!("http://{}/readyz", self.addr).parse()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.task.is_finished() {
                (&mut self.task).await.context("server task panicked")??;
                bail!("the server stopped during start-up");
            }
            if let Ok(response) = client.get(uri.clone()).await
                && response.status() == StatusCode::OK
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the server did not become ready within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Deliveries by status, from the server's own `/metrics` gauge (refreshed from the store
    /// on every scrape). Going through the server rather than opening a second store handle keeps
    /// extra SQLite connections and page caches out of the memory figures.
    pub async fn delivery_counts(&self) -> anyhow::Result<DeliveryCounts> {
        delivery_counts_at(self.addr).await
    }

    /// Shuts the server down the way SIGTERM does and waits for it.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match tokio::time::timeout(Duration::from_secs(60), self.task).await {
            Ok(joined) => joined.context("server task panicked")??,
            Err(_) => bail!("the server did not shut down within 60 s"),
        }
        Ok(())
    }
}

/// A throw-away PostgreSQL schema: created empty, dropped (with everything in it) at the end.
/// Uses the `psql` client, so the bench needs no database driver of its own.
pub struct Schema {
    base_url: String,
    name: String,
    dropped: bool,
}

impl Schema {
    /// Creates `sb_bench_<pid>_<millis>` in the database at `base_url`.
    pub fn create(base_url: &str) -> anyhow::Result<Self> {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let name = format!("sb_bench_{}_{millis}", std::process::id());
        psql(base_url, &format!("CREATE SCHEMA {name}"))?;
        Ok(Self {
            base_url: base_url.to_owned(),
            name,
            dropped: false,
        })
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL the server uses: the base URL with the schema as `search_path`.
    pub fn url(&self) -> String {
        let separator = if self.base_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{separator}options=-csearch_path%3D{}",
            self.base_url, self.name
        )
    }

    /// Process ids of the PostgreSQL backends serving this process's connections (matched by
    /// client port: other programs on the machine may use the same server).
    pub fn backend_pids(&self) -> anyhow::Result<Vec<u32>> {
        let ports = own_tcp_ports();
        if ports.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<String> = ports.iter().map(u16::to_string).collect();
        let text = psql_query(
            &self.base_url,
            &format!(
                "SELECT pid FROM pg_stat_activity WHERE client_port IN ({})",
                list.join(",")
            ),
        )?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// Drops the schema and everything in it.
    pub fn drop_now(&mut self) -> anyhow::Result<()> {
        if !self.dropped {
            self.dropped = true;
            psql(
                &self.base_url,
                &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
            )?;
        }
        Ok(())
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        // On an early error: don't leave the schema behind.
        if let Err(error) = self.drop_now() {
            eprintln!("could not drop schema {}: {error:#}", self.name);
        }
    }
}

/// Local ports of this process's TCP sockets (from `/proc/self/fd` and `/proc/net/tcp{,6}`).
fn own_tcp_ports() -> HashSet<u16> {
    let inodes: HashSet<String> = std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let local = fields.get(1)?;
                    let inode = fields.get(9)?;
                    if !inodes.contains(*inode) {
                        return None;
                    }
                    let (_, port) = local.rsplit_once(':')?;
                    u16::from_str_radix(port, 16).ok()
                })
                .collect::<Vec<u16>>()
        })
        .collect()
}

/// Runs one SQL statement with `psql`.
fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    psql_query(url, sql).map(drop)
}

/// Runs one SQL statement with `psql` and returns its unaligned, tuples-only output.
fn psql_query(url: &str, sql: &str) -> anyhow::Result<String> {
    let output = std::process::Command::new("psql")
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .output()
        .context("running psql (is the PostgreSQL client installed?)")?;
    if !output.status.success() {
        bail!(
            "psql `{sql}` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// One or more in-process Switchboard nodes. Without a database URL: one node on its own SQLite
/// file (as [`Server::start`]). With one: `nodes` nodes, each with its own listener, delivery
/// worker and connection pool, sharing a fresh schema of that database and one data directory
/// (so one master key).
pub struct Cluster {
    /// The nodes, in start order.
    pub nodes: Vec<Server>,
    // Dropped after the nodes have stopped.
    schema: Option<Schema>,
}

impl Cluster {
    /// Starts the nodes one after the other, each ready before the next starts.
    pub async fn start(
        settings: &Settings,
        route: Option<&Route>,
        database_url: Option<&str>,
        nodes: usize,
    ) -> anyhow::Result<Self> {
        let Some(base_url) = database_url else {
            if nodes != 1 {
                bail!("several nodes need a shared PostgreSQL database (--database-url)");
            }
            return Ok(Self {
                nodes: vec![Server::start(settings, route).await?],
                schema: None,
            });
        };
        let schema = Schema::create(base_url)?;
        let url = schema.url();
        let data_dir = Arc::new(temp_data_dir(settings)?);
        let mut servers: Vec<Server> = Vec::with_capacity(nodes);
        for _ in 0..nodes.max(1) {
            let started = Server::start_in(settings, route, data_dir.clone(), |config| {
                config.server.database_url = Some(url.clone());
            })
            .await;
            match started {
                Ok(server) => servers.push(server),
                Err(error) => {
                    for server in servers {
                        let _ = server.stop().await;
                    }
                    return Err(error);
                }
            }
        }
        Ok(Self {
            nodes: servers,
            schema: Some(schema),
        })
    }

    /// Every node's address.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|node| node.addr).collect()
    }

    /// What the nodes store in, for reports: `sqlite` or `postgres`.
    pub fn store(&self) -> &'static str {
        if self.schema.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }

    /// A line describing the store and the nodes.
    pub fn describe(&self) -> String {
        let addrs: Vec<String> = self.nodes.iter().map(|n| n.addr.to_string()).collect();
        match &self.schema {
            Some(schema) => format!(
                "store: PostgreSQL schema {}, {} node(s) at {}",
                schema.name(),
                self.nodes.len(),
                addrs.join(", ")
            ),
            None => format!("store: SQLite, 1 node at {}", addrs.join(", ")),
        }
    }

    /// Process ids of the PostgreSQL backends connected for these nodes (none with SQLite).
    pub fn postgres_backends(&self) -> Vec<u32> {
        self.schema
            .as_ref()
            .and_then(|schema| schema.backend_pids().ok())
            .unwrap_or_default()
    }

    /// Deliveries by status in the (shared) store, read through the first node.
    pub async fn delivery_counts(&self) -> anyhow::Result<DeliveryCounts> {
        match self.nodes.first() {
            Some(node) => node.delivery_counts().await,
            None => bail!("no node"),
        }
    }

    /// Stops every node (all at once), then drops the schema.
    pub async fn stop(self) -> anyhow::Result<()> {
        for node in &self.nodes {
            node.shutdown.cancel();
        }
        let mut result = Ok(());
        for node in self.nodes {
            if let Err(error) = node.stop().await {
                result = result.and(Err(error));
            }
        }
        if let Some(mut schema) = self.schema {
            schema.drop_now()?;
        }
        result
    }
}

/// [`Server::delivery_counts`] of the server at `addr`, usable from other tasks.
pub async fn delivery_counts_at(addr: SocketAddr) -> anyhow::Result<DeliveryCounts> {
    let uri: hyper::Uri = format!("http://{addr}/metrics").parse()?;
    let response = crate::load::client().get(uri).await?;
    if response.status() != StatusCode::OK {
        bail!("/metrics answered {}", response.status());
    }
    let body = response.into_body().collect().await?.to_bytes();
    Ok(DeliveryCounts::parse(&String::from_utf8_lossy(&body)))
}

/// Deliveries per status.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeliveryCounts {
    /// Waiting for an attempt.
    pub pending: u64,
    /// Leased by the worker.
    pub in_flight: u64,
    /// Delivered.
    pub succeeded: u64,
    /// Dead-lettered.
    pub failed: u64,
}

impl DeliveryCounts {
    /// Reads the `switchboard_deliveries{status="…"}` gauges of a Prometheus exposition.
    pub fn parse(exposition: &str) -> Self {
        let mut counts = Self::default();
        for line in exposition.lines() {
            let Some(rest) = line.strip_prefix("switchboard_deliveries{") else {
                continue;
            };
            let Some((labels, value)) = rest.rsplit_once('}') else {
                continue;
            };
            let Some(status) = labels
                .split(',')
                .find_map(|label| label.trim().strip_prefix("status="))
                .map(|quoted| quoted.trim_matches('"'))
                .and_then(DeliveryStatus::parse)
            else {
                continue;
            };
            let n = value.trim().parse::<f64>().unwrap_or(0.0) as u64;
            match status {
                DeliveryStatus::Pending => counts.pending = n,
                DeliveryStatus::InFlight => counts.in_flight = n,
                DeliveryStatus::Succeeded => counts.succeeded = n,
                DeliveryStatus::Failed => counts.failed = n,
                DeliveryStatus::Cancelled | DeliveryStatus::Filtered => {}
            }
        }
        counts
    }

    /// Deliveries not yet in a final state.
    pub fn backlog(&self) -> u64 {
        self.pending + self.in_flight
    }
}

struct ReceiverState {
    received: Arc<AtomicU64>,
    /// Requests being handled (held at the gate included) and the most seen at once.
    active: AtomicU64,
    peak: AtomicU64,
    gate: watch::Receiver<bool>,
    /// Distinct `webhook-id`s answered and requests repeating one, when tracked.
    ids: Option<Mutex<HashSet<Box<str>>>>,
    repeated: AtomicU64,
}

/// A loopback webhook receiver: answers `204` to `POST /hook` and counts requests. While its
/// gate is shut, requests are read and then held (not answered) until it opens.
pub struct Receiver {
    /// The URL to deliver to.
    pub url: String,
    state: Arc<ReceiverState>,
    gate: watch::Sender<bool>,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl Receiver {
    /// Starts the receiver on `127.0.0.1:0`, its gate `open` or shut.
    pub async fn start(open: bool) -> anyhow::Result<Self> {
        Self::start_tracking(open, false).await
    }

    /// Like [`Receiver::start`]; with `track_ids`, also remembers every `webhook-id` it answers
    /// to count duplicates (requests repeating an id).
    pub async fn start_tracking(open: bool, track_ids: bool) -> anyhow::Result<Self> {
        let (gate, gate_rx) = watch::channel(open);
        let state = Arc::new(ReceiverState {
            received: Arc::default(),
            active: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            gate: gate_rx,
            ids: track_ids.then(|| Mutex::new(HashSet::new())),
            repeated: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(state.clone());
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        });
        Ok(Self {
            url,
            state,
            gate,
            shutdown,
            task,
        })
    }

    /// Requests answered so far.
    pub fn received(&self) -> u64 {
        self.state.received.load(Ordering::Relaxed)
    }

    /// Distinct `webhook-id`s answered (tracking receivers only; else all requests answered).
    pub fn distinct(&self) -> u64 {
        self.received().saturating_sub(self.duplicates())
    }

    /// Answered requests whose `webhook-id` had been answered before (tracking receivers only).
    pub fn duplicates(&self) -> u64 {
        self.state.repeated.load(Ordering::Relaxed)
    }

    /// The most requests the receiver was handling at once: the server's effective in-flight
    /// limit towards this destination.
    pub fn peak_concurrency(&self) -> u64 {
        self.state.peak.load(Ordering::Relaxed)
    }

    /// A live view of the request count, usable from other tasks.
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.state.received.clone()
    }

    /// Opens the gate: held and future requests are answered.
    pub fn open(&self) {
        self.gate.send_replace(true);
    }

    /// Opens the gate and stops the receiver.
    pub async fn stop(self) {
        self.open();
        self.shutdown.cancel();
        // Connections the server keeps alive may delay a graceful stop; don't wait for them.
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    _body: Bytes,
) -> StatusCode {
    let active = state.active.fetch_add(1, Ordering::Relaxed) + 1;
    state.peak.fetch_max(active, Ordering::Relaxed);
    let mut gate = state.gate.clone();
    // Fails only if the sender is gone, i.e. the receiver is stopping: answer anyway.
    let _ = gate.wait_for(|open| *open).await;
    if let Some(ids) = &state.ids {
        let id = headers
            .get("webhook-id")
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .unwrap_or_default();
        // A poisoned lock only means another handler panicked; the set is still usable.
        let fresh = ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.into_boxed_str());
        if !fresh {
            state.repeated.fetch_add(1, Ordering::Relaxed);
        }
    }
    // Counted after the id, so `distinct()` never exceeds what was recorded.
    state.received.fetch_add(1, Ordering::Relaxed);
    state.active.fetch_sub(1, Ordering::Relaxed);
    StatusCode::NO_CONTENT
}

/// The filesystem type holding `path` (from `/proc/self/mounts`), e.g. `ext4` or `tmpfs`.
pub fn filesystem_of(path: &Path) -> Option<String> {
    let path = std::fs::canonicalize(path).ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _device = fields.next()?;
            let mount_point = fields.next()?.replace("\\040", " ");
            let fs_type = fields.next()?;
            path.starts_with(&mount_point)
                .then(|| (mount_point.len(), fs_type.to_owned()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, fs_type)| fs_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_backlog_gauges() {
        let text = "# TYPE switchboard_deliveries gauge\n\
            switchboard_deliveries{status=\"pending\"} 1200\n\
            switchboard_deliveries{status=\"in_flight\"} 128\n\
            switchboard_deliveries{status=\"succeeded\"} 5e4\n\
            switchboard_deliveries_other{status=\"failed\"} 9\n";
        let counts = DeliveryCounts::parse(text);
        assert_eq!(
            (
                counts.pending,
                counts.in_flight,
                counts.succeeded,
                counts.failed
            ),
            (1200, 128, 50_000, 0)
        );
        assert_eq!(counts.backlog(), 1328);
    }
}
