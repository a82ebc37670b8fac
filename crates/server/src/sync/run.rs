//! One run of a sync job: page through the list endpoint, detect changes against the records
//! cache, write them to the destination, publish them, checkpoint — then, after a complete full
//! listing, delete what the listing no longer holds.
//!
//! Per page, in this order: fetch → select, key, map and hash the records (blocking pool) →
//! look up the cached hashes → write the created and updated rows to the destination → store
//! their change events → commit the checkpoint (cache rows, counters, next page) in one store
//! transaction. A crash before the checkpoint repeats the page on resume: the destination
//! writes are idempotent upserts by key, and the change events carry de-duplication keys
//! (`run:key:hash`), so nothing is written twice and nothing is lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use switchboard_core::config::{SyncConfig, SyncMode};
use switchboard_core::time::now_millis;
use switchboard_store::{SyncCheckpoint, SyncCounts, SyncFinish, SyncRunRecord};
use tokio_util::sync::CancellationToken;

use super::plan::{self, Next, Plan};
use super::table::Table;
use super::{Engine, Trigger};
use crate::connections::client::{ApiRequest, CallError};
use crate::sources::{Emitter, Message};

/// Keys deleted per delete step.
const DELETE_BATCH: u32 = 1000;
/// Change events stored at once (the group committer batches them).
const EMITS_IN_FLIGHT: usize = 64;

/// Where a run stands; stored with every checkpoint so a crashed or paused run resumes there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Listing pages, or deleting what a complete full listing did not see.
    pub phase: Phase,
    /// The next page to read (listing).
    pub next: Next,
    /// The incremental starting point this run lists from (JSON text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// The largest cursor value seen so far (JSON text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<String>,
}

/// A run's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Reading pages.
    Listing,
    /// Deleting records a complete full listing did not see.
    Deleting,
}

/// How a run ended (or stopped without ending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Finished with this status (`succeeded`, `failed`, `cancelled`, `paused`).
    Finished(&'static str),
    /// The node stopped (shutdown or lost lease): the run stays `running` and is resumed.
    Interrupted,
}

/// A run in progress.
pub struct Run<'a> {
    pub(super) engine: &'a Engine,
    pub(super) config: Arc<SyncConfig>,
    pub(super) plan: Arc<Plan>,
    pub(super) record: SyncRunRecord,
    pub(super) checkpoint: Checkpoint,
    /// Cancelled by `POST /v1/syncs/{id}/cancel` on this node.
    pub(super) cancel: CancellationToken,
    /// Cancelled on shutdown or when the lease is lost.
    pub(super) stop: CancellationToken,
}

/// Prepares the run to execute: the open one (left `running` by a crash or `paused` by a
/// limit) or a new one.
pub async fn begin(
    engine: &Engine,
    config: &SyncConfig,
    trigger: Trigger,
) -> Result<(SyncRunRecord, Checkpoint), String> {
    let store = &engine.store;
    let now = now_millis();
    if let Some(open) = store
        .sync_open_run(&config.id)
        .await
        .map_err(|e| e.to_string())?
        && let Ok(checkpoint) = serde_json::from_str::<Checkpoint>(&open.checkpoint)
    {
        store
            .sync_resume_run(&open.id, now)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(sync = %config.id, run = %open.id, "resuming the run where it stopped");
        return Ok((open, checkpoint));
    }
    let since = match config.mode {
        SyncMode::Full => None,
        SyncMode::Incremental => store
            .sync_cursor(&config.id)
            .await
            .map_err(|e| e.to_string())?,
    };
    let checkpoint = Checkpoint {
        phase: Phase::Listing,
        next: Next::Start,
        since,
        high: None,
    };
    let record = SyncRunRecord {
        id: format!("run_{}", uuid::Uuid::now_v7().simple()),
        sync_id: config.id.clone(),
        status: "running".into(),
        mode: config.mode.as_str().into(),
        trigger: trigger.as_str().into(),
        started_at: now,
        updated_at: now,
        finished_at: None,
        counts: SyncCounts::default(),
        error: None,
        checkpoint: serde_json::to_string(&checkpoint).map_err(|e| e.to_string())?,
        cancel_requested: false,
    };
    store
        .sync_start_run(&record)
        .await
        .map_err(|e| e.to_string())?;
    Ok((record, checkpoint))
}

