//! E-mail: the prepared message becomes a mail with a text and/or HTML part, sent through an
//! SMTP relay ([`smtp`]) or SendGrid's mail API ([`sendgrid`]).
//!
//! What is sent: a delivered body that is a JSON object with `text` and/or `html` is the message,
//! and its `subject`, `to`, `cc`, `bcc` and `reply_to` win over the destination's templates; a
//! JSON string is the text; any other body is the text part as it is (the HTML part when its
//! content type is `text/html`). Addresses are `user@example.com` or
//! `Name <user@example.com>`; a recipient entry may hold several, separated by commas, or be a
//! JSON array of them. A message that cannot be built (no recipient, a bad address, no body) fails
//! permanently: sending it again cannot help.

pub mod sendgrid;
pub mod smtp;

use async_trait::async_trait;
use lettre::message::Mailbox;
use serde_json::{Map, Value};
use switchboard_core::AttemptOutcome;
use switchboard_core::config::{EmailDestination, EmailProvider};

use super::{Attempt, Connector};
use crate::delivery::sender::{AttemptReport, Prepared};
use crate::template::{Rendered, TemplateSet};

/// A configured e-mail destination.
pub struct Email {
    templates: TemplateSet,
    counts: Counts,
    transport: Transport,
}

/// How many recipient templates each field has (`to:0`, `to:1`…).
#[derive(Debug, Clone, Copy)]
struct Counts {
    to: usize,
    cc: usize,
    bcc: usize,
    reply_to: bool,
    subject: bool,
}

enum Transport {
    Smtp(Box<smtp::Smtp>),
    Sendgrid(sendgrid::Sendgrid),
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Email")
            .field("to", &self.describe())
            .finish()
    }
}

/// A mail ready to send: every address parsed, the body chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct Composed {
    /// Sender.
    pub from: Mailbox,
    /// `Reply-To`.
    pub reply_to: Option<Mailbox>,
    /// Recipients (at least one among `to`, `cc`, `bcc`; no address twice).
    pub to: Vec<Mailbox>,
    /// Carbon copies.
    pub cc: Vec<Mailbox>,
    /// Blind copies.
    pub bcc: Vec<Mailbox>,
    /// Subject (may be empty).
    pub subject: String,
    /// Text part.
    pub text: Option<String>,
    /// HTML part.
    pub html: Option<String>,
}

impl Email {
    /// Checks the settings: templates compile, fixed addresses parse, the transport's settings
    /// (and any `ca_file`) are usable. Nothing connects until the first message.
    pub fn new(config: &EmailDestination) -> Result<Self, String> {
        let mut templates = TemplateSet::new();
        templates.add("from", &config.from)?;
        if let Some(reply_to) = &config.reply_to {
            templates.add("reply_to", reply_to)?;
        }
        if let Some(subject) = &config.subject {
            templates.add("subject", subject)?;
        }
        for (field, list) in [("to", &config.to), ("cc", &config.cc), ("bcc", &config.bcc)] {
            for (i, source) in list.iter().enumerate() {
                templates.add(format!("{field}:{i}"), source)?;
            }
        }
        let counts = Counts {
            to: config.to.len(),
            cc: config.cc.len(),
            bcc: config.bcc.len(),
            reply_to: config.reply_to.is_some(),
            subject: config.subject.is_some(),
        };
        // Fixed addresses are checked now, so a typo is a configuration error.
        let fixed = [("from", &config.from)]
            .into_iter()
            .chain(config.reply_to.iter().map(|r| ("reply_to", r)))
            .chain(config.to.iter().map(|t| ("to", t)))
            .chain(config.cc.iter().map(|t| ("cc", t)))
            .chain(config.bcc.iter().map(|t| ("bcc", t)));
        for (field, source) in fixed {
            if !source.contains("{{") {
                mailboxes(field, source)?;
            }
        }
        if !config.from.contains("{{") && single("from", &config.from)?.is_none() {
            return Err("from must be an address".into());
        }
        let transport = match config.provider {
            EmailProvider::Smtp => Transport::Smtp(Box::new(smtp::Smtp::new(config)?)),
            EmailProvider::Sendgrid => Transport::Sendgrid(sendgrid::Sendgrid::new(config)?),
        };
        Ok(Self {
            templates,
            counts,
            transport,
        })
    }

