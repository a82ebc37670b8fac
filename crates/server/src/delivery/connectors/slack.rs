//! Slack: an incoming webhook (`POST {"text"|"blocks"…}`, answered `ok`) or the Web API's
//! `chat.postMessage` with a bot token (answered `{"ok": true|false, "error": …}` with status
//! 200 either way, so `ok: false` is the failure signal). `429` with `Retry-After` is honoured
//! through the normal retry path.

use async_trait::async_trait;
use switchboard_core::AttemptOutcome;
use switchboard_core::config::{SLACK_API, SlackDestination};

use super::{Attempt, Connector, message_json, post_json, refused};
use crate::delivery::sender::AttemptReport;

/// A configured Slack destination.
pub struct Slack {
    mode: Mode,
}

enum Mode {
    Webhook {
        url: String,
    },
    Api {
        url: String,
        token: String,
        channel: String,
    },
}

impl std::fmt::Debug for Slack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slack")
            .field("to", &self.describe())
            .finish()
    }
}

/// `chat.postMessage` errors worth retrying; every other `ok: false` is permanent (bad token,
/// unknown channel, malformed blocks…), since trying again cannot help.
const RETRYABLE_ERRORS: [&str; 5] = [
    "ratelimited",
    "rate_limited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
];

impl Slack {
    /// Checks and keeps the settings.
    pub fn new(config: &SlackDestination) -> Result<Self, String> {
        let mode = match (&config.webhook_url, &config.token, &config.channel) {
            (Some(url), _, _) => Mode::Webhook { url: url.clone() },
            (None, Some(token), Some(channel)) => Mode::Api {
                url: format!(
                    "{}/chat.postMessage",
                    config
                        .api_base
                        .as_deref()
                        .unwrap_or(SLACK_API)
                        .trim_end_matches('/')
                ),
                token: token.clone(),
                channel: channel.clone(),
            },
            _ => return Err("slack needs either webhook_url, or token and channel".into()),
        };
        Ok(Self { mode })
    }
}

#[async_trait]
impl Connector for Slack {
    fn describe(&self) -> String {
        match &self.mode {
            // The path of an incoming-webhook URL is its secret.
            Mode::Webhook { url } => reqwest::Url::parse(url)
                .map(|u| format!("slack webhook {}", u.host_str().unwrap_or("?")))
                .unwrap_or_else(|_| "slack webhook".into()),
            Mode::Api { url, channel, .. } => format!("slack {url} #{channel}"),
        }
    }

    async fn deliver(&self, attempt: Attempt<'_>) -> AttemptReport {
        let mut message = message_json(attempt.message);
        match &self.mode {
            Mode::Webhook { url } => {
                let (report, _) = post_json(&attempt, url, None, &message).await;
                report
            }
            Mode::Api {
                url,
                token,
                channel,
            } => {
                if let Some(object) = message.as_object_mut() {
                    object
                        .entry("channel")
                        .or_insert_with(|| serde_json::Value::from(channel.clone()));
                }
                let (report, body) = post_json(&attempt, url, Some(token), &message).await;
                if report.outcome != AttemptOutcome::Delivered {
                    return report;
                }
                let answer: serde_json::Value =
                    serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                if answer["ok"] == true {
                    return report;
                }
                let error = answer["error"]
                    .as_str()
                    .unwrap_or("no `ok` in the answer")
                    .to_owned();
                let outcome = if RETRYABLE_ERRORS.contains(&error.as_str()) {
                    AttemptOutcome::Retryable { retry_after: None }
                } else {
                    AttemptOutcome::Permanent
                };
                refused(
                    report,
                    outcome,
                    format!("slack refused the message: {error}"),
                )
            }
        }
    }
}
