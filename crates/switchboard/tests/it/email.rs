//! `kind = "email"` end to end: webhook in, a route transform, mail out.
//!
//! SMTP runs against a real SMTP server, Python's `aiosmtpd` started as a child process
//! (`support/smtp_server.py`), which parses each message with Python's `email` package: plain,
//! STARTTLS and TLS with a test CA (`trustme`), with AUTH, a `550` recipient refusal and a `451`
//! temporary failure. Those tests need `SWITCHBOARD_TEST_SMTP=1` and
//! `pip install aiosmtpd trustme` (see `.ci/requirements.txt`); without the variable they print
//! `SKIPPED`. SendGrid runs against a local stand-in of its v3 mail API.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use switchboard_core::DeliveryStatus;
use switchboard_core::config::{DestinationConfig, RouteConfig};
use switchboard_store::DeliveryRecord;

use crate::support::{TestServer, config_to, eventually, schedule_ms};

/// The variable that turns the SMTP tests on.
const ENV: &str = "SWITCHBOARD_TEST_SMTP";

/// A running `support/smtp_server.py`.
pub struct SmtpServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Where it writes received messages (and `ca.pem`).
    pub dir: tempfile::TempDir,
    child: Child,
}

impl SmtpServer {
    /// Starts the server with `args`, or reports `test` as skipped and returns `None` when
    /// `SWITCHBOARD_TEST_SMTP` is not set.
    pub fn start(test: &str, args: &[&str]) -> Option<Self> {
        if std::env::var_os(ENV).is_none() {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: set {ENV}=1 (needs python3 with aiosmtpd and trustme, see .ci/requirements.txt)"
            );
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/smtp_server.py");
        let log = std::fs::File::create(dir.path().join("server.log")).expect("log file");
        let mut child = Command::new("python3")
            .arg(script)
            .arg("--out")
            .arg(dir.path())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("python3 starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        let Some(port) = line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
        else {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
            panic!(
                "{ENV} is set but the SMTP server did not start (pip install aiosmtpd trustme): {log}"
            );
        };
        Some(Self { port, dir, child })
    }

    /// The test CA's certificate (TLS modes).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Messages received so far, in arrival order.
    pub fn messages(&self) -> Vec<Value> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .expect("read dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| {
                serde_json::from_str(&std::fs::read_to_string(p).expect("read message"))
                    .expect("message json")
            })
            .collect()
    }

    /// Waits for `n` messages.
    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        eventually(Duration::from_secs(20), "mail received", || async {
            let messages = self.messages();
            (messages.len() >= n).then_some(messages)
        })
        .await
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An e-mail destination from JSON settings (`kind` added).
pub fn email_destination(settings: Value) -> DestinationConfig {
    let mut settings = settings;
    settings["kind"] = json!("email");
    if settings.get("timeout").is_none() {
        settings["timeout"] = json!("5s");
    }
    if settings.get("retry").is_none() {
        settings["retry"] = serde_json::to_value(schedule_ms(&[50, 50])).expect("retry");
    }
    serde_json::from_value(settings).expect("email destination")
}

/// `src` routed to each destination, with the same transform.
fn config_with(
    destinations: Vec<DestinationConfig>,
    transform: Option<&str>,
) -> switchboard_core::Config {
    let mut config = config_to("http://127.0.0.1:9/unused", schedule_ms(&[50]));
    config.routes = destinations
        .iter()
        .map(|d| RouteConfig {
            id: Some(format!("to-{}", d.id())),
            source: "src".into(),
            destination: d.id().into(),
            filter: None,
            transform: transform.map(str::to_owned),
            enabled: true,
        })
        .collect();
    config.destinations = destinations;
    config
}

/// The delivery of `event` to `destination`, once `pred` holds.
async fn delivery_to(
    server: &TestServer,
    event: &str,
    destination: &str,
    what: &str,
    pred: impl Fn(&DeliveryRecord) -> bool,
) -> DeliveryRecord {
    eventually(Duration::from_secs(20), what, || async {
        server
            .deliveries_of(event)
            .await
            .into_iter()
            .find(|d| d.destination == destination && pred(d))
    })
    .await
}