/// One record of a page, prepared.
struct Prepared {
    /// The key's JSON text (the cache key).
    key: String,
    /// The key value.
    key_value: Value,
    /// The destination shape.
    mapped: Value,
    /// Hash of the mapped content.
    hash: String,
    /// The record's cursor (`updated_at`) value, when the plan has one.
    cursor: Option<Value>,
}

/// What the blocking pool made of a page.
struct PageWork {
    records: Vec<Prepared>,
    failed: Vec<String>,
    count: usize,
    high: Option<Value>,
    next: Result<Option<Next>, String>,
}

/// Why a step failed: the run ends `failed` with this message.
type StepError = String;

impl Run<'_> {
    /// Runs to the end (or until stopped); records the outcome.
    pub async fn execute(mut self) -> Ended {
        let started = Instant::now();
        let mut fetched_here: u64 = 0;
        if self.config.two_way.is_some() {
            return self.two_way().await;
        }
        let table = match Table::open(&self.config.destination).await {
            Ok(table) => table,
            Err(error) => return self.finish("failed", Some(error.to_string()), None).await,
        };
        let ended = loop {
            if self.stop.is_cancelled() {
                break Ended::Interrupted;
            }
            if self.cancel.is_cancelled() {
                break self
                    .finish("cancelled", Some("cancelled on request".into()), None)
                    .await;
            }
            match self.checkpoint.phase {
                Phase::Listing => {
                    if let Some(limit) = self.config.max_run_time
                        && started.elapsed() >= limit
                    {
                        break self
                            .finish(
                                "paused",
                                Some(format!(
                                    "max_run_time ({limit:?}) reached; the next run continues"
                                )),
                                None,
                            )
                            .await;
                    }
                    if let Some(limit) = self.config.max_records
                        && fetched_here >= limit
                    {
                        break self
                            .finish(
                                "paused",
                                Some(format!(
                                    "max_records ({limit}) reached; the next run continues"
                                )),
                                None,
                            )
                            .await;
                    }
                    match self.page(table.as_ref()).await {
                        Err(error) => break self.finish("failed", Some(error), None).await,
                        Ok(Step::Stopped) => break Ended::Interrupted,
                        Ok(Step::Cancelled) => {
                            break self
                                .finish("cancelled", Some("cancelled on request".into()), None)
                                .await;
                        }
                        Ok(Step::Continue(n)) => fetched_here += n as u64,
                        Ok(Step::Done) => {
                            if let Some(ended) = self.complete().await {
                                break ended;
                            }
                        }
                    }
                }
                Phase::Deleting => match self.delete_step(table.as_ref()).await {
                    Err(error) => break self.finish("failed", Some(error), None).await,
                    Ok(Step::Stopped) => break Ended::Interrupted,
                    Ok(Step::Cancelled) => {
                        break self
                            .finish("cancelled", Some("cancelled on request".into()), None)
                            .await;
                    }
                    Ok(Step::Continue(_)) => {}
                    Ok(Step::Done) => break self.succeed(None).await,
                },
            }
        };
        if let Some(table) = table {
            table.close().await;
        }
        ended
    }

    /// The listing is complete: full runs go on to delete (unless records failed), incremental
    /// ones are done. `None` means: carry on in the delete phase.
    async fn complete(&mut self) -> Option<Ended> {
        if self.config.mode == SyncMode::Incremental {
            return Some(self.succeed(None).await);
        }
        if self.record.counts.failed > 0 {
            let note = format!(
                "deletes skipped: {} record(s) could not be read, so the listing is not known \
                 to be complete",
                self.record.counts.failed
            );
            return Some(self.succeed(Some(note)).await);
        }
        // Saved with the first delete step's checkpoint; a crash before it lists again.
        self.checkpoint.phase = Phase::Deleting;
        None
    }

    async fn succeed(&mut self, note: Option<String>) -> Ended {
        let cursor = match self.config.mode {
            SyncMode::Full => None,
            SyncMode::Incremental => Some(
                self.checkpoint
                    .high
                    .clone()
                    .or_else(|| self.checkpoint.since.clone()),
            ),
        };
        self.finish("succeeded", note, cursor).await
    }

    async fn finish(
        &mut self,
        status: &'static str,
        error: Option<String>,
        cursor: Option<Option<String>>,
    ) -> Ended {
        let finish = SyncFinish {
            run_id: self.record.id.clone(),
            sync_id: self.config.id.clone(),
            status: status.into(),
            error: error.clone(),
            cursor,
            now: now_millis(),
        };
        if let Err(store_error) = self.engine.store.sync_finish_run(&finish).await {
            tracing::error!(sync = %self.config.id, run = %self.record.id, %store_error,
                "could not record the end of the run; it will be resumed");
            return Ended::Interrupted;
        }
        metrics::counter!("switchboard_sync_runs_total",
            "sync" => self.config.id.clone(), "status" => status)
        .increment(1);
        let counts = self.record.counts;
        match status {
            "failed" => {
                tracing::warn!(sync = %self.config.id, run = %self.record.id,
                    error = error.as_deref().unwrap_or(""), "sync run failed");
                self.engine.operations.emit(
                    "sync.failed",
                    None,
                    json!({
                        "sync": self.config.id,
                        "run": self.record.id,
                        "error": error,
                        "pages": counts.pages,
                        "created": counts.created,
                        "updated": counts.updated,
                        "deleted": counts.deleted,
                    }),
                );
            }
            _ => {
                tracing::info!(sync = %self.config.id, run = %self.record.id, status,
                    pages = counts.pages, created = counts.created, updated = counts.updated,
                    deleted = counts.deleted, unchanged = counts.unchanged,
                    failed = counts.failed, "sync run ended");
            }
        }
        Ended::Finished(status)
    }

    /// Reads, writes and checkpoints one page.
    async fn page(&mut self, table: Option<&Table>) -> Result<Step, StepError> {
        let since_text = self.checkpoint.since.as_deref().map(cursor_param_value);
        let since = match (&self.config.incremental, &since_text) {
            (Some(inc), Some(value)) if self.config.mode == SyncMode::Incremental => {
                Some((inc.param.as_str(), value.as_str()))
            }
            _ => None,
        };
        let request = plan::request(&self.config, &self.plan, &self.checkpoint.next, since);
        let (base, response) = tokio::select! {
            _ = self.stop.cancelled() => return Ok(Step::Stopped),
            fetched = self.fetch(request) => fetched?,
        };
        let link = response
            .headers
            .get(reqwest::header::LINK)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.body;
        let config = self.config.clone();
        let plan = self.plan.clone();
        let current = self.checkpoint.next.clone();
        let work = tokio::task::spawn_blocking(move || {
            switchboard_jq::with_eval_stack(|| {
                prepare_page(&config, &plan, &body, link.as_deref(), &current, &base)
            })
        })
        .await
        .map_err(|e| format!("preparing the page failed: {e}"))??;
        let next = work.next?;
        for failure in &work.failed {
            tracing::warn!(sync = %self.config.id, run = %self.record.id, %failure,
                "record skipped");
        }
        let keys: Vec<String> = work.records.iter().map(|r| r.key.clone()).collect();
        let cached: HashMap<String, String> = self
            .engine
            .store
            .sync_hashes(&self.config.id, &keys)
            .await
            .map_err(|e| format!("records cache: {e}"))?
            .into_iter()
            .collect();
        let mut rows = Vec::new();
        let mut changes = Vec::new();
        let mut counts = self.record.counts;
        for record in &work.records {
            let change = match cached.get(&record.key) {
                None => "created",
                Some(hash) if *hash != record.hash => "updated",
                Some(_) => {
                    counts.unchanged += 1;
                    continue;
                }
            };
            if change == "created" {
                counts.created += 1;
            } else {
                counts.updated += 1;
            }
            if let Value::Object(row) = &record.mapped {
                rows.push(row.clone());
            }
            changes.push((change, record));
        }
        if let Some(table) = table {
            if rows.len() != changes.len() {
                return Err("the mapping must yield an object per record for a table".into());
            }
            table.upsert(&rows).await.map_err(|e| e.to_string())?;
        }
        if let Some(collection) = self.collection() {
            let writes = changes
                .iter()
                .map(|(change, r)| super::rest::Write {
                    change,
                    key: r.key_value.clone(),
                    record: Some(r.mapped.clone()),
                })
                .collect();
            collection.apply(&self.record.id, writes).await?;
        }
        self.publish(
            changes
                .iter()
                .map(|(change, r)| (*change, &r.key_value, &r.hash, Some(&r.mapped))),
        )
        .await?;
        counts.pages += 1;
        counts.fetched += work.count as i64;
        counts.failed += work.failed.len() as i64;
        let mut checkpoint = self.checkpoint.clone();
        if let Some(value) = work.high {
            checkpoint.high = Some(max_cursor(checkpoint.high.as_deref(), &value));
        }
        let done = next.is_none();
        if let Some(next) = next {
            checkpoint.next = next;
        }
        let seen = work
            .records
            .iter()
            .map(|r| (r.key.clone(), r.hash.clone()))
            .collect();
        let cancel = self.save(checkpoint, counts, seen, Vec::new()).await?;
        for (change, n) in [
            (
                "created",
                changes.iter().filter(|c| c.0 == "created").count(),
            ),
            (
                "updated",
                changes.iter().filter(|c| c.0 == "updated").count(),
            ),
        ] {
            metrics::counter!("switchboard_sync_records_total",
                "sync" => self.config.id.clone(), "change" => change)
            .increment(n as u64);
        }
        metrics::counter!("switchboard_sync_pages_total", "sync" => self.config.id.clone())
            .increment(1);
        if cancel {
            return Ok(Step::Cancelled);
        }
        Ok(if done {
            Step::Done
        } else {
            Step::Continue(work.count)
        })
    }

    /// Deletes one batch of records the complete listing did not see.
    async fn delete_step(&mut self, table: Option<&Table>) -> Result<Step, StepError> {
        let keys = self
            .engine
            .store
            .sync_unseen(&self.config.id, &self.record.id, DELETE_BATCH)
            .await
            .map_err(|e| format!("records cache: {e}"))?;
        if keys.is_empty() {
            return Ok(Step::Done);
        }
        let values: Vec<Value> = keys
            .iter()
            .map(|k| serde_json::from_str(k).unwrap_or_else(|_| Value::String(k.clone())))
            .collect();
        if let Some(table) = table {
            table.delete(&values).await.map_err(|e| e.to_string())?;
        }
        if let Some(collection) = self.collection() {
            let writes = values
                .iter()
                .map(|key| super::rest::Write {
                    change: "deleted",
                    key: key.clone(),
                    record: None,
                })
                .collect();
            collection.apply(&self.record.id, writes).await?;
        }
        let deleted = String::from("deleted");
        self.publish(values.iter().map(|v| ("deleted", v, &deleted, None)))
            .await?;
        let mut counts = self.record.counts;
        counts.deleted += keys.len() as i64;
        let mut checkpoint = self.checkpoint.clone();
        checkpoint.phase = Phase::Deleting;
        let n = keys.len();
        let cancel = self.save(checkpoint, counts, Vec::new(), keys).await?;
        metrics::counter!("switchboard_sync_records_total",
            "sync" => self.config.id.clone(), "change" => "deleted")
        .increment(n as u64);
        Ok(if cancel {
            Step::Cancelled
        } else {
            Step::Continue(0)
        })
    }

    /// The REST destination, if the sync writes to one.
    fn collection(&self) -> Option<super::rest::Collection<'_>> {
        match &self.config.destination {
            switchboard_core::config::SyncDestination::Rest(rest) => {
                Some(super::rest::Collection {
                    client: &self.engine.client,
                    connection: &rest.connection,
                    path: &rest.path,
                    timeout: self.config.timeout,
                })
            }
            _ => None,
        }
    }

    /// Commits a checkpoint; only then does the run's state move on.
    async fn save(
        &mut self,
        checkpoint: Checkpoint,
        counts: SyncCounts,
        seen: Vec<(String, String)>,
        removed: Vec<String>,
    ) -> Result<bool, StepError> {
        let text = serde_json::to_string(&checkpoint).map_err(|e| e.to_string())?;
        let cancel = self
            .engine
            .store
            .sync_checkpoint(&SyncCheckpoint {
                run_id: self.record.id.clone(),
                sync_id: self.config.id.clone(),
                seen,
                removed,
                counts,
                checkpoint: text.clone(),
                now: now_millis(),
            })
            .await
            .map_err(|e| format!("checkpoint: {e}"))?;
        self.checkpoint = checkpoint;
        self.record.counts = counts;
        self.record.checkpoint = text;
        Ok(cancel)
    }

    /// Stores change events (when `publish_changes` is on), each with a de-duplication key
    /// that a repeated page reproduces.
    async fn publish<'v>(
        &self,
        changes: impl Iterator<Item = (&'static str, &'v Value, &'v String, Option<&'v Value>)>,
    ) -> Result<(), StepError> {
        if !self.config.publish_changes {
            return Ok(());
        }
        let emitter: &Emitter = &self.engine.emitter(&self.config.id);
        let messages: Vec<Message> = changes
            .map(|(change, key, hash, record)| {
                let key_text = key.to_string();
                let body = json!({
                    "sync": self.config.id,
                    "run": self.record.id,
                    "change": change,
                    "key": key,
                    "record": record,
                });
                Message {
                    event_type: Some(format!("record.{change}")),
                    dedup_key: Some(format!("{}:{key_text}:{hash}", self.record.id)),
                    headers: Vec::new(),
                    content_type: Some("application/json".into()),
                    body: body.to_string().into_bytes(),
                }
            })
            .collect();
        let mut results = futures::stream::iter(messages.into_iter().map(|m| emitter.emit(m)))
            .buffered(EMITS_IN_FLIGHT);
        while let Some(result) = results.next().await {
            result.map_err(|e| format!("storing change events: {e}"))?;
        }
        Ok(())
    }

    /// Calls the list endpoint; returns the connection's base URL and the 2xx answer.
    async fn fetch(
        &self,
        request: ApiRequest,
    ) -> Result<(String, crate::connections::client::ApiResponse), StepError> {
        self.fetch_from(&self.config.connection, request).await
    }

    /// [`Self::fetch`] through `connection`.
    async fn fetch_from(
        &self,
        connection: &str,
        request: ApiRequest,
    ) -> Result<(String, crate::connections::client::ApiResponse), StepError> {
        let (snapshot, _) = self
            .engine
            .connections
            .get(connection)
            .await
            .map_err(|e| format!("connection `{connection}`: {e}"))?;
        let base = snapshot
            .expand(&snapshot.provider.base_url)
            .map_err(|e| format!("connection `{connection}`: base_url: {e}"))?;
        let call = self.engine.client.call(connection, request);
        let response = match tokio::time::timeout(self.config.timeout, call).await {
            Err(_) => {
                return Err(format!(
                    "the list endpoint did not answer within {:?}",
                    self.config.timeout
                ));
            }
            Ok(Err(CallError::Provider {
                error, attempts, ..
            })) => {
                return Err(format!(
                    "the list endpoint answered HTTP {} after {attempts} attempt(s){}",
                    error.status,
                    error.message.map(|m| format!(": {m}")).unwrap_or_default()
                ));
            }
            Ok(Err(error)) => return Err(format!("connection `{connection}`: {error}")),
            Ok(Ok(response)) => response,
        };
        if !response.status.is_success() {
            return Err(format!(
                "the list endpoint answered HTTP {}",
                response.status.as_u16()
            ));
        }
        Ok((base, response))
    }
}

