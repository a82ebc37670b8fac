//! `kind = "queue"` sources: consume NATS JetStream (a durable pull consumer), RabbitMQ (a
//! queue, manual acknowledgements, prefetch) or Redis Streams (a consumer group) and store each
//! message as an event before acknowledging it.
//!
//! A session connects, consumes until the connection fails or the task is stopped, and hands
//! up to `concurrency` messages at once to the [`Emitter`] (they share group commits with
//! webhook ingests). A message is acknowledged only once `emit` returned, so a crash leaves it
//! unacknowledged and the broker delivers it again; the broker's message id is the event's
//! de-duplication key where there is one, so that redelivery is stored once. After a failed
//! session the task waits and reconnects: 1 s after a session that was consuming, doubling up
//! to 30 s while connecting fails.

mod nats;
mod rabbitmq;
mod redis;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use switchboard_core::config::{QueueBroker, QueueSource, redact_url_password};

use super::{Context, Emitted, Emitter, Message};
use crate::delivery::connectors::queue::{scrub, url_password};
use crate::ingest::rejections::SENSITIVE_HEADERS;

/// First pause after a failed session; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// Longest pause between sessions.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A session that lasted this long resets the pause.
const HEALTHY_SESSION: Duration = Duration::from_secs(60);
/// How long a stopping session waits for the messages it is storing, so that it can still
/// acknowledge them (the supervisor allows 5 s in all).
const DRAIN: Duration = Duration::from_secs(3);

/// The task of a queue source: sessions until `context.stop` is cancelled.
pub fn task(config: QueueSource, context: Context) -> BoxFuture<'static, ()> {
    Box::pin(run(config, context))
}

async fn run(config: QueueSource, context: Context) {
    let source = context.emitter.source().to_owned();
    let url = redact_url_password(&config.url);
    let password = url_password(&config.url);
    let mut backoff = MIN_BACKOFF;
    loop {
        if context.stop.is_cancelled() {
            return;
        }
        let started = Instant::now();
        let consuming = AtomicBool::new(false);
        let session = async {
            match config.broker {
                QueueBroker::Nats => nats::session(&config, &context, &consuming).await,
                QueueBroker::Rabbitmq => rabbitmq::session(&config, &context, &consuming).await,
                QueueBroker::Redis => redis::session(&config, &context, &consuming).await,
            }
        };
        // A session notices `stop` while consuming and drains; one still connecting (to a
        // broker that does not answer) is dropped once the drain time is over.
        let abandon = async {
            context.stop.cancelled().await;
            tokio::time::sleep(DRAIN + Duration::from_millis(500)).await;
        };
        let result = tokio::select! {
            result = session => result,
            _ = abandon => return,
        };
        if context.stop.is_cancelled() {
            return;
        }
        // A session that got as far as consuming (the connection was lost, not refused), or
        // that lasted, starts the pauses over.
        if consuming.load(Ordering::Relaxed) || started.elapsed() >= HEALTHY_SESSION {
            backoff = MIN_BACKOFF;
        }
        let error = match result {
            Ok(()) => "the broker ended the session".to_owned(),
            Err(error) => scrub(error, password.as_deref()),
        };
        tracing::warn!(source = %source, broker = config.broker.name(), url = %url, %error,
            retry_in = ?backoff, "queue source disconnected; reconnecting");
        tokio::select! {
            _ = context.stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Messages being stored (and then acknowledged), at most `limit` at once.
pub(crate) struct InFlight {
    tasks: FuturesUnordered<BoxFuture<'static, Result<(), String>>>,
    limit: usize,
}

impl InFlight {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            tasks: FuturesUnordered::new(),
            limit: limit.max(1),
        }
    }

    /// Whether another message may start.
    pub(crate) fn has_room(&self) -> bool {
        self.tasks.len() < self.limit
    }

    /// Stores `message`, then runs `ack` with the outcome. An error storing (the store is
    /// down, the server is stopping) leaves the message unacknowledged and ends the session.
    pub(crate) fn store_then_ack<F, Fut>(&mut self, emitter: &Emitter, message: Message, ack: F)
    where
        F: FnOnce(Emitted) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let emitter = emitter.clone();
        self.tasks.push(Box::pin(async move {
            let emitted = emitter
                .emit(message)
                .await
                .map_err(|e| format!("could not store a message: {e}"))?;
            if let Emitted::Duplicate(id) = &emitted {
                tracing::debug!(source = emitter.source(), event = %id,
                    "queue message already stored (redelivery); acknowledging it again");
            }
            ack(emitted)
                .await
                .map_err(|e| format!("could not acknowledge a stored message: {e}"))
        }));
    }

    /// The next finished message; pending forever while none is in flight (for `select!`).
    pub(crate) async fn next(&mut self) -> Result<(), String> {
        match self.tasks.next().await {
            Some(result) => result,
            None => std::future::pending().await,
        }
    }

    /// Waits up to [`DRAIN`] for the messages in flight, so they are acknowledged.
    pub(crate) async fn drain(&mut self) {
        let _ =
            tokio::time::timeout(DRAIN, async { while self.tasks.next().await.is_some() {} }).await;
    }
}

/// Builds the event headers and reads the event type from them.
pub(crate) struct Headers {
    headers: Vec<(String, String)>,
}

impl Headers {
    pub(crate) fn new() -> Self {
        Self {
            headers: Vec::new(),
        }
    }

    /// Adds a header, its value redacted when it is a credential.
    pub(crate) fn push(&mut self, name: &str, value: impl Into<String>) {
        let name = name.to_ascii_lowercase();
        let value = if SENSITIVE_HEADERS.contains(&name.as_str()) {
            "[redacted]".to_owned()
        } else {
            value.into()
        };
        self.headers.push((name, value));
    }

    /// The value of the first header named `name` (any case).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The event type: the `type_header`'s value, else `fallback` when the source takes the
    /// subject (or routing key) as the type.
    pub(crate) fn event_type(
        &self,
        config: &QueueSource,
        fallback: Option<&str>,
    ) -> Option<String> {
        config
            .type_header
            .as_deref()
            .and_then(|name| self.get(name))
            .filter(|t| !t.is_empty())
            .or(fallback.filter(|t| !t.is_empty()))
            .map(str::to_owned)
    }

    pub(crate) fn into_vec(self) -> Vec<(String, String)> {
        self.headers
    }
}

/// A name unique to this process, for consumer tags and Redis consumer names.
pub(crate) fn process_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "switchboard".into());
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted_and_types_read() {
        let config: QueueSource = serde_json::from_value(serde_json::json!({
            "broker": "nats", "url": "nats://h", "stream": "S", "type_header": "X-Event-Type",
        }))
        .expect("valid");
        let mut headers = Headers::new();
        headers.push("Authorization", "Bearer secret");
        headers.push("x-event-type", "order.created");
        assert_eq!(headers.get("authorization"), Some("[redacted]"));
        assert_eq!(
            headers.event_type(&config, Some("orders.x")).as_deref(),
            Some("order.created")
        );
        let none = Headers::new();
        assert_eq!(
            none.event_type(&config, Some("orders.x")).as_deref(),
            Some("orders.x")
        );
        assert_eq!(none.event_type(&config, None), None);
    }
}
