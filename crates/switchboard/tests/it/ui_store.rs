//! The dashboard's views that the store computes, and its sessions kept in the store, against a
//! real server on SQLite and on PostgreSQL: text search over event bodies that reaches events
//! older than any recent window (dashboard page and `GET /v1/events?body_contains=`), the
//! overview's charts counting more rows than it ever read, and sign-outs that hold after a
//! restart and on every node sharing the database.
//!
//! The PostgreSQL cases need `SWITCHBOARD_TEST_PG=postgres://user@host:port/database`; each
//! works in a schema of its own, dropped after it. Without the variable they report
//! `SKIPPED …` on stderr and pass.

use std::io::Write as _;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::redirect::Policy;
use serde_json::Value;
use switchboard_core::Config;
use switchboard_core::time::now_millis;
use switchboard_store::{NewEvent, Store};

use crate::support::pg::Schema;
use crate::support::process::ADMIN_TOKEN;
use crate::support::{Receiver, TestServer, config_to, eventually, schedule_ms};

/// The PostgreSQL test server's URL, or `None` after reporting the test as skipped.
fn pg_base(test: &str) -> Option<String> {
    match std::env::var("SWITCHBOARD_TEST_PG") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: set SWITCHBOARD_TEST_PG=postgres://… to run it"
            );
            None
        }
    }
}

/// A client that never follows redirects, so the tests see the sign-in redirect.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client")
}

/// Signs in with `token` on the server at `base`; returns the session cookie (`name=value`).
async fn sign_in(base: &str, token: &str) -> String {
    let response = client()
        .post(format!("{base}/ui/sign-in"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}&next=%2Fui"))
        .send()
        .await
        .expect("sign in");
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "signed in");
    let cookie = response.headers()["set-cookie"].to_str().expect("ascii");
    cookie.split(';').next().expect("name=value").to_owned()
}

/// `GET base+path` with the session cookie.
async fn get(base: &str, cookie: &str, path: &str) -> reqwest::Response {
    client()
        .get(format!("{base}{path}"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("get")
}

/// A dashboard page's HTML (it must answer `200`).
async fn page(base: &str, cookie: &str, path: &str) -> String {
    let response = get(base, cookie, path).await;
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    response.text().await.expect("html")
}

/// Whether the cookie opens a page (`200`), or is sent to sign in (`303`).
async fn signed_in(base: &str, cookie: &str) -> bool {
    let response = get(base, cookie, "/ui").await;
    match response.status() {
        StatusCode::OK => true,
        StatusCode::SEE_OTHER => {
            let location = response.headers()["location"].to_str().expect("ascii");
            assert!(location.starts_with("/ui/sign-in"), "{location}");
            false
        }
        other => panic!("GET /ui answered {other}"),
    }
}

/// Signs the session out through the dashboard's form (with its CSRF token).
async fn sign_out(base: &str, cookie: &str) {
    let html = page(base, cookie, "/ui/routes").await;
    let marker = "name=\"csrf-token\" content=\"";
    let start = html.find(marker).expect("csrf meta") + marker.len();
    let csrf = &html[start..start + html[start..].find('"').expect("end of csrf")];
    let response = client()
        .post(format!("{base}/ui/sign-out"))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "csrf={}",
            form_urlencoded::byte_serialize(csrf.as_bytes()).collect::<String>()
        ))
        .send()
        .await
        .expect("sign out");
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "signed out");
}

