//! A webhook receiver for Switchboard deliveries, verified with the official Standard Webhooks
//! crate (`standardwebhooks`) on a small synchronous HTTP server (`tiny_http`).
//!
//! ```sh
//! WEBHOOK_SECRET=whsec_… PORT=9100 cargo run --release --manifest-path examples/receivers/rust/Cargo.toml
//! ```
//!
//! Every POST (any path) is verified before anything else: missing webhook headers get 400, a
//! bad signature or a timestamp more than five minutes away gets 401. A verified delivery is
//! answered 204 and printed once; a repeat of the same `webhook-id` (Switchboard retries,
//! `resend`, `recover`) is answered 204 again without being processed twice. The
//! de-duplication set lives in memory and is lost on restart: a real receiver records the ids
//! in its database, in the same transaction as the work the event triggers.

use std::collections::HashSet;
use std::process::ExitCode;

use http::{HeaderMap, HeaderName, HeaderValue};
use standardwebhooks::Webhook;
use tiny_http::{Method, Request, Response, Server};

fn main() -> ExitCode {
    let secret = std::env::var("WEBHOOK_SECRET").unwrap_or_default();
    if !secret.starts_with("whsec_") {
        eprintln!("set WEBHOOK_SECRET to the endpoint's whsec_… secret");
        return ExitCode::from(2);
    }
    let webhook = match Webhook::new(&secret) {
        Ok(webhook) => webhook,
        Err(error) => {
            eprintln!("WEBHOOK_SECRET: {error}");
            return ExitCode::from(2);
        }
    };
    let port = std::env::var("PORT").unwrap_or_else(|_| "9100".into());
    let server = match Server::http(format!("127.0.0.1:{port}")) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("cannot listen on 127.0.0.1:{port}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let address = server
        .server_addr()
        .to_ip()
        .expect("a TCP listener has an IP address");
    println!("listening on http://{address}");

    let mut seen = HashSet::new();
    // One request at a time: enough for an example, and it makes the de-duplication race-free.
    for request in server.incoming_requests() {
        handle(request, &webhook, &mut seen);
    }
    ExitCode::SUCCESS
}

fn handle(mut request: Request, webhook: &Webhook, seen: &mut HashSet<String>) {
    if request.method() != &Method::Post {
        return answer(request, 405, None);
    }
    // Verify the exact bytes received: never a re-serialised JSON value.
    let mut body = Vec::new();
    if request.as_reader().read_to_end(&mut body).is_err() {
        return answer(
            request,
            400,
            Some("rejected -: could not read the body".into()),
        );
    }
    let mut headers = HeaderMap::new();
    for header in request.headers() {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.field.as_str().as_str().as_bytes()),
            HeaderValue::from_bytes(header.value.as_bytes()),
        ) {
            headers.append(name, value);
        }
    }
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let required = ["webhook-id", "webhook-timestamp", "webhook-signature"];
    if required.iter().any(|name| !headers.contains_key(*name)) || id.is_empty() {
        let shown = if id.is_empty() { "-" } else { &id };
        let line = format!("rejected {shown}: missing webhook headers");
        return answer(request, 400, Some(line));
    }
    if let Err(error) = webhook.verify(&body, &headers) {
        return answer(request, 401, Some(format!("rejected {id}: {error}")));
    }
    if seen.contains(&id) {
        return answer(request, 204, Some(format!("duplicate {id}")));
    }
    // Do the work here (or store it durably) before answering: a 2xx tells Switchboard it is
    // done. Only then remember the id, so that a failure here lets the retry through.
    let event = String::from_utf8_lossy(&body).replace(['\r', '\n'], " ");
    let line = format!("verified {id} {event}");
    seen.insert(id);
    answer(request, 204, Some(line));
}

fn answer(request: Request, status: u16, line: Option<String>) {
    if let Some(line) = line {
        println!("{line}");
    }
    if let Err(error) = request.respond(Response::empty(status)) {
        eprintln!("could not answer: {error}");
    }
}
