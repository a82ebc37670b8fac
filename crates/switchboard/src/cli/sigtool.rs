//! `switchboard sign` and `switchboard verify`: offline helpers over `switchboard-signatures`,
//! for debugging a provider integration. `sign` prints the headers a provider would send for a
//! body; `verify` checks received headers the way a source's verifier does and says why not
//! (exit 0 valid, 1 invalid).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Map, Value, json};
use switchboard_core::time::now_millis;
use switchboard_signatures::{
    SignatureError, discord, github, header_list, sendgrid, shopify, slack, standard_webhooks,
    stripe, twilio,
};

use super::Ctx;
use super::input::{BodyArgs, parse_header, unix_seconds};
use super::output::outln;
use super::output::print_json;
use super::samples;

/// A signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scheme {
    /// Standard Webhooks / Svix (`whsec_…` HMAC, or `whsk_…`/`whpk_…` Ed25519).
    StandardWebhooks,
    /// GitHub `X-Hub-Signature-256`.
    Github,
    /// Stripe `Stripe-Signature`.
    Stripe,
    /// Slack `X-Slack-Signature`.
    Slack,
    /// Shopify `X-Shopify-Hmac-Sha256`.
    Shopify,
    /// Twilio `X-Twilio-Signature` (needs `--url`).
    Twilio,
    /// SendGrid signed Event Webhook (ECDSA P-256).
    Sendgrid,
    /// Discord interactions (Ed25519).
    Discord,
}

/// Options of `sign`.
#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// Signature scheme.
    #[arg(long, value_enum)]
    scheme: Scheme,
    /// Secret, as in the source's verifier (repeat for one signature per secret where the
    /// scheme allows: standard-webhooks, stripe). SendGrid: a base64 PKCS#8 P-256 private key;
    /// Discord: a 64-hex-digit Ed25519 seed (both generated when absent).
    #[arg(long = "secret", value_name = "SECRET")]
    secrets: Vec<String>,
    #[command(flatten)]
    body: BodyArgs,
    /// Signature time: unix seconds or RFC 3339 (default: now).
    #[arg(long, value_name = "TIME")]
    timestamp: Option<String>,
    /// standard-webhooks: the message id (default: a random `msg_…`).
    #[arg(long)]
    id: Option<String>,
    /// twilio: the URL Twilio calls, as configured there.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// twilio: the body's content type (default: JSON when the body parses as JSON, else a form).
    #[arg(long, value_name = "TYPE")]
    content_type: Option<String>,
}

/// Options of `verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Signature scheme.
    #[arg(long, value_enum)]
    scheme: Scheme,
    /// Secret, as in the source's verifier (repeatable: any may match).
    #[arg(long = "secret", value_name = "SECRET")]
    secrets: Vec<String>,
    /// sendgrid: the verification key (base64 DER); discord: the application's public key
    /// (hex); standard-webhooks: a `whpk_…` key for `v1a` signatures.
    #[arg(long, value_name = "KEY")]
    public_key: Option<String>,
    /// A received header, `Name: value` (repeatable).
    #[arg(
        long = "header",
        short = 'H',
        value_name = "NAME: VALUE",
        required = true
    )]
    headers: Vec<String>,
    #[command(flatten)]
    body: BodyArgs,
    /// The time to check timestamps against: unix seconds or RFC 3339 (default: now).
    #[arg(long, value_name = "TIME")]
    now: Option<String>,
    /// Timestamp tolerance (default: 5m for standard-webhooks, stripe and slack; no window for
    /// sendgrid and discord).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    tolerance: Option<Duration>,
    /// twilio: the URL Twilio requested, query string included.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
}

fn body(args: &BodyArgs) -> anyhow::Result<Vec<u8>> {
    args.bytes()?
        .context("give the body with --data or --file (`--data ''` for an empty body)")
}

fn secrets(secrets: &[String], scheme: Scheme) -> anyhow::Result<&[String]> {
    if secrets.is_empty() || secrets.iter().any(String::is_empty) {
        bail!(
            "--scheme {} needs --secret (the secret in the source's verifier)",
            scheme_name(scheme)
        );
    }
    Ok(secrets)
}

fn scheme_name(scheme: Scheme) -> String {
    clap::ValueEnum::to_possible_value(&scheme)
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default()
}

fn now_secs() -> i64 {
    now_millis() / 1000
}

