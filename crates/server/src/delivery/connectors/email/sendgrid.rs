//! SendGrid's v3 mail API: `POST {base_url}/v3/mail/send` with a bearer API key and the
//! recipients as personalizations. `202 Accepted` is delivery; `429` is retried after
//! `Retry-After` (or SendGrid's own `X-RateLimit-Reset`); `5xx` is retried; any other `4xx` (a
//! bad address, a revoked key) fails, with SendGrid's `errors[].message` as the attempt's error.

use std::time::{Duration, SystemTime};

use lettre::message::Mailbox;
use serde_json::{Value, json};
use switchboard_core::AttemptOutcome;
use switchboard_core::config::{EmailDestination, SENDGRID_API};

use super::Composed;
use crate::delivery::connectors::{Attempt, post_json, refused};
use crate::delivery::sender::AttemptReport;

/// A SendGrid account.
pub struct Sendgrid {
    url: String,
    api_key: String,
}

/// The longest wait taken from `X-RateLimit-Reset` (a reset further away is SendGrid's daily
/// quota, which the retry schedule handles better than one long sleep).
const MAX_RESET_WAIT: Duration = Duration::from_secs(15 * 60);

impl std::fmt::Debug for Sendgrid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sendgrid")
            .field("to", &self.describe())
            .finish()
    }
}

impl Sendgrid {
    /// Keeps the endpoint and key.
    pub fn new(config: &EmailDestination) -> Result<Self, String> {
        let base = config.base_url.as_deref().unwrap_or(SENDGRID_API);
        let url = format!("{}/v3/mail/send", base.trim_end_matches('/'));
        reqwest::Url::parse(&url).map_err(|e| format!("base_url: {e}"))?;
        let api_key = config
            .api_key
            .clone()
            .filter(|k| !k.trim().is_empty())
            .ok_or("api_key is required for provider = \"sendgrid\"")?;
        Ok(Self { url, api_key })
    }

    /// `sendgrid https://api.sendgrid.com/v3/mail/send`: never the key.
    pub fn describe(&self) -> String {
        format!("sendgrid {}", self.url)
    }

    /// Sends one mail and reads SendGrid's answer.
    pub async fn send(&self, attempt: &Attempt<'_>, mail: Composed) -> AttemptReport {
        let body = request_body(attempt.delivery_id, &mail);
        let (report, answer) = post_json(attempt, &self.url, Some(&self.api_key), &body).await;
        let Some(status) = report.status else {
            return report;
        };
        match &report.outcome {
            AttemptOutcome::Delivered => report,
            outcome => {
                let outcome = match outcome {
                    AttemptOutcome::Retryable { retry_after: None } if status == 429 => {
                        AttemptOutcome::Retryable {
                            retry_after: rate_limit_reset(&report.headers, SystemTime::now()),
                        }
                    }
                    other => other.clone(),
                };
                let error = format!(
                    "SendGrid refused the message (HTTP {status}){}",
                    error_messages(&answer)
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                );
                refused(report, outcome, error)
            }
        }
    }
}

/// The mail as SendGrid's JSON: the recipients as personalizations, `text/plain` before
/// `text/html` (the order SendGrid requires), and the delivery id as a custom argument, which
/// SendGrid's event webhook echoes back.
pub fn request_body(delivery_id: &str, mail: &Composed) -> Value {
    // SendGrid requires `to` in each personalization. Without one, the first copy becomes the
    // `to` (copies are visible to every recipient anyway); blind copies alone each get their own
    // personalization, so no recipient sees another.
    let personalizations: Vec<Value> = match (mail.to.is_empty(), mail.cc.split_first()) {
        (false, _) => vec![personalization(&mail.to, &mail.cc, &mail.bcc)],
        (true, Some((first, rest))) => {
            vec![personalization(
                std::slice::from_ref(first),
                rest,
                &mail.bcc,
            )]
        }
        (true, None) => mail
            .bcc
            .iter()
            .map(|one| personalization(std::slice::from_ref(one), &[], &[]))
            .collect(),
    };
    let mut content = Vec::new();
    if let Some(text) = &mail.text {
        content.push(json!({"type": "text/plain", "value": text}));
    }
    if let Some(html) = &mail.html {
        content.push(json!({"type": "text/html", "value": html}));
    }
    let mut body = json!({
        "personalizations": personalizations,
        "from": address(&mail.from),
        "subject": mail.subject,
        "content": content,
        "custom_args": {"switchboard_delivery_id": delivery_id},
    });
    if let Some(reply_to) = &mail.reply_to {
        body["reply_to"] = address(reply_to);
    }
    body
}

