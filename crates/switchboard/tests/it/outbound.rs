//! Outbound webhooks as a product: tenants, endpoints, event types, publish, secret rotation,
//! circuit breaking, auto-disable, throttling, ordering, recovery, resend and operational
//! events, end to end against loopback receivers that fail, hang and recover.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_core::Config;
use switchboard_core::config::RouteConfig;
use switchboard_signatures::standard_webhooks::{self, SigningKey};

use crate::support::receiver::Recorded;
use crate::support::{
    ApiClient, Receiver, Reply, TestServer, eventually, http_destination, process, schedule_ms,
};

/// A server without sources, with fast polling and a small circuit breaker.
fn outbound_config() -> Config {
    let mut config = Config::default();
    config.security.allow_private_networks = true;
    config.delivery.poll_interval = Duration::from_millis(100);
    config.delivery.circuit.failure_threshold = 3;
    config.delivery.circuit.cooldown = Duration::from_millis(1500);
    config.delivery.circuit.success_threshold = 1;
    config.server.admin_token = Some(process::ADMIN_TOKEN.into());
    config
}

async fn tenant(api: &ApiClient, id: &str) {
    api.post(
        "/v1/tenants",
        &json!({"id": id, "name": format!("Tenant {id}")}),
    )
    .await
    .ok(201);
}

/// Creates an endpoint; returns `(id, secret)`.
async fn endpoint(api: &ApiClient, tenant: &str, body: Value) -> (String, String) {
    let response = api
        .post(&format!("/v1/tenants/{tenant}/endpoints"), &body)
        .await;
    let created = response.ok(201);
    let id = created["id"].as_str().expect("id").to_owned();
    let secret = created["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (id, secret)
}

async fn publish(api: &ApiClient, tenant: &str, body: Value) -> Value {
    api.post(&format!("/v1/tenants/{tenant}/events"), &body)
        .await
        .ok(202)
        .clone()
}

/// Verifies a recorded request with our own Standard Webhooks implementation.
fn verifies_with(request: &Recorded, secret: &str) -> bool {
    let key = SigningKey::from_secret(secret).expect("secret");
    let timestamp: i64 = request.header("webhook-timestamp").parse().expect("ts");
    let headers = standard_webhooks::Headers {
        id: Some(request.header("webhook-id")),
        timestamp: Some(request.header("webhook-timestamp")),
        signature: Some(request.header("webhook-signature")),
    };
    standard_webhooks::verify(&[key], headers, &request.body, timestamp, 300).is_ok()
}

/// Whether python3 has both official libraries; panics when CI requires them.
fn python_sdks_available(test: &str) -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import standardwebhooks, svix"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("SWITCHBOARD_REQUIRE_PY_SDK").is_none(),
            "SWITCHBOARD_REQUIRE_PY_SDK is set but the standardwebhooks/svix Python packages are missing"
        );
        eprintln!("SKIPPED {test}: pip install standardwebhooks svix");
    }
    ok
}

/// Asks the official `standardwebhooks` and `svix` Python libraries whether `request` verifies
/// with `secret`; returns their two verdicts.
fn python_verdicts(request: &Recorded, secret: &str) -> (bool, bool) {
    let input = json!({
        "secret": secret,
        "body": String::from_utf8(request.body.to_vec()).expect("utf8"),
        "id": request.header("webhook-id"),
        "timestamp": request.header("webhook-timestamp"),
        "signature": request.header("webhook-signature"),
    });
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook as StandardWebhook
from svix.webhooks import Webhook as SvixWebhook
d = json.load(sys.stdin)
def check(make, headers):
    try:
        make(d["secret"]).verify(d["body"], headers)
        return True
    except Exception:
        return False
std = check(StandardWebhook, {"webhook-id": d["id"], "webhook-timestamp": d["timestamp"], "webhook-signature": d["signature"]})
svx = check(SvixWebhook, {"svix-id": d["id"], "svix-timestamp": d["timestamp"], "svix-signature": d["signature"]})
print(json.dumps([std, svx]))
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("python3");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(input.to_string().as_bytes())
            .expect("write stdin");
    }
    let output = child.wait_with_output().expect("python3 output");
    assert!(output.status.success(), "python verifier failed");
    let verdicts: (bool, bool) = serde_json::from_slice(&output.stdout).expect("verdicts");
    verdicts
}

