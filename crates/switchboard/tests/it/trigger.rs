//! `switchboard trigger`: the real binary sends each provider's sample to a loopback receiver, and
//! the recorded request verifies with that provider's `switchboard_signatures` verifier.

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use switchboard_signatures::{github, sendgrid, shopify, slack, standard_webhooks, stripe, twilio};

use crate::support::receiver::Recorded;
use crate::support::{Receiver, SECRET};

/// A P-256 test key (PKCS#8 DER, base64) and its public key (DER SPKI, base64): the worked
/// SendGrid vector of `shared/vectors/schemes.md`.
const SENDGRID_PRIVATE_KEY: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgEtu9t+611S6m5WMPpRwhjkoLv+pZN0MPYZU+i/cYJfShRANCAARUeUhCjpi0+7apRnHzU8koeWsgaTj6iQzdPbiA3MTLEK5/bH060tiuOtmIUqdWU3k3OtQm2c3Y7AeHYzeSt/uH";
const SENDGRID_PUBLIC_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEVHlIQo6YtPu2qUZx81PJKHlrIGk4+okM3T24gNzEyxCuf2x9OtLYrjrZiFKnVlN5NzrUJtnN2OwHh2M3krf7hw==";

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `switchboard trigger <args…>` and waits for it.
async fn trigger(args: &[&str]) -> Run {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("trigger")
        .args(args)
        .env_remove("SWITCHBOARD_TRIGGER_SECRET")
        .env_remove("SWITCHBOARD_CONFIG")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), output)
        .await
        .expect("trigger finishes within 30s")
        .expect("run switchboard trigger");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Sends `provider event` to a fresh receiver answering 202 and returns the recorded request.
async fn send(provider: &str, event: &str, extra: &[&str]) -> (Recorded, Run, Receiver) {
    let receiver = Receiver::always(202).await;
    let mut args = vec![provider, event, "--to", &receiver.url];
    args.extend_from_slice(extra);
    let run = trigger(&args).await;
    assert_eq!(
        run.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    assert!(run.stdout.starts_with("202"), "{}", run.stdout);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "exactly one request");
    let recorded = requests.into_iter().next().expect("one request");
    (recorded, run, receiver)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .expect("clock after 1970")
}

fn lookup<'r>(recorded: &'r Recorded) -> impl Fn(&str) -> Option<&'r str> + 'r {
    move |name: &str| recorded.headers.get(name).and_then(|v| v.to_str().ok())
}

fn json(recorded: &Recorded) -> serde_json::Value {
    serde_json::from_slice(&recorded.body).expect("JSON body")
}

#[tokio::test]
async fn github_events_are_signed_and_typed_like_github() {
    for (event, header) in [("pull_request.opened", "pull_request"), ("push", "push")] {
        let (req, _, _) = send("github", event, &["--secret", "s3cret"]).await;
        assert_eq!(req.header("x-github-event"), header);
        assert_eq!(req.header("x-github-delivery").len(), 36, "a UUID");
        assert!(req.header("user-agent").starts_with("GitHub-Hookshot/"));
        let lookup = lookup(&req);
        github::verify(&["old", "s3cret"], lookup("x-hub-signature-256"), &req.body)
            .expect("X-Hub-Signature-256 verifies");
        github::verify_sha1(&["s3cret"], lookup("x-hub-signature"), &req.body)
            .expect("X-Hub-Signature verifies");
        assert_eq!(
            github::verify(&["wrong"], lookup("x-hub-signature-256"), &req.body),
            Err(switchboard_signatures::SignatureError::NoMatch)
        );
        if event == "pull_request.opened" {
            assert_eq!(json(&req)["action"], "opened");
        }
    }
}

