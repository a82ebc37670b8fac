//! `/v1/syncs`: sync jobs (created here or in `[[syncs]]`), their runs, and starting or
//! cancelling a run.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchboard_core::config::SyncConfig;
use switchboard_store::SyncRunRecord;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Auth, Read, Write};
use super::extract::{ApiJson, ApiQuery};
use super::pagination::{self, Page};
use super::resources::{apply, check_path_id, from_value, not_found, redact_settings, stamps};
use super::{ApiResult, internal};
use crate::problem::Problem;
use crate::runtime::{Change, Kind, Runtime};
use crate::state::AppState;
use crate::sync::StartError;
use crate::transform::rfc3339;

/// A sync job as the API shows it (secrets redacted).
#[derive(Debug, Serialize, ToSchema)]
pub struct Sync {
    /// Sync id; its change events are events of the source with this id.
    pub id: String,
    /// `config` (read-only here) or `api`.
    pub managed_by: &'static str,
    /// `full` or `incremental`.
    pub mode: &'static str,
    /// The connection the list endpoint is called through.
    pub connection: String,
    /// `sqlite`, `postgres` or `events`.
    pub destination: &'static str,
    /// Cron schedule, when it runs by itself.
    pub schedule: Option<String>,
    /// Whether a run is in progress.
    pub running: bool,
    /// The newest run.
    pub last_run: Option<SyncRun>,
    /// Every setting, as written in `[[syncs]]` (secrets redacted).
    #[schema(value_type = Object)]
    pub settings: Value,
    /// Created (API resources).
    pub created_at: Option<String>,
    /// Last change (API resources).
    pub updated_at: Option<String>,
}

/// One run of a sync job: its progress while it runs, its outcome after.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncRun {
    /// Run id.
    pub id: String,
    /// The sync.
    pub sync: String,
    /// `running`, `paused` (a limit stopped it; the next run continues it), `succeeded`,
    /// `failed` or `cancelled`.
    pub status: String,
    /// `full` or `incremental`.
    pub mode: String,
    /// `api`, `schedule` or `resume`.
    pub trigger: String,
    /// `listing` or `deleting`.
    pub phase: Option<String>,
    /// Started.
    pub started_at: String,
    /// Last progress.
    pub updated_at: String,
    /// Ended (or paused).
    pub finished_at: Option<String>,
    /// Pages read.
    pub pages: i64,
    /// Records read.
    pub fetched: i64,
    /// Records created in the destination.
    pub created: i64,
    /// Records updated in the destination.
    pub updated: i64,
    /// Records deleted from the destination.
    pub deleted: i64,
    /// Records read unchanged.
    pub unchanged: i64,
    /// Records skipped (their key or mapping failed).
    pub failed: i64,
    /// Why it failed or stopped (or a note on a success).
    pub error: Option<String>,
    /// A cancel was asked for.
    pub cancel_requested: bool,
}

impl From<SyncRunRecord> for SyncRun {
    fn from(r: SyncRunRecord) -> Self {
        let phase = serde_json::from_str::<Value>(&r.checkpoint)
            .ok()
            .and_then(|c| c.get("phase").and_then(Value::as_str).map(str::to_owned));
        Self {
            id: r.id,
            sync: r.sync_id,
            status: r.status,
            mode: r.mode,
            trigger: r.trigger,
            phase,
            started_at: rfc3339(r.started_at),
            updated_at: rfc3339(r.updated_at),
            finished_at: r.finished_at.map(rfc3339),
            pages: r.counts.pages,
            fetched: r.counts.fetched,
            created: r.counts.created,
            updated: r.counts.updated,
            deleted: r.counts.deleted,
            unchanged: r.counts.unchanged,
            failed: r.counts.failed,
            error: r.error,
            cancel_requested: r.cancel_requested,
        }
    }
}

/// A sync job to create or replace: the keys of a `[[syncs]]` table of the configuration file
/// (`id`, `connection`, `path`, `pagination`, `records`, `key`, `mapping`, `mode`,
/// `incremental`, `destination`, `publish_changes`, `schedule`, `timezone`, `max_run_time`,
/// `max_records`, `timeout`).
#[derive(Debug, Deserialize, ToSchema)]
#[schema(value_type = Object)]
pub struct SyncInput(pub Value);

