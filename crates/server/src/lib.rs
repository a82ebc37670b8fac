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

pub mod delivery;
pub mod health;
pub mod ingest;
pub mod metrics;
pub mod problem;
pub mod state;
pub mod verifiers;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use switchboard_core::Config;
use switchboard_core::time::now_millis;
use switchboard_store::Store;
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

/// Opens the store named by the configuration.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, ServerError> {
    let store = SqliteStore::open(&config.server.data_dir, config.storage.durability).await?;
    Ok(Arc::new(store))
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
    let sources = state::build_sources(&config).map_err(ServerError::Config)?;
    let destinations = delivery::destinations::build(&config).map_err(ServerError::Config)?;
    let store = open_store(&config).await?;
    // One data directory belongs to one process: whatever an earlier process left leased was
    // interrupted (crash or kill), so it is due again now.
    let released = store.release_leases(None, i64::MAX).await?;
    if released > 0 {
        tracing::warn!(
            released,
            "re-queued deliveries left in flight by a previous run"
        );
    }
    let _ = metrics::handle();

    let wake = Arc::new(Notify::new());
    let (committer, committer_task) =
        Committer::spawn(store.clone(), config.storage.max_batch, wake.clone());
    let (completer, completer_task) = delivery::completer::spawn(store.clone(), wake.clone());
    let worker = Arc::new(Worker {
        store: store.clone(),
        destinations,
        sender: delivery::sender::Sender::new(
            config.security.allow_private_networks,
            config.delivery.response_excerpt_bytes,
        )?,
        completer,
        wake: wake.clone(),
        owner: format!("node-{}", uuid_like()),
        lease: config.delivery.lease,
        poll_interval: config.delivery.poll_interval,
        concurrency: config.delivery.concurrency,
    });
    let worker_shutdown = CancellationToken::new();
    let worker_task = tokio::spawn(
        worker
            .clone()
            .run(worker_shutdown.clone(), config.server.shutdown_grace),
    );

    let (rejections, rejections_task) = ingest::rejections::RejectionLog::spawn(store.clone());
    let state = Arc::new(AppState {
        sources,
        committer,
        rejections,
        store: store.clone(),
    });
    let app = router(state, &config);
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "Switchboard listening on http://{addr}");
    for source in &config.sources {
        tracing::info!(source = %source.id, "send events to http://{addr}/in/{}", source.id);
    }

    let http_shutdown = shutdown.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { http_shutdown.cancelled().await })
        .await?;
    tracing::info!("listener closed; finishing in-flight work");
    // Ingest handlers are done: the committer drains its queue and stops.
    let _ = committer_task.await;
    let _ = rejections_task.await;
    worker_shutdown.cancel();
    let _ = worker_task.await;
    drop(worker);
    let _ = completer_task.await;
    tracing::info!(at = now_millis(), "shutdown complete");
    Ok(())
}

fn router(state: Arc<AppState>, config: &Config) -> Router {
    let ingest = Router::new()
        .route("/in/{source}", post(ingest::ingest))
        .layer(DefaultBodyLimit::max(state::largest_body_limit(config)));
    Router::new()
        .merge(ingest)
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

fn uuid_like() -> String {
    switchboard_core::ids::new_event_id()
}