/// Stores `n` small JSON events of source `src` received now, none containing the search text
/// of these tests (setup through the store, in batches).
async fn fill(store: &dyn Store, tag: &str, n: usize) {
    let now = now_millis();
    let events: Vec<NewEvent> = (0..n)
        .map(|i| NewEvent {
            id: format!("evt-{tag}-{i:05}"),
            source: "src".into(),
            tenant: None,
            event_type: Some("filler".into()),
            dedup_key: None,
            headers: vec![("content-type".into(), "application/json".into())],
            content_type: Some("application/json".into()),
            body: format!(r#"{{"filler":{i}}}"#).into_bytes(),
            received_at: now,
            forward_headers: Vec::new(),
            deliveries: Vec::new(),
        })
        .collect();
    for chunk in events.chunks(500) {
        store
            .insert_events(chunk)
            .await
            .expect("insert filler events");
    }
}

/// The `href` of the "Older events →" link of an events page, unescaped.
fn older_link(html: &str) -> Option<String> {
    let link = html.rfind("Older events")?;
    let start = html[..link].rfind("href=\"")? + "href=\"".len();
    let end = start + html[start..].find('"')?;
    Some(html[start..end].replace("&amp;", "&"))
}

/// Event ids of a `GET /v1/events` page and its `next_cursor`.
fn ids_and_cursor(page: &Value) -> (Vec<String>, Option<String>) {
    let ids = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect();
    (ids, page["next_cursor"].as_str().map(str::to_owned))
}

/// Text search finds a match older than many newer events, on the dashboard and through the
/// API, also past one page's scan bound (by following the cursor); the overview counts more
/// events than it ever read as rows.
async fn search_and_charts_reach_all_history(server: &TestServer) {
    let cookie = sign_in(&server.base, ADMIN_TOKEN).await;
    let needle = server
        .ingest_ok("src", r#"{"order":{"note":"needle-7f3a"}}"#)
        .await;
    // 600 newer events without the text: more than the newest 500 search used to read.
    fill(server.store(), "a", 600).await;

    let html = page(&server.base, &cookie, "/ui/events?q=needle-7f3a").await;
    assert!(html.contains(&needle), "the dashboard finds the old event");
    assert!(!html.contains("evt-a-"), "and nothing else");
    let api = server.api();
    let found = api.get("/v1/events?body_contains=needle-7f3a").await;
    assert_eq!(ids_and_cursor(found.ok(200)), (vec![needle.clone()], None));
    let combined = api
        .get("/v1/events?body_contains=needle-7f3a&source=src&limit=1")
        .await;
    assert_eq!(
        ids_and_cursor(combined.ok(200)).0,
        std::slice::from_ref(&needle)
    );
    let other_source = api
        .get("/v1/events?body_contains=needle-7f3a&source=elsewhere")
        .await;
    assert_eq!(ids_and_cursor(other_source.ok(200)), (vec![], None));
    api.get("/v1/events?body_contains=")
        .await
        .problem(422, "validation_failed");
    api.get(&format!("/v1/events?body_contains={}", "x".repeat(257)))
        .await
        .problem(422, "validation_failed");

    // Past one page's bound of 10,000 bodies: the first page comes back empty with a cursor
    // that searches further back, and following it finds the event.
    fill(server.store(), "b", 10_000).await;
    let mut cursor: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/events?body_contains=needle-7f3a&cursor={c}"),
            None => "/v1/events?body_contains=needle-7f3a".to_owned(),
        };
        let (ids, next) = ids_and_cursor(api.get(&path).await.ok(200));
        pages.push(ids);
        assert!(pages.len() <= 5, "the search ends: {pages:?}");
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages.concat(), std::slice::from_ref(&needle));
    assert!(pages.len() >= 2 && pages[0].is_empty(), "{pages:?}");

    // The dashboard says so and links to the older events, where it is.
    let first = page(&server.base, &cookie, "/ui/events?q=needle-7f3a").await;
    assert!(!first.contains(&needle));
    assert!(first.contains("searches further back"), "{first}");
    let older = older_link(&first).expect("an older-events link");
    let second = page(&server.base, &cookie, &older).await;
    assert!(second.contains(&needle), "{older}");

    // The overview's chart counts every event of the last hour.
    let overview = page(&server.base, &cookie, "/ui").await;
    assert!(
        overview.contains("Events received, last hour — 10601 in total"),
        "{overview}"
    );
}

