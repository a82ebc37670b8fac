//! What each provider's verifier extracts (dedup key, type), answers (handshakes) and refuses.
//! The signature schemes themselves are tested against SDK vectors in `switchboard-signatures`.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri};
use switchboard_core::config::{HmacVerifierConfig, VerifierConfig};
use switchboard_signatures::{github, shopify, slack, standard_webhooks, stripe, twilio};

use super::*;

const NOW: i64 = 1_700_000_000;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            )
        })
        .collect()
}

fn run(
    config: &VerifierConfig,
    pairs: &[(&str, &str)],
    body: &[u8],
    uri: &str,
) -> Result<Verdict, Rejection> {
    let verifier = build(config).expect("builds");
    let headers = headers(pairs);
    let uri: Uri = uri.parse().expect("uri");
    verifier.verify(&Inbound {
        headers: &headers,
        body,
        uri: &uri,
        now: NOW,
    })
}

fn accepted(verdict: Result<Verdict, Rejection>) -> Accepted {
    match verdict {
        Ok(Verdict::Accept(accepted)) => accepted,
        other => panic!("expected acceptance, got {other:?}"),
    }
}

fn rejected(verdict: Result<Verdict, Rejection>) -> &'static str {
    match verdict {
        Err(rejection) => rejection.code,
        other => panic!("expected rejection, got {other:?}"),
    }
}

#[test]
fn github_type_action_dedup_and_ping() {
    let config = VerifierConfig::Github {
        secrets: vec!["new".into(), "old".into()],
    };
    let body = br#"{"action":"opened","number":1}"#;
    let sig = github::sign(b"old", body);
    let got = accepted(run(
        &config,
        &[
            ("x-hub-signature-256", &sig),
            ("x-github-event", "pull_request"),
            ("x-github-delivery", "d-1"),
            ("content-type", "application/json"),
        ],
        body,
        "/in/gh",
    ));
    assert_eq!(got.event_type.as_deref(), Some("pull_request.opened"));
    assert_eq!(got.dedup_key.as_deref(), Some("d-1"));

    let ping = br#"{"zen":"Keep it logically awesome."}"#;
    let verdict = run(
        &config,
        &[
            ("x-hub-signature-256", &github::sign(b"new", ping)),
            ("x-github-event", "ping"),
        ],
        ping,
        "/in/gh",
    );
    assert!(matches!(verdict, Ok(Verdict::Handshake(h)) if h.status == 200));

    let bad = run(
        &config,
        &[("x-hub-signature-256", &github::sign(b"wrong", body))],
        body,
        "/in/gh",
    );
    assert_eq!(rejected(bad), "invalid_signature");
    assert_eq!(
        rejected(run(&config, &[], body, "/in/gh")),
        "missing_signature"
    );
}

#[test]
fn stripe_dedup_on_id_type_from_body_and_stale_timestamps() {
    let config = VerifierConfig::Stripe {
        secrets: vec!["whsec_test".into()],
        tolerance: Duration::from_secs(300),
    };
    let body = br#"{"id":"evt_1","type":"invoice.payment_failed"}"#;
    let header = stripe::sign(&[b"whsec_test"], NOW, body);
    let got = accepted(run(
        &config,
        &[("stripe-signature", &header)],
        body,
        "/in/p",
    ));
    assert_eq!(got.dedup_key.as_deref(), Some("evt_1"));
    assert_eq!(got.event_type.as_deref(), Some("invoice.payment_failed"));
    let stale = stripe::sign(&[b"whsec_test"], NOW - 301, body);
    assert_eq!(
        rejected(run(&config, &[("stripe-signature", &stale)], body, "/in/p")),
        "timestamp_out_of_tolerance"
    );
    assert_eq!(
        rejected(run(
            &config,
            &[("stripe-signature", "garbage")],
            body,
            "/in/p"
        )),
        "malformed_signature"
    );
}

