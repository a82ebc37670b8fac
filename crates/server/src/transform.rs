//! The input jq filters and transforms see, built from an event, and the bounds they run under.
//!
//! `{"body": <parsed JSON, or the text when it is not JSON>, "headers": {name: value},
//! "type": …, "source": …, "received_at": RFC 3339}`.

use serde_json::{Map, Value, json};
use switchboard_core::time::UnixMillis;

/// A route's compiled jq programs.
#[derive(Debug, Default)]
pub struct RouteProgram {
    /// Must yield `true` for the event to be delivered.
    pub filter: Option<switchboard_jq::Program>,
    /// Its single output is the delivered body.
    pub transform: Option<switchboard_jq::Program>,
}

/// What a route makes of an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Routed {
    /// The filter did not match: nothing is sent.
    Filtered,
    /// Send this body (`None`: the event's own bytes).
    Send(Option<Value>),
}

impl RouteProgram {
    /// Compiles a route's filter and transform; the error names the route and the program.
    pub fn compile(route: &switchboard_core::config::RouteConfig) -> Result<Self, String> {
        let id = route.effective_id();
        let compile = |what: &str, source: &Option<String>| {
            source
                .as_deref()
                .map(|s| {
                    switchboard_jq::Program::compile(s)
                        .map_err(|e| format!("route `{id}`: {what}: {e}"))
                })
                .transpose()
        };
        Ok(Self {
            filter: compile("filter", &route.filter)?,
            transform: compile("transform", &route.transform)?,
        })
    }

    /// Whether the route does anything to events.
    pub fn is_empty(&self) -> bool {
        self.filter.is_none() && self.transform.is_none()
    }

    /// Runs the filter, then the transform, on `input` (blocking; bounded by [`limits`]). Both
    /// share one conversion of the input and one evaluation stack.
    pub fn apply(&self, input: &Value) -> Result<Routed, String> {
        switchboard_jq::with_eval_stack(|| {
            let converted = switchboard_jq::Input::new(input);
            if let Some(filter) = &self.filter {
                match filter.run_bool_on(&converted, &limits()) {
                    Ok(true) => {}
                    Ok(false) => return Ok(Routed::Filtered),
                    Err(e) => return Err(format!("route filter failed: {e}")),
                }
            }
            match &self.transform {
                None => Ok(Routed::Send(None)),
                Some(transform) => transform
                    .run_one_on(&converted, &limits())
                    .map(|body| Routed::Send(Some(body)))
                    .map_err(|e| format!("route transform failed: {e}")),
            }
        })
    }
}

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