/// One side of a two-way sync, listed completely.
struct Side {
    records: HashMap<String, Prepared>,
    failed: usize,
    pages: i64,
}

/// Which way a record goes in a two-way run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    SourceToDestination,
    DestinationToSource,
    Park,
}

impl Run<'_> {
    /// A two-way run: list both sides completely, then per key write the side that changed
    /// since the last agreed version (the records cache) to the other; both changed is a
    /// conflict, resolved by the policy or parked. The cache then holds the agreed hash, so
    /// a write we made reads back as "unchanged" on the next run (no loops).
    async fn two_way(mut self) -> Ended {
        match self.two_way_inner().await {
            Ok(Some(ended)) => ended,
            Ok(None) => Ended::Interrupted,
            Err(error) => self.finish("failed", Some(error), None).await,
        }
    }

    /// The synthetic configurations listing each side (with `updated_at` as the cursor).
    fn sides(&self) -> Result<(SyncConfig, SyncConfig), StepError> {
        let config = &*self.config;
        let (Some(two_way), switchboard_core::config::SyncDestination::Rest(rest)) =
            (&config.two_way, &config.destination)
        else {
            return Err("two_way needs a rest destination".into());
        };
        let cursor = |field: &Option<String>| {
            field
                .as_ref()
                .map(|f| switchboard_core::config::IncrementalConfig {
                    cursor_field: f.clone(),
                    param: "-".into(),
                })
        };
        let mut source = config.clone();
        source.incremental = cursor(&two_way.updated_at);
        source.destination = switchboard_core::config::SyncDestination::Events;
        let mut destination = source.clone();
        destination.connection = rest.connection.clone();
        destination.path = rest.path.clone();
        destination.pagination = rest.pagination.clone();
        destination.records = rest.records.clone();
        destination.key = rest.key.clone().unwrap_or_default();
        destination.mapping = rest.mapping.clone();
        destination.incremental = cursor(&rest.updated_at);
        destination.headers.clear();
        Ok((source, destination))
    }

    /// Lists one side completely. `None` when the node is stopping.
    async fn list_side(&self, config: &SyncConfig) -> Result<Option<Side>, StepError> {
        let plan = Arc::new(Plan::new(config)?);
        let config = Arc::new(config.clone());
        let mut side = Side {
            records: HashMap::new(),
            failed: 0,
            pages: 0,
        };
        let mut next = Next::Start;
        loop {
            if self.stop.is_cancelled() {
                return Ok(None);
            }
            let request = plan::request(&config, &plan, &next, None);
            let (base, response) = self.fetch_from(&config.connection, request).await?;
            let link = response
                .headers
                .get(reqwest::header::LINK)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let (config2, plan2, current) = (config.clone(), plan.clone(), next.clone());
            let work = tokio::task::spawn_blocking(move || {
                switchboard_jq::with_eval_stack(|| {
                    prepare_page(
                        &config2,
                        &plan2,
                        &response.body,
                        link.as_deref(),
                        &current,
                        &base,
                    )
                })
            })
            .await
            .map_err(|e| format!("preparing the page failed: {e}"))??;
            side.pages += 1;
            side.failed += work.failed.len();
            for record in work.records {
                side.records.insert(record.key.clone(), record);
            }
            match work.next? {
                Some(following) => next = following,
                None => return Ok(Some(side)),
            }
        }
    }

    async fn two_way_inner(&mut self) -> Result<Option<Ended>, StepError> {
        let (source_config, destination_config) = self.sides()?;
        let Some(source) = self.list_side(&source_config).await? else {
            return Ok(None);
        };
        let Some(destination) = self.list_side(&destination_config).await? else {
            return Ok(None);
        };
        if self.cancel.is_cancelled() {
            return Ok(Some(
                self.finish("cancelled", Some("cancelled on request".into()), None)
                    .await,
            ));
        }
        let policy = self
            .config
            .two_way
            .as_ref()
            .map(|t| t.conflict)
            .ok_or("two_way settings missing")?;
        let mut keys: Vec<String> = source
            .records
            .keys()
            .chain(destination.records.keys())
            .cloned()
            .collect();
        keys.sort();
        keys.dedup();
        let mut cached: HashMap<String, String> = HashMap::new();
        for chunk in keys.chunks(5000) {
            cached.extend(
                self.engine
                    .store
                    .sync_hashes(&self.config.id, chunk)
                    .await
                    .map_err(|e| format!("records cache: {e}"))?,
            );
        }
        let incomplete = source.failed + destination.failed > 0;
        let mut counts = self.record.counts;
        counts.pages += source.pages + destination.pages;
        counts.fetched += (source.records.len() + destination.records.len()) as i64;
        counts.failed += (source.failed + destination.failed) as i64;
        let mut to_destination = Vec::new();
        let mut to_source = Vec::new();
        let mut seen = Vec::new();
        let mut removed = Vec::new();
        let mut conflicts = Vec::new();
        let mut resolved = Vec::new();
        let mut events = Vec::new();
        let now = now_millis();
        for key in &keys {
            let a = source.records.get(key);
            let b = destination.records.get(key);
            let base = cached.get(key);
            let (a_hash, b_hash) = (a.map(|r| &r.hash), b.map(|r| &r.hash));
            if a_hash == b_hash {
                counts.unchanged += 1;
                match a {
                    Some(record) => seen.push((key.clone(), record.hash.clone())),
                    None if base.is_some() => removed.push(key.clone()),
                    None => {}
                }
                resolved.push(key.clone());
                continue;
            }
            // A record missing from a listing that had failures may only have failed to read.
            if incomplete && (a.is_none() || b.is_none()) {
                continue;
            }
            let a_changed = a_hash != base;
            let b_changed = b_hash != base;
            let direction = match (a_changed, b_changed) {
                (true, false) => Direction::SourceToDestination,
                (false, true) => Direction::DestinationToSource,
                _ => match policy {
                    switchboard_core::config::ConflictPolicy::SourceWins => {
                        Direction::SourceToDestination
                    }
                    switchboard_core::config::ConflictPolicy::DestinationWins => {
                        Direction::DestinationToSource
                    }
                    switchboard_core::config::ConflictPolicy::Manual => Direction::Park,
                    switchboard_core::config::ConflictPolicy::LatestWins => {
                        let a_at = a.and_then(|r| r.cursor.as_ref());
                        let b_at = b.and_then(|r| r.cursor.as_ref());
                        match (a_at, b_at) {
                            (Some(x), Some(y)) if greater(y, x) => Direction::DestinationToSource,
                            (None, Some(_)) if a.is_none() => Direction::DestinationToSource,
                            _ => Direction::SourceToDestination,
                        }
                    }
                },
            };
            let (winner, loser, writes) = match direction {
                Direction::Park => {
                    conflicts.push(switchboard_store::SyncConflict {
                        sync_id: self.config.id.clone(),
                        record_key: key.clone(),
                        source: a.map(|r| r.mapped.to_string()),
                        destination: b.map(|r| r.mapped.to_string()),
                        detected_at: now,
                    });
                    continue;
                }
                Direction::SourceToDestination => (a, b, &mut to_destination),
                Direction::DestinationToSource => (b, a, &mut to_source),
            };
            resolved.push(key.clone());
            let key_value = winner
                .or(loser)
                .map(|r| r.key_value.clone())
                .unwrap_or(Value::Null);
            let change = match (winner, loser) {
                (Some(_), Some(_)) => "updated",
                (Some(_), None) => "created",
                (None, _) => "deleted",
            };
            match change {
                "created" => counts.created += 1,
                "updated" => counts.updated += 1,
                _ => counts.deleted += 1,
            }
            writes.push(super::rest::Write {
                change,
                key: key_value.clone(),
                record: winner.map(|r| r.mapped.clone()),
            });
            match winner {
                Some(record) => {
                    seen.push((key.clone(), record.hash.clone()));
                    events.push((
                        change,
                        key_value,
                        record.hash.clone(),
                        Some(record.mapped.clone()),
                    ));
                }
                None => {
                    removed.push(key.clone());
                    events.push((change, key_value, "deleted".to_owned(), None));
                }
            }
        }
        let rest = match &self.config.destination {
            switchboard_core::config::SyncDestination::Rest(rest) => rest.clone(),
            _ => return Err("two_way needs a rest destination".into()),
        };
        let source_path = self
            .config
            .path
            .split_once('?')
            .map_or(self.config.path.as_str(), |(path, _)| path)
            .to_owned();
        let client = &self.engine.client;
        let towards_destination = super::rest::Collection {
            client,
            connection: &rest.connection,
            path: &rest.path,
            timeout: self.config.timeout,
        };
        let towards_source = super::rest::Collection {
            client,
            connection: &self.config.connection,
            path: &source_path,
            timeout: self.config.timeout,
        };
        let run_id = self.record.id.clone();
        towards_destination.apply(&run_id, to_destination).await?;
        towards_source.apply(&run_id, to_source).await?;
        self.publish(
            events
                .iter()
                .map(|(change, key, hash, record)| (*change, key, hash, record.as_ref())),
        )
        .await?;
        let parked = conflicts.len();
        self.engine
            .store
            .sync_put_conflicts(&self.config.id, &conflicts, &resolved)
            .await
            .map_err(|e| format!("conflicts: {e}"))?;
        let checkpoint = self.checkpoint.clone();
        self.save(checkpoint, counts, seen, removed).await?;
        let note = (parked > 0).then(|| {
            format!(
                "{parked} conflict(s) parked for review (GET /v1/syncs/{}/conflicts)",
                self.config.id
            )
        });
        Ok(Some(self.succeed(note).await))
    }
}