/// Publishing fans out to the tenant's enabled endpoints whose types and channels match; the
/// official libraries verify every delivery; an idempotency key returns the original event.
#[tokio::test]
async fn publish_fans_out_by_type_and_channel_and_official_libraries_verify() {
    let all = Receiver::always(200).await;
    let invoices = Receiver::always(200).await;
    let eu = Receiver::always(200).await;
    let other_tenant = Receiver::always(200).await;
    let server = TestServer::start(outbound_config()).await;
    let api = server.api();
    tenant(&api, "acme").await;
    tenant(&api, "globex").await;
    let (_, all_secret) = endpoint(&api, "acme", json!({"url": all.url})).await;
    let (_, invoice_secret) = endpoint(
        &api,
        "acme",
        json!({"url": invoices.url, "event_types": ["invoice.paid"], "headers": {"x-team": "billing"}}),
    )
    .await;
    endpoint(&api, "acme", json!({"url": eu.url, "channels": ["eu"]})).await;
    endpoint(&api, "globex", json!({"url": other_tenant.url})).await;
    // A disabled endpoint receives nothing.
    let disabled = Receiver::always(200).await;
    endpoint(&api, "acme", json!({"url": disabled.url, "enabled": false})).await;

    let first = publish(
        &api,
        "acme",
        json!({"type": "invoice.paid", "payload": {"invoice": 1, "amount": 990},
               "channels": ["us"], "idempotency_key": "inv-1", "headers": {"x-request-tag": "t1"}}),
    )
    .await;
    assert_eq!(
        first["endpoints"], 2,
        "all + invoices; not eu, globex or disabled"
    );
    let repeat = publish(
        &api,
        "acme",
        json!({"type": "invoice.paid", "payload": {"invoice": 1, "amount": 990}, "idempotency_key": "inv-1"}),
    )
    .await;
    assert_eq!(repeat["id"], first["id"], "the original event");
    assert_eq!(repeat["duplicate"], true);
    publish(
        &api,
        "acme",
        json!({"type": "user.created", "payload": {"user": "u1"}, "channels": ["eu"]}),
    )
    .await;

    let to_all = all.wait_for(2, Duration::from_secs(10)).await;
    let to_invoices = invoices.wait_for(1, Duration::from_secs(10)).await;
    let to_eu = eu.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        invoices.requests().len(),
        1,
        "user.created is not an invoice type"
    );
    assert_eq!(eu.requests().len(), 1, "only the eu message");
    assert!(other_tenant.requests().is_empty(), "tenants are isolated");
    assert!(
        disabled.requests().is_empty(),
        "disabled endpoints get nothing"
    );

    let invoice = &to_invoices[0];
    assert_eq!(
        serde_json::from_slice::<Value>(&invoice.body).expect("json"),
        json!({"invoice": 1, "amount": 990})
    );
    assert_eq!(invoice.header("x-team"), "billing", "endpoint header");
    assert_eq!(invoice.header("x-request-tag"), "t1", "per-message header");
    assert_eq!(invoice.header("content-type"), "application/json");
    assert!(verifies_with(invoice, &invoice_secret));
    assert!(
        !verifies_with(invoice, &all_secret),
        "each endpoint has its own secret"
    );
    assert!(to_all.iter().all(|r| verifies_with(r, &all_secret)));
    assert!(verifies_with(&to_eu[0], &secret_of_eu_endpoint(&api).await));

    if python_sdks_available("publish_fans_out_by_type_and_channel_and_official_libraries_verify") {
        assert_eq!(python_verdicts(invoice, &invoice_secret), (true, true));
        assert_eq!(python_verdicts(invoice, &all_secret), (false, false));
    }
    server.stop().await;
}

/// The secret of acme's `eu` channel endpoint, through the API (listings never show it).
async fn secret_of_eu_endpoint(api: &ApiClient) -> String {
    let endpoints = api.get("/v1/tenants/acme/endpoints").await;
    let eu = endpoints
        .ok(200)
        .as_array()
        .expect("list")
        .iter()
        .find(|e| e["channels"] == json!(["eu"]))
        .expect("eu endpoint")
        .clone();
    assert!(eu.get("secret").is_none(), "listings never show secrets");
    let id = eu["id"].as_str().expect("id");
    api.get(&format!("/v1/tenants/acme/endpoints/{id}/secret"))
        .await
        .ok(200)["secret"]
        .as_str()
        .expect("secret")
        .to_owned()
}

