//! What the stream and schedule sources share: their jq programs (compiled once per task, run
//! on the blocking pool under [`crate::transform::limits`]), the text of a jq-computed event
//! type or de-duplication key, emitting with retries, and their metrics.

use std::sync::Once;
use std::time::Duration;

use serde_json::Value;
use switchboard_jq::{Limits, Program};
use tokio_util::sync::CancellationToken;

use super::{Emitted, Emitter, Message};
use crate::ingest::commit::CommitError;

/// Compiles an optional jq program of a source's settings; the error names the setting.
pub(crate) fn compile(setting: &str, source: Option<&str>) -> Result<Option<Program>, String> {
    source
        .map(|text| Program::compile(text).map_err(|e| format!("{setting}: {e}")))
        .transpose()
}

/// The jq programs run on each message or item: which are kept, and their event type and
/// de-duplication key.
#[derive(Debug, Clone, Default)]
pub(crate) struct Programs {
    /// Must yield `true` for the message to be kept.
    pub filter: Option<Program>,
    /// The event type.
    pub event_type: Option<Program>,
    /// The de-duplication key.
    pub dedup_key: Option<Program>,
    /// Whether a message whose key program yields `null` is refused (a schedule's key must
    /// identify its item, or every poll would store it again).
    pub key_required: bool,
}

/// What the programs make of one message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    /// The filter said no.
    Dropped,
    /// Store it with this type and key.
    Keep {
        /// Event type, if any.
        event_type: Option<String>,
        /// De-duplication key, if any.
        dedup_key: Option<String>,
    },
    /// A program failed (the message says which and why).
    Failed(String),
}

impl Programs {
    /// Whether there is nothing to run.
    pub fn is_empty(&self) -> bool {
        self.filter.is_none() && self.event_type.is_none() && self.dedup_key.is_none()
    }

    /// Runs the programs on `input` (blocking; each run bounded by [`crate::transform::limits`]).
    pub fn judge(&self, input: &Value) -> Verdict {
        let limits = crate::transform::limits();
        if let Some(filter) = &self.filter {
            match filter.run_bool(input, &limits) {
                Ok(true) => {}
                Ok(false) => return Verdict::Dropped,
                Err(e) => return Verdict::Failed(format!("filter: {e}")),
            }
        }
        let event_type = match scalar_output(self.event_type.as_ref(), input, &limits) {
            Ok(value) => value,
            Err(e) => return Verdict::Failed(format!("event_type: {e}")),
        };
        let dedup_key = match scalar_output(self.dedup_key.as_ref(), input, &limits) {
            Ok(None) if self.key_required && self.dedup_key.is_some() => {
                return Verdict::Failed(
                    "key: yielded null; every item needs a key, or each poll would store it again"
                        .into(),
                );
            }
            Ok(value) => value,
            Err(e) => return Verdict::Failed(format!("key: {e}")),
        };
        Verdict::Keep {
            event_type,
            dedup_key,
        }
    }
}

/// Runs `program` (if any) for a single scalar output: see [`scalar`].
fn scalar_output(
    program: Option<&Program>,
    input: &Value,
    limits: &Limits,
) -> Result<Option<String>, String> {
    match program {
        None => Ok(None),
        Some(program) => scalar(program.run_one(input, limits).map_err(|e| e.to_string())?),
    }
}

/// Longest event type or de-duplication key kept (they are identifiers, not payloads).
pub(crate) const MAX_SCALAR_CHARS: usize = 512;

/// The text of a jq output used as an event type or a key: a string as it is, a number or a
/// boolean as JSON, `null` as none. Arrays and objects are refused, as are texts longer than
/// [`MAX_SCALAR_CHARS`] and empty strings.
pub(crate) fn scalar(value: Value) -> Result<Option<String>, String> {
    let text = match value {
        Value::Null => return Ok(None),
        Value::String(text) => text,
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(_) | Value::Object(_) => {
            return Err("must yield a string or a number, not an array or object".into());
        }
    };
    if text.is_empty() {
        return Err("yielded an empty string".into());
    }
    if text.chars().count() > MAX_SCALAR_CHARS {
        return Err(format!(
            "yielded a text longer than {MAX_SCALAR_CHARS} characters"
        ));
    }
    Ok(Some(text))
}

/// Runs `work` on the blocking pool (jq programs, large JSON parses).
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| format!("the evaluation did not finish: {e}"))
}

/// The JSON value of a message body, or `None` when it is not JSON.
pub(crate) fn parse_json(body: &[u8]) -> Option<Value> {
    serde_json::from_slice(body).ok()
}

