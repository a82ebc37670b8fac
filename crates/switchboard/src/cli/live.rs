//! `switchboard listen` and `switchboard tail`: follow `GET /v1/stream` (Server-Sent Events).
//!
//! Both keep the `id` of the last message handled and reconnect with it as `Last-Event-ID`
//! after a disconnect (backoff from 0.5 s to 10 s), so a server restart or a network blip
//! loses nothing and repeats nothing. `listen` asks for bodies (`body=true`, base64 in the
//! message) and forwards each event to a local URL: the raw bytes, the content type and the
//! original headers except hop-by-hop ones and credentials.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use base64::Engine as _;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use url::Url;

use super::client::Reply;
use super::output::outln;
use super::{Ctx, Failure};

/// Where to start when there is no cursor yet.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum StartAt {
    /// Only what arrives from now on.
    Now,
    /// Everything still stored, then what arrives.
    Beginning,
}

impl StartAt {
    fn as_str(self) -> &'static str {
        match self {
            Self::Now => "now",
            Self::Beginning => "beginning",
        }
    }
}

/// Options of `listen`.
#[derive(Debug, clap::Args)]
pub struct ListenArgs {
    /// Source whose events to forward (repeatable; default: every source).
    #[arg(long = "source", short = 's', value_name = "SOURCE")]
    sources: Vec<String>,
    /// Local URL each event is POSTed to, e.g. http://localhost:3000/hooks.
    #[arg(long, value_name = "URL")]
    forward_to: String,
    /// Only events of this type (repeatable).
    #[arg(long = "event-type", alias = "type", value_name = "TYPE")]
    event_types: Vec<String>,
    /// Where to start: `now` or `beginning` (a reconnect always resumes where it left off).
    #[arg(long, value_enum, default_value = "now")]
    from: StartAt,
    /// Resume after this message id (printed by an earlier run with `--json`).
    #[arg(long, value_name = "CURSOR")]
    after: Option<String>,
    /// Time allowed for the local receiver to answer.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// Options of `tail`.
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// Only this source (repeatable).
    #[arg(long = "source", short = 's', value_name = "SOURCE")]
    sources: Vec<String>,
    /// Only this event type (repeatable).
    #[arg(long = "type", alias = "event-type", value_name = "TYPE")]
    event_types: Vec<String>,
    /// Only events (no delivery outcomes).
    #[arg(long, conflicts_with = "outcomes_only")]
    events_only: bool,
    /// Only delivery outcomes (attempts).
    #[arg(long)]
    outcomes_only: bool,
    /// Where to start: `now` or `beginning`.
    #[arg(long, value_enum, default_value = "now")]
    from: StartAt,
    /// Resume after this message id.
    #[arg(long, value_name = "CURSOR")]
    after: Option<String>,
}

/// One Server-Sent Events message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// `id:` (the last one seen, as the SSE rules say).
    pub id: Option<String>,
    /// `event:` (`message` when absent).
    pub event: String,
    /// `data:` lines joined by `\n`.
    pub data: String,
}

/// An incremental `text/event-stream` parser (the WHATWG rules: `\n`, `\r\n` or `\r` line
/// ends, `:` comments, a blank line dispatches, a missing `event` is `message`).
#[derive(Debug, Default)]
pub struct Parser {
    buffer: Vec<u8>,
    event: String,
    data: Vec<String>,
    has_data: bool,
    id: Option<String>,
    skip_lf: bool,
}