/// Paging of `GET /v1/syncs/{id}/runs`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    /// 1–500 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

async fn view(state: &AppState, runtime: &Runtime, sync: &SyncConfig) -> ApiResult<Sync> {
    let last_run = state
        .store
        .list_sync_runs(&sync.id, None, 1)
        .await
        .map_err(internal)?
        .into_iter()
        .next()
        .map(SyncRun::from);
    let mut settings = serde_json::to_value(sync).unwrap_or(Value::Null);
    redact_settings(&mut settings);
    let (created_at, updated_at) = stamps(runtime, Kind::Sync, &sync.id);
    Ok(Sync {
        id: sync.id.clone(),
        managed_by: runtime.managed_by(Kind::Sync, &sync.id).as_str(),
        mode: sync.mode.as_str(),
        connection: sync.connection.clone(),
        destination: sync.destination.kind(),
        schedule: sync.schedule.clone(),
        running: last_run.as_ref().is_some_and(|r| r.status == "running"),
        last_run,
        settings,
        created_at,
        updated_at,
    })
}

fn config_of(runtime: &Runtime, id: &str) -> Result<SyncConfig, Problem> {
    runtime
        .config
        .syncs
        .iter()
        .find(|s| s.id == id)
        .cloned()
        .ok_or_else(|| not_found(Kind::Sync, id))
}

async fn find(state: &AppState, id: &str) -> ApiResult<Sync> {
    let runtime = state.registry.current();
    let sync = config_of(&runtime, id)?;
    view(state, &runtime, &sync).await
}

/// Lists sync jobs.
#[utoipa::path(get, path = "/syncs", tag = "syncs",
    responses((status = 200, body = Vec<Sync>), (status = 401, body = Problem)), security(("bearer" = [])))]
pub async fn list(
    _auth: Auth<Read>,
    State(state): State<Arc<AppState>>,
) -> ApiResult<Json<Vec<Sync>>> {
    all(&state).await.map(Json)
}

/// Every sync job with its newest run (shared by the API and the dashboard).
pub async fn all(state: &AppState) -> ApiResult<Vec<Sync>> {
    let runtime = state.registry.current();
    let mut out = Vec::new();
    for sync in &runtime.config.syncs {
        out.push(view(state, &runtime, sync).await?);
    }
    Ok(out)
}