/// An event type's JSON Schema is enforced on publish with `422` and the validation errors;
/// a bad schema is refused when the type is created.
#[tokio::test]
async fn event_type_schemas_are_enforced() {
    let server = TestServer::start(outbound_config()).await;
    let api = server.api();
    tenant(&api, "acme").await;
    api.post(
        "/v1/event-types",
        &json!({"name": "invoice.paid", "description": "An invoice was paid", "schema": {
            "type": "object",
            "required": ["invoice", "amount"],
            "properties": {"invoice": {"type": "string"}, "amount": {"type": "integer", "minimum": 0}}
        }}),
    )
    .await
    .ok(201);
    let bad = api
        .post(
            "/v1/tenants/acme/events",
            &json!({"type": "invoice.paid", "payload": {"invoice": 7, "amount": -1}}),
        )
        .await;
    let problem = bad.problem(422, "validation_failed");
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().expect("field"))
        .collect();
    assert!(fields.contains(&"payload.invoice"), "{fields:?}");
    assert!(fields.contains(&"payload.amount"), "{fields:?}");
    publish(
        &api,
        "acme",
        json!({"type": "invoice.paid", "payload": {"invoice": "in_1", "amount": 5}}),
    )
    .await;
    let invalid_schema = api
        .post(
            "/v1/event-types",
            &json!({"name": "broken", "schema": {"type": "no-such-type"}}),
        )
        .await;
    invalid_schema.problem(422, "validation_failed");
    assert_eq!(invalid_schema.body["errors"][0]["field"], "schema");
    let listed = api.get("/v1/event-types").await;
    assert_eq!(listed.ok(200).as_array().expect("list").len(), 1);
    // Unknown tenants are 404.
    api.post(
        "/v1/tenants/nobody/events",
        &json!({"type": "x", "payload": {}}),
    )
    .await
    .problem(404, "not_found");
    server.stop().await;
}