#[test]
fn slack_challenge_events_and_forms() {
    let config = VerifierConfig::Slack {
        secrets: vec!["s".into()],
        tolerance: Duration::from_secs(300),
    };
    let ts = NOW.to_string();
    let signed = |body: &[u8], ct: &'static str| -> Result<Verdict, Rejection> {
        let sig = slack::sign(b"s", &ts, body);
        run(
            &config,
            &[
                ("x-slack-signature", &sig),
                ("x-slack-request-timestamp", &ts),
                ("content-type", ct),
            ],
            body,
            "/in/slack",
        )
    };
    let challenge = signed(
        br#"{"type":"url_verification","challenge":"abc123","token":"t"}"#,
        "application/json",
    );
    match challenge {
        Ok(Verdict::Handshake(h)) => assert_eq!(h.body["challenge"], "abc123"),
        other => panic!("{other:?}"),
    }
    let event = accepted(signed(
        br#"{"type":"event_callback","event_id":"Ev1","event":{"type":"app_mention"}}"#,
        "application/json",
    ));
    assert_eq!(event.dedup_key.as_deref(), Some("Ev1"));
    assert_eq!(event.event_type.as_deref(), Some("app_mention"));
    let command = accepted(signed(
        b"command=%2Fdeploy&text=prod&user_id=U1",
        "application/x-www-form-urlencoded",
    ));
    assert_eq!(command.event_type.as_deref(), Some("slash_command/deploy"));
    let action = accepted(signed(
        b"payload=%7B%22type%22%3A%22block_actions%22%7D",
        "application/x-www-form-urlencoded",
    ));
    assert_eq!(action.event_type.as_deref(), Some("block_actions"));
    // An unsigned challenge is not answered.
    assert_eq!(
        rejected(run(
            &config,
            &[],
            br#"{"type":"url_verification"}"#,
            "/in/slack"
        )),
        "missing_signature"
    );
}

#[test]
fn shopify_topic_and_webhook_id() {
    let config = VerifierConfig::Shopify {
        secrets: vec!["shpss".into()],
    };
    let body = br#"{"id":820982911946154508}"#;
    let got = accepted(run(
        &config,
        &[
            ("x-shopify-hmac-sha256", &shopify::sign(b"shpss", body)),
            ("x-shopify-topic", "orders/create"),
            ("x-shopify-webhook-id", "b54557e4"),
        ],
        body,
        "/in/shop",
    ));
    assert_eq!(got.event_type.as_deref(), Some("orders/create"));
    assert_eq!(got.dedup_key.as_deref(), Some("b54557e4"));
}

#[test]
fn twilio_uses_public_url_with_the_request_query() {
    let config = VerifierConfig::Twilio {
        secrets: vec!["12345".into()],
        public_url: Some("https://hooks.example.com/in/tw".into()),
    };
    let body = b"CallSid=CA1&From=%2B14158675309";
    let signed_url = "https://hooks.example.com/in/tw?foo=1";
    let sig = twilio::sign_form(b"12345", signed_url, body, twilio::Algorithm::HmacSha1);
    let pairs = [
        ("x-twilio-signature", sig.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
        ("i-twilio-idempotency-token", "tok-1"),
    ];
    let got = accepted(run(&config, &pairs, body, "/in/tw?foo=1"));
    assert_eq!(got.dedup_key.as_deref(), Some("tok-1"));
    // The same request seen under another query string is not what Twilio signed.
    assert_eq!(
        rejected(run(&config, &pairs, body, "/in/tw?foo=2")),
        "invalid_signature"
    );
}

#[test]
fn twilio_rebuilds_the_url_from_forwarding_headers() {
    let config = VerifierConfig::Twilio {
        secrets: vec!["12345".into()],
        public_url: None,
    };
    let body = b"CallSid=CA1";
    let sig = twilio::sign_form(
        b"12345",
        "https://hooks.example.com/in/tw",
        body,
        twilio::Algorithm::HmacSha1,
    );
    accepted(run(
        &config,
        &[
            ("x-twilio-signature", &sig),
            ("content-type", "application/x-www-form-urlencoded"),
            ("host", "internal:8080"),
            ("x-forwarded-host", "hooks.example.com"),
            ("x-forwarded-proto", "https"),
        ],
        body,
        "/in/tw",
    ));
}

#[test]
fn standard_webhooks_dedup_type_and_svix_headers() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let config = VerifierConfig::StandardWebhooks {
        secrets: vec![secret.into()],
        tolerance: Duration::from_secs(300),
    };
    let body = br#"{"type":"invoice.paid","data":{}}"#;
    let sig = standard_webhooks::SigningKey::from_secret(secret)
        .expect("key")
        .sign("msg_1", NOW, body);
    let ts = NOW.to_string();
    for (id, t, s) in [
        ("webhook-id", "webhook-timestamp", "webhook-signature"),
        ("svix-id", "svix-timestamp", "svix-signature"),
    ] {
        let got = accepted(run(
            &config,
            &[(id, "msg_1"), (t, &ts), (s, &sig)],
            body,
            "/in/sw",
        ));
        assert_eq!(got.dedup_key.as_deref(), Some("msg_1"));
        assert_eq!(got.event_type.as_deref(), Some("invoice.paid"));
    }
    let old = (NOW - 301).to_string();
    assert_eq!(
        rejected(run(
            &config,
            &[
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", &old),
                ("webhook-signature", &sig)
            ],
            body,
            "/in/sw"
        )),
        "timestamp_out_of_tolerance"
    );
}

