//! The dashboard's source and destination pages over real HTTP: edit every field a user needs
//! (secrets kept unless replaced, refused edits shown again with the input), disable and enable,
//! delete, create other kinds, and read-only or configuration-managed resources left alone.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use switchboard_signatures::github;

use crate::support::{Receiver, TestServer, config_to, process, schedule_ms};
use crate::ui::Browser;

async fn signed_github(server: &TestServer, source: &str, secret: &[u8]) -> u16 {
    let body = r#"{"zen":"ok"}"#;
    reqwest::Client::new()
        .post(format!("{}/in/{source}", server.base))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header(
            "x-github-delivery",
            format!(
                "{:x}",
                std::time::UNIX_EPOCH.elapsed().expect("time").as_nanos()
            ),
        )
        .header("x-hub-signature-256", github::sign(secret, body.as_bytes()))
        .body(body)
        .send()
        .await
        .expect("send")
        .status()
        .as_u16()
}

#[tokio::test]
async fn ui_edits_rotates_pauses_and_deletes_a_source() {
    let receiver = Receiver::always(200).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[]))).await;
    let browser = Browser::signed_in(&server.base, process::ADMIN_TOKEN).await;
    let csrf = browser.csrf().await;
    let created = browser
        .post(
            "/ui/sources",
            &[
                ("csrf", &csrf),
                ("id", "gh"),
                ("verifier", "github"),
                ("secret", "first-s3cret"),
            ],
        )
        .await;
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    assert_eq!(created.headers()["location"], "/ui/sources/gh");
    let page = browser.page("/ui/sources/gh").await;
    assert!(page.contains("Save changes") && page.contains("********"));
    assert!(!page.contains("first-s3cret"), "secrets are never shown");
    assert!(page.contains(&format!("{}/in/gh", server.base)));

    // Rotate in a second secret keeping the first, and set a body limit.
    let verifier = r#"{"kind": "github", "secrets": ["********"]}"#;
    let saved = browser
        .post(
            "/ui/sources/gh",
            &[
                ("csrf", &csrf),
                ("verifier", verifier),
                ("new_secret", "second-s3cret"),
                ("keep_secrets", "on"),
                ("max_body_bytes", "2048"),
                ("rate_per_second", ""),
            ],
        )
        .await;
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    let api = server.api();
    let view = api.get("/v1/sources/gh").await;
    assert_eq!(view.ok(200)["max_body_bytes"], 2048);
    assert_eq!(
        view.body["verifier"]["secrets"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(signed_github(&server, "gh", b"second-s3cret").await, 202);
    assert_eq!(signed_github(&server, "gh", b"first-s3cret").await, 202);

    // Without "keep", the new secret replaces the old ones.
    let saved = browser
        .post(
            "/ui/sources/gh",
            &[
                ("csrf", &csrf),
                (
                    "verifier",
                    r#"{"kind": "github", "secrets": ["********", "********"]}"#,
                ),
                ("new_secret", "third-s3cret"),
                ("max_body_bytes", "2048"),
            ],
        )
        .await;
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    assert_eq!(signed_github(&server, "gh", b"third-s3cret").await, 202);
    assert_eq!(signed_github(&server, "gh", b"first-s3cret").await, 401);
    let audit = api.get("/v1/audit?resource=source:gh").await;
    let entries = audit.ok(200)["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(entries.len(), 3, "create and two edits: {}", audit.text);
    assert!(
        !audit.text.contains("s3cret"),
        "form bodies (with secrets) are never recorded"
    );

    // A refused edit shows the form again with the input and the reason; nothing changes.
    let refused = browser
        .post(
            "/ui/sources/gh",
            &[
                ("csrf", &csrf),
                ("verifier", r#"{"kind": "github", "secrets": ["********""#),
                ("max_body_bytes", "4096"),
            ],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = refused.text().await.expect("text");
    assert!(
        html.contains("not valid JSON") && html.contains("role=\"alert\""),
        "{html}"
    );
    assert!(html.contains("4096"), "the user's input is kept");
    assert_eq!(
        api.get("/v1/sources/gh").await.ok(200)["max_body_bytes"],
        2048
    );
    let refused = browser
        .post(
            "/ui/sources/gh",
            &[
                ("csrf", &csrf),
                ("verifier", r#"{"kind": "github", "secrets": []}"#),
            ],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Disable: the ingest URL answers 503 until enabled again.
    let disabled = browser
        .post("/ui/sources/gh/disable", &[("csrf", &csrf)])
        .await;
    assert_eq!(disabled.status(), StatusCode::SEE_OTHER);
    assert_eq!(signed_github(&server, "gh", b"third-s3cret").await, 503);
    let page = browser.page("/ui/sources").await;
    assert!(page.contains(">disabled<"), "the list shows the state");
    let enabled = browser
        .post("/ui/sources/gh/enable", &[("csrf", &csrf)])
        .await;
    assert_eq!(enabled.status(), StatusCode::SEE_OTHER);
    assert_eq!(signed_github(&server, "gh", b"third-s3cret").await, 202);

    // Delete: refused while a route uses it, then done.
    api.post("/v1/routes", &json!({"source": "gh", "destination": "dst"}))
        .await
        .ok(201);
    let in_use = browser
        .post("/ui/sources/gh/delete", &[("csrf", &csrf)])
        .await;
    assert_eq!(in_use.status(), StatusCode::CONFLICT);
    api.delete("/v1/routes/gh-dst").await.ok(204);
    let deleted = browser
        .post("/ui/sources/gh/delete", &[("csrf", &csrf)])
        .await;
    assert_eq!(deleted.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        browser.get("/ui/sources/gh").await.status(),
        StatusCode::NOT_FOUND
    );

    // A source of another kind is created from its settings.
    let created = browser
        .post(
            "/ui/sources",
            &[
                ("csrf", &csrf),
                ("id", "status"),
                ("kind", "schedule"),
                (
                    "settings",
                    r#"{"schedule": "0 0 * * * *", "url": "http://127.0.0.1:9/status", "headers": {"Authorization": "Bearer poll-s3cret"}}"#,
                ),
            ],
        )
        .await;
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    let page = browser.page("/ui/sources/status").await;
    assert!(page.contains("0 0 * * * *") && !page.contains("poll-s3cret"));
    // Editing its settings keeps the redacted header.
    let settings = r#"{"schedule": "0 30 * * * *", "url": "http://127.0.0.1:9/status", "headers": {"Authorization": "********"}}"#;
    let saved = browser
        .post(
            "/ui/sources/status",
            &[("csrf", &csrf), ("settings", settings)],
        )
        .await;
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    let view = api.get("/v1/sources/status").await;
    assert_eq!(view.ok(200)["settings"]["schedule"], "0 30 * * * *");
    server.stop().await;
}

#[tokio::test]
async fn ui_edits_pauses_and_creates_destinations() {
    let receiver = Receiver::always(200).await;
    let moved = Receiver::always(200).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[]))).await;
    let browser = Browser::signed_in(&server.base, process::ADMIN_TOKEN).await;
    let csrf = browser.csrf().await;
    let api = server.api();
    let created = browser
        .post(
            "/ui/destinations",
            &[("csrf", &csrf), ("id", "billing"), ("url", &receiver.url)],
        )
        .await;
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    let secret = api.get("/v1/destinations/billing/secret").await;
    let secret = secret.ok(200)["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    api.post(
        "/v1/routes",
        &json!({"source": "src", "destination": "billing"}),
    )
    .await
    .ok(201);

    let saved = browser
        .post(
            "/ui/destinations/billing",
            &[
                ("csrf", &csrf),
                ("url", &moved.url),
                (
                    "headers",
                    "X-Team: billing\nX-Note: <script>alert(1)</script>",
                ),
                ("timeout", "3s"),
                ("retry", r#"{"schedule": ["1s", "5s"]}"#),
                ("max_in_flight", "4"),
                ("rate_limit", "50"),
                ("ordered", "on"),
            ],
        )
        .await;
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    let view = api.get("/v1/destinations/billing").await;
    let body = view.ok(200);
    assert_eq!(body["url"], moved.url.as_str());
    assert_eq!(body["timeout"], "3s");
    assert_eq!(body["retry"], json!({"schedule": ["1s", "5s"]}));
    assert_eq!(
        (body["max_in_flight"].clone(), body["rate_limit"].clone()),
        (json!(4), json!(50.0))
    );
    assert_eq!(body["ordered"], true);
    assert_eq!(body["headers"]["X-Team"], "billing");
    let kept = api.get("/v1/destinations/billing/secret").await;
    assert_eq!(
        kept.ok(200)["secret"],
        secret.as_str(),
        "the secret is kept"
    );
    let page = browser.page("/ui/destinations/billing").await;
    assert!(
        !page.contains("<script>alert(1)</script>"),
        "header values are escaped"
    );
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));

    // A bad retry policy shows the form again.
    let refused = browser
        .post(
            "/ui/destinations/billing",
            &[
                ("csrf", &csrf),
                ("url", &moved.url),
                ("retry", r#"{"sometimes": 3}"#),
            ],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.text().await.expect("text").contains("retry"));

    // Paused, deliveries wait; enabled, they go to the new URL.
    let paused = browser
        .post("/ui/destinations/billing/disable", &[("csrf", &csrf)])
        .await;
    assert_eq!(paused.status(), StatusCode::SEE_OTHER);
    // The overview renders the health document: the pause shows, and is not "degraded".
    let overview = browser.page("/ui").await;
    assert!(
        overview.contains(
            r#"<a href="/ui/destinations/billing">billing</a> <span class="badge bad">disabled</span>"#
        ),
        "{overview}"
    );
    let health = api.get("/v1/health").await;
    let health = health.ok(200);
    let billing = health["destinations"]
        .as_array()
        .and_then(|all| all.iter().find(|d| d["id"] == "billing"))
        .expect("listed");
    assert_eq!(billing["enabled"], false);
    assert_eq!(health["status"], "ok", "a pause is not trouble: {health}");
    assert!(overview.contains(r#"Overall: <span class="badge ok">ok</span>"#));
    server.ingest_ok("src", r#"{"n":1}"#).await;
    receiver.wait_for(1, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(moved.requests().is_empty(), "nothing is sent while paused");
    let resumed = browser
        .post("/ui/destinations/billing/enable", &[("csrf", &csrf)])
        .await;
    assert_eq!(resumed.status(), StatusCode::SEE_OTHER);
    let requests = moved.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(requests[0].headers["x-team"], "billing");

    // Another kind, from its settings; its webhook URL (a secret) is never shown.
    let created = browser
        .post(
            "/ui/destinations",
            &[
                ("csrf", &csrf),
                ("id", "alerts"),
                ("kind", "slack"),
                (
                    "settings",
                    r#"{"webhook_url": "https://hooks.slack.com/services/T0/B0/slack-s3cret"}"#,
                ),
            ],
        )
        .await;
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    let page = browser.page("/ui/destinations/alerts").await;
    assert!(!page.contains("slack-s3cret"), "{page}");
    let listed = api.get("/v1/destinations/alerts").await;
    assert!(!listed.text.contains("slack-s3cret"), "{}", listed.text);
    // Saving the redacted settings back keeps the URL (a change of timeout only).
    let saved = browser
        .post(
            "/ui/destinations/alerts",
            &[
                ("csrf", &csrf),
                ("settings", r#"{"webhook_url": "********"}"#),
                ("timeout", "7s"),
            ],
        )
        .await;
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    let page = browser.page("/ui/destinations/alerts").await;
    assert!(page.contains("7s") && !page.contains("slack-s3cret"));

    // Every change made here is in the audit trail, with the session's token as the actor.
    let audit = api
        .get("/v1/audit?resource=destination:billing&limit=50")
        .await;
    let mut actions: Vec<String> = audit.ok(200)["items"]
        .as_array()
        .expect("items")
        .iter()
        .inspect(|e| {
            assert_eq!(e["actor"], "bootstrap", "{e}");
            assert!(
                e["path"].as_str().is_some_and(|p| p.starts_with("/ui/")),
                "{e}"
            );
        })
        .map(|e| e["action"].as_str().expect("action").to_owned())
        .collect();
    actions.sort();
    assert_eq!(
        actions,
        ["create", "disable", "enable", "update"],
        "{}",
        audit.text
    );

    // Delete: refused while routed, then done.
    let in_use = browser
        .post("/ui/destinations/billing/delete", &[("csrf", &csrf)])
        .await;
    assert_eq!(in_use.status(), StatusCode::CONFLICT);
    let deleted = browser
        .post("/ui/destinations/alerts/delete", &[("csrf", &csrf)])
        .await;
    assert_eq!(deleted.status(), StatusCode::SEE_OTHER);
    assert_eq!(api.get("/v1/destinations/alerts").await.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn ui_leaves_config_resources_and_read_tokens_alone() {
    let receiver = Receiver::always(200).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[]))).await;
    let admin = Browser::signed_in(&server.base, process::ADMIN_TOKEN).await;
    let csrf = admin.csrf().await;
    // Configuration-file resources: shown, with no edit form, and refused if posted anyway.
    for path in ["/ui/sources/src", "/ui/destinations/dst"] {
        let page = admin.page(path).await;
        assert!(page.contains("Defined in the configuration file"), "{path}");
        assert!(!page.contains("Save changes"), "{path}");
    }
    let refused = admin
        .post("/ui/destinations/dst/disable", &[("csrf", &csrf)])
        .await;
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    let refused = admin
        .post(
            "/ui/sources/src",
            &[("csrf", &csrf), ("verifier", r#"{"kind":"none"}"#)],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::CONFLICT);

    // A read token sees the pages but no forms, and its posts are refused.
    let api = server.api();
    api.post(
        "/v1/destinations",
        &json!({"id": "out", "url": receiver.url}),
    )
    .await
    .ok(201);
    let token = api
        .post("/v1/tokens", &json!({"name": "viewer", "scopes": ["read"]}))
        .await;
    let token_id = token.ok(201)["id"].as_str().expect("id").to_owned();
    let token = token.body["token"].as_str().expect("token").to_owned();
    let viewer = Browser::signed_in(&server.base, &token).await;
    // Signing in is in the audit trail under the token that signed in.
    let audit = api.get("/v1/audit?resource=session&action=sign_in").await;
    let entries = audit.ok(200)["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        entries.iter().any(|e| e["actor"] == token_id.as_str()),
        "{}",
        audit.text
    );
    assert!(
        !audit.text.contains(&token),
        "the token itself is never recorded"
    );
    let viewer_csrf = viewer.csrf().await;
    let page = viewer.page("/ui/destinations/out").await;
    assert!(!page.contains("Save changes") && !page.contains(">Disable<"));
    let refused = viewer
        .post("/ui/destinations/out/disable", &[("csrf", &viewer_csrf)])
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let refused = viewer
        .post(
            "/ui/destinations/out",
            &[("csrf", &viewer_csrf), ("url", "http://x")],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    // Without a session, the pages send to sign-in.
    let anonymous = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    for path in ["/ui/sources/src", "/ui/destinations/out"] {
        let response = anonymous
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
    }
    // Missing CSRF is refused.
    let refused = admin.post("/ui/destinations/out/disable", &[]).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        api.get("/v1/destinations/out").await.ok(200)["enabled"],
        true
    );
    server.stop().await;
}

#[tokio::test]
async fn ui_edits_and_deletes_a_tenant_endpoint_and_renames_a_tenant() {
    let receiver = Receiver::always(200).await;
    let moved = Receiver::always(200).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[]))).await;
    let api = server.api();
    api.post("/v1/tenants", &json!({"id": "acme", "name": "Acme"}))
        .await
        .ok(201);
    let created = api
        .post(
            "/v1/tenants/acme/endpoints",
            &json!({"id": "ep_acme", "url": receiver.url}),
        )
        .await;
    let secret = created.ok(201)["secret"].as_str().map(str::to_owned);
    let browser = Browser::signed_in(&server.base, process::ADMIN_TOKEN).await;
    let csrf = browser.csrf().await;
    let page = browser.page("/ui/tenants").await;
    assert!(page.contains("/ui/tenants/acme/endpoints/ep_acme"));
    let page = browser.page("/ui/tenants/acme/endpoints/ep_acme").await;
    assert!(page.contains("Save changes"));
    if let Some(secret) = &secret {
        assert!(!page.contains(secret.as_str()), "the secret is not shown");
    }

    let saved = browser
        .post(
            "/ui/tenants/acme/endpoints/ep_acme",
            &[
                ("csrf", &csrf),
                ("url", &moved.url),
                ("description", "Billing <hooks>"),
                ("event_types", "invoice.paid"),
                ("headers", "X-Customer: acme"),
                ("transform", "{invoice: .body.invoice}"),
                ("timeout", "4s"),
                ("retry", r#"{"schedule": ["1s"]}"#),
                ("max_in_flight", ""),
                ("rate_limit", ""),
            ],
        )
        .await;
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    let endpoint = api.get("/v1/tenants/acme/endpoints/ep_acme").await;
    let body = endpoint.ok(200);
    assert_eq!(body["url"], moved.url.as_str());
    assert_eq!(body["event_types"], json!(["invoice.paid"]));
    assert_eq!(body["timeout"], "4s");
    assert_eq!(body["headers"], json!({"X-Customer": "acme"}));
    let page = browser.page("/ui/tenants/acme/endpoints/ep_acme").await;
    assert!(page.contains("Billing &lt;hooks&gt;"), "escaped");

    // The edited endpoint gets only its type, transformed, with its header.
    for kind in ["invoice.failed", "invoice.paid"] {
        api.post(
            "/v1/tenants/acme/events",
            &json!({"type": kind, "payload": {"invoice": 7}}),
        )
        .await
        .ok(202);
    }
    let requests = moved.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(requests[0].headers["x-customer"], "acme");
    let delivered: serde_json::Value = serde_json::from_slice(&requests[0].body).expect("json");
    assert_eq!(delivered, json!({"invoice": 7}));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        moved.requests().len(),
        1,
        "invoice.failed is not subscribed"
    );

    // A bad transform is refused with the form shown again.
    let refused = browser
        .post(
            "/ui/tenants/acme/endpoints/ep_acme",
            &[
                ("csrf", &csrf),
                ("url", &moved.url),
                ("transform", "{invoice:"),
            ],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.text().await.expect("text").contains("{invoice:"));

    let renamed = browser
        .post(
            "/ui/tenants/acme/rename",
            &[("csrf", &csrf), ("name", "Acme Inc.")],
        )
        .await;
    assert_eq!(renamed.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        api.get("/v1/tenants/acme").await.ok(200)["name"],
        "Acme Inc."
    );
    let deleted = browser
        .post(
            "/ui/tenants/acme/endpoints/ep_acme/delete",
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(deleted.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        api.get("/v1/tenants/acme/endpoints/ep_acme").await.status,
        404
    );
    let deleted = browser
        .post("/ui/tenants/acme/delete", &[("csrf", &csrf)])
        .await;
    assert_eq!(deleted.status(), StatusCode::SEE_OTHER);
    assert_eq!(api.get("/v1/tenants/acme").await.status, 404);
    server.stop().await;
}