    /// Builds the mail for a prepared message.
    pub fn compose(&self, message: &Prepared) -> Result<Composed, String> {
        compose(self.counts, &message.rendered, message)
    }
}

fn compose(counts: Counts, rendered: &Rendered, message: &Prepared) -> Result<Composed, String> {
    let body: Option<Value> = serde_json::from_slice(&message.body).ok();
    let object = match &body {
        Some(Value::Object(map)) if map.contains_key("text") || map.contains_key("html") => {
            Some(map)
        }
        _ => None,
    };
    let from_rendered = |field: &str, count: usize| -> Result<Vec<Mailbox>, String> {
        let mut out = Vec::new();
        for i in 0..count {
            let value = rendered.get(&format!("{field}:{i}")).unwrap_or_default();
            out.extend(mailboxes(field, value)?);
        }
        Ok(out)
    };
    let list = |field: &str, count: usize| -> Result<Vec<Mailbox>, String> {
        match object.and_then(|o| o.get(field)) {
            Some(value) => mailboxes_from_json(field, value),
            None => from_rendered(field, count),
        }
    };
    let from = single("from", rendered.get("from").unwrap_or_default())?
        .ok_or("from rendered empty: the sender address is required")?;
    let reply_to = match object.and_then(|o| o.get("reply_to")) {
        Some(Value::String(text)) => single("reply_to", text)?,
        Some(Value::Null) => None,
        Some(_) => return Err("reply_to in the message must be a string".into()),
        None if counts.reply_to => {
            single("reply_to", rendered.get("reply_to").unwrap_or_default())?
        }
        None => None,
    };
    let mut to = list("to", counts.to)?;
    let mut cc = list("cc", counts.cc)?;
    let mut bcc = list("bcc", counts.bcc)?;
    // An address appears once: SendGrid refuses duplicates, and SMTP would send twice.
    let mut seen = std::collections::HashSet::new();
    for field in [&mut to, &mut cc, &mut bcc] {
        field.retain(|m| seen.insert(m.email.to_string().to_ascii_lowercase()));
    }
    if to.is_empty() && cc.is_empty() && bcc.is_empty() {
        return Err(
            "no recipient: `to` rendered empty and the message gives none (set `to`, or have the route transform output a `to`)".into(),
        );
    }
    let subject = match object.and_then(|o| o.get("subject")) {
        Some(Value::String(subject)) => subject.clone(),
        Some(Value::Null) => String::new(),
        Some(_) => return Err("subject in the message must be a string".into()),
        None if counts.subject => rendered.get("subject").unwrap_or_default().to_owned(),
        None => String::new(),
    };
    // Header injection is impossible through lettre, but a subject is one line.
    let subject = subject.replace(['\r', '\n'], " ");
    let (text, html) = match object {
        Some(object) => (part(object, "text")?, part(object, "html")?),
        None => {
            let text = match &body {
                Some(Value::String(text)) => text.clone(),
                _ => String::from_utf8_lossy(&message.body).into_owned(),
            };
            let is_html = message.content_type.as_deref().is_some_and(|ct| {
                ct.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("text/html")
            });
            if is_html {
                (None, Some(text))
            } else {
                (Some(text), None)
            }
        }
    };
    let text = text.filter(|t| !t.is_empty());
    let html = html.filter(|h| !h.is_empty());
    if text.is_none() && html.is_none() {
        return Err("the message is empty: give it a `text` or an `html` part".into());
    }
    Ok(Composed {
        from,
        reply_to,
        to,
        cc,
        bcc,
        subject,
        text,
        html,
    })
}

