//! The audit trail: every management request that changes something (`POST`, `PUT`, `PATCH`,
//! `DELETE` under `/v1`) is recorded by one middleware, [`layer`], so a new handler is audited
//! without doing anything. Who is the token id the [`super::auth::Auth`] extractor found; what
//! is derived from the path (resource kind, id, action); before and after are the API's own
//! views of the resource (already redacted by the resource modules), redacted once more with
//! [`redact_settings`] so that a value such as a freshly created token never reaches the log.
//! `GET /v1/audit` (admin) lists the entries.

use std::sync::{Arc, OnceLock};

use axum::Json;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, Response as HttpResponse};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchboard_core::time::{format_rfc3339, now_millis};
use switchboard_store::{AuditFilter, AuditRecord};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Admin, Auth};
use super::extract::ApiQuery;
use super::pagination::{self, Page};
use super::resources::redact_settings;
use super::{ApiResult, internal, parse_time};
use crate::problem::{FieldError, Problem};
use crate::state::AppState;

/// The correlation header read from the request (and set on the response when absent).
pub const REQUEST_ID: &str = "x-request-id";

/// Largest body (request or response) the middleware buffers; the API's limits are lower.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// Collections whose items are resources; anything after an item that is not a nested
/// collection is an action on it (`rotate-secret`, `recover`, `refresh`, …).
const COLLECTIONS: &[&str] = &[
    "sources",
    "destinations",
    "routes",
    "tenants",
    "endpoints",
    "event-types",
    "tokens",
    "connections",
];

/// Requests that change nothing a management audit is about: publishing messages (the data
/// plane, recorded as events) and a route's dry run.
fn excluded(method: &Method, segments: &[&str]) -> bool {
    method == Method::POST && matches!(segments, ["tenants", _, "events"] | ["routes", _, "test"])
}

/// Filled by the `Auth` extractor (or the dashboard's `Session`) with the caller's token id,
/// read by [`layer`] afterwards.
#[derive(Clone, Default)]
pub struct AuditSlot(Arc<OnceLock<String>>);

impl AuditSlot {
    /// Records the authenticated caller (the first one wins).
    pub fn set_actor(&self, token_id: &str) {
        let _ = self.0.set(token_id.to_owned());
    }

    /// The caller, once an extractor recorded one.
    pub fn actor(&self) -> Option<String> {
        self.0.get().cloned()
    }
}

/// What a request does, derived from its method and path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// Singular resource kind (`destination`, `endpoint`, …).
    kind: String,
    /// Ids along the path, joined with `/` (`tenant/endpoint`); for a create, completed from
    /// the response.
    id: Option<String>,
    /// `create`, `update`, `delete`, `revoke` or the action's path words.
    action: String,
    /// The item's own path (for reading its view before the change).
    item_path: Option<String>,
    /// Whether the action is a create (its id comes from the response).
    creates: bool,
}

fn singular(collection: &str) -> String {
    collection
        .strip_suffix('s')
        .unwrap_or(collection)
        .to_owned()
}

