//! Microsoft Teams through an incoming webhook (or a Workflows "post to a channel" URL): the
//! message is an Adaptive Card wrapped in a `message` attachment. A body that already is a
//! Teams message or an Adaptive Card is sent as it is; anything else becomes a card with its
//! `text` (or the whole body, as JSON text).

use async_trait::async_trait;
use serde_json::{Value, json};
use switchboard_core::config::TeamsDestination;

use super::{Attempt, Connector, message_json, post_json};
use crate::delivery::sender::AttemptReport;

/// A configured Teams destination.
pub struct Teams {
    url: String,
}

impl std::fmt::Debug for Teams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Teams")
            .field("to", &self.describe())
            .finish()
    }
}

impl Teams {
    /// Keeps the webhook URL.
    pub fn new(config: &TeamsDestination) -> Result<Self, String> {
        reqwest::Url::parse(&config.webhook_url).map_err(|e| format!("webhook_url: {e}"))?;
        Ok(Self {
            url: config.webhook_url.clone(),
        })
    }
}

/// The Teams message for a delivered body.
pub fn card(body: Value) -> Value {
    match body["type"].as_str() {
        Some("message") => body,
        Some("AdaptiveCard") => wrap(body),
        _ => {
            let text = body["text"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| match &body {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
            let mut items = Vec::new();
            if let Some(title) = body["title"].as_str() {
                items.push(json!({"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium", "wrap": true}));
            }
            items.push(json!({"type": "TextBlock", "text": text, "wrap": true}));
            wrap(json!({
                "type": "AdaptiveCard",
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "version": "1.4",
                "body": items,
            }))
        }
    }
}

fn wrap(card: Value) -> Value {
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }]
    })
}

#[async_trait]
impl Connector for Teams {
    fn describe(&self) -> String {
        reqwest::Url::parse(&self.url)
            .map(|u| format!("teams webhook {}", u.host_str().unwrap_or("?")))
            .unwrap_or_else(|_| "teams webhook".into())
    }

    async fn deliver(&self, attempt: Attempt<'_>) -> AttemptReport {
        let message = card(message_json(attempt.message));
        let (report, _) = post_json(&attempt, &self.url, None, &message).await;
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_become_adaptive_cards() {
        let card_for_text = card(json!({"text": "deploy done", "title": "CI"}));
        assert_eq!(card_for_text["type"], "message");
        let content = &card_for_text["attachments"][0]["content"];
        assert_eq!(content["type"], "AdaptiveCard");
        assert_eq!(content["body"][0]["text"], "CI");
        assert_eq!(content["body"][1]["text"], "deploy done");
        let own = json!({"type": "AdaptiveCard", "version": "1.5", "body": []});
        assert_eq!(card(own.clone())["attachments"][0]["content"], own);
        let message = json!({"type": "message", "attachments": []});
        assert_eq!(card(message.clone()), message);
        assert_eq!(
            card(json!({"a": 1}))["attachments"][0]["content"]["body"][0]["text"],
            "{\"a\":1}"
        );
    }
}
