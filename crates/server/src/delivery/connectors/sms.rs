//! SMS through Twilio's Messages API: a form `POST` to
//! `{base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json` with HTTP basic auth (the account
//! SID and auth token), carrying `To`, `From` (or `MessagingServiceSid`), `Body`, any
//! `MediaUrl`s and the `StatusCallback`. Twilio sends one message per request, so each recipient
//! is a request of its own.
//!
//! Answers: `201 Created` is delivery. `429` and `5xx` are retried (after `Retry-After` when
//! given); any other `4xx` fails with Twilio's error `code` and `message` in the attempt's error
//! (`21211` invalid `To` number, `21610` recipient unsubscribed, `21408` region not enabled…).
//!
//! With several recipients, those Twilio accepted (or refused for good) are remembered per
//! delivery while the connector lives, so a retry only sends to the ones still owed a message.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;
use switchboard_core::AttemptOutcome;
use switchboard_core::config::{SmsDestination, TWILIO_API};

use super::{Attempt, Connector};
use crate::delivery::sender::{AttemptReport, Prepared, read_report, report_error};
use crate::template::TemplateSet;

/// Deliveries whose reached recipients are remembered at most (then the memory starts over,
/// and a retry may send again to someone already reached: at least once).
const REMEMBERED: usize = 10_000;

/// A configured SMS destination.
pub struct Sms {
    url: String,
    account_sid: String,
    auth_token: String,
    messaging_service_sid: Option<String>,
    status_callback: Option<String>,
    templates: TemplateSet,
    to_count: usize,
    has_body: bool,
    reached: std::sync::Mutex<HashMap<String, HashSet<String>>>,
}

impl std::fmt::Debug for Sms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sms").field("to", &self.describe()).finish()
    }
}

/// A text message ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    /// Recipients, each once.
    pub to: Vec<String>,
    /// Sender number (absent with a messaging service).
    pub from: Option<String>,
    /// The text (may be empty when media is attached).
    pub body: String,
    /// Media URLs (MMS).
    pub media: Vec<String>,
}

