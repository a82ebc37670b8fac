//! Offline mode of the inspection commands: the answers the API would give, built from the
//! SQLite store directly (WAL lets this run beside a live server, and it works while the server
//! is down). Used when `--data-dir` (or `SWITCHBOARD_DATA_DIR`) is given and `--url` is not.
//! The JSON uses the API's own wire types, so both modes print the same shapes.

use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use serde_json::Value;
use switchboard_core::DeliveryStatus;
use switchboard_core::time::{format_rfc3339, now_millis};
use switchboard_server::api::deliveries::{Attempt, DeliveryDetail, delivery, with_correlation};
use switchboard_server::api::events::{
    EventDelivery, EventDetail, EventSummary, Header, encode_body,
};
use switchboard_server::api::pagination;
use switchboard_store::{
    AttemptRecord, DeliveryFilter, EventFilter, EventRecord, ReplaySelector, Store,
};

use crate::settings::{self, ConfigArgs};

/// Filters of an event listing.
#[derive(Debug, Default)]
pub struct EventQuery {
    /// Only this source.
    pub source: Option<String>,
    /// Only this type.
    pub event_type: Option<String>,
    /// Only events with a delivery in this status.
    pub status: Option<String>,
    /// Received at or after (unix ms).
    pub since: Option<i64>,
    /// Received before (unix ms).
    pub until: Option<i64>,
    /// Only events some route delivers (`true`) or none does (`false`).
    pub routed: Option<bool>,
}

/// Filters of a delivery listing.
#[derive(Debug, Default)]
pub struct DeliveryQuery {
    /// Only this status.
    pub status: Option<String>,
    /// Only this destination.
    pub destination: Option<String>,
    /// Only this event.
    pub event_id: Option<String>,
}

/// The store, opened from the configuration.
pub struct Offline {
    store: Arc<dyn Store>,
}

impl Offline {
    /// Opens the database of the configured data directory (it must exist).
    pub async fn open(args: &ConfigArgs) -> anyhow::Result<Self> {
        let config = settings::load(args)?;
        let db = config
            .server
            .data_dir
            .join(switchboard_store::sqlite::DB_FILE);
        if !db.exists() {
            bail!(
                "no database at {} (is --data-dir or --config right?)",
                db.display()
            );
        }
        let store = switchboard_server::open_store(&config)
            .await
            .with_context(|| format!("opening {}", db.display()))?;
        Ok(Self { store })
    }

    /// One page of events, newest first.
    pub async fn events_page(
        &self,
        query: &EventQuery,
        limit: u32,
        cursor: Option<String>,
    ) -> anyhow::Result<Value> {
        let filter = EventFilter {
            source: query.source.clone(),
            event_type: query.event_type.clone(),
            delivery_status: status(query.status.as_deref())?,
            routed: query.routed,
            since: query.since,
            until: query.until,
            before_seq: decode_cursor(cursor.as_deref())?,
            body_contains: None,
            limit: limit + 1,
        };
        let rows = self.store.list_events(&filter).await?;
        to_json(pagination::page(rows, limit, |e| e.seq, |e| summary(&e)))
    }

    /// One event with headers, body and deliveries.
    pub async fn event(&self, id: &str) -> anyhow::Result<Value> {
        let event = self
            .store
            .get_event(id)
            .await?
            .ok_or_else(|| anyhow!("Not found: no event `{id}`"))?;
        let deliveries = self
            .store
            .list_deliveries(&DeliveryFilter {
                event_id: Some(id.to_owned()),
                limit: 1000,
                ..Default::default()
            })
            .await?;
        let (body, body_encoding) = encode_body(&event.body);
        to_json(EventDetail {
            summary: summary(&event),
            headers: headers(event.headers),
            body,
            body_encoding,
            deliveries: deliveries
                .into_iter()
                .map(|d| EventDelivery {
                    id: d.id,
                    destination: d.destination,
                    status: d.status,
                    attempts: d.attempts,
                })
                .collect(),
        })
    }

    /// One page of deliveries, newest first.
    pub async fn deliveries_page(
        &self,
        query: &DeliveryQuery,
        limit: u32,
        cursor: Option<String>,
    ) -> anyhow::Result<Value> {
        let filter = DeliveryFilter {
            status: status(query.status.as_deref())?,
            destination: query.destination.clone(),
            event_id: query.event_id.clone(),
            before_seq: decode_cursor(cursor.as_deref())?,
            limit: limit + 1,
        };
        let rows = self.store.list_deliveries(&filter).await?;
        to_json(pagination::page(rows, limit, |d| d.seq, delivery))
    }

    /// One delivery with its attempts.
    pub async fn delivery(&self, id: &str) -> anyhow::Result<Value> {
        let record = self
            .store
            .get_delivery(id)
            .await?
            .ok_or_else(|| anyhow!("Not found: no delivery `{id}`"))?;
        let attempts = self.store.list_attempts(None, Some(id)).await?;
        let attempt_log = attempts.into_iter().map(attempt).collect();
        to_json(DeliveryDetail {
            delivery: delivery(record),
            attempt_log: with_correlation(self.store.as_ref(), attempt_log).await?,
        })
    }

    /// Attempts of an event's or a delivery's deliveries, oldest first.
    pub async fn attempts(
        &self,
        event_id: Option<&str>,
        delivery_id: Option<&str>,
    ) -> anyhow::Result<Value> {
        let rows = self.store.list_attempts(event_id, delivery_id).await?;
        let attempts = rows.into_iter().map(attempt).collect();
        to_json(with_correlation(self.store.as_ref(), attempts).await?)
    }

    /// Re-queues deliveries; returns how many.
    pub async fn replay(&self, selector: &ReplaySelector) -> anyhow::Result<u64> {
        Ok(self.store.replay(selector, now_millis()).await?)
    }
}

fn to_json(value: impl serde::Serialize) -> anyhow::Result<Value> {
    Ok(serde_json::to_value(value)?)
}

fn status(value: Option<&str>) -> anyhow::Result<Option<DeliveryStatus>> {
    value
        .map(|s| DeliveryStatus::parse(s).with_context(|| format!("unknown status `{s}`")))
        .transpose()
}

fn decode_cursor(cursor: Option<&str>) -> anyhow::Result<Option<i64>> {
    pagination::decode(cursor).map_err(|problem| anyhow!("{}", problem.detail))
}

fn headers(pairs: Vec<(String, String)>) -> Vec<Header> {
    pairs
        .into_iter()
        .map(|(name, value)| Header { name, value })
        .collect()
}

fn summary(e: &EventRecord) -> EventSummary {
    switchboard_server::api::events::summary(e)
}

fn attempt(a: AttemptRecord) -> Attempt {
    let (response_body, response_body_encoding) = encode_body(&a.response_body);
    Attempt {
        delivery_id: a.delivery_id,
        event_id: a.event_id,
        destination: a.destination,
        attempt: a.attempt,
        started_at: format_rfc3339(a.started_at),
        latency_ms: a.latency_ms,
        outcome: a.outcome,
        status_code: a.status_code,
        error: a.error,
        request_url: a.request_url,
        response_headers: headers(a.response_headers),
        response_body,
        response_body_encoding,
        request_id: None,
        trace_id: None,
    }
}
