//! RabbitMQ (AMQP 0-9-1): `basic.publish` with `mandatory` on a channel in confirm mode. The
//! broker's `basic.ack` confirms; a `basic.nack`, or a `basic.return` (no queue bound for the
//! routing key), or the channel closed by the broker (e.g. `NOT_FOUND`: no such exchange) is a
//! failure.

use lapin::Confirmation;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::sync::Mutex;

use super::{Failure, Outgoing, rendered};

/// AMQP short strings (exchange, routing key, property values) hold at most 255 bytes.
const SHORT: usize = 255;

/// Publishes over one lazily opened connection and confirm-mode channel, both reopened when
/// the broker closed them.
pub(super) struct Publisher {
    url: String,
    state: Mutex<Option<(Connection, Channel)>>,
}

impl Publisher {
    pub(super) fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            state: Mutex::new(None),
        }
    }

    /// A channel in confirm mode: the current one, a new one on the current connection, or a
    /// new connection.
    async fn channel(&self) -> Result<Channel, Failure> {
        let mut state = self.state.lock().await;
        if let Some((connection, channel)) = state.as_ref() {
            if channel.status().connected() {
                return Ok(channel.clone());
            }
            if connection.status().connected() {
                let channel = confirm_channel(connection).await?;
                if let Some((_, current)) = state.as_mut() {
                    *current = channel.clone();
                }
                return Ok(channel);
            }
        }
        *state = None;
        let connection = Connection::connect(
            &self.url,
            ConnectionProperties::default()
                .with_connection_name(LongString::from("switchboard publisher")),
        )
        .await
        .map_err(|e| Failure::Retryable(format!("could not connect to RabbitMQ: {e}")))?;
        let channel = confirm_channel(&connection).await?;
        *state = Some((connection, channel.clone()));
        Ok(channel)
    }

    pub(super) async fn publish(&self, message: &Outgoing<'_>) -> Result<String, Failure> {
        let exchange = rendered(message.rendered, "exchange", true, SHORT)?;
        let routing_key = rendered(message.rendered, "routing_key", true, SHORT)?;
        if exchange.is_empty() && routing_key.is_empty() {
            return Err(Failure::Permanent(
                "the exchange and the routing key both rendered empty".into(),
            ));
        }
        let properties = properties(message)?;
        let channel = self.channel().await?;
        let confirm = channel
            .basic_publish(
                short(exchange)?,
                short(routing_key)?,
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                message.body,
                properties,
            )
            .await
            .map_err(|e| refused(exchange, &e))?
            .await
            .map_err(|e| refused(exchange, &e))?;
        match confirm {
            Confirmation::Ack(None) => Ok(serde_json::json!({
                "exchange": exchange,
                "routing_key": routing_key,
                "confirmed": true,
            })
            .to_string()),
            Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
                Err(Failure::Retryable(format!(
                    "RabbitMQ returned the message: {} {} (no queue is bound to exchange \
                     `{exchange}` for routing key `{routing_key}`)",
                    returned.reply_code, returned.reply_text
                )))
            }
            Confirmation::Nack(None) => Err(Failure::Retryable(
                "RabbitMQ did not accept the message (basic.nack)".into(),
            )),
            Confirmation::NotRequested => Err(Failure::Retryable(
                "the channel is not in confirm mode; the message is unconfirmed".into(),
            )),
        }
    }
}

async fn confirm_channel(connection: &Connection) -> Result<Channel, Failure> {
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| Failure::Retryable(format!("could not open a RabbitMQ channel: {e}")))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| Failure::Retryable(format!("could not enable publisher confirms: {e}")))?;
    Ok(channel)
}

fn short(value: &str) -> Result<ShortString, Failure> {
    ShortString::try_new(value)
        .map_err(|_| Failure::Permanent(format!("`{value:.40}…` is longer than {SHORT} bytes")))
}

/// Persistent, with the delivery id as `message_id`, the content type, a timestamp and the
/// headers as an AMQP table.
fn properties(message: &Outgoing<'_>) -> Result<BasicProperties, Failure> {
    let mut properties = BasicProperties::default()
        .with_message_id(short(message.id)?)
        .with_delivery_mode(2)
        .with_timestamp(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default(),
        );
    if let Some(content_type) = message.content_type {
        properties = properties.with_content_type(short(content_type)?);
    }
    if !message.headers.is_empty() {
        let mut table = FieldTable::default();
        for (name, value) in &message.headers {
            table.insert(
                short(name)?,
                AMQPValue::LongString(LongString::from(value.as_bytes().to_vec())),
            );
        }
        properties = properties.with_headers(table);
    }
    Ok(properties)
}

fn refused(exchange: &str, error: &lapin::Error) -> Failure {
    let text = error.to_string();
    if text.contains("NOT_FOUND") || text.contains("NOT-FOUND") {
        Failure::Retryable(format!(
            "RabbitMQ refused the message: {text} (does exchange `{exchange}` exist?)"
        ))
    } else {
        Failure::Retryable(format!("RabbitMQ refused the message: {text}"))
    }
}
