//! `/v1/connections`, `/v1/providers` and `/v1/connect/{provider}`: connections to third-party
//! APIs. Secrets (API keys, passwords, client secrets, tokens) go in and never come out.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use switchboard_core::providers::{AuthMode, ProviderSpec};
use switchboard_core::time::format_rfc3339;
use switchboard_store::StoreError;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiResult;
use super::auth::{Auth, Read, Write};
use super::extract::{ApiJson, ApiQuery};
use crate::connections::routes::connection_problem;
use crate::connections::{ConnectionError, Credentials, NewConnection, Settings, Snapshot, Status};
use crate::problem::Problem;
use crate::state::AppState;

/// A provider of the catalog.
#[derive(Debug, Serialize, ToSchema)]
pub struct Provider {
    /// Id used by connections.
    pub id: String,
    /// Display name.
    pub name: String,
    /// API reference.
    pub docs: Option<String>,
    /// Base URL of API calls (may name parameters in braces).
    pub base_url: String,
    /// Supported auth modes; the first is the default.
    #[schema(value_type = Vec<String>)]
    pub auth_modes: Vec<AuthMode>,
    /// Parameters a connection must give.
    pub required_params: Vec<String>,
    /// Default OAuth2 scopes.
    pub default_scopes: Vec<String>,
    /// Default pace (calls per second), if the provider file sets one.
    pub requests_per_second: Option<f64>,
}

fn provider(spec: &ProviderSpec) -> Provider {
    Provider {
        id: spec.id.clone(),
        name: spec.name.clone(),
        docs: spec.docs.clone(),
        base_url: spec.base_url.clone(),
        auth_modes: spec.auth_modes.clone(),
        required_params: spec.required_params().into_iter().collect(),
        default_scopes: spec
            .oauth2
            .as_ref()
            .map(|o| o.default_scopes.clone())
            .unwrap_or_default(),
        requests_per_second: spec.rate_limit.requests_per_second,
    }
}

/// A connection as the API shows it: never its secrets.
#[derive(Debug, Serialize, ToSchema)]
pub struct Connection {
    /// Id.
    pub id: String,
    /// Provider id.
    pub provider: String,
    /// `oauth2`, `oauth2_client_credentials`, `api_key`, `basic` or `bearer`.
    pub auth_mode: String,
    /// `pending` (authorize it through `/v1/connect/{provider}`), `active` or `needs_reauth`.
    pub status: Status,
    /// Granted (or requested) scopes.
    pub scopes: Vec<String>,
    /// When the access token expires (RFC 3339), for OAuth2 connections that have one.
    pub expires_at: Option<String>,
    /// URL parameters.
    pub params: BTreeMap<String, String>,
    /// Per-connection overrides.
    pub settings: Settings,
    /// Which credentials are stored (names only, e.g. `client_secret`), never their values.
    pub credentials: Vec<String>,
    /// Whether OAuth2 tokens are stored (and whether a refresh token is among them).
    pub has_refresh_token: bool,
    /// Why the last refresh failed, if it did.
    pub last_error: Option<String>,
    /// Warnings about the provider's API, e.g. its `Deprecation` / `Sunset` headers on the
    /// latest call through this node.
    pub warnings: Vec<String>,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

/// The API view of a connection, with this node's `warnings` about it.
pub fn view(s: &Snapshot, warnings: Vec<String>) -> Connection {
    let c = &s.credentials;
    let credentials = [
        ("api_key", c.api_key.is_some()),
        ("username", c.username.is_some()),
        ("password", c.password.is_some()),
        ("token", c.token.is_some()),
        ("client_id", c.client_id.is_some()),
        ("client_secret", c.client_secret.is_some()),
    ]
    .into_iter()
    .filter(|(_, set)| *set)
    .map(|(name, _)| name.to_owned())
    .collect();
    Connection {
        id: s.id.clone(),
        provider: s.provider.id.clone(),
        auth_mode: s.auth_mode.as_str().to_owned(),
        status: s.status,
        scopes: s.scopes.clone(),
        expires_at: s.expires_at.map(format_rfc3339),
        params: s.params.clone(),
        settings: s.settings.clone(),
        credentials,
        has_refresh_token: s.tokens.as_ref().is_some_and(|t| t.refresh_token.is_some()),
        last_error: s.last_error.clone(),
        warnings,
        created_at: format_rfc3339(s.created_at),
        updated_at: format_rfc3339(s.updated_at),
    }
}

/// Request to create a connection.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnection {
    /// Id (1–64 of `a-z A-Z 0-9 - _ .`).
    pub id: String,
    /// Provider id (see `GET /v1/providers`).
    pub provider: String,
    /// Auth mode; by default the one the credentials imply, or the provider's first.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub auth_mode: Option<AuthMode>,
    /// URL parameters (`subdomain`, `shop`…).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Secrets: `api_key`; `username` and `password`; `token`; or `client_id` and
    /// `client_secret` (OAuth2).
    #[serde(default)]
    pub credentials: Credentials,
    /// OAuth2 scopes (default: the provider's).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Overrides of pacing, concurrency and timeout.
    #[serde(default)]
    pub settings: Settings,
}

