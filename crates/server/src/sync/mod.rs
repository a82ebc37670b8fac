//! Data sync (`[[syncs]]`, `/v1/syncs`): keep a table — or a stream of change events — in step
//! with the records a third-party REST API lists.
//!
//! - [`plan`]: a job's compiled settings and the paging state machine (`cursor`, `offset`,
//!   `page`, `link`).
//! - [`table`]: the SQLite and PostgreSQL destination tables.
//! - [`run`]: one run — page, detect changes against the records cache, write, publish,
//!   checkpoint; delete after a complete full listing.
//! - [`Engine`] (here): starts runs (on demand, on their cron schedule, and resumes runs a
//!   crash interrupted), one at a time per job across nodes under the store lease
//!   `sync:{id}`, and cancels them.

pub mod plan;
pub mod rest;
pub mod run;
pub mod table;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Zoned;
use switchboard_core::config::SyncConfig;
use switchboard_core::time::now_millis;
use switchboard_store::{Store, StoreError, SyncRunRecord};
use tokio_util::sync::CancellationToken;

use crate::connections::Connections;
use crate::connections::client::ConnectionClient;
use crate::ingest::commit::Committer;
use crate::operations::Operations;
use crate::runtime::Registry;
use crate::sources::Emitter;

use self::plan::Plan;

/// How long a run's lease lasts without renewal; another node takes over after it.
const LEASE_TTL_MS: i64 = 10_000;
/// How often a running job renews its lease.
const LEASE_RENEW: Duration = Duration::from_secs(2);
/// How often the supervisor looks for interrupted runs to resume.
const RESUME_CHECK: Duration = Duration::from_secs(10);

/// Checks what the configuration cannot: the jq programs compile, the cron expression and
/// time zone parse, the headers are valid.
pub fn check(config: &SyncConfig) -> Result<(), String> {
    Plan::new(config).map(|_| ())
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Its cron schedule.
    Schedule,
    /// `POST /v1/syncs/{id}/run`.
    Api,
    /// A node found it interrupted (crash, shutdown, lost lease) and resumed it.
    Resume,
}

impl Trigger {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Schedule => "schedule",
            Self::Api => "api",
            Self::Resume => "resume",
        }
    }
}

/// Why a run did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No such sync.
    #[error("sync `{0}` does not exist")]
    NotFound(String),
    /// A run of this sync is in progress (here or on another node).
    #[error("a run of sync `{0}` is already in progress")]
    Running(String),
    /// The settings do not compile (the registry checks them first; unexpected).
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// The sync engine of this node.
pub struct Engine {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) connections: Arc<Connections>,
    pub(crate) client: ConnectionClient,
    pub(crate) registry: Arc<Registry>,
    pub(crate) committer: Committer,
    pub(crate) operations: Operations,
    node: String,
    shutdown: CancellationToken,
    /// Runs in progress on this node: sync id → its cancel token.
    running: Mutex<HashMap<String, CancellationToken>>,
}

/// What the engine is built from.
pub struct Parts {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Connections (base URLs, the call client).
    pub connections: Arc<Connections>,
    /// The live configuration.
    pub registry: Arc<Registry>,
    /// Where change events are committed.
    pub committer: Committer,
    /// Operational events (`sync.failed`).
    pub operations: Operations,
    /// This node's lease owner name.
    pub node: String,
}

