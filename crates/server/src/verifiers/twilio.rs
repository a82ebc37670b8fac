//! Twilio: `X-Twilio-Signature` over the URL Twilio called plus the sorted form parameters (or
//! with `bodySHA256` in the URL for JSON bodies). Behind a proxy the URL Twilio saw differs from
//! the one we receive, so it comes from `public_url` or is rebuilt from forwarding headers.

use switchboard_signatures::twilio;

use super::{Accepted, Inbound, Rejection, Verdict, Verify, secret_bytes};

/// Twilio request verifier.
#[derive(Debug)]
pub struct Twilio {
    secrets: Vec<Vec<u8>>,
    public_url: Option<String>,
}

impl Twilio {
    /// Builds it from auth tokens and the optional public URL of the source.
    pub fn new(secrets: &[String], public_url: Option<String>) -> Self {
        Self {
            secrets: secret_bytes(secrets),
            public_url,
        }
    }

    /// The full URL as Twilio requested it, query string included.
    fn url(&self, request: &Inbound<'_>) -> Option<String> {
        let query = request.uri.query();
        if let Some(base) = &self.public_url {
            return Some(match query {
                Some(q) if !base.contains('?') => format!("{base}?{q}"),
                _ => base.clone(),
            });
        }
        let scheme = request
            .header("x-forwarded-proto")
            .and_then(|p| p.split(',').next())
            .map(str::trim)
            .unwrap_or("http");
        let host = request
            .header("x-forwarded-host")
            .or_else(|| request.header("host"))?;
        let path_and_query = request
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        Some(format!("{scheme}://{host}{path_and_query}"))
    }
}

impl Verify for Twilio {
    fn verify(&self, request: &Inbound<'_>) -> Result<Verdict, Rejection> {
        let url = self.url(request).ok_or_else(|| {
            Rejection::new(
                "malformed_signature",
                "cannot rebuild the URL Twilio signed: no Host header; set verifier.public_url",
            )
        })?;
        twilio::verify(
            &self.secrets,
            &url,
            twilio::Headers::from_lookup(request),
            request.body,
        )?;
        Ok(Verdict::Accept(Accepted {
            dedup_key: request.header_owned("i-twilio-idempotency-token"),
            event_type: None,
            empty_ack: false,
        }))
    }
}