fn part(object: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(format!("{key} in the message must be a string")),
    }
}

/// The one address of `text` (`None` when it is blank).
fn single(field: &str, text: &str) -> Result<Option<Mailbox>, String> {
    let mut found = mailboxes(field, text)?;
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        n => Err(format!("{field} must be one address, got {n}")),
    }
}

fn mailboxes_from_json(field: &str, value: &Value) -> Result<Vec<Mailbox>, String> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::String(text) => mailboxes(field, text),
        Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                match item {
                    Value::String(text) => out.extend(mailboxes(field, text)?),
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

/// Parses a rendered recipient entry: comma-separated addresses, or a JSON array of them (what
/// a placeholder producing an array renders to). Blank entries are skipped.
pub fn mailboxes(field: &str, text: &str) -> Result<Vec<Mailbox>, String> {
    let text = text.trim();
    if text.starts_with('[')
        && let Ok(Value::Array(items)) = serde_json::from_str::<Value>(text)
    {
        return mailboxes_from_json(field, &Value::Array(items));
    }
    split_addresses(text)
        .into_iter()
        .map(|entry| parse_mailbox(entry).map_err(|e| format!("{field}: `{entry}` {e}")))
        .collect()
}

/// Splits on commas outside quoted names and angle brackets.
fn split_addresses(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut quoted, mut angle, mut escaped) = (false, false, false);
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' | ';' if !quoted && !angle => {
                out.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(text[start..].trim());
    out.retain(|entry| !entry.is_empty());
    out
}

/// Parses one `user@example.com` or `Name <user@example.com>`, refusing trailing text (which
/// lettre's parser would silently drop).
fn parse_mailbox(entry: &str) -> Result<Mailbox, String> {
    let invalid = || "is not a valid address".to_owned();
    let mailbox: Mailbox = entry.parse().map_err(|_| invalid())?;
    let address = mailbox.email.to_string();
    let exact = match (entry.rfind('<'), entry.strip_suffix('>')) {
        (Some(open), Some(inner)) => inner[open + 1..].trim() == address,
        (None, _) => entry == address,
        _ => false,
    };
    if exact { Ok(mailbox) } else { Err(invalid()) }
}