fn personalization(to: &[Mailbox], cc: &[Mailbox], bcc: &[Mailbox]) -> Value {
    let mut out = json!({ "to": addresses(to) });
    if !cc.is_empty() {
        out["cc"] = addresses(cc);
    }
    if !bcc.is_empty() {
        out["bcc"] = addresses(bcc);
    }
    out
}

fn address(mailbox: &Mailbox) -> Value {
    match &mailbox.name {
        Some(name) if !name.is_empty() => {
            json!({"email": mailbox.email.to_string(), "name": name})
        }
        _ => json!({"email": mailbox.email.to_string()}),
    }
}

fn addresses<'a>(list: impl IntoIterator<Item = &'a Mailbox>) -> Value {
    Value::Array(list.into_iter().map(address).collect())
}

/// `errors[].message` (with the field) of a SendGrid error answer, joined.
fn error_messages(answer: &[u8]) -> Option<String> {
    let answer: Value = serde_json::from_slice(answer).ok()?;
    let messages: Vec<String> = answer["errors"]
        .as_array()?
        .iter()
        .filter_map(|e| {
            let message = e["message"].as_str()?;
            Some(match e["field"].as_str() {
                Some(field) if !field.is_empty() => format!("{message} ({field})"),
                _ => message.to_owned(),
            })
        })
        .collect();
    (!messages.is_empty()).then(|| messages.join("; "))
}

/// The wait until `X-RateLimit-Reset` (Unix seconds), when it is soon enough to be worth it.
fn rate_limit_reset(headers: &[(String, String)], now: SystemTime) -> Option<Duration> {
    let reset: u64 = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("x-ratelimit-reset"))?
        .1
        .trim()
        .parse()
        .ok()?;
    let now = now.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
    let wait = Duration::from_secs(reset.saturating_sub(now).max(1));
    (wait <= MAX_RESET_WAIT).then_some(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailbox(text: &str) -> Mailbox {
        text.parse().expect("valid")
    }

    #[test]
    fn the_body_has_sendgrid_shape() {
        let mail = Composed {
            from: mailbox("Billing <billing@example.com>"),
            reply_to: Some(mailbox("help@example.com")),
            to: vec![mailbox("Ada <ada@example.com>")],
            cc: vec![mailbox("cc@example.com")],
            bcc: Vec::new(),
            subject: "Payment failed".into(),
            text: Some("t".into()),
            html: Some("<p>h</p>".into()),
        };
        let body = request_body("dlv_1", &mail);
        assert_eq!(
            body,
            json!({
                "personalizations": [{
                    "to": [{"email": "ada@example.com", "name": "Ada"}],
                    "cc": [{"email": "cc@example.com"}],
                }],
                "from": {"email": "billing@example.com", "name": "Billing"},
                "reply_to": {"email": "help@example.com"},
                "subject": "Payment failed",
                "content": [
                    {"type": "text/plain", "value": "t"},
                    {"type": "text/html", "value": "<p>h</p>"},
                ],
                "custom_args": {"switchboard_delivery_id": "dlv_1"},
            })
        );
        let bcc_only = Composed {
            to: Vec::new(),
            cc: Vec::new(),
            bcc: vec![mailbox("a@example.com"), mailbox("b@example.com")],
            ..mail
        };
        let body = request_body("dlv_2", &bcc_only);
        assert_eq!(
            body["personalizations"],
            json!([{"to": [{"email": "a@example.com"}]}, {"to": [{"email": "b@example.com"}]}])
        );
    }

    #[test]
    fn errors_and_rate_limits_are_read() {
        let answer = br#"{"errors":[{"message":"The to email does not contain a valid address.","field":"personalizations.0.to.0.email","help":null},{"message":"bad","field":null}]}"#;
        assert_eq!(
            error_messages(answer).as_deref(),
            Some(
                "The to email does not contain a valid address. (personalizations.0.to.0.email); bad"
            )
        );
        assert_eq!(error_messages(b"not json"), None);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let headers = vec![("X-RateLimit-Reset".to_owned(), "1030".to_owned())];
        assert_eq!(
            rate_limit_reset(&headers, now),
            Some(Duration::from_secs(30))
        );
        let far = vec![("x-ratelimit-reset".to_owned(), "90000".to_owned())];
        assert_eq!(rate_limit_reset(&far, now), None);
    }
}
