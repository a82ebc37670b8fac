//! The example receivers of `examples/receivers/` (Python, Node, Rust), each verifying with the
//! official Standard Webhooks library of its language, run as child processes against a real
//! Switchboard: a tenant endpoint points at the receiver, published events arrive verified, a
//! secret rotation does not break a receiver that still holds the old secret (both signatures
//! are sent during the grace period), a resend is recognised as a duplicate by `webhook-id`, and
//! a receiver holding the wrong secret refuses the delivery, which then fails.
//!
//! Each receiver needs its language's library; without it the test prints `SKIPPED <test>: <how
//! to enable>` and passes (`.ci/run` installs everything and fails on any skip):
//! - Python: `pip install standardwebhooks` (with `SWITCHBOARD_REQUIRE_PY_SDK` set, missing it
//!   fails instead);
//! - Node: `npm ci` in `examples/receivers/node`;
//! - Rust: `cargo build --manifest-path examples/receivers/rust/Cargo.toml`, with the binary's
//!   path in `SWITCHBOARD_RUST_RECEIVER_BIN`.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use serde_json::json;
use switchboard_core::{Config, DeliveryStatus};

use crate::support::{ApiClient, TestServer, eventually, process};

/// Where the example receivers live.
fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/receivers")
}

/// Writes a skip notice straight to the process's stderr (past the test harness's capture), so
/// that it shows in the `cargo test` log that CI greps.
fn skipped(test: &str, how: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {how}");
}

/// Whether `program args…` runs and exits 0.
fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One of the example receivers.
#[derive(Debug, Clone, Copy)]
enum Language {
    Python,
    Node,
    Rust,
}

impl Language {
    /// The command that starts the receiver, or `None` after reporting `test` as skipped.
    fn command(self, test: &str) -> Option<Command> {
        match self {
            Self::Python => {
                if !runs("python3", &["-c", "import standardwebhooks"]) {
                    assert!(
                        std::env::var_os("SWITCHBOARD_REQUIRE_PY_SDK").is_none(),
                        "SWITCHBOARD_REQUIRE_PY_SDK is set but python3 cannot import standardwebhooks"
                    );
                    skipped(
                        test,
                        "pip install standardwebhooks (see .ci/requirements.txt)",
                    );
                    return None;
                }
                let mut command = Command::new("python3");
                command.arg(examples().join("python/receiver.py"));
                Some(command)
            }
            Self::Node => {
                let dir = examples().join("node");
                if !dir.join("node_modules/standardwebhooks").is_dir()
                    || !runs("node", &["--version"])
                {
                    skipped(
                        test,
                        "install Node.js 18+ and run `npm ci` in examples/receivers/node",
                    );
                    return None;
                }
                let mut command = Command::new("node");
                command.arg(dir.join("receiver.mjs"));
                Some(command)
            }
            Self::Rust => {
                let Some(binary) = std::env::var_os("SWITCHBOARD_RUST_RECEIVER_BIN") else {
                    skipped(
                        test,
                        "cargo build --manifest-path examples/receivers/rust/Cargo.toml, then set \
                         SWITCHBOARD_RUST_RECEIVER_BIN=<target dir>/debug/switchboard-receiver",
                    );
                    return None;
                };
                assert!(
                    Path::new(&binary).is_file(),
                    "SWITCHBOARD_RUST_RECEIVER_BIN={} is not a file",
                    binary.to_string_lossy()
                );
                Some(Command::new(binary))
            }
        }
    }
}

/// A receiver running as a child process; killed when dropped.
struct ReceiverProcess {
    child: Child,
    /// `http://127.0.0.1:PORT/webhooks/switchboard`
    url: String,
    /// Every line it printed so far (stderr lines prefixed with `stderr: `).
    lines: Arc<Mutex<Vec<String>>>,
}

