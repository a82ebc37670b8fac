//! `kind = "sms"`: text messages through Twilio's Messages API.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::email::one_or_many;
use super::{DestinationKind, default_timeout, http_url};
use crate::duration;
use crate::retry::RetryPolicy;

/// Twilio's REST API.
pub const TWILIO_API: &str = "https://api.twilio.com";

/// Who sends the text messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsProvider {
    /// Twilio's Messages API.
    #[default]
    Twilio,
}

/// An SMS destination.
///
/// The delivered body (usually a route transform's output) is the message: a JSON object with
/// `body` (or `text`) and optionally `to` and `media_url` is sent as such; a JSON string or any
/// other body is the text. `to`, `from` and `body` are templates; each rendered recipient entry
/// may hold several comma-separated numbers, and each recipient gets its own message.
///
/// `Debug` hides `auth_token`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsDestination {
    /// The destination's id.
    pub id: String,
    /// `twilio` (the default and only provider).
    #[serde(default)]
    pub provider: SmsProvider,
    /// Twilio Account SID (`AC…`).
    pub account_sid: String,
    /// Twilio auth token (a secret).
    pub auth_token: String,
    /// Sender number in E.164 form (`+15017122661`), or a sender id (template).
    #[serde(default)]
    pub from: Option<String>,
    /// Messaging Service SID (`MG…`), instead of `from`.
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
    /// Recipients: one comma-separated template or a list of templates.
    #[serde(default, deserialize_with = "one_or_many")]
    pub to: Vec<String>,
    /// Message text (template), used when the delivered message has no `body`.
    #[serde(default)]
    pub body: Option<String>,
    /// URL Twilio calls with status updates of each message.
    #[serde(default)]
    pub status_callback: Option<String>,
    /// API base URL (default `https://api.twilio.com`).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Per-attempt timeout.
    #[serde(with = "duration::human", default = "default_timeout")]
    pub timeout: Duration,
    /// Retry policy.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Attempts in flight at once.
    #[serde(default)]
    pub max_in_flight: Option<usize>,
    /// Deliveries per second at most.
    #[serde(default)]
    pub rate_limit: Option<f64>,
    /// Send in order.
    #[serde(default)]
    pub ordered: bool,
    /// `false` pauses the destination: its deliveries are kept pending and are sent once it is
    /// enabled again.
    #[serde(
        default = "crate::config::enabled_by_default",
        skip_serializing_if = "crate::config::is_enabled"
    )]
    pub enabled: bool,
}

impl std::fmt::Debug for SmsDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsDestination")
            .field("id", &self.id)
            .field("provider", &self.provider)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"********")
            .field("from", &self.from)
            .field("messaging_service_sid", &self.messaging_service_sid)
            .field("to", &self.to)
            .field("body", &self.body)
            .field("status_callback", &self.status_callback)
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("max_in_flight", &self.max_in_flight)
            .field("rate_limit", &self.rate_limit)
            .field("ordered", &self.ordered)
            .finish()
    }
}

/// Whether `sid` looks like a Twilio SID with `prefix`: the prefix and 32 letters or digits
/// (hexadecimal in real SIDs; Twilio's documentation writes `ACXXXX…`).
fn is_sid(sid: &str, prefix: &str) -> bool {
    sid.len() == 34
        && sid.starts_with(prefix)
        && sid[2..].bytes().all(|b| b.is_ascii_alphanumeric())
}

impl DestinationKind for SmsDestination {
    common_destination_fields!();

    fn validate(&self) -> Result<(), String> {
        if !is_sid(&self.account_sid, "AC") {
            return Err(
                "account_sid must be a Twilio Account SID: `AC` and 32 letters or digits".into(),
            );
        }
        if self.auth_token.trim().is_empty() {
            return Err("auth_token is required".into());
        }
        match (&self.from, &self.messaging_service_sid) {
            (Some(from), None) if !from.trim().is_empty() => {}
            (None, Some(sid)) if is_sid(sid, "MG") => {}
            (None, Some(_)) => {
                return Err("messaging_service_sid must be `MG` and 32 letters or digits".into());
            }
            (Some(_), Some(_)) => {
                return Err("set either from or messaging_service_sid, not both".into());
            }
            _ => {
                return Err(
                    "from (a number such as \"+15017122661\") or messaging_service_sid is required"
                        .into(),
                );
            }
        }
        if self.to.iter().any(|t| t.trim().is_empty()) {
            return Err("to has an empty entry".into());
        }
        if let Some(url) = &self.status_callback {
            http_url("status_callback", url)?;
        }
        http_url("base_url", self.base_url.as_deref().unwrap_or(TWILIO_API))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "AC0123456789abcdef0123456789abcdef";

    fn parse(toml_text: &str) -> Result<SmsDestination, String> {
        let destination: SmsDestination = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        destination.validate()?;
        Ok(destination)
    }

    #[test]
    fn settings_parse_and_hide_the_token() {
        let sms = parse(&format!(
            r#"
            id = "sms"
            account_sid = "{SID}"
            auth_token = "tok-secret"
            from = "+15017122661"
            to = "{{{{ .body.phone }}}}"
            body = "Payment failed"
            "#
        ))
        .expect("valid");
        assert_eq!(sms.provider, SmsProvider::Twilio);
        assert_eq!(sms.to, vec!["{{ .body.phone }}"]);
        assert!(!format!("{sms:?}").contains("tok-secret"));
    }

    #[test]
    fn bad_settings_are_refused_with_the_reason() {
        let cases = [
            (
                r#"account_sid = "AB123"
                auth_token = "t"
                from = "+1""#
                    .to_owned(),
                "account_sid must be",
            ),
            (
                format!(
                    r#"account_sid = "{SID}"
                    auth_token = " "
                    from = "+1""#
                ),
                "auth_token is required",
            ),
            (
                format!(
                    r#"account_sid = "{SID}"
                    auth_token = "t""#
                ),
                "or messaging_service_sid is required",
            ),
            (
                format!(
                    r#"account_sid = "{SID}"
                    auth_token = "t"
                    from = "+1"
                    messaging_service_sid = "MG0123456789abcdef0123456789abcdef""#
                ),
                "not both",
            ),
            (
                format!(
                    r#"account_sid = "{SID}"
                    auth_token = "t"
                    messaging_service_sid = "MG1""#
                ),
                "messaging_service_sid must be",
            ),
            (
                format!(
                    r#"account_sid = "{SID}"
                    auth_token = "t"
                    from = "+1"
                    base_url = "api.twilio.com""#
                ),
                "base_url must start with http",
            ),
            (
                format!(
                    r#"account_sid = "{SID}"
                    auth_token = "t"
                    from = "+1"
                    provider = "vonage""#
                ),
                "unknown variant `vonage`",
            ),
        ];
        for (text, expected) in cases {
            let text = format!("id = \"sms\"\n{text}");
            let error = parse(&text).expect_err(&text);
            assert!(error.contains(expected), "{text}: {error}");
        }
        parse(&format!(
            r#"id = "sms"
            account_sid = "{SID}"
            auth_token = "t"
            messaging_service_sid = "MG0123456789abcdef0123456789abcdef""#
        ))
        .expect("a messaging service is enough");
    }
}
