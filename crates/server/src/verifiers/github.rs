//! GitHub: `X-Hub-Signature-256`, dedup on `X-GitHub-Delivery`, type from `X-GitHub-Event`
//! plus the payload's `action`; `ping` is answered directly.

use axum::http::StatusCode;
use switchboard_signatures::github;

use super::{Accepted, Handshake, Inbound, Rejection, Verdict, Verify, json_str, secret_bytes};

/// GitHub webhook verifier.
#[derive(Debug)]
pub struct Github {
    secrets: Vec<Vec<u8>>,
}

impl Github {
    /// Builds it from the configured secrets.
    pub fn new(secrets: &[String]) -> Self {
        Self {
            secrets: secret_bytes(secrets),
        }
    }
}

impl Verify for Github {
    fn verify(&self, request: &Inbound<'_>) -> Result<Verdict, Rejection> {
        github::verify(
            &self.secrets,
            request.header(github::SIGNATURE_HEADER),
            request.body,
        )?;
        let event = request.header_owned("x-github-event");
        if event.as_deref() == Some("ping") {
            return Ok(Verdict::Handshake(Handshake {
                status: StatusCode::OK,
                body: serde_json::json!({ "ok": true, "event": "ping" }),
            }));
        }
        // Payloads are JSON, or a form with the JSON in `payload` when so configured.
        let payload = request.json().or_else(|| {
            request
                .form()?
                .into_iter()
                .find(|(k, _)| k == "payload")
                .and_then(|(_, v)| serde_json::from_str(&v).ok())
        });
        let action = payload.as_ref().and_then(|p| json_str(p, "/action"));
        let event_type = match (event, action) {
            (Some(event), Some(action)) => Some(format!("{event}.{action}")),
            (event, _) => event,
        };
        Ok(Verdict::Accept(Accepted {
            dedup_key: request.header_owned(github::DELIVERY_HEADER),
            event_type,
            empty_ack: false,
        }))
    }
}
