//! Redis Streams: `XADD key [MAXLEN ~ n] * body … content-type … message-id … <headers>`,
//! confirmed by the entry id Redis answers.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

use super::{Failure, Outgoing, rendered};

/// The field holding the body (a queue source reads the same field by default).
pub const BODY_FIELD: &str = "body";
/// The field holding the body's media type.
pub const CONTENT_TYPE_FIELD: &str = "content-type";
/// The field holding the delivery id.
pub const MESSAGE_ID_FIELD: &str = "message-id";

/// Adds entries over one lazily opened multiplexed connection, dropped after a connection
/// error and reopened by the next attempt.
pub(super) struct Publisher {
    client: redis::Client,
    maxlen: Option<u64>,
    connection: Mutex<Option<MultiplexedConnection>>,
}

impl Publisher {
    pub(super) fn new(url: &str, maxlen: Option<u64>) -> Result<Self, String> {
        // Parses the URL; no I/O.
        let client = redis::Client::open(url).map_err(|e| format!("url: {e}"))?;
        Ok(Self {
            client,
            maxlen,
            connection: Mutex::new(None),
        })
    }

    async fn connection(&self, timeout: Duration) -> Result<MultiplexedConnection, Failure> {
        let mut connection = self.connection.lock().await;
        if let Some(connection) = connection.as_ref() {
            return Ok(connection.clone());
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            // The attempt's timeout bounds each command instead.
            .set_response_timeout(None);
        let opened = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| Failure::Retryable(format!("could not connect to Redis: {e}")))?;
        *connection = Some(opened.clone());
        Ok(opened)
    }

    pub(super) async fn publish(
        &self,
        message: &Outgoing<'_>,
        timeout: Duration,
    ) -> Result<String, Failure> {
        let stream = rendered(message.rendered, "stream", false, 1024)?;
        let mut command = redis::cmd("XADD");
        command.arg(stream);
        if let Some(maxlen) = self.maxlen {
            command.arg("MAXLEN").arg("~").arg(maxlen);
        }
        command
            .arg("*")
            .arg(BODY_FIELD)
            .arg(message.body)
            .arg(MESSAGE_ID_FIELD)
            .arg(message.id);
        if let Some(content_type) = message.content_type {
            command.arg(CONTENT_TYPE_FIELD).arg(content_type);
        }
        for (name, value) in &message.headers {
            if [BODY_FIELD, CONTENT_TYPE_FIELD, MESSAGE_ID_FIELD]
                .iter()
                .any(|reserved| name.eq_ignore_ascii_case(reserved))
            {
                continue;
            }
            command.arg(*name).arg(*value);
        }
        let mut connection = self.connection(timeout).await?;
        match command.query_async::<String>(&mut connection).await {
            Ok(id) => Ok(serde_json::json!({"stream": stream, "id": id}).to_string()),
            Err(error) => {
                if error.is_io_error()
                    || error.is_connection_dropped()
                    || error.is_connection_refusal()
                    || error.is_timeout()
                    || error.is_unrecoverable_error()
                {
                    *self.connection.lock().await = None;
                }
                Err(Failure::Retryable(format!(
                    "Redis refused XADD to `{stream}`: {error}"
                )))
            }
        }
    }
}
