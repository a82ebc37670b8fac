//! The management API under `/v1`: one module per resource (request/response types, handlers,
//! `router()`), bearer-token auth with scopes, cursor pagination, `Idempotency-Key` on POST,
//! RFC 9457 problems with field errors, and an OpenAPI 3.1 document generated from the code
//! (`/v1/openapi.json`, committed as `docs/openapi.json`).

pub mod audit;
pub mod auth;
pub mod connections;
pub mod deliveries;
pub mod destinations;
mod document;
pub mod endpoints;
pub mod event_types;
pub mod events;
pub mod extract;
pub mod health;
pub mod idempotency;
pub mod pagination;
pub mod publish;
pub mod rejections;
pub mod replay;
pub mod resources;
pub mod routes_api;
pub mod sources;
pub mod stream;
pub mod syncs;
pub mod system;
pub mod tenants;
pub mod tokens;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;

use crate::problem::{FieldError, Problem};
use crate::state::AppState;

/// Largest request body the API accepts.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Handler result: a value or a problem.
pub type ApiResult<T> = Result<T, Problem>;

/// Logs a store failure and answers an opaque 500.
pub fn internal(error: impl std::fmt::Display) -> Problem {
    tracing::error!(%error, "management API request failed");
    Problem::internal()
}

/// Parses an RFC 3339 query value.
pub fn parse_time(field: &str, value: &str) -> Result<i64, Problem> {
    humantime::parse_rfc3339_weak(value)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .ok_or_else(|| {
            Problem::validation(
                format!("{field} must be an RFC 3339 time such as 2026-11-24T08:00:00Z"),
                vec![FieldError {
                    field: field.into(),
                    message: "expected RFC 3339".into(),
                }],
            )
        })
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard management API",
        description = "Manage sources, destinations and routes; tenants, their endpoints and the event-type catalog; publish messages to tenants; inspect events, deliveries and attempts; replay; manage tokens. Authenticate with `Authorization: Bearer <token>`. Errors are RFC 9457 problem+json.",
        license(name = "Apache-2.0")
    ),
    components(schemas(Problem, FieldError, stream::StreamEvent, stream::StreamAttempt)),
    tags(
        (name = "events", description = "Stored events"),
        (name = "deliveries", description = "Deliveries, attempts and replay"),
        (name = "sources", description = "Ingest endpoints and their verifiers"),
        (name = "destinations", description = "Delivery targets"),
        (name = "routes", description = "Source → destination"),
        (name = "tenants", description = "Your customers, and publishing messages to them"),
        (name = "endpoints", description = "A tenant's webhook endpoints: secrets, health, recovery, ordering holds"),
        (name = "event-types", description = "The event-type catalog, with optional JSON Schemas"),
        (name = "tokens", description = "API tokens (admin)"),
        (name = "connections", description = "Connections to third-party APIs: credentials, OAuth2, the provider catalog"),
        (name = "health", description = "The state of every source, destination, connection, sync and worker"),
        (name = "syncs", description = "Data sync jobs: records of a third-party API kept in step with a table, their runs"),
        (name = "system", description = "The state of the running instance, for `switchboard doctor`"),
        (name = "audit", description = "The audit trail of management actions (admin)")
    )
)]
struct ApiDoc;

fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi()).nest(
        "/v1",
        OpenApiRouter::new()
            .merge(events::router())
            .merge(deliveries::router())
            .merge(replay::router())
            .merge(sources::router())
            .merge(rejections::router())
            .merge(destinations::router())
            .merge(routes_api::router())
            .merge(tenants::router())
            .merge(publish::router())
            .merge(endpoints::router())
            .merge(event_types::router())
            .merge(tokens::router())
            .merge(connections::router())
            .merge(stream::router())
            .merge(health::router())
            .merge(syncs::router())
            .merge(audit::router())
            .merge(system::router()),
    )
}

/// The OpenAPI document (also served at `/v1/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut api) = routes().split_for_parts();
    let components = api.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
    document::apply(&mut api);
    api
}

/// The `/v1` router with its middleware.
pub fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let (router, _) = routes().split_for_parts();
    let views = router.clone().with_state(state.clone());
    let document = Arc::new(openapi());
    router
        .route(
            "/v1/openapi.json",
            axum::routing::get(move || {
                let document = document.clone();
                async move { Json((*document).clone()).into_response() }
            }),
        )
        // Inside the idempotency layer: a replayed response is not a second action.
        .layer(axum::middleware::from_fn_with_state(
            audit::AuditContext::new(state.clone(), views),
            audit::layer,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state,
            idempotency::layer,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}
