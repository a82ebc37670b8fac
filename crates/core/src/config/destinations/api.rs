//! `kind = "api"`: a call to any provider endpoint through a connection (issue 7).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{DestinationKind, default_timeout};
use crate::duration;
use crate::retry::RetryPolicy;

/// Methods an `api` destination may use.
pub const API_METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

/// An API call through a connection: the connection injects the credentials and applies its
/// pacing, bulkhead, circuit breaker and token refresh; the destination adds the delivery
/// machinery (durable retries, ordering, throttling).
///
/// `path`, the `query` values and the `headers` values are `{{ jq }}` templates over the event
/// (`{"body", "headers", "type", "source", "received_at"}`). The request body is the delivered
/// message: the route transform's output, or the event's body (none for `GET` and `DELETE`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiDestination {
    /// The destination's id.
    pub id: String,
    /// The connection to call through (created with `POST /v1/connections`).
    pub connection: String,
    /// HTTP method: `GET`, `POST` (the default), `PUT`, `PATCH` or `DELETE`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Path below the provider's base URL (template), e.g.
    /// `repos/{{ .body.repository.full_name }}/issues/{{ .body.number }}/comments`.
    pub path: String,
    /// Query parameters (values are templates; one rendering empty is left out).
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Extra request headers (values are templates). `Authorization` is the connection's.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Per-attempt timeout (the connection's own timeout applies within it).
    #[serde(with = "duration::human", default = "default_timeout")]
    pub timeout: Duration,
    /// Retry policy (retryable answers: network errors, 408, 425, 429, 5xx and the provider
    /// file's `retry.statuses`).
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Attempts in flight at once.
    #[serde(default)]
    pub max_in_flight: Option<usize>,
    /// Calls per second at most (on top of the connection's own pacing).
    #[serde(default)]
    pub rate_limit: Option<f64>,
    /// Call in order.
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

fn default_method() -> String {
    "POST".into()
}

impl DestinationKind for ApiDestination {
    common_destination_fields!();

    fn validate(&self) -> Result<(), String> {
        if self.connection.trim().is_empty() {
            return Err("connection is required (the id of a connection)".into());
        }
        if !API_METHODS.contains(&self.method.as_str()) {
            return Err(format!(
                "method `{}` is not one of {}",
                self.method,
                API_METHODS.join(", ")
            ));
        }
        if self.path.contains("://") {
            return Err(
                "path is relative to the provider's base URL (no scheme or host)".to_owned(),
            );
        }
        for name in self.headers.keys() {
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !valid {
                return Err(format!("header name `{name}` is invalid"));
            }
            if name.eq_ignore_ascii_case("authorization") || name.eq_ignore_ascii_case("host") {
                return Err(format!(
                    "header `{name}` is set by the connection and cannot be configured"
                ));
            }
        }
        if self.query.keys().any(|k| k.is_empty()) {
            return Err("query has an empty parameter name".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ApiDestination, String> {
        let destination: ApiDestination = toml::from_str(text).map_err(|e| e.to_string())?;
        destination.validate()?;
        Ok(destination)
    }

    #[test]
    fn settings_parse_with_defaults() {
        let api = parse(
            r#"
            id = "comment"
            connection = "github"
            path = "repos/{{ .body.repo }}/issues/{{ .body.number }}/comments"
            query = { per_page = "1" }
            headers = { "x-github-api-version" = "2022-11-28" }
            "#,
        )
        .expect("valid");
        assert_eq!(api.method, "POST");
        assert_eq!(api.timeout, default_timeout());
        assert_eq!(api.query["per_page"], "1");
    }

    #[test]
    fn bad_settings_are_refused_with_the_reason() {
        let cases = [
            ("connection = \" \"\npath = \"x\"", "connection is required"),
            (
                "connection = \"c\"\npath = \"x\"\nmethod = \"post\"",
                "method `post` is not one of",
            ),
            (
                "connection = \"c\"\npath = \"https://evil.example/x\"",
                "relative to the provider's base URL",
            ),
            (
                "connection = \"c\"\npath = \"x\"\nheaders = { Authorization = \"x\" }",
                "set by the connection",
            ),
            (
                "connection = \"c\"\npath = \"x\"\nheaders = { \"bad name\" = \"x\" }",
                "header name `bad name` is invalid",
            ),
            ("connection = \"c\"", "missing field `path`"),
            (
                "connection = \"c\"\npath = \"x\"\nurl = \"y\"",
                "unknown field `url`",
            ),
        ];
        for (text, expected) in cases {
            let error = parse(&format!("id = \"a\"\n{text}")).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
