//! `POST /v1/replay`: re-queue one delivery, an event's deliveries, or a destination's failures
//! since a time. Answers how many were queued.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use switchboard_core::time::now_millis;
use switchboard_store::ReplaySelector;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Auth, Write};
use super::extract::ApiJson;
use super::{ApiResult, internal, parse_time};
use crate::problem::{FieldError, Problem};
use crate::state::AppState;

/// What to replay: exactly one of `delivery_id`, `event_id`, or `destination` (with
/// `status: "failed"` and optionally `since`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// One delivery.
    pub delivery_id: Option<String>,
    /// Every delivery of this event.
    pub event_id: Option<String>,
    /// A destination's failed deliveries.
    pub destination: Option<String>,
    /// With `destination`: must be `failed` (the default).
    pub status: Option<String>,
    /// With `destination`: failed at or after this time (RFC 3339); default: all.
    pub since: Option<String>,
}

/// How many deliveries were queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayResponse {
    /// Deliveries re-queued.
    pub queued: u64,
}

fn field(name: &str, message: &str) -> Problem {
    Problem::validation(
        message.to_owned(),
        vec![FieldError {
            field: name.into(),
            message: message.into(),
        }],
    )
}

/// Re-queues deliveries for a new run of their retry policy (same `webhook-id`).
#[utoipa::path(post, path = "/replay", tag = "deliveries", request_body = ReplayRequest,
    responses((status = 200, body = ReplayResponse), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn replay(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<ReplayRequest>,
) -> ApiResult<Json<ReplayResponse>> {
    let selector = selector(request)?;
    let queued = queue(&state, &selector, "API").await?;
    Ok(Json(ReplayResponse { queued }))
}

/// Checks a replay request and turns it into the store's selector (shared with the dashboard).
pub fn selector(request: ReplayRequest) -> Result<ReplaySelector, Problem> {
    let given = [
        request.delivery_id.is_some(),
        request.event_id.is_some(),
        request.destination.is_some(),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    if given != 1 {
        return Err(field(
            "delivery_id",
            "give exactly one of delivery_id, event_id or destination",
        ));
    }
    if request.destination.is_none() && (request.status.is_some() || request.since.is_some()) {
        return Err(field("status", "status and since go with destination"));
    }
    Ok(
        match (request.delivery_id, request.event_id, request.destination) {
            (Some(id), _, _) => ReplaySelector::Delivery(id),
            (_, Some(id), _) => ReplaySelector::Event(id),
            (_, _, Some(destination)) => {
                if request.status.as_deref().is_some_and(|s| s != "failed") {
                    return Err(field(
                        "status",
                        "only failed deliveries can be replayed in bulk",
                    ));
                }
                ReplaySelector::FailedForDestination {
                    destination,
                    since: request
                        .since
                        .as_deref()
                        .map(|s| parse_time("since", s))
                        .transpose()?
                        .unwrap_or(0),
                }
            }
            _ => return Err(field("delivery_id", "nothing to replay")),
        },
    )
}

/// Re-queues what `selector` names and wakes the delivery worker; returns how many were queued.
/// `via` names the caller in the log line (`API`, `dashboard`).
pub async fn queue(
    state: &AppState,
    selector: &ReplaySelector,
    via: &'static str,
) -> Result<u64, Problem> {
    let queued = state
        .store
        .replay(selector, now_millis())
        .await
        .map_err(internal)?;
    if queued > 0 {
        state.due.all_unknown();
        state.wake.notify_one();
    }
    tracing::info!(?selector, queued, via, "replay requested");
    Ok(queued)
}

/// Routes of this resource.
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(replay))
}