/// What a step did.
enum Step {
    /// More to do; this many records were read.
    Continue(usize),
    /// This phase is complete.
    Done,
    /// A cancel was asked for.
    Cancelled,
    /// The node is stopping.
    Stopped,
}

/// Blocking: parses the body, selects, keys, maps and hashes the records, finds the largest
/// cursor value and the next page.
fn prepare_page(
    config: &SyncConfig,
    plan: &Plan,
    body: &[u8],
    link: Option<&str>,
    current: &Next,
    base: &str,
) -> Result<PageWork, StepError> {
    let key_column = config.destination.key_column().map(|c| c.name.as_str());
    let json: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the list endpoint's answer is not JSON: {e}"))?;
    let outputs = plan
        .records
        .run(&json, &plan::page_limits())
        .map_err(|e| format!("records: {e}"))?;
    let mut items = Vec::new();
    for output in outputs {
        match output {
            Value::Array(values) => items.extend(values),
            Value::Null => {}
            other => items.push(other),
        }
    }
    let limits = plan::record_limits();
    let count = items.len();
    let mut by_key: HashMap<String, usize> = HashMap::new();
    let mut records: Vec<Prepared> = Vec::with_capacity(count);
    let mut failed = Vec::new();
    let mut high: Option<Value> = None;
    for item in &items {
        let key_value = match plan.key.run_one(item, &limits) {
            Ok(value @ (Value::String(_) | Value::Number(_))) => value,
            Ok(other) => {
                failed.push(format!(
                    "key must be a string or a number, not `{}`",
                    excerpt(&other)
                ));
                continue;
            }
            Err(e) => {
                failed.push(format!("key: {e}"));
                continue;
            }
        };
        let mut mapped = match &plan.mapping {
            None => item.clone(),
            Some(program) => match program.run_one(item, &limits) {
                Ok(value) => value,
                Err(e) => {
                    failed.push(format!("mapping of {key_value}: {e}"));
                    continue;
                }
            },
        };
        if let (Some(column), Value::Object(row)) = (key_column, &mut mapped)
            && row.get(column).is_none_or(Value::is_null)
        {
            row.insert(column.to_owned(), key_value.clone());
        }
        let mut cursor = None;
        if let Some(program) = &plan.cursor_field {
            match program.run_one(item, &limits) {
                Ok(value @ (Value::String(_) | Value::Number(_))) => {
                    if high.as_ref().is_none_or(|h| greater(&value, h)) {
                        high = Some(value.clone());
                    }
                    cursor = Some(value);
                }
                Ok(_) => {}
                Err(e) => {
                    failed.push(format!("incremental.cursor_field of {key_value}: {e}"));
                    continue;
                }
            }
        }
        let key = key_value.to_string();
        let hash = content_hash(&mapped);
        let prepared = Prepared {
            key: key.clone(),
            key_value,
            mapped,
            hash,
            cursor,
        };
        // The same key twice in one page: the later one wins (one write per key).
        match by_key.get(&key) {
            Some(&index) => records[index] = prepared,
            None => {
                by_key.insert(key, records.len());
                records.push(prepared);
            }
        }
    }
    let next = plan::after(config, plan, current, &json, link, count, base);
    Ok(PageWork {
        records,
        failed,
        count,
        high,
        next,
    })
}

