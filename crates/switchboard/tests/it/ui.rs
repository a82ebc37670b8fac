//! The dashboard at `/ui`, over real HTTP against a real server: sign-in and sessions, CSRF on
//! every form, escaping of payload content, every page rendering, replay, route dry-run and the
//! live stream.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::redirect::Policy;

use crate::support::{Receiver, TestServer, config_to, process, schedule_ms};

/// A URL-encoded form body, as a browser sends it.
fn form_body(fields: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// Adds a form body to a request.
trait FormExt {
    fn form_fields(self, fields: &[(&str, &str)]) -> Self;
}

impl FormExt for reqwest::RequestBuilder {
    fn form_fields(self, fields: &[(&str, &str)]) -> Self {
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(fields))
    }
}

/// A browser-like client: keeps the session cookie, never follows redirects (so tests see them).
pub(crate) struct Browser {
    base: String,
    client: reqwest::Client,
    cookie: Option<String>,
}

impl Browser {
    fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            client: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .expect("client"),
            cookie: None,
        }
    }

    pub(crate) async fn signed_in(base: &str, token: &str) -> Self {
        let mut browser = Self::new(base);
        let response = browser.sign_in(token).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        browser
    }

    async fn sign_in(&mut self, token: &str) -> reqwest::Response {
        let response = self
            .client
            .post(format!("{}/ui/sign-in", self.base))
            .form_fields(&[("token", token), ("next", "/ui/events")])
            .send()
            .await
            .expect("sign in");
        if let Some(cookie) = response.headers().get("set-cookie") {
            let pair = cookie
                .to_str()
                .expect("ascii")
                .split(';')
                .next()
                .expect("ok");
            self.cookie = Some(pair.to_owned());
        }
        response
    }

    fn with_cookie(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.cookie {
            Some(cookie) => request.header("cookie", cookie),
            None => request,
        }
    }

    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        self.with_cookie(self.client.get(format!("{}{path}", self.base)))
            .send()
            .await
            .expect("get")
    }

    pub(crate) async fn page(&self, path: &str) -> String {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.text().await.expect("text")
    }

    pub(crate) async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.with_cookie(self.client.post(format!("{}{path}", self.base)))
            .form_fields(form)
            .send()
            .await
            .expect("post")
    }

    /// The CSRF token of the session, read from a page like a browser would.
    pub(crate) async fn csrf(&self) -> String {
        let html = self.page("/ui/routes").await;
        let marker = "name=\"csrf-token\" content=\"";
        let start = html.find(marker).expect("csrf meta") + marker.len();
        html[start..start + html[start..].find('"').expect("ok")].to_owned()
    }
}

const PAGES: &[&str] = &[
    "/ui",
    "/ui?period=day",
    "/ui/events",
    "/ui/deliveries",
    "/ui/deliveries?status=failed",
    "/ui/replay?destination=dst",
    "/ui/sources",
    "/ui/destinations",
    "/ui/routes",
    "/ui/tenants",
    "/ui/connections",
];

#[tokio::test]
async fn ui_pages_redirect_to_sign_in_without_a_session() {
    let receiver = Receiver::always(200).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[]))).await;
    let event = server.ingest_ok("src", r#"{"a":1}"#).await;
    let delivery = server.deliveries_of(&event).await.remove(0).id;
    let browser = Browser::new(&server.base);
    let mut pages: Vec<String> = PAGES.iter().map(|p| p.to_string()).collect();
    pages.push(format!("/ui/events/{event}"));
    pages.push(format!("/ui/deliveries/{delivery}"));
    pages.push("/ui/routes/src-dst".into());
    for page in &pages {
        let response = browser.get(page).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "GET {page}");
        let location = response.headers()["location"]
            .to_str()
            .expect("ok")
            .to_owned();
        assert!(
            location.starts_with("/ui/sign-in?next=%2Fui"),
            "{page} → {location}"
        );
    }
    for path in [
        format!("/ui/deliveries/{delivery}/replay"),
        "/ui/replay".into(),
        "/ui/routes".into(),
        "/ui/routes/src-dst/dry-run".into(),
        "/ui/routes/src-dst/delete".into(),
        "/ui/sources/src/test-event".into(),
        "/ui/sources".into(),
        "/ui/destinations".into(),
        "/ui/destinations/dst/rotate-secret".into(),
        "/ui/connections/c1/test".into(),
        "/ui/connections/c1/connect".into(),
        "/ui/tenants/t/endpoints/e/disable".into(),
        "/ui/tenants/t/endpoints/e/rotate-secret".into(),
        "/ui/sign-out".into(),
    ] {
        let response = browser.post(&path, &[("csrf", "x")]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "POST {path}");
        assert_eq!(response.headers()["location"], "/ui/sign-in?next=%2Fui");
    }
    assert_eq!(
        browser.get("/ui/live").await.status(),
        StatusCode::UNAUTHORIZED
    );
    // The sign-in page and the assets are public.
    assert_eq!(browser.get("/ui/sign-in").await.status(), StatusCode::OK);
    assert_eq!(
        browser.get("/ui/assets/ui.js").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        browser.get("/ui/assets/ui.css").await.status(),
        StatusCode::OK
    );
    // A forged cookie is no session.
    let mut forged = Browser::new(&server.base);
    forged.cookie = Some("sb_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into());
    assert_eq!(forged.get("/ui").await.status(), StatusCode::SEE_OTHER);
    server.stop().await;
}

