//! NATS JetStream: `PUB` with headers, answered by the stream's `PubAck` (or "no responders"
//! when no stream captures the subject).

use std::str::FromStr;
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::Mutex;

use super::{Failure, Outgoing, rendered};

/// Subjects longer than this are refused (the server's default `max_control_line` is 4 KiB).
const MAX_SUBJECT: usize = 1024;

/// Publishes to JetStream over one lazily opened connection (the client reconnects by itself
/// once connected).
pub(super) struct Publisher {
    url: String,
    context: Mutex<Option<async_nats::jetstream::Context>>,
}

impl Publisher {
    pub(super) fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            context: Mutex::new(None),
        }
    }

    async fn context(&self, timeout: Duration) -> Result<async_nats::jetstream::Context, Failure> {
        let mut context = self.context.lock().await;
        if let Some(context) = context.as_ref() {
            return Ok(context.clone());
        }
        let client = async_nats::ConnectOptions::new()
            .name("switchboard")
            .connection_timeout(timeout)
            .connect(self.url.as_str())
            .await
            .map_err(|e| Failure::Retryable(format!("could not connect to NATS: {e}")))?;
        let built = async_nats::jetstream::ContextBuilder::new()
            .timeout(timeout)
            .build(client);
        *context = Some(built.clone());
        Ok(built)
    }

    pub(super) async fn publish(
        &self,
        message: &Outgoing<'_>,
        timeout: Duration,
    ) -> Result<String, Failure> {
        let subject = rendered(message.rendered, "subject", false, MAX_SUBJECT)?;
        if subject.contains(|c: char| c.is_whitespace() || c.is_control())
            || subject
                .split('.')
                .any(|token| token.is_empty() || token == "*" || token == ">")
        {
            return Err(Failure::Permanent(format!(
                "the subject rendered as `{subject}`, which is not a valid NATS subject"
            )));
        }
        let headers = headers(message)?;
        let context = self.context(timeout).await?;
        let ack = context
            .publish_with_headers(
                subject.to_owned(),
                headers,
                bytes::Bytes::copy_from_slice(message.body),
            )
            .await
            .map_err(|e| classify(subject, e))?
            .await
            .map_err(|e| classify(subject, e))?;
        Ok(serde_json::json!({
            "stream": ack.stream,
            "seq": ack.sequence,
            "duplicate": ack.duplicate,
        })
        .to_string())
    }
}

/// `Nats-Msg-Id`, `Content-Type`, then the forwarded and configured headers.
fn headers(message: &Outgoing<'_>) -> Result<HeaderMap, Failure> {
    let mut headers = HeaderMap::new();
    let mut add = |name: &str, value: &str| -> Result<(), Failure> {
        let header = HeaderName::from_str(name)
            .map_err(|_| Failure::Permanent(format!("`{name}` is not a valid NATS header name")))?;
        let value = HeaderValue::from_str(value).map_err(|_| {
            Failure::Permanent(format!("the value of header `{name}` is not valid in NATS"))
        })?;
        headers.append(header, value);
        Ok(())
    };
    add("Nats-Msg-Id", message.id)?;
    if let Some(content_type) = message.content_type {
        add("Content-Type", content_type)?;
    }
    for (name, value) in &message.headers {
        if name.eq_ignore_ascii_case("nats-msg-id") || name.eq_ignore_ascii_case("content-type") {
            continue;
        }
        add(name, value)?;
    }
    Ok(headers)
}

fn classify(subject: &str, error: async_nats::error::Error<PublishErrorKind>) -> Failure {
    match error.kind() {
        PublishErrorKind::StreamNotFound => Failure::Retryable(format!(
            "no JetStream stream captures subject `{subject}` (no responders)"
        )),
        PublishErrorKind::TimedOut => {
            Failure::Retryable("JetStream did not acknowledge the message in time".into())
        }
        PublishErrorKind::MaxPayloadExceeded => {
            Failure::Permanent(format!("NATS refused the message: {error}"))
        }
        _ => Failure::Retryable(format!("JetStream refused the message: {error}")),
    }
}
