//! Redis Streams: a consumer group (created with the stream if missing, shared by every node),
//! `XREADGROUP` into this node's consumer, `XACK` after the event is stored.
//!
//! A consumer that dies leaves its entries pending in the group: every node periodically claims
//! entries pending longer than `ack_wait` (`XAUTOCLAIM`) and stores them, and removes consumers
//! that have nothing pending and have been idle for a long time. A session first re-reads the
//! entries still pending for its own consumer name (from an earlier session).
//!
//! An entry's `body` field (`body_field`) is the body and its other fields become headers
//! (`content-type` the media type); an entry without that field becomes a JSON object of all
//! its fields. De-duplication key: `{stream key}:{entry id}`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use redis::Value;
use redis::aio::MultiplexedConnection;
use switchboard_core::config::{DEFAULT_QUEUE_CONSUMER, QueueSource, QueueStart};
use tokio::sync::mpsc;

use super::{Context, Headers, InFlight, process_name};
use crate::sources::Message;

/// The default field holding an entry's body.
const BODY_FIELD: &str = "body";
/// How long one `XREADGROUP` blocks waiting for new entries.
const BLOCK: Duration = Duration::from_secs(2);
/// Consumers idle at least this long with nothing pending are removed from the group.
const FORGET_IDLE: Duration = Duration::from_secs(600);

/// A stream entry: its id and fields (`None` when the entry was deleted while pending).
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    id: String,
    fields: Option<Vec<(String, Vec<u8>)>>,
}

/// This process's consumer name (the same for every session, so a new session finds what an
/// earlier one left pending).
fn consumer_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(process_name)
}

pub(super) async fn session(
    config: &QueueSource,
    context: &Context,
    consuming: &std::sync::atomic::AtomicBool,
) -> Result<(), String> {
    let key = config.stream.clone().unwrap_or_default();
    let group = config
        .group
        .clone()
        .unwrap_or_else(|| DEFAULT_QUEUE_CONSUMER.to_owned());
    let consumer = config
        .consumer
        .clone()
        .unwrap_or_else(|| consumer_name().to_owned());
    let client = redis::Client::open(config.url.as_str()).map_err(|e| format!("redis url: {e}"))?;
    let connect = |response: Duration| {
        let client = client.clone();
        async move {
            let settings = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(10)))
                .set_response_timeout(Some(response));
            client
                .get_multiplexed_async_connection_with_config(&settings)
                .await
                .map_err(|e| format!("could not connect to Redis: {e}"))
        }
    };
    // Blocking reads get their own connection, so acknowledgements never wait behind them.
    let reads = connect(BLOCK + Duration::from_secs(10)).await?;
    let mut acks = connect(Duration::from_secs(10)).await?;
    let start = match config.start {
        QueueStart::Earliest => "0",
        QueueStart::Latest => "$",
    };
    let created = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&key)
        .arg(&group)
        .arg(start)
        .arg("MKSTREAM")
        .query_async::<()>(&mut acks)
        .await;
    match created {
        Ok(()) => tracing::info!(source = context.emitter.source(), stream = %key, group = %group,
            "created the Redis consumer group"),
        Err(e) if e.code() == Some("BUSYGROUP") => {}
        Err(e) => {
            return Err(format!(
                "could not create consumer group `{group}` on `{key}`: {e}"
            ));
        }
    }
    tracing::info!(source = context.emitter.source(), stream = %key, group = %group,
        consumer = %consumer, "consuming from Redis Streams");

    let (tx, mut rx) = mpsc::channel::<Entry>(config.concurrency);
    let reader = Reader {
        connection: reads,
        key: key.clone(),
        group: group.clone(),
        consumer,
        count: config.concurrency,
        ack_wait: config.ack_wait,
    };
    let mut reader = AbortOnDrop(tokio::spawn(reader.run(tx)));

    let body_field = config.body_field.as_deref().unwrap_or(BODY_FIELD);
    consuming.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut in_flight = InFlight::new(config.concurrency);
    loop {
        tokio::select! {
            _ = context.stop.cancelled() => {
                in_flight.drain().await;
                return Ok(());
            }
            done = in_flight.next() => done?,
            entry = rx.recv(), if in_flight.has_room() => {
                let Some(entry) = entry else {
                    // The reader ended: report its error.
                    in_flight.drain().await;
                    return match (&mut reader.0).await {
                        Ok(result) => result.and(Err("the reader stopped".into())),
                        Err(e) => Err(format!("the reader failed: {e}")),
                    };
                };
                let id = entry.id.clone();
                let mut acks = acks.clone();
                let (ack_key, ack_group) = (key.clone(), group.clone());
                let ack = move |_: super::Emitted| async move {
                    redis::cmd("XACK")
                        .arg(&ack_key)
                        .arg(&ack_group)
                        .arg(&id)
                        .query_async::<i64>(&mut acks)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                };
                match event(config, &key, body_field, entry) {
                    Some(event) => in_flight.store_then_ack(&context.emitter, event, ack),
                    // Deleted while pending: nothing to store, only the acknowledgement.
                    None => ack(super::Emitted::Stored(String::new())).await?,
                }
            }
        }
    }
}

