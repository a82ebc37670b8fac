//! Shared plumbing of the configurable resources (sources, destinations, routes): mapping
//! registry refusals to problems, timestamps, secret redaction.

use axum::http::StatusCode;
use serde_json::Value;
use switchboard_core::time::format_rfc3339;

use crate::problem::{FieldError, Problem};
use crate::runtime::{ChangeError, Kind, Runtime};

/// What the API shows instead of a secret.
pub const REDACTED: &str = "********";

/// Maps a refused change to its problem.
pub fn change_problem(error: ChangeError) -> Problem {
    match error {
        ChangeError::Invalid(message) => {
            let errors = invalid_field(&message)
                .map(|field| {
                    vec![FieldError {
                        field: field.into(),
                        message: message.clone(),
                    }]
                })
                .unwrap_or_default();
            Problem::validation(message, errors)
        }
        e @ ChangeError::ConfigManaged { .. } => {
            Problem::conflict("managed_by_config", e.to_string())
        }
        e @ ChangeError::Exists { .. } => Problem::conflict("already_exists", e.to_string()),
        e @ ChangeError::InUse { .. } => Problem::conflict("in_use", e.to_string()),
        e @ ChangeError::NotFound { .. } => Problem::not_found(e.to_string()),
        ChangeError::Store(error) => super::internal(error),
    }
}

/// The request field a configuration check refers to. The checks (`Config::validate`, building
/// verifiers and destinations) report `{kind} `{id}`: <what>` messages; `<what>` names the
/// field in the ways matched here.
fn invalid_field(message: &str) -> Option<&'static str> {
    let rest = message
        .split_once("`: ")
        .map_or(message, |(_, rest)| rest)
        .trim_start_matches("invalid configuration: ");
    let starts = |prefix: &str| rest.starts_with(prefix);
    Some(
        if message.contains(" id `") && message.contains("must be 1-64") {
            "id"
        } else if starts("unknown source") {
            "source"
        } else if starts("unknown destination") {
            "destination"
        } else if starts("url ") || starts("invalid url") {
            "url"
        } else if starts("timeout") {
            "timeout"
        } else if starts("retry") {
            "retry"
        } else if starts("max_body_bytes") {
            "max_body_bytes"
        } else if starts("filter") {
            "filter"
        } else if starts("transform") {
            "transform"
        } else if starts("rate_limit") {
            "rate_limit"
        } else if starts("invalid header name") || starts("invalid value for header") {
            "headers"
        } else if rest.contains("verifier")
            || message
                .trim_start_matches("invalid configuration: ")
                .starts_with("source `")
        {
            // A source's remaining checks are all about its verifier.
            "verifier"
        } else if rest.contains("secret") {
            "secret"
        } else {
            return None;
        },
    )
}

/// Applies a change through the registry, mapping a refusal to its problem.
pub async fn apply(
    state: &crate::state::AppState,
    change: crate::runtime::Change,
) -> Result<(), Problem> {
    state.registry.apply(change).await.map_err(change_problem)
}

/// Parses a request value into a configuration type, naming the offending field.
pub fn from_value<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, Problem> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let message = error.into_inner().to_string();
        Problem::validation(
            format!("invalid resource: {message}"),
            vec![FieldError {
                field: super::extract::field_path(&path, &message),
                message,
            }],
        )
    })
}

/// `422` when a body's id differs from the path's.
pub fn check_path_id(path: &str, body: &str) -> Result<(), Problem> {
    if path == body {
        Ok(())
    } else {
        Err(Problem::validation(
            format!("the body's id `{body}` differs from the path's `{path}`"),
            vec![FieldError {
                field: "id".into(),
                message: "must equal the id in the path".into(),
            }],
        ))
    }
}

/// `(created_at, updated_at)` of an API resource (none for config resources).
pub fn stamps(runtime: &Runtime, kind: Kind, id: &str) -> (Option<String>, Option<String>) {
    runtime
        .stamps
        .get(&(kind, id.to_owned()))
        .map(|s| {
            (
                Some(format_rfc3339(s.created_at)),
                Some(format_rfc3339(s.updated_at)),
            )
        })
        .unwrap_or((None, None))
}

