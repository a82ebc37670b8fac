//! `GET /v1/system`: what `switchboard doctor` checks about a running instance — the build, the
//! store and its schema version, the nodes heartbeating into it, free space of the SQLite data
//! directory, and the delivery backlog. Clock skew is judged by the client from the response's
//! `Date` header against `time`.

use std::path::Path;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use switchboard_core::DeliveryStatus;
use switchboard_core::time::{format_rfc3339, now_millis};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Auth, Read};
use super::{ApiResult, internal};
use crate::problem::Problem;
use crate::state::AppState;

/// A node is alive when it heartbeat within this long (heartbeats come every 2 s).
pub const NODE_ALIVE_MS: i64 = 10_000;

/// A node heartbeating into the store.
#[derive(Debug, Serialize, ToSchema)]
pub struct SystemNode {
    /// Node id.
    pub id: String,
    /// Started (RFC 3339).
    pub started_at: String,
    /// Last heartbeat (RFC 3339).
    pub last_seen: String,
    /// Milliseconds since the last heartbeat.
    pub last_seen_ms_ago: i64,
    /// Whether it heartbeat within the last 10 seconds.
    pub alive: bool,
}

/// Space on the file system of the data directory.
#[derive(Debug, Serialize, ToSchema)]
pub struct DiskSpace {
    /// The data directory.
    pub path: String,
    /// Bytes available to Switchboard.
    pub available_bytes: u64,
    /// Size of the file system.
    pub total_bytes: u64,
}

/// Deliveries by state.
#[derive(Debug, Serialize, ToSchema)]
pub struct Backlog {
    /// Waiting for an attempt (first or retry).
    pub pending: u64,
    /// Being attempted now.
    pub in_flight: u64,
    /// Dead letters (retries exhausted or permanent failures).
    pub failed: u64,
}

/// The state of this instance.
#[derive(Debug, Serialize, ToSchema)]
pub struct SystemReport {
    /// Switchboard's version.
    pub version: String,
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// The newest migration applied to the database.
    pub schema_version: i64,
    /// The newest migration this server knows.
    pub schema_latest: i64,
    /// The node that answered.
    pub node: String,
    /// Nodes heartbeating into the store.
    pub nodes: Vec<SystemNode>,
    /// The server's clock (RFC 3339, milliseconds).
    pub time: String,
    /// The server's clock (Unix milliseconds).
    pub time_ms: i64,
    /// Free space of the SQLite data directory (null on PostgreSQL or when unreadable).
    pub disk: Option<DiskSpace>,
    /// Deliveries by state.
    pub backlog: Backlog,
}

/// Free and total bytes of the file system holding `path`.
fn disk_space(path: &Path) -> Option<DiskSpace> {
    let stat = rustix::fs::statvfs(path).ok()?;
    Some(DiskSpace {
        path: path.display().to_string(),
        available_bytes: stat.f_bavail.saturating_mul(stat.f_frsize),
        total_bytes: stat.f_blocks.saturating_mul(stat.f_frsize),
    })
}

/// The state of this instance, for `switchboard doctor`.
#[utoipa::path(get, path = "/system", tag = "system",
    responses((status = 200, body = SystemReport), (status = 401, body = Problem), (status = 500, body = Problem)),
    security(("bearer" = [])))]
pub async fn get(
    _auth: Auth<Read>,
    State(state): State<Arc<AppState>>,
) -> ApiResult<Json<SystemReport>> {
    let schema_version = state.store.schema_version().await.map_err(internal)?;
    let nodes = state.store.list_nodes().await.map_err(internal)?;
    let counts = state.store.delivery_counts().await.map_err(internal)?;
    let count = |status: DeliveryStatus| {
        counts
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n)
    };
    let now = now_millis();
    let disk = match state.data_dir.clone() {
        Some(dir) => tokio::task::spawn_blocking(move || disk_space(&dir))
            .await
            .ok()
            .flatten(),
        None => None,
    };
    Ok(Json(SystemReport {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        backend: if state.data_dir.is_some() {
            "sqlite"
        } else {
            "postgres"
        }
        .to_owned(),
        schema_version,
        schema_latest: switchboard_store::SCHEMA_LATEST,
        node: state.node.clone(),
        nodes: nodes
            .into_iter()
            .map(|n| SystemNode {
                alive: now - n.last_seen <= NODE_ALIVE_MS,
                last_seen_ms_ago: (now - n.last_seen).max(0),
                started_at: format_rfc3339(n.started_at),
                last_seen: format_rfc3339(n.last_seen),
                id: n.id,
            })
            .collect(),
        time: format_rfc3339(now),
        time_ms: now,
        disk,
        backlog: Backlog {
            pending: count(DeliveryStatus::Pending),
            in_flight: count(DeliveryStatus::InFlight),
            failed: count(DeliveryStatus::Failed),
        },
    }))
}

/// Routes of this resource.
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(get))
}
