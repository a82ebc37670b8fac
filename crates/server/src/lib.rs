//! Switchboard's server: every role of the process, started from one [`run`].
//!
//! - **Ingest** (`/in/{source}`): verify, then commit the event and its deliveries together
//!   (group commit) before answering `202`.
//! - **Delivery worker**: claims due deliveries under a lease, signs and sends them, records
//!   every attempt and schedules retries.
//! - **Health and metrics**: `/healthz`, `/readyz`, `/metrics`.
//!
//! Cancelling the token passed to [`run`] shuts everything down in order: stop accepting, finish
//! or release in-flight work within the grace period, flush writes, close the store.

pub mod api;
pub mod connections;
pub mod delivery;
pub mod health;
pub mod ingest;
pub mod live;
pub mod metrics;
pub mod mock;
pub mod nodes;
pub mod operations;
pub mod problem;
pub mod retention;
pub mod runtime;
pub mod sources;
pub mod state;
pub mod statsd;
pub mod sync;
pub mod telemetry;
pub mod template;
pub mod transform;
pub mod ui;
pub mod verifiers;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use switchboard_core::Config;
use switchboard_core::time::now_millis;
use switchboard_store::Store;
use switchboard_store::postgres::PgStore;
use switchboard_store::sqlite::SqliteStore;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::delivery::Worker;
use crate::ingest::commit::Committer;
use crate::state::AppState;

/// Why the server could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The store failed to open or migrate.
    #[error("store: {0}")]
    Store(#[from] switchboard_store::StoreError),
    /// The listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Opens the store named by the configuration: PostgreSQL when `server.database_url` is set,
/// otherwise the SQLite file under `server.data_dir`.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, ServerError> {
    if let Some(url) = &config.server.database_url {
        let store = PgStore::connect(url, config.server.database_max_connections).await?;
        return Ok(Arc::new(store));
    }
    let store = SqliteStore::open(&config.server.data_dir, config.storage.durability).await?;
    Ok(Arc::new(store))
}

/// Makes sure someone can use the API: when no admin token is configured and the store holds
/// no tokens yet, creates an admin token and returns its value (shown to the operator once).
pub async fn ensure_admin_token(config: &Config) -> Result<Option<String>, ServerError> {
    if config.server.admin_token.is_some() {
        return Ok(None);
    }
    let store = open_store(config).await?;
    if !store.list_tokens().await?.is_empty() {
        return Ok(None);
    }
    let (record, value) =
        api::tokens::new_token_record("bootstrap admin", &[api::auth::Scope::Admin]);
    store.create_token(&record).await?;
    Ok(Some(value))
}

/// Opens the vault that seals secrets at rest (`SWITCHBOARD_MASTER_KEY` with
/// `SWITCHBOARD_MASTER_KEY_OLD`, or `data_dir/master.key`).
pub fn open_vault(config: &Config) -> Result<switchboard_store::vault::Vault, ServerError> {
    use switchboard_store::vault::{KEY_ENV, OLD_KEYS_ENV};
    let env_key = std::env::var(KEY_ENV).ok();
    let env_old = std::env::var(OLD_KEYS_ENV).ok();
    Ok(switchboard_store::vault::Vault::open_with_old(
        &config.server.data_dir,
        env_key.as_deref(),
        env_old.as_deref(),
    )?)
}

/// Refuses to start when the vault cannot open the secrets already stored: a lost key file
/// (this start just created a fresh one, which is removed again so the next start says the
/// same) or a changed `SWITCHBOARD_MASTER_KEY`. Never a silent fallback.
pub async fn check_vault(
    store: &dyn switchboard_store::Store,
    vault: &switchboard_store::vault::Vault,
) -> Result<(), ServerError> {
    use switchboard_store::vault::{KEY_ENV, KEY_FILE, OLD_KEYS_ENV};
    match switchboard_store::rotation::check_opens(store, vault).await {
        Ok(()) => Ok(()),
        Err(error) if vault.created() => {
            if let Some(path) = vault.key_file() {
                let _ = std::fs::remove_file(path);
            }
            Err(ServerError::Config(format!(
                "no master key: neither {KEY_ENV} nor {KEY_FILE} in the data directory exists, \
                 but the database holds sealed secrets. Restore the key file (or set {KEY_ENV}, \
                 with {OLD_KEYS_ENV} for older keys) of the installation that wrote them ({error})"
            )))
        }
        Err(error) => Err(ServerError::Config(format!(
            "{error}. Configure the key that sealed them ({KEY_ENV} and {OLD_KEYS_ENV}, or \
             {KEY_FILE} in the data directory)"
        ))),
    }
}