/// After a rotation, deliveries carry both signatures for the grace period: receivers holding
/// either secret verify, with our code and with the official libraries.
#[tokio::test]
async fn rotated_secrets_sign_together_during_the_grace_period() {
    let receiver = Receiver::always(200).await;
    let server = TestServer::start(outbound_config()).await;
    let api = server.api();
    tenant(&api, "acme").await;
    let (id, old_secret) = endpoint(&api, "acme", json!({"url": receiver.url})).await;
    let rotated = api
        .post(
            &format!("/v1/tenants/acme/endpoints/{id}/rotate-secret"),
            &json!({}),
        )
        .await;
    let new_secret = rotated.ok(200)["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    assert_ne!(new_secret, old_secret);
    assert!(rotated.body["previous_expires_at"].is_string());
    publish(&api, "acme", json!({"type": "a.b", "payload": {"n": 1}})).await;
    let request = receiver
        .wait_for(1, Duration::from_secs(10))
        .await
        .remove(0);
    let signatures: Vec<&str> = request.header("webhook-signature").split(' ').collect();
    assert_eq!(signatures.len(), 2, "{signatures:?}");
    assert!(verifies_with(&request, &new_secret));
    assert!(verifies_with(&request, &old_secret));
    if python_sdks_available("rotated_secrets_sign_together_during_the_grace_period") {
        assert_eq!(python_verdicts(&request, &new_secret), (true, true));
        assert_eq!(python_verdicts(&request, &old_secret), (true, true));
    }
    // A rotation without grace retires the old secret at once.
    let again = api
        .post(
            &format!("/v1/tenants/acme/endpoints/{id}/rotate-secret"),
            &json!({"grace": "0s"}),
        )
        .await;
    let newest = again.ok(200)["secret"].as_str().expect("secret").to_owned();
    publish(&api, "acme", json!({"type": "a.b", "payload": {"n": 2}})).await;
    let request = receiver
        .wait_for(2, Duration::from_secs(10))
        .await
        .remove(1);
    assert!(verifies_with(&request, &newest));
    assert!(
        !verifies_with(&request, &new_secret),
        "retired without grace"
    );
    assert!(
        verifies_with(&request, &old_secret),
        "still within its own grace period"
    );
    server.stop().await;
}

/// A failing endpoint's circuit opens after the threshold: it is not hammered, the healthy
/// endpoint is unaffected, `endpoint.circuit_opened` is published, the health API shows it, and
/// once the receiver recovers a probe closes the circuit and the backlog is delivered.
#[tokio::test]
async fn circuit_breaker_opens_probes_and_closes() {
    let healthy = Receiver::always(200).await;
    let (failing, recovered) = Receiver::switchable(503).await;
    let mut config = outbound_config();
    // Long enough that the quiet period below is well inside it even on a busy machine.
    config.delivery.circuit.cooldown = Duration::from_secs(3);
    let server = TestServer::start(config).await;
    let api = server.api();
    tenant(&api, "acme").await;
    let (bad, _) = endpoint(
        &api,
        "acme",
        json!({"url": failing.url, "retry": {"schedule": ["50ms", "50ms", "50ms", "50ms", "50ms", "50ms"]}}),
    )
    .await;
    endpoint(&api, "acme", json!({"url": healthy.url})).await;
    for n in 0..5 {
        publish(&api, "acme", json!({"type": "t", "payload": {"n": n}})).await;
    }
    healthy.wait_for(5, Duration::from_secs(10)).await;
    let health_path = format!("/v1/tenants/acme/endpoints/{bad}/health");
    let health = eventually(Duration::from_secs(10), "circuit open", || async {
        let h = api.get(&health_path).await;
        (h.body["circuit_state"] == "open").then_some(h.body)
    })
    .await;
    assert!(health["consecutive_failures"].as_u64().expect("n") >= 3);
    assert_eq!(health["last_error"], "HTTP 503");
    assert_eq!(health["disabled"], false);
    // While open, the endpoint is left alone (attempts claimed just before the circuit opened
    // may still be landing on a busy machine: let them).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let at_open = failing.requests().len();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        failing.requests().len(),
        at_open,
        "no attempts during the cooldown"
    );
    // The operational event was stored (the `switchboard` source).
    let events = api.get("/v1/events?source=switchboard").await;
    let types: Vec<&str> = events.ok(200)["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(types.contains(&"endpoint.circuit_opened"), "{types:?}");
    // Recovery: the next probe succeeds, the circuit closes and everything arrives.
    recovered.on();
    eventually(Duration::from_secs(15), "circuit closed", || async {
        (api.get(&health_path).await.body["circuit_state"] == "closed").then_some(())
    })
    .await;
    eventually(Duration::from_secs(15), "backlog delivered", || async {
        let ok = failing
            .requests()
            .iter()
            .skip(at_open)
            .filter(|r| !r.body.is_empty())
            .count();
        (ok >= 5).then_some(())
    })
    .await;
    server.stop().await;
}

/// An endpoint failing for longer than `disable_after` with no success is disabled, with
/// `endpoint.disabled` published; enabling it again resumes delivery.
#[tokio::test]
async fn endpoints_failing_too_long_are_disabled_and_can_be_enabled_again() {
    let (receiver, up) = Receiver::switchable(500).await;
    let mut config = outbound_config();
    config.delivery.disable_after = Duration::from_millis(600);
    config.delivery.circuit.failure_threshold = 0;
    let server = TestServer::start(config).await;
    let api = server.api();
    tenant(&api, "acme").await;
    let (id, _) = endpoint(
        &api,
        "acme",
        json!({"url": receiver.url, "retry": {"schedule": ["100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms"]}}),
    )
    .await;
    publish(&api, "acme", json!({"type": "t", "payload": {}})).await;
    let path = format!("/v1/tenants/acme/endpoints/{id}");
    let endpoint = eventually(Duration::from_secs(10), "endpoint disabled", || async {
        let e = api.get(&path).await;
        (e.body["enabled"] == false).then_some(e.body)
    })
    .await;
    assert!(
        endpoint["disabled_reason"]
            .as_str()
            .expect("reason")
            .contains("disabled automatically"),
        "{endpoint}"
    );
    let health = api.get(&format!("{path}/health")).await;
    assert_eq!(health.ok(200)["disabled"], true);
    eventually(
        Duration::from_secs(5),
        "endpoint.disabled event",
        || async {
            let events = api
                .get("/v1/events?source=switchboard&type=endpoint.disabled")
                .await;
            (!events.body["items"].as_array()?.is_empty()).then_some(())
        },
    )
    .await;
    // An attempt already claimed when the endpoint was disabled may still land (at least once,
    // under load): wait for the receiver to go quiet, then nothing new may arrive.
    let mut attempts = receiver.requests().len();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = receiver.requests().len();
        if now == attempts {
            break;
        }
        attempts = now;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.requests().len(),
        attempts,
        "a disabled endpoint gets nothing"
    );
    up.on();
    let enabled = api.patch(&path, &json!({"enabled": true})).await;
    assert_eq!(enabled.ok(200)["disabled_reason"], Value::Null);
    eventually(
        Duration::from_secs(10),
        "delivered after enabling",
        || async {
            let h = api.get(&format!("{path}/health")).await;
            (h.body["pending"] == 0 && h.body["last_success_at"].is_string()).then_some(())
        },
    )
    .await;
    server.stop().await;
}

