//! `kind = "websocket"`: a long-lived WebSocket connection whose messages become events.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{check_header, check_programs, redacted_headers};
use crate::duration;

/// A source that connects to a `ws://` or `wss://` stream and stores each message it receives
/// as an event.
///
/// After the handshake (with `headers`, e.g. `Authorization`) it sends `authorization_message`
/// (when set), then every `subscribe` message, in order. It pings every `ping_interval` and
/// treats a connection that has been silent (no message, no pong) for `idle_timeout` as dead.
/// It reconnects after `reconnect_min`, doubling up to `reconnect_max` (with jitter), and sends
/// the authorization and subscribe messages again on every new connection.
///
/// ```toml
/// [[sources]]
/// id = "trades"
/// kind = "websocket"
/// url = "wss://stream.example.com/v1"
/// headers = { Authorization = "Bearer …" }
/// subscribe = [{ type = "subscribe", channels = ["trades"] }]
/// filter = '.type == "trade"'
/// event_type = '"trade." + .side'
/// dedup_key = ".trade_id | tostring"
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebsocketSource {
    /// `ws://` or `wss://` URL of the stream.
    pub url: String,
    /// Headers sent with the opening handshake (credentials go here; their values are secrets).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// A first message sent after every connect, before the subscribe messages (APIs that
    /// authenticate in-band). A string is sent as it is; any other value as compact JSON. It
    /// is a secret: never logged, redacted by the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_message: Option<Value>,
    /// Text messages sent after connecting (and after `authorization_message`), in order. A
    /// string is sent as it is; any other value as compact JSON.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscribe: Vec<Value>,
    /// How often a ping is sent.
    #[serde(with = "duration::human", default = "default_ping_interval")]
    pub ping_interval: Duration,
    /// A connection with no traffic at all (messages, pongs) for this long is dead: it is
    /// closed and opened again. Must be longer than `ping_interval`.
    #[serde(with = "duration::human", default = "default_idle_timeout")]
    pub idle_timeout: Duration,
    /// Time allowed for the TCP connect, TLS and WebSocket handshakes together.
    #[serde(with = "duration::human", default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    /// Wait before the first reconnect; it doubles after every failed attempt.
    #[serde(with = "duration::human", default = "default_reconnect_min")]
    pub reconnect_min: Duration,
    /// Longest wait between reconnects.
    #[serde(with = "duration::human", default = "default_reconnect_max")]
    pub reconnect_max: Duration,
    /// jq, run on each message (parsed JSON, or the text): must yield `true` for the message
    /// to be stored. Drops heartbeats, acknowledgements and other control messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// jq, run on each message: the event type (a string or number; `null` for none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// jq, run on each message: its de-duplication key (a string or number; `null` for none).
    /// A message whose key was already stored for this source is not stored again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_key: Option<String>,
    /// Largest message accepted, in bytes; a larger one closes the connection (which is then
    /// opened again).
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
}

impl fmt::Debug for WebsocketSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers = redacted_headers(&self.headers);
        f.debug_struct("WebsocketSource")
            .field("url", &crate::config::redact_url_password(&self.url))
            .field("headers", &headers)
            .field(
                "authorization_message",
                &self.authorization_message.as_ref().map(|_| "<redacted>"),
            )
            .field("subscribe", &self.subscribe)
            .field("ping_interval", &self.ping_interval)
            .field("idle_timeout", &self.idle_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("reconnect_min", &self.reconnect_min)
            .field("reconnect_max", &self.reconnect_max)
            .field("filter", &self.filter)
            .field("event_type", &self.event_type)
            .field("dedup_key", &self.dedup_key)
            .field("max_message_bytes", &self.max_message_bytes)
            .finish()
    }
}

fn default_ping_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(75)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_reconnect_min() -> Duration {
    Duration::from_secs(1)
}

fn default_reconnect_max() -> Duration {
    Duration::from_secs(60)
}

fn default_max_message_bytes() -> usize {
    1024 * 1024
}

/// A message to send as text: a string as it is, anything else as compact JSON.
pub fn message_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