#[tokio::test]
async fn stripe_events_are_fresh_and_signed_now() {
    let secret = "whsec_test_trigger";
    let (first, _, _) = send("stripe", "invoice.payment_failed", &["--secret", secret]).await;
    let (second, _, _) = send("stripe", "invoice.payment_failed", &["--secret", secret]).await;
    for req in [&first, &second] {
        stripe::verify(
            &[secret],
            lookup(req)("stripe-signature"),
            &req.body,
            now(),
            Some(stripe::DEFAULT_TOLERANCE_SECS),
        )
        .expect("Stripe-Signature verifies");
        let t: i64 = req.header("stripe-signature")["t=".len()..]
            .split(',')
            .next()
            .and_then(|t| t.parse().ok())
            .expect("t=");
        assert!((now() - t).abs() <= 5, "t is now");
        let body = json(req);
        assert_eq!(body["type"], "invoice.payment_failed");
        assert_eq!(body["created"], t);
    }
    let id = |req: &Recorded| json(req)["id"].as_str().expect("id").to_owned();
    assert!(id(&first).starts_with("evt_"));
    assert_ne!(id(&first), id(&second), "each run is a new event");
}

#[tokio::test]
async fn slack_events_commands_and_interactions_verify() {
    let secret = "8f742231b10e8888abcd99yyyzzz85a5";
    for event in [
        "app_mention",
        "url_verification",
        "slash_command",
        "block_actions",
    ] {
        let (req, _, _) = send("slack", event, &["--secret", secret]).await;
        let headers = slack::Headers::from_lookup(&lookup(&req));
        slack::verify(&[secret], headers, &req.body, now(), 300)
            .unwrap_or_else(|e| panic!("{event}: {e}"));
        match event {
            "app_mention" => {
                let body = json(&req);
                assert_eq!(body["event"]["type"], "app_mention");
                assert!(
                    body["event_id"]
                        .as_str()
                        .expect("event_id")
                        .starts_with("Ev")
                );
            }
            "url_verification" => assert!(json(&req)["challenge"].is_string()),
            "slash_command" => {
                assert_eq!(
                    req.header("content-type"),
                    "application/x-www-form-urlencoded"
                );
                let text = String::from_utf8_lossy(&req.body);
                assert!(text.contains("command=%2Fdeploy"), "{text}");
            }
            _ => {
                let text = String::from_utf8_lossy(&req.body);
                assert!(
                    text.starts_with("payload=%7B%22type%22%3A%22block_actions%22"),
                    "{text}"
                );
            }
        }
    }
}

#[tokio::test]
async fn shopify_topic_and_webhook_id_come_with_the_hmac() {
    let (req, _, _) = send("shopify", "orders/create", &["--secret", "hush"]).await;
    assert_eq!(req.header("x-shopify-topic"), "orders/create");
    assert_eq!(req.header("x-shopify-webhook-id").len(), 36);
    assert!(
        req.header("x-shopify-shop-domain")
            .ends_with(".myshopify.com")
    );
    assert!(!req.header("x-shopify-api-version").is_empty());
    assert!(!req.header("x-shopify-triggered-at").is_empty());
    shopify::verify(&["hush"], lookup(&req)("x-shopify-hmac-sha256"), &req.body)
        .expect("X-Shopify-Hmac-Sha256 verifies");
    assert_eq!(json(&req)["financial_status"], "pending");
}

#[tokio::test]
async fn twilio_signs_the_public_url_and_form_or_body_hash() {
    let token = "12345";
    // Form body, signed over the URL it was sent to.
    let (req, _, receiver) = send("twilio", "sms.received", &["--secret", token]).await;
    let headers = twilio::Headers::from_lookup(&lookup(&req));
    twilio::verify(&[token], &receiver.url, headers, &req.body).expect("form verifies");
    assert!(!req.header("i-twilio-idempotency-token").is_empty());

    // Behind a proxy: signed over --public-url, not over the URL it was sent to.
    let public = "https://hooks.example.com/in/tw";
    let (req, _, receiver) = send(
        "twilio",
        "call.status",
        &["--secret", token, "--public-url", public],
    )
    .await;
    let headers = twilio::Headers::from_lookup(&lookup(&req));
    twilio::verify(&[token], public, headers, &req.body).expect("public URL verifies");
    assert!(twilio::verify(&[token], &receiver.url, headers, &req.body).is_err());

    // JSON body: `bodySHA256` in the query, signature over the URL alone.
    let (req, _, receiver) = send(
        "twilio",
        "event_streams.message.delivered",
        &["--secret", token],
    )
    .await;
    assert_eq!(req.header("content-type"), "application/json");
    let headers = twilio::Headers::from_lookup(&lookup(&req));
    let url = twilio::url_with_body_hash(&receiver.url, &req.body);
    twilio::verify(&[token], &url, headers, &req.body).expect("bodySHA256 verifies");
    assert!(json(&req)[0]["type"].is_string());
}