/// A throttled endpoint receives at most its rate, while an unthrottled endpoint of the same
/// tenant gets its messages at once (no head-of-line blocking).
#[tokio::test]
async fn throttling_is_enforced_per_endpoint_without_blocking_others() {
    let slow = Receiver::always(200).await;
    let fast = Receiver::always(200).await;
    let server = TestServer::start(outbound_config()).await;
    let api = server.api();
    tenant(&api, "acme").await;
    endpoint(&api, "acme", json!({"url": slow.url, "rate_limit": 5})).await;
    endpoint(&api, "acme", json!({"url": fast.url})).await;
    // Published together, so that the throttle (not the publishing) sets the pace.
    futures::future::join_all(
        (0..15).map(|n| publish(&api, "acme", json!({"type": "t", "payload": {"n": n}}))),
    )
    .await;
    let unthrottled = fast.wait_for(15, Duration::from_secs(5)).await;
    let throttled = slow.wait_for(15, Duration::from_secs(10)).await;
    let spread = throttled[14].at.duration_since(throttled[0].at);
    let fast_last = unthrottled.iter().map(|r| r.at).max().expect("requests");
    assert!(
        fast_last + Duration::from_millis(500) < throttled[14].at,
        "the unthrottled endpoint waited for the throttled one"
    );
    // 5 per second with a burst of 5: 15 messages are sent over at least 2 seconds. The bound
    // holds for send times; arrivals jitter on a busy machine, hence the slack.
    assert!(spread >= Duration::from_millis(1500), "spread {spread:?}");
    // A bucket of 5 refilled at 5/s allows at most 5 + 5·t sends in any t seconds: 11 in a row
    // take at least 1.2 s (unthrottled, they would take milliseconds).
    for window in throttled.windows(11) {
        let span = window[10].at.duration_since(window[0].at);
        assert!(
            span >= Duration::from_millis(800),
            "11 deliveries within {span:?}"
        );
    }
    server.stop().await;
}

/// Ordered delivery: while the first message of key `a` fails and is retried, later `a`
/// messages wait and `b` messages flow; every key arrives in publish order.
#[tokio::test]
async fn ordered_endpoints_keep_each_key_in_order_without_delaying_other_keys() {
    let failures = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = failures.clone();
    let receiver = Receiver::by_body(move |_, body| {
        let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        if value["key"] == "a"
            && value["n"] == 0
            && count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 3
        {
            Reply::Status(503)
        } else {
            Reply::Status(200)
        }
    })
    .await;
    let server = TestServer::start(outbound_config()).await;
    let api = server.api();
    tenant(&api, "acme").await;
    endpoint(
        &api,
        "acme",
        json!({"url": receiver.url, "ordered": true, "retry": {"schedule": ["400ms", "400ms", "400ms", "400ms"]}}),
    )
    .await;
    for n in 0..4 {
        for key in ["a", "b"] {
            publish(
                &api,
                "acme",
                json!({"type": "t", "payload": {"key": key, "n": n}, "ordering_key": key}),
            )
            .await;
        }
    }
    let requests = eventually(Duration::from_secs(15), "all delivered", || async {
        let requests = receiver.requests();
        let delivered = requests.len() - failures.load(std::sync::atomic::Ordering::SeqCst).min(3);
        (delivered >= 8).then_some(requests)
    })
    .await;
    let sequence = |key: &str| -> Vec<(i64, Instant)> {
        let mut seen = Vec::new();
        for r in &requests {
            let v: Value = serde_json::from_slice(&r.body).expect("json");
            if v["key"] == key {
                let n = v["n"].as_i64().expect("n");
                if seen.last().is_none_or(|(last, _)| *last != n) {
                    seen.push((n, r.at));
                }
            }
        }
        seen
    };
    let a = sequence("a");
    let b = sequence("b");
    assert_eq!(a.iter().map(|x| x.0).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    assert_eq!(b.iter().map(|x| x.0).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    // `b` finished while `a`'s head was still being retried (3 failures × 400 ms).
    let a_first_success = requests
        .iter()
        .filter(|r| {
            let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            v["key"] == "a" && v["n"] == 0
        })
        .last()
        .expect("a0")
        .at;
    assert!(b[3].1 < a_first_success, "key b waited for key a");
    server.stop().await;
}

/// A dead-lettered message holds its key; the hold is listed and can be released, after which
/// the later messages of that key are delivered.
#[tokio::test]
async fn held_keys_are_visible_and_releasable() {
    let receiver = Receiver::by_body(|_, body| {
        let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        if value["n"] == 0 {
            Reply::Status(410)
        } else {
            Reply::Status(200)
        }
    })
    .await;
    let server = TestServer::start(outbound_config()).await;
    let api = server.api();
    tenant(&api, "acme").await;
    let (id, _) = endpoint(&api, "acme", json!({"url": receiver.url, "ordered": true})).await;
    for n in 0..3 {
        publish(&api, "acme", json!({"type": "t", "payload": {"n": n}})).await;
    }
    let holds_path = format!("/v1/tenants/acme/endpoints/{id}/holds");
    let holds = eventually(Duration::from_secs(10), "hold listed", || async {
        let holds = api.get(&holds_path).await;
        (holds.body.as_array()?.len() == 1).then_some(holds.body)
    })
    .await;
    assert_eq!(holds[0]["ordering_key"], "");
    assert_eq!(holds[0]["waiting"], 2);
    assert_eq!(
        receiver.requests().len(),
        1,
        "later messages wait behind the dead letter"
    );
    let released = api
        .post(
            &format!("{holds_path}/release"),
            &json!({"ordering_key": ""}),
        )
        .await;
    assert_eq!(released.ok(200)["released"], 1);
    let requests = receiver.wait_for(3, Duration::from_secs(10)).await;
    let order: Vec<i64> = requests
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).expect("json")["n"]
                .as_i64()
                .expect("n")
        })
        .collect();
    assert_eq!(order, vec![0, 1, 2]);
    server.stop().await;
}

