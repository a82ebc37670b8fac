//! `kind = "email"`: SMTP, or the SendGrid mail API.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::{DestinationKind, default_timeout, http_url};
use crate::duration;
use crate::retry::RetryPolicy;

/// SendGrid's API.
pub const SENDGRID_API: &str = "https://api.sendgrid.com";

/// How an e-mail destination sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailProvider {
    /// An SMTP server (submission relay).
    #[default]
    Smtp,
    /// SendGrid's v3 mail API (`POST /v3/mail/send`).
    Sendgrid,
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with `STARTTLS`, which is required (port 587 by default).
    #[default]
    Starttls,
    /// TLS from the first byte, "SMTPS" (port 465 by default).
    Tls,
    /// No encryption (port 25 by default): for a relay on the same host or network only.
    None,
}

impl SmtpTls {
    /// The port used when `port` is not set.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Starttls => 587,
            Self::Tls => 465,
            Self::None => 25,
        }
    }

    /// The name written in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starttls => "starttls",
            Self::Tls => "tls",
            Self::None => "none",
        }
    }
}

/// An e-mail destination.
///
/// The delivered body (usually a route transform's output) is the message: a JSON object with
/// `text` and/or `html` (and optionally `subject`, `to`, `cc`, `bcc`, `reply_to`, which win over
/// the settings here) is sent as such; any other body is the text part. `from`, `to`, `cc`,
/// `bcc`, `reply_to` and `subject` are templates (`{{ .body.customer.email }}`); each rendered
/// recipient entry may hold several comma-separated addresses.
///
/// `Debug` hides `password` and `api_key`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailDestination {
    /// The destination's id.
    pub id: String,
    /// `smtp` (default) or `sendgrid`.
    #[serde(default)]
    pub provider: EmailProvider,
    /// SMTP server host name (SMTP).
    #[serde(default)]
    pub host: Option<String>,
    /// SMTP port (default 587 for `starttls`, 465 for `tls`, 25 for `none`).
    #[serde(default)]
    pub port: Option<u16>,
    /// `starttls` (default), `tls` or `none` (SMTP).
    #[serde(default)]
    pub tls: Option<SmtpTls>,
    /// SMTP user name (with `password`).
    #[serde(default)]
    pub username: Option<String>,
    /// SMTP password (a secret).
    #[serde(default)]
    pub password: Option<String>,
    /// PEM file of extra certificate authorities trusted for the SMTP server's certificate
    /// (a private relay); the system's roots are trusted too.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// SendGrid API key (a secret; `provider = "sendgrid"`).
    #[serde(default)]
    pub api_key: Option<String>,
    /// SendGrid API base URL (default `https://api.sendgrid.com`).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Sender: `billing@example.com` or `Billing <billing@example.com>` (template).
    pub from: String,
    /// `Reply-To` address (template).
    #[serde(default)]
    pub reply_to: Option<String>,
    /// Recipients: one comma-separated template or a list of templates.
    #[serde(default, deserialize_with = "one_or_many")]
    pub to: Vec<String>,
    /// Carbon-copy recipients, as `to`.
    #[serde(default, deserialize_with = "one_or_many")]
    pub cc: Vec<String>,
    /// Blind-copy recipients, as `to` (never shown in the message).
    #[serde(default, deserialize_with = "one_or_many")]
    pub bcc: Vec<String>,
    /// Subject (template); a `subject` in the message wins.
    #[serde(default)]
    pub subject: Option<String>,
    /// Per-attempt timeout.
    #[serde(with = "duration::human", default = "default_timeout")]
    pub timeout: Duration,
    /// Retry policy.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Attempts in flight at once; for SMTP also the most connections to the relay (10 when
    /// unset, whatever `delivery.per_destination_concurrency` says).
    #[serde(default)]
    pub max_in_flight: Option<usize>,
    /// Messages per second at most.
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