impl Sms {
    /// Checks the settings and compiles the templates.
    pub fn new(config: &SmsDestination) -> Result<Self, String> {
        let base = config.base_url.as_deref().unwrap_or(TWILIO_API);
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            base.trim_end_matches('/'),
            config.account_sid
        );
        reqwest::Url::parse(&url).map_err(|e| format!("base_url: {e}"))?;
        let mut templates = TemplateSet::new();
        if let Some(from) = &config.from {
            templates.add("from", from)?;
        }
        for (i, to) in config.to.iter().enumerate() {
            templates.add(format!("to:{i}"), to)?;
        }
        if let Some(body) = &config.body {
            templates.add("body", body)?;
        }
        Ok(Self {
            url,
            account_sid: config.account_sid.clone(),
            auth_token: config.auth_token.clone(),
            messaging_service_sid: config.messaging_service_sid.clone(),
            status_callback: config.status_callback.clone(),
            templates,
            to_count: config.to.len(),
            has_body: config.body.is_some(),
            reached: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Builds the text for a prepared message: a JSON object with `body` (or `text`) is the
    /// message, and its `to` and `media_url` win; otherwise the `body` template, a JSON string,
    /// or the delivered bytes are the text.
    pub fn compose(&self, message: &Prepared) -> Result<Text, String> {
        let parsed: Option<Value> = serde_json::from_slice(&message.body).ok();
        let object = match &parsed {
            Some(Value::Object(map)) if map.contains_key("body") || map.contains_key("text") => {
                Some(map)
            }
            _ => None,
        };
        let body = match object {
            Some(object) => match object.get("body").or_else(|| object.get("text")) {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Null) | None => String::new(),
                Some(_) => return Err("body in the message must be a string".into()),
            },
            None if self.has_body => message.rendered.get("body").unwrap_or_default().to_owned(),
            None => match &parsed {
                Some(Value::String(text)) => text.clone(),
                _ => String::from_utf8_lossy(&message.body).into_owned(),
            },
        };
        let mut to = Vec::new();
        match object.and_then(|o| o.get("to")) {
            Some(value) => to.extend(numbers_from_json("to", value)?),
            None => {
                for i in 0..self.to_count {
                    to.extend(numbers(
                        message.rendered.get(&format!("to:{i}")).unwrap_or(""),
                    ));
                }
            }
        }
        let mut seen = HashSet::new();
        to.retain(|n| seen.insert(n.clone()));
        if to.is_empty() {
            return Err("no recipient: `to` rendered empty and the message gives none (set `to`, or have the route transform output a `to`)".into());
        }
        let media = match object.and_then(|o| o.get("media_url")) {
            Some(value) => numbers_from_json("media_url", value)?,
            None => Vec::new(),
        };
        if body.trim().is_empty() && media.is_empty() {
            return Err("the message is empty: give it a `body` (or `media_url`)".into());
        }
        let from = match &self.messaging_service_sid {
            Some(_) => None,
            None => {
                let from = message.rendered.get("from").unwrap_or_default().trim();
                if from.is_empty() {
                    return Err("from rendered empty: the sender number is required".into());
                }
                Some(from.to_owned())
            }
        };
        Ok(Text {
            to,
            from,
            body,
            media,
        })
    }

    /// The form Twilio gets for one recipient.
    fn form(&self, text: &Text, to: &str) -> String {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("To", to);
        match (&self.messaging_service_sid, &text.from) {
            (Some(sid), _) => form.append_pair("MessagingServiceSid", sid),
            (None, Some(from)) => form.append_pair("From", from),
            (None, None) => &mut form,
        };
        if !text.body.is_empty() {
            form.append_pair("Body", &text.body);
        }
        for url in &text.media {
            form.append_pair("MediaUrl", url);
        }
        if let Some(callback) = &self.status_callback {
            form.append_pair("StatusCallback", callback);
        }
        form.finish()
    }

    /// One request: the message to one recipient, within `deadline`.
    async fn send_one(&self, attempt: &Attempt<'_>, form: String, deadline: Instant) -> Sent {
        let started = Instant::now();
        let timeout = deadline.saturating_duration_since(started);
        if timeout.is_zero() {
            return Sent {
                report: failure(
                    AttemptOutcome::Retryable { retry_after: None },
                    format!(
                        "not sent: the attempt's {:.1}s ran out",
                        attempt.timeout.as_secs_f64()
                    ),
                    started,
                ),
                answer: Vec::new(),
            };
        }
        if let Some(refused) = attempt.refused_address(&self.url, started) {
            return Sent {
                report: refused,
                answer: Vec::new(),
            };
        }
        let request = attempt
            .client
            .post(&self.url)
            .timeout(timeout)
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(form);
        match request.send().await {
            Ok(response) => {
                let (report, answer) = read_report(response, started, 64 * 1024).await;
                Sent { report, answer }
            }
            Err(error) => Sent {
                report: report_error(&error, timeout, started),
                answer: Vec::new(),
            },
        }
    }

    fn remembered(&self, delivery_id: &str) -> HashSet<String> {
        self.reached
            .lock()
            .map(|reached| reached.get(delivery_id).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    fn remember(&self, delivery_id: &str, number: &str) {
        if let Ok(mut reached) = self.reached.lock() {
            if reached.len() >= REMEMBERED && !reached.contains_key(delivery_id) {
                reached.clear();
            }
            reached
                .entry(delivery_id.to_owned())
                .or_default()
                .insert(number.to_owned());
        }
    }

    fn forget(&self, delivery_id: &str) {
        if let Ok(mut reached) = self.reached.lock() {
            reached.remove(delivery_id);
        }
    }
}

/// One request's report and answer body.
struct Sent {
    report: AttemptReport,
    answer: Vec<u8>,
}

/// Twilio's error, from its JSON answer: `{"code": 21211, "message": "…", "more_info": "…",
/// "status": 400}`.
pub fn twilio_error(status: u16, answer: &[u8]) -> String {
    let parsed: Value = serde_json::from_slice(answer).unwrap_or(Value::Null);
    let message = parsed["message"].as_str().map(str::trim);
    match (parsed["code"].as_i64(), message) {
        (Some(code), Some(message)) => format!("Twilio error {code}: {message} (HTTP {status})"),
        (Some(code), None) => format!("Twilio error {code} (HTTP {status})"),
        (None, Some(message)) => format!("Twilio: {message} (HTTP {status})"),
        (None, None) => format!("Twilio answered HTTP {status}"),
    }
}

/// Splits a rendered recipient entry: numbers separated by commas or semicolons, or a JSON
/// array of them.
fn numbers(text: &str) -> Vec<String> {
    let text = text.trim();
    if text.starts_with('[')
        && let Ok(value) = serde_json::from_str::<Value>(text)
        && let Ok(list) = numbers_from_json("to", &value)
    {
        return list;
    }
    text.split([',', ';'])
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect()
}

fn numbers_from_json(field: &str, value: &Value) -> Result<Vec<String>, String> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::String(text) => Ok(numbers(text)),
        Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                match item {
                    Value::String(text) => out.extend(numbers(text)),
                    _ => return Err(format!("{field} in the message must hold strings")),
                }
            }
            Ok(out)
        }
        _ => Err(format!(
            "{field} in the message must be a string or a list of strings"
        )),
    }
}

