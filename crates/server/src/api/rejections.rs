//! `GET /v1/sources/{id}/rejections`: the newest refused requests of a source (401s), with their
//! reason and headers (credentials redacted), for debugging a provider's configuration.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use switchboard_core::time::format_rfc3339;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Auth, Read};
use super::events::Header;
use super::extract::ApiQuery;
use super::{ApiResult, internal};
use crate::problem::{FieldError, Problem};
use crate::state::AppState;

/// A refused request.
#[derive(Debug, Serialize, ToSchema)]
pub struct RejectedRequest {
    /// When it arrived (RFC 3339).
    pub received_at: String,
    /// Reason code returned (`invalid_signature`, `timestamp_out_of_tolerance`, …).
    pub code: String,
    /// Detail returned.
    pub detail: String,
    /// Request headers, credentials redacted.
    pub headers: Vec<Header>,
    /// Body size in bytes (bodies are not kept).
    pub body_bytes: u64,
}

/// Options for the listing.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RejectionQuery {
    /// How many, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// The newest rejected requests of a source, newest first (at most 100 are kept per source).
#[utoipa::path(get, path = "/sources/{id}/rejections", tag = "sources",
    params(("id" = String, Path, description = "Source id"), RejectionQuery),
    responses((status = 200, body = Vec<RejectedRequest>), (status = 401, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn list(
    _auth: Auth<Read>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<RejectionQuery>,
) -> ApiResult<Json<Vec<RejectedRequest>>> {
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(Problem::validation(
            "limit must be between 1 and 100",
            vec![FieldError {
                field: "limit".into(),
                message: "must be between 1 and 100".into(),
            }],
        ));
    }
    if !state.registry.current().sources.contains_key(&id) {
        return Err(Problem::not_found(format!("no source `{id}`")));
    }
    let rows = state
        .store
        .list_rejections(&id, limit)
        .await
        .map_err(internal)?;
    Ok(Json(
        rows.into_iter()
            .map(|r| RejectedRequest {
                received_at: format_rfc3339(r.received_at),
                code: r.code,
                detail: r.detail,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(name, value)| Header { name, value })
                    .collect(),
                body_bytes: r.body_len,
            })
            .collect(),
    ))
}

/// Routes of this resource.
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(list))
}
