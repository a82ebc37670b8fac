//! Sample events for `switchboard trigger`.
//!
//! Each sample is a data file under `samples/<provider>/` at the repository root, embedded at
//! build time. Files may contain placeholders that get fresh values on every run, so that
//! de-duplication and replay windows behave as they do with the real provider:
//!
//! | placeholder | value |
//! |---|---|
//! | `{{event_id}}` | 24 random letters and digits (`{{event_id_<suffix>}}`: another one) |
//! | `{{delivery_id}}` | a random UUID (also sent as the provider's delivery-id header) |
//! | `{{timestamp}}` | now, unix seconds (also the signature timestamp) |
//! | `{{iso_time}}` | now, RFC 3339 UTC |
//! | `{{rfc2822_time}}` | now, RFC 2822 (`Tue, 14 Jan 2025 10:02:13 +0000`) |
//! | `{{sid}}` | 32 random lowercase hex digits (Twilio SIDs) |
//!
//! JSON files are written pretty for people and sent compact, except where the provider itself
//! pretty-prints (Stripe). Form files hold one `name=value` per line (`#` starts a comment) with
//! values as they read; they are form-encoded when sent.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use rand::Rng as _;
use rand::distr::Alphanumeric;

/// A provider that `trigger` can imitate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Provider {
    /// GitHub repository and organization webhooks.
    Github,
    /// Stripe webhook endpoints.
    Stripe,
    /// Slack Events API, slash commands and interactivity.
    Slack,
    /// Shopify app webhooks.
    Shopify,
    /// Twilio Messaging and Voice webhooks, Event Streams.
    Twilio,
    /// SendGrid signed Event Webhook.
    Sendgrid,
    /// Any Standard Webhooks (or Svix) sender.
    StandardWebhooks,
}

impl Provider {
    /// Every provider, in listing order.
    pub const ALL: [Self; 7] = [
        Self::Github,
        Self::Stripe,
        Self::Slack,
        Self::Shopify,
        Self::Twilio,
        Self::Sendgrid,
        Self::StandardWebhooks,
    ];

    /// The name used on the command line and as the verifier `kind`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Github => "github",
            Self::Stripe => "stripe",
            Self::Slack => "slack",
            Self::Shopify => "shopify",
            Self::Twilio => "twilio",
            Self::Sendgrid => "sendgrid",
            Self::StandardWebhooks => "standard-webhooks",
        }
    }
}

/// How a sample file becomes a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON, sent compact (whitespace outside strings removed; key order kept).
    Json,
    /// JSON, sent as written (trailing whitespace trimmed): Stripe pretty-prints its events.
    JsonAsWritten,
    /// `name=value` lines, sent `application/x-www-form-urlencoded`.
    Form,
    /// JSON, sent compact as the `payload` field of a form (Slack interactivity).
    FormPayload,
}

impl Format {
    /// Whether the body is form-encoded.
    pub fn is_form(self) -> bool {
        matches!(self, Self::Form | Self::FormPayload)
    }
}

/// One sample event.
#[derive(Debug)]
pub struct Sample {
    /// Who sends it.
    pub provider: Provider,
    /// The event name given on the command line (`pull_request.opened`, `orders/create`, …).
    pub event: &'static str,
    /// What it is, for `--list`.
    pub summary: &'static str,
    /// How the file is turned into a body.
    pub format: Format,
    /// The file, with placeholders.
    template: &'static str,
}

macro_rules! sample {
    ($provider:ident, $event:literal, $format:ident, $file:literal, $summary:literal) => {
        Sample {
            provider: Provider::$provider,
            event: $event,
            summary: $summary,
            format: Format::$format,
            template: include_str!(concat!("../../../../samples/", $file)),
        }
    };
}

