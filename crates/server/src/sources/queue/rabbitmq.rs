//! RabbitMQ (AMQP 0-9-1): `basic.consume` on the queue with manual acknowledgements and
//! `basic.qos` prefetch; `basic.ack` after the event is stored. Unacknowledged messages return
//! to the queue when the connection closes (a crash included) and go to another consumer.
//!
//! De-duplication key: the `message_id` property, when the publisher set one.

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Connection, ConnectionProperties};
use switchboard_core::config::QueueSource;

use super::{Context, Headers, InFlight, process_name};
use crate::sources::Message;

pub(super) async fn session(
    config: &QueueSource,
    context: &Context,
    consuming: &std::sync::atomic::AtomicBool,
) -> Result<(), String> {
    let queue = config.queue.as_deref().unwrap_or_default();
    let queue_name = ShortString::try_new(queue)
        .map_err(|_| format!("queue name `{queue:.40}…` is longer than 255 bytes"))?;
    let connection = Connection::connect(
        &config.url,
        ConnectionProperties::default().with_connection_name(LongString::from(format!(
            "switchboard source {}",
            context.emitter.source()
        ))),
    )
    .await
    .map_err(|e| format!("could not connect to RabbitMQ: {e}"))?;
    let result = consume(config, context, &connection, queue_name, consuming).await;
    // Closing returns unacknowledged messages to the queue at once.
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        connection.close(200, ShortString::from("bye")),
    )
    .await;
    result
}

async fn consume(
    config: &QueueSource,
    context: &Context,
    connection: &Connection,
    queue: ShortString,
    consuming: &std::sync::atomic::AtomicBool,
) -> Result<(), String> {
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| format!("could not open a channel: {e}"))?;
    let prefetch = config
        .prefetch
        .unwrap_or_else(|| u16::try_from(config.concurrency).unwrap_or(u16::MAX));
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .map_err(|e| format!("basic.qos: {e}"))?;
    let tag = ShortString::try_new(format!("switchboard-{}", process_name()))
        .unwrap_or_else(|_| ShortString::from("switchboard"));
    let mut consumer = channel
        .basic_consume(
            queue.clone(),
            tag,
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("could not consume queue `{queue}`: {e}"))?;
    tracing::info!(source = context.emitter.source(), queue = %queue, prefetch,
        "consuming from RabbitMQ");

    consuming.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut in_flight = InFlight::new(config.concurrency);
    loop {
        tokio::select! {
            _ = context.stop.cancelled() => {
                in_flight.drain().await;
                return Ok(());
            }
            done = in_flight.next() => done?,
            next = consumer.next(), if in_flight.has_room() => {
                let delivery = match next {
                    Some(Ok(delivery)) => delivery,
                    Some(Err(e)) => return Err(format!("consuming queue `{queue}`: {e}")),
                    None => return Err(format!("the broker cancelled the consumer of queue `{queue}`")),
                };
                let event = event(config, &delivery);
                let acker = delivery.acker;
                in_flight.store_then_ack(&context.emitter, event, move |_| async move {
                    acker
                        .ack(BasicAckOptions::default())
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                });
            }
        }
    }
}

/// The event for a delivery: headers from the AMQP header table and properties, the type from
/// `type_header`, the `type` property, or the routing key.
fn event(config: &QueueSource, delivery: &Delivery) -> Message {
    let properties = &delivery.properties;
    let mut headers = Headers::new();
    if let Some(table) = properties.headers() {
        for (name, value) in table.inner() {
            headers.push(name.as_str(), text(value));
        }
    }
    headers.push("amqp-exchange", delivery.exchange.as_str());
    headers.push("amqp-routing-key", delivery.routing_key.as_str());
    let optional = [
        ("amqp-message-id", properties.message_id()),
        ("amqp-type", properties.kind()),
        ("amqp-correlation-id", properties.correlation_id()),
        ("amqp-app-id", properties.app_id()),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            headers.push(name, value.as_str());
        }
    }
    if delivery.redelivered {
        headers.push("amqp-redelivered", "true");
    }
    let routing_key = config
        .type_from_subject
        .then_some(delivery.routing_key.as_str());
    let amqp_type = properties.kind().as_ref().map(ShortString::as_str);
    let event_type = headers.event_type(config, amqp_type.or(routing_key));
    Message {
        event_type,
        dedup_key: properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str().to_owned())
            .filter(|id| !id.is_empty()),
        headers: headers.into_vec(),
        content_type: properties
            .content_type()
            .as_ref()
            .map(|ct| ct.as_str().to_owned()),
        body: delivery.data.clone(),
    }
}

/// An AMQP header value as text: strings as they are, numbers and booleans written out,
/// tables and arrays as JSON.
fn text(value: &AMQPValue) -> String {
    match json(value) {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

fn json(value: &AMQPValue) -> serde_json::Value {
    use serde_json::Value;
    match value {
        AMQPValue::Boolean(b) => Value::from(*b),
        AMQPValue::ShortShortInt(n) => Value::from(*n),
        AMQPValue::ShortShortUInt(n) => Value::from(*n),
        AMQPValue::ShortInt(n) => Value::from(*n),
        AMQPValue::ShortUInt(n) => Value::from(*n),
        AMQPValue::LongInt(n) => Value::from(*n),
        AMQPValue::LongUInt(n) => Value::from(*n),
        AMQPValue::LongLongInt(n) => Value::from(*n),
        AMQPValue::Float(n) => Value::from(*n),
        AMQPValue::Double(n) => Value::from(*n),
        AMQPValue::Timestamp(n) => Value::from(*n),
        AMQPValue::ShortString(s) => Value::from(s.as_str()),
        AMQPValue::LongString(s) => Value::from(String::from_utf8_lossy(s.as_bytes())),
        AMQPValue::ByteArray(bytes) => {
            Value::from(String::from_utf8_lossy(bytes.as_slice()).into_owned())
        }
        AMQPValue::FieldArray(items) => Value::Array(items.as_slice().iter().map(json).collect()),
        AMQPValue::FieldTable(table) => Value::Object(
            table
                .inner()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), json(v)))
                .collect(),
        ),
        AMQPValue::DecimalValue(d) => Value::from(format!("{d:?}")),
        AMQPValue::Void => Value::Null,
    }
}