/// Recover re-sends an endpoint's failed deliveries since a time; resend sends one event to one
/// endpoint again (or to an endpoint created after it); both keep the `webhook-id`.
#[tokio::test]
async fn recover_and_resend() {
    let (receiver, up) = Receiver::switchable(500).await;
    let mut config = outbound_config();
    config.delivery.circuit.failure_threshold = 0;
    let server = TestServer::start(config).await;
    let api = server.api();
    tenant(&api, "acme").await;
    let since = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    let (id, _) = endpoint(
        &api,
        "acme",
        json!({"url": receiver.url, "retry": {"schedule": ["50ms"]}}),
    )
    .await;
    let mut events = Vec::new();
    for n in 0..3 {
        events.push(
            publish(&api, "acme", json!({"type": "t", "payload": {"n": n}})).await["id"].clone(),
        );
    }
    eventually(Duration::from_secs(10), "all failed", || async {
        let d = api
            .get(&format!("/v1/deliveries?destination={id}&status=failed"))
            .await;
        (d.body["items"].as_array()?.len() == 3).then_some(())
    })
    .await;
    let failed_ids: Vec<String> = receiver
        .requests()
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    up.on();
    let recovered = api
        .post(
            &format!("/v1/tenants/acme/endpoints/{id}/recover"),
            &json!({"since": since}),
        )
        .await;
    assert_eq!(recovered.ok(200)["queued"], 3);
    let requests = receiver.wait_for(9, Duration::from_secs(10)).await;
    for r in &requests[6..] {
        assert!(
            failed_ids.contains(&r.header("webhook-id").to_owned()),
            "same webhook-id"
        );
    }
    // Resend one event to a new endpoint created after it was published.
    let late = Receiver::always(200).await;
    let (late_id, _) = endpoint(&api, "acme", json!({"url": late.url})).await;
    let resent = api
        .post(
            &format!("/v1/tenants/acme/endpoints/{late_id}/resend"),
            &json!({"event_id": events[1]}),
        )
        .await;
    resent.ok(202);
    let got = late.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&got[0].body).expect("json"),
        json!({"n": 1})
    );
    // And again to the first endpoint: the same delivery (same webhook-id) is replayed.
    let again = api
        .post(
            &format!("/v1/tenants/acme/endpoints/{id}/resend"),
            &json!({"event_id": events[0]}),
        )
        .await;
    let delivery = again.ok(202)["delivery_id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert!(failed_ids.contains(&delivery));
    receiver.wait_for(10, Duration::from_secs(10)).await;
    api.post(
        &format!("/v1/tenants/acme/endpoints/{id}/resend"),
        &json!({"event_id": "no-such-event"}),
    )
    .await
    .problem(404, "not_found");
    server.stop().await;
}