#[tokio::test]
async fn ui_sign_in_sets_a_strict_cookie_and_sign_out_ends_the_session() {
    let receiver = Receiver::always(200).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[]))).await;
    let mut browser = Browser::new(&server.base);
    let refused = browser.sign_in("sb_not-a-token").await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.headers().get("set-cookie").is_none());
    assert!(
        refused
            .text()
            .await
            .expect("ok")
            .contains("unknown or revoked")
    );

    let response = browser.sign_in(process::ADMIN_TOKEN).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/ui/events");
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .expect("ok")
        .to_owned();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(cookie.contains(part), "{cookie} lacks {part}");
    }
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");
    assert!(
        !cookie.contains(process::ADMIN_TOKEN),
        "the token never goes into the cookie"
    );
    let page = browser.page("/ui/events").await;
    assert!(page.contains("Sign out"));

    // Behind an https proxy the cookie is Secure.
    let secure = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("ok")
        .post(format!("{}/ui/sign-in", server.base))
        .header("x-forwarded-proto", "https")
        .form_fields(&[("token", process::ADMIN_TOKEN)])
        .send()
        .await
        .expect("ok");
    assert!(
        secure.headers()["set-cookie"]
            .to_str()
            .expect("ok")
            .contains("; Secure")
    );

    // A sign-in posted from another site is refused.
    let cross = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("ok")
        .post(format!("{}/ui/sign-in", server.base))
        .header("origin", "https://evil.example")
        .form_fields(&[("token", process::ADMIN_TOKEN)])
        .send()
        .await
        .expect("ok");
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    assert!(cross.headers().get("set-cookie").is_none());

    // An open redirect is not possible through `next`.
    let offsite = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("ok")
        .post(format!("{}/ui/sign-in", server.base))
        .form_fields(&[
            ("token", process::ADMIN_TOKEN),
            ("next", "https://evil.example/"),
        ])
        .send()
        .await
        .expect("ok");
    assert_eq!(offsite.headers()["location"], "/ui");

    let csrf = browser.csrf().await;
    let out = browser.post("/ui/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(
        out.headers()["set-cookie"]
            .to_str()
            .expect("ok")
            .contains("Max-Age=0")
    );
    // The old cookie (kept by an attacker, say) no longer works.
    assert_eq!(
        browser.get("/ui/events").await.status(),
        StatusCode::SEE_OTHER
    );
    server.stop().await;
}

#[tokio::test]
async fn ui_revoking_the_token_ends_its_sessions() {
    let receiver = Receiver::always(200).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[]))).await;
    let created = server
        .api()
        .post(
            "/v1/tokens",
            &serde_json::json!({"name": "dash", "scopes": ["read"]}),
        )
        .await;
    let created = created.ok(201);
    let token = created["token"].as_str().expect("ok").to_owned();
    let id = created["id"].as_str().expect("ok").to_owned();
    let browser = Browser::signed_in(&server.base, &token).await;
    browser.page("/ui").await;
    server
        .api()
        .delete(&format!("/v1/tokens/{id}"))
        .await
        .ok(204);
    assert_eq!(browser.get("/ui").await.status(), StatusCode::SEE_OTHER);
    server.stop().await;
}