/// A report for an attempt that got no usable answer, or that was refused before sending.
pub fn failed(
    outcome: AttemptOutcome,
    error: String,
    started: std::time::Instant,
) -> AttemptReport {
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
impl Connector for Email {
    fn describe(&self) -> String {
        match &self.transport {
            Transport::Smtp(smtp) => smtp.describe(),
            Transport::Sendgrid(sendgrid) => sendgrid.describe(),
        }
    }

    async fn deliver(&self, attempt: Attempt<'_>) -> AttemptReport {
        let started = std::time::Instant::now();
        let mail = match self.compose(attempt.message) {
            Ok(mail) => mail,
            Err(error) => return failed(AttemptOutcome::Permanent, error, started),
        };
        match &self.transport {
            Transport::Smtp(smtp) => smtp.send(&attempt, mail).await,
            Transport::Sendgrid(sendgrid) => sendgrid.send(&attempt, mail).await,
        }
    }

    fn templates(&self) -> TemplateSet {
        self.templates.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(extra: &str) -> EmailDestination {
        toml::from_str(&format!(
            "id = \"mail\"\nhost = \"smtp.example.com\"\nfrom = \"Billing <billing@example.com>\"\n{extra}"
        ))
        .expect("valid")
    }

    fn prepared(email: &Email, body: &[u8], content_type: &str, event: Value) -> Prepared {
        let rendered = email
            .templates()
            .render(&json!({"body": event}))
            .expect("renders");
        Prepared {
            body: body.to_vec(),
            content_type: Some(content_type.into()),
            headers: Vec::new(),
            rendered,
        }
    }

    #[test]
    fn addresses_parse_strictly() {
        let found = mailboxes(
            "to",
            r#"a@example.com, "Doe, Jane" <jane@example.com>; Bob <bob@example.com>,"#,
        )
        .expect("valid");
        let emails: Vec<String> = found.iter().map(|m| m.email.to_string()).collect();
        assert_eq!(
            emails,
            ["a@example.com", "jane@example.com", "bob@example.com"]
        );
        assert_eq!(found[1].name.as_deref(), Some("Doe, Jane"));
        let from_json = mailboxes("to", r#"["x@example.com","y@example.com"]"#).expect("valid");
        assert_eq!(from_json.len(), 2);
        assert!(mailboxes("to", "  ").expect("blank").is_empty());
        for bad in [
            "not-an-address",
            "a@example.com trailing",
            "Name <a@example.com",
        ] {
            let error = mailboxes("to", bad).expect_err(bad);
            assert!(error.contains("is not a valid address"), "{bad}: {error}");
        }
    }

    #[test]
    fn the_message_object_wins_over_templates() {
        let email = Email::new(&config(
            r#"to = ["{{ .body.customer.email }}", "ops@example.com"]
            cc = "{{ .body.cc }}"
            subject = "Payment failed for {{ .body.customer.name }}""#,
        ))
        .expect("valid");
        let event = json!({"customer": {"email": "c@example.com", "name": "Ada"}, "cc": null});
        let plain = email
            .compose(&prepared(
                &email,
                b"plain words",
                "text/plain",
                event.clone(),
            ))
            .expect("composes");
        assert_eq!(plain.subject, "Payment failed for Ada");
        assert_eq!(plain.to.len(), 2);
        assert!(plain.cc.is_empty());
        assert_eq!(plain.text.as_deref(), Some("plain words"));
        assert_eq!(plain.html, None);
        assert_eq!(plain.from.name.as_deref(), Some("Billing"));

        let body = json!({"subject": "Own", "to": ["x@example.com"], "bcc": "ops@example.com, x@example.com", "text": "t", "html": "<p>h</p>"});
        let own = email
            .compose(&prepared(
                &email,
                body.to_string().as_bytes(),
                "application/json",
                event.clone(),
            ))
            .expect("composes");
        assert_eq!(own.subject, "Own");
        assert_eq!(own.to[0].email.to_string(), "x@example.com");
        // The duplicate is dropped from bcc.
        assert_eq!(own.bcc.len(), 1);
        assert_eq!(own.html.as_deref(), Some("<p>h</p>"));

        let html = email
            .compose(&prepared(
                &email,
                b"<b>hi</b>",
                "text/html; charset=utf-8",
                event,
            ))
            .expect("composes");
        assert_eq!(html.html.as_deref(), Some("<b>hi</b>"));
        assert_eq!(html.text, None);
    }

    #[test]
    fn unusable_messages_are_refused() {
        let email = Email::new(&config(r#"to = "{{ .body.email }}""#)).expect("valid");
        let cases = [
            (json!({"email": null}), b"x".to_vec(), "no recipient"),
            (
                json!({"email": "nope"}),
                b"x".to_vec(),
                "is not a valid address",
            ),
            (
                json!({"email": "a@example.com"}),
                b"".to_vec(),
                "the message is empty",
            ),
            (
                json!({"email": "a@example.com"}),
                br#"{"text": 5}"#.to_vec(),
                "text in the message must be a string",
            ),
        ];
        for (event, body, expected) in cases {
            let error = email
                .compose(&prepared(&email, &body, "application/json", event))
                .expect_err(expected);
            assert!(error.contains(expected), "{error}");
        }
        let error = Email::new(&config(r#"to = "a@example.com, oops""#)).expect_err("bad to");
        assert!(error.contains("`oops` is not a valid address"), "{error}");
        let mut bad_from = config("");
        bad_from.from = "billing".into();
        assert!(Email::new(&bad_from).is_err());
        assert!(Email::new(&config(r#"subject = "{{ .body | }}""#)).is_err());
    }
}
