//! `kind = "schedule"`: an HTTP API polled on a cron schedule.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{check_header, check_programs, redacted_headers};
use crate::duration;

/// A source that `GET`s a URL on a cron schedule and stores the response as one event, or —
/// with `items` — each element of a jq-selected array as its own event. With `key`, an item
/// whose key this source already stored is skipped, so each poll stores only what is new.
///
/// A non-2xx answer or a transport error stores nothing; the next tick tries again.
/// Credentials come from `headers`, or from a named connection (`connection = "…"`, OAuth2
/// refresh, pacing and retries included): `url` is then a path below the connection's
/// provider base URL (`repos/acme/app/issues?state=open`).
///
/// ```toml
/// [[sources]]
/// id = "new-tickets"
/// kind = "schedule"
/// schedule = "*/5 * * * *"
/// url = "https://api.example.com/tickets?status=open"
/// headers = { Authorization = "Bearer …" }
/// items = ".tickets"
/// key = ".id"
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSource {
    /// Cron expression: 5 fields (minute hour day-of-month month day-of-week) or 6 (with
    /// seconds first); names (`MON`, `JAN`), ranges, steps, `L`, `W`, `#` and `@hourly`-style
    /// aliases are understood.
    pub schedule: String,
    /// IANA time zone the expression is read in (`Europe/Paris`); UTC when absent. Named
    /// zones need the system's time zone database (the `tzdata` package).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// `http://` or `https://` URL to `GET`. Do not put credentials in it: use `headers`. With
    /// `connection`, a path (and query) below the provider's base URL instead.
    pub url: String,
    /// A connection (`/v1/connections`) to poll through: its base URL, credentials, pacing,
    /// retries and circuit breaker apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// Request headers (credentials go here; their values are secrets).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// jq, run on the response (which must then be JSON): selects the items to store, one
    /// event each. Either one array (`.data`) or several outputs (`.data[]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<String>,
    /// jq, run on each item (or the whole response without `items`): its de-duplication key
    /// (a string or number). An item whose key this source already stored is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// jq, run on each item (or the whole response): the event type (a string or number;
    /// `null` for none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// Also poll once as soon as the source starts, instead of waiting for the first tick.
    #[serde(default)]
    pub run_on_start: bool,
    /// Time allowed for one request, response body included.
    #[serde(with = "duration::human", default = "default_timeout")]
    pub timeout: Duration,
    /// Largest response body accepted, in bytes; a larger one stores nothing.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
}

