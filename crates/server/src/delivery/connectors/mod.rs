//! Destinations that are not plain signed webhooks: each kind turns the prepared message (the
//! event's body or a route transform's output) into its service's request and classifies the
//! answer. One file per kind; adding a kind touches that file and [`build`].
//!
//! Connectors share the worker's SSRF-guarded HTTP client, timeouts, retries, circuit breaker,
//! throttle and ordering: only the request and the reading of the answer differ.

pub mod api;
pub mod email;
pub mod postgres;
pub mod queue;
pub mod s3;
mod sigv4;
pub mod slack;
pub mod sms;
pub mod teams;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use switchboard_core::AttemptOutcome;
use switchboard_core::config::DestinationConfig;

use super::sender::{AttemptReport, Prepared};

/// What a connector needs for one attempt.
pub struct Attempt<'a> {
    /// The delivery id (stable across retries; services that de-duplicate get it).
    pub delivery_id: &'a str,
    /// The shared client (SSRF-guarded, no redirects).
    pub client: &'a reqwest::Client,
    /// The outbound network policy. The client's resolver applies it to host names; URLs with
    /// an IP literal never reach a resolver, so a connector checks them with
    /// [`Attempt::refused_address`] before sending (as [`post_json`] does).
    pub policy: &'a super::ssrf::Policy,
    /// The attempt's timeout.
    pub timeout: std::time::Duration,
    /// The message.
    pub message: &'a Prepared,
    /// Calls through connections (the `api` kind); `None` where the server runs none.
    pub connections: Option<&'a crate::connections::client::ConnectionClient>,
}

impl Attempt<'_> {
    /// A permanent failure when `url` names an IP address the policy refuses (private,
    /// loopback, metadata…); `None` when it may be sent.
    pub fn refused_address(&self, url: &str, started: Instant) -> Option<AttemptReport> {
        let url = reqwest::Url::parse(url).ok()?;
        let ip = super::sender::literal_ip(&url)?;
        let blocked = self.policy.check(ip).err()?;
        Some(AttemptReport {
            outcome: AttemptOutcome::Permanent,
            status: None,
            error: Some(blocked.to_string()),
            headers: Vec::new(),
            body_excerpt: Vec::new(),
            latency: started.elapsed(),
        })
    }
}

/// A destination kind other than `http`.
#[async_trait]
pub trait Connector: Send + Sync + std::fmt::Debug {
    /// Where it sends, for attempt records (never containing credentials).
    fn describe(&self) -> String;

    /// Makes one attempt.
    async fn deliver(&self, attempt: Attempt<'_>) -> AttemptReport;

    /// Templates rendered per message before [`Connector::deliver`] (read them from
    /// `attempt.message.rendered`): a subject, recipients, an object key…
    fn templates(&self) -> crate::template::TemplateSet {
        crate::template::TemplateSet::new()
    }
}

/// The connector of a configured destination (`None` for `http`, which the sender handles).
pub fn build(destination: &DestinationConfig) -> Result<Option<Arc<dyn Connector>>, String> {
    Ok(match destination {
        DestinationConfig::Http(_) => None,
        DestinationConfig::Slack(config) => Some(Arc::new(slack::Slack::new(config)?)),
        DestinationConfig::Teams(config) => Some(Arc::new(teams::Teams::new(config)?)),
        DestinationConfig::Postgres(config) => Some(Arc::new(postgres::Postgres::new(config)?)),
        DestinationConfig::S3(config) => Some(Arc::new(s3::S3::new(config)?)),
        DestinationConfig::Email(config) => Some(Arc::new(email::Email::new(config)?)),
        DestinationConfig::Sms(config) => Some(Arc::new(sms::Sms::new(config)?)),
        DestinationConfig::Queue(config) => Some(Arc::new(queue::Queue::new(config)?)),
        DestinationConfig::Api(config) => Some(Arc::new(api::Api::new(config)?)),
    })
}

/// The message body as JSON: the prepared bytes when they parse, else `{"text": <text>}`.
pub fn message_json(message: &Prepared) -> serde_json::Value {
    serde_json::from_slice(&message.body)
        .unwrap_or_else(|_| serde_json::json!({ "text": String::from_utf8_lossy(&message.body) }))
}

/// Sends a JSON POST and reads the answer into a report (status classified as for webhooks;
/// the caller may refine it from the body).
pub async fn post_json(
    attempt: &Attempt<'_>,
    url: &str,
    bearer: Option<&str>,
    body: &serde_json::Value,
) -> (AttemptReport, Vec<u8>) {
    let started = Instant::now();
    if let Some(refused) = attempt.refused_address(url, started) {
        return (refused, Vec::new());
    }
    let mut request = attempt
        .client
        .post(url)
        .timeout(attempt.timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string());
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => {
            return (
                super::sender::report_error(&error, attempt.timeout, started),
                Vec::new(),
            );
        }
    };
    super::sender::read_report(response, started, 64 * 1024).await
}

/// A report for an answer that arrived but says the message was refused.
pub fn refused(mut report: AttemptReport, outcome: AttemptOutcome, error: String) -> AttemptReport {
    report.outcome = outcome;
    report.error = Some(error);
    report
}