impl ReceiverProcess {
    /// Starts `command` with `WEBHOOK_SECRET=secret` and `PORT=0`, and waits for its
    /// `listening on http://…` line.
    async fn start(mut command: Command, secret: &str) -> Self {
        let mut child = command
            .env("WEBHOOK_SECRET", secret)
            .env("PORT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the receiver");
        let lines = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().expect("stdout"), "", lines.clone());
        collect(
            child.stderr.take().expect("stderr"),
            "stderr: ",
            lines.clone(),
        );
        // Own the child before anything can panic, so that it is killed on every path.
        let mut receiver = Self {
            child,
            url: String::new(),
            lines,
        };
        let base = eventually(Duration::from_secs(10), "the receiver listening", || {
            let found = receiver.lines().iter().find_map(|line| {
                line.strip_prefix("listening on ")
                    .map(|url| url.trim().to_owned())
            });
            if found.is_none()
                && let Ok(Some(status)) = receiver.child.try_wait()
            {
                panic!("the receiver exited ({status}): {:?}", receiver.lines());
            }
            std::future::ready(found)
        })
        .await;
        receiver.url = format!("{base}/webhooks/switchboard");
        receiver
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    /// Lines that start with `prefix`.
    fn lines_starting(&self, prefix: &str) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|line| line.starts_with(prefix))
            .collect()
    }

    /// Waits until the receiver printed a line starting with `prefix`.
    async fn wait_line(&self, prefix: &str) -> String {
        eventually(
            Duration::from_secs(10),
            &format!("a line `{prefix}…`"),
            || std::future::ready(self.lines_starting(prefix).into_iter().next()),
        )
        .await
    }
}

impl Drop for ReceiverProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `stream` line by line into `lines` on a thread (so the child never blocks on a pipe).
fn collect(
    stream: impl Read + Send + 'static,
    prefix: &'static str,
    lines: Arc<Mutex<Vec<String>>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            lines.lock().expect("lines").push(format!("{prefix}{line}"));
        }
    });
}

