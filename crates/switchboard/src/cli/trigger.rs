//! `switchboard trigger`: sends a provider's sample event to a URL, signed exactly as the provider
//! signs it, with the provider's headers. For testing receivers and Switchboard sources.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use switchboard_signatures::{github, sendgrid, shopify, slack, standard_webhooks, stripe, twilio};

use super::samples::{self, Fresh, Provider, Sample};

/// Options of `trigger`.
#[derive(Debug, clap::Args)]
pub struct TriggerArgs {
    /// Provider to imitate.
    #[arg(value_enum, required_unless_present = "list")]
    provider: Option<Provider>,
    /// Event to send (see `--list`), e.g. `pull_request.opened`, `orders/create`.
    #[arg(required_unless_present = "list")]
    event: Option<String>,
    /// URL to send the request to, e.g. `http://127.0.0.1:8080/in/github`.
    #[arg(long, value_name = "URL", required_unless_present = "list")]
    to: Option<String>,
    /// Signing secret, as in the source's `verifier.secrets` (Stripe/Standard Webhooks:
    /// `whsec_…`; Twilio: the Auth Token). SendGrid: a base64 PKCS#8 DER P-256 private key; when
    /// absent a fresh key is generated and its public key printed.
    #[arg(long, env = "SWITCHBOARD_TRIGGER_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Twilio: the URL the signature covers, as in `verifier.public_url` (default: `--to`).
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Print the request (method, URL, headers, body) instead of sending it.
    #[arg(long)]
    dry_run: bool,
    /// List the providers and their events.
    #[arg(long)]
    list: bool,
    /// How long to wait for the response.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// A request ready to send or print.
#[derive(Debug)]
struct Request {
    url: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

/// Runs `trigger`.
pub async fn run(args: TriggerArgs) -> anyhow::Result<ExitCode> {
    if args.list {
        crate::cli::output::write_out(format_args!("{}", listing()));
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(provider), Some(event), Some(to)) = (args.provider, &args.event, &args.to) else {
        bail!("give a provider, an event and --to URL (or --list)");
    };
    let sample = samples::find(provider, event).ok_or_else(|| {
        let known: Vec<_> = samples::of(provider).map(|s| s.event).collect();
        anyhow!(
            "no `{event}` sample for {}; known events: {}",
            provider.name(),
            known.join(", ")
        )
    })?;
    if !(to.starts_with("http://") || to.starts_with("https://")) {
        bail!("--to must be an http:// or https:// URL");
    }
    let mut fresh = Fresh::new();
    let request = build(sample, &args, to, &mut fresh)?;
    if args.dry_run {
        crate::cli::output::write_out(format_args!("{}", render(&request)));
        return Ok(ExitCode::SUCCESS);
    }
    send(request, args.timeout).await
}

/// The `--list` table.
fn listing() -> String {
    let width = samples::SAMPLES
        .iter()
        .map(|s| s.event.len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for provider in Provider::ALL {
        let _ = writeln!(out, "{}", provider.name());
        for sample in samples::of(provider) {
            let _ = writeln!(out, "  {:width$}  {}", sample.event, sample.summary);
        }
    }
    out
}

fn secret<'a>(args: &'a TriggerArgs, provider: Provider, what: &str) -> anyhow::Result<&'a str> {
    match args.secret.as_deref() {
        Some(secret) if !secret.is_empty() => Ok(secret),
        _ => bail!(
            "`trigger {}` needs --secret: {what}, as in the source's verifier",
            provider.name()
        ),
    }
}

/// Builds the request `sample`'s provider would send.
fn build(
    sample: &Sample,
    args: &TriggerArgs,
    to: &str,
    fresh: &mut Fresh,
) -> anyhow::Result<Request> {
    let rendered = sample.render(fresh)?;
    let mut body = rendered.body;
    let timestamp = fresh.timestamp();
    let delivery_id = fresh.delivery_id().to_owned();
    let mut url = to.to_owned();
    let mut headers: Vec<(&'static str, String)> = Vec::new();
    let provider = sample.provider;
    match provider {
        Provider::Github => {
            let secret = secret(args, provider, "the webhook secret")?;
            let event_header = sample.event.split('.').next().unwrap_or(sample.event);
            headers.extend([
                ("User-Agent", "GitHub-Hookshot/7c6d2b1".to_owned()),
                ("Content-Type", rendered.content_type.to_owned()),
                ("X-GitHub-Delivery", delivery_id),
                ("X-GitHub-Event", event_header.to_owned()),
                ("X-GitHub-Hook-ID", "498765432".to_owned()),
                ("X-GitHub-Hook-Installation-Target-ID", "1296269".to_owned()),
                (
                    "X-GitHub-Hook-Installation-Target-Type",
                    "repository".to_owned(),
                ),
                (
                    "X-Hub-Signature",
                    github::sign_sha1(secret.as_bytes(), &body),
                ),
                (
                    "X-Hub-Signature-256",
                    github::sign(secret.as_bytes(), &body),
                ),
            ]);
        }
        Provider::Stripe => {
            let secret = secret(args, provider, "the endpoint signing secret (whsec_…)")?;
            headers.extend([
                (
                    "User-Agent",
                    "Stripe/1.0 (+https://stripe.com/docs/webhooks)".to_owned(),
                ),
                ("Content-Type", "application/json; charset=utf-8".to_owned()),
                ("Cache-Control", "no-cache".to_owned()),
                (
                    "Stripe-Signature",
                    stripe::sign(&[secret], timestamp, &body),
                ),
            ]);
        }
        Provider::Slack => {
            let secret = secret(args, provider, "the app's signing secret")?;
            let ts = timestamp.to_string();
            let signature = slack::sign(secret.as_bytes(), &ts, &body);
            headers.extend([
                (
                    "User-Agent",
                    "Slackbot 1.0 (+https://api.slack.com/robots)".to_owned(),
                ),
                ("Content-Type", rendered.content_type.to_owned()),
                ("X-Slack-Request-Timestamp", ts),
                ("X-Slack-Signature", signature),
            ]);
        }
        Provider::Shopify => {
            let secret = secret(args, provider, "the app's client secret")?;
            headers.extend([
                ("User-Agent", "Shopify-Captain-Hook".to_owned()),
                ("Content-Type", rendered.content_type.to_owned()),
                ("X-Shopify-Topic", sample.event.to_owned()),
                (
                    "X-Shopify-Hmac-Sha256",
                    shopify::sign(secret.as_bytes(), &body),
                ),
                (
                    "X-Shopify-Shop-Domain",
                    "switchboard-demo.myshopify.com".to_owned(),
                ),
                ("X-Shopify-API-Version", "2025-01".to_owned()),
                ("X-Shopify-Webhook-Id", delivery_id),
                ("X-Shopify-Event-Id", samples::random_uuid()),
                ("X-Shopify-Triggered-At", fresh.iso_time().to_owned()),
            ]);
        }
        Provider::Twilio => {
            let secret = secret(args, provider, "the account's Auth Token")?;
            let public_url = args.public_url.as_deref().unwrap_or(to);
            let signature = if sample.format.is_form() {
                twilio::sign_form(
                    secret.as_bytes(),
                    public_url,
                    &body,
                    twilio::Algorithm::HmacSha1,
                )
            } else {
                url = twilio::url_with_body_hash(to, &body);
                twilio::sign_with_body_hash(
                    secret.as_bytes(),
                    public_url,
                    &body,
                    twilio::Algorithm::HmacSha1,
                )
                .signature
            };
            headers.extend([
                ("User-Agent", "TwilioProxy/1.1".to_owned()),
                ("Content-Type", rendered.content_type.to_owned()),
                ("I-Twilio-Idempotency-Token", delivery_id),
                ("X-Home-Region", "us1".to_owned()),
                ("X-Twilio-Signature", signature),
            ]);
        }
        Provider::Sendgrid => {
            // The Event Webhook ends its batches with CRLF; the signature covers it.
            body.extend_from_slice(b"\r\n");
            let ts = timestamp.to_string();
            let (public_key, signature) = match args.secret.as_deref() {
                Some(private_key) => sendgrid::sign(private_key, &ts, &body)
                    .context("--secret must be a base64 PKCS#8 DER P-256 private key")?,
                None => {
                    let (private_key, signed) = sign_with_fresh_key(&ts, &body)?;
                    eprintln!(
                        "generated a P-256 key for this run; reuse it with --secret {private_key}"
                    );
                    signed
                }
            };
            eprintln!("verification key (verifier.public_key): {public_key}");
            headers.extend([
                ("User-Agent", "SendGrid Event API".to_owned()),
                ("Content-Type", rendered.content_type.to_owned()),
                ("X-Twilio-Email-Event-Webhook-Signature", signature),
                ("X-Twilio-Email-Event-Webhook-Timestamp", ts),
            ]);
        }
        Provider::StandardWebhooks => {
            let secret = secret(args, provider, "the endpoint secret (whsec_…)")?;
            let key = standard_webhooks::SigningKey::from_secret(secret)
                .context("--secret must be a whsec_ secret (base64 after the prefix)")?;
            let msg_id = format!("msg_{}", samples::random_token(27));
            let signature = key.sign(&msg_id, timestamp, &body);
            headers.extend([
                (
                    "User-Agent",
                    concat!("switchboard-trigger/", env!("CARGO_PKG_VERSION")).to_owned(),
                ),
                ("Content-Type", rendered.content_type.to_owned()),
                ("webhook-id", msg_id),
                ("webhook-timestamp", timestamp.to_string()),
                ("webhook-signature", signature),
            ]);
        }
    }
    Ok(Request { url, headers, body })
}

/// PKCS#8 DER of a P-256 private key without the optional public key: the fixed header, then the
/// 32-byte scalar.
const PKCS8_P256_PREFIX: [u8; 35] = [
    0x30, 0x41, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x27, 0x30, 0x25, 0x02, 0x01,
    0x01, 0x04, 0x20,
];

/// Generates a P-256 key and signs with it; returns the key (base64 PKCS#8 DER) and
/// `(public key, signature)`.
pub(super) fn sign_with_fresh_key(
    timestamp: &str,
    body: &[u8],
) -> anyhow::Result<(String, (String, String))> {
    // A random 256-bit string is a valid scalar unless it is 0 or ≥ the group order, which
    // happens with probability below 2^-32; retry then.
    for _ in 0..8 {
        let scalar: [u8; 32] = rand::random();
        let mut der = PKCS8_P256_PREFIX.to_vec();
        der.extend_from_slice(&scalar);
        let private_key = STANDARD.encode(&der);
        if let Ok(signed) = sendgrid::sign(&private_key, timestamp, body) {
            return Ok((private_key, signed));
        }
    }
    bail!("could not generate a P-256 key")
}

/// The request as text: request line, headers, blank line, body.
fn render(request: &Request) -> String {
    let mut out = format!("POST {}\n", request.url);
    for (name, value) in &request.headers {
        let _ = writeln!(out, "{name}: {value}");
    }
    out.push('\n');
    out.push_str(&String::from_utf8_lossy(&request.body));
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

async fn send(request: Request, timeout: Duration) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("cannot build the HTTP client")?;
    let mut builder = client.post(&request.url);
    for (name, value) in &request.headers {
        builder = builder.header(*name, value);
    }
    let response = builder
        .body(request.body)
        .send()
        .await
        .with_context(|| format!("POST {} failed", request.url))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .context("cannot read the response body")?;
    crate::cli::output::outln!("{status}");
    if !body.is_empty() {
        let text = String::from_utf8_lossy(&body);
        crate::cli::output::outln!("{}", text.trim_end());
    }
    Ok(if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