fn excerpt(value: &Value) -> String {
    let text = value.to_string();
    text.chars().take(80).collect()
}

/// Hex SHA-256 (first 16 bytes) of the value's JSON text.
pub fn content_hash(value: &Value) -> String {
    let digest = Sha256::digest(value.to_string().as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether cursor value `a` is later than `b` (numbers numerically, strings by text).
fn greater(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => {
            a.as_f64().unwrap_or(f64::MIN) > b.as_f64().unwrap_or(f64::MIN)
        }
        (Value::String(a), Value::String(b)) => a > b,
        _ => false,
    }
}

/// The larger of a stored cursor (JSON text) and `value`, as JSON text.
fn max_cursor(stored: Option<&str>, value: &Value) -> String {
    match stored.and_then(|s| serde_json::from_str::<Value>(s).ok()) {
        Some(old) if !greater(value, &old) => old.to_string(),
        _ => value.to_string(),
    }
}

/// A stored cursor (JSON text) as a query parameter value: strings without their quotes.
fn cursor_param_value(stored: &str) -> String {
    match serde_json::from_str::<Value>(stored) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => stored.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_compare_by_kind() {
        assert!(greater(&json!(10), &json!(9)));
        assert!(greater(&json!("2024-02-01"), &json!("2024-01-31")));
        assert!(!greater(&json!("10"), &json!(9)));
        assert_eq!(max_cursor(Some("\"b\""), &json!("a")), "\"b\"");
        assert_eq!(max_cursor(Some("\"a\""), &json!("b")), "\"b\"");
        assert_eq!(max_cursor(None, &json!(3)), "3");
        assert_eq!(
            cursor_param_value("\"2024-01-01T00:00:00Z\""),
            "2024-01-01T00:00:00Z"
        );
        assert_eq!(cursor_param_value("42"), "42");
    }

    #[test]
    fn the_hash_follows_the_content() {
        let a = content_hash(&json!({"id": 1, "title": "a"}));
        assert_eq!(a, content_hash(&json!({"id": 1, "title": "a"})));
        assert_ne!(a, content_hash(&json!({"id": 1, "title": "b"})));
        assert_eq!(a.len(), 32);
    }
}