/// Every sample, grouped by provider in [`Provider::ALL`] order.
pub static SAMPLES: &[Sample] = &[
    sample!(
        Github,
        "ping",
        Json,
        "github/ping.json",
        "sent when a webhook is created"
    ),
    sample!(
        Github,
        "push",
        Json,
        "github/push.json",
        "one commit pushed to main"
    ),
    sample!(
        Github,
        "pull_request.opened",
        Json,
        "github/pull_request.opened.json",
        "a pull request was opened"
    ),
    sample!(
        Github,
        "issues.opened",
        Json,
        "github/issues.opened.json",
        "an issue was opened"
    ),
    sample!(
        Stripe,
        "invoice.payment_failed",
        JsonAsWritten,
        "stripe/invoice.payment_failed.json",
        "a subscription renewal charge failed"
    ),
    sample!(
        Stripe,
        "payment_intent.succeeded",
        JsonAsWritten,
        "stripe/payment_intent.succeeded.json",
        "a payment succeeded"
    ),
    sample!(
        Stripe,
        "checkout.session.completed",
        JsonAsWritten,
        "stripe/checkout.session.completed.json",
        "a Checkout session was paid"
    ),
    sample!(
        Slack,
        "app_mention",
        Json,
        "slack/app_mention.json",
        "Events API: the app was @-mentioned"
    ),
    sample!(
        Slack,
        "message",
        Json,
        "slack/message.json",
        "Events API: a message in a channel"
    ),
    sample!(
        Slack,
        "url_verification",
        Json,
        "slack/url_verification.json",
        "Events API handshake: answer with the challenge"
    ),
    sample!(
        Slack,
        "slash_command",
        Form,
        "slack/slash_command.form",
        "a slash command (form-encoded)"
    ),
    sample!(
        Slack,
        "block_actions",
        FormPayload,
        "slack/block_actions.json",
        "a button click (form-encoded `payload=`)"
    ),
    sample!(
        Shopify,
        "orders/create",
        Json,
        "shopify/orders/create.json",
        "an order was placed"
    ),
    sample!(
        Shopify,
        "orders/paid",
        Json,
        "shopify/orders/paid.json",
        "an order was paid"
    ),
    sample!(
        Shopify,
        "customers/create",
        Json,
        "shopify/customers/create.json",
        "a customer account was created"
    ),
    sample!(
        Twilio,
        "sms.received",
        Form,
        "twilio/sms.received.form",
        "an incoming SMS (form-encoded)"
    ),
    sample!(
        Twilio,
        "call.status",
        Form,
        "twilio/call.status.form",
        "a call status callback (form-encoded)"
    ),
    sample!(
        Twilio,
        "message.status",
        Form,
        "twilio/message.status.form",
        "a message status callback (form-encoded)"
    ),
    sample!(
        Twilio,
        "event_streams.message.delivered",
        Json,
        "twilio/event_streams.message.delivered.json",
        "Event Streams (JSON body, signed with `bodySHA256`)"
    ),
    sample!(
        Sendgrid,
        "delivered",
        Json,
        "sendgrid/delivered.json",
        "two `delivered` events in one batch"
    ),
    sample!(
        Sendgrid,
        "bounce",
        Json,
        "sendgrid/bounce.json",
        "two `bounce` events in one batch"
    ),
    sample!(
        Sendgrid,
        "open",
        Json,
        "sendgrid/open.json",
        "two `open` events in one batch"
    ),
    sample!(
        StandardWebhooks,
        "invoice.paid",
        Json,
        "standard-webhooks/invoice.paid.json",
        "an invoice was paid"
    ),
];

/// The sample for `provider` and `event`.
pub fn find(provider: Provider, event: &str) -> Option<&'static Sample> {
    SAMPLES
        .iter()
        .find(|s| s.provider == provider && s.event == event)
}

/// The samples of `provider`.
pub fn of(provider: Provider) -> impl Iterator<Item = &'static Sample> {
    SAMPLES.iter().filter(move |s| s.provider == provider)
}

/// The values placeholders take in one run. Each name has one value per run, so the same
/// placeholder used twice (a SID in two fields) reads the same.
#[derive(Debug)]
pub struct Fresh {
    now: SystemTime,
    values: BTreeMap<String, String>,
}

impl Fresh {
    /// Fresh values as of now.
    pub fn new() -> Self {
        Self::at(SystemTime::now())
    }

    /// Fresh values as of `now`.
    pub fn at(now: SystemTime) -> Self {
        let secs = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let now = UNIX_EPOCH + Duration::from_secs(secs);
        let mut values = BTreeMap::new();
        values.insert("timestamp".to_owned(), secs.to_string());
        values.insert(
            "iso_time".to_owned(),
            humantime::format_rfc3339_seconds(now).to_string(),
        );
        values.insert(
            "rfc2822_time".to_owned(),
            httpdate::fmt_http_date(now).replace(" GMT", " +0000"),
        );
        values.insert("delivery_id".to_owned(), random_uuid());
        values.insert("sid".to_owned(), random_hex(16));
        Self { now, values }
    }

    /// Unix seconds, as substituted for `{{timestamp}}`.
    pub fn timestamp(&self) -> i64 {
        self.now
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }

    /// RFC 3339, as substituted for `{{iso_time}}`.
    pub fn iso_time(&self) -> &str {
        self.values.get("iso_time").map_or("", String::as_str)
    }

    /// The delivery UUID, as substituted for `{{delivery_id}}`.
    pub fn delivery_id(&self) -> &str {
        self.values.get("delivery_id").map_or("", String::as_str)
    }

    fn value(&mut self, name: &str) -> Option<&str> {
        if !self.values.contains_key(name) {
            let generated = match name {
                "event_id" => random_token(24),
                _ if name.starts_with("event_id_") => random_token(24),
                _ => return None,
            };
            self.values.insert(name.to_owned(), generated);
        }
        self.values.get(name).map(String::as_str)
    }

