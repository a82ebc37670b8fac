//! `GET /v1/health`: one document with the state of every source, destination, connection,
//! sync and worker node — what an operator (or the dashboard's overview) reads first when
//! something between two systems breaks.
//!
//! Cluster-wide facts come from the store (last event, backlog, destination circuits as last
//! persisted, nodes, leases, connection status); per-node facts (reject counts, connection
//! circuits, rate-limit headroom and pace share) are this node's view and say so.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use switchboard_core::time::{UnixMillis, now_millis};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Auth, Read};
use super::{ApiResult, internal};
use crate::connections::{Settings, pace_of};
use crate::problem::Problem;
use crate::state::AppState;
use crate::transform::rfc3339;

/// Nodes that have not sent a heartbeat for this long are not listed (the worker's ttl).
const NODE_TTL_MS: i64 = 6_000;
/// An OAuth2 token expiring within this margin is reported as `expiring`.
const EXPIRING_MS: i64 = 5 * 60 * 1000;
/// A destination with at least this many consecutive failures is `failing` even while its
/// circuit is still closed.
const FAILING_AFTER: u32 = 1;

/// The health document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when a destination's circuit is open, a destination is failing, a
    /// connection needs attention, a sync's newest run failed or no worker node is live.
    pub status: &'static str,
    /// When this document was made (RFC 3339).
    pub checked_at: String,
    /// Every configured source.
    pub sources: Vec<SourceHealth>,
    /// Every destination and tenant endpoint.
    pub destinations: Vec<DestinationHealth>,
    /// Every connection to a third-party API.
    pub connections: Vec<ConnectionHealth>,
    /// Every sync job, with its newest run.
    pub syncs: Vec<SyncHealth>,
    /// Worker nodes sharing the store, and the named leases they hold.
    pub workers: WorkersHealth,
}

/// One sync job.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncHealth {
    /// Sync id.
    pub id: String,
    /// Status of its newest run (`running`, `paused`, `succeeded`, `failed`, `cancelled`), or
    /// `never_run`.
    pub status: String,
    /// When the newest run started (RFC 3339).
    pub last_started_at: Option<String>,
    /// When it ended (RFC 3339).
    pub last_finished_at: Option<String>,
    /// Why it failed.
    pub last_error: Option<String>,
}

/// One source.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceHealth {
    /// Source id.
    pub id: String,
    /// `false` while the source is paused.
    pub enabled: bool,
    /// `webhook`, `queue`, `websocket`, `schedule`…
    pub kind: String,
    /// When its latest stored event was received (RFC 3339), across all nodes.
    pub last_event_at: Option<String>,
    /// When its latest rejected request arrived (RFC 3339).
    pub last_rejection_at: Option<String>,
    /// Requests accepted by this node since it started.
    pub accepted: u64,
    /// Requests rejected by this node since it started (bad signature, too large, rate limited).
    pub rejected: u64,
    /// `rejected / (accepted + rejected)` on this node, 0 without requests.
    pub reject_rate: f64,
}

/// One destination (or tenant endpoint).
#[derive(Debug, Serialize, ToSchema)]
pub struct DestinationHealth {
    /// Destination (or endpoint) id.
    pub id: String,
    /// Owning tenant, for tenant endpoints.
    pub tenant: Option<String>,
    /// `false` while paused (a disabled destination or endpoint keeps its deliveries pending).
    pub enabled: bool,
    /// `closed`, `open` or `half_open`.
    pub circuit: String,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// First failure after the last success (RFC 3339).
    pub failing_since: Option<String>,
    /// Last successful attempt (RFC 3339).
    pub last_success_at: Option<String>,
    /// Last failed attempt (RFC 3339).
    pub last_failure_at: Option<String>,
    /// Error of the last failed attempt.
    pub last_error: Option<String>,
    /// Deliveries waiting to be sent.
    pub pending: u64,
    /// Deliveries being sent right now.
    pub in_flight: u64,
}

/// One connection.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionHealth {
    /// Connection id.
    pub id: String,
    /// Provider id.
    pub provider: String,
    /// `pending`, `active` or `needs_reauth`.
    pub status: String,
    /// `valid`, `expiring` (within 5 minutes), `expired` (refreshed on next use when a refresh
    /// token exists), `static` (API key, basic, bearer: no expiry) or `missing`.
    pub token: &'static str,
    /// When the OAuth2 access token expires (RFC 3339).
    pub token_expires_at: Option<String>,
    /// Why the last refresh failed.
    pub last_error: Option<String>,
    /// This node's circuit for the connection: `closed`, `open`, `half_open` (`closed` before
    /// the first call).
    pub circuit: &'static str,
    /// Calls in flight from this node.
    pub in_flight: usize,
    /// What the provider's rate-limit headers last said to this node.
    pub rate_limit: Option<RateLimitHealth>,
    /// Calls are held until this instant (RFC 3339) after a `429` or an exhausted window.
    pub paused_until: Option<String>,
    /// The connection's pace and this node's share of it; absent when no rate is set (calls
    /// are then paced only by the provider's headers).
    pub pace: Option<PaceHealth>,
}

