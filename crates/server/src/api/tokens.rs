//! `/v1/tokens`: API tokens (admin scope). The token value is shown once, at creation.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use switchboard_core::time::{format_rfc3339, now_millis};
use switchboard_store::TokenRecord;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Admin, Auth, Scope, generate_token, hash_token};
use super::extract::ApiJson;
use super::{ApiResult, internal};
use crate::problem::{FieldError, Problem};
use crate::state::AppState;

/// A token (without its secret value).
#[derive(Debug, Serialize, ToSchema)]
pub struct Token {
    /// Token id (`tok_…`).
    pub id: String,
    /// Name.
    pub name: String,
    /// The token's first characters.
    pub prefix: String,
    /// Scopes.
    pub scopes: Vec<Scope>,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Revoked (RFC 3339), if it was.
    pub revoked_at: Option<String>,
}

/// A new token; `token` is shown only in this response.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    /// The token's metadata.
    #[serde(flatten)]
    pub meta: Token,
    /// The secret value: send it as `Authorization: Bearer <token>`.
    pub token: String,
}

/// Request to create a token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// Name (1–100 characters).
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    pub name: String,
    /// Scopes: `read`, `write`, `admin`.
    #[schema(min_items = 1)]
    pub scopes: Vec<Scope>,
}

fn token(t: TokenRecord) -> Token {
    Token {
        id: t.id,
        name: t.name,
        prefix: t.prefix,
        scopes: t.scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
        created_at: format_rfc3339(t.created_at),
        revoked_at: t.revoked_at.map(format_rfc3339),
    }
}

/// Lists tokens.
#[utoipa::path(get, path = "/tokens", tag = "tokens",
    responses((status = 200, body = Vec<Token>), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn list(
    _auth: Auth<Admin>,
    State(state): State<Arc<AppState>>,
) -> ApiResult<Json<Vec<Token>>> {
    let tokens = state.store.list_tokens().await.map_err(internal)?;
    Ok(Json(tokens.into_iter().map(token).collect()))
}

/// Creates a token.
#[utoipa::path(post, path = "/tokens", tag = "tokens", request_body = CreateToken,
    responses((status = 201, body = CreatedToken), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn create(
    _auth: Auth<Admin>,
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Problem::validation(
            "name must be 1 to 100 characters",
            vec![FieldError {
                field: "name".into(),
                message: "1 to 100 characters".into(),
            }],
        ));
    }
    if request.scopes.is_empty() {
        return Err(Problem::validation(
            "give at least one scope",
            vec![FieldError {
                field: "scopes".into(),
                message: "at least one of read, write, admin".into(),
            }],
        ));
    }
    let record = new_token_record(name, &request.scopes);
    state
        .store
        .create_token(&record.0)
        .await
        .map_err(internal)?;
    tracing::info!(token = %record.0.id, name, "token created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            meta: token(record.0),
            token: record.1,
        }),
    ))
}

/// A fresh token record and the token value.
pub fn new_token_record(name: &str, scopes: &[Scope]) -> (TokenRecord, String) {
    let (value, id) = generate_token();
    let mut scopes: Vec<String> = scopes.iter().map(|s| s.as_str().to_owned()).collect();
    scopes.sort();
    scopes.dedup();
    (
        TokenRecord {
            id,
            name: name.to_owned(),
            hash: hash_token(&value),
            prefix: value.chars().take(10).collect(),
            scopes,
            created_at: now_millis(),
            revoked_at: None,
        },
        value,
    )
}

/// Revokes a token.
#[utoipa::path(delete, path = "/tokens/{id}", tag = "tokens", params(("id" = String, Path, description = "Token id")),
    responses((status = 204, description = "Revoked"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn revoke(
    _auth: Auth<Admin>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if state
        .store
        .revoke_token(&id, now_millis())
        .await
        .map_err(internal)?
    {
        tracing::info!(token = %id, "token revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found(format!("no active token `{id}`")))
    }
}

/// Routes of this resource.
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(revoke))
}