#[tokio::test]
async fn ui_text_search_and_charts_reach_all_history_on_sqlite() {
    let receiver = Receiver::always(200).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[]))).await;
    search_and_charts_reach_all_history(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn ui_text_search_and_charts_reach_all_history_on_postgres() {
    let Some(base) = pg_base("ui_text_search_and_charts_reach_all_history_on_postgres") else {
        return;
    };
    let schema = Schema::create(&base, "sb_uis");
    let receiver = Receiver::always(200).await;
    let mut config = config_to(&receiver.url, schedule_ms(&[]));
    config.server.database_url = Some(schema.url());
    let server = TestServer::start(config).await;
    search_and_charts_reach_all_history(&server).await;
    server.stop().await;
    drop(schema);
}

/// A config whose live streams re-check their session every 200 ms.
fn quick_recheck(receiver: &Receiver) -> Config {
    let mut config = config_to(&receiver.url, schedule_ms(&[]));
    config.stream.auth_recheck = Duration::from_millis(200);
    config
}

/// Reads the dashboard's live stream until the server ends it (15 s at most).
async fn live_stream_ends(mut response: reqwest::Response) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(None)) => return,
            Ok(Ok(Some(_))) => continue,
            Ok(Err(error)) => panic!("the live stream failed instead of ending: {error}"),
            Err(_) => panic!("the live stream is still open after 15s"),
        }
    }
}

#[tokio::test]
async fn ui_sign_out_holds_after_a_restart() {
    let receiver = Receiver::always(200).await;
    let config = quick_recheck(&receiver);
    let server = TestServer::start(config.clone()).await;
    let gone = sign_in(&server.base, ADMIN_TOKEN).await;
    let kept = sign_in(&server.base, ADMIN_TOKEN).await;
    assert!(signed_in(&server.base, &gone).await);
    let live = get(&server.base, &gone, "/ui/live").await;
    assert_eq!(live.status(), StatusCode::OK);

    sign_out(&server.base, &gone).await;
    assert!(!signed_in(&server.base, &gone).await, "refused at once");
    live_stream_ends(live).await;
    assert_eq!(
        get(&server.base, &gone, "/ui/live").await.status(),
        StatusCode::UNAUTHORIZED
    );

    // A new process on the same data directory (same master key) still refuses it, and still
    // accepts the session that was not signed out.
    let dir = server.stop().await;
    let server = TestServer::start_in(config, dir).await;
    assert!(
        !signed_in(&server.base, &gone).await,
        "refused after the restart"
    );
    assert!(
        signed_in(&server.base, &kept).await,
        "the other session holds"
    );
    server.stop().await;
}

#[tokio::test]
async fn ui_sign_out_holds_on_every_node() {
    let Some(base) = pg_base("ui_sign_out_holds_on_every_node") else {
        return;
    };
    let schema = Schema::create(&base, "sb_uio");
    let receiver = Receiver::always(200).await;
    let mut config = quick_recheck(&receiver);
    config.server.database_url = Some(schema.url());
    let node_a = TestServer::start(config.clone()).await;
    // Node B shares node A's master key (as nodes of one installation do), so it opens the
    // same session cookies.
    let dir_b = tempfile::tempdir().expect("temp dir");
    let key = switchboard_store::vault::KEY_FILE;
    std::fs::copy(node_a.dir.path().join(key), dir_b.path().join(key)).expect("copy the key");
    let node_b = TestServer::start_in(config, dir_b).await;

    let gone = sign_in(&node_a.base, ADMIN_TOKEN).await;
    let kept = sign_in(&node_a.base, ADMIN_TOKEN).await;
    assert!(
        signed_in(&node_b.base, &gone).await,
        "node B opens node A's session"
    );
    let live_b = get(&node_b.base, &gone, "/ui/live").await;
    assert_eq!(live_b.status(), StatusCode::OK);

    sign_out(&node_a.base, &gone).await;
    assert!(!signed_in(&node_a.base, &gone).await);
    eventually(
        Duration::from_secs(10),
        "node B refuses the signed-out session",
        || async { (!signed_in(&node_b.base, &gone).await).then_some(()) },
    )
    .await;
    live_stream_ends(live_b).await;
    assert!(
        signed_in(&node_b.base, &kept).await,
        "the other session holds"
    );
    node_a.stop().await;
    node_b.stop().await;
    drop(schema);
}
