//! `kind = "schedule"`: `GET` a URL on a cron schedule; store the response, or each item of it.
//!
//! The task computes the next occurrence of the cron expression in the configured time zone,
//! sleeps until then and polls through the shared SSRF-guarded client. A `2xx` response becomes
//! one event, or — with `items` — one event per selected item. With `key` every event carries a
//! de-duplication key, so items already stored by an earlier poll (on this node or another) are
//! not stored again: each poll stores only what is new. A failed poll (transport error, non-2xx,
//! a body that is too large or not the JSON `items` needs) stores nothing and is counted; the
//! next tick tries again. A poll that runs past the next occurrence skips it (polls never pile
//! up).

use std::time::Duration;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use futures::StreamExt;
use jiff::Zoned;
use jiff::tz::TimeZone;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use switchboard_core::config::ScheduleSource;

use super::common::{self, Programs, Verdict};
use super::{Context, Emitted, Message};
use crate::delivery::ssrf::Policy;
use crate::ingest::commit::CommitError;

/// Most items one poll stores.
pub const MAX_ITEMS: usize = 10_000;
/// Emits in flight at once during a poll (the group committer batches them; order is kept).
const EMITS_IN_FLIGHT: usize = 16;

/// Checks what the configuration cannot: the cron expression parses (5 or 6 fields), the time
/// zone exists, the URL and headers are valid, the jq programs compile.
pub fn check(settings: &ScheduleSource) -> Result<(), String> {
    Prepared::new(settings).map(|_| ())
}

/// A schedule's settings, parsed and compiled.
struct Prepared {
    cron: Cron,
    zone: TimeZone,
    headers: HeaderMap,
    /// The URL's host when it is an IP address: the client's resolver never sees it, so the
    /// SSRF policy is checked here.
    literal_ip: Option<std::net::IpAddr>,
    items: Option<switchboard_jq::Program>,
    programs: std::sync::Arc<Programs>,
}

impl Prepared {
    fn new(settings: &ScheduleSource) -> Result<Self, String> {
        let cron = parse_cron(&settings.schedule)?;
        let zone = match &settings.timezone {
            None => TimeZone::UTC,
            Some(name) => TimeZone::get(name).map_err(|e| {
                format!(
                    "timezone `{name}` is unknown ({e}); name an IANA zone such as \
                     \"Europe/Paris\" (this needs the system time zone database), or leave \
                     timezone out for UTC"
                )
            })?,
        };
        // An expression that matches no date (`0 0 30 2 *`) would never poll.
        next_after(&cron, &Zoned::now().with_time_zone(zone.clone()))
            .map_err(|e| format!("schedule `{}`: {e}", settings.schedule))?;
        // Through a connection, `url` is a path: the connection's client resolves and guards
        // the provider's address.
        let literal_ip = if settings.connection.is_some() {
            None
        } else {
            let url = url::Url::parse(&settings.url).map_err(|e| format!("url: {e}"))?;
            if url.host().is_none() {
                return Err("url has no host".into());
            }
            if !url.username().is_empty() || url.password().is_some() {
                return Err("url must not carry credentials; use headers".into());
            }
            match url.host() {
                Some(url::Host::Ipv4(ip)) => Some(ip.into()),
                Some(url::Host::Ipv6(ip)) => Some(ip.into()),
                _ => None,
            }
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &settings.headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("`{name}` is not a valid header name"))?;
            let mut value = HeaderValue::from_str(value)
                .map_err(|_| format!("the value of header `{name}` is not a valid header value"))?;
            value.set_sensitive(true);
            headers.insert(header, value);
        }
        Ok(Self {
            cron,
            zone,
            headers,
            literal_ip,
            items: common::compile("items", settings.items.as_deref())?,
            programs: std::sync::Arc::new(Programs {
                filter: None,
                event_type: common::compile("event_type", settings.event_type.as_deref())?,
                dedup_key: common::compile("key", settings.key.as_deref())?,
                key_required: true,
            }),
        })
    }
}

/// Parses a 5-field (minute precision) or 6-field (seconds first) cron expression.
pub fn parse_cron(expression: &str) -> Result<Cron, String> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(expression)
        .map_err(|e| {
            format!(
                "schedule `{expression}` is not a cron expression: {e} (expected 5 fields, \
                 \"minute hour day-of-month month day-of-week\" like \"*/5 * * * *\", or 6 with \
                 seconds first)"
            )
        })
}

/// The first occurrence of `cron` strictly after `after`.
pub fn next_after(cron: &Cron, after: &Zoned) -> Result<Zoned, String> {
    cron.find_next_occurrence(after, false)
        .map_err(|e| format!("the schedule has no next occurrence: {e}"))
}