impl Engine {
    /// A new engine; runs stop when `shutdown` is cancelled.
    pub fn new(parts: Parts, shutdown: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            store: parts.store,
            client: ConnectionClient::new(parts.connections.clone()),
            connections: parts.connections,
            registry: parts.registry,
            committer: parts.committer,
            operations: parts.operations,
            node: parts.node,
            shutdown,
            running: Mutex::default(),
        })
    }

    /// An emitter for the change events of sync `id`.
    pub(crate) fn emitter(&self, id: &str) -> Emitter {
        Emitter::new(id, self.registry.clone(), self.committer.clone())
    }

    /// The live settings of sync `id`.
    pub fn config(&self, id: &str) -> Option<SyncConfig> {
        self.registry
            .current()
            .config
            .syncs
            .iter()
            .find(|s| s.id == id)
            .cloned()
    }

    /// Whether a run of `id` is in progress on this node.
    pub fn is_running_here(&self, id: &str) -> bool {
        self.running
            .lock()
            .map(|running| running.contains_key(id))
            .unwrap_or(false)
    }

    /// Starts (or resumes) a run of `id` in the background; returns its record as it starts.
    pub async fn start(
        self: &Arc<Self>,
        id: &str,
        trigger: Trigger,
    ) -> Result<SyncRunRecord, StartError> {
        if self.shutdown.is_cancelled() {
            return Err(StartError::ShuttingDown);
        }
        let config = self
            .config(id)
            .ok_or_else(|| StartError::NotFound(id.to_owned()))?;
        let plan = Plan::new(&config).map_err(StartError::Invalid)?;
        if self.is_running_here(id) {
            // A run that just recorded its end is still releasing its lease: a caller who saw
            // it end may start the next one at once.
            let open = self.store.sync_open_run(id).await?;
            if open.is_none_or(|run| run.status != "running") {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
                while self.is_running_here(id) && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        let cancel = CancellationToken::new();
        {
            let mut running = self
                .running
                .lock()
                .map_err(|_| StartError::Invalid("engine state poisoned".into()))?;
            if running.contains_key(id) {
                return Err(StartError::Running(id.to_owned()));
            }
            running.insert(id.to_owned(), cancel.clone());
        }
        let lease = format!("sync:{id}");
        let forget = || {
            if let Ok(mut running) = self.running.lock() {
                running.remove(id);
            }
        };
        match self
            .store
            .try_lease(&lease, &self.node, now_millis(), LEASE_TTL_MS)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                forget();
                return Err(StartError::Running(id.to_owned()));
            }
            Err(error) => {
                forget();
                return Err(error.into());
            }
        }
        let (record, checkpoint) = match run::begin(self, &config, trigger).await {
            Ok(begun) => begun,
            Err(error) => {
                forget();
                let _ = self.store.release_lease(&lease, &self.node).await;
                return Err(StartError::Invalid(error));
            }
        };
        metrics::gauge!("switchboard_sync_running", "sync" => id.to_owned()).set(1.0);
        let stop = self.shutdown.child_token();
        let engine = self.clone();
        let started = record.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            let renewer = tokio::spawn(renew(
                engine.store.clone(),
                lease.clone(),
                engine.node.clone(),
                stop.clone(),
            ));
            let run = run::Run {
                engine: &engine,
                config: Arc::new(config),
                plan: Arc::new(plan),
                record,
                checkpoint,
                cancel,
                stop: stop.clone(),
            };
            let ended = run.execute().await;
            // The renewer ends with `stop`; a lost lease cancelled `stop` already.
            stop.cancel();
            let _ = renewer.await;
            if let Err(error) = engine.store.release_lease(&lease, &engine.node).await {
                tracing::warn!(sync = %id, %error, "could not release the sync lease; it expires");
            }
            if let Ok(mut running) = engine.running.lock() {
                running.remove(&id);
            }
            metrics::gauge!("switchboard_sync_running", "sync" => id.clone()).set(0.0);
            tracing::debug!(sync = %id, ?ended, "sync run task ended");
        });
        Ok(started)
    }

    /// Asks the open run of `id` to stop (here at once, elsewhere at its next page). Returns
    /// the run id, if a run was open.
    pub async fn cancel(&self, id: &str) -> Result<Option<String>, StoreError> {
        let run = self.store.sync_request_cancel(id, now_millis()).await?;
        if let Ok(running) = self.running.lock()
            && let Some(token) = running.get(id)
        {
            token.cancel();
        }
        Ok(run)
    }

    /// Waits (up to `grace`) for this node's runs to stop after shutdown.
    pub async fn wait_idle(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline {
            if self.running.lock().map(|r| r.is_empty()).unwrap_or(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts scheduled runs and resumes interrupted ones until shutdown.
    pub async fn supervise(self: Arc<Self>) {
        let mut plans: HashMap<String, (SyncConfig, Arc<Plan>)> = HashMap::new();
        let mut next_tick: HashMap<String, Zoned> = HashMap::new();
        let mut last_resume_check: Option<tokio::time::Instant> = None;
        loop {
            let syncs = self.registry.current().config.syncs.clone();
            plans.retain(|id, _| syncs.iter().any(|s| &s.id == id));
            next_tick.retain(|id, _| syncs.iter().any(|s| &s.id == id));
            for sync in &syncs {
                let stale = plans.get(&sync.id).is_none_or(|(old, _)| old != sync);
                if stale {
                    match Plan::new(sync) {
                        Ok(plan) => {
                            plans.insert(sync.id.clone(), (sync.clone(), Arc::new(plan)));
                            next_tick.remove(&sync.id);
                        }
                        Err(error) => {
                            tracing::error!(sync = %sync.id, %error, "sync cannot be scheduled");
                            continue;
                        }
                    }
                }
            }
            for (id, (_, plan)) in &plans {
                let Some((cron, zone)) = &plan.schedule else {
                    continue;
                };
                let now = Zoned::now().with_time_zone(zone.clone());
                let tick = match next_tick.get(id) {
                    Some(tick) => tick.clone(),
                    None => match crate::sources::schedule::next_after(cron, &now) {
                        Ok(tick) => {
                            next_tick.insert(id.clone(), tick);
                            continue;
                        }
                        Err(_) => continue,
                    },
                };
                if tick > now {
                    continue;
                }
                if let Ok(next) = crate::sources::schedule::next_after(cron, &now) {
                    next_tick.insert(id.clone(), next);
                }
                // Another node may have run this tick already (its run started after it).
                let tick_ms = tick.timestamp().as_millisecond();
                let ran = self
                    .store
                    .list_sync_runs(id, None, 1)
                    .await
                    .ok()
                    .and_then(|runs| runs.into_iter().next())
                    .is_some_and(|run| run.started_at >= tick_ms);
                if ran || self.is_running_here(id) {
                    continue;
                }
                match self.start(id, Trigger::Schedule).await {
                    Ok(run) => {
                        tracing::info!(sync = %id, run = %run.id, "scheduled sync run started")
                    }
                    Err(StartError::Running(_)) => {}
                    Err(error) => {
                        tracing::warn!(sync = %id, %error, "scheduled sync run not started")
                    }
                }
            }
            if last_resume_check.is_none_or(|at| at.elapsed() >= RESUME_CHECK) {
                last_resume_check = Some(tokio::time::Instant::now());
                for id in plans.keys() {
                    if self.is_running_here(id) {
                        continue;
                    }
                    let open = match self.store.sync_open_run(id).await {
                        Ok(open) => open,
                        Err(error) => {
                            tracing::warn!(sync = %id, %error, "cannot look for interrupted runs");
                            continue;
                        }
                    };
                    if open.is_some_and(|run| run.status == "running") {
                        match self.start(id, Trigger::Resume).await {
                            Ok(run) => tracing::info!(sync = %id, run = %run.id,
                                "resuming an interrupted sync run"),
                            Err(StartError::Running(_)) => {}
                            Err(error) => tracing::warn!(sync = %id, %error,
                                "interrupted sync run not resumed"),
                        }
                    }
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
}

/// Renews the lease until `stop`; cancels `stop` when the lease is lost.
async fn renew(store: Arc<dyn Store>, lease: String, owner: String, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(LEASE_RENEW) => {}
        }
        match store
            .try_lease(&lease, &owner, now_millis(), LEASE_TTL_MS)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(%lease, "lost the sync lease; stopping the run here");
                stop.cancel();
                return;
            }
            Err(error) => {
                tracing::warn!(%lease, %error, "could not renew the sync lease");
            }
        }
    }
}