impl std::fmt::Debug for EmailDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailDestination")
            .field("id", &self.id)
            .field("provider", &self.provider)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "********"))
            .field("ca_file", &self.ca_file)
            .field("api_key", &self.api_key.as_ref().map(|_| "********"))
            .field("base_url", &self.base_url)
            .field("from", &self.from)
            .field("reply_to", &self.reply_to)
            .field("to", &self.to)
            .field("cc", &self.cc)
            .field("bcc", &self.bcc)
            .field("subject", &self.subject)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("max_in_flight", &self.max_in_flight)
            .field("rate_limit", &self.rate_limit)
            .field("ordered", &self.ordered)
            .finish()
    }
}

impl EmailDestination {
    /// The SMTP security mode (default `starttls`).
    pub fn smtp_tls(&self) -> SmtpTls {
        self.tls.unwrap_or_default()
    }

    /// The SMTP port: `port`, or the mode's default.
    pub fn smtp_port(&self) -> u16 {
        self.port.unwrap_or(self.smtp_tls().default_port())
    }
}

/// Deserializes a recipient setting written as one string or as a list of strings.
pub fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged, expecting = "a string or a list of strings")]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

/// Whether `host` names this machine (where a plain connection does not cross a network).
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl DestinationKind for EmailDestination {
    common_destination_fields!();

    fn validate(&self) -> Result<(), String> {
        if self.from.trim().is_empty() {
            return Err("from must be an address, e.g. `Billing <billing@example.com>`".into());
        }
        let blank = |field: &str, value: &[String]| {
            if value.iter().any(|v| v.trim().is_empty()) {
                Err(format!("{field} has an empty entry"))
            } else {
                Ok(())
            }
        };
        blank("to", &self.to)?;
        blank("cc", &self.cc)?;
        blank("bcc", &self.bcc)?;
        match self.provider {
            EmailProvider::Smtp => {
                for (field, set) in [
                    ("api_key", self.api_key.is_some()),
                    ("base_url", self.base_url.is_some()),
                ] {
                    if set {
                        return Err(format!(
                            "{field} is for provider = \"sendgrid\"; SMTP uses host, port, tls, username and password"
                        ));
                    }
                }
                let host = self.host.as_deref().map(str::trim).unwrap_or_default();
                if host.is_empty() {
                    return Err("host is required for SMTP (e.g. host = \"smtp.example.com\"), or set provider = \"sendgrid\"".into());
                }
                if host.contains("://") || host.contains(char::is_whitespace) || host.contains('/')
                {
                    return Err(format!(
                        "host must be a host name or address, without scheme or path (got `{host}`)"
                    ));
                }
                if self.port == Some(0) {
                    return Err("port must be 1-65535".into());
                }
                match (&self.username, &self.password) {
                    (Some(user), Some(_)) if user.is_empty() => {
                        return Err("username must not be empty".into());
                    }
                    (Some(_), None) | (None, Some(_)) => {
                        return Err("username and password go together".into());
                    }
                    _ => {}
                }
                if self.password.is_some()
                    && self.smtp_tls() == SmtpTls::None
                    && !is_loopback_host(host)
                {
                    return Err("tls = \"none\" would send the password in clear over the network; use tls = \"starttls\" or \"tls\"".into());
                }
                if self.ca_file.is_some() && self.smtp_tls() == SmtpTls::None {
                    return Err("ca_file needs tls = \"starttls\" or \"tls\"".into());
                }
                Ok(())
            }
            EmailProvider::Sendgrid => {
                for (field, set) in [
                    ("host", self.host.is_some()),
                    ("port", self.port.is_some()),
                    ("tls", self.tls.is_some()),
                    ("username", self.username.is_some()),
                    ("password", self.password.is_some()),
                    ("ca_file", self.ca_file.is_some()),
                ] {
                    if set {
                        return Err(format!(
                            "{field} is for SMTP; provider = \"sendgrid\" uses api_key (and base_url)"
                        ));
                    }
                }
                if self.api_key.as_deref().is_none_or(|k| k.trim().is_empty()) {
                    return Err("api_key is required for provider = \"sendgrid\"".into());
                }
                http_url("base_url", self.base_url.as_deref().unwrap_or(SENDGRID_API))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<EmailDestination, String> {
        let destination: EmailDestination = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        destination.validate()?;
        Ok(destination)
    }

    #[test]
    fn smtp_settings_parse_with_defaults() {
        let email = parse(
            r#"
            id = "mail"
            host = "smtp.example.com"
            username = "apikey"
            password = "hunter2"
            from = "Billing <billing@example.com>"
            to = "{{ .body.email }}, ops@example.com"
            subject = "Payment failed"
            "#,
        )
        .expect("valid");
        assert_eq!(email.provider, EmailProvider::Smtp);
        assert_eq!(email.smtp_tls(), SmtpTls::Starttls);
        assert_eq!(email.smtp_port(), 587);
        assert_eq!(email.to, vec!["{{ .body.email }}, ops@example.com"]);
        let debug = format!("{email:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        let tls = parse(
            r#"
            id = "mail"
            host = "smtp.example.com"
            tls = "tls"
            from = "a@example.com"
            to = ["b@example.com", "c@example.com"]
            "#,
        )
        .expect("valid");
        assert_eq!(tls.smtp_port(), 465);
        assert_eq!(tls.to.len(), 2);
    }

    #[test]
    fn sendgrid_settings_parse_and_hide_the_key() {
        let email = parse(
            r#"
            id = "mail"
            provider = "sendgrid"
            api_key = "SG.secret"
            from = "a@example.com"
            to = ["b@example.com"]
            "#,
        )
        .expect("valid");
        assert!(!format!("{email:?}").contains("SG.secret"));
    }

    #[test]
    fn bad_settings_are_refused_with_the_reason() {
        let cases = [
            (
                r#"id = "m"
                from = "a@example.com""#,
                "host is required",
            ),
            (
                r#"id = "m"
                host = "smtp://x"
                from = "a@example.com""#,
                "without scheme",
            ),
            (
                r#"id = "m"
                host = "smtp.example.com"
                username = "u"
                from = "a@example.com""#,
                "go together",
            ),
            (
                r#"id = "m"
                host = "smtp.example.com"
                tls = "none"
                username = "u"
                password = "p"
                from = "a@example.com""#,
                "in clear",
            ),
            (
                r#"id = "m"
                host = "smtp.example.com"
                tls = "plain"
                from = "a@example.com""#,
                "unknown variant `plain`",
            ),
            (
                r#"id = "m"
                host = "smtp.example.com"
                api_key = "k"
                from = "a@example.com""#,
                "api_key is for provider",
            ),
            (
                r#"id = "m"
                provider = "sendgrid"
                from = "a@example.com""#,
                "api_key is required",
            ),
            (
                r#"id = "m"
                provider = "sendgrid"
                api_key = "k"
                host = "smtp.example.com"
                from = "a@example.com""#,
                "host is for SMTP",
            ),
            (
                r#"id = "m"
                provider = "sendgrid"
                api_key = "k"
                base_url = "ftp://x"
                from = "a@example.com""#,
                "base_url must start with http",
            ),
            (
                r#"id = "m"
                host = "smtp.example.com"
                from = " ""#,
                "from must be",
            ),
            (
                r#"id = "m"
                host = "smtp.example.com"
                from = "a@example.com"
                to = 5"#,
                "a string or a list of strings",
            ),
            (
                r#"id = "m"
                host = "smtp.example.com"
                from = "a@example.com"
                to = ["b@example.com", ""]"#,
                "to has an empty entry",
            ),
        ];
        for (text, expected) in cases {
            let error = parse(text).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
        // Loopback relays may take credentials without TLS.
        parse(
            r#"id = "m"
            host = "127.0.0.1"
            tls = "none"
            username = "u"
            password = "p"
            from = "a@example.com""#,
        )
        .expect("valid on loopback");
    }
}