/// One sync job, with its newest run.
#[utoipa::path(get, path = "/syncs/{id}", tag = "syncs", params(("id" = String, Path, description = "Sync id")),
    responses((status = 200, body = Sync), (status = 401, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get(
    _auth: Auth<Read>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Sync>> {
    find(&state, &id).await.map(Json)
}

fn to_config(input: SyncInput) -> Result<SyncConfig, Problem> {
    if !input.0.is_object() {
        return Err(Problem::field("id", "the body must be a JSON object"));
    }
    from_value(input.0)
}

/// Creates a sync job.
#[utoipa::path(post, path = "/syncs", tag = "syncs", request_body = SyncInput,
    responses((status = 201, body = Sync), (status = 401, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn create(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    ApiJson(input): ApiJson<SyncInput>,
) -> ApiResult<(StatusCode, Json<Sync>)> {
    let config = to_config(input)?;
    let id = config.id.clone();
    apply(&state, Change::PutSync(Box::new(config), true)).await?;
    Ok((StatusCode::CREATED, Json(find(&state, &id).await?)))
}

/// Replaces a sync job (a run in progress keeps its settings until it ends).
#[utoipa::path(put, path = "/syncs/{id}", tag = "syncs", params(("id" = String, Path, description = "Sync id")), request_body = SyncInput,
    responses((status = 200, body = Sync), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn update(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<SyncInput>,
) -> ApiResult<Json<Sync>> {
    let config = to_config(input)?;
    check_path_id(&id, &config.id)?;
    apply(&state, Change::PutSync(Box::new(config), false)).await?;
    Ok(Json(find(&state, &id).await?))
}

/// Deletes a sync job (refused while routes use its change events).
#[utoipa::path(delete, path = "/syncs/{id}", tag = "syncs", params(("id" = String, Path, description = "Sync id")),
    responses((status = 204, description = "Deleted"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn delete(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    apply(&state, Change::Delete(Kind::Sync, id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Starts a run now (or resumes the run a limit paused or a crash interrupted). `409` while a
/// run is in progress on any node.
#[utoipa::path(post, path = "/syncs/{id}/run", tag = "syncs", params(("id" = String, Path, description = "Sync id")),
    responses((status = 202, body = SyncRun), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn run(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<SyncRun>)> {
    start_run(&state, &id)
        .await
        .map(|run| (StatusCode::ACCEPTED, Json(run)))
}

/// Starts a run of sync `id` now (shared by the API and the dashboard).
pub async fn start_run(state: &AppState, id: &str) -> ApiResult<SyncRun> {
    match state.syncs.start(id, crate::sync::Trigger::Api).await {
        Ok(run) => Ok(run.into()),
        Err(StartError::NotFound(_)) => Err(not_found(Kind::Sync, id)),
        Err(error @ StartError::Running(_)) => {
            Err(Problem::conflict("sync_running", error.to_string()))
        }
        Err(StartError::ShuttingDown) => Err(Problem::unavailable("the server is shutting down")),
        Err(error) => Err(internal(error)),
    }
}

/// Asks the run in progress to stop after its current page (a paused run is cancelled at
/// once). `409` when no run is open.
#[utoipa::path(post, path = "/syncs/{id}/cancel", tag = "syncs", params(("id" = String, Path, description = "Sync id")),
    responses((status = 202, body = SyncRun), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn cancel(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<SyncRun>)> {
    cancel_run(&state, &id)
        .await
        .map(|run| (StatusCode::ACCEPTED, Json(run)))
}

/// Asks the open run of sync `id` to stop (shared by the API and the dashboard).
pub async fn cancel_run(state: &AppState, id: &str) -> ApiResult<SyncRun> {
    config_of(&state.registry.current(), id)?;
    let Some(run) = state.syncs.cancel(id).await.map_err(internal)? else {
        return Err(Problem::conflict(
            "no_run",
            format!("sync `{id}` has no run in progress"),
        ));
    };
    let record = state
        .store
        .get_sync_run(&run)
        .await
        .map_err(internal)?
        .ok_or_else(|| not_found(Kind::Sync, id))?;
    Ok(record.into())
}

/// The run log, newest first: counts, status, errors, and progress while running.
#[utoipa::path(get, path = "/syncs/{id}/runs", tag = "syncs", params(("id" = String, Path, description = "Sync id"), RunsQuery),
    responses((status = 200, body = Page<SyncRun>), (status = 401, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn runs(
    _auth: Auth<Read>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<RunsQuery>,
) -> ApiResult<Json<Page<SyncRun>>> {
    config_of(&state.registry.current(), &id)?;
    let limit = pagination::limit(query.limit)?;
    let before = pagination::decode_key(query.cursor.as_deref())?;
    let rows = state
        .store
        .list_sync_runs(&id, before.as_deref(), limit + 1)
        .await
        .map_err(internal)?;
    Ok(Json(pagination::page_by_key(
        rows,
        limit,
        |r| &r.id,
        SyncRun::from,
    )))
}

/// A record changed on both sides of a two-way sync with `conflict = "manual"`, parked: it is
/// written to neither side until the two versions agree again (edit either side to match the
/// other, or both).
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncConflict {
    /// The record's key.
    #[schema(value_type = Object)]
    pub key: Value,
    /// The source's version (mapped), `null` when deleted there.
    #[schema(value_type = Option<Object>)]
    pub source: Option<Value>,
    /// The destination's version (mapped), `null` when deleted there.
    #[schema(value_type = Option<Object>)]
    pub destination: Option<Value>,
    /// When the last run found it.
    pub detected_at: String,
}

/// Paging of `GET /v1/syncs/{id}/conflicts`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ConflictsQuery {
    /// 1–500 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Conflicts of a two-way sync parked for review (policy `manual`), in key order.
#[utoipa::path(get, path = "/syncs/{id}/conflicts", tag = "syncs", params(("id" = String, Path, description = "Sync id"), ConflictsQuery),
    responses((status = 200, body = Page<SyncConflict>), (status = 401, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn conflicts(
    _auth: Auth<Read>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<ConflictsQuery>,
) -> ApiResult<Json<Page<SyncConflict>>> {
    config_of(&state.registry.current(), &id)?;
    let limit = pagination::limit(query.limit)?;
    let after = pagination::decode_key(query.cursor.as_deref())?;
    let rows = state
        .store
        .list_sync_conflicts(&id, after.as_deref(), limit + 1)
        .await
        .map_err(internal)?;
    let parse = |text: &str| serde_json::from_str(text).unwrap_or(Value::String(text.to_owned()));
    Ok(Json(pagination::page_by_key(
        rows,
        limit,
        |r| &r.record_key,
        |r| SyncConflict {
            key: parse(&r.record_key),
            source: r.source.as_deref().map(parse),
            destination: r.destination.as_deref().map(parse),
            detected_at: rfc3339(r.detected_at),
        },
    )))
}

/// Which side of a parked conflict wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Take {
    /// The source's version is written to the destination (a deletion there deletes).
    Source,
    /// The destination's version is written back to the source.
    Destination,
}

/// `POST /v1/syncs/{id}/conflicts/resolve`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveInput {
    /// The conflict's `key`, as `GET /v1/syncs/{id}/conflicts` shows it.
    #[schema(value_type = Object)]
    pub key: Value,
    /// `source` or `destination`.
    pub take: Take,
    /// Start a run now to apply it (default `true`); otherwise the next run applies it.
    pub run: Option<bool>,
}

/// A resolved conflict.
#[derive(Debug, Serialize, ToSchema)]
pub struct Resolved {
    /// The record's key.
    #[schema(value_type = Object)]
    pub key: Value,
    /// The side that wins.
    pub take: Take,
    /// The run started to apply it, if one was.
    pub run: Option<SyncRun>,
}

/// Resolves a parked conflict of a two-way sync (policy `manual`) by choosing the side that
/// wins: the next run writes that side's version to the other (and a run is started now,
/// unless `run` is `false`). If either side changes again before that run, the record is a
/// conflict again.
#[utoipa::path(post, path = "/syncs/{id}/conflicts/resolve", tag = "syncs", params(("id" = String, Path, description = "Sync id")), request_body = ResolveInput,
    responses((status = 200, body = Resolved), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn resolve(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ResolveInput>,
) -> ApiResult<Json<Resolved>> {
    resolve_conflict(&state, &id, input).await.map(Json)
}

/// Resolves one parked conflict (shared with the dashboard).
pub async fn resolve_conflict(
    state: &AppState,
    id: &str,
    input: ResolveInput,
) -> ApiResult<Resolved> {
    config_of(&state.registry.current(), id)?;
    let open = state.store.sync_open_run(id).await.map_err(internal)?;
    if open.is_some_and(|run| run.status == "running") {
        // The run in progress would park it again from what it listed before the choice.
        return Err(Problem::conflict(
            "sync_running",
            format!("sync `{id}` is running; resolve its conflicts once the run has ended"),
        ));
    }
    let record_key = input.key.to_string();
    let parked = state
        .store
        .get_sync_conflict(id, &record_key)
        .await
        .map_err(internal)?
        .ok_or_else(|| {
            Problem::not_found(format!(
                "sync `{id}` has no parked conflict for key {record_key}"
            ))
        })?;
    // The losing side's current version becomes the agreed one, so only the winner reads as
    // changed on the next run.
    let loser = match input.take {
        Take::Source => parked.destination.as_deref(),
        Take::Destination => parked.source.as_deref(),
    };
    let base = loser
        .map(|text| {
            serde_json::from_str::<Value>(text)
                .map(|value| crate::sync::run::content_hash(&value))
                .map_err(internal)
        })
        .transpose()?;
    if !state
        .store
        .sync_resolve_conflict(id, &record_key, base.as_deref())
        .await
        .map_err(internal)?
    {
        return Err(Problem::not_found(format!(
            "sync `{id}` has no parked conflict for key {record_key}"
        )));
    }
    let run = if input.run.unwrap_or(true) {
        match start_run(state, id).await {
            Ok(run) => Some(run),
            // Another node started one meanwhile: it applies the choice.
            Err(problem) if problem.status == 409 => None,
            Err(problem) => return Err(problem),
        }
    } else {
        None
    };
    Ok(Resolved {
        key: input.key,
        take: input.take,
        run,
    })
}

/// Routes of this resource.
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, delete))
        .routes(routes!(run))
        .routes(routes!(cancel))
        .routes(routes!(runs))
        .routes(routes!(conflicts))
        .routes(routes!(resolve))
}