/// A fresh random `whsec_` secret.
fn random_secret() -> String {
    let key: [u8; 24] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// A server without sources, polling fast, with the bootstrap admin token.
fn config() -> Config {
    let mut config = Config::default();
    config.security.allow_private_networks = true;
    config.delivery.poll_interval = Duration::from_millis(100);
    config.server.admin_token = Some(process::ADMIN_TOKEN.into());
    config
}

/// Creates tenant `acme` with one endpoint at `url` signing with `secret`; returns its id.
async fn acme_endpoint(api: &ApiClient, url: &str, secret: &str) -> String {
    api.post("/v1/tenants", &json!({"id": "acme", "name": "Acme"}))
        .await
        .ok(201);
    let created = api
        .post(
            "/v1/tenants/acme/endpoints",
            &json!({"url": url, "secret": secret, "event_types": ["invoice.paid"]}),
        )
        .await;
    let endpoint = created.ok(201);
    assert_eq!(
        endpoint["secret"], secret,
        "the secret given is the one used"
    );
    endpoint["id"].as_str().expect("endpoint id").to_owned()
}

/// Publishes `invoice.paid` for `invoice`; returns the event id.
async fn publish(api: &ApiClient, invoice: &str) -> String {
    let published = api
        .post(
            "/v1/tenants/acme/events",
            &json!({"type": "invoice.paid", "payload": {"invoice": invoice, "amount": 990}}),
        )
        .await;
    let body = published.ok(202);
    assert_eq!(body["endpoints"], 1, "{body}");
    body["id"].as_str().expect("event id").to_owned()
}

/// Two events, a rotation (the receiver keeps the old secret), a third event, a resend: the
/// receiver verifies each event once, answers the resend as a duplicate, and Switchboard records
/// every delivery as succeeded.
async fn verifies_across_a_rotation(language: Language, test: &str) {
    let Some(command) = language.command(test) else {
        return;
    };
    let server = TestServer::start(config()).await;
    let api = server.api();
    let secret = random_secret();
    let receiver = ReceiverProcess::start(command, &secret).await;
    let endpoint = acme_endpoint(&api, &receiver.url, &secret).await;

    let mut events = vec![publish(&api, "in_1").await, publish(&api, "in_2").await];
    let rotated = api
        .post(
            &format!("/v1/tenants/acme/endpoints/{endpoint}/rotate-secret"),
            &json!({"grace": "1h"}),
        )
        .await;
    let new_secret = rotated.ok(200)["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    assert_ne!(new_secret, secret);
    assert!(
        rotated.body["previous_expires_at"].is_string(),
        "{}",
        rotated.text
    );
    events.push(publish(&api, "in_3").await);

    let mut delivery_ids = Vec::new();
    for (n, event) in events.iter().enumerate() {
        let delivery = server
            .wait_delivery(event, "delivery finished", |d| {
                matches!(d.status, DeliveryStatus::Succeeded | DeliveryStatus::Failed)
            })
            .await;
        assert_eq!(
            delivery.status,
            DeliveryStatus::Succeeded,
            "{delivery:?}; receiver: {:?}",
            receiver.lines()
        );
        assert_eq!(delivery.destination, endpoint);
        assert_eq!(delivery.attempts, 1, "accepted at the first attempt");
        assert_eq!(delivery.last_status, Some(204));
        // The delivery id is the `webhook-id`: exactly one verified line names it.
        let verified = receiver.lines_starting(&format!("verified {} ", delivery.id));
        assert_eq!(verified.len(), 1, "{:?}", receiver.lines());
        let invoice = format!("in_{}", n + 1);
        assert!(
            verified[0].contains(&invoice),
            "{verified:?} names {invoice}"
        );
        delivery_ids.push(delivery.id);
    }

    // A resend carries the same webhook-id: verified again, but recognised as a duplicate.
    let resent = api
        .post(
            &format!("/v1/tenants/acme/endpoints/{endpoint}/resend"),
            &json!({"event_id": events[0]}),
        )
        .await;
    assert_eq!(resent.ok(202)["delivery_id"], delivery_ids[0].as_str());
    receiver
        .wait_line(&format!("duplicate {}", delivery_ids[0]))
        .await;
    server
        .wait_delivery(&events[0], "the resend succeeded", |d| {
            d.status == DeliveryStatus::Succeeded && d.attempts == 2
        })
        .await;
    assert_eq!(
        receiver.lines_starting("verified ").len(),
        3,
        "{:?}",
        receiver.lines()
    );
    assert!(
        receiver.lines_starting("rejected").is_empty()
            && receiver.lines_starting("stderr").is_empty(),
        "{:?}",
        receiver.lines()
    );
    server.stop().await;
}

/// A receiver holding another secret refuses the delivery with 401 and never processes it;
/// a 4xx is permanent, so the delivery fails at once.
async fn refuses_a_wrong_secret(language: Language, test: &str) {
    let Some(command) = language.command(test) else {
        return;
    };
    let server = TestServer::start(config()).await;
    let api = server.api();
    let receiver = ReceiverProcess::start(command, &random_secret()).await;
    acme_endpoint(&api, &receiver.url, &random_secret()).await;
    let event = publish(&api, "in_1").await;
    let delivery = server
        .wait_delivery(&event, "delivery failed", |d| {
            d.status == DeliveryStatus::Failed
        })
        .await;
    assert_eq!(delivery.last_status, Some(401), "{delivery:?}");
    receiver
        .wait_line(&format!("rejected {}", delivery.id))
        .await;
    assert!(
        receiver.lines_starting("verified ").is_empty(),
        "{:?}",
        receiver.lines()
    );
    server.stop().await;
}

#[tokio::test]
async fn python_receiver_verifies_across_a_rotation() {
    verifies_across_a_rotation(
        Language::Python,
        "python_receiver_verifies_across_a_rotation",
    )
    .await;
}

#[tokio::test]
async fn python_receiver_refuses_a_wrong_secret() {
    refuses_a_wrong_secret(Language::Python, "python_receiver_refuses_a_wrong_secret").await;
}

#[tokio::test]
async fn node_receiver_verifies_across_a_rotation() {
    verifies_across_a_rotation(Language::Node, "node_receiver_verifies_across_a_rotation").await;
}

#[tokio::test]
async fn node_receiver_refuses_a_wrong_secret() {
    refuses_a_wrong_secret(Language::Node, "node_receiver_refuses_a_wrong_secret").await;
}

#[tokio::test]
async fn rust_receiver_verifies_across_a_rotation() {
    verifies_across_a_rotation(Language::Rust, "rust_receiver_verifies_across_a_rotation").await;
}

#[tokio::test]
async fn rust_receiver_refuses_a_wrong_secret() {
    refuses_a_wrong_secret(Language::Rust, "rust_receiver_refuses_a_wrong_secret").await;
}