#[tokio::test]
async fn ui_every_page_renders_with_a_session() {
    let receiver = Receiver::always(500).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[]))).await;
    let event = server.ingest_ok("src", r#"{"order":{"id":42}}"#).await;
    let delivery = server
        .wait_delivery(&event, "delivery fails", |d| d.status.as_str() == "failed")
        .await;
    let browser = Browser::signed_in(&server.base, process::ADMIN_TOKEN).await;
    for page in PAGES {
        let response = browser.get(page).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {page}");
        let csp = response.headers()["content-security-policy"]
            .to_str()
            .expect("ok")
            .to_owned();
        assert!(csp.contains("script-src 'self'"), "{page}: {csp}");
        let html = response.text().await.expect("ok");
        assert!(html.contains("<nav aria-label=\"Main\">"), "{page}");
    }
    let overview = browser.page("/ui").await;
    assert!(
        overview.contains("Events received, last hour — ")
            && !overview.contains("Events received, last hour — 0 in total"),
        "{overview}"
    );
    assert!(overview.contains("Delivery outcomes, last hour — 1 in total"));
    let events = browser.page("/ui/events?source=src").await;
    assert!(events.contains(&event));
    let failed = browser.page("/ui/deliveries?status=failed").await;
    assert!(failed.contains("Dead letters") && failed.contains(&delivery.id));
    let detail = browser
        .page(&format!("/ui/deliveries/{}", delivery.id))
        .await;
    assert!(
        detail.contains("Attempt 1") && detail.contains("HTTP 500"),
        "{detail}"
    );
    let sources = browser.page("/ui/sources").await;
    assert!(sources.contains(&format!("{}/in/src", server.base)));
    let destinations = browser.page("/ui/destinations").await;
    assert!(destinations.contains(&receiver.url));
    let confirm = browser.page("/ui/replay?destination=dst").await;
    assert!(confirm.contains("This queues <strong>1</strong> failed deliveries"));
    // Filters and unknown ids answer clearly.
    let bad = browser.get("/ui/events?status=bogus").await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        browser.get("/ui/events/evt_nope").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        browser.get("/ui/routes/nope").await.status(),
        StatusCode::NOT_FOUND
    );
    let search = browser.page("/ui/events?q=%22id%22%3A42").await;
    assert!(search.contains(&event));
    let miss = browser.page("/ui/events?q=nothing-like-this").await;
    assert!(!miss.contains(&event) && miss.contains("No events match"));
    server.stop().await;
}

#[tokio::test]
async fn ui_payloads_are_shown_escaped_never_run() {
    let receiver = Receiver::always(200).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[]))).await;
    let body =
        r#"{"comment":"<script>alert('pwned')</script>","img":"<img src=x onerror=alert(1)>"}"#;
    let response = reqwest::Client::new()
        .post(format!("{}/in/src", server.base))
        .header("content-type", "application/json")
        .header("x-note", "<script>alert('header')</script>")
        .body(body)
        .send()
        .await
        .expect("ok");
    assert_eq!(response.status(), 202);
    let event: serde_json::Value = response.json().await.expect("ok");
    let event = event["id"].as_str().expect("ok").to_owned();
    let browser = Browser::signed_in(&server.base, process::ADMIN_TOKEN).await;
    let html = browser.page(&format!("/ui/events/{event}")).await;
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(!html.contains("<img src=x"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert("),
        "payload shown as text: {html}"
    );
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(
        html.contains("&lt;script&gt;alert('header')&lt;/script&gt;")
            || html.contains("&lt;script&gt;alert(&#39;header&#39;)"),
        "{html}"
    );
    // The only scripts are the dashboard's own file.
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    server.stop().await;
}

#[tokio::test]
async fn ui_forms_refuse_a_missing_or_wrong_csrf_token() {
    let receiver = Receiver::always(500).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[]))).await;
    let event = server.ingest_ok("src", r#"{"a":1}"#).await;
    let delivery = server
        .wait_delivery(&event, "delivery fails", |d| d.status.as_str() == "failed")
        .await;
    let browser = Browser::signed_in(&server.base, process::ADMIN_TOKEN).await;
    let other = Browser::signed_in(&server.base, process::ADMIN_TOKEN).await;
    let foreign = other.csrf().await;
    let replay = format!("/ui/deliveries/{}/replay", delivery.id);
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (replay.as_str(), vec![]),
        (
            "/ui/replay",
            vec![("destination", "dst"), ("confirm", "yes")],
        ),
        (
            "/ui/routes",
            vec![("source", "src"), ("destination", "dst"), ("id", "forged")],
        ),
        (
            "/ui/routes/src-dst/dry-run",
            vec![("event_id", event.as_str())],
        ),
        ("/ui/routes/src-dst/delete", vec![]),
        ("/ui/sources/src/test-event", vec![]),
        ("/ui/sources", vec![("id", "forged"), ("verifier", "none")]),
        (
            "/ui/destinations",
            vec![("id", "forged"), ("url", "http://127.0.0.1:9/x")],
        ),
        ("/ui/destinations/dst/rotate-secret", vec![]),
        ("/ui/sign-out", vec![]),
    ];
    for (path, fields) in &cases {
        for csrf in [None, Some("wrong"), Some(foreign.as_str())] {
            let mut form = fields.clone();
            if let Some(csrf) = csrf {
                form.push(("csrf", csrf));
            }
            let response = browser.post(path, &form).await;
            assert_eq!(
                response.status(),
                StatusCode::FORBIDDEN,
                "POST {path} with {csrf:?}"
            );
        }
    }
    // Nothing happened: no route, no replay, no test event, still signed in.
    assert!(server.api().get("/v1/routes/forged").await.status == 404);
    assert!(server.api().get("/v1/sources/forged").await.status == 404);
    assert!(server.api().get("/v1/destinations/forged").await.status == 404);
    assert_eq!(
        server.deliveries_of(&event).await[0].status.as_str(),
        "failed"
    );
    assert_eq!(server.deliveries_of(&event).await[0].attempts, 1);
    browser.page("/ui").await;
    server.stop().await;
}