/// Operational events are routable: a route from the built-in `switchboard` source delivers
/// `delivery.exhausted` to the user's own webhook.
#[tokio::test]
async fn operational_events_are_routed_like_any_event() {
    let ops = Receiver::always(200).await;
    let (dead, up) = Receiver::switchable(410).await;
    let mut config = outbound_config();
    config
        .destinations
        .push(http_destination("ops", &ops.url, schedule_ms(&[50])));
    config.routes.push(RouteConfig {
        id: None,
        source: "switchboard".into(),
        destination: "ops".into(),
        filter: None,
        transform: None,
        enabled: true,
    });
    let server = TestServer::start(config).await;
    let api = server.api();
    tenant(&api, "acme").await;
    let (id, _) = endpoint(&api, "acme", json!({"url": dead.url})).await;
    let event = publish(&api, "acme", json!({"type": "t", "payload": {}})).await;
    let got = ops.wait_for(1, Duration::from_secs(10)).await;
    let report: Value = serde_json::from_slice(&got[0].body).expect("json");
    assert_eq!(report["type"], "delivery.exhausted");
    assert_eq!(report["data"]["destination"], id.as_str());
    assert_eq!(report["data"]["event_id"], event["id"]);
    assert_eq!(report["data"]["tenant"], "acme");
    assert!(report["timestamp"].is_string());
    // The dead letter is replayed and succeeds: `delivery.recovered`.
    up.on();
    let delivery = report["data"]["delivery_id"].as_str().expect("delivery id");
    api.post("/v1/replay", &json!({"delivery_id": delivery}))
        .await
        .ok(200);
    let got = ops.wait_for(2, Duration::from_secs(10)).await;
    let recovered: Value = serde_json::from_slice(&got[1].body).expect("json");
    assert_eq!(recovered["type"], "delivery.recovered");
    assert_eq!(recovered["data"]["delivery_id"], delivery);
    server.stop().await;
}

/// Endpoint input is checked: bad URLs, secrets, transforms and reserved headers get `422` with
/// the field; a tenant's deletion takes its endpoints with it.
#[tokio::test]
async fn endpoint_validation_and_tenant_deletion() {
    let server = TestServer::start(outbound_config()).await;
    let api = server.api();
    tenant(&api, "acme").await;
    let cases = [
        (json!({"url": "ftp://x"}), "url"),
        (json!({"url": "https://x.test", "secret": "nope"}), "secret"),
        (
            json!({"url": "https://x.test", "transform": "{a: .b"}),
            "transform",
        ),
        (
            json!({"url": "https://x.test", "headers": {"webhook-id": "x"}}),
            "headers",
        ),
        (
            json!({"url": "https://x.test", "rate_limit": 0}),
            "rate_limit",
        ),
        (json!({"url": "https://x.test", "timeout": "2m"}), "timeout"),
    ];
    for (body, field) in cases {
        let response = api.post("/v1/tenants/acme/endpoints", &body).await;
        response.problem(422, "validation_failed");
        assert_eq!(
            response.body["errors"][0]["field"], field,
            "{}",
            response.text
        );
    }
    api.post(
        "/v1/tenants/nobody/endpoints",
        &json!({"url": "https://x.test"}),
    )
    .await
    .problem(404, "not_found");
    let failing = Receiver::always(503).await;
    let (id, _) = endpoint(
        &api,
        "acme",
        json!({"url": failing.url, "retry": {"schedule": ["1h"]}}),
    )
    .await;
    api.get(&format!("/v1/tenants/acme/endpoints/{id}"))
        .await
        .ok(200);
    let event = publish(&api, "acme", json!({"type": "t", "payload": {}})).await;
    let event_id = event["id"].as_str().expect("id").to_owned();
    failing.wait_for(1, Duration::from_secs(10)).await;
    let waiting = server
        .wait_delivery(&event_id, "retry scheduled", |d| {
            d.status == switchboard_core::DeliveryStatus::Pending && d.attempts == 1
        })
        .await;
    api.get(&format!("/v1/tenants/other/endpoints/{id}"))
        .await
        .problem(404, "not_found");
    assert_eq!(api.delete("/v1/tenants/acme").await.status, 204);
    api.get(&format!("/v1/tenants/acme/endpoints/{id}"))
        .await
        .problem(404, "not_found");
    let cancelled = server.deliveries_of(&event_id).await;
    assert_eq!(cancelled[0].id, waiting.id);
    assert_eq!(
        cancelled[0].status,
        switchboard_core::DeliveryStatus::Cancelled,
        "what waited for a deleted endpoint is cancelled"
    );
    assert!(
        server
            .store()
            .list_resources()
            .await
            .expect("resources")
            .iter()
            .all(|r| r.kind != "endpoint")
    );
    server.stop().await;
}