/// The jq input for a message: its parsed JSON, or its text when it is not JSON.
pub(crate) fn jq_input(body: &[u8], parsed: Option<Value>) -> Value {
    parsed.unwrap_or_else(|| Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// Pause between attempts to store a message when the store fails.
const EMIT_RETRY: Duration = Duration::from_secs(1);

/// Stores `message`, trying again while the store fails (a message of a stream has nowhere
/// else to go). Returns `None` once `stop` is cancelled or the server is shutting down.
pub(crate) async fn emit_until_stored(
    emitter: &Emitter,
    message: Message,
    stop: &CancellationToken,
) -> Option<Emitted> {
    loop {
        match emitter.emit(message.clone()).await {
            Ok(emitted) => return Some(emitted),
            Err(CommitError::Closed) => return None,
            Err(CommitError::Store(error)) => {
                tracing::error!(source = emitter.source(), %error,
                    "could not store a message; trying again");
                count_message(emitter.source(), "failed");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return None,
            _ = tokio::time::sleep(EMIT_RETRY) => {}
        }
    }
}

/// Counts one message of `source` with its outcome (`stored`, `duplicate`, `filtered`,
/// `failed`).
pub(crate) fn count_message(source: &str, outcome: &'static str) {
    metrics::counter!("switchboard_source_messages_total",
        "source" => source.to_owned(), "outcome" => outcome)
    .increment(1);
}

/// Counts what became of an emitted message.
pub(crate) fn count_emitted(source: &str, emitted: &Emitted) {
    count_message(
        source,
        match emitted {
            Emitted::Stored(_) => "stored",
            Emitted::Duplicate(_) => "duplicate",
        },
    );
}

/// Describes the source metrics once per process.
pub(crate) fn describe_metrics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        metrics::describe_counter!(
            "switchboard_source_messages_total",
            "Messages and polled items of fetching sources, by source and outcome \
             (stored, duplicate, filtered, failed)"
        );
        metrics::describe_gauge!(
            "switchboard_source_connected",
            "1 while a websocket source is connected and subscribed, else 0"
        );
        metrics::describe_counter!(
            "switchboard_source_reconnects_total",
            "Times a websocket source lost or failed its connection and tried again"
        );
        metrics::describe_counter!(
            "switchboard_source_polls_total",
            "Polls of schedule sources, by source and outcome (ok, http_error, \
             transport_error, invalid_response, store_error)"
        );
    });
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn programs(filter: Option<&str>, event_type: Option<&str>, key: Option<&str>) -> Programs {
        Programs {
            filter: compile("filter", filter).expect("compiles"),
            event_type: compile("event_type", event_type).expect("compiles"),
            dedup_key: compile("key", key).expect("compiles"),
            key_required: false,
        }
    }

    #[test]
    fn programs_keep_drop_and_name_messages() {
        let p = programs(
            Some(r#".type != "heartbeat""#),
            Some(r#""trade." + .side"#),
            Some(".id"),
        );
        assert_eq!(p.judge(&json!({"type": "heartbeat"})), Verdict::Dropped);
        assert_eq!(
            p.judge(&json!({"type": "trade", "side": "buy", "id": 7})),
            Verdict::Keep {
                event_type: Some("trade.buy".into()),
                dedup_key: Some("7".into())
            }
        );
        let Verdict::Failed(why) = p.judge(&json!("text")) else {
            panic!("a string has no .type")
        };
        assert!(why.starts_with("filter:"), "{why}");
        let Verdict::Failed(why) = programs(Some(".n"), None, None).judge(&json!({"n": 1})) else {
            panic!("1 is not a boolean")
        };
        assert!(why.contains("true or false"), "{why}");
    }

    #[test]
    fn keys_must_be_scalars_and_required_keys_present() {
        let mut p = programs(None, None, Some(".id"));
        assert_eq!(
            p.judge(&json!({})),
            Verdict::Keep {
                event_type: None,
                dedup_key: None
            }
        );
        p.key_required = true;
        assert!(matches!(p.judge(&json!({})), Verdict::Failed(why) if why.contains("null")));
        assert!(
            matches!(p.judge(&json!({"id": [1]})), Verdict::Failed(why) if why.contains("array"))
        );
        assert_eq!(scalar(json!("a")), Ok(Some("a".into())));
        assert_eq!(scalar(json!(1.5)), Ok(Some("1.5".into())));
        assert!(scalar(json!("")).is_err());
        assert!(scalar(json!("x".repeat(MAX_SCALAR_CHARS + 1))).is_err());
    }

    #[test]
    fn compile_errors_name_the_setting() {
        let error = compile("filter", Some(".a |")).expect_err("does not compile");
        assert!(error.starts_with("filter: jq error at line 1"), "{error}");
    }
}