/// Derives the target of a mutating request to `/v1/…` (`segments` follow `v1`).
fn target(method: &Method, segments: &[&str]) -> Target {
    let mut kind = None;
    let mut ids: Vec<&str> = Vec::new();
    let mut item_path = String::from("/v1");
    let mut at_item = false;
    let mut i = 0;
    while i < segments.len() && COLLECTIONS.contains(&segments[i]) {
        kind = Some(segments[i]);
        item_path.push('/');
        item_path.push_str(segments[i]);
        at_item = false;
        if let Some(id) = segments.get(i + 1) {
            ids.push(id);
            item_path.push('/');
            item_path.push_str(id);
            at_item = true;
        }
        i += 2;
    }
    let rest = segments.get(i..).unwrap_or_default();
    let Some(kind) = kind else {
        // Not a resource: `/v1/replay` and whatever comes next.
        return Target {
            kind: if segments.first() == Some(&"replay") {
                "delivery".into()
            } else {
                segments.first().copied().unwrap_or("api").to_owned()
            },
            id: None,
            action: if segments.is_empty() {
                method.as_str().to_ascii_lowercase()
            } else {
                segments.join("-")
            },
            item_path: None,
            creates: false,
        };
    };
    let id = (!ids.is_empty()).then(|| ids.join("/"));
    let (action, creates) = if !rest.is_empty() {
        (rest.join("-"), false)
    } else if !at_item {
        ("create".to_owned(), method == Method::POST)
    } else {
        let verb = match *method {
            Method::PUT | Method::PATCH => "update",
            Method::DELETE if kind == "tokens" => "revoke",
            Method::DELETE => "delete",
            _ => "action",
        };
        (verb.to_owned(), false)
    };
    Target {
        kind: singular(kind),
        id,
        action,
        item_path: at_item.then_some(item_path),
        creates,
    }
}

/// A JSON body with secrets redacted, or `None` when it is empty or not JSON.
fn redacted_json(bytes: &[u8]) -> Option<Value> {
    if bytes.is_empty() {
        return None;
    }
    let mut value: Value = serde_json::from_slice(bytes).ok()?;
    redact_settings(&mut value);
    Some(value)
}

/// What the middleware needs: the store, and the API's routes (without this middleware) to
/// read a resource's view before it changes.
#[derive(Clone)]
pub struct AuditContext {
    state: Arc<AppState>,
    views: axum::Router,
}

impl AuditContext {
    /// `views` serves the `/v1` routes.
    pub fn new(state: Arc<AppState>, views: axum::Router) -> Self {
        Self { state, views }
    }
}

/// The item's current view, read through the API itself with the caller's credentials (none
/// when the GET fails, e.g. tokens have no item route).
async fn current_view(
    views: &axum::Router,
    parts: &axum::http::request::Parts,
    path: &str,
) -> Option<Value> {
    use tower::ServiceExt as _;
    let mut request = Request::builder().method(Method::GET).uri(path);
    for name in [axum::http::header::AUTHORIZATION] {
        if let Some(value) = parts.headers.get(&name) {
            request = request.header(name, value);
        }
    }
    let request = request.body(Body::empty()).ok()?;
    let response = views.clone().oneshot(request).await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let bytes = to_bytes(response.into_body(), MAX_BODY).await.ok()?;
    redacted_json(&bytes)
}