/// Replaces secret values (`secret`, `secrets`, `passwords`, `keys`) in a JSON value.
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                match key.as_str() {
                    "secret" | "password" if item.is_string() => *item = Value::from(REDACTED),
                    "secrets" | "passwords" | "keys" => {
                        if let Value::Array(items) = item {
                            for entry in items.iter_mut() {
                                *entry = Value::from(REDACTED);
                            }
                        }
                    }
                    _ => redact(item),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Redacts the settings of a fetching source or a connector for display: beyond [`redact`], any
/// string under a key naming a credential (`token`, `password`, `secret`, `api_key`,
/// `access_key`, `authorization`, `webhook_url`…), every header value, and the password of any
/// URL.
pub fn redact_settings(value: &mut Value) {
    fn walk(value: &mut Value, under_headers: bool) {
        match value {
            Value::Object(map) => {
                for (key, item) in map.iter_mut() {
                    let lower = key.to_ascii_lowercase();
                    // Credential names; not `key` alone (an object key template, a jq
                    // `dedup_key`, a RabbitMQ `routing_key` are settings, not secrets).
                    let sensitive = [
                        "token",
                        "password",
                        "secret",
                        "authorization",
                        "api_key",
                        "apikey",
                        "access_key",
                        "private_key",
                        "credential",
                        // Slack and Teams incoming-webhook URLs are bearer secrets.
                        "webhook_url",
                    ]
                    .iter()
                    .any(|word| lower.contains(word));
                    match item {
                        Value::String(_) if sensitive || under_headers => {
                            *item = Value::from(REDACTED)
                        }
                        Value::Array(items) if sensitive => {
                            items.iter_mut().for_each(|i| *i = Value::from(REDACTED))
                        }
                        Value::Object(_) if sensitive => *item = Value::from(REDACTED),
                        _ => walk(item, lower == "headers"),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| walk(i, false)),
            Value::String(text) if text.contains("://") && text.contains('@') => {
                *text = switchboard_core::config::redact_url_password(text);
            }
            _ => {}
        }
    }
    walk(value, false);
}

/// Puts back the current value wherever `value` holds the redaction marker, so a redacted view
/// sent back unchanged keeps its credentials. In a list of the same length a marker stands for
/// the value at its position; in a longer or shorter list (`["new", "********"]`, a rotation)
/// the markers stand for the current values in order.
pub fn restore_redacted(value: &mut Value, current: &Value) {
    match (value, current) {
        (Value::Object(map), Value::Object(current)) => {
            for (key, item) in map.iter_mut() {
                if let Some(previous) = current.get(key) {
                    restore_redacted(item, previous);
                }
            }
        }
        (Value::Array(items), Value::Array(current)) if items.len() == current.len() => {
            for (item, previous) in items.iter_mut().zip(current) {
                restore_redacted(item, previous);
            }
        }
        (Value::Array(items), Value::Array(current)) => {
            // Entries were added or removed (a secret rotated in, an old one dropped): the
            // markers stand for the current values in their order.
            let mut kept = current.iter();
            for item in items.iter_mut() {
                if item.as_str() == Some(REDACTED)
                    && let Some(previous) = kept.next()
                {
                    *item = previous.clone();
                }
            }
        }
        (value @ Value::String(_), previous) if value.as_str() == Some(REDACTED) => {
            *value = previous.clone();
        }
        (Value::String(text), Value::String(previous))
            if text != previous
                && previous.contains('@')
                && switchboard_core::config::redact_url_password(previous) == *text =>
        {
            // A URL shown with its password redacted (`user:<redacted>@host`).
            *text = previous.clone();
        }
        _ => {}
    }
}

/// A `PATCH` body: a JSON merge patch must be an object (`422` otherwise).
pub fn patch_object(patch: Value) -> Result<Value, Problem> {
    if patch.is_object() {
        Ok(patch)
    } else {
        Err(Problem::validation(
            "a merge patch must be a JSON object",
            Vec::new(),
        ))
    }
}

/// Applies an RFC 7396 JSON merge patch: an object merges key by key, `null` removes a key,
/// anything else replaces the value.
pub fn merge_patch(target: &mut Value, patch: Value) {
    let Value::Object(patch) = patch else {
        *target = patch;
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(map) = target {
        for (key, value) in patch {
            if value.is_null() {
                map.remove(&key);
            } else {
                merge_patch(map.entry(key).or_insert(Value::Null), value);
            }
        }
    }
}

/// `404` for an unknown id.
pub fn not_found(kind: Kind, id: &str) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "Not found",
        format!("no {} `{id}`", kind.as_str()),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{REDACTED, invalid_field, merge_patch, restore_redacted};

    #[test]
    fn merge_patch_follows_rfc_7396() {
        // The examples of RFC 7396, appendix A (a selection).
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (mut target, patch, expected) in cases {
            merge_patch(&mut target, patch.clone());
            assert_eq!(target, expected, "patch {patch}");
        }
    }

    #[test]
    fn redaction_markers_take_back_the_current_values() {
        let current = json!({"verifier": {"kind": "github", "secrets": ["one", "two"]}, "url": "nats://u:pw@host"});
        let mut sent = json!({"verifier": {"kind": "github", "secrets": [REDACTED, "new"]}, "url": "nats://u:<redacted>@host"});
        restore_redacted(&mut sent, &current);
        assert_eq!(
            sent,
            json!({"verifier": {"kind": "github", "secrets": ["one", "new"]}, "url": "nats://u:pw@host"})
        );
        let mut rotated = json!({"secrets": ["new", REDACTED, REDACTED]});
        restore_redacted(&mut rotated, &json!({"secrets": ["one", "two"]}));
        assert_eq!(rotated, json!({"secrets": ["new", "one", "two"]}));
    }

    #[test]
    fn configuration_messages_name_their_field() {
        let cases = [
            (
                "invalid configuration: source id `a b` must be 1-64 characters of letters, digits, `-` or `_`",
                Some("id"),
            ),
            (
                "invalid configuration: route `a-b`: unknown source `a`",
                Some("source"),
            ),
            (
                "invalid configuration: route `a-b`: unknown destination `b`",
                Some("destination"),
            ),
            (
                "invalid configuration: destination `d`: url must start with http:// or https://",
                Some("url"),
            ),
            (
                "destination `d`: invalid url: relative URL without a base",
                Some("url"),
            ),
            (
                "invalid configuration: destination `d`: timeout must be > 0",
                Some("timeout"),
            ),
            (
                "invalid configuration: destination `d`: retry.exponential.factor must be a number ≥ 1.0",
                Some("retry"),
            ),
            (
                "invalid configuration: source `s`: verifier `github` needs at least one secret",
                Some("verifier"),
            ),
            ("source `s`: sendgrid public_key: bad key", Some("verifier")),
            (
                "destination `d`: invalid header name `a b`",
                Some("headers"),
            ),
            ("something else entirely", None),
        ];
        for (message, field) in cases {
            assert_eq!(invalid_field(message), field, "{message}");
        }
    }
}