/// A connection's pace: a total across the nodes sharing the store, each node pacing at its
/// share.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaceHealth {
    /// Calls per second in all (the connection's `settings.requests_per_second`, else the
    /// provider's).
    pub requests_per_second: f64,
    /// Burst in all.
    pub burst: u32,
    /// Live nodes the pace is shared between, as this node's heartbeat last counted them.
    pub nodes: u32,
    /// This node's calls per second: `requests_per_second / nodes`.
    pub node_requests_per_second: f64,
    /// This node's burst: `burst / nodes` rounded down, at least 1.
    pub node_burst: u32,
}

/// Rate-limit headroom.
#[derive(Debug, Serialize, ToSchema)]
pub struct RateLimitHealth {
    /// Calls left in the window.
    pub remaining: Option<u64>,
    /// When the window resets (RFC 3339).
    pub reset_at: Option<String>,
    /// When the headers were read (RFC 3339).
    pub observed_at: String,
}

/// Worker nodes and leases.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkersHealth {
    /// Nodes with a recent heartbeat.
    pub nodes: Vec<NodeHealth>,
    /// Named leases held now (schedules, streams, token refreshes…).
    pub leases: Vec<LeaseHealth>,
}

/// One node.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeHealth {
    /// Node id.
    pub id: String,
    /// Started (RFC 3339).
    pub started_at: String,
    /// Last heartbeat (RFC 3339).
    pub last_seen: String,
}

/// One held lease.
#[derive(Debug, Serialize, ToSchema)]
pub struct LeaseHealth {
    /// Lease name.
    pub name: String,
    /// Holding node.
    pub owner: String,
    /// Lapses unless renewed (RFC 3339).
    pub expires_at: String,
}

/// Routes of this module.
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(health))
}

/// The state of every source, destination, connection, sync and worker.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, body = Health), (status = 401, body = Problem), (status = 500, body = Problem)),
    security(("bearer" = [])))]
pub async fn health(
    _auth: Auth<Read>,
    State(state): State<Arc<AppState>>,
) -> ApiResult<Json<Health>> {
    document(&state).await.map(Json)
}