fn failure(outcome: AttemptOutcome, error: String, started: Instant) -> AttemptReport {
    AttemptReport {
        outcome,
        status: None,
        error: Some(error),
        headers: Vec::new(),
        body_excerpt: Vec::new(),
        latency: started.elapsed(),
    }
}

#[async_trait]
impl Connector for Sms {
    fn describe(&self) -> String {
        format!("twilio {}", self.url)
    }

    async fn deliver(&self, attempt: Attempt<'_>) -> AttemptReport {
        let started = Instant::now();
        let text = match self.compose(attempt.message) {
            Ok(text) => text,
            Err(error) => return failure(AttemptOutcome::Permanent, error, started),
        };
        let deadline = started + attempt.timeout;
        let already = self.remembered(attempt.delivery_id);
        let several = text.to.len() > 1;
        let mut errors = Vec::new();
        let mut retry: Option<Option<Duration>> = None;
        let mut permanent = false;
        // The record shows the first refusal's answer, or the last acceptance's.
        let (mut first_failure, mut last_success) = (None, None);
        for number in text.to.iter().filter(|n| !already.contains(*n)) {
            let Sent { report, answer } = self
                .send_one(&attempt, self.form(&text, number), deadline)
                .await;
            let error = match (&report.outcome, report.status) {
                (AttemptOutcome::Delivered, _) => {
                    self.remember(attempt.delivery_id, number);
                    last_success = Some(report);
                    continue;
                }
                (_, Some(status)) => twilio_error(status, &answer),
                (_, None) => report.error.clone().unwrap_or_default(),
            };
            match report.outcome {
                AttemptOutcome::Retryable { retry_after } => {
                    retry = Some(retry.flatten().max(retry_after));
                }
                _ => {
                    permanent = true;
                    self.remember(attempt.delivery_id, number);
                }
            }
            errors.push(if several {
                format!("to {number}: {error}")
            } else {
                error
            });
            first_failure.get_or_insert(report);
        }
        let outcome = match (retry, permanent) {
            (Some(retry_after), _) => AttemptOutcome::Retryable { retry_after },
            (None, true) => AttemptOutcome::Permanent,
            (None, false) => AttemptOutcome::Delivered,
        };
        if !matches!(outcome, AttemptOutcome::Retryable { .. }) {
            self.forget(attempt.delivery_id);
        }
        let mut report = first_failure
            .or(last_success)
            .unwrap_or_else(|| AttemptReport {
                outcome: AttemptOutcome::Delivered,
                status: None,
                error: None,
                headers: Vec::new(),
                body_excerpt: Vec::new(),
                latency: started.elapsed(),
            });
        report.outcome = outcome;
        report.error = (!errors.is_empty()).then(|| errors.join("; "));
        report.latency = started.elapsed();
        report
    }

