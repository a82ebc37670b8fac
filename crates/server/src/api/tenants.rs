//! `/v1/tenants`: our users' customers. A tenant owns endpoints; events published for it fan out
//! to them. Deleting a tenant deletes its endpoints (their delivery history stays).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use switchboard_core::outbound::{TenantSpec, is_valid_tenant_id};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiResult;
use super::auth::{Auth, Read, Write};
use super::extract::ApiJson;
use super::resources::{apply, check_path_id, not_found, stamps};
use crate::problem::{FieldError, Problem};
use crate::runtime::{Change, Kind, Runtime};
use crate::state::AppState;

/// A tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct Tenant {
    /// Tenant id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Free-form labels.
    pub metadata: BTreeMap<String, String>,
    /// Number of endpoints.
    pub endpoints: u64,
    /// Created.
    pub created_at: Option<String>,
    /// Last change.
    pub updated_at: Option<String>,
}

/// A tenant to create or replace.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantInput {
    /// 1–64 letters, digits, `-`, `_` (e.g. your customer id).
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Free-form labels.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

fn spec(input: TenantInput) -> Result<TenantSpec, Problem> {
    if !is_valid_tenant_id(&input.id) {
        return Err(Problem::validation(
            format!(
                "tenant id `{}` must be 1-64 characters of letters, digits, `-` or `_`",
                input.id
            ),
            vec![FieldError {
                field: "id".into(),
                message: "1-64 letters, digits, `-` or `_`".into(),
            }],
        ));
    }
    Ok(TenantSpec {
        id: input.id,
        name: input.name,
        metadata: input.metadata,
    })
}

fn view(runtime: &Runtime, tenant: &TenantSpec) -> Tenant {
    let (created_at, updated_at) = stamps(runtime, Kind::Tenant, &tenant.id);
    Tenant {
        id: tenant.id.clone(),
        name: tenant.name.clone(),
        metadata: tenant.metadata.clone(),
        endpoints: runtime.tenant_endpoints(&tenant.id).count() as u64,
        created_at,
        updated_at,
    }
}

/// The tenant, or `404`.
pub fn find(runtime: &Runtime, id: &str) -> Result<Tenant, Problem> {
    runtime
        .tenants
        .get(id)
        .map(|t| view(runtime, t))
        .ok_or_else(|| not_found(Kind::Tenant, id))
}

/// Lists tenants.
#[utoipa::path(get, path = "/tenants", tag = "tenants",
    responses((status = 200, body = Vec<Tenant>), (status = 401, body = Problem)), security(("bearer" = [])))]
pub async fn list(_auth: Auth<Read>, State(state): State<Arc<AppState>>) -> Json<Vec<Tenant>> {
    let runtime = state.registry.current();
    Json(
        runtime
            .tenants
            .values()
            .map(|t| view(&runtime, t))
            .collect(),
    )
}

/// One tenant.
#[utoipa::path(get, path = "/tenants/{tenant}", tag = "tenants", params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, body = Tenant), (status = 401, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get(
    _auth: Auth<Read>,
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Tenant>> {
    find(&state.registry.current(), &tenant).map(Json)
}

/// Creates a tenant.
#[utoipa::path(post, path = "/tenants", tag = "tenants", request_body = TenantInput,
    responses((status = 201, body = Tenant), (status = 401, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn create(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    ApiJson(input): ApiJson<TenantInput>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    Ok((
        StatusCode::CREATED,
        Json(create_tenant(&state, input).await?),
    ))
}

/// Validates and stores a new tenant (shared with the dashboard).
pub async fn create_tenant(state: &AppState, input: TenantInput) -> ApiResult<Tenant> {
    let spec = spec(input)?;
    let id = spec.id.clone();
    apply(state, Change::PutTenant(spec, true)).await?;
    find(&state.registry.current(), &id)
}

/// Replaces a tenant's name and metadata.
#[utoipa::path(put, path = "/tenants/{tenant}", tag = "tenants", params(("tenant" = String, Path, description = "Tenant id")), request_body = TenantInput,
    responses((status = 200, body = Tenant), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn update(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    ApiJson(input): ApiJson<TenantInput>,
) -> ApiResult<Json<Tenant>> {
    update_tenant(&state, &tenant, input).await.map(Json)
}

/// Replaces a tenant's name and metadata (shared with the dashboard).
pub async fn update_tenant(
    state: &AppState,
    tenant: &str,
    input: TenantInput,
) -> ApiResult<Tenant> {
    check_path_id(tenant, &input.id)?;
    apply(state, Change::PutTenant(spec(input)?, false)).await?;
    find(&state.registry.current(), tenant)
}

/// Deletes a tenant and its endpoints (their pending deliveries are cancelled).
#[utoipa::path(delete, path = "/tenants/{tenant}", tag = "tenants", params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 204, description = "Deleted"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn delete(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
) -> ApiResult<StatusCode> {
    delete_tenant(&state, &tenant).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a tenant and its endpoints, cancelling their pending deliveries (shared with the
/// dashboard).
pub async fn delete_tenant(state: &AppState, tenant: &str) -> Result<(), Problem> {
    let endpoints: Vec<String> = state
        .registry
        .current()
        .tenant_endpoints(tenant)
        .map(|e| e.id.clone())
        .collect();
    apply(state, Change::Delete(Kind::Tenant, tenant.to_owned())).await?;
    let now = switchboard_core::time::now_millis();
    for endpoint in endpoints {
        state
            .store
            .cancel_pending(&endpoint, now)
            .await
            .map_err(super::internal)?;
    }
    Ok(())
}

/// Routes of this resource.
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, delete))
}