impl fmt::Debug for ScheduleSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers = redacted_headers(&self.headers);
        f.debug_struct("ScheduleSource")
            .field("schedule", &self.schedule)
            .field("timezone", &self.timezone)
            .field("url", &crate::config::redact_url_password(&self.url))
            .field("connection", &self.connection)
            .field("headers", &headers)
            .field("items", &self.items)
            .field("key", &self.key)
            .field("event_type", &self.event_type)
            .field("run_on_start", &self.run_on_start)
            .field("timeout", &self.timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish()
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_max_response_bytes() -> usize {
    4 * 1024 * 1024
}

impl ScheduleSource {
    /// A source polling `url` on `schedule`, with every other setting at its default.
    pub fn new(schedule: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            schedule: schedule.into(),
            timezone: None,
            url: url.into(),
            connection: None,
            headers: BTreeMap::new(),
            items: None,
            key: None,
            event_type: None,
            run_on_start: false,
            timeout: default_timeout(),
            max_response_bytes: default_max_response_bytes(),
        }
    }

    /// Checks what needs no I/O, no cron parser and no jq: the URL's scheme and host, header
    /// names, limits. (The server parses the schedule and the time zone and compiles the jq
    /// programs when it loads the configuration.)
    pub fn validate(&self) -> Result<(), String> {
        if self.schedule.trim().is_empty() {
            return Err("schedule is empty; give a cron expression like \"*/5 * * * *\"".into());
        }
        if let Some(connection) = &self.connection {
            if !crate::ids::is_valid_resource_id(connection) {
                return Err(format!("connection `{connection}` is not a valid id"));
            }
            if self.url.contains("://") {
                return Err(
                    "with a connection, url is a path below the provider's base URL \
                     (`repos/acme/app/issues?state=open`), not a whole URL"
                        .into(),
                );
            }
        }
        let rest = if self.connection.is_some() {
            "path"
        } else {
            self.url
                .strip_prefix("http://")
                .or_else(|| self.url.strip_prefix("https://"))
                .ok_or_else(|| {
                    format!(
                        "url must start with http:// or https://, not `{}`",
                        crate::config::redact_url_password(&self.url)
                    )
                })?
        };
        if rest.is_empty() || rest.starts_with(['/', '?', '#']) {
            return Err("url has no host".into());
        }
        for (name, value) in &self.headers {
            check_header(name, value)?;
        }
        if self.timeout.is_zero() || self.timeout > super::MAX_SOURCE_DURATION {
            return Err("timeout must be > 0 and at most 1 day".into());
        }
        if self.max_response_bytes == 0 {
            return Err("max_response_bytes must be > 0".into());
        }
        if self
            .timezone
            .as_deref()
            .is_some_and(|tz| tz.trim().is_empty())
        {
            return Err("timezone is empty; remove it (UTC) or name a zone".into());
        }
        check_programs(&[
            ("items", &self.items),
            ("key", &self.key),
            ("event_type", &self.event_type),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use crate::config::SourceKind;

    #[test]
    fn the_documented_settings_parse_and_round_trip() {
        let config = Config::from_toml(
            r#"
[[sources]]
id = "new-tickets"
kind = "schedule"
schedule = "*/5 * * * *"
timezone = "Europe/Paris"
url = "https://api.example.com/tickets?status=open"
headers = { Authorization = "Bearer s3cret" }
items = ".tickets"
key = ".id"
run_on_start = true
"#,
        )
        .expect("parses");
        config.validate().expect("valid");
        let source = &config.sources[0];
        let SourceKind::Schedule(schedule) = &source.kind else {
            panic!("a schedule source: {source:?}")
        };
        assert!(schedule.run_on_start);
        assert_eq!(schedule.timeout, Duration::from_secs(30));
        assert!(!format!("{source:?}").contains("s3cret"));
        let json = serde_json::to_value(source).expect("serializes");
        assert_eq!(json["kind"], "schedule");
        assert_eq!(json["items"], ".tickets");
        let back: crate::config::SourceConfig = serde_json::from_value(json).expect("parses");
        assert_eq!(&back, source);
    }

    #[test]
    fn bad_settings_are_refused_with_the_reason() {
        let cases = [
            ("url = 'http://x'", "missing field `schedule`"),
            ("schedule = ' '\nurl = 'http://x'", "schedule is empty"),
            (
                "schedule = '* * * * *'\nurl = 'ftp://x'",
                "http:// or https://",
            ),
            ("schedule = '* * * * *'\nurl = 'https://'", "no host"),
            (
                "schedule = '* * * * *'\nurl = 'http://x'\ntimeout = '0s'",
                "timeout",
            ),
            (
                "schedule = '* * * * *'\nurl = 'http://x'\nkey = ''",
                "key is empty",
            ),
            (
                "schedule = '* * * * *'\nurl = 'http://x'\ntimezone = ''",
                "timezone",
            ),
            (
                "schedule = '* * * * *'\nurl = 'http://x'\ninterval = '5m'",
                "unknown field `interval`",
            ),
        ];
        for (settings, why) in cases {
            let toml = format!("[[sources]]\nid = 's'\nkind = 'schedule'\n{settings}\n");
            let error = Config::from_toml(&toml).expect_err(settings).to_string();
            assert!(
                error.contains("source `s`") && error.contains(why),
                "{settings}: {error}"
            );
        }
    }
}