/// What `sign` produced.
#[derive(Default)]
struct Signed {
    headers: Vec<(&'static str, String)>,
    /// Extra facts: the URL to post to, a key to configure.
    notes: Map<String, Value>,
}

/// Runs `sign`.
pub fn sign(ctx: &Ctx, args: SignArgs) -> anyhow::Result<ExitCode> {
    let body = body(&args.body)?;
    let timestamp = match &args.timestamp {
        Some(raw) => unix_seconds(raw)?,
        None => now_secs(),
    };
    let ts = timestamp.to_string();
    let mut signed = Signed::default();
    match args.scheme {
        Scheme::StandardWebhooks => {
            let id = args
                .id
                .clone()
                .unwrap_or_else(|| format!("msg_{}", samples::random_token(27)));
            let mut signatures = Vec::new();
            for secret in secrets(&args.secrets, args.scheme)? {
                if secret.starts_with(standard_webhooks::ASYMMETRIC_SECRET_PREFIX) {
                    let key = standard_webhooks::AsymmetricSigningKey::from_secret(secret)
                        .context("invalid whsk_ secret")?;
                    signatures.push(key.sign(&id, timestamp, &body));
                    signed
                        .notes
                        .insert("public_key".into(), json!(key.public_key().to_secret()));
                } else {
                    let key = standard_webhooks::SigningKey::from_secret(secret)
                        .context("--secret must be a whsec_ secret (base64 after the prefix)")?;
                    signatures.push(key.sign(&id, timestamp, &body));
                }
            }
            signed.headers = vec![
                ("webhook-id", id),
                ("webhook-timestamp", ts),
                ("webhook-signature", signatures.join(" ")),
            ];
        }
        Scheme::Github => {
            let secret = secrets(&args.secrets, args.scheme)?[0].as_bytes();
            signed.headers = vec![
                ("X-Hub-Signature-256", github::sign(secret, &body)),
                ("X-Hub-Signature", github::sign_sha1(secret, &body)),
            ];
        }
        Scheme::Stripe => {
            let secrets = secrets(&args.secrets, args.scheme)?;
            signed.headers = vec![("Stripe-Signature", stripe::sign(secrets, timestamp, &body))];
        }
        Scheme::Slack => {
            let secret = secrets(&args.secrets, args.scheme)?[0].as_bytes();
            signed.headers = vec![
                ("X-Slack-Request-Timestamp", ts.clone()),
                ("X-Slack-Signature", slack::sign(secret, &ts, &body)),
            ];
        }
        Scheme::Shopify => {
            let secret = secrets(&args.secrets, args.scheme)?[0].as_bytes();
            signed.headers = vec![("X-Shopify-Hmac-Sha256", shopify::sign(secret, &body))];
        }
        Scheme::Twilio => {
            let secret = secrets(&args.secrets, args.scheme)?[0].as_bytes();
            let url = args
                .url
                .as_deref()
                .context("--scheme twilio needs --url: the URL Twilio calls")?;
            let form = match &args.content_type {
                Some(ct) => ct
                    .to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded"),
                None => serde_json::from_slice::<Value>(&body).is_err(),
            };
            let algorithm = twilio::Algorithm::HmacSha1;
            let (url, signature, content_type) = if form {
                let signature = twilio::sign_form(secret, url, &body, algorithm);
                (
                    url.to_owned(),
                    signature,
                    "application/x-www-form-urlencoded",
                )
            } else {
                let signed_url = twilio::sign_with_body_hash(secret, url, &body, algorithm);
                (signed_url.url, signed_url.signature, "application/json")
            };
            let content_type = args.content_type.clone().unwrap_or(content_type.into());
            signed.headers = vec![
                ("Content-Type", content_type),
                ("X-Twilio-Signature", signature),
            ];
            signed.notes.insert("url".into(), json!(url));
        }
        Scheme::Sendgrid => {
            let (public_key, signature) = match args.secrets.first() {
                Some(private_key) => sendgrid::sign(private_key, &ts, &body)
                    .context("--secret must be a base64 PKCS#8 DER P-256 private key")?,
                None => {
                    let (private_key, signed_pair) =
                        super::trigger::sign_with_fresh_key(&ts, &body)?;
                    signed
                        .notes
                        .insert("private_key".into(), json!(private_key));
                    signed_pair
                }
            };
            signed.notes.insert("public_key".into(), json!(public_key));
            signed.headers = vec![
                ("X-Twilio-Email-Event-Webhook-Signature", signature),
                ("X-Twilio-Email-Event-Webhook-Timestamp", ts),
            ];
        }
        Scheme::Discord => {
            let seed: [u8; 32] = match args.secrets.first() {
                Some(hex) => decode_hex(hex)
                    .and_then(|bytes| bytes.try_into().ok())
                    .context("--secret must be a 64-hex-digit Ed25519 seed")?,
                None => {
                    let seed: [u8; 32] = rand::random();
                    signed
                        .notes
                        .insert("private_key".into(), json!(hex_encode(&seed)));
                    seed
                }
            };
            let (public_key, signature) = discord::sign(&seed, &ts, &body);
            signed
                .notes
                .insert("public_key".into(), json!(public_key.to_hex()));
            signed.headers = vec![
                ("X-Signature-Ed25519", signature),
                ("X-Signature-Timestamp", ts),
            ];
        }
    }
    if ctx.json {
        let headers: Map<String, Value> = signed
            .headers
            .iter()
            .map(|(name, value)| ((*name).to_owned(), json!(value)))
            .collect();
        let mut out = json!({ "headers": headers });
        for (key, value) in signed.notes {
            out[key] = value;
        }
        print_json(&out);
    } else {
        for (name, value) in &signed.headers {
            outln!("{name}: {value}");
        }
        for (key, value) in &signed.notes {
            let text = value.as_str().unwrap_or_default();
            match key.as_str() {
                "url" => eprintln!("send it to: {text}"),
                "public_key" => eprintln!("verification key (verifier.public_key): {text}"),
                "private_key" => eprintln!("generated signing key (reuse with --secret): {text}"),
                _ => eprintln!("{key}: {text}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `verify`.
pub fn verify(ctx: &Ctx, args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let body = body(&args.body)?;
    let pairs = args
        .headers
        .iter()
        .map(|raw| parse_header(raw))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let lookup = header_list(&refs);
    let now = match &args.now {
        Some(raw) => unix_seconds(raw)?,
        None => now_secs(),
    };
    let tolerance = args.tolerance.map(|t| t.as_secs() as i64);
    let window = tolerance.unwrap_or(300);
    let bytes: Vec<&[u8]> = args.secrets.iter().map(|s| s.as_bytes()).collect();
    let result = match args.scheme {
        Scheme::StandardWebhooks => {
            let headers = standard_webhooks::Headers::from_lookup(&lookup);
            match &args.public_key {
                Some(key) => {
                    let key = standard_webhooks::PublicKey::from_secret(key)
                        .context("--public-key must be a whpk_ key")?;
                    standard_webhooks::verify_asymmetric(&[key], headers, &body, now, window)
                }
                None => {
                    let keys = secrets(&args.secrets, args.scheme)?
                        .iter()
                        .map(|s| {
                            standard_webhooks::SigningKey::from_secret(s)
                                .context("--secret must be a whsec_ secret")
                        })
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    standard_webhooks::verify(&keys, headers, &body, now, window)
                }
            }
        }
        Scheme::Github => {
            secrets(&args.secrets, args.scheme)?;
            match (
                lookup(github::SIGNATURE_HEADER),
                lookup(github::SIGNATURE_SHA1_HEADER),
            ) {
                (None, Some(sha1)) => github::verify_sha1(&bytes, Some(sha1), &body),
                (sha256, _) => github::verify(&bytes, sha256, &body),
            }
        }
        Scheme::Stripe => {
            secrets(&args.secrets, args.scheme)?;
            stripe::verify(
                &bytes,
                lookup(stripe::SIGNATURE_HEADER),
                &body,
                now,
                Some(window),
            )
        }
        Scheme::Slack => {
            secrets(&args.secrets, args.scheme)?;
            slack::verify(
                &bytes,
                slack::Headers::from_lookup(&lookup),
                &body,
                now,
                window,
            )
        }
        Scheme::Shopify => {
            secrets(&args.secrets, args.scheme)?;
            shopify::verify(&bytes, lookup(shopify::SIGNATURE_HEADER), &body)
        }
        Scheme::Twilio => {
            secrets(&args.secrets, args.scheme)?;
            let url = args
                .url
                .as_deref()
                .context("--scheme twilio needs --url: the URL Twilio requested")?;
            twilio::verify(&bytes, url, twilio::Headers::from_lookup(&lookup), &body)
        }
        Scheme::Sendgrid => {
            let key = args
                .public_key
                .as_deref()
                .context("--scheme sendgrid needs --public-key (the verification key)")?;
            let key = sendgrid::PublicKey::from_base64_der(key)
                .context("--public-key must be SendGrid's base64 DER verification key")?;
            sendgrid::verify(
                &[key],
                sendgrid::Headers::from_lookup(&lookup),
                &body,
                now,
                tolerance,
            )
        }
        Scheme::Discord => {
            let key = args
                .public_key
                .as_deref()
                .context("--scheme discord needs --public-key (the application's public key)")?;
            let key = discord::PublicKey::from_hex(key)
                .context("--public-key must be the 64-hex-digit application public key")?;
            discord::verify(
                &key,
                discord::Headers::from_lookup(&lookup),
                &body,
                now,
                tolerance,
            )
        }
    };
    report(ctx, result)
}

fn report(ctx: &Ctx, result: Result<(), SignatureError>) -> anyhow::Result<ExitCode> {
    match result {
        Ok(()) => {
            if ctx.json {
                print_json(&json!({ "valid": true }));
            } else {
                outln!("valid");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            if ctx.json {
                print_json(&json!({ "valid": false, "error": error.to_string() }));
            } else {
                outln!("invalid: {error}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    let hex = hex.trim();
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        assert_eq!(decode_hex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(decode_hex("0"), None);
        assert_eq!(decode_hex("zz"), None);
        assert_eq!(hex_encode(&[0, 255, 16]), "00ff10");
    }
}