#[tokio::test]
async fn ui_read_tokens_look_but_cannot_change() {
    let receiver = Receiver::always(500).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[]))).await;
    let event = server.ingest_ok("src", r#"{"a":1}"#).await;
    let delivery = server
        .wait_delivery(&event, "delivery fails", |d| d.status.as_str() == "failed")
        .await;
    let created = server
        .api()
        .post(
            "/v1/tokens",
            &serde_json::json!({"name": "viewer", "scopes": ["read"]}),
        )
        .await;
    let token = created.ok(201)["token"].as_str().expect("ok").to_owned();
    let browser = Browser::signed_in(&server.base, &token).await;
    let page = browser
        .page(&format!("/ui/deliveries/{}", delivery.id))
        .await;
    assert!(!page.contains("Replay this delivery"));
    let csrf = browser.csrf().await;
    let response = browser
        .post(
            &format!("/ui/deliveries/{}/replay", delivery.id),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        server.deliveries_of(&event).await[0].status.as_str(),
        "failed"
    );
    server.stop().await;
}

#[tokio::test]
async fn ui_replays_one_and_in_bulk_and_sends_a_test_event() {
    let (receiver, up) = Receiver::switchable(500).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[]))).await;
    let first = server.ingest_ok("src", r#"{"n":1}"#).await;
    let second = server.ingest_ok("src", r#"{"n":2}"#).await;
    for event in [&first, &second] {
        server
            .wait_delivery(event, "delivery fails", |d| d.status.as_str() == "failed")
            .await;
    }
    up.on();
    let browser = Browser::signed_in(&server.base, process::ADMIN_TOKEN).await;
    let csrf = browser.csrf().await;
    let one = server.deliveries_of(&first).await.remove(0);
    let response = browser
        .post(
            &format!("/ui/deliveries/{}/replay", one.id),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()["location"],
        format!("/ui/deliveries/{}?queued=1", one.id)
    );
    server
        .wait_delivery(&first, "replayed delivery succeeds", |d| {
            d.status.as_str() == "succeeded"
        })
        .await;
    assert_eq!(
        server.deliveries_of(&second).await[0].status.as_str(),
        "failed"
    );

    // Bulk: the confirmation box is required.
    let unconfirmed = browser
        .post("/ui/replay", &[("csrf", &csrf), ("destination", "dst")])
        .await;
    assert_eq!(unconfirmed.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let bulk = browser
        .post(
            "/ui/replay",
            &[
                ("csrf", &csrf),
                ("destination", "dst"),
                ("window", "1h"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(bulk.status(), StatusCode::SEE_OTHER);
    assert!(
        bulk.headers()["location"]
            .to_str()
            .expect("ok")
            .ends_with("queued=1")
    );
    let notice = browser
        .page(bulk.headers()["location"].to_str().expect("ok"))
        .await;
    assert!(notice.contains("Bulk replay queued 1 deliveries."));
    server
        .wait_delivery(&second, "bulk-replayed delivery succeeds", |d| {
            d.status.as_str() == "succeeded"
        })
        .await;

    let test = browser
        .post("/ui/sources/src/test-event", &[("csrf", &csrf)])
        .await;
    assert_eq!(test.status(), StatusCode::SEE_OTHER);
    let location = test.headers()["location"].to_str().expect("ok").to_owned();
    let test_event = location.trim_start_matches("/ui/events/").to_owned();
    server
        .wait_delivery(&test_event, "test event delivered", |d| {
            d.status.as_str() == "succeeded"
        })
        .await;
    let page = browser.page(&location).await;
    assert!(page.contains("switchboard.test"));
    server.stop().await;
}

#[tokio::test]
async fn ui_creates_a_route_with_a_transform_and_dry_runs_it() {
    let receiver = Receiver::always(200).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[]))).await;
    let event = server
        .ingest_ok("src", r#"{"order":{"id":42,"total":9.5}}"#)
        .await;
    let browser = Browser::signed_in(&server.base, process::ADMIN_TOKEN).await;
    let csrf = browser.csrf().await;
    let bad = browser
        .post(
            "/ui/routes",
            &[
                ("csrf", &csrf),
                ("id", "broken"),
                ("source", "src"),
                ("destination", "dst"),
                ("transform", "{id: .body.order.id"),
            ],
        )
        .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text().await.expect("ok").contains("transform"));
    let created = browser
        .post(
            "/ui/routes",
            &[
                ("csrf", &csrf),
                ("id", "orders"),
                ("source", "src"),
                ("destination", "dst"),
                (
                    "transform",
                    "{order_id: .body.order.id, kind: \"<b>order</b>\"}",
                ),
            ],
        )
        .await;
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    assert_eq!(created.headers()["location"], "/ui/routes/orders");
    let page = browser.page("/ui/routes/orders").await;
    assert!(page.contains(&event), "the dry-run offers recent events");
    let result = browser
        .post(
            "/ui/routes/orders/dry-run",
            &[("csrf", &csrf), ("event_id", &event)],
        )
        .await;
    assert_eq!(result.status(), StatusCode::OK);
    let html = result.text().await.expect("ok");
    assert!(
        html.contains("&quot;order_id&quot;: 42") || html.contains("\"order_id\": 42"),
        "{html}"
    );
    assert!(html.contains("&lt;b&gt;order&lt;/b&gt;"), "{html}");
    assert!(html.contains("matched"));
    // Edit: a filter that drops this event; the dry-run says so.
    let edited = browser
        .post(
            "/ui/routes/orders",
            &[
                ("csrf", &csrf),
                ("destination", "dst"),
                ("filter", ".body.order.id != 42"),
                ("transform", ""),
            ],
        )
        .await;
    assert_eq!(edited.status(), StatusCode::SEE_OTHER);
    let route = server.api().get("/v1/routes/orders").await;
    let route = route.ok(200);
    assert_eq!(route["filter"], ".body.order.id != 42");
    assert_eq!(route["transform"], serde_json::Value::Null);
    let result = browser
        .post(
            "/ui/routes/orders/dry-run",
            &[("csrf", &csrf), ("event_id", &event)],
        )
        .await;
    assert!(result.text().await.expect("ok").contains("filtered out"));
    let invalid = browser
        .post(
            "/ui/routes/orders",
            &[("csrf", &csrf), ("destination", "dst"), ("filter", "(((")],
        )
        .await;
    assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let forged = browser
        .post(
            "/ui/routes/orders",
            &[("destination", "dst"), ("filter", "false")],
        )
        .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let deleted = browser
        .post("/ui/routes/orders/delete", &[("csrf", &csrf)])
        .await;
    assert_eq!(deleted.status(), StatusCode::SEE_OTHER);
    assert_eq!(server.api().get("/v1/routes/orders").await.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn ui_live_stream_carries_new_events_and_outcomes() {
    let receiver = Receiver::always(200).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[]))).await;
    let browser = Browser::signed_in(&server.base, process::ADMIN_TOKEN).await;
    let mut stream = browser.get("/ui/live").await;
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .expect("ok")
            .starts_with("text/event-stream")
    );
    let event = server.ingest_ok("src", r#"{"live":true}"#).await;
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(chunk) = stream.chunk().await.expect("chunk") {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("event: event")
                && seen.contains(&event)
                && seen.contains("event: delivery")
                && seen.contains("\"status\":\"succeeded\"")
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "stream so far: {seen}");
    drop(stream);
    // A page rendered before an event arrived gets it even if it connects afterwards.
    let page = browser.page("/ui").await;
    let cursor = page
        .split("data-live-cursor=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page carries the live cursor")
        .to_owned();
    let early = server.ingest_ok("src", r#"{"early":true}"#).await;
    let mut late = browser.get(&format!("/ui/live?after={cursor}")).await;
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(chunk) = late.chunk().await.expect("chunk") {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains(&early) && seen.contains("\nid: ") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "stream so far: {seen}");
    drop(late);
    // The stream does not hold the server open on shutdown.
    let mut held = browser.get("/ui/live").await;
    let stop = tokio::spawn(server.stop());
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match held.chunk().await {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the live stream ends at shutdown");
    stop.await.expect("ok");
}

#[tokio::test]
async fn ui_disables_enables_and_rotates_a_tenant_endpoint() {
    let receiver = Receiver::always(200).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[]))).await;
    let api = server.api();
    let browser = Browser::signed_in(&server.base, process::ADMIN_TOKEN).await;
    let csrf = browser.csrf().await;
    // Created through the dashboard's forms.
    let tenant = browser
        .post(
            "/ui/tenants",
            &[("csrf", &csrf), ("id", "acme"), ("name", "Acme <Corp>")],
        )
        .await;
    assert_eq!(tenant.status(), StatusCode::SEE_OTHER);
    let endpoint = browser
        .post(
            "/ui/tenants/acme/endpoints",
            &[
                ("csrf", &csrf),
                ("url", &receiver.url),
                ("event_types", "invoice.paid, invoice.failed"),
            ],
        )
        .await;
    assert_eq!(endpoint.status(), StatusCode::SEE_OTHER);
    let missing = browser
        .post(
            "/ui/tenants/nope/endpoints",
            &[("csrf", &csrf), ("url", &receiver.url)],
        )
        .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let listed = api.get("/v1/tenants/acme/endpoints").await;
    let listed = listed.ok(200).as_array().expect("list").clone();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0]["event_types"],
        serde_json::json!(["invoice.paid", "invoice.failed"])
    );
    let id = listed[0]["id"].as_str().expect("id").to_owned();
    let secret = api
        .get(&format!("/v1/tenants/acme/endpoints/{id}/secret"))
        .await;
    let old_secret = secret.ok(200)["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let page = browser.page("/ui/tenants").await;
    assert!(
        page.contains("Acme &lt;Corp&gt;") && page.contains(&id),
        "{page}"
    );
    assert!(!page.contains(&old_secret), "listings never show secrets");
    let base = format!("/ui/tenants/acme/endpoints/{id}");

    let disabled = browser
        .post(&format!("{base}/disable"), &[("csrf", &csrf)])
        .await;
    assert_eq!(disabled.status(), StatusCode::SEE_OTHER);
    let view = api.get(&format!("/v1/tenants/acme/endpoints/{id}")).await;
    assert_eq!(view.ok(200)["enabled"], false);
    assert!(browser.page("/ui/tenants").await.contains(">Enable<"));
    let enabled = browser
        .post(&format!("{base}/enable"), &[("csrf", &csrf)])
        .await;
    assert_eq!(enabled.status(), StatusCode::SEE_OTHER);
    let view = api.get(&format!("/v1/tenants/acme/endpoints/{id}")).await;
    assert_eq!(view.ok(200)["enabled"], true);

    let rotated = browser
        .post(&format!("{base}/rotate-secret"), &[("csrf", &csrf)])
        .await;
    assert_eq!(rotated.status(), StatusCode::OK);
    let html = rotated.text().await.expect("ok");
    let secret = api
        .get(&format!("/v1/tenants/acme/endpoints/{id}/secret"))
        .await;
    let new_secret = secret.ok(200)["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    assert_ne!(new_secret, old_secret);
    assert!(html.contains(&new_secret), "the new secret is shown once");
    // Without the CSRF token nothing changes.
    let refused = browser.post(&format!("{base}/disable"), &[]).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let unknown = browser
        .post(&format!("{base}/explode"), &[("csrf", &csrf)])
        .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn ui_tests_a_connection_through_its_client() {
    const KEY: &str = "ui-key-NEVER-SHOWN-31";
    // A provider API answering GET /api/status, and recording the key it got.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/api/status",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let record = record.clone();
            async move {
                let key = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                record.lock().expect("lock").push(key);
                axum::Json(serde_json::json!({"ok": true, "note": "<b>fine</b>"}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let api_base = format!("http://{}/api", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let providers = tempfile::tempdir().expect("providers dir");
    std::fs::write(
        providers.path().join("keyed.toml"),
        format!(
            "id = \"keyed\"\nname = \"Keyed\"\nbase_url = \"{api_base}\"\nauth_modes = [\"api_key\"]\n"
        ),
    )
    .expect("provider file");
    let upstream = Receiver::always(200).await;
    let mut config = config_to(&upstream.url, schedule_ms(&[]));
    config.connections.providers_dir = Some(providers.path().to_owned());
    let server = TestServer::start(config).await;
    server
        .api()
        .post(
            "/v1/connections",
            &serde_json::json!({"id": "k1", "provider": "keyed", "credentials": {"api_key": KEY}}),
        )
        .await
        .ok(201);
    let browser = Browser::signed_in(&server.base, process::ADMIN_TOKEN).await;
    let page = browser.page("/ui/connections").await;
    assert!(page.contains("k1") && page.contains("keyed") && !page.contains(KEY));
    let csrf = browser.csrf().await;
    let response = browser
        .post(
            "/ui/connections/k1/test",
            &[("csrf", &csrf), ("path", "status")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.expect("ok");
    assert!(html.contains("HTTP 200"), "{html}");
    assert!(!html.contains(KEY), "the credential is never shown");
    assert!(html.contains("&lt;b&gt;fine&lt;/b&gt;"), "{html}");
    let keys = seen.lock().expect("lock").clone();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].contains(KEY), "the call carried the credential");
    let unknown = browser
        .post(
            "/ui/connections/nope/test",
            &[("csrf", &csrf), ("path", "")],
        )
        .await;
    assert_eq!(unknown.status(), StatusCode::OK);
    assert!(unknown.text().await.expect("ok").contains("role=\"alert\""));
    server.stop().await;
}

#[tokio::test]
async fn ui_creates_sources_and_destinations_and_rotates_a_destination_secret() {
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
                ("secret", "s3cret-gh"),
            ],
        )
        .await;
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    let page = browser.page("/ui/sources").await;
    assert!(page.contains(&format!("{}/in/gh", server.base)) && !page.contains("s3cret-gh"));
    // The verifier works: an unsigned request is refused.
    assert_eq!(server.ingest("gh", "{}").await.status(), 401);
    let bad = browser
        .post(
            "/ui/sources",
            &[("csrf", &csrf), ("id", "x"), ("verifier", "bogus")],
        )
        .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let duplicate = browser
        .post(
            "/ui/sources",
            &[("csrf", &csrf), ("id", "gh"), ("verifier", "none")],
        )
        .await;
    assert_eq!(duplicate.status(), StatusCode::CONFLICT);

    let created = browser
        .post(
            "/ui/destinations",
            &[("csrf", &csrf), ("id", "billing"), ("url", &receiver.url)],
        )
        .await;
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    let api = server.api();
    let before = api.get("/v1/destinations/billing/secret").await;
    let before = before.ok(200)["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    assert!(before.starts_with("whsec_"));
    let page = browser.page("/ui/destinations").await;
    assert!(page.contains("billing") && !page.contains(&before));
    let rotated = browser
        .post("/ui/destinations/billing/rotate-secret", &[("csrf", &csrf)])
        .await;
    assert_eq!(rotated.status(), StatusCode::OK);
    let html = rotated.text().await.expect("ok");
    let after = api.get("/v1/destinations/billing/secret").await;
    let after = after.ok(200)["secret"].as_str().expect("secret").to_owned();
    assert_ne!(before, after);
    assert!(html.contains(&after));
    let bad_url = browser
        .post(
            "/ui/destinations",
            &[
                ("csrf", &csrf),
                ("id", "nope"),
                ("url", "ftp://example.com"),
            ],
        )
        .await;
    assert_eq!(bad_url.status(), StatusCode::UNPROCESSABLE_ENTITY);
    server.stop().await;
}