/// The health document (shared with the dashboard's overview, which renders it).
pub async fn document(state: &AppState) -> Result<Health, Problem> {
    let now = now_millis();
    let runtime = state.registry.current();
    let mut source_ids: Vec<String> = runtime.sources.keys().cloned().collect();
    source_ids.sort_unstable();
    let overview = state
        .store
        .overview(&source_ids, now, NODE_TTL_MS)
        .await
        .map_err(internal)?;
    let time = |at: Option<UnixMillis>| at.map(rfc3339);

    let mut sources = Vec::with_capacity(source_ids.len());
    for id in &source_ids {
        let kind = runtime
            .sources
            .get(id)
            .map(|s| s.kind.to_string())
            .unwrap_or_default();
        let last_rejection_at = state
            .store
            .list_rejections(id, 1)
            .await
            .map_err(internal)?
            .first()
            .map(|r| r.received_at);
        let counts = state.activity.get(id);
        sources.push(SourceHealth {
            id: id.clone(),
            enabled: runtime.sources.get(id).is_none_or(|s| s.enabled),
            kind,
            last_event_at: time(
                overview
                    .last_event_at
                    .iter()
                    .find(|(s, _)| s == id)
                    .map(|(_, at)| *at),
            ),
            last_rejection_at: time(last_rejection_at),
            accepted: counts.accepted,
            rejected: counts.rejected,
            reject_rate: counts.reject_rate(),
        });
    }

    let stored_health = state.store.list_health().await.map_err(internal)?;
    let mut destination_ids: Vec<&String> = runtime.destinations.keys().collect();
    destination_ids.sort_unstable();
    let destinations: Vec<DestinationHealth> = destination_ids
        .into_iter()
        .map(|id| {
            // This node's book is the freshest; the store has what another node persisted.
            let record = state
                .health
                .get(id)
                .or_else(|| stored_health.iter().find(|h| &h.destination == id).cloned());
            let (pending, in_flight) = overview
                .backlog
                .iter()
                .find(|(d, _, _)| d == id)
                .map_or((0, 0), |(_, p, f)| (*p, *f));
            let target = runtime.destinations.get(id);
            let tenant = target.and_then(|t| t.tenant.clone());
            let enabled = target.is_none_or(|t| t.enabled);
            match record {
                Some(h) => DestinationHealth {
                    id: id.clone(),
                    tenant,
                    enabled,
                    circuit: h.state,
                    consecutive_failures: h.consecutive_failures,
                    failing_since: time(h.failing_since),
                    last_success_at: time(h.last_success_at),
                    last_failure_at: time(h.last_failure_at),
                    last_error: h.last_error,
                    pending,
                    in_flight,
                },
                None => DestinationHealth {
                    id: id.clone(),
                    tenant,
                    enabled,
                    circuit: "closed".into(),
                    consecutive_failures: 0,
                    failing_since: None,
                    last_success_at: None,
                    last_failure_at: None,
                    last_error: None,
                    pending,
                    in_flight,
                },
            }
        })
        .collect();

    let records = state.store.list_connections().await.map_err(internal)?;
    let connections: Vec<ConnectionHealth> = records
        .into_iter()
        .map(|record| connection_health(state, record, now))
        .collect();

    let workers = WorkersHealth {
        nodes: overview
            .nodes
            .into_iter()
            .map(|n| NodeHealth {
                id: n.id,
                started_at: rfc3339(n.started_at),
                last_seen: rfc3339(n.last_seen),
            })
            .collect(),
        leases: overview
            .leases
            .into_iter()
            .map(|l| LeaseHealth {
                name: l.name,
                owner: l.owner,
                expires_at: rfc3339(l.expires_at),
            })
            .collect(),
    };
    let mut syncs = Vec::new();
    for sync in &state.registry.current().config.syncs {
        let last = state
            .store
            .list_sync_runs(&sync.id, None, 1)
            .await
            .map_err(internal)?
            .into_iter()
            .next();
        syncs.push(match last {
            Some(run) => SyncHealth {
                id: sync.id.clone(),
                status: run.status,
                last_started_at: Some(rfc3339(run.started_at)),
                last_finished_at: run.finished_at.map(rfc3339),
                last_error: run.error,
            },
            None => SyncHealth {
                id: sync.id.clone(),
                status: "never_run".into(),
                last_started_at: None,
                last_finished_at: None,
                last_error: None,
            },
        });
    }
    // A paused destination is paused on purpose: not a sign of trouble.
    let degraded = destinations
        .iter()
        .filter(|d| d.enabled)
        .any(|d| d.circuit != "closed" || d.consecutive_failures >= FAILING_AFTER)
        || connections
            .iter()
            .any(|c| c.status != "active" || c.circuit != "closed" || c.token == "missing")
        || syncs.iter().any(|s| s.status == "failed")
        || workers.nodes.is_empty();
    Ok(Health {
        status: if degraded { "degraded" } else { "ok" },
        checked_at: rfc3339(now),
        sources,
        destinations,
        connections,
        syncs,
        workers,
    })
}

fn connection_health(
    state: &AppState,
    record: switchboard_store::ConnectionRecord,
    now: UnixMillis,
) -> ConnectionHealth {
    let oauth = record.auth_mode.starts_with("oauth2");
    let token = match (oauth, record.tokens.is_some(), record.expires_at) {
        (false, _, _) => "static",
        (true, false, _) => "missing",
        (true, true, None) => "valid",
        (true, true, Some(at)) if at <= now => "expired",
        (true, true, Some(at)) if at - now <= EXPIRING_MS => "expiring",
        (true, true, Some(_)) => "valid",
    };
    let settings = serde_json::from_str::<Settings>(&record.settings).unwrap_or_default();
    let pace = state
        .connections
        .provider(&record.provider)
        .and_then(|provider| pace_of(&settings, &provider))
        .map(|pace| {
            let nodes = state.connections.nodes();
            let share = pace.per_node(nodes);
            PaceHealth {
                requests_per_second: pace.requests_per_second,
                burst: pace.burst,
                nodes,
                node_requests_per_second: share.requests_per_second,
                node_burst: share.burst,
            }
        });
    let live = state.connections.live_state(&record.id);
    let (circuit, in_flight, rate_limit, paused_until) = match &live {
        None => ("closed", 0, None, None),
        Some(live) => (
            live.circuit.state().as_str(),
            live.bulkhead.in_flight(live.max_concurrent),
            live.pacer
                .last_seen()
                .map(|(rate, observed_at)| RateLimitHealth {
                    remaining: rate.remaining,
                    reset_at: rate.reset_at.map(rfc3339),
                    observed_at: rfc3339(observed_at),
                }),
            live.pacer.paused_until().map(rfc3339),
        ),
    };
    ConnectionHealth {
        id: record.id,
        provider: record.provider,
        status: record.status,
        token,
        token_expires_at: record.expires_at.map(rfc3339),
        last_error: record.last_error,
        circuit,
        in_flight,
        rate_limit,
        paused_until,
        pace,
    }
}
