//! Request extractors that answer bad input with problem+json: JSON bodies (content type, depth
//! limit, unknown fields named), query strings (unknown parameters named).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::problem::{FieldError, Problem};
use crate::state::AppState;

/// Deepest JSON nesting accepted in request bodies.
pub const MAX_JSON_DEPTH: usize = 32;

/// A JSON request body.
pub struct ApiJson<T>(pub T);

/// Nesting depth of a JSON text, counting brackets outside strings.
fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// The field a deserialization error is about: serde_path_to_error's path, extended by the field
/// that serde names in "unknown field `x`" and "missing field `x`" (which the path stops short
/// of, so a missing top-level field would otherwise be reported with an empty path).
pub fn field_path(path: &str, message: &str) -> String {
    let path = if path == "." { "" } else { path };
    let named = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    match named {
        Some(name) if path.is_empty() => name.to_owned(),
        Some(name) if !path.ends_with(name) => format!("{path}.{name}"),
        _ => path.to_owned(),
    }
}

/// Parses JSON into `T`, mapping serde's message to a field error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    if json_depth(bytes) > MAX_JSON_DEPTH {
        return Err(Problem::bad_request(format!(
            "JSON nested deeper than {MAX_JSON_DEPTH} levels"
        )));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            Problem::bad_request(format!("the body is not valid JSON: {inner}"))
        } else {
            let message = inner.to_string();
            Problem::validation(
                format!("the body does not match the expected shape: {inner}"),
                vec![FieldError {
                    field: field_path(&path, &message),
                    message,
                }],
            )
        }
    })
}

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &Arc<AppState>) -> Result<Self, Problem> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                let ct = ct.to_ascii_lowercase();
                ct.starts_with("application/json") || ct.contains("+json")
            });
        if !is_json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
                "send the body as `content-type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Problem::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        "Payload too large",
                        "the request body is too large",
                    )
                } else {
                    Problem::bad_request(rejection.body_text())
                }
            })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// A query string.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        let query = parts.uri.query().unwrap_or("");
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(ApiQuery)
            .map_err(|error| {
                let path = error.path().to_string();
                let inner = error.into_inner();
                let message = inner.to_string();
                Problem::validation(
                    format!("invalid query parameters: {inner}"),
                    vec![FieldError {
                        field: field_path(&path, &message),
                        message,
                    }],
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_ignores_brackets_in_strings() {
        assert_eq!(json_depth(br#"{"a":[1,{"b":"[[[[{{{"}]}"#), 3);
        assert_eq!(json_depth(br#""\"[[""#), 0);
        let deep = "[".repeat(40) + &"]".repeat(40);
        assert!(parse_json::<serde_json::Value>(deep.as_bytes()).is_err());
    }

    #[test]
    fn unknown_fields_are_named() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            name: String,
        }
        let problem = parse_json::<T>(br#"{"name":"a","nmae":"b"}"#).expect_err("unknown");
        assert_eq!(problem.status, 422);
        assert!(problem.detail.contains("nmae"), "{}", problem.detail);
        assert_eq!(problem.errors[0].field, "nmae");
        let problem = parse_json::<T>(b"{}").expect_err("missing");
        assert_eq!(problem.errors[0].field, "name");
        assert_eq!(
            field_path("verifier", "missing field `secrets`"),
            "verifier.secrets"
        );
        assert_eq!(field_path("retry", "unknown variant `x`"), "retry");
        let problem = parse_json::<T>(b"{").expect_err("syntax");
        assert_eq!(problem.status, 400);
    }
}