fn emails(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|a| a["email"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn find<'a>(messages: &'a [Value], subject: &str) -> &'a Value {
    messages
        .iter()
        .find(|m| m["subject"] == subject)
        .unwrap_or_else(|| panic!("no message with subject {subject:?} in {messages:?}"))
}

/// Templated sender, recipients and subject, and the transform's text and HTML parts, as a
/// real SMTP server parses them; a `to` and `subject` in the message win over the templates.
#[tokio::test]
async fn email_over_smtp_carries_templates_and_both_parts() {
    let Some(smtp) = SmtpServer::start("email_over_smtp_carries_templates_and_both_parts", &[])
    else {
        return;
    };
    let server = TestServer::start(config_with(
        vec![email_destination(json!({
            "id": "mail",
            "host": "127.0.0.1",
            "port": smtp.port,
            "tls": "none",
            "from": "Billing <billing@example.com>",
            "reply_to": "help@example.com",
            "to": ["{{ .body.customer.email }}", "ops@example.com"],
            "cc": "finance@example.com",
            "bcc": ["audit@example.com"],
            "subject": "Payment failed: {{ .body.invoice }}",
        }))],
        Some(
            r#"{text: "Invoice \(.body.invoice) failed", html: "<p>Invoice <b>\(.body.invoice)</b> failed</p>"}
            + (if .body.override then {to: .body.override, subject: "Relances ✓ \(.body.invoice)"} else {} end)"#,
        ),
    ))
    .await;
    let first = server
        .ingest_ok(
            "src",
            r#"{"invoice": "in_1", "customer": {"email": "jenny@example.com"}}"#,
        )
        .await;
    let delivered = delivery_to(&server, &first, "mail", "delivered", |d| {
        d.status == DeliveryStatus::Succeeded
    })
    .await;
    // Sent after the first, so over the same pooled connection.
    let second = server
        .ingest_ok(
            "src",
            r#"{"invoice": "in_2", "customer": {"email": "jenny@example.com"}, "override": ["Ops Two <ops2@example.com>"]}"#,
        )
        .await;
    delivery_to(&server, &second, "mail", "delivered", |d| {
        d.status == DeliveryStatus::Succeeded
    })
    .await;
    let messages = smtp.wait_for(2).await;

    let mail = find(&messages, "Payment failed: in_1");
    assert_eq!(mail["mail_from"], "billing@example.com");
    assert_eq!(mail["from"][0]["name"], "Billing");
    assert_eq!(emails(&mail["from"]), ["billing@example.com"]);
    assert_eq!(
        emails(&mail["to"]),
        ["jenny@example.com", "ops@example.com"]
    );
    assert_eq!(emails(&mail["cc"]), ["finance@example.com"]);
    assert_eq!(emails(&mail["reply_to"]), ["help@example.com"]);
    assert!(emails(&mail["bcc"]).is_empty(), "Bcc is not a header");
    let mut envelope: Vec<String> = mail["rcpt_tos"]
        .as_array()
        .expect("rcpt_tos")
        .iter()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    envelope.sort();
    assert_eq!(
        envelope,
        [
            "audit@example.com",
            "finance@example.com",
            "jenny@example.com",
            "ops@example.com"
        ]
    );
    assert_eq!(mail["content_type"], "multipart/alternative");
    assert_eq!(
        mail["text"].as_str().map(str::trim_end),
        Some("Invoice in_1 failed")
    );
    assert_eq!(
        mail["html"].as_str().map(str::trim_end),
        Some("<p>Invoice <b>in_1</b> failed</p>")
    );
    assert_eq!(
        mail["message_id"],
        format!("<{}@example.com>", delivered.id),
        "the Message-ID is the delivery's, the same on every attempt"
    );
    assert_eq!(mail["tls"], false);

    let own = find(&messages, "Relances ✓ in_2");
    assert_eq!(own["to"][0]["name"], "Ops Two");
    assert_eq!(emails(&own["to"]), ["ops2@example.com"]);
    assert_eq!(emails(&own["cc"]), ["finance@example.com"]);
    assert_eq!(
        own["peer_port"], mail["peer_port"],
        "the second mail reused the first one's connection"
    );

    let attempts = server
        .store()
        .list_attempts(None, Some(&delivered.id))
        .await
        .expect("attempts");
    assert_eq!(
        attempts[0].request_url,
        format!("smtp://127.0.0.1:{} (none)", smtp.port)
    );
    let reply = String::from_utf8_lossy(&attempts[0].response_body);
    assert!(
        reply.starts_with("250"),
        "the server's reply is kept: {reply}"
    );
    delivery_to(&server, &second, "mail", "delivered", |d| {
        d.status == DeliveryStatus::Succeeded
    })
    .await;
    server.stop().await;
}