impl WebsocketSource {
    /// A source for `url` with every other setting at its default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            headers: BTreeMap::new(),
            authorization_message: None,
            subscribe: Vec::new(),
            ping_interval: default_ping_interval(),
            idle_timeout: default_idle_timeout(),
            connect_timeout: default_connect_timeout(),
            reconnect_min: default_reconnect_min(),
            reconnect_max: default_reconnect_max(),
            filter: None,
            event_type: None,
            dedup_key: None,
            max_message_bytes: default_max_message_bytes(),
        }
    }

    /// Checks what needs no I/O and no jq: the URL's scheme and host, header names, durations.
    /// (The server compiles the jq programs when it loads the configuration.)
    pub fn validate(&self) -> Result<(), String> {
        let rest = self
            .url
            .strip_prefix("ws://")
            .or_else(|| self.url.strip_prefix("wss://"))
            .ok_or_else(|| {
                format!(
                    "url must start with ws:// or wss://, not `{}`",
                    crate::config::redact_url_password(&self.url)
                )
            })?;
        if rest.is_empty() || rest.starts_with(['/', '?', '#']) {
            return Err("url has no host".into());
        }
        for (name, value) in &self.headers {
            check_header(name, value)?;
        }
        for (name, value) in [
            ("ping_interval", self.ping_interval),
            ("idle_timeout", self.idle_timeout),
            ("connect_timeout", self.connect_timeout),
            ("reconnect_min", self.reconnect_min),
            ("reconnect_max", self.reconnect_max),
        ] {
            if value.is_zero() {
                return Err(format!("{name} must be > 0"));
            }
            if value > super::MAX_SOURCE_DURATION {
                return Err(format!("{name} must be at most 1 day"));
            }
        }
        if self.idle_timeout <= self.ping_interval {
            return Err(format!(
                "idle_timeout ({}) must be longer than ping_interval ({}), or a live connection \
                 would be taken for dead before its pong arrives",
                humantime::format_duration(self.idle_timeout),
                humantime::format_duration(self.ping_interval)
            ));
        }
        if self.reconnect_max < self.reconnect_min {
            return Err("reconnect_max must not be shorter than reconnect_min".into());
        }
        if self.max_message_bytes == 0 {
            return Err("max_message_bytes must be > 0".into());
        }
        check_programs(&[
            ("filter", &self.filter),
            ("event_type", &self.event_type),
            ("dedup_key", &self.dedup_key),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use crate::config::SourceKind;

    const EXAMPLE: &str = r#"
[[sources]]
id = "trades"
kind = "websocket"
url = "wss://stream.example.com/v1"
headers = { Authorization = "Bearer s3cret-token" }
authorization_message = { action = "auth", key = "hidden-key" }
subscribe = [{ type = "subscribe", channels = ["trades"] }, "ping-me"]
ping_interval = "10s"
idle_timeout = "25s"
filter = '.type == "trade"'
event_type = '"trade"'
dedup_key = ".id | tostring"
"#;

    #[test]
    fn the_documented_settings_parse_and_round_trip() {
        let config = Config::from_toml(EXAMPLE).expect("parses");
        config.validate().expect("valid");
        let source = &config.sources[0];
        let SourceKind::Websocket(ws) = &source.kind else {
            panic!("a websocket source: {source:?}")
        };
        assert_eq!(ws.ping_interval, Duration::from_secs(10));
        assert_eq!(ws.reconnect_max, Duration::from_secs(60));
        assert_eq!(
            message_text(&ws.subscribe[0]),
            r#"{"channels":["trades"],"type":"subscribe"}"#
        );
        assert_eq!(message_text(&ws.subscribe[1]), "ping-me");
        let json = serde_json::to_value(source).expect("serializes");
        assert_eq!(json["kind"], "websocket");
        assert_eq!(json["idle_timeout"], "25s");
        let back: crate::config::SourceConfig = serde_json::from_value(json).expect("parses");
        assert_eq!(&back, source);
    }

    #[test]
    fn debug_output_hides_credentials() {
        let config = Config::from_toml(EXAMPLE).expect("parses");
        let debug = format!("{:?}", config.sources[0]);
        assert!(!debug.contains("s3cret-token"), "{debug}");
        assert!(!debug.contains("hidden-key"), "{debug}");
        assert!(debug.contains("Authorization"), "{debug}");
    }

    #[test]
    fn bad_settings_are_refused_with_the_reason() {
        let cases = [
            ("url = 'http://x'", "ws:// or wss://"),
            ("url = 'ws://'", "no host"),
            (
                "url = 'ws://x'\nping_interval = '30s'\nidle_timeout = '30s'",
                "idle_timeout",
            ),
            (
                "url = 'ws://x'\nreconnect_min = '10s'\nreconnect_max = '1s'",
                "reconnect_max",
            ),
            (
                "url = 'ws://x'\nreconnect_min = '0s'",
                "reconnect_min must be > 0",
            ),
            (
                "url = 'ws://x'\nheaders = { 'Bad Name' = 'v' }",
                "not a valid header name",
            ),
            (
                "url = 'ws://x'\nheaders = { A = \"v\\r\\nX: y\" }",
                "control character",
            ),
            ("url = 'ws://x'\nfilter = ' '", "filter is empty"),
            (
                "url = 'ws://x'\nidle_timeout = '400d'",
                "idle_timeout must be at most 1 day",
            ),
            ("url = 'ws://x'\nmax_message_bytes = 0", "max_message_bytes"),
            ("url = 'ws://x'\nping = '1s'", "unknown field `ping`"),
            ("headers = {}", "missing field `url`"),
        ];
        for (settings, why) in cases {
            let toml = format!("[[sources]]\nid = 's'\nkind = 'websocket'\n{settings}\n");
            let error = Config::from_toml(&toml).expect_err(settings).to_string();
            assert!(
                error.contains("source `s`") && error.contains(why),
                "{settings}: {error}"
            );
        }
    }
}
