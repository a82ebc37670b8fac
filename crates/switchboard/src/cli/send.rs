//! `switchboard send <source>`: posts a test event to `/in/<source>` (no token needed) and
//! prints the event id, or the original id and `duplicate` when the source saw it before.

use std::process::ExitCode;

use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::json;
use switchboard_core::time::{format_rfc3339, now_millis};

use super::Ctx;
use super::input::{BodyArgs, parse_header};
use super::output::outln;
use super::output::{field, print_json};

/// Options of `send`.
#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// Source id.
    source: String,
    #[command(flatten)]
    body: BodyArgs,
    /// Extra header `Name: value` (repeatable), e.g. a signature made with `switchboard sign`.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Content type of the body.
    #[arg(long, default_value = "application/json")]
    content_type: String,
}

/// Runs `send`.
pub async fn run(ctx: &Ctx, args: SendArgs) -> anyhow::Result<ExitCode> {
    let client = ctx.client()?;
    let body = match args.body.bytes()? {
        Some(body) => body,
        None => serde_json::to_vec(&json!({
            "type": "switchboard.test",
            "sent_at": format_rfc3339(now_millis()),
        }))?,
    };
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_str(&args.content_type)?);
    for raw in &args.headers {
        let (name, value) = parse_header(raw)?;
        headers.append(
            HeaderName::from_bytes(name.as_bytes())?,
            HeaderValue::from_str(&value)?,
        );
    }
    let url = client.url(&["in", &args.source]);
    let reply = client
        .send(Method::POST, url, headers, Some(body), false)
        .await?;
    if !reply.status.is_success() {
        return Err(client.api_error(&reply).into());
    }
    let answer = reply.json().unwrap_or_default();
    if ctx.json {
        print_json(&answer);
    } else if answer["id"].is_string() {
        if answer["duplicate"] == true {
            outln!("{} duplicate", field(&answer, "id"));
        } else {
            outln!("{}", field(&answer, "id"));
        }
    } else {
        outln!(
            "accepted ({}), nothing stored (a handshake or an empty acknowledgement)",
            reply.status
        );
    }
    Ok(ExitCode::SUCCESS)
}
