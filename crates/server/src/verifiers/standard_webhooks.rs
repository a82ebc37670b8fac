//! Standard Webhooks (and Svix): `v1` HMAC with `whsec_` secrets or `v1a` Ed25519 with `whpk_`
//! public keys, five-minute window, `svix-` header names accepted; dedup on `webhook-id`,
//! type from the payload's `type`.

use std::time::Duration;

use switchboard_signatures::standard_webhooks::{self as sw, Headers};

use super::{Accepted, Inbound, Rejection, Verdict, Verify, json_str};

/// Standard Webhooks verifier.
#[derive(Debug)]
pub struct StandardWebhooks {
    keys: Vec<sw::SigningKey>,
    public_keys: Vec<sw::PublicKey>,
    tolerance: Duration,
}

impl StandardWebhooks {
    /// Builds it from `whsec_…` secrets and/or `whpk_…` public keys.
    pub fn new(secrets: &[String], tolerance: Duration) -> Result<Self, String> {
        let mut keys = Vec::new();
        let mut public_keys = Vec::new();
        for secret in secrets {
            if secret.starts_with("whpk_") {
                public_keys.push(sw::PublicKey::from_secret(secret).map_err(|e| e.to_string())?);
            } else {
                keys.push(sw::SigningKey::from_secret(secret).map_err(|e| e.to_string())?);
            }
        }
        Ok(Self {
            keys,
            public_keys,
            tolerance,
        })
    }
}

impl Verify for StandardWebhooks {
    fn verify(&self, request: &Inbound<'_>) -> Result<Verdict, Rejection> {
        let headers = Headers::from_lookup(request);
        let tolerance = self.tolerance.as_secs() as i64;
        let symmetric = (!self.keys.is_empty())
            .then(|| sw::verify(&self.keys, headers, request.body, request.now, tolerance));
        let result = match symmetric {
            Some(Ok(())) => Ok(()),
            other if !self.public_keys.is_empty() => sw::verify_asymmetric(
                &self.public_keys,
                headers,
                request.body,
                request.now,
                tolerance,
            )
            .or_else(|e| other.unwrap_or(Err(e))),
            other => other.unwrap_or(Err(switchboard_signatures::SignatureError::NoMatch)),
        };
        result?;
        Ok(Verdict::Accept(Accepted {
            dedup_key: headers.id.map(str::to_owned),
            event_type: request.json().and_then(|p| json_str(&p, "/type")),
            empty_ack: false,
        }))
    }
}