impl Parser {
    /// Feeds bytes; returns the messages they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Message> {
        let mut out = Vec::new();
        for &b in bytes {
            if self.skip_lf {
                self.skip_lf = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' | b'\r' => {
                    self.skip_lf = b == b'\r';
                    let line = std::mem::take(&mut self.buffer);
                    if let Some(message) = self.line(&String::from_utf8_lossy(&line)) {
                        out.push(message);
                    }
                }
                _ => self.buffer.push(b),
            }
        }
        out
    }

    fn line(&mut self, line: &str) -> Option<Message> {
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            let data = std::mem::take(&mut self.data);
            if !std::mem::take(&mut self.has_data) {
                return None;
            }
            return Some(Message {
                id: self.id.clone(),
                event: if event.is_empty() {
                    "message".into()
                } else {
                    event
                },
                data: data.join("\n"),
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => {
                self.data.push(value.to_owned());
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            _ => {}
        }
        None
    }
}

/// What a follower asks for.
struct Follow {
    query: Vec<(&'static str, String)>,
    from: StartAt,
    after: Option<String>,
}

/// Follows the stream until an error that reconnecting cannot fix; `handle` gets every
/// `event`/`attempt` message and returns once it is dealt with (then its id counts as done).
async fn follow<H, Fut>(ctx: &Ctx, follow: Follow, mut handle: H) -> anyhow::Result<ExitCode>
where
    H: FnMut(Message) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let client = ctx.client()?;
    let base: Url = client.url(&["v1", "stream"]);
    // No overall timeout: the response is endless. A read timeout above the server's
    // keep-alive interval notices a connection that died silently.
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .user_agent(concat!("switchboard-cli/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build the HTTP client")?;
    let mut cursor = follow.after.clone();
    let mut delay = Duration::from_millis(500);
    loop {
        let mut url = base.clone();
        {
            let mut pairs = url.query_pairs_mut();
            for (key, value) in &follow.query {
                pairs.append_pair(key, value);
            }
            pairs.append_pair("from", follow.from.as_str());
        }
        let mut request = http.get(url).header(ACCEPT, "text/event-stream");
        if let Some(token) = ctx.remote.token.as_deref().filter(|t| !t.is_empty()) {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(cursor) = &cursor {
            request = request.header("last-event-id", cursor.as_str());
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                eprintln!(
                    "cannot reach Switchboard at {}: {error}; retrying in {:.1}s",
                    ctx.remote.url,
                    delay.as_secs_f64()
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        let status = response.status();
        if !status.is_success() {
            let retry = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
            let body = response.bytes().await.unwrap_or_default().to_vec();
            let failure = client.api_error(&Reply {
                status,
                body,
                location: None,
            });
            if !retry {
                return Err(failure.into());
            }
            eprintln!("{failure}; retrying in {:.1}s", delay.as_secs_f64());
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(10));
            continue;
        }
        let mut parser = Parser::default();
        let mut response = response;
        let ended = loop {
            match response.chunk().await {
                Ok(None) => break None,
                Err(error) => break Some(error),
                Ok(Some(chunk)) => {
                    for message in parser.push(&chunk) {
                        // A message arrived: the connection works, so the next disconnect
                        // starts its backoff from the beginning.
                        delay = Duration::from_millis(500);
                        let id = message.id.clone();
                        match message.event.as_str() {
                            "event" | "attempt" => handle(message).await,
                            _ => {}
                        }
                        if id.is_some() {
                            cursor = id;
                        }
                    }
                }
            }
        };
        match ended {
            Some(error) => eprintln!("stream interrupted: {error}; reconnecting"),
            None => eprintln!("stream closed by the server; reconnecting"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

fn filters(sources: &[String], types: &[String]) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    if !sources.is_empty() {
        query.push(("source", sources.join(",")));
    }
    if !types.is_empty() {
        query.push(("type", types.join(",")));
    }
    query
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or("-")
}

/// Headers never forwarded: hop-by-hop ones, those the HTTP client sets from the request it
/// makes, and credentials (stored redacted anyway).
const NOT_FORWARDED: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "accept-encoding",
    "proxy-authorization",
    "proxy-connection",
    "authorization",
    "cookie",
    "x-api-key",
];

/// The headers to forward with an event.
fn forward_headers(event: &Value) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for header in event["headers"].as_array().into_iter().flatten() {
        let (Some(name), Some(value)) = (header["name"].as_str(), header["value"].as_str()) else {
            continue;
        };
        let lower = name.to_ascii_lowercase();
        if NOT_FORWARDED.contains(&lower.as_str()) || lower == "content-type" {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(lower.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    if let Some(content_type) = event["content_type"]
        .as_str()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        headers.insert(CONTENT_TYPE, content_type);
    }
    if let Ok(id) = HeaderValue::from_str(text(event, "id")) {
        headers.insert("x-switchboard-event-id", id);
    }
    if let Ok(source) = HeaderValue::from_str(text(event, "source")) {
        headers.insert("x-switchboard-source", source);
    }
    headers
}

/// Runs `listen`.
pub async fn listen(ctx: &Ctx, args: ListenArgs) -> anyhow::Result<ExitCode> {
    let target = Url::parse(&args.forward_to)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| {
            Failure::new(
                1,
                format!(
                    "--forward-to `{}` is not an http:// or https:// URL",
                    args.forward_to
                ),
            )
        })?;
    let local = reqwest::Client::builder()
        .timeout(args.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("cannot build the HTTP client")?;
    let mut query = filters(&args.sources, &args.event_types);
    query.push(("include", "events".into()));
    query.push(("body", "true".into()));
    if !ctx.json {
        eprintln!(
            "forwarding events of {} from {} to {target}",
            if args.sources.is_empty() {
                "every source".to_owned()
            } else {
                args.sources.join(", ")
            },
            ctx.remote.url
        );
    }
    let json = ctx.json;
    let follow_spec = Follow {
        query,
        from: args.from,
        after: args.after.clone(),
    };
    follow(ctx, follow_spec, |message| {
        let local = local.clone();
        let target = target.clone();
        async move {
            let Ok(event) = serde_json::from_str::<Value>(&message.data) else {
                eprintln!("skipping a message that is not JSON");
                return;
            };
            let body = event["body_base64"]
                .as_str()
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
            let Some(body) = body else {
                report(
                    json,
                    &event,
                    message.id.as_deref(),
                    Err("no body (removed by retention)".into()),
                    0,
                );
                return;
            };
            let started = Instant::now();
            let result = local
                .post(target)
                .headers(forward_headers(&event))
                .body(body)
                .send()
                .await
                .map(|r| r.status())
                .map_err(|e| {
                    let mut text = e.to_string();
                    let mut source = std::error::Error::source(&e);
                    while let Some(cause) = source {
                        text = format!("{text}: {cause}");
                        source = cause.source();
                    }
                    text
                });
            let latency = started.elapsed().as_millis() as u64;
            report(json, &event, message.id.as_deref(), result, latency);
        }
    })
    .await
}

/// Prints the line of one forwarded event.
fn report(
    json: bool,
    event: &Value,
    cursor: Option<&str>,
    result: Result<StatusCode, String>,
    latency_ms: u64,
) {
    if json {
        let (status, error) = match &result {
            Ok(status) => (Some(status.as_u16()), None),
            Err(error) => (None, Some(error.clone())),
        };
        outln!(
            "{}",
            json!({
                "event_id": event["id"],
                "source": event["source"],
                "type": event["type"],
                "status": status,
                "error": error,
                "latency_ms": latency_ms,
                "cursor": cursor,
            })
        );
        return;
    }
    let outcome = match result {
        Ok(status) => status.to_string(),
        Err(error) => format!("error: {error}"),
    };
    outln!(
        "{}  {}  {}  {}  → {}  {} ms",
        text(event, "received_at"),
        text(event, "source"),
        text(event, "type"),
        text(event, "id"),
        outcome,
        latency_ms
    );
}

/// Runs `tail`.
pub async fn tail(ctx: &Ctx, args: TailArgs) -> anyhow::Result<ExitCode> {
    let mut query = filters(&args.sources, &args.event_types);
    if args.events_only {
        query.push(("include", "events".into()));
    } else if args.outcomes_only {
        query.push(("include", "attempts".into()));
    }
    let json = ctx.json;
    let spec = Follow {
        query,
        from: args.from,
        after: args.after.clone(),
    };
    follow(ctx, spec, |message| async move {
        let Ok(mut data) = serde_json::from_str::<Value>(&message.data) else {
            eprintln!("skipping a message that is not JSON");
            return;
        };
        if json {
            if let Some(object) = data.as_object_mut() {
                object.insert("kind".into(), json!(message.event));
                object.insert("cursor".into(), json!(message.id));
            }
            outln!("{data}");
            return;
        }
        if message.event == "event" {
            outln!(
                "{}  event    {}  {}  {}  {} bytes",
                text(&data, "received_at"),
                text(&data, "source"),
                text(&data, "type"),
                text(&data, "id"),
                data["body_bytes"].as_u64().unwrap_or(0)
            );
        } else {
            let status = data["status_code"]
                .as_u64()
                .map_or_else(|| "-".to_owned(), |s| s.to_string());
            let error = data["error"]
                .as_str()
                .map(|e| format!("  {e}"))
                .unwrap_or_default();
            outln!(
                "{}  {:<8} {}  {}  {}  → {} #{}  {}  {} ms{}",
                text(&data, "started_at"),
                text(&data, "outcome"),
                text(&data, "source"),
                text(&data, "type"),
                text(&data, "event_id"),
                text(&data, "destination"),
                data["attempt"].as_u64().unwrap_or(0),
                status,
                data["latency_ms"].as_u64().unwrap_or(0),
                error
            );
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_follows_the_sse_rules() {
        let mut p = Parser::default();
        assert!(p.push(b": keep-alive\n\n").is_empty());
        let m = p.push(b"id: e1.2-a0.0\nevent: event\ndata: {\"a\":\ndata: 1}\n\n");
        assert_eq!(
            m,
            [Message {
                id: Some("e1.2-a0.0".into()),
                event: "event".into(),
                data: "{\"a\":\n1}".into()
            }]
        );
        // Split anywhere, CRLF and CR line ends, the id carries over, default event name.
        assert!(p.push(b"data:x\r").is_empty());
        assert!(p.push(b"\n").is_empty());
        let m = p.push(b"\r\n");
        assert_eq!(m[0].event, "message");
        assert_eq!(m[0].data, "x");
        assert_eq!(m[0].id.as_deref(), Some("e1.2-a0.0"));
        let m = p.push(b"event: ready\rid: e9.9-a9.9\rdata\r\r");
        assert_eq!(m[0].event, "ready");
        assert_eq!(m[0].data, "");
        assert_eq!(m[0].id.as_deref(), Some("e9.9-a9.9"));
        // A message without data is not dispatched.
        assert!(p.push(b"event: nothing\n\n").is_empty());
    }

    #[test]
    fn forwarded_headers_leave_out_hop_by_hop_and_credentials() {
        let event = json!({
            "id": "evt", "source": "github", "content_type": "application/json",
            "headers": [
                {"name": "X-GitHub-Event", "value": "push"},
                {"name": "host", "value": "example"},
                {"name": "content-length", "value": "5"},
                {"name": "authorization", "value": "[redacted]"},
                {"name": "content-type", "value": "text/plain"},
            ]
        });
        let headers = forward_headers(&event);
        assert_eq!(headers["x-github-event"], "push");
        assert_eq!(headers[CONTENT_TYPE], "application/json");
        assert_eq!(headers["x-switchboard-event-id"], "evt");
        assert!(headers.get("host").is_none());
        assert!(headers.get("content-length").is_none());
        assert!(headers.get("authorization").is_none());
    }
}
