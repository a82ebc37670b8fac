//! The dashboard's changes in the audit trail. Dashboard forms call the same functions as the
//! `/v1` handlers but are not `/v1` requests, so the API's audit middleware does not see them;
//! this layer records every successful dashboard `POST` that changes something, with the
//! session's token as the actor and `"via": "dashboard"`. Form bodies are never recorded (they
//! may hold secrets); what changed is read from the resource through the API (`GET /v1/audit`
//! shows the entry, the resource shows its current state).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use switchboard_core::time::now_millis;
use switchboard_store::AuditRecord;

use crate::api::audit::AuditSlot;
use crate::state::AppState;

/// What a dashboard `POST` did: kind, id and action.
#[derive(Debug, PartialEq, Eq)]
struct Change {
    kind: &'static str,
    id: Option<String>,
    action: String,
}

/// The singular kind of a dashboard collection.
fn kind_of(collection: &str) -> Option<&'static str> {
    Some(match collection {
        "sources" => "source",
        "destinations" => "destination",
        "routes" => "route",
        "tenants" => "tenant",
        "deliveries" | "replay" => "delivery",
        "connections" => "connection",
        "syncs" => "sync",
        _ => return None,
    })
}

/// Reads the change from a `/ui/…` path; `None` for posts that change nothing (a route's dry
/// run, a connection's test call). Signing in and out are recorded as `session` actions.
fn change_of(path: &str) -> Option<Change> {
    let segments: Vec<&str> = path
        .strip_prefix("/ui/")?
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let decode = |s: &str| percent_decode(s);
    let change = match segments.as_slice() {
        ["sign-in"] => Change {
            kind: "session",
            id: None,
            action: "sign_in".into(),
        },
        ["sign-out"] => Change {
            kind: "session",
            id: None,
            action: "sign_out".into(),
        },
        ["replay"] => Change {
            kind: "delivery",
            id: None,
            action: "replay".into(),
        },
        [collection] => Change {
            kind: kind_of(collection)?,
            id: None,
            action: "create".into(),
        },
        ["tenants", tenant, "endpoints"] => Change {
            kind: "endpoint",
            id: Some(decode(tenant)),
            action: "create".into(),
        },
        ["tenants", tenant, "endpoints", id] => Change {
            kind: "endpoint",
            id: Some(format!("{}/{}", decode(tenant), decode(id))),
            action: "update".into(),
        },
        ["tenants", tenant, "endpoints", id, action] => Change {
            kind: "endpoint",
            id: Some(format!("{}/{}", decode(tenant), decode(id))),
            action: (*action).to_owned(),
        },
        [collection, id] => Change {
            kind: kind_of(collection)?,
            id: Some(decode(id)),
            action: "update".into(),
        },
        [collection, id, action] => Change {
            kind: kind_of(collection)?,
            id: Some(decode(id)),
            action: (*action).to_owned(),
        },
        _ => return None,
    };
    let no_change = matches!(
        (change.kind, change.action.as_str()),
        ("route", "dry-run") | ("connection", "test")
    );
    (!no_change).then_some(change)
}

fn percent_decode(text: &str) -> String {
    form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| text.to_owned())
}

/// The id a create redirects to (`Location: /ui/sources/{id}`), for the entry.
fn created_id(response: &Response) -> Option<String> {
    let location = response.headers().get(header::LOCATION)?.to_str().ok()?;
    let last = location.strip_prefix("/ui/")?.rsplit('/').next()?;
    (!last.is_empty() && !last.contains('?')).then(|| percent_decode(last))
}

/// The layer: runs the request and, when a change succeeded (`2xx`/`3xx`), records it.
pub async fn layer(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let path = request.uri().path().to_owned();
    let Some(mut change) = change_of(&path) else {
        return next.run(request).await;
    };
    let slot = AuditSlot::default();
    let mut request = request;
    request.extensions_mut().insert(slot.clone());
    let response = next.run(request).await;
    let status = response.status();
    let Some(actor) = slot.actor() else {
        // Not signed in: the handler refused before doing anything.
        return response;
    };
    if !(status.is_success() || status.is_redirection()) {
        return response;
    }
    if change.action == "create"
        && let Some(id) = created_id(&response)
    {
        change.id = Some(match change.id {
            Some(tenant) => format!("{tenant}/{id}"),
            None => id,
        });
    }
    let record = AuditRecord {
        seq: 0,
        id: format!("aud_{}", uuid::Uuid::now_v7().simple()),
        at: now_millis(),
        actor,
        action: change.action,
        resource_kind: change.kind.to_owned(),
        resource_id: change.id,
        method: "POST".into(),
        path,
        status: status.as_u16(),
        request_id: None,
        before: None,
        after: Some(serde_json::json!({ "via": "dashboard" }).to_string()),
    };
    if let Err(error) = state.store.record_audit(&record).await {
        metrics::counter!("switchboard_audit_failures_total").increment(1);
        tracing::error!(%error, action = %record.action, "could not record an audit entry");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashboard_paths_name_their_change() {
        let change = |path: &str| change_of(path).map(|c| (c.kind, c.id, c.action));
        assert_eq!(
            change("/ui/sources"),
            Some(("source", None, "create".into()))
        );
        assert_eq!(
            change("/ui/sources/gh/disable"),
            Some(("source", Some("gh".into()), "disable".into()))
        );
        assert_eq!(
            change("/ui/destinations/a%20b"),
            Some(("destination", Some("a b".into()), "update".into()))
        );
        assert_eq!(
            change("/ui/tenants/acme/endpoints/ep_1/rotate-secret"),
            Some(("endpoint", Some("acme/ep_1".into()), "rotate-secret".into()))
        );
        assert_eq!(
            change("/ui/tenants/acme/endpoints"),
            Some(("endpoint", Some("acme".into()), "create".into()))
        );
        assert_eq!(
            change("/ui/replay"),
            Some(("delivery", None, "replay".into()))
        );
        assert_eq!(change("/ui/routes/r/dry-run"), None);
        assert_eq!(change("/ui/connections/c/test"), None);
        assert_eq!(
            change("/ui/sign-in"),
            Some(("session", None, "sign_in".into()))
        );
        assert_eq!(
            change("/ui/sign-out"),
            Some(("session", None, "sign_out".into()))
        );
    }
}