/// The middleware: runs the request, and when it succeeded, records what it did.
pub async fn layer(State(context): State<AuditContext>, request: Request, next: Next) -> Response {
    let state = context.state;
    let method = request.method().clone();
    if !matches!(
        method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        return next.run(request).await;
    }
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path
        .strip_prefix("/v1/")
        .unwrap_or("")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    if !path.starts_with("/v1/") || excluded(&method, &segments) {
        return next.run(request).await;
    }
    let target = target(&method, &segments);
    let (mut parts, body) = request.into_parts();
    let before = match &target.item_path {
        Some(item) => current_view(&context.views, &parts, item).await,
        None => None,
    };
    // Actions other than create/update/delete keep their (redacted) request: what was replayed,
    // resent or recovered is in it.
    let plain_crud =
        target.creates || ["update", "delete", "revoke"].contains(&target.action.as_str());
    let (body, request_json) = if plain_crud {
        (body, None)
    } else {
        match to_bytes(body, MAX_BODY).await {
            Ok(bytes) => {
                let json = redacted_json(&bytes);
                (Body::from(bytes), json)
            }
            Err(_) => {
                return Problem::new(
                    axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "Payload too large",
                    "the request body is too large",
                )
                .into_response();
            }
        }
    };
    let slot = AuditSlot::default();
    parts.extensions.insert(slot.clone());
    let request_id = parts
        .headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let response = next.run(Request::from_parts(parts, body)).await;
    if !(response.status().is_success() || response.status().is_redirection()) {
        return response;
    }
    let (mut response_parts, response_body) = response.into_parts();
    let bytes = match to_bytes(response_body, MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(error) => {
            return internal(format!("reading a response to audit: {error}")).into_response();
        }
    };
    let request_id = request_id
        .or_else(|| {
            response_parts
                .headers
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| {
            let id = uuid::Uuid::now_v7().to_string();
            if let Ok(value) = HeaderValue::from_str(&id) {
                response_parts.headers.insert(REQUEST_ID, value);
            }
            id
        });
    let response_json = redacted_json(&bytes);
    let resource_id = match (&target.id, target.creates, &response_json) {
        (prefix, true, Some(json)) => json
            .get("id")
            .or_else(|| json.get("name"))
            .and_then(Value::as_str)
            .map(|id| match prefix {
                Some(prefix) => format!("{prefix}/{id}"),
                None => id.to_owned(),
            })
            .or_else(|| prefix.clone()),
        (id, _, _) => id.clone(),
    };
    let after = if plain_crud {
        response_json
    } else {
        Some(serde_json::json!({ "request": request_json, "response": response_json }))
    };
    let record = AuditRecord {
        seq: 0,
        id: format!("aud_{}", uuid::Uuid::now_v7().simple()),
        at: now_millis(),
        actor: slot.0.get().cloned().unwrap_or_else(|| "anonymous".into()),
        action: target.action,
        resource_kind: target.kind,
        resource_id,
        method: method.as_str().to_owned(),
        path,
        status: response_parts.status.as_u16(),
        request_id: Some(request_id),
        before: before.map(|v| v.to_string()),
        after: after.map(|v| v.to_string()),
    };
    // Recorded before answering, so that a client which saw the answer can find the entry.
    if let Err(error) = state.store.record_audit(&record).await {
        metrics::counter!("switchboard_audit_failures_total").increment(1);
        tracing::error!(%error, action = %record.action, kind = %record.resource_kind,
            "could not record an audit entry");
    }
    HttpResponse::from_parts(response_parts, Body::from(bytes))
}

/// One recorded management action.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    /// `aud_…` id.
    pub id: String,
    /// When (RFC 3339).
    pub at: String,
    /// Token id of the caller (`bootstrap` for the configured admin token).
    pub actor: String,
    /// `create`, `update`, `delete`, `revoke`, `replay`, `rotate-secret`, `refresh`, …
    pub action: String,
    /// `source`, `destination`, `route`, `tenant`, `endpoint`, `event-type`, `token`,
    /// `connection` or `delivery`.
    pub resource_kind: String,
    /// The resource's id (`tenant/endpoint` for endpoints), when the action has one.
    pub resource_id: Option<String>,
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Response status.
    pub status: u16,
    /// The request's `X-Request-Id` (generated and returned when the request had none).
    pub request_id: Option<String>,
    /// The resource as the API showed it before the action (secrets redacted).
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    /// The resource after the action (secrets redacted); for other actions
    /// `{"request": …, "response": …}`.
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
}

/// Filters for `GET /v1/audit`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this caller's actions (a token id, or `bootstrap`).
    pub actor: Option<String>,
    /// Only this resource: a kind (`destination`) or a kind and id (`destination:orders`).
    pub resource: Option<String>,
    /// Only this action (`create`, `update`, `delete`, …).
    pub action: Option<String>,
    /// At or after (RFC 3339).
    pub since: Option<String>,
    /// Page size, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

fn entry(record: AuditRecord) -> AuditEntry {
    let parse = |text: Option<String>| text.and_then(|t| serde_json::from_str(&t).ok());
    AuditEntry {
        id: record.id,
        at: format_rfc3339(record.at),
        actor: record.actor,
        action: record.action,
        resource_kind: record.resource_kind,
        resource_id: record.resource_id,
        method: record.method,
        path: record.path,
        status: record.status,
        request_id: record.request_id,
        before: parse(record.before),
        after: parse(record.after),
    }
}