fn field(name: &str, message: impl Into<String>) -> Problem {
    Problem::field(name, message)
}

fn validate(request: CreateConnection, spec: &ProviderSpec) -> Result<NewConnection, Problem> {
    if !switchboard_core::ids::is_valid_resource_id(&request.id) {
        return Err(field(
            "id",
            "id must be 1-64 characters of letters, digits, `-`, `_` and `.`",
        ));
    }
    let c = &request.credentials;
    let implied = if request.auth_mode.is_some() {
        None
    } else if c.api_key.is_some() {
        Some(AuthMode::ApiKey)
    } else if c.username.is_some() || c.password.is_some() {
        Some(AuthMode::Basic)
    } else if c.token.is_some() {
        Some(AuthMode::Bearer)
    } else if c.client_id.is_some() || c.client_secret.is_some() {
        let oauth: Vec<AuthMode> = spec
            .auth_modes
            .iter()
            .copied()
            .filter(|m| matches!(m, AuthMode::Oauth2 | AuthMode::Oauth2ClientCredentials))
            .collect();
        match oauth.as_slice() {
            [one] => Some(*one),
            [] => None,
            _ => {
                return Err(field(
                    "auth_mode",
                    format!(
                        "provider `{}` takes client credentials for `oauth2` and \
                         `oauth2_client_credentials`: say which in auth_mode",
                        spec.id
                    ),
                ));
            }
        }
    } else {
        None
    };
    let mode = request
        .auth_mode
        .or(implied)
        .or_else(|| spec.auth_modes.first().copied())
        .ok_or_else(|| field("auth_mode", "give an auth mode"))?;
    if !spec.auth_modes.contains(&mode) {
        let modes: Vec<&str> = spec.auth_modes.iter().map(|m| m.as_str()).collect();
        return Err(field(
            "auth_mode",
            format!(
                "provider `{}` does not support `{}` (it supports {})",
                spec.id,
                mode.as_str(),
                modes.join(", ")
            ),
        ));
    }
    let nonempty = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    let (needed, allowed): (&[(&str, bool)], &[&str]) = match mode {
        AuthMode::ApiKey => (&[("api_key", nonempty(&c.api_key))], &["api_key"]),
        AuthMode::Basic => (
            &[("username", nonempty(&c.username))],
            &["username", "password"],
        ),
        AuthMode::Bearer => (&[("token", nonempty(&c.token))], &["token"]),
        AuthMode::Oauth2 | AuthMode::Oauth2ClientCredentials => (
            &[
                ("client_id", nonempty(&c.client_id)),
                ("client_secret", nonempty(&c.client_secret)),
            ],
            &["client_id", "client_secret"],
        ),
    };
    for (name, present) in needed {
        if !present {
            return Err(field(
                &format!("credentials.{name}"),
                format!("auth mode `{}` needs credentials.{name}", mode.as_str()),
            ));
        }
    }
    let given = [
        ("api_key", c.api_key.is_some()),
        ("username", c.username.is_some()),
        ("password", c.password.is_some()),
        ("token", c.token.is_some()),
        ("client_id", c.client_id.is_some()),
        ("client_secret", c.client_secret.is_some()),
    ];
    if let Some((name, _)) = given
        .iter()
        .find(|(name, set)| *set && !allowed.contains(name))
    {
        return Err(field(
            &format!("credentials.{name}"),
            format!(
                "auth mode `{}` does not use credentials.{name}",
                mode.as_str()
            ),
        ));
    }
    let missing: Vec<String> = spec
        .required_params()
        .into_iter()
        .filter(|p| !request.params.contains_key(p))
        .collect();
    if !missing.is_empty() {
        return Err(field(
            "params",
            format!(
                "provider `{}` needs the parameter(s) {}",
                spec.id,
                missing.join(", ")
            ),
        ));
    }
    if let Some((name, _)) = request
        .params
        .iter()
        .find(|(_, v)| v.contains(['/', '?', '#', '@', '{', '}']) || v.is_empty())
    {
        return Err(field(
            &format!("params.{name}"),
            "parameters are URL parts: non-empty, without `/ ? # @ { }`",
        ));
    }
    if let Some(rate) = request.settings.requests_per_second
        && !(rate.is_finite() && rate > 0.0)
    {
        return Err(field(
            "settings.requests_per_second",
            "must be a positive number",
        ));
    }
    if request.settings.max_concurrent == Some(0) || request.settings.timeout_ms == Some(0) {
        return Err(field(
            "settings",
            "max_concurrent and timeout_ms must be > 0",
        ));
    }
    if request
        .scopes
        .iter()
        .any(|s| s.is_empty() || s.contains(char::is_whitespace))
    {
        return Err(field("scopes", "scopes are non-empty and without spaces"));
    }
    Ok(NewConnection {
        status: if mode == AuthMode::Oauth2 {
            Status::Pending
        } else {
            Status::Active
        },
        id: request.id,
        provider: request.provider,
        auth_mode: mode,
        params: request.params,
        settings: request.settings,
        scopes: request.scopes,
        credentials: request.credentials,
    })
}