    fn templates(&self) -> TemplateSet {
        self.templates.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SID: &str = "AC0123456789abcdef0123456789abcdef";

    fn sms(extra: &str) -> Sms {
        let config: SmsDestination = toml::from_str(&format!(
            "id = \"sms\"\naccount_sid = \"{SID}\"\nauth_token = \"secret-token\"\n{extra}"
        ))
        .expect("valid");
        Sms::new(&config).expect("valid")
    }

    fn prepared(sms: &Sms, body: &[u8], event: Value) -> Prepared {
        Prepared {
            body: body.to_vec(),
            content_type: Some("application/json".into()),
            headers: Vec::new(),
            rendered: sms
                .templates()
                .render(&json!({"body": event}))
                .expect("renders"),
        }
    }

    #[test]
    fn texts_come_from_the_message_or_the_templates() {
        let sms = sms(r#"from = "+15017122661"
            to = "{{ .body.phone }}"
            body = "Payment of {{ .body.amount }} failed""#);
        assert_eq!(
            sms.describe(),
            format!("twilio https://api.twilio.com/2010-04-01/Accounts/{SID}/Messages.json")
        );
        let event = json!({"phone": "+15558675310, +15558675311", "amount": "$12"});
        let templated = sms
            .compose(&prepared(&sms, br#"{"raw": "event"}"#, event.clone()))
            .expect("composes");
        assert_eq!(templated.to, ["+15558675310", "+15558675311"]);
        assert_eq!(templated.body, "Payment of $12 failed");
        assert_eq!(templated.from.as_deref(), Some("+15017122661"));
        let own = sms
            .compose(&prepared(
                &sms,
                br#"{"to": ["+15550000001"], "body": "hello", "media_url": "https://x.example/a.png"}"#,
                event,
            ))
            .expect("composes");
        assert_eq!(own.to, ["+15550000001"]);
        assert_eq!(own.body, "hello");
        assert_eq!(own.media, ["https://x.example/a.png"]);
        let form = sms.form(&own, "+15550000001");
        assert_eq!(
            form,
            "To=%2B15550000001&From=%2B15017122661&Body=hello&MediaUrl=https%3A%2F%2Fx.example%2Fa.png"
        );
        assert!(!format!("{sms:?}").contains("secret-token"));
    }

    #[test]
    fn plain_bodies_and_messaging_services() {
        let sms = sms(
            r#"messaging_service_sid = "MG0123456789abcdef0123456789abcdef"
            to = ["+15550000001", "+15550000001"]
            status_callback = "https://hooks.example.com/in/twilio""#,
        );
        let text = sms
            .compose(&prepared(&sms, br#""quoted text""#, json!({})))
            .expect("composes");
        assert_eq!(text.to, ["+15550000001"], "duplicates are dropped");
        assert_eq!(text.body, "quoted text");
        assert_eq!(text.from, None);
        let form = sms.form(&text, "+15550000001");
        assert!(form.contains("MessagingServiceSid=MG0123"), "{form}");
        assert!(
            form.contains("StatusCallback=https%3A%2F%2Fhooks"),
            "{form}"
        );
        let plain = sms
            .compose(&prepared(&sms, b"not json", json!({})))
            .expect("composes");
        assert_eq!(plain.body, "not json");
    }

    #[test]
    fn unusable_messages_and_errors_are_explained() {
        let sms = sms(r#"from = "+15017122661"
            to = "{{ .body.phone }}""#);
        let error = sms
            .compose(&prepared(&sms, b"hi", json!({"phone": null})))
            .expect_err("no recipient");
        assert!(error.contains("no recipient"), "{error}");
        let error = sms
            .compose(&prepared(&sms, b" ", json!({"phone": "+1"})))
            .expect_err("empty");
        assert!(error.contains("the message is empty"), "{error}");
        let error = sms
            .compose(&prepared(&sms, br#"{"body": 1}"#, json!({"phone": "+1"})))
            .expect_err("bad body");
        assert!(error.contains("must be a string"), "{error}");
        assert_eq!(
            twilio_error(
                400,
                br#"{"code": 21211, "message": "The 'To' number 123 is not a valid phone number.", "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}"#
            ),
            "Twilio error 21211: The 'To' number 123 is not a valid phone number. (HTTP 400)"
        );
        assert_eq!(twilio_error(502, b"<html>"), "Twilio answered HTTP 502");
    }
}