/// Lists the audit trail, newest first.
#[utoipa::path(get, path = "/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Page<AuditEntry>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn list(
    _auth: Auth<Admin>,
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Page<AuditEntry>>> {
    let limit = pagination::limit(q.limit)?;
    let (resource_kind, resource_id) = match q.resource.as_deref() {
        None => (None, None),
        Some(resource) => match resource.split_once(':') {
            Some((kind, id)) if !kind.is_empty() && !id.is_empty() => {
                (Some(kind.to_owned()), Some(id.to_owned()))
            }
            None if !resource.is_empty() => (Some(resource.to_owned()), None),
            _ => {
                return Err(Problem::validation(
                    "resource must be a kind (`destination`) or a kind and id (`destination:orders`)",
                    vec![FieldError {
                        field: "resource".into(),
                        message: "expected `kind` or `kind:id`".into(),
                    }],
                ));
            }
        },
    };
    let filter = AuditFilter {
        actor: q.actor,
        resource_kind,
        resource_id,
        action: q.action,
        since: q
            .since
            .as_deref()
            .map(|s| parse_time("since", s))
            .transpose()?,
        before_seq: pagination::decode(q.cursor.as_deref())?,
        limit: limit + 1,
    };
    let rows = state.store.list_audit(&filter).await.map_err(internal)?;
    Ok(Json(pagination::page(rows, limit, |r| r.seq, entry)))
}

/// Routes of this resource.
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(list))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(method: Method, path: &str) -> (String, Option<String>, String, Option<String>) {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let target = target(&method, &segments);
        (target.kind, target.id, target.action, target.item_path)
    }

    #[test]
    fn paths_name_their_resource_and_action() {
        let s = |v: &str| v.to_owned();
        assert_eq!(
            t(Method::POST, "destinations"),
            (s("destination"), None, s("create"), None)
        );
        assert_eq!(
            t(Method::PUT, "destinations/d1"),
            (
                s("destination"),
                Some(s("d1")),
                s("update"),
                Some(s("/v1/destinations/d1"))
            )
        );
        assert_eq!(
            t(Method::DELETE, "tokens/tok_1").2,
            "revoke",
            "deleting a token revokes it"
        );
        assert_eq!(
            t(Method::POST, "tenants/acme/endpoints"),
            (s("endpoint"), Some(s("acme")), s("create"), None)
        );
        assert_eq!(
            t(Method::PATCH, "tenants/acme/endpoints/e1"),
            (
                s("endpoint"),
                Some(s("acme/e1")),
                s("update"),
                Some(s("/v1/tenants/acme/endpoints/e1"))
            )
        );
        assert_eq!(
            t(Method::POST, "tenants/acme/endpoints/e1/rotate-secret").2,
            "rotate-secret"
        );
        assert_eq!(
            t(Method::POST, "tenants/acme/endpoints/e1/holds/release").2,
            "holds-release"
        );
        assert_eq!(
            t(Method::POST, "replay"),
            (s("delivery"), None, s("replay"), None)
        );
        assert_eq!(t(Method::POST, "event-types").0, "event-type");
    }

    #[test]
    fn publishing_and_dry_runs_are_not_audited() {
        assert!(excluded(&Method::POST, &["tenants", "acme", "events"]));
        assert!(excluded(&Method::POST, &["routes", "r", "test"]));
        assert!(!excluded(&Method::POST, &["routes"]));
    }

    #[test]
    fn bodies_are_redacted() {
        let value =
            redacted_json(br#"{"id":"t","token":"sb_secret","secret":"whsec_x"}"#).expect("json");
        assert_eq!(value["token"], "********");
        assert_eq!(value["secret"], "********");
        assert_eq!(value["id"], "t");
        assert!(redacted_json(b"").is_none());
    }
}