/// Aborts the task when the session ends.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Reader {
    connection: MultiplexedConnection,
    key: String,
    group: String,
    consumer: String,
    count: usize,
    ack_wait: Duration,
}

impl Reader {
    /// Feeds entries to `tx`: first this consumer's own pending ones, then new ones, claiming
    /// stale entries of other consumers every half `ack_wait`. Ends when `tx` is closed (the
    /// session ended) or on a Redis error.
    async fn run(mut self, tx: mpsc::Sender<Entry>) -> Result<(), String> {
        let claim_every =
            (self.ack_wait / 2).clamp(Duration::from_secs(1), Duration::from_secs(30));
        let mut next_claim = Instant::now();
        let mut own_pending = Some("0".to_owned());
        loop {
            if Instant::now() >= next_claim {
                for entry in self.claim().await? {
                    if tx.send(entry).await.is_err() {
                        return Ok(());
                    }
                }
                self.forget_dead_consumers().await;
                next_claim = Instant::now() + claim_every;
            }
            let block = next_claim
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(10), BLOCK);
            let mut command = redis::cmd("XREADGROUP");
            command
                .arg("GROUP")
                .arg(&self.group)
                .arg(&self.consumer)
                .arg("COUNT")
                .arg(self.count);
            if own_pending.is_none() {
                command.arg("BLOCK").arg(block.as_millis() as u64);
            }
            command
                .arg("STREAMS")
                .arg(&self.key)
                .arg(own_pending.as_deref().unwrap_or(">"));
            let reply = command
                .query_async::<Value>(&mut self.connection)
                .await
                .map_err(|e| format!("XREADGROUP on `{}`: {e}", self.key))?;
            let entries = read_reply(reply)?;
            if let Some(cursor) = own_pending.as_mut() {
                match entries.last() {
                    Some(last) => *cursor = last.id.clone(),
                    None => own_pending = None,
                }
            }
            for entry in entries {
                if tx.send(entry).await.is_err() {
                    return Ok(());
                }
            }
        }
    }

    /// Claims entries other consumers have left pending for `ack_wait` (a bounded number per
    /// round).
    async fn claim(&mut self) -> Result<Vec<Entry>, String> {
        let mut claimed = Vec::new();
        let mut cursor = "0-0".to_owned();
        for _ in 0..10 {
            let reply = redis::cmd("XAUTOCLAIM")
                .arg(&self.key)
                .arg(&self.group)
                .arg(&self.consumer)
                .arg(self.ack_wait.as_millis() as u64)
                .arg(&cursor)
                .arg("COUNT")
                .arg(self.count)
                .query_async::<Value>(&mut self.connection)
                .await
                .map_err(|e| format!("XAUTOCLAIM on `{}`: {e}", self.key))?;
            let (next, entries) = autoclaim_reply(reply)?;
            if !entries.is_empty() {
                tracing::info!(stream = %self.key, group = %self.group, claimed = entries.len(),
                    "claimed entries left pending by another consumer");
            }
            claimed.extend(entries);
            if next == "0-0" || claimed.len() >= self.count {
                break;
            }
            cursor = next;
        }
        Ok(claimed)
    }

    /// Removes consumers of the group with nothing pending that have been idle for
    /// [`FORGET_IDLE`] (dead nodes' names; a live consumer that is removed is recreated by its
    /// next read). Best effort.
    async fn forget_dead_consumers(&mut self) {
        let Ok(reply) = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&self.key)
            .arg(&self.group)
            .query_async::<Value>(&mut self.connection)
            .await
        else {
            return;
        };
        for (name, pending, idle) in consumers_reply(reply) {
            if name != self.consumer && pending == 0 && idle >= FORGET_IDLE.as_millis() as i64 {
                let _ = redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(&self.key)
                    .arg(&self.group)
                    .arg(&name)
                    .query_async::<i64>(&mut self.connection)
                    .await;
            }
        }
    }
}