/// A `550` refusal of a recipient fails the delivery at once; a `451` is retried and the mail
/// then goes through. A plain (untransformed) body is the text part.
#[tokio::test]
async fn email_over_smtp_550_fails_and_451_is_retried() {
    let Some(smtp) = SmtpServer::start("email_over_smtp_550_fails_and_451_is_retried", &[]) else {
        return;
    };
    let server = TestServer::start(config_with(
        vec![email_destination(json!({
            "id": "mail",
            "host": "127.0.0.1",
            "port": smtp.port,
            "tls": "none",
            "from": "alerts@example.com",
            "to": "{{ .body.to }}",
            "subject": "Alert for {{ .body.to }}",
        }))],
        None,
    ))
    .await;
    let rejected = server
        .ingest_ok("src", r#"{"to": "reject@example.com"}"#)
        .await;
    let body = r#"{"to": "tempfail@example.com"}"#;
    let deferred = server.ingest_ok("src", body).await;

    let failed = delivery_to(&server, &rejected, "mail", "failed", |d| {
        d.status == DeliveryStatus::Failed
    })
    .await;
    assert_eq!(failed.attempts, 1, "a 5xx reply is not retried");
    let error = failed.last_error.unwrap_or_default();
    assert!(
        error.contains("550") && error.contains("Recipient address rejected"),
        "{error}"
    );

    let delivered = delivery_to(&server, &deferred, "mail", "delivered", |d| {
        d.status == DeliveryStatus::Succeeded
    })
    .await;
    assert_eq!(delivered.attempts, 2, "a 4xx reply is retried");
    let attempts = server
        .store()
        .list_attempts(None, Some(&delivered.id))
        .await
        .expect("attempts");
    assert_eq!(attempts[0].outcome, "retryable");
    assert!(
        attempts[0].error.as_deref().unwrap_or("").contains("451"),
        "{:?}",
        attempts[0].error
    );
    let messages = smtp.wait_for(1).await;
    let mail = find(&messages, "Alert for tempfail@example.com");
    assert_eq!(mail["content_type"], "text/plain");
    assert_eq!(mail["text"].as_str().map(str::trim_end), Some(body));
    server.stop().await;
}

/// STARTTLS and TLS from the first byte, each with AUTH, against a server whose certificate
/// comes from a test CA given as `ca_file`. A wrong password fails (`535`), an untrusted
/// certificate is retried, and the password shows neither in the API nor in attempts.
#[tokio::test]
async fn email_over_starttls_and_tls_with_auth() {
    for mode in ["starttls", "tls"] {
        let test = format!("email_over_starttls_and_tls_with_auth ({mode})");
        let Some(smtp) = SmtpServer::start(&test, &["--tls", mode, "--auth", "mailer:s3cret-pass"])
        else {
            return;
        };
        let settings = |id: &str, password: &str, ca: bool| {
            let mut settings = json!({
                "id": id,
                "host": "127.0.0.1",
                "port": smtp.port,
                "tls": mode,
                "username": "mailer",
                "password": password,
                "from": "billing@example.com",
                "to": "ops@example.com",
                "subject": "{{ .body.subject }} via {{ .body.mode }}",
                "retry": serde_json::to_value(schedule_ms(&[50])).expect("retry"),
            });
            if ca {
                settings["ca_file"] = json!(smtp.ca_file());
            }
            email_destination(settings)
        };
        let server = TestServer::start(config_with(
            vec![
                settings("mail", "s3cret-pass", true),
                settings("wrong-password", "not-the-password", true),
                settings("untrusted", "s3cret-pass", false),
            ],
            Some(r#"{text: "over \(.body.mode)", subject: "\(.body.subject) via \(.body.mode)"}"#),
        ))
        .await;
        let event = server
            .ingest_ok(
                "src",
                json!({"subject": "Secure", "mode": mode}).to_string(),
            )
            .await;
        let delivered = delivery_to(&server, &event, "mail", "delivered", |d| {
            d.status == DeliveryStatus::Succeeded
        })
        .await;
        let messages = smtp.wait_for(1).await;
        let mail = find(&messages, &format!("Secure via {mode}"));
        assert_eq!(mail["tls"], true, "{mode}: the session was encrypted");
        assert_eq!(mail["login"], "mailer", "{mode}: AUTH went through");

        let refused = delivery_to(&server, &event, "wrong-password", "failed", |d| {
            d.status == DeliveryStatus::Failed
        })
        .await;
        assert_eq!(
            refused.attempts, 1,
            "{mode}: bad credentials are not retried"
        );
        assert!(
            refused.last_error.as_deref().unwrap_or("").contains("535"),
            "{mode}: {:?}",
            refused.last_error
        );

        let untrusted = delivery_to(&server, &event, "untrusted", "exhausted", |d| {
            d.status == DeliveryStatus::Failed
        })
        .await;
        assert_eq!(untrusted.attempts, 2, "{mode}: a TLS failure is retried");
        let error = untrusted.last_error.unwrap_or_default();
        assert!(
            error.to_ascii_lowercase().contains("certificate"),
            "{mode}: {error}"
        );

        let shown = server.api().get("/v1/destinations/mail").await;
        let shown = shown.ok(200);
        assert_eq!(
            shown["url"],
            format!("smtp://127.0.0.1:{} ({mode})", smtp.port)
        );
        assert!(!shown.to_string().contains("s3cret-pass"), "{shown}");
        let attempts = server
            .store()
            .list_attempts(None, Some(&delivered.id))
            .await
            .expect("attempts");
        assert!(!format!("{attempts:?}").contains("s3cret-pass"));
        server.stop().await;
    }
}

/// A relay that does not answer is retried, then the delivery fails once retries run out.
#[tokio::test]
async fn email_smtp_unreachable_is_retried() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let server = TestServer::start(config_with(
        vec![email_destination(json!({
            "id": "mail",
            "host": "127.0.0.1",
            "port": port,
            "tls": "none",
            "from": "alerts@example.com",
            "to": "ops@example.com",
            "retry": serde_json::to_value(schedule_ms(&[50])).expect("retry"),
        }))],
        None,
    ))
    .await;
    let event = server.ingest_ok("src", r#"{"n": 1}"#).await;
    let failed = delivery_to(&server, &event, "mail", "exhausted", |d| {
        d.status == DeliveryStatus::Failed
    })
    .await;
    assert_eq!(failed.attempts, 2);
    let attempts = server
        .store()
        .list_attempts(None, Some(&failed.id))
        .await
        .expect("attempts");
    assert_eq!(attempts[0].outcome, "retryable");
    assert!(
        attempts[0]
            .error
            .as_deref()
            .unwrap_or("")
            .starts_with("SMTP "),
        "{:?}",
        attempts[0].error
    );
    server.stop().await;
}

/// A stand-in for SendGrid's `POST /v3/mail/send`: bearer key, the request's shape checked as
/// SendGrid does, `202` with `X-Message-Id`, errors as `{"errors": [{"message", "field",
/// "help"}]}`.
struct FakeSendgrid {
    base: String,
    calls: Arc<Mutex<Vec<Value>>>,
}

const SENDGRID_KEY: &str = "SG.test-key-not-for-logs";

fn sendgrid_error(status: u16, message: &str, field: Option<&str>) -> axum::response::Response {
    axum::response::IntoResponse::into_response((
        StatusCode::from_u16(status).expect("status"),
        axum::Json(json!({"errors": [{
            "message": message,
            "field": field,
            "help": field.map(|f| format!("http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message.{f}")),
        }]})),
    ))
}

impl FakeSendgrid {
    async fn start() -> Self {
        let calls: Arc<Mutex<Vec<Value>>> = Arc::default();
        let recorded = calls.clone();
        let app = axum::Router::new().route(
            "/v3/mail/send",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let recorded = recorded.clone();
                async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned()
                    };
                    if header("authorization") != format!("Bearer {SENDGRID_KEY}") {
                        return sendgrid_error(
                            401,
                            "The provided authorization grant is invalid, expired, or revoked",
                            None,
                        );
                    }
                    if !header("content-type").starts_with("application/json") {
                        return sendgrid_error(415, "Content-Type should be application/json.", None);
                    }
                    let Ok(mail) = serde_json::from_slice::<Value>(&body) else {
                        return sendgrid_error(400, "Bad Request", None);
                    };
                    let to = mail["personalizations"][0]["to"][0]["email"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned();
                    let earlier = {
                        let mut calls = recorded.lock().expect("lock");
                        let earlier = calls
                            .iter()
                            .filter(|c| c["personalizations"][0]["to"][0]["email"] == to.as_str())
                            .count();
                        calls.push(mail.clone());
                        earlier
                    };
                    if !to.contains('@') {
                        return sendgrid_error(
                            400,
                            "Does not contain a valid address.",
                            Some("personalizations.0.to.0.email"),
                        );
                    }
                    if mail["from"]["email"].as_str().is_none() {
                        return sendgrid_error(400, "The from email does not contain a valid address.", Some("from.email"));
                    }
                    if mail["subject"].as_str().is_none_or(str::is_empty) {
                        return sendgrid_error(
                            400,
                            "The subject is required. You can get around this requirement if you use a template with a subject defined or if every personalization has a subject defined.",
                            Some("subject"),
                        );
                    }
                    let content = mail["content"].as_array().cloned().unwrap_or_default();
                    if content.is_empty() || content.iter().any(|c| c["value"].as_str().is_none_or(str::is_empty)) {
                        return sendgrid_error(400, "The content value must be a string at least one character in length.", Some("content.0.value"));
                    }
                    if content.len() > 1 && content[0]["type"] != "text/plain" {
                        return sendgrid_error(400, "If present, text/plain content must be first, followed by text/html.", Some("content"));
                    }
                    if to.starts_with("ratelimited") && earlier == 0 {
                        let mut response = axum::response::IntoResponse::into_response((
                            StatusCode::TOO_MANY_REQUESTS,
                            axum::Json(json!({"errors": [{"field": null, "message": "too many requests"}]})),
                        ));
                        for (name, value) in [("retry-after", "1"), ("x-ratelimit-limit", "600"), ("x-ratelimit-remaining", "0")] {
                            response.headers_mut().insert(name, value.parse().expect("header"));
                        }
                        return response;
                    }
                    if to.starts_with("flaky") && earlier == 0 {
                        return sendgrid_error(500, "internal error", None);
                    }
                    let mut response =
                        axum::response::IntoResponse::into_response(StatusCode::ACCEPTED);
                    response.headers_mut().insert(
                        "x-message-id",
                        "W1aB2cD3eF4gH5iJ6kL7mN".parse().expect("header"),
                    );
                    response
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { base, calls }
    }

    fn calls(&self) -> Vec<Value> {
        self.calls.lock().expect("lock").clone()
    }
}

/// SendGrid: `202` is delivery, with the mail in SendGrid's JSON; a `400` (no subject) fails
/// with SendGrid's message; `429` waits for `Retry-After`; `500` is retried.
#[tokio::test]
async fn email_through_sendgrid_stand_in() {
    let sendgrid = FakeSendgrid::start().await;
    let server = TestServer::start(config_with(
        vec![email_destination(json!({
            "id": "mail",
            "provider": "sendgrid",
            "api_key": SENDGRID_KEY,
            "base_url": sendgrid.base,
            "from": "Billing <billing@example.com>",
            "to": "{{ .body.email }}",
            "bcc": "audit@example.com",
        }))],
        Some(r#"{subject: .body.subject, text: "Hello \(.body.name)", html: "<p>Hello <b>\(.body.name)</b></p>"}"#),
    ))
    .await;
    let ok = server
        .ingest_ok(
            "src",
            r#"{"email": "Ada <ada@example.com>", "name": "Ada", "subject": "Payment failed"}"#,
        )
        .await;
    let no_subject = server
        .ingest_ok(
            "src",
            r#"{"email": "bob@example.com", "name": "Bob", "subject": null}"#,
        )
        .await;
    let limited = server
        .ingest_ok(
            "src",
            r#"{"email": "ratelimited@example.com", "name": "R", "subject": "s"}"#,
        )
        .await;
    let flaky = server
        .ingest_ok(
            "src",
            r#"{"email": "flaky@example.com", "name": "F", "subject": "s"}"#,
        )
        .await;

    let delivered = delivery_to(&server, &ok, "mail", "delivered", |d| {
        d.status == DeliveryStatus::Succeeded
    })
    .await;
    assert_eq!(delivered.attempts, 1);
    let sent = sendgrid
        .calls()
        .into_iter()
        .find(|c| c["personalizations"][0]["to"][0]["email"] == "ada@example.com")
        .expect("sent to ada");
    assert_eq!(
        sent,
        json!({
            "personalizations": [{
                "to": [{"email": "ada@example.com", "name": "Ada"}],
                "bcc": [{"email": "audit@example.com"}],
            }],
            "from": {"email": "billing@example.com", "name": "Billing"},
            "subject": "Payment failed",
            "content": [
                {"type": "text/plain", "value": "Hello Ada"},
                {"type": "text/html", "value": "<p>Hello <b>Ada</b></p>"},
            ],
            "custom_args": {"switchboard_delivery_id": delivered.id},
        })
    );
    let attempts = server
        .store()
        .list_attempts(None, Some(&delivered.id))
        .await
        .expect("attempts");
    assert_eq!(attempts[0].status_code, Some(202));
    assert_eq!(
        attempts[0].request_url,
        format!("sendgrid {}/v3/mail/send", sendgrid.base)
    );

    let failed = delivery_to(&server, &no_subject, "mail", "failed", |d| {
        d.status == DeliveryStatus::Failed
    })
    .await;
    assert_eq!(failed.attempts, 1, "a 400 is not retried");
    let error = failed.last_error.unwrap_or_default();
    assert!(
        error.contains("HTTP 400")
            && error.contains("The subject is required")
            && error.contains("(subject)"),
        "{error}"
    );

    let waited_out = delivery_to(&server, &limited, "mail", "delivered after 429", |d| {
        d.status == DeliveryStatus::Succeeded
    })
    .await;
    assert_eq!(waited_out.attempts, 2);
    let attempts = server
        .store()
        .list_attempts(None, Some(&waited_out.id))
        .await
        .expect("attempts");
    let waited = attempts[1].started_at - attempts[0].started_at;
    assert!(waited >= 900, "Retry-After: 1 was honoured ({waited} ms)");

    let recovered = delivery_to(&server, &flaky, "mail", "delivered after 500", |d| {
        d.status == DeliveryStatus::Succeeded
    })
    .await;
    assert_eq!(recovered.attempts, 2);

    let shown = server.api().get("/v1/destinations/mail").await;
    let shown = shown.ok(200);
    assert!(!shown.to_string().contains(SENDGRID_KEY), "{shown}");
    server.stop().await;
}

/// The ```toml block of the recipe, as written.
fn recipe_toml() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/recipes/stripe-payment-failed-email-and-sms.md");
    let text = std::fs::read_to_string(&path).expect("the recipe exists");
    let start = text.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = text[start..].find("```").expect("the block ends");
    text[start..start + end].to_owned()
}

/// Posts a Stripe event signed with `secret`; returns the event id.
async fn post_stripe(server: &TestServer, secret: &str, body: &str) -> String {
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let response = reqwest::Client::new()
        .post(format!("{}/in/stripe", server.base))
        .header("content-type", "application/json")
        .header(
            "stripe-signature",
            switchboard_signatures::stripe::sign(&[secret], timestamp, body.as_bytes()),
        )
        .body(body.to_owned())
        .send()
        .await
        .expect("ingest");
    assert_eq!(response.status(), 202, "the signed event is accepted");
    let json: Value = response.json().await.expect("json");
    json["id"].as_str().expect("id").to_owned()
}

/// `docs/recipes/stripe-payment-failed-email-and-sms.md` works as written: its configuration
/// loads and validates unchanged, and with only the SMTP host and Twilio's base URL pointed at
/// local stand-ins, a signed `invoice.payment_failed` (the `switchboard trigger` sample) and a
/// `payment_intent.payment_failed` each become a mail to the customer and a text to the
/// on-call phone, while other Stripe events are filtered.
#[tokio::test]
async fn recipe_stripe_payment_failed_works_as_written() {
    let mut config =
        switchboard_core::Config::from_toml(&recipe_toml()).expect("the recipe parses");
    config.validate().expect("the recipe is valid as written");
    let secret = match &config.sources[0].verifier {
        switchboard_core::config::VerifierConfig::Stripe { secrets, .. } => secrets[0].clone(),
        other => panic!("the recipe's source verifies Stripe: {other:?}"),
    };
    let (mut smtp_auth, mut twilio_account) = (None, None);
    for destination in &config.destinations {
        match destination {
            DestinationConfig::Email(email) => {
                smtp_auth = Some(format!(
                    "{}:{}",
                    email.username.clone().unwrap_or_default(),
                    email.password.clone().unwrap_or_default()
                ));
            }
            DestinationConfig::Sms(sms) => {
                twilio_account = Some((sms.account_sid.clone(), sms.auth_token.clone()));
            }
            _ => {}
        }
    }
    let smtp_auth = smtp_auth.expect("an email destination");
    let (sid, token) = twilio_account.expect("an sms destination");
    let Some(smtp) = SmtpServer::start(
        "recipe_stripe_payment_failed_works_as_written",
        &["--auth", &smtp_auth],
    ) else {
        return;
    };
    let twilio = crate::sms::FakeTwilio::start_for(&sid, &token).await;
    for destination in &mut config.destinations {
        match destination {
            DestinationConfig::Email(email) => {
                email.host = Some("127.0.0.1".into());
                email.port = Some(smtp.port);
                email.tls = Some(switchboard_core::config::SmtpTls::None);
            }
            DestinationConfig::Sms(sms) => sms.base_url = Some(twilio.base.clone()),
            _ => {}
        }
    }
    config.security.allow_private_networks = true;
    config.delivery.poll_interval = Duration::from_millis(100);
    config.server.admin_token = Some(crate::support::process::ADMIN_TOKEN.into());
    let server = TestServer::start(config).await;

    let sample = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../samples/stripe/invoice.payment_failed.json"),
    )
    .expect("sample")
    .replace("{{event_id}}", "1RecipeInvoice")
    .replace("{{timestamp}}", "1733011200");
    let invoice = post_stripe(&server, &secret, &sample).await;
    let intent = post_stripe(
        &server,
        &secret,
        &json!({
            "id": "evt_1RecipeIntent",
            "object": "event",
            "type": "payment_intent.payment_failed",
            "data": {"object": {
                "id": "pi_3RecipeIntent",
                "object": "payment_intent",
                "amount": 1999,
                "currency": "eur",
                "customer": "cus_R2",
                "receipt_email": "max@example.com",
                "last_payment_error": {"code": "card_declined", "message": "Your card was declined."},
            }},
        })
        .to_string(),
    )
    .await;
    let other = post_stripe(
        &server,
        &secret,
        &json!({"id": "evt_1RecipeOk", "object": "event", "type": "payment_intent.succeeded",
                "data": {"object": {"id": "pi_ok", "amount": 100, "currency": "usd"}}})
        .to_string(),
    )
    .await;

    for event in [&invoice, &intent] {
        for destination in ["billing-email", "billing-sms"] {
            delivery_to(&server, event, destination, "delivered", |d| {
                d.status == DeliveryStatus::Succeeded
            })
            .await;
        }
    }
    let messages = smtp.wait_for(2).await;
    let mail = find(&messages, "Your payment of 49.00 USD failed");
    assert_eq!(emails(&mail["to"]), ["jenny.rosen@example.com"]);
    assert_eq!(mail["from"][0]["name"], "Acme Billing");
    assert_eq!(emails(&mail["reply_to"]), ["support@acme.example"]);
    assert!(
        mail["rcpt_tos"]
            .as_array()
            .expect("rcpt_tos")
            .contains(&json!("billing-archive@acme.example")),
        "{mail}"
    );
    assert_eq!(mail["login"], smtp_auth.split(':').next().expect("user"));
    // Mail travels with CRLF line ends.
    let text = mail["text"].as_str().expect("text").replace("\r\n", "\n");
    assert!(text.starts_with("Hello Jenny Rosen,\n\nWe could"), "{text}");
    assert!(
        text.contains("We could not charge 49.00 USD for invoice 8F2C1A7E-0003.")
            && text.contains("https://invoice.stripe.com/i/acct_1M2JTkLkdIwHu7ix/"),
        "{text}"
    );
    let html = mail["html"].as_str().expect("html");
    assert!(
        html.contains("<b>49.00 USD</b>")
            && html.contains(r#"<a href="https://invoice.stripe.com/i/acct_1M2JTkLkdIwHu7ix/"#),
        "{html}"
    );
    let mail = find(&messages, "Your payment of 19.99 EUR failed");
    assert_eq!(emails(&mail["to"]), ["max@example.com"]);
    assert!(
        mail["text"]
            .as_str()
            .expect("text")
            .contains("failed: Your card was declined."),
        "{mail}"
    );
    assert_eq!(mail["html"], Value::Null);

    let mut texts: Vec<(String, String)> = twilio
        .calls()
        .iter()
        .map(|c| {
            assert_eq!(c.get("From"), Some("+15017122661"));
            (
                c.get("To").unwrap_or("").to_owned(),
                c.get("Body").unwrap_or("").to_owned(),
            )
        })
        .collect();
    texts.sort();
    assert_eq!(
        texts,
        [
            (
                "+15558675310".to_owned(),
                "Stripe: payment of 19.99 EUR failed for max@example.com (pi_3RecipeIntent)"
                    .to_owned()
            ),
            (
                "+15558675310".to_owned(),
                "Stripe: payment of 49.00 USD failed for Jenny Rosen (in_1PzQ8bLkdIwHu7ixQ3xYvS2T)"
                    .to_owned()
            ),
        ]
    );
    // Routing is decided when each delivery comes up: both end `filtered`.
    eventually(Duration::from_secs(20), "other events filtered", || async {
        let others = server.deliveries_of(&other).await;
        (others.len() == 2 && others.iter().all(|d| d.status == DeliveryStatus::Filtered))
            .then_some(())
    })
    .await;
    server.stop().await;
}

/// The `email` and `sms` examples of `docs/configuration.md` load, validate and build as
/// written (beside the `stripe` source they route from).
#[test]
fn configuration_examples_load() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let text = std::fs::read_to_string(&path).expect("configuration.md");
    let mut found = Vec::new();
    for block in text.split("```toml\n").skip(1) {
        let block = block.split("```").next().expect("block");
        for kind in ["email", "sms"] {
            if block.contains(&format!("kind = \"{kind}\"")) {
                let toml = format!(
                    "[[sources]]\nid = \"stripe\"\nverifier = {{ kind = \"stripe\", secrets = [\"whsec_x\"] }}\n\n{block}"
                );
                let config = switchboard_core::Config::from_toml(&toml)
                    .unwrap_or_else(|e| panic!("the {kind} example parses: {e}\n{toml}"));
                config
                    .validate()
                    .unwrap_or_else(|e| panic!("the {kind} example is valid: {e}\n{toml}"));
                // Its templates compile and fixed addresses parse, as when the server starts.
                for destination in &config.destinations {
                    switchboard_server::delivery::connectors::build(destination)
                        .unwrap_or_else(|e| panic!("the {kind} example builds: {e}"));
                }
                found.push(kind);
            }
        }
    }
    assert_eq!(found, ["email", "sms"], "both examples were checked");
}
