//! Slack: `v0` signatures with a five-minute window. Events API payloads are de-duplicated on
//! `event_id` (Slack retries carry the same id); `url_verification` is answered with its
//! challenge; slash commands and interactivity payloads (forms) are verified and stored too.

use std::time::Duration;

use axum::http::StatusCode;
use switchboard_signatures::slack;

use super::{Accepted, Handshake, Inbound, Rejection, Verdict, Verify, json_str, secret_bytes};

/// Slack request verifier.
#[derive(Debug)]
pub struct Slack {
    secrets: Vec<Vec<u8>>,
    tolerance: Duration,
}

impl Slack {
    /// Builds it from the app's signing secrets.
    pub fn new(secrets: &[String], tolerance: Duration) -> Self {
        Self {
            secrets: secret_bytes(secrets),
            tolerance,
        }
    }
}

impl Verify for Slack {
    fn verify(&self, request: &Inbound<'_>) -> Result<Verdict, Rejection> {
        slack::verify(
            &self.secrets,
            slack::Headers::from_lookup(request),
            request.body,
            request.now,
            self.tolerance.as_secs() as i64,
        )?;
        if let Some(form) = request.form() {
            let field = |name: &str| {
                form.iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
            };
            // Interactivity: the JSON is in `payload`; slash commands: `command`.
            if let Some(payload) = field("payload").and_then(|p| serde_json::from_str(p).ok()) {
                return Ok(Verdict::Accept(Accepted {
                    dedup_key: None,
                    event_type: json_str(&payload, "/type"),
                    empty_ack: true,
                }));
            }
            return Ok(Verdict::Accept(Accepted {
                dedup_key: None,
                event_type: field("command").map(|c| format!("slash_command{c}")),
                empty_ack: true,
            }));
        }
        let payload = request.json();
        let outer = payload.as_ref().and_then(|p| json_str(p, "/type"));
        if outer.as_deref() == Some("url_verification") {
            let challenge = payload
                .as_ref()
                .and_then(|p| json_str(p, "/challenge"))
                .unwrap_or_default();
            return Ok(Verdict::Handshake(Handshake {
                status: StatusCode::OK,
                body: serde_json::json!({ "challenge": challenge }),
            }));
        }
        Ok(Verdict::Accept(Accepted {
            dedup_key: payload.as_ref().and_then(|p| json_str(p, "/event_id")),
            event_type: payload
                .as_ref()
                .and_then(|p| json_str(p, "/event/type"))
                .or(outer),
            empty_ack: false,
        }))
    }
}