    /// Replaces every `{{name}}` in `template`; an unknown name is an error.
    pub fn substitute(&mut self, template: &str) -> anyhow::Result<String> {
        let mut out = String::with_capacity(template.len() + 64);
        let mut rest = template;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| anyhow!("unclosed `{{{{` in sample"))?;
            let name = after[..end].trim();
            let value = self
                .value(name)
                .ok_or_else(|| anyhow!("unknown placeholder `{{{{{name}}}}}` in sample"))?;
            out.push_str(value);
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// A random token of letters and digits.
pub fn random_token(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

/// A random (version 4) UUID.
pub fn random_uuid() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

/// A rendered body and its content type.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// `Content-Type` of the body.
    pub content_type: &'static str,
    /// The exact bytes to send.
    pub body: Vec<u8>,
}

impl Sample {
    /// The sample with fresh values, encoded as the provider sends it.
    pub fn render(&self, fresh: &mut Fresh) -> anyhow::Result<Rendered> {
        let text = fresh
            .substitute(self.template)
            .with_context(|| format!("{} {}", self.provider.name(), self.event))?;
        let (content_type, body) = match self.format {
            Format::Json => ("application/json", compact_json(&text)),
            Format::JsonAsWritten => ("application/json", text.trim_end().to_owned()),
            Format::Form => (
                "application/x-www-form-urlencoded",
                encode_form(form_lines(&text)?),
            ),
            Format::FormPayload => (
                "application/x-www-form-urlencoded",
                encode_form(vec![("payload", compact_json(&text))]),
            ),
        };
        Ok(Rendered {
            content_type,
            body: body.into_bytes(),
        })
    }
}

/// Removes whitespace outside JSON strings, keeping everything else byte for byte (so key order
/// and number spelling stay as written).
pub fn compact_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

fn form_lines(text: &str) -> anyhow::Result<Vec<(&str, String)>> {
    let mut pairs = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line
            .split_once('=')
            .ok_or_else(|| anyhow!("form sample line without `=`: {line}"))?;
        if name.is_empty() {
            bail!("form sample line without a name: {line}");
        }
        pairs.push((name, value.to_owned()));
    }
    Ok(pairs)
}

fn encode_form(pairs: Vec<(&str, String)>) -> String {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in &pairs {
        form.append_pair(name, value);
    }
    form.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_renders_without_leftover_placeholders() {
        for sample in SAMPLES {
            let what = format!("{} {}", sample.provider.name(), sample.event);
            let rendered = sample.render(&mut Fresh::new()).expect(&what);
            let text = String::from_utf8(rendered.body).expect("utf-8");
            assert!(!text.contains("{{"), "{what}: {text}");
            match sample.format {
                Format::Json | Format::JsonAsWritten => {
                    serde_json::from_str::<serde_json::Value>(&text).expect(&what);
                }
                Format::Form => {
                    let pairs: Vec<_> = url::form_urlencoded::parse(text.as_bytes()).collect();
                    assert!(pairs.len() > 5, "{what}");
                }
                Format::FormPayload => {
                    let (name, payload) = url::form_urlencoded::parse(text.as_bytes())
                        .next()
                        .expect(&what);
                    assert_eq!(name, "payload");
                    serde_json::from_str::<serde_json::Value>(&payload).expect(&what);
                }
            }
        }
    }

    #[test]
    fn every_provider_has_samples_and_events_are_unique() {
        for provider in Provider::ALL {
            assert!(of(provider).next().is_some(), "{provider:?}");
        }
        for (i, a) in SAMPLES.iter().enumerate() {
            for b in &SAMPLES[i + 1..] {
                assert!(
                    a.provider != b.provider || a.event != b.event,
                    "{} twice",
                    a.event
                );
            }
        }
    }

    #[test]
    fn placeholders_are_fresh_per_run_and_stable_within_one() {
        let mut one = Fresh::new();
        let a = one
            .substitute("{{event_id}} {{event_id}} {{event_id_2}} {{sid}}")
            .expect("known");
        let words: Vec<_> = a.split(' ').collect();
        assert_eq!(words[0], words[1]);
        assert_ne!(words[0], words[2]);
        assert_eq!(words[3].len(), 32);
        let b = Fresh::new().substitute("{{event_id}}").expect("known");
        assert_ne!(words[0], b);
        assert!(Fresh::new().substitute("{{nope}}").is_err());
        assert!(Fresh::new().substitute("{{event_id").is_err());
    }

    #[test]
    fn times_are_formatted_as_the_providers_do() {
        let mut fresh = Fresh::at(UNIX_EPOCH + Duration::from_secs(1_736_848_933));
        assert_eq!(fresh.timestamp(), 1_736_848_933);
        assert_eq!(fresh.iso_time(), "2025-01-14T10:02:13Z");
        assert_eq!(
            fresh.substitute("{{rfc2822_time}}").expect("known"),
            "Tue, 14 Jan 2025 10:02:13 +0000"
        );
    }

    #[test]
    fn compacting_keeps_strings_and_order() {
        assert_eq!(
            compact_json("{\n  \"b\": \"a b\\\" c\",\n  \"a\": [1, 2]\n}\n"),
            r#"{"b":"a b\" c","a":[1,2]}"#
        );
    }
}