/// A per-endpoint jq transform reshapes the message before it is signed.
#[tokio::test]
async fn endpoint_transforms_reshape_the_signed_body() {
    let receiver = Receiver::always(200).await;
    let server = TestServer::start(outbound_config()).await;
    let api = server.api();
    tenant(&api, "acme").await;
    let (_, secret) = endpoint(
        &api,
        "acme",
        json!({"url": receiver.url, "transform": "{kind: .type, total: (.body.items | map(.price) | add)}"}),
    )
    .await;
    publish(
        &api,
        "acme",
        json!({"type": "order.created", "payload": {"items": [{"price": 3}, {"price": 4}]}}),
    )
    .await;
    let request = receiver
        .wait_for(1, Duration::from_secs(10))
        .await
        .remove(0);
    assert_eq!(
        serde_json::from_slice::<Value>(&request.body).expect("json"),
        json!({"kind": "order.created", "total": 7})
    );
    assert!(
        verifies_with(&request, &secret),
        "the transformed body is what is signed"
    );
    server.stop().await;
}

/// Retention removes delivered payloads past their age and keeps the records; a pruned event
/// can no longer be resent.
#[tokio::test]
async fn retention_prunes_delivered_payloads_and_keeps_history() {
    let receiver = Receiver::always(200).await;
    let mut config = outbound_config();
    config.retention.payloads = Some(Duration::from_millis(1));
    config.retention.interval = Duration::from_millis(200);
    let server = TestServer::start(config).await;
    let api = server.api();
    tenant(&api, "acme").await;
    let (id, _) = endpoint(&api, "acme", json!({"url": receiver.url})).await;
    let event = publish(
        &api,
        "acme",
        json!({"type": "t", "payload": {"secret": "pii"}}),
    )
    .await;
    let event_id = event["id"].as_str().expect("id").to_owned();
    receiver.wait_for(1, Duration::from_secs(10)).await;
    let pruned = eventually(Duration::from_secs(15), "payload pruned", || async {
        let e = api.get(&format!("/v1/events/{event_id}")).await;
        e.body["payload_pruned_at"].is_string().then_some(e.body)
    })
    .await;
    assert_eq!(pruned["body"], "", "the bytes are gone");
    assert_eq!(
        pruned["deliveries"][0]["status"], "succeeded",
        "history stays"
    );
    api.post(
        &format!("/v1/tenants/acme/endpoints/{id}/resend"),
        &json!({"event_id": event_id}),
    )
    .await
    .problem(409, "payload_expired");
    server.stop().await;
}

/// An endpoint that hangs holds only its own deliveries: another endpoint of the same tenant
/// keeps receiving promptly while every attempt to the hanging one waits for its timeout.
#[tokio::test]
async fn a_hanging_endpoint_does_not_delay_the_others() {
    let hanging = Receiver::scripted(|_| Reply::Slow(Duration::from_secs(4), 200)).await;
    let healthy = Receiver::always(200).await;
    let mut config = outbound_config();
    config.delivery.per_destination_concurrency = 4;
    let server = TestServer::start(config).await;
    let api = server.api();
    tenant(&api, "acme").await;
    endpoint(&api, "acme", json!({"url": hanging.url, "timeout": "3s"})).await;
    endpoint(&api, "acme", json!({"url": healthy.url})).await;
    futures::future::join_all(
        (0..40).map(|n| publish(&api, "acme", json!({"type": "t", "payload": {"n": n}}))),
    )
    .await;
    let healthy_got = healthy.wait_for(40, Duration::from_secs(10)).await;
    let healthy_last = healthy_got.iter().map(|r| r.at).max().expect("requests");
    let hanging_first = hanging
        .requests()
        .iter()
        .map(|r| r.at)
        .min()
        .expect("requests");
    assert!(
        healthy_last < hanging_first + Duration::from_secs(3),
        "the healthy endpoint waited for the hanging one's 3 s timeout"
    );
    assert!(
        hanging.requests().len() <= 4,
        "the hanging endpoint holds at most its own in-flight cap"
    );
    server.stop().await;
}
