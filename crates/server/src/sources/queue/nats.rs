//! NATS JetStream: a durable pull consumer on the stream (created, or updated, with the
//! configured filter, start and ack wait; shared by every node, so they compete for messages),
//! explicit acknowledgements after the event is stored.
//!
//! De-duplication key: `{stream}:{stream created, unix ns}:{stream sequence}` — the sequence
//! identifies the message in its stream; the creation time keeps a stream deleted and created
//! again (whose sequences restart at 1) from looking like the old one.

use futures::StreamExt;
use switchboard_core::config::{DEFAULT_QUEUE_CONSUMER, QueueSource, QueueStart};

use super::{Context, Headers, InFlight};
use crate::sources::Message;

pub(super) async fn session(
    config: &QueueSource,
    context: &Context,
    consuming: &std::sync::atomic::AtomicBool,
) -> Result<(), String> {
    let stream_name = config.stream.as_deref().unwrap_or_default();
    let durable = config
        .consumer
        .clone()
        .unwrap_or_else(|| DEFAULT_QUEUE_CONSUMER.to_owned());
    let client = async_nats::ConnectOptions::new()
        .name(format!("switchboard source {}", context.emitter.source()))
        .connection_timeout(std::time::Duration::from_secs(10))
        .connect(config.url.as_str())
        .await
        .map_err(|e| format!("could not connect to NATS: {e}"))?;
    let jetstream = async_nats::jetstream::new(client);
    let stream = jetstream
        .get_stream(stream_name)
        .await
        .map_err(|e| format!("JetStream stream `{stream_name}`: {e}"))?;
    let created = stream.cached_info().created.unix_timestamp_nanos();
    let wanted = async_nats::jetstream::consumer::pull::Config {
        durable_name: Some(durable.clone()),
        description: Some("Switchboard queue source".into()),
        filter_subject: config.subject.clone().unwrap_or_default(),
        ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
        ack_wait: config.ack_wait,
        deliver_policy: match config.start {
            QueueStart::Earliest => async_nats::jetstream::consumer::DeliverPolicy::All,
            QueueStart::Latest => async_nats::jetstream::consumer::DeliverPolicy::New,
        },
        ..Default::default()
    };
    let consumer: async_nats::jetstream::consumer::PullConsumer =
        match stream.create_consumer(wanted).await {
            Ok(consumer) => consumer,
            // An existing consumer whose settings cannot change (its start, on older
            // servers anything): use it as it is.
            Err(create) => {
                let existing = stream.get_consumer(&durable).await.map_err(|e| {
                    format!("consumer `{durable}` on stream `{stream_name}`: {create}; {e}")
                })?;
                tracing::warn!(source = context.emitter.source(), stream = stream_name,
                    consumer = %durable, error = %create,
                    "could not update the durable consumer; consuming with its current settings");
                existing
            }
        };
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(config.concurrency)
        .messages()
        .await
        .map_err(|e| format!("could not pull from consumer `{durable}`: {e}"))?;
    tracing::info!(source = context.emitter.source(), stream = stream_name, consumer = %durable,
        "consuming from NATS JetStream");

    consuming.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut in_flight = InFlight::new(config.concurrency);
    loop {
        tokio::select! {
            _ = context.stop.cancelled() => {
                in_flight.drain().await;
                // Acknowledgements are buffered by the client: send them before closing.
                let flush = jetstream.client();
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), flush.flush()).await;
                return Ok(());
            }
            done = in_flight.next() => done?,
            next = messages.next(), if in_flight.has_room() => {
                let message = match next {
                    Some(Ok(message)) => message,
                    Some(Err(e)) => return Err(format!("pulling messages: {e}")),
                    None => return Err("the consumer's message stream ended".into()),
                };
                let event = event(config, &message, created);
                let (_, acker) = message.split();
                let Some(event) = event else {
                    tracing::warn!(source = context.emitter.source(),
                        "a JetStream message without delivery info; not acknowledging it");
                    continue;
                };
                in_flight.store_then_ack(&context.emitter, event, move |_| async move {
                    acker.ack().await.map_err(|e| e.to_string())
                });
            }
        }
    }
}

/// The event for a JetStream message (`None` without delivery info, which a consumer's
/// messages always have).
fn event(
    config: &QueueSource,
    message: &async_nats::jetstream::Message,
    created: i128,
) -> Option<Message> {
    let info = message.info().ok()?;
    let dedup = format!("{}:{created}:{}", info.stream, info.stream_sequence);
    let mut headers = Headers::new();
    if let Some(map) = &message.headers {
        for (name, values) in map.iter() {
            for value in values {
                headers.push(name.as_ref(), value.as_str());
            }
        }
    }
    let content_type = headers.get("content-type").map(str::to_owned);
    headers.push("nats-subject", message.subject.as_str());
    headers.push("nats-stream", info.stream);
    headers.push("nats-sequence", info.stream_sequence.to_string());
    headers.push("nats-delivered", info.delivered.to_string());
    let subject = config.type_from_subject.then_some(message.subject.as_str());
    let event_type = headers.event_type(config, subject);
    Some(Message {
        event_type,
        dedup_key: Some(dedup),
        headers: headers.into_vec(),
        content_type,
        body: message.payload.to_vec(),
    })
}