/// Lists the provider catalog (built-in files and `connections.providers_dir`).
#[utoipa::path(get, path = "/providers", tag = "connections",
    responses((status = 200, body = Vec<Provider>), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_providers(
    _auth: Auth<Read>,
    State(state): State<Arc<AppState>>,
) -> ApiResult<Json<Vec<Provider>>> {
    Ok(Json(
        state
            .connections
            .catalog()
            .values()
            .map(|spec| provider(spec))
            .collect(),
    ))
}

/// The problem a connection failure answers (shared with the dashboard).
pub fn store_problem(error: ConnectionError) -> Problem {
    connection_problem(&error)
}

/// Lists connections.
#[utoipa::path(get, path = "/connections", tag = "connections",
    responses((status = 200, body = Vec<Connection>), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn list(
    _auth: Auth<Read>,
    State(state): State<Arc<AppState>>,
) -> ApiResult<Json<Vec<Connection>>> {
    let records = state
        .connections
        .store()
        .list_connections()
        .await
        .map_err(super::internal)?;
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        match state.connections.snapshot_of(record) {
            Ok(snapshot) => out.push(view(&snapshot, state.connections.warnings(&snapshot.id))),
            Err(error) => tracing::error!(%error, "a stored connection is unreadable"),
        }
    }
    Ok(Json(out))
}

/// Creates a connection. `oauth2` connections start `pending`: authorize them through
/// `GET /v1/connect/{provider}?connection_id=…`.
#[utoipa::path(post, path = "/connections", tag = "connections", request_body = CreateConnection,
    responses((status = 201, body = Connection), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 409, body = Problem, description = "A connection with this id exists (`already_exists`)."),
        (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn create(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<CreateConnection>,
) -> ApiResult<(StatusCode, Json<Connection>)> {
    let spec = state
        .connections
        .provider(&request.provider)
        .ok_or_else(|| {
            field(
                "provider",
                format!(
                    "unknown provider `{}` (see GET /v1/providers)",
                    request.provider
                ),
            )
        })?;
    let new = validate(request, &spec)?;
    match state.connections.create(new).await {
        Ok(snapshot) => {
            tracing::info!(connection = %snapshot.id, provider = %snapshot.provider.id, "connection created");
            Ok((
                StatusCode::CREATED,
                Json(view(&snapshot, state.connections.warnings(&snapshot.id))),
            ))
        }
        Err(ConnectionError::Store(StoreError::Conflict)) => Err(Problem::conflict(
            "already_exists",
            "a connection with this id exists",
        )),
        Err(error) => Err(store_problem(error)),
    }
}

/// One connection.
#[utoipa::path(get, path = "/connections/{id}", tag = "connections", params(("id" = String, Path, description = "Connection id")),
    responses((status = 200, body = Connection), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get(
    _auth: Auth<Read>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Connection>> {
    let (snapshot, _) = state.connections.load(&id).await.map_err(store_problem)?;
    Ok(Json(view(
        &snapshot,
        state.connections.warnings(&snapshot.id),
    )))
}

/// Deletes a connection; its token is revoked at the provider (when the provider file has a
/// `revoke_url`) in the background, best effort.
#[utoipa::path(delete, path = "/connections/{id}", tag = "connections", params(("id" = String, Path, description = "Connection id")),
    responses((status = 204, description = "Deleted"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn delete(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if state.connections.delete(&id).await.map_err(store_problem)? {
        tracing::info!(connection = %id, "connection deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found(format!("no connection `{id}`")))
    }
}

/// Refreshes an OAuth2 connection's access token now (with its refresh token, or a new client
/// credentials grant). A refusal marks the connection `needs_reauth`.
#[utoipa::path(post, path = "/connections/{id}/refresh", tag = "connections", params(("id" = String, Path, description = "Connection id")),
    responses((status = 200, body = Connection), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "Not an OAuth2 connection, or not authorized yet (`connection_not_ready`)."),
        (status = 422, body = Problem, description = "The connection or its provider file is unusable (`connection_invalid`)."),
        (status = 502, body = Problem, description = "The provider refused (`needs_reauth`) or failed (`token_request_failed`) the token request."),
        (status = 503, body = Problem, description = "Another node is refreshing this connection.")),
    security(("bearer" = [])))]
pub async fn refresh(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Connection>> {
    let (snapshot, _) = state.connections.load(&id).await.map_err(store_problem)?;
    if !snapshot.is_oauth() {
        return Err(Problem::conflict(
            "connection_not_ready",
            format!(
                "connection `{id}` uses `{}`, which has no tokens to refresh",
                snapshot.auth_mode.as_str()
            ),
        ));
    }
    let fresh = state
        .connections
        .refresh(&id, Some(snapshot.version))
        .await
        .map_err(store_problem)?;
    Ok(Json(view(&fresh, state.connections.warnings(&fresh.id))))
}

/// `GET /v1/connect/{provider}` query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConnectQuery {
    /// The `oauth2` connection to authorize.
    pub connection_id: String,
}

/// Starts the OAuth2 authorization of a connection: redirects (`302`) to the provider's
/// authorize URL with a PKCE challenge and a single-use `state` valid for 10 minutes. Open the
/// `Location` in a browser; the provider sends the user back to `/oauth/callback`.
#[utoipa::path(get, path = "/connect/{provider}", tag = "connections",
    params(("provider" = String, Path, description = "Provider id"), ConnectQuery),
    responses((status = 302, description = "To the provider's authorize URL (`Location`).",
            headers(("location" = String, description = "The provider's authorize URL"))),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "The connection does not use `oauth2` (`connection_not_ready`)."),
        (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn connect(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path(provider): Path<String>,
    ApiQuery(query): ApiQuery<ConnectQuery>,
) -> ApiResult<Response> {
    let url = authorize_url(&state, &provider, &query.connection_id).await?;
    let mut response = StatusCode::FOUND.into_response();
    let location = HeaderValue::from_str(&url).map_err(|_| Problem::internal())?;
    response.headers_mut().insert(header::LOCATION, location);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// A new authorize URL (fresh `state` and PKCE challenge) for `connection_id` of `provider`.
async fn authorize_url(
    state: &AppState,
    provider: &str,
    connection_id: &str,
) -> Result<String, Problem> {
    let (snapshot, _) = state
        .connections
        .load(connection_id)
        .await
        .map_err(store_problem)?;
    if snapshot.provider.id != provider {
        return Err(field(
            "connection_id",
            format!(
                "connection `{}` is for provider `{}`, not `{provider}`",
                snapshot.id, snapshot.provider.id
            ),
        ));
    }
    state
        .connections
        .start_authorization(connection_id)
        .await
        .map_err(store_problem)
}

/// `POST /v1/connect/{provider}` request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartAuthorization {
    /// The `oauth2` connection to authorize.
    pub connection_id: String,
}

/// Where to send the user.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthorizeUrl {
    /// The provider's authorize URL (single-use `state`, valid for 10 minutes): open it in a
    /// browser; the provider sends the user back to `/oauth/callback`.
    pub authorize_url: String,
}

/// Starts the OAuth2 authorization of a connection for API clients: the same as
/// `GET /v1/connect/{provider}`, answered with the URL as JSON instead of a redirect.
#[utoipa::path(post, path = "/connect/{provider}", tag = "connections",
    params(("provider" = String, Path, description = "Provider id")),
    request_body = StartAuthorization,
    responses((status = 200, body = AuthorizeUrl),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "The connection does not use `oauth2` (`connection_not_ready`)."),
        (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn start_connect(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path(provider): Path<String>,
    ApiJson(request): ApiJson<StartAuthorization>,
) -> ApiResult<Json<AuthorizeUrl>> {
    let authorize_url = authorize_url(&state, &provider, &request.connection_id).await?;
    Ok(Json(AuthorizeUrl { authorize_url }))
}

/// `PATCH /v1/connections/{id}`: what to change (absent fields stay).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConnection {
    /// URL parameters (replace the current ones).
    #[serde(default)]
    pub params: Option<BTreeMap<String, String>>,
    /// Secrets to replace (only the ones given change; the auth mode stays).
    #[serde(default)]
    pub credentials: Option<Credentials>,
    /// OAuth2 scopes (replace; take effect at the next authorization).
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Overrides of pacing, concurrency and timeout (replace the current ones).
    #[serde(default)]
    pub settings: Option<Settings>,
}

fn merge_credentials(current: &Credentials, update: Credentials) -> Credentials {
    Credentials {
        api_key: update.api_key.or_else(|| current.api_key.clone()),
        username: update.username.or_else(|| current.username.clone()),
        password: update.password.or_else(|| current.password.clone()),
        token: update.token.or_else(|| current.token.clone()),
        client_id: update.client_id.or_else(|| current.client_id.clone()),
        client_secret: update
            .client_secret
            .or_else(|| current.client_secret.clone()),
    }
}

/// Changes a connection in place: parameters, credentials (merged), scopes, settings. Its
/// tokens and status stay; the answer is the redacted view.
#[utoipa::path(patch, path = "/connections/{id}", tag = "connections", params(("id" = String, Path, description = "Connection id")),
    request_body = UpdateConnection,
    responses((status = 200, body = Connection), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "The connection changed meanwhile (a token refresh); try again (`conflict`)."),
        (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn update(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<UpdateConnection>,
) -> ApiResult<Json<Connection>> {
    let (current, _) = state.connections.load(&id).await.map_err(store_problem)?;
    let merged = CreateConnection {
        id: current.id.clone(),
        provider: current.provider.id.clone(),
        auth_mode: Some(current.auth_mode),
        params: request.params.unwrap_or_else(|| current.params.clone()),
        credentials: match request.credentials {
            Some(update) => merge_credentials(&current.credentials, update),
            None => current.credentials.clone(),
        },
        scopes: request.scopes.unwrap_or_else(|| current.scopes.clone()),
        settings: request.settings.unwrap_or_else(|| current.settings.clone()),
    };
    let new = validate(merged, &current.provider)?;
    match state.connections.update(&current, new).await {
        Ok(snapshot) => {
            tracing::info!(connection = %snapshot.id, "connection updated");
            Ok(Json(view(
                &snapshot,
                state.connections.warnings(&snapshot.id),
            )))
        }
        Err(ConnectionError::Store(StoreError::Conflict)) => Err(Problem::conflict(
            "conflict",
            format!("connection `{id}` changed meanwhile (a token refresh): try again"),
        )),
        Err(error) => Err(store_problem(error)),
    }
}

/// Routes of this resource.
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_providers))
        .routes(routes!(list, create))
        .routes(routes!(get, update, delete))
        .routes(routes!(refresh))
        .routes(routes!(connect, start_connect))
}