#[tokio::test]
async fn sendgrid_batches_verify_with_the_printed_public_key() {
    // No --secret: a fresh key, whose public half is printed for `verifier.public_key`.
    let (req, run, _) = send("sendgrid", "delivered", &[]).await;
    let public = run
        .stderr
        .lines()
        .find_map(|line| line.strip_prefix("verification key (verifier.public_key): "))
        .expect("public key printed");
    let keys = [sendgrid::PublicKey::from_base64_der(public).expect("public key parses")];
    let headers = sendgrid::Headers::from_lookup(&lookup(&req));
    sendgrid::verify(&keys, headers, &req.body, now(), Some(300)).expect("signature verifies");
    assert!(req.body.ends_with(b"]\r\n"), "batches end with CRLF");
    let events = json(&req);
    assert_eq!(events.as_array().map(Vec::len), Some(2));
    assert_ne!(events[0]["sg_event_id"], events[1]["sg_event_id"]);

    // A given private key signs, and its public key is the one printed.
    let (req, run, _) = send("sendgrid", "bounce", &["--secret", SENDGRID_PRIVATE_KEY]).await;
    assert!(run.stderr.contains(SENDGRID_PUBLIC_KEY), "{}", run.stderr);
    let keys = [sendgrid::PublicKey::from_base64_der(SENDGRID_PUBLIC_KEY).expect("key")];
    let headers = sendgrid::Headers::from_lookup(&lookup(&req));
    sendgrid::verify(&keys, headers, &req.body, now(), Some(300)).expect("signature verifies");
}

#[tokio::test]
async fn standard_webhooks_are_signed_with_the_whsec_key() {
    let (req, _, _) = send("standard-webhooks", "invoice.paid", &["--secret", SECRET]).await;
    let key = standard_webhooks::SigningKey::from_secret(SECRET).expect("secret");
    let headers = standard_webhooks::Headers::from_lookup(&lookup(&req));
    standard_webhooks::verify(&[key], headers, &req.body, now(), 300).expect("verifies");
    assert!(req.header("webhook-id").starts_with("msg_"));
    assert_eq!(json(&req)["type"], "invoice.paid");
}

#[tokio::test]
async fn dry_run_prints_the_request_and_sends_nothing() {
    let receiver = Receiver::always(202).await;
    let run = trigger(&[
        "slack",
        "app_mention",
        "--to",
        &receiver.url,
        "--secret",
        "x",
        "--dry-run",
    ])
    .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.starts_with(&format!("POST {}\n", receiver.url)),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("\nX-Slack-Signature: v0="));
    assert!(run.stdout.contains("\n\n{\"token\":"));
    assert!(receiver.requests().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn rejections_exit_1_and_usage_errors_explain_themselves() {
    let receiver = Receiver::always(401).await;
    let run = trigger(&["github", "ping", "--to", &receiver.url, "--secret", "x"]).await;
    assert_eq!(run.code, Some(1));
    assert!(run.stdout.starts_with("401"), "{}", run.stdout);
    assert_eq!(receiver.requests().len(), 1);

    let run = trigger(&["github", "ping", "--to", &receiver.url]).await;
    assert_ne!(run.code, Some(0));
    assert!(run.stderr.contains("--secret"), "{}", run.stderr);

    let run = trigger(&["github", "nope", "--to", &receiver.url, "--secret", "x"]).await;
    assert_ne!(run.code, Some(0));
    assert!(run.stderr.contains("pull_request.opened"), "{}", run.stderr);
    assert_eq!(receiver.requests().len(), 1, "usage errors send nothing");

    let run = trigger(&["--list"]).await;
    assert_eq!(run.code, Some(0));
    for name in [
        "github",
        "stripe",
        "slack",
        "shopify",
        "twilio",
        "sendgrid",
        "standard-webhooks",
        "orders/create",
        "block_actions",
    ] {
        assert!(run.stdout.contains(name), "{name} listed");
    }
}
