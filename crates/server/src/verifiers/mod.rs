//! Inbound verifiers: one file per provider, one registry ([`build`]).
//!
//! A verifier checks a request's raw bytes (signature, timestamp window, credentials) and reads
//! what the provider says about the event: its de-duplication key and type. Some providers
//! expect an immediate answer to a handshake (Slack's `url_verification`, GitHub's `ping`);
//! those are answered without storing anything. Verification is CPU-only: nothing slow happens
//! before the commit. Adding a provider: a file here and one line in [`build`] (plus its config
//! variant in `switchboard_core::config::VerifierConfig`).

mod api_key;
mod basic;
mod github;
mod hmac;
mod none;
mod sendgrid;
mod shopify;
mod slack;
mod standard_webhooks;
mod stripe;
mod twilio;

use axum::http::{HeaderMap, StatusCode, Uri};
use switchboard_core::config::VerifierConfig;
use switchboard_signatures::{HeaderLookup, SignatureError};

/// One inbound request as verifiers see it.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// Raw body bytes.
    pub body: &'a [u8],
    /// Request URI (path and query) as received.
    pub uri: &'a Uri,
    /// Current time, unix seconds.
    pub now: i64,
}

impl<'a> Inbound<'a> {
    /// A header's value, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A header's value as an owned string, for dedup keys and types.
    pub fn header_owned(&self, name: &str) -> Option<String> {
        self.header(name)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    /// The body parsed as JSON, when it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(self.body).ok()
    }

    /// The body's `application/x-www-form-urlencoded` parameters, when it is a form.
    pub fn form(&self) -> Option<Vec<(String, String)>> {
        let ct = self.header("content-type")?;
        if !ct
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
        {
            return None;
        }
        Some(
            form_urlencoded::parse(self.body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }
}

impl<'a> HeaderLookup<'a> for Inbound<'a> {
    fn header(&self, name: &str) -> Option<&'a str> {
        Inbound::header(self, name)
    }
}

/// What a verifier learned from an authentic request.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Accepted {
    /// The provider's unique id for this delivery, for de-duplication.
    pub dedup_key: Option<String>,
    /// The event type (`pull_request.opened`, `invoice.paid`, …).
    pub event_type: Option<String>,
    /// Answer `200` with an empty body once stored, instead of `202 {"id": …}` (Slack shows
    /// any body sent to a slash command or interaction to the user).
    pub empty_ack: bool,
}

/// A verified request that the provider expects answered directly, without storing it.
#[derive(Debug, Clone, PartialEq)]
pub struct Handshake {
    /// Status to answer with.
    pub status: StatusCode,
    /// JSON body to answer with.
    pub body: serde_json::Value,
}

/// The verdict on an authentic request.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Store and route it.
    Accept(Accepted),
    /// Answer it and store nothing.
    Handshake(Handshake),
}

/// Why a request was refused; becomes a `401` problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Stable reason code.
    pub code: &'static str,
    /// Human explanation; never contains an expected signature or secret.
    pub detail: String,
}

impl Rejection {
    /// A rejection with a code and detail.
    pub fn new(code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }
}

impl From<SignatureError> for Rejection {
    fn from(error: SignatureError) -> Self {
        let code = match &error {
            SignatureError::MissingHeader(_) => "missing_signature",
            SignatureError::MalformedHeader { .. } | SignatureError::InvalidRequest(_) => {
                "malformed_signature"
            }
            SignatureError::TimestampOutOfTolerance { .. } => "timestamp_out_of_tolerance",
            SignatureError::NoMatch
            | SignatureError::BodyHashMismatch
            | SignatureError::InvalidSecret(_)
            | SignatureError::InvalidConfig(_) => "invalid_signature",
        };
        Self::new(code, error.to_string())
    }
}

/// A provider's verifier, built once from configuration.
pub trait Verify: Send + Sync + std::fmt::Debug {
    /// Checks the request and reads its dedup key and type.
    fn verify(&self, request: &Inbound<'_>) -> Result<Verdict, Rejection>;

    /// Lowercase names of headers that carry credentials for this verifier; their values are
    /// redacted before headers are stored.
    fn credential_headers(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The registry: builds the verifier a source's configuration asks for.
pub fn build(config: &VerifierConfig) -> Result<Box<dyn Verify>, String> {
    config.validate()?;
    Ok(match config {
        VerifierConfig::None => Box::new(none::NoVerifier),
        VerifierConfig::Github { secrets } => Box::new(github::Github::new(secrets)),
        VerifierConfig::Stripe { secrets, tolerance } => {
            Box::new(stripe::Stripe::new(secrets, *tolerance))
        }
        VerifierConfig::Slack { secrets, tolerance } => {
            Box::new(slack::Slack::new(secrets, *tolerance))
        }
        VerifierConfig::Shopify { secrets } => Box::new(shopify::Shopify::new(secrets)),
        VerifierConfig::Twilio {
            secrets,
            public_url,
        } => Box::new(twilio::Twilio::new(secrets, public_url.clone())),
        VerifierConfig::Sendgrid {
            public_key,
            tolerance,
        } => Box::new(sendgrid::Sendgrid::new(public_key, *tolerance)?),
        VerifierConfig::StandardWebhooks { secrets, tolerance } => Box::new(
            standard_webhooks::StandardWebhooks::new(secrets, *tolerance)?,
        ),
        VerifierConfig::Hmac(config) => Box::new(hmac::Hmac::new(config)?),
        VerifierConfig::Basic {
            username,
            passwords,
        } => Box::new(basic::Basic::new(username, passwords)),
        VerifierConfig::ApiKey {
            keys,
            header,
            query,
        } => Box::new(api_key::ApiKey::new(keys, header.clone(), query.clone())),
    })
}

/// Secrets as byte strings, the key form most HMAC schemes use.
fn secret_bytes(secrets: &[String]) -> Vec<Vec<u8>> {
    secrets.iter().map(|s| s.as_bytes().to_vec()).collect()
}

/// Reads a string field at a JSON pointer (`/event/type`).
fn json_str(value: &serde_json::Value, pointer: &str) -> Option<String> {
    value
        .pointer(pointer)
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests;