/// Runs the source until `context.stop` is cancelled.
pub async fn run(settings: ScheduleSource, context: Context) {
    common::describe_metrics();
    let source = context.emitter.source().to_owned();
    let prepared = match Prepared::new(&settings) {
        Ok(prepared) => prepared,
        Err(error) => {
            // The registry checked the settings before they went live; this is unexpected.
            tracing::error!(source, %error, "schedule source cannot start");
            context.stop.cancelled().await;
            return;
        }
    };
    let poller = Poller {
        source,
        settings: &settings,
        context: &context,
        prepared: &prepared,
    };
    let stop = &context.stop;
    if settings.run_on_start {
        let now = Zoned::now().with_time_zone(prepared.zone.clone());
        tokio::select! {
            _ = stop.cancelled() => return,
            () = poller.poll(&now) => {}
        }
    }
    // The last tick polled: a wake-up a little early by the wall clock must not poll it twice.
    let mut last: Option<Zoned> = None;
    loop {
        let now = Zoned::now().with_time_zone(prepared.zone.clone());
        let from = match &last {
            Some(last) if *last > now => last.clone(),
            _ => now.clone(),
        };
        let next = match next_after(&prepared.cron, &from) {
            Ok(next) => next,
            Err(error) => {
                tracing::error!(source = poller.source, %error, "schedule source stopped");
                stop.cancelled().await;
                return;
            }
        };
        let wait_ms = next
            .timestamp()
            .as_millisecond()
            .saturating_sub(now.timestamp().as_millisecond())
            .max(0);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            () = poller.poll(&next) => {}
        }
        last = Some(next);
    }
}

struct Poller<'a> {
    source: String,
    settings: &'a ScheduleSource,
    context: &'a Context,
    prepared: &'a Prepared,
}

/// Why a poll stored nothing (or not everything).
#[derive(Debug)]
enum Failure {
    Transport(String),
    Status(u16),
    Invalid(String),
    Store(String),
    Stopping,
}

impl Failure {
    fn outcome(&self) -> &'static str {
        match self {
            Self::Transport(_) => "transport_error",
            Self::Status(_) => "http_error",
            Self::Invalid(_) => "invalid_response",
            Self::Store(_) | Self::Stopping => "store_error",
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transport(e) => write!(f, "request failed: {e}"),
            Self::Status(status) => write!(f, "the API answered HTTP {status}"),
            Self::Invalid(e) => write!(f, "unusable response: {e}"),
            Self::Store(e) => write!(f, "could not store the items: {e}"),
            Self::Stopping => f.write_str("the server is shutting down"),
        }
    }
}

/// What one poll stored.
#[derive(Debug, Default)]
struct Stored {
    new: usize,
    duplicate: usize,
    skipped: usize,
}