#[test]
fn generic_hmac_reads_id_and_type_headers() {
    let config = VerifierConfig::Hmac(HmacVerifierConfig {
        secrets: vec!["k".into()],
        algorithm: "sha256".into(),
        encoding: "hex".into(),
        header: "X-Signature".into(),
        prefix: Some("sha256=".into()),
        signed_content: "{timestamp}.{body}".into(),
        timestamp_header: Some("X-Timestamp".into()),
        tolerance: Some(Duration::from_secs(300)),
        id_header: Some("X-Id".into()),
        event_type_header: Some("X-Type".into()),
    });
    let body = b"{}";
    let mac = switchboard_signatures::HmacAlgorithm::Sha256
        .compute(b"k", &[format!("{NOW}.").as_bytes(), body]);
    let sig = format!(
        "sha256={}",
        switchboard_signatures::common::hex_encode(&mac)
    );
    let ts = NOW.to_string();
    let got = accepted(run(
        &config,
        &[
            ("x-signature", &sig),
            ("x-timestamp", &ts),
            ("x-id", "abc"),
            ("x-type", "thing.happened"),
        ],
        body,
        "/in/c",
    ));
    assert_eq!(got.dedup_key.as_deref(), Some("abc"));
    assert_eq!(got.event_type.as_deref(), Some("thing.happened"));
    let bad_algorithm = VerifierConfig::Hmac(HmacVerifierConfig {
        algorithm: "md5".into(),
        ..match config {
            VerifierConfig::Hmac(h) => h,
            _ => unreachable!(),
        }
    });
    assert!(build(&bad_algorithm).expect_err("md5").contains("md5"));
}

#[test]
fn basic_and_api_key_credentials() {
    let basic = VerifierConfig::Basic {
        username: "hook".into(),
        passwords: vec!["old".into(), "new".into()],
    };
    let ok = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "hook:new")
    );
    accepted(run(&basic, &[("authorization", &ok)], b"", "/in/b"));
    let wrong = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "hook:nope")
    );
    assert_eq!(
        rejected(run(&basic, &[("authorization", &wrong)], b"", "/in/b")),
        "invalid_credentials"
    );
    assert_eq!(
        rejected(run(&basic, &[], b"", "/in/b")),
        "missing_credentials"
    );

    let header = VerifierConfig::ApiKey {
        keys: vec!["k1".into()],
        header: None,
        query: None,
    };
    accepted(run(&header, &[("x-api-key", "k1")], b"", "/in/k"));
    assert_eq!(
        rejected(run(&header, &[("x-api-key", "k2")], b"", "/in/k")),
        "invalid_credentials"
    );
    let query = VerifierConfig::ApiKey {
        keys: vec!["k1".into()],
        header: None,
        query: Some("key".into()),
    };
    accepted(run(&query, &[], b"", "/in/k?key=k1"));
    assert_eq!(
        rejected(run(&query, &[], b"", "/in/k?other=k1")),
        "missing_credentials"
    );
}

#[test]
fn sendgrid_rejects_bad_keys_at_build_time() {
    let config = VerifierConfig::Sendgrid {
        public_key: "not-a-key".into(),
        tolerance: None,
    };
    assert!(build(&config).is_err());
}
