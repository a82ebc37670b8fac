//! Operational events: what Switchboard itself has to say (`endpoint.disabled`,
//! `endpoint.circuit_opened`, `delivery.exhausted`, `delivery.recovered`), published as events of
//! the built-in `switchboard` source so users route them like any other event (to Slack, to
//! their own webhook). Deliveries of these events never produce further operational events.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_core::ids::new_event_id;
use switchboard_core::outbound::OPERATIONS_SOURCE;
use switchboard_core::time::{UnixMillis, now_millis};
use switchboard_store::NewEvent;

use crate::ingest::commit::Committer;
use crate::runtime::{Change, Registry};
use crate::transform::rfc3339;

/// Publishes operational events and carries out automatic endpoint disabling.
#[derive(Clone)]
pub struct Operations {
    committer: Committer,
    registry: Arc<Registry>,
    disabling: Arc<Mutex<HashSet<String>>>,
}

impl Operations {
    /// Publishes through `committer`, routing with `registry`'s routes of the `switchboard`
    /// source.
    pub fn new(committer: Committer, registry: Arc<Registry>) -> Self {
        Self {
            committer,
            registry,
            disabling: Arc::default(),
        }
    }

    /// Builds the event: a Standard Webhooks style body `{"type", "timestamp", "data"}`.
    pub fn event(&self, event_type: &str, tenant: Option<&str>, data: Value) -> NewEvent {
        let now = now_millis();
        let runtime = self.registry.current();
        let body = json!({
            "type": event_type,
            "timestamp": rfc3339(now),
            "data": data,
        });
        NewEvent {
            id: new_event_id(),
            source: OPERATIONS_SOURCE.into(),
            tenant: tenant.map(str::to_owned),
            event_type: Some(event_type.into()),
            dedup_key: None,
            headers: Vec::new(),
            content_type: Some("application/json".into()),
            body: body.to_string().into_bytes(),
            received_at: now,
            forward_headers: Vec::new(),
            deliveries: runtime.new_deliveries(OPERATIONS_SOURCE),
        }
    }

    /// Stores an operational event in the background (it is stored, routed or not).
    pub fn emit(&self, event_type: &str, tenant: Option<&str>, data: Value) {
        let event = self.event(event_type, tenant, data);
        metrics::counter!("switchboard_operational_events_total", "type" => event_type.to_owned())
            .increment(1);
        let committer = self.committer.clone();
        let event_type = event_type.to_owned();
        tokio::spawn(async move {
            if let Err(error) = committer.commit(event).await {
                tracing::error!(%error, %event_type, "could not store an operational event");
            }
        });
    }

    /// Disables tenant endpoint `id` after failing since `since` for longer than `after`, and
    /// publishes `endpoint.disabled`. Repeated calls while it is being disabled do nothing.
    pub fn disable_endpoint(&self, id: &str, since: UnixMillis, after: Duration, error: &str) {
        {
            let mut disabling = self
                .disabling
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if !disabling.insert(id.to_owned()) {
                return;
            }
        }
        let this = self.clone();
        let id = id.to_owned();
        let error = error.to_owned();
        tokio::spawn(async move {
            let current = this.registry.current();
            let endpoint = current.endpoints.get(&id).filter(|e| e.enabled).cloned();
            if let Some(mut endpoint) = endpoint {
                let reason = format!(
                    "disabled automatically: failing since {} with no successful delivery for {}; last error: {}",
                    rfc3339(since),
                    humantime::format_duration(after),
                    error
                );
                endpoint.enabled = false;
                endpoint.disabled_reason = Some(reason.clone());
                let tenant = endpoint.tenant.clone();
                match this
                    .registry
                    .apply(Change::PutEndpoint(endpoint, false))
                    .await
                {
                    Ok(()) => {
                        tracing::warn!(endpoint = %id, %tenant, %reason, "endpoint disabled");
                        metrics::counter!("switchboard_endpoints_disabled_total").increment(1);
                        this.emit(
                            "endpoint.disabled",
                            Some(&tenant),
                            json!({
                                "endpoint_id": id,
                                "tenant": tenant,
                                "failing_since": rfc3339(since),
                                "reason": reason,
                            }),
                        );
                    }
                    Err(error) => {
                        tracing::error!(endpoint = %id, %error, "could not disable a failing endpoint")
                    }
                }
            }
            this.disabling
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .remove(&id);
        });
    }
}
