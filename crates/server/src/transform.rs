//! The input jq filters and transforms see, built from an event, and the bounds they run under.
//!
//! `{"body": <parsed JSON, or the text when it is not JSON>, "headers": {name: value},
//! "type": …, "source": …, "received_at": RFC 3339}`.

use serde_json::{Map, Value, json};
use switchboard_core::time::UnixMillis;

/// Bounds of one evaluation on the delivery path.
pub fn limits() -> switchboard_jq::Limits {
    switchboard_jq::Limits {
        timeout: std::time::Duration::from_millis(250),
        max_output_bytes: 4 << 20,
        max_outputs: 1,
    }
}

/// The filter input for an event.
pub fn event_input(
    body: &[u8],
    content_type: Option<&str>,
    headers: &[(String, String)],
    event_type: Option<&str>,
    source: &str,
    received_at: UnixMillis,
) -> Value {
    let parsed = if content_type.is_none_or(|ct| ct.contains("json")) {
        serde_json::from_slice(body).ok()
    } else {
        None
    };
    let body = parsed.unwrap_or_else(|| Value::String(String::from_utf8_lossy(body).into_owned()));
    let mut header_map = Map::new();
    for (name, value) in headers {
        header_map.insert(name.to_ascii_lowercase(), Value::String(value.clone()));
    }
    json!({
        "body": body,
        "headers": header_map,
        "type": event_type,
        "source": source,
        "received_at": rfc3339(received_at),
    })
}

/// Unix ms as RFC 3339 (UTC, milliseconds).
pub fn rfc3339(millis: UnixMillis) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis.max(0) as u64);
    humantime::format_rfc3339_millis(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies_are_parsed_and_others_kept_as_text() {
        let input = event_input(
            br#"{"a":1}"#,
            Some("application/json"),
            &[("X-Tag".into(), "v".into())],
            Some("t"),
            "s",
            0,
        );
        assert_eq!(input["body"]["a"], 1);
        assert_eq!(input["headers"]["x-tag"], "v");
        assert_eq!(input["received_at"], "1970-01-01T00:00:00.000Z");
        let text = event_input(
            b"a=1",
            Some("application/x-www-form-urlencoded"),
            &[],
            None,
            "s",
            0,
        );
        assert_eq!(text["body"], "a=1");
        assert_eq!(text["type"], Value::Null);
    }
}