impl Poller<'_> {
    /// One poll; failures are logged and counted, never returned.
    async fn poll(&self, tick: &Zoned) {
        let outcome = self.try_poll().await;
        let label = match &outcome {
            Ok(stored) => {
                tracing::debug!(source = self.source, tick = %tick.timestamp(),
                    new = stored.new, already_stored = stored.duplicate,
                    skipped = stored.skipped, "polled");
                "ok"
            }
            Err(Failure::Stopping) => return,
            Err(failure) => {
                tracing::warn!(source = self.source, tick = %tick.timestamp(), %failure,
                    "poll stored nothing new; trying again at the next tick");
                failure.outcome()
            }
        };
        metrics::counter!("switchboard_source_polls_total",
            "source" => self.source.clone(), "outcome" => label)
        .increment(1);
    }

    async fn try_poll(&self) -> Result<Stored, Failure> {
        let (content_type, body) = self.fetch().await?;
        let messages = self.messages(content_type, body).await?;
        let mut stored = Stored::default();
        let mut ready = Vec::with_capacity(messages.len());
        for message in messages {
            match message {
                Ok(message) => ready.push(message),
                Err(error) => {
                    tracing::warn!(source = self.source, %error, "item not stored");
                    common::count_message(&self.source, "failed");
                    stored.skipped += 1;
                }
            }
        }
        let emitter = &self.context.emitter;
        let mut results =
            futures::stream::iter(ready.into_iter().map(|message| emitter.emit(message)))
                .buffered(EMITS_IN_FLIGHT);
        let mut failed = None;
        while let Some(result) = results.next().await {
            match result {
                Ok(emitted) => {
                    common::count_emitted(&self.source, &emitted);
                    match emitted {
                        Emitted::Stored(_) => stored.new += 1,
                        Emitted::Duplicate(_) => stored.duplicate += 1,
                    }
                }
                Err(CommitError::Closed) => failed = Some(Failure::Stopping),
                Err(CommitError::Store(error)) => {
                    common::count_message(&self.source, "failed");
                    failed.get_or_insert(Failure::Store(error.to_string()));
                }
            }
        }
        match failed {
            Some(failure) => Err(failure),
            None => Ok(stored),
        }
    }

    /// `GET`s the path through the source's connection (credentials, pacing, retries and the
    /// circuit breaker of the connection apply); returns the content type and the body of a
    /// `2xx` answer.
    async fn fetch_through(&self, connection: &str) -> Result<(Option<String>, Vec<u8>), Failure> {
        use crate::connections::client::{ApiRequest, CallError};
        let (path, query) = match self.settings.url.split_once('?') {
            Some((path, query)) => (path, Some(query.to_owned())),
            None => (self.settings.url.as_str(), None),
        };
        let mut request = ApiRequest::new(reqwest::Method::GET, path);
        request.query = query;
        request.headers = self.prepared.headers.clone();
        let call = self.context.connections.call(connection, request);
        let response = match tokio::time::timeout(self.settings.timeout, call).await {
            Err(_) => {
                return Err(Failure::Transport(format!(
                    "no answer within {:?}",
                    self.settings.timeout
                )));
            }
            Ok(Err(CallError::Provider { error, .. })) => {
                return Err(Failure::Status(error.status));
            }
            Ok(Err(error)) => {
                return Err(Failure::Transport(format!(
                    "connection `{connection}`: {error}"
                )));
            }
            Ok(Ok(response)) => response,
        };
        if !response.status.is_success() {
            return Err(Failure::Status(response.status.as_u16()));
        }
        if response.body.len() > self.settings.max_response_bytes {
            return Err(Failure::Invalid(format!(
                "the body is larger than max_response_bytes ({} bytes)",
                self.settings.max_response_bytes
            )));
        }
        let content_type = response
            .headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok((content_type, response.body.to_vec()))
    }

    /// `GET`s the URL; returns the content type and the body of a `2xx` answer.
    async fn fetch(&self) -> Result<(Option<String>, Vec<u8>), Failure> {
        if let Some(connection) = &self.settings.connection {
            return self.fetch_through(connection).await;
        }
        if let Some(ip) = self.prepared.literal_ip {
            let runtime = self.context.emitter.registry.current();
            let policy =
                Policy::from_config(&runtime.config.security).map_err(Failure::Transport)?;
            policy
                .check(ip)
                .map_err(|blocked| Failure::Transport(blocked.to_string()))?;
        }
        let mut response = self
            .context
            .client
            .get(&self.settings.url)
            .headers(self.prepared.headers.clone())
            .timeout(self.settings.timeout)
            .send()
            .await
            // Without the URL: its query may carry an API key.
            .map_err(|e| Failure::Transport(e.without_url().to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(Failure::Status(status.as_u16()));
        }
        let max = self.settings.max_response_bytes;
        let too_large = || {
            Failure::Invalid(format!(
                "the body is larger than max_response_bytes ({max} bytes)"
            ))
        };
        if response.content_length().is_some_and(|n| n > max as u64) {
            return Err(too_large());
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| Failure::Transport(e.without_url().to_string()))?
        {
            if body.len() + chunk.len() > max {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((content_type, body))
    }

    /// The messages of a response: the response itself, or one per item; an item the
    /// programs could not handle is an `Err` with the reason.
    async fn messages(
        &self,
        content_type: Option<String>,
        body: Vec<u8>,
    ) -> Result<Vec<Result<Message, String>>, Failure> {
        let items = self.prepared.items.clone();
        let programs = self.prepared.programs.clone();
        let max_response = self.settings.max_response_bytes;
        common::blocking(move || match items {
            None => Ok(vec![whole(&programs, content_type, body)]),
            Some(items) => {
                let Some(parsed) = common::parse_json(&body) else {
                    return Err(Failure::Invalid(
                        "items needs a JSON response, and this one is not JSON".into(),
                    ));
                };
                let limits = switchboard_jq::Limits {
                    max_outputs: MAX_ITEMS,
                    max_output_bytes: crate::transform::limits()
                        .max_output_bytes
                        .max(max_response.saturating_mul(2)),
                    ..crate::transform::limits()
                };
                let outputs = items
                    .run(&parsed, &limits)
                    .map_err(|e| Failure::Invalid(format!("items: {e}")))?;
                Ok(select_items(outputs)
                    .into_iter()
                    .map(|item| item_message(&programs, item))
                    .collect())
            }
        })
        .await
        .map_err(Failure::Invalid)?
    }
}

/// The items of an `items` program's outputs: the elements of a single array, nothing for a
/// single `null`, otherwise every output.
fn select_items(mut outputs: Vec<Value>) -> Vec<Value> {
    if outputs.len() == 1 {
        match outputs.pop() {
            Some(Value::Array(items)) => return items,
            Some(Value::Null) | None => return Vec::new(),
            Some(one) => return vec![one],
        }
    }
    outputs
}

/// The whole response as one message.
fn whole(
    programs: &Programs,
    content_type: Option<String>,
    body: Vec<u8>,
) -> Result<Message, String> {
    let (event_type, dedup_key) = if programs.is_empty() {
        (None, None)
    } else {
        let input = common::jq_input(&body, common::parse_json(&body));
        keep(programs.judge(&input))?
    };
    Ok(Message {
        event_type,
        dedup_key,
        headers: Vec::new(),
        content_type,
        body,
    })
}

/// One item as a JSON message.
fn item_message(programs: &Programs, item: Value) -> Result<Message, String> {
    let (event_type, dedup_key) = keep(programs.judge(&item))?;
    let body = serde_json::to_vec(&item).map_err(|e| format!("item: {e}"))?;
    Ok(Message {
        event_type,
        dedup_key,
        headers: Vec::new(),
        content_type: Some("application/json".into()),
        body,
    })
}

fn keep(verdict: Verdict) -> Result<(Option<String>, Option<String>), String> {
    match verdict {
        Verdict::Keep {
            event_type,
            dedup_key,
        } => Ok((event_type, dedup_key)),
        // Schedules have no filter.
        Verdict::Dropped => Err("dropped".into()),
        Verdict::Failed(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn five_and_six_field_expressions_parse_and_others_are_explained() {
        for valid in ["*/5 * * * *", "*/1 * * * * *", "0 9 * * MON-FRI", "@hourly"] {
            parse_cron(valid).unwrap_or_else(|e| panic!("{valid}: {e}"));
        }
        for invalid in ["* * * *", "* * * * * * 2030", "61 * * * *", "every minute"] {
            let error = parse_cron(invalid).expect_err(invalid);
            assert!(error.contains("is not a cron expression"), "{error}");
        }
    }

    #[test]
    fn next_occurrences_follow_the_time_zone() {
        let cron = parse_cron("0 9 * * *").expect("valid");
        let paris = TimeZone::get("Europe/Paris").expect("tzdata is installed");
        let at: Zoned = "2025-03-30T12:00:00+02:00[Europe/Paris]"
            .parse()
            .expect("a zoned time");
        let next = next_after(&cron, &at.with_time_zone(paris)).expect("next");
        assert_eq!(next.to_string(), "2025-03-31T09:00:00+02:00[Europe/Paris]");
        let every_second = parse_cron("*/1 * * * * *").expect("valid");
        let utc: Zoned = "2025-01-01T00:00:00.500+00:00[UTC]".parse().expect("zoned");
        let next = next_after(&every_second, &utc).expect("next");
        assert_eq!(next.timestamp().as_millisecond() % 1000, 0);
        assert!(next > utc);
    }

    #[test]
    fn check_names_the_bad_setting() {
        let mut settings = ScheduleSource::new("*/5 * * * *", "https://api.example.com/x");
        check(&settings).expect("valid");
        settings.timezone = Some("Mars/Olympus_Mons".into());
        assert!(
            check(&settings)
                .expect_err("zone")
                .contains("timezone `Mars/Olympus_Mons`")
        );
        settings.timezone = None;
        settings.items = Some(".data[".into());
        assert!(
            check(&settings)
                .expect_err("jq")
                .starts_with("items: jq error")
        );
        settings.items = None;
        settings.schedule = "*/5 * *".into();
        assert!(check(&settings).expect_err("cron").contains("cron"));
        settings.schedule = "0 0 30 2 *".into();
        let error = check(&settings).expect_err("February 30th");
        assert!(error.contains("no next occurrence"), "{error}");
    }

    #[test]
    fn items_are_an_array_or_a_stream() {
        assert_eq!(select_items(vec![json!([1, 2])]), vec![json!(1), json!(2)]);
        assert_eq!(select_items(vec![json!(null)]), Vec::<Value>::new());
        assert_eq!(select_items(vec![json!({"a": 1})]), vec![json!({"a": 1})]);
        assert_eq!(
            select_items(vec![json!(1), json!([2])]),
            vec![json!(1), json!([2])]
        );
    }

    #[test]
    fn items_without_a_key_are_refused_when_a_key_is_configured() {
        let programs = Programs {
            dedup_key: common::compile("key", Some(".id")).expect("compiles"),
            key_required: true,
            ..Programs::default()
        };
        let message = item_message(&programs, json!({"id": 3})).expect("keyed");
        assert_eq!(message.dedup_key.as_deref(), Some("3"));
        assert_eq!(message.content_type.as_deref(), Some("application/json"));
        let error = item_message(&programs, json!({"other": 3})).expect_err("no key");
        assert!(error.contains("null"), "{error}");
    }
}