/// The event for an entry (`None` for a deleted entry).
fn event(config: &QueueSource, key: &str, body_field: &str, entry: Entry) -> Option<Message> {
    let fields = entry.fields?;
    let mut headers = Headers::new();
    let mut body = None;
    for (name, value) in &fields {
        if body.is_none() && name == body_field {
            body = Some(value.clone());
        } else {
            headers.push(name, String::from_utf8_lossy(value).into_owned());
        }
    }
    let mut content_type = headers.get("content-type").map(str::to_owned);
    let body = match body {
        Some(body) => body,
        None => {
            content_type = Some("application/json".into());
            let object: serde_json::Map<String, serde_json::Value> = fields
                .iter()
                .map(|(name, value)| {
                    (
                        name.clone(),
                        serde_json::Value::from(String::from_utf8_lossy(value).into_owned()),
                    )
                })
                .collect();
            serde_json::Value::Object(object).to_string().into_bytes()
        }
    };
    headers.push("redis-stream", key);
    headers.push("redis-id", entry.id.as_str());
    let event_type = headers.event_type(config, None);
    Some(Message {
        event_type,
        dedup_key: Some(format!("{key}:{}", entry.id)),
        headers: headers.into_vec(),
        content_type,
        body,
    })
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

fn bytes(value: Value) -> Vec<u8> {
    match value {
        Value::BulkString(bytes) => bytes,
        Value::SimpleString(s) => s.into_bytes(),
        Value::VerbatimString { text, .. } => text.into_bytes(),
        Value::Int(n) => n.to_string().into_bytes(),
        Value::Double(n) => n.to_string().into_bytes(),
        Value::Boolean(b) => b.to_string().into_bytes(),
        _ => Vec::new(),
    }
}

/// A list of `[id, [field, value, …] | nil]` entries.
fn entries(value: Value) -> Result<Vec<Entry>, String> {
    let items = match value {
        Value::Array(items) | Value::Set(items) => items,
        Value::Nil => return Ok(Vec::new()),
        other => return Err(format!("unexpected stream entries from Redis: {other:?}")),
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Array(mut parts) = item else {
            continue;
        };
        if parts.is_empty() {
            continue;
        }
        let raw_fields = if parts.len() >= 2 {
            parts.swap_remove(1)
        } else {
            Value::Nil
        };
        let Some(id) = text(&parts[0]) else {
            continue;
        };
        let fields = match raw_fields {
            Value::Array(flat) => {
                let mut fields = Vec::with_capacity(flat.len() / 2);
                let mut flat = flat.into_iter();
                while let (Some(name), Some(value)) = (flat.next(), flat.next()) {
                    fields.push((text(&name).unwrap_or_default(), bytes(value)));
                }
                Some(fields)
            }
            Value::Map(pairs) => Some(
                pairs
                    .into_iter()
                    .map(|(name, value)| (text(&name).unwrap_or_default(), bytes(value)))
                    .collect(),
            ),
            _ => None,
        };
        out.push(Entry { id, fields });
    }
    Ok(out)
}

/// `XREADGROUP`'s answer: nil (timed out), or the entries of our one stream (RESP2 arrays of
/// `[key, entries]`, or a RESP3 map).
fn read_reply(value: Value) -> Result<Vec<Entry>, String> {
    match value {
        Value::Nil => Ok(Vec::new()),
        Value::Array(streams) => {
            let mut out = Vec::new();
            for stream in streams {
                if let Value::Array(mut parts) = stream
                    && parts.len() == 2
                {
                    out.extend(entries(parts.swap_remove(1))?);
                }
            }
            Ok(out)
        }
        Value::Map(streams) => {
            let mut out = Vec::new();
            for (_, list) in streams {
                out.extend(entries(list)?);
            }
            Ok(out)
        }
        other => Err(format!(
            "unexpected XREADGROUP answer from Redis: {other:?}"
        )),
    }
}

/// `XAUTOCLAIM`'s answer: `[next cursor, entries, deleted ids]`.
fn autoclaim_reply(value: Value) -> Result<(String, Vec<Entry>), String> {
    let Value::Array(mut parts) = value else {
        return Err(format!(
            "unexpected XAUTOCLAIM answer from Redis: {value:?}"
        ));
    };
    if parts.len() < 2 {
        return Err("unexpected XAUTOCLAIM answer from Redis".into());
    }
    let claimed = parts.swap_remove(1);
    let next = text(&parts[0]).unwrap_or_else(|| "0-0".into());
    Ok((next, entries(claimed)?))
}

/// `XINFO CONSUMERS`: `(name, pending, idle ms)` of each consumer.
fn consumers_reply(value: Value) -> Vec<(String, i64, i64)> {
    let Value::Array(consumers) = value else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for consumer in consumers {
        let pairs: Vec<(Value, Value)> = match consumer {
            Value::Array(flat) => {
                let mut pairs = Vec::new();
                let mut flat = flat.into_iter();
                while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
                    pairs.push((k, v));
                }
                pairs
            }
            Value::Map(pairs) => pairs,
            _ => continue,
        };
        let (mut name, mut pending, mut idle) = (None, 0, 0);
        for (k, v) in pairs {
            match (text(&k).as_deref(), &v) {
                (Some("name"), _) => name = text(&v),
                (Some("pending"), Value::Int(n)) => pending = *n,
                (Some("idle"), Value::Int(n)) => idle = *n,
                _ => {}
            }
        }
        if let Some(name) = name {
            out.push((name, pending, idle));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn replies_are_parsed_with_deleted_entries() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("in"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![bulk("body"), bulk("{}"), bulk("type"), bulk("t")]),
                ]),
                Value::Array(vec![bulk("2-0"), Value::Nil]),
            ]),
        ])]);
        let entries = read_reply(reply).expect("parses");
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].id, "1-0");
        assert_eq!(
            entries[0].fields.as_deref(),
            Some(
                &[
                    ("body".to_owned(), b"{}".to_vec()),
                    ("type".to_owned(), b"t".to_vec())
                ][..]
            )
        );
        assert_eq!(entries[1].fields, None);
        assert!(read_reply(Value::Nil).expect("parses").is_empty());
        let (next, claimed) = autoclaim_reply(Value::Array(vec![
            bulk("0-0"),
            Value::Array(vec![]),
            Value::Array(vec![]),
        ]))
        .expect("parses");
        assert_eq!(next, "0-0");
        assert!(claimed.is_empty());
    }

    #[test]
    fn entries_become_events() {
        let config: QueueSource = serde_json::from_value(serde_json::json!({
            "broker": "redis", "url": "redis://h", "stream": "in", "type_header": "type",
        }))
        .expect("valid");
        let entry = Entry {
            id: "5-1".into(),
            fields: Some(vec![
                ("body".into(), br#"{"a":1}"#.to_vec()),
                ("type".into(), b"order.created".to_vec()),
                ("content-type".into(), b"application/json".to_vec()),
            ]),
        };
        let event = event(&config, "in", "body", entry).expect("an event");
        assert_eq!(event.body, br#"{"a":1}"#);
        assert_eq!(event.event_type.as_deref(), Some("order.created"));
        assert_eq!(event.dedup_key.as_deref(), Some("in:5-1"));
        assert_eq!(event.content_type.as_deref(), Some("application/json"));
        let fields_only = Entry {
            id: "6-0".into(),
            fields: Some(vec![("id".into(), b"42".to_vec())]),
        };
        let event = super::event(&config, "in", "body", fields_only).expect("an event");
        assert_eq!(event.body, br#"{"id":"42"}"#);
        assert!(
            super::event(
                &config,
                "in",
                "body",
                Entry {
                    id: "7-0".into(),
                    fields: None
                }
            )
            .is_none()
        );
    }
}