/// Runs Switchboard on `listener` until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    config
        .validate()
        .map_err(|e| ServerError::Config(e.to_string()))?;
    let store = open_store(&config).await?;
    let vault = open_vault(&config)?;
    check_vault(&*store, &vault).await?;
    let registry = Arc::new(
        runtime::Registry::load(config.clone(), store.clone(), vault.clone())
            .await
            .map_err(|e| ServerError::Config(e.to_string()))?,
    );
    // One data directory belongs to one process: whatever an earlier process left leased was
    // interrupted (crash or kill), so it is due again now. A PostgreSQL database is shared by
    // several nodes whose leases are live: only expired leases are taken back.
    let lapsed_before = if config.server.database_url.is_some() {
        now_millis()
    } else {
        i64::MAX
    };
    let released = store.release_leases(None, lapsed_before).await?;
    if released > 0 {
        tracing::warn!(
            released,
            "re-queued deliveries left in flight by a previous run"
        );
    }
    let statsd_task = match (metrics::install(&config.metrics), &config.metrics.statsd) {
        (Some(recorder), Some(target)) => Some(tokio::spawn(statsd::flush_loop(
            recorder,
            target.clone(),
            config.metrics.statsd_interval,
            shutdown.child_token(),
        ))),
        _ => None,
    };

    let wake = Arc::new(Notify::new());
    let due = Arc::new(delivery::due::DueBook::new());
    let health = Arc::new(delivery::health::HealthBook::new(
        config.delivery.circuit.clone(),
    ));
    health.load(store.list_health().await?);
    let pulse = live::Pulse::new();
    let (committer, committer_task) = Committer::spawn(
        store.clone(),
        config.storage.max_batch,
        wake.clone(),
        due.clone(),
        pulse.clone(),
    );
    let (completer, completer_task) =
        delivery::completer::spawn(store.clone(), wake.clone(), due.clone(), pulse.clone());
    let operations = operations::Operations::new(committer.clone(), registry.clone());
    // Lease owner: unique per process start, so leases of a previous run are never mistaken
    // for ours.
    let owner = format!("node-{}", uuid::Uuid::now_v7().simple());
    // Before any task starts, so a bad provider file stops the start cleanly.
    // Live nodes: counted by the worker's heartbeat, read by connection pacing.
    let nodes = nodes::NodeCount::new();
    let catalog = connections::providers::load(config.connections.providers_dir.as_deref())
        .map_err(ServerError::Config)?;
    let connections = Arc::new(connections::Connections::new(connections::Parts {
        store: store.clone(),
        vault: vault.clone(),
        catalog,
        config: config.connections.clone(),
        listen: listener.local_addr()?,
        policy: delivery::ssrf::Policy::from_config(&config.security)
            .map_err(ServerError::Config)?,
        owner: owner.clone(),
        operations: Some(operations.clone()),
        max_body_bytes: config.server.max_body_bytes,
        nodes: nodes.clone(),
    })?);
    let worker = Arc::new(Worker {
        store: store.clone(),
        registry: registry.clone(),
        due: due.clone(),
        health: health.clone(),
        operations: operations.clone(),
        disable_after: config.delivery.disable_after,
        sender: delivery::sender::Sender::new(
            delivery::ssrf::Policy::from_config(&config.security).map_err(ServerError::Config)?,
            config.delivery.response_excerpt_bytes,
        )?,
        completer,
        wake: wake.clone(),
        owner,
        lease: config.delivery.lease,
        poll_interval: config.delivery.poll_interval,
        concurrency: config.delivery.concurrency,
        nodes,
        connections: Some(connections::client::ConnectionClient::new(
            connections.clone(),
        )),
    });
    let worker_shutdown = CancellationToken::new();
    let sources_shutdown = CancellationToken::new();
    let sources_task = tokio::spawn(
        sources::supervisor::Supervisor {
            registry: registry.clone(),
            committer: committer.clone(),
            store: store.clone(),
            client: worker.sender.client().clone(),
            connections: connections.clone(),
            node: worker.owner.clone(),
        }
        .run(sources_shutdown.clone()),
    );
    let worker_task = tokio::spawn(
        worker
            .clone()
            .run(worker_shutdown.clone(), config.server.shutdown_grace),
    );

    // Several nodes share a PostgreSQL database: pick up resources another node changed.
    let refresh_task = config.server.database_url.is_some().then(|| {
        tokio::spawn(refresh_resources(
            registry.clone(),
            due.clone(),
            worker_shutdown.clone(),
        ))
    });
    let pruner_task = config.retention.prunes_anything().then(|| {
        tokio::spawn(retention::run(
            store.clone(),
            config.retention.clone(),
            worker_shutdown.clone(),
        ))
    });
    let syncs_shutdown = CancellationToken::new();
    let syncs = sync::Engine::new(
        sync::Parts {
            store: store.clone(),
            connections: connections.clone(),
            registry: registry.clone(),
            committer: committer.clone(),
            operations: operations.clone(),
            node: worker.owner.clone(),
        },
        syncs_shutdown.clone(),
    );
    let syncs_task = tokio::spawn(syncs.clone().supervise());
    let (rejections, rejections_task) = ingest::rejections::RejectionLog::spawn(store.clone());
    let state = Arc::new(AppState {
        registry,
        committer,
        due,
        health,
        rejections,
        store: store.clone(),
        wake: wake.clone(),
        vault,
        admin_token_hash: config
            .server
            .admin_token
            .as_deref()
            .map(api::auth::hash_token),
        metrics_require_token: config.server.metrics_require_token,
        connections,
        // Streams end when shutdown begins: an open stream would hold the listener's graceful
        // shutdown forever.
        live: Arc::new(live::Live::new(
            store.clone(),
            pulse,
            config.stream.clone(),
            shutdown.clone(),
        )),
        activity: Arc::default(),
        ui: ui::UiState::new(shutdown.clone()),
        syncs: syncs.clone(),
        node: worker.owner.clone(),
        data_dir: config
            .server
            .database_url
            .is_none()
            .then(|| config.server.data_dir.clone()),
    });
    let app = router(state, &config);
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "Switchboard listening on http://{addr}");
    for source in config.sources.iter().filter(|s| s.is_webhook()) {
        tracing::info!(source = %source.id, "send events to http://{addr}/in/{}", source.id);
    }

    let http_shutdown = shutdown.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { http_shutdown.cancelled().await })
        .await?;
    tracing::info!("listener closed; finishing in-flight work");
    // Fetching sources stop first: what they already handed over is committed below, what they
    // had not is still unacknowledged at its broker and comes back.
    sources_shutdown.cancel();
    let _ = sources_task.await;
    // Sync runs stop at their next step; an interrupted run stays `running` and is resumed by
    // the next start (its checkpoint is committed), so the grace period only bounds the wait.
    syncs_shutdown.cancel();
    let _ = syncs_task.await;
    syncs.wait_idle(config.server.shutdown_grace).await;
    drop(syncs);
    let _ = rejections_task.await;
    worker_shutdown.cancel();
    let _ = worker_task.await;
    for task in [pruner_task, refresh_task, statsd_task]
        .into_iter()
        .flatten()
    {
        let _ = task.await;
    }
    // The worker (and its operational events) are done, as are the ingest handlers: the
    // committer drains its queue and stops once the last handle is gone.
    drop(worker);
    drop(operations);
    let _ = committer_task.await;
    let _ = completer_task.await;
    tracing::info!(at = now_millis(), "shutdown complete");
    Ok(())
}

/// How often a node sharing the database looks for resources changed by another node.
const RESOURCE_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);

async fn refresh_resources(
    registry: Arc<runtime::Registry>,
    due: Arc<delivery::due::DueBook>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RESOURCE_REFRESH) => {}
        }
        match registry.refresh().await {
            Ok(true) => due.all_unknown(),
            Ok(false) => {}
            Err(error) => {
                tracing::error!(%error, "could not load resources changed by another node")
            }
        }
    }
}

fn router(state: Arc<AppState>, config: &Config) -> Router {
    let ingest = Router::new()
        .route("/in/{source}", post(ingest::ingest))
        .layer(DefaultBodyLimit::max(state::largest_body_limit(config)));
    Router::new()
        .merge(ingest)
        .merge(api::router(state.clone()))
        .merge(connections::routes::router())
        .merge(ui::router(state.clone()))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(problem::fallback)
        .method_not_allowed_fallback(problem::method_not_allowed)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            config.server.request_timeout,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .with_state(state)
}
