//! Connections end to end: the real server, provider files pointing at loopback stand-ins (an
//! API that records what it receives and enforces a rate limit; a token endpoint that counts
//! refreshes), and a real OAuth2 server (the `oauth2-mock-server` npm package under
//! `tests/oauth/`, started with node on a free port).
//!
//! The OAuth2 server tests need `npm ci` in `crates/switchboard/tests/oauth`; without its
//! `node_modules` they report `SKIPPED …` unless `SWITCHBOARD_TEST_OAUTH` is set, which makes
//! them fail instead (CI sets it). The two-node test needs `SWITCHBOARD_TEST_PG`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use switchboard_core::Config;

use crate::support::pg::{Schema, master_key};
use crate::support::process::{ADMIN_TOKEN, Process};
use crate::support::{ApiClient, TestServer, eventually};

// ---------------------------------------------------------------------------------------------
// Stand-ins
// ---------------------------------------------------------------------------------------------

/// One request the fake API received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
    at: Instant,
}

type Answer = dyn Fn(&Seen, usize) -> Response + Send + Sync;

/// A loopback HTTP API that records every request and answers through `answer`.
#[derive(Clone)]
struct FakeApi {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeApi {
    async fn start(answer: impl Fn(&Seen, usize) -> Response + Send + Sync + 'static) -> Self {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let recorded = seen.clone();
        let answer: Arc<Answer> = Arc::new(answer);
        let app = axum::Router::new().fallback(move |request: Request| {
            let recorded = recorded.clone();
            let answer = answer.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20)
                    .await
                    .unwrap_or_default();
                let seen = Seen {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_owned(),
                    query: parts.uri.query().map(str::to_owned),
                    headers: parts.headers,
                    body,
                    at: Instant::now(),
                };
                let n = {
                    let mut all = recorded.lock().expect("lock");
                    all.push(seen.clone());
                    all.len() - 1
                };
                // On the blocking pool: an answer that sleeps (a slow upstream) must not stall the
                // test's runtime, which also runs the Switchboard under test.
                tokio::task::spawn_blocking(move || answer(&seen, n))
                    .await
                    .expect("the answer does not panic")
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { base, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn json_response(status: u16, body: Value) -> Response {
    (
        StatusCode::from_u16(status).expect("status"),
        axum::Json(body),
    )
        .into_response()
}

/// A token endpoint (and authorize endpoint) that counts grants; refreshes take `delay` so
/// that concurrent callers really overlap.
struct FakeAuth {
    api: FakeApi,
    /// While set, refresh grants are refused with `invalid_grant`.
    refuse: Arc<std::sync::atomic::AtomicBool>,
}

impl FakeAuth {
    async fn start(delay: Duration, first_expires_in: u64) -> Self {
        let issued = Arc::new(AtomicUsize::new(0));
        let refuse = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let refusing = refuse.clone();
        let api = FakeApi::start(move |seen, _| {
            if seen.path == "/authorize" {
                let query: HashMap<String, String> =
                    form_urlencoded::parse(seen.query.as_deref().unwrap_or("").as_bytes())
                        .into_owned()
                        .collect();
                let target = format!(
                    "{}?code=the-code&state={}",
                    query["redirect_uri"],
                    form_urlencoded::byte_serialize(query["state"].as_bytes()).collect::<String>()
                );
                return axum::response::Redirect::to(&target).into_response();
            }
            let form: HashMap<String, String> =
                form_urlencoded::parse(&seen.body).into_owned().collect();
            let n = issued.fetch_add(1, Ordering::SeqCst);
            match form.get("grant_type").map(String::as_str) {
                Some("authorization_code") => json_response(
                    200,
                    json!({"access_token": format!("at-{n}"), "token_type": "bearer",
                           "refresh_token": "rt-0", "expires_in": first_expires_in}),
                ),
                Some("refresh_token") if refusing.load(Ordering::SeqCst) => json_response(
                    400,
                    json!({"error": "invalid_grant", "error_description": "revoked by the user"}),
                ),
                Some("refresh_token") => {
                    std::thread::sleep(delay);
                    // Rotated refresh token; expires_in as a string.
                    json_response(
                        200,
                        json!({"access_token": format!("at-{n}"), "token_type": "Bearer",
                               "refresh_token": format!("rt-{n}"), "expires_in": "3600"}),
                    )
                }
                _ => json_response(400, json!({"error": "unsupported_grant_type"})),
            }
        })
        .await;
        Self { api, refuse }
    }

    fn grants(&self, grant: &str) -> usize {
        self.api
            .seen()
            .iter()
            .filter(|s| s.path == "/token")
            .filter(|s| {
                form_urlencoded::parse(&s.body).any(|(k, v)| k == "grant_type" && v == grant)
            })
            .count()
    }
}

/// The `oauth2-mock-server` package, run with node. Killed on drop.
struct MockOAuth {
    child: Child,
    base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for MockOAuth {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn oauth_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oauth")
}

impl MockOAuth {
    /// Starts the mock, or reports the test as skipped (`None`) when its packages are missing.
    fn start(test: &str, env: &[(&str, &str)]) -> Option<Self> {
        let dir = oauth_dir();
        if !dir.join("node_modules/oauth2-mock-server").is_dir() {
            assert!(
                std::env::var_os("SWITCHBOARD_TEST_OAUTH").is_none(),
                "SWITCHBOARD_TEST_OAUTH is set but {}/node_modules is missing: run `npm ci` there",
                dir.display()
            );
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: run `npm ci` in {} (and set SWITCHBOARD_TEST_OAUTH=1 to require it)",
                dir.display()
            );
            return None;
        }
        let mut child = Command::new("node")
            .arg("server.mjs")
            .current_dir(&dir)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node (the OAuth2 mock server needs node)");
        let stdout = child.stdout.take().expect("stdout");
        let mut mock = Self {
            child,
            base: String::new(),
            log: Arc::default(),
        };
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let line = line.expect("read mock stdout");
            if let Some(url) = line.strip_prefix("listening ") {
                mock.base = url.trim().to_owned();
                break;
            }
        }
        assert!(
            !mock.base.is_empty(),
            "the OAuth2 mock server did not start"
        );
        let log = mock.log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                log.lock().expect("lock").push(line);
            }
        });
        Some(mock)
    }

    fn count(&self, line: &str) -> usize {
        self.log
            .lock()
            .expect("lock")
            .iter()
            .filter(|l| *l == line)
            .count()
    }

    /// Waits until the mock logged `line` `n` times (its log arrives through a pipe, after the
    /// response), then checks that it is exactly `n`.
    async fn expect_count(&self, line: &str, n: usize) {
        crate::support::eventually(
            std::time::Duration::from_secs(10),
            &format!("{n} × `{line}` in the mock's log"),
            || async { (self.count(line) >= n).then_some(()) },
        )
        .await;
        assert_eq!(self.count(line), n, "`{line}` in the mock's log");
    }
}

// ---------------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------------

/// A server whose `providers_dir` holds `files` (name → TOML).
async fn server_with(
    files: &[(&str, String)],
    tune: impl FnOnce(&mut Config),
) -> (TestServer, tempfile::TempDir) {
    let providers = tempfile::tempdir().expect("providers dir");
    for (name, text) in files {
        std::fs::write(providers.path().join(name), text).expect("write provider file");
    }
    let mut config = Config::default();
    config.security.allow_private_networks = true;
    config.server.admin_token = Some(ADMIN_TOKEN.into());
    config.connections.providers_dir = Some(providers.path().to_owned());
    tune(&mut config);
    (TestServer::start(config).await, providers)
}

/// A provider file for an OAuth2 provider at `auth` calling the API at `api`.
fn oauth_provider(id: &str, auth: &str, api: &str, extra: &str) -> String {
    format!(
        r#"id = "{id}"
name = "Test {id}"
base_url = "{api}/v1"
auth_modes = ["oauth2", "oauth2_client_credentials"]
headers = {{ accept = "application/json" }}
{extra}
[oauth2]
authorize_url = "{auth}/authorize"
token_url = "{auth}/token"
revoke_url = "{auth}/revoke"
default_scopes = ["read", "write"]
client_auth = "basic"
pkce = true
"#
    )
}

/// Authorizes `connection` like a user would: ask Switchboard for the authorize URL, then let
/// a browser-like client follow the provider's redirect back to `/oauth/callback`.
async fn authorize(api: &ApiClient, provider: &str, connection: &str) -> String {
    // Switchboard answers 302; do not follow it with the API token.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let started = no_redirects
        .get(format!(
            "{}/v1/connect/{provider}?connection_id={connection}",
            api.base
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("connect");
    assert_eq!(started.status(), 302);
    let location = started
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("location")
        .to_owned();
    assert!(
        location.contains("code_challenge_method=S256"),
        "{location}"
    );
    assert!(location.contains("state="), "{location}");
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .expect("client");
    let page = browser.get(&location).send().await.expect("authorize");
    let final_url = page.url().to_string();
    assert_eq!(page.status(), 200, "ended at {final_url}");
    let text = page.text().await.expect("page");
    assert!(text.contains("Connected"), "{text}");
    // The callback (outside /v1, no token) is in the audit trail.
    let audit = api
        .get(&format!(
            "/v1/audit?resource=connection:{connection}&action=authorize"
        ))
        .await;
    let entries = audit.ok(200)["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        entries
            .iter()
            .any(|e| e["actor"] == "oauth-callback" && e["path"] == "/oauth/callback"),
        "{}",
        audit.text
    );
    final_url
}

/// Every file of the data directory, concatenated (the database, its WAL).
fn data_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read data dir").flatten() {
        if entry.file_name() == "master.key" {
            continue;
        }
        if let Ok(bytes) = std::fs::read(entry.path()) {
            all.extend(bytes);
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

/// An API-key connection: the proxy forwards method, path, query, headers and body with the
/// key injected and the caller's token and hop-by-hop headers removed, and answers as the API
/// did; the API never shows the key and the database holds it only sealed; a retryable error
/// that outlasts the retries comes back normalised.
#[tokio::test]
async fn api_key_proxy_forwards_and_never_shows_the_secret() {
    const KEY: &str = "sk_live_TOPSECRET_0123456789";
    let upstream = FakeApi::start(|seen, _| {
        if seen.path.ends_with("/fail") {
            let mut response = json_response(
                503,
                json!({"error": {"code": "overloaded", "message": "try again later"}}),
            );
            response
                .headers_mut()
                .insert("retry-after", "0".parse().expect("header"));
            return response;
        }
        let mut response = (StatusCode::CREATED, seen.body.clone()).into_response();
        response
            .headers_mut()
            .insert("x-upstream", "yes".parse().expect("header"));
        response
            .headers_mut()
            .insert("keep-alive", "timeout=5".parse().expect("header"));
        response
    })
    .await;
    let provider = format!(
        r#"id = "echo"
name = "Echo"
base_url = "{}/api/{{tenant}}"
auth_modes = ["api_key", "basic"]
headers = {{ "x-api-version" = "7" }}
[api_key]
header = "x-api-key"
[retry]
statuses = [503]
[errors]
code = "/error/code"
message = "/error/message"
"#,
        upstream.base
    );
    let (server, _providers) = server_with(&[("echo.toml", provider)], |c| {
        c.connections.max_retries = 1;
    })
    .await;
    let api = server.api();

    // Refusals name the field.
    let missing = api
        .post(
            "/v1/connections",
            &json!({"id": "e1", "provider": "echo", "credentials": {"api_key": KEY}}),
        )
        .await;
    assert_eq!(
        missing.problem(422, "validation_failed")["errors"][0]["field"],
        "params"
    );
    let unknown = api
        .post(
            "/v1/connections",
            &json!({"id": "e1", "provider": "nope", "credentials": {"api_key": KEY}}),
        )
        .await;
    assert_eq!(
        unknown.problem(422, "validation_failed")["errors"][0]["field"],
        "provider"
    );
    let wrong_mode = api
        .post(
            "/v1/connections",
            &json!({"id": "e1", "provider": "echo", "params": {"tenant": "acme"},
                    "credentials": {"token": KEY}}),
        )
        .await;
    assert_eq!(
        wrong_mode.problem(422, "validation_failed")["errors"][0]["field"],
        "auth_mode"
    );

    let created = api
        .post(
            "/v1/connections",
            &json!({"id": "e1", "provider": "echo", "params": {"tenant": "acme"},
                    "credentials": {"api_key": KEY}}),
        )
        .await;
    let body = created.ok(201);
    assert_eq!(body["status"], "active");
    assert_eq!(body["auth_mode"], "api_key");
    assert_eq!(body["credentials"], json!(["api_key"]));
    assert!(!created.text.contains(KEY), "{}", created.text);
    api.post(
        "/v1/connections",
        &json!({"id": "e1", "provider": "echo", "params": {"tenant": "acme"},
                "credentials": {"api_key": KEY}}),
    )
    .await
    .problem(409, "already_exists");
    for path in ["/v1/connections", "/v1/connections/e1"] {
        let shown = api.get(path).await;
        assert_eq!(shown.status, 200);
        assert!(!shown.text.contains(KEY), "{path}: {}", shown.text);
    }
    let providers = api.get("/v1/providers").await;
    let ids: Vec<&str> = providers
        .ok(200)
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert!(ids.contains(&"echo") && ids.contains(&"github"), "{ids:?}");

    let forwarded = api
        .send(
            api.request(reqwest::Method::POST, "/v1/proxy/e1/items/42?x=1&y=two")
                .header("x-custom", "kept")
                .header("x-request-id", "proxy-req-1")
                .header(
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                )
                .header("proxy-authorization", "Basic c2VjcmV0")
                .header("content-type", "application/json")
                .body("{\"hello\":\"world\"}"),
        )
        .await;
    assert_eq!(forwarded.status, 201, "{}", forwarded.text);
    assert_eq!(forwarded.text, "{\"hello\":\"world\"}");
    assert_eq!(forwarded.header("x-upstream"), "yes");
    assert_eq!(forwarded.header("keep-alive"), "", "hop-by-hop removed");
    let seen = upstream.seen();
    let call = seen.last().expect("a call");
    assert_eq!(call.method, "POST");
    assert_eq!(call.path, "/api/acme/items/42");
    assert_eq!(call.query.as_deref(), Some("x=1&y=two"));
    assert_eq!(header(&call.headers, "x-api-key").as_deref(), Some(KEY));
    assert_eq!(header(&call.headers, "x-api-version").as_deref(), Some("7"));
    assert_eq!(header(&call.headers, "x-custom").as_deref(), Some("kept"));
    assert_eq!(
        header(&call.headers, "authorization"),
        None,
        "the Switchboard token stays"
    );
    assert_eq!(header(&call.headers, "proxy-authorization"), None);
    assert_eq!(call.body.as_ref(), b"{\"hello\":\"world\"}");
    // The caller's request id goes on; the call continues the caller's trace from its own span.
    assert_eq!(
        header(&call.headers, "x-request-id").as_deref(),
        Some("proxy-req-1")
    );
    let traceparent = header(&call.headers, "traceparent").expect("traceparent");
    assert!(
        traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")
            && !traceparent.contains("00f067aa0ba902b7"),
        "{traceparent}"
    );

    // A retryable error that outlasts the retries: normalised, with the provider's status.
    let failed = api.get("/v1/proxy/e1/fail").await;
    let problem = failed.problem(503, "provider_error");
    assert_eq!(
        problem["provider_error"],
        json!({"provider": "echo", "status": 503, "code": "overloaded",
               "message": "try again later", "retryable": true})
    );
    let fails: Vec<Seen> = upstream
        .seen()
        .into_iter()
        .filter(|s| s.path.ends_with("/fail"))
        .collect();
    assert_eq!(fails.len(), 2, "one retry");
    // Without the caller's ids, the call gets a fresh request id, kept across its retries.
    let ids: Vec<Option<String>> = fails
        .iter()
        .map(|s| header(&s.headers, "x-request-id"))
        .collect();
    assert!(
        ids[0].is_some() && ids[0] != Some("proxy-req-1".into()),
        "{ids:?}"
    );
    assert_eq!(ids[0], ids[1]);

    // Scopes: a read token may GET through the proxy but not POST.
    let token = api
        .post("/v1/tokens", &json!({"name": "reader", "scopes": ["read"]}))
        .await;
    let reader = api.with_token(token.ok(201)["token"].as_str().expect("token"));
    assert_eq!(reader.get("/v1/proxy/e1/items").await.status, 201);
    reader
        .post("/v1/proxy/e1/items", &json!({}))
        .await
        .problem(403, "forbidden");
    api.anonymous()
        .get("/v1/proxy/e1/items")
        .await
        .problem(401, "unauthorized");
    api.get("/v1/proxy/nope/items")
        .await
        .problem(404, "not_found");

    // Sealed at rest: the key is nowhere in the database files.
    assert!(!contains(&data_bytes(server.dir.path()), KEY));

    assert_eq!(api.delete("/v1/connections/e1").await.status, 204);
    api.get("/v1/connections/e1")
        .await
        .problem(404, "not_found");
    server.stop().await;
}

/// Authorization code with PKCE against oauth2-mock-server, then refresh on expiry (with
/// `expires_in` sent as a string) and on a 401, the tokens never shown and never stored in
/// clear, and revocation on delete.
#[tokio::test]
async fn oauth2_authorization_code_with_pkce_and_refreshes() {
    let test = "oauth2_authorization_code_with_pkce_and_refreshes";
    // Tokens live 62 s and are refreshed 60 s before: stale two seconds after they are issued.
    let Some(mock) = MockOAuth::start(
        test,
        &[("MOCK_TOKEN_TTL", "62"), ("MOCK_TTL_AS_STRING", "1")],
    ) else {
        return;
    };
    let reject = Arc::new(Mutex::new(None::<String>));
    let rejecting = reject.clone();
    let upstream = FakeApi::start(move |seen, _| {
        // Rejects the named token once (the mock's JWTs issued within one second are equal).
        let token = header(&seen.headers, "authorization").unwrap_or_default();
        let mut rejected = rejecting.lock().expect("lock");
        if rejected.as_deref() == Some(token.as_str()) {
            *rejected = None;
            return json_response(401, json!({"message": "revoked"}));
        }
        json_response(200, json!({"user": "johndoe"}))
    })
    .await;
    let (server, _providers) = server_with(
        &[(
            "mock.toml",
            oauth_provider("mock", &mock.base, &upstream.base, ""),
        )],
        |_| {},
    )
    .await;
    let api = server.api();
    const CLIENT_SECRET: &str = "client-secret-NEVER-SHOWN-42";
    let created = api
        .post(
            "/v1/connections",
            &json!({"id": "m1", "provider": "mock", "auth_mode": "oauth2",
                    "credentials": {"client_id": "switchboard", "client_secret": CLIENT_SECRET}}),
        )
        .await;
    assert_eq!(created.ok(201)["status"], "pending");
    // A pending connection cannot be used yet.
    api.get("/v1/proxy/m1/me")
        .await
        .problem(409, "connection_not_ready");

    let callback = authorize(&api, "mock", "m1").await;
    mock.expect_count("token authorization_code", 1).await;
    let shown = api.get("/v1/connections/m1").await;
    let body = shown.ok(200);
    assert_eq!(body["status"], "active", "{}", shown.text);
    assert_eq!(body["has_refresh_token"], true);
    assert!(body["expires_at"].is_string());
    // The scopes the provider granted (the mock grants `dummy` whatever was asked).
    assert_eq!(body["scopes"], json!(["dummy"]));
    assert!(!shown.text.contains(CLIENT_SECRET));
    // The state is single-use.
    let replay = reqwest::get(&callback).await.expect("replay");
    assert_eq!(replay.status(), 400);

    let first = api.get("/v1/proxy/m1/me").await;
    assert_eq!(first.status, 200, "{}", first.text);
    let token_1 = header(&upstream.seen()[0].headers, "authorization").expect("auth header");
    assert!(
        token_1.starts_with("Bearer ey"),
        "a JWT from the mock: {token_1}"
    );

    // Refresh on expiry (proactive, within the margin): one refresh, a new token upstream.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(api.get("/v1/proxy/m1/me").await.status, 200);
    mock.expect_count("token refresh_token", 1).await;
    let token_2 = header(&upstream.seen()[1].headers, "authorization").expect("auth header");
    assert_ne!(token_1, token_2);

    // Refresh on 401: the provider rejects the current token once.
    *reject.lock().expect("lock") = Some(token_2);
    let after_401 = api.get("/v1/proxy/m1/me").await;
    assert_eq!(after_401.status, 200, "{}", after_401.text);
    assert_eq!(after_401.header("x-switchboard-attempts"), "1");
    mock.expect_count("token refresh_token", 2).await;
    assert_eq!(
        upstream.seen().len(),
        4,
        "the rejected call was repeated once"
    );

    // An explicit refresh.
    let refreshed = api.post("/v1/connections/m1/refresh", &json!({})).await;
    assert_eq!(refreshed.ok(200)["status"], "active");
    mock.expect_count("token refresh_token", 3).await;

    // Nothing secret in clear in the database; the API shows no token.
    let bytes = data_bytes(server.dir.path());
    assert!(!contains(&bytes, CLIENT_SECRET));
    let latest = header(
        &upstream.seen().last().expect("call").headers,
        "authorization",
    )
    .expect("auth");
    let access_token = latest.trim_start_matches("Bearer ");
    assert!(!contains(&bytes, access_token));
    assert!(!api.get("/v1/connections").await.text.contains(access_token));

    assert_eq!(api.delete("/v1/connections/m1").await.status, 204);
    eventually(
        Duration::from_secs(10),
        "revocation at the provider",
        || async { (mock.count("revoke") == 1).then_some(()) },
    )
    .await;
    server.stop().await;
}

/// Client credentials against oauth2-mock-server: the first call fetches a token, later ones
/// reuse it, an explicit refresh fetches another; a refused grant marks `needs_reauth`.
#[tokio::test]
async fn oauth2_client_credentials() {
    let Some(mock) = MockOAuth::start("oauth2_client_credentials", &[]) else {
        return;
    };
    let upstream = FakeApi::start(|_, _| json_response(200, json!({"ok": true}))).await;
    let (server, _providers) = server_with(
        &[(
            "mock.toml",
            oauth_provider("mock", &mock.base, &upstream.base, ""),
        )],
        |_| {},
    )
    .await;
    let api = server.api();
    let created = api
        .post(
            "/v1/connections",
            &json!({"id": "cc", "provider": "mock", "auth_mode": "oauth2_client_credentials",
                    "scopes": ["reports"],
                    "credentials": {"client_id": "machine", "client_secret": "s3cr3t"}}),
        )
        .await;
    assert_eq!(created.ok(201)["status"], "active");
    for _ in 0..3 {
        assert_eq!(api.get("/v1/proxy/cc/reports").await.status, 200);
    }
    mock.expect_count("token client_credentials", 1).await;
    let auth = header(&upstream.seen()[0].headers, "authorization").expect("auth");
    assert!(auth.starts_with("Bearer "), "{auth}");
    let refreshed = api.post("/v1/connections/cc/refresh", &json!({})).await;
    assert_eq!(refreshed.ok(200)["status"], "active");
    mock.expect_count("token client_credentials", 2).await;
    // Not an OAuth2 connection: nothing to refresh.
    server.stop().await;
}

/// 200 concurrent proxy calls on an expired token: exactly one refresh reaches the token
/// endpoint, every call succeeds with the new token, and the rotated refresh token is stored.
#[tokio::test]
async fn two_hundred_callers_refresh_once() {
    let auth = FakeAuth::start(Duration::from_millis(300), 1).await;
    let upstream = FakeApi::start(|_, _| json_response(200, json!({"ok": true}))).await;
    let (server, _providers) = server_with(
        &[(
            "flaky.toml",
            oauth_provider("flaky", &auth.api.base, &upstream.base, ""),
        )],
        |c| c.connections.max_concurrent = 256,
    )
    .await;
    let api = server.api();
    api.post(
        "/v1/connections",
        &json!({"id": "f1", "provider": "flaky", "auth_mode": "oauth2",
                "credentials": {"client_id": "c", "client_secret": "s"}}),
    )
    .await
    .ok(201);
    authorize(&api, "flaky", "f1").await;
    // The first token expires in 1 s, well inside the 60 s margin: it is stale already.
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { api.get("/v1/proxy/f1/ping").await.status })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.expect("task"), 200);
    }
    assert_eq!(auth.grants("refresh_token"), 1, "exactly one refresh");
    let tokens: std::collections::HashSet<String> = upstream
        .seen()
        .iter()
        .filter_map(|s| header(&s.headers, "authorization"))
        .collect();
    assert_eq!(
        tokens.len(),
        1,
        "every call used the refreshed token: {tokens:?}"
    );
    // The rotated refresh token was stored: the next refresh sends it.
    api.post("/v1/connections/f1/refresh", &json!({}))
        .await
        .ok(200);
    let last = auth
        .api
        .seen()
        .into_iter()
        .rev()
        .find(|s| s.path == "/token")
        .expect("a refresh");
    let form: HashMap<String, String> = form_urlencoded::parse(&last.body).into_owned().collect();
    assert_eq!(form["refresh_token"], "rt-1");
    server.stop().await;
}

/// Pacing: the provider file's pace matches the API's limit, so 60 calls from 8 concurrent
/// callers meet no 429; a 429 with `Retry-After: 1` is waited out and retried.
#[tokio::test]
async fn pacing_avoids_429s_and_retry_after_is_honoured() {
    // The API allows 10 calls a second with a bucket of 5, and says so in its headers.
    let bucket = Arc::new(Mutex::new((5.0f64, Instant::now())));
    let limited_once = Arc::new(AtomicUsize::new(0));
    let upstream = FakeApi::start(move |seen, _| {
        if seen.path.ends_with("/once") && limited_once.fetch_add(1, Ordering::SeqCst) == 0 {
            let mut response = json_response(429, json!({"message": "slow down"}));
            response
                .headers_mut()
                .insert("retry-after", "1".parse().expect("header"));
            return response;
        }
        let mut state = bucket.lock().expect("lock");
        let elapsed = state.1.elapsed().as_secs_f64();
        state.0 = (state.0 + elapsed * 10.0).min(5.0);
        state.1 = Instant::now();
        if state.0 < 1.0 {
            return json_response(429, json!({"message": "rate limited"}));
        }
        state.0 -= 1.0;
        let mut response = json_response(200, json!({"ok": true}));
        response.headers_mut().insert(
            "x-ratelimit-remaining",
            (state.0 as u64).to_string().parse().expect("header"),
        );
        response
    })
    .await;
    let provider = format!(
        r#"id = "paced"
name = "Paced"
base_url = "{}"
auth_modes = ["bearer"]
[rate_limit]
remaining_header = "x-ratelimit-remaining"
reset_header = "x-ratelimit-reset"
reset_format = "seconds"
requests_per_second = 10
burst = 2
"#,
        upstream.base
    );
    let (server, _providers) = server_with(&[("paced.toml", provider)], |_| {}).await;
    let api = server.api();
    api.post(
        "/v1/connections",
        &json!({"id": "p1", "provider": "paced", "credentials": {"token": "t"}}),
    )
    .await
    .ok(201);
    // One node (SQLite): its share is the whole pace.
    let health = api.get("/v1/health").await;
    let p1 = health.ok(200)["connections"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["id"] == "p1"))
        .expect("p1 in /v1/health");
    assert_eq!(
        p1["pace"],
        json!({"requests_per_second": 10.0, "burst": 2, "nodes": 1,
               "node_requests_per_second": 10.0, "node_burst": 2}),
        "{p1}"
    );
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let api = api.clone();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for i in 0..8 {
                    // Distinct queries: identical concurrent GETs would be coalesced.
                    let path = format!("/v1/proxy/p1/items?n={task}-{i}");
                    statuses.push(api.get(&path).await.status);
                }
                statuses
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.extend(task.await.expect("task"));
    }
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 64, "no retries were needed: zero 429s");
    // 64 calls at 10/s with a burst of 2 take at least 6 seconds.
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    let once = api.get("/v1/proxy/p1/once").await;
    assert_eq!(once.status, 200, "{}", once.text);
    assert_eq!(once.header("x-switchboard-attempts"), "2");
    let tries: Vec<Instant> = upstream
        .seen()
        .iter()
        .filter(|s| s.path.ends_with("/once"))
        .map(|s| s.at)
        .collect();
    assert_eq!(tries.len(), 2);
    assert!(
        tries[1] - tries[0] >= Duration::from_millis(950),
        "Retry-After honoured: {:?}",
        tries[1] - tries[0]
    );
    server.stop().await;
}

/// Two server processes sharing PostgreSQL: 100 concurrent calls to each on an expired token
/// make exactly one refresh between them.
#[tokio::test]
async fn two_nodes_refresh_once() {
    let Some(pg) = std::env::var("SWITCHBOARD_TEST_PG")
        .ok()
        .filter(|v| !v.trim().is_empty())
    else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED two_nodes_refresh_once: set SWITCHBOARD_TEST_PG=postgres://… to run it"
        );
        return;
    };
    let auth = FakeAuth::start(Duration::from_millis(300), 1).await;
    let upstream = FakeApi::start(|_, _| json_response(200, json!({"ok": true}))).await;
    let schema = Schema::create(&pg, "sb_conn");
    let providers = tempfile::tempdir().expect("providers");
    std::fs::write(
        providers.path().join("flaky.toml"),
        oauth_provider("flaky", &auth.api.base, &upstream.base, ""),
    )
    .expect("write provider");
    let toml = format!(
        r#"
[server]
database_url = "{}"
database_max_connections = 8

[security]
allow_private_networks = true

[connections]
providers_dir = "{}"
max_concurrent = 256
"#,
        schema.url(),
        providers.path().display()
    );
    let key = master_key();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().expect("dir")).collect();
    let nodes: Vec<Process> = dirs
        .iter()
        .map(|dir| {
            Process::spawn_with(
                dir.path(),
                &toml,
                "127.0.0.1:0",
                &[("SWITCHBOARD_MASTER_KEY", &key)],
            )
        })
        .collect();
    let a = ApiClient::new(&nodes[0].base, Some(ADMIN_TOKEN));
    let b = ApiClient::new(&nodes[1].base, Some(ADMIN_TOKEN));
    a.post(
        "/v1/connections",
        &json!({"id": "shared", "provider": "flaky", "auth_mode": "oauth2",
                "credentials": {"client_id": "c", "client_secret": "s"}}),
    )
    .await
    .ok(201);
    authorize(&a, "flaky", "shared").await;
    // Node b sees the connection through the shared database.
    assert_eq!(
        b.get("/v1/connections/shared").await.ok(200)["status"],
        "active"
    );
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let node = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { node.get("/v1/proxy/shared/ping").await })
        })
        .collect();
    for call in calls {
        let answer = call.await.expect("task");
        assert_eq!(answer.status, 200, "{}", answer.text);
    }
    assert_eq!(
        auth.grants("refresh_token"),
        1,
        "exactly one refresh across two nodes"
    );
    drop(nodes);
    drop(schema);
}

/// Two server processes sharing PostgreSQL split a connection's pace: a provider paced at
/// 10 calls/s, hammered through the proxy of both nodes at once, receives about 10 calls/s in
/// all (each node paces at 5/s), not 10/s per node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_split_a_connections_pace() {
    const RATE: f64 = 10.0;
    let Some(pg) = std::env::var("SWITCHBOARD_TEST_PG")
        .ok()
        .filter(|v| !v.trim().is_empty())
    else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED two_nodes_split_a_connections_pace: set SWITCHBOARD_TEST_PG=postgres://… to run it"
        );
        return;
    };
    let upstream = FakeApi::start(|_, _| json_response(200, json!({"ok": true}))).await;
    let schema = Schema::create(&pg, "sb_pace");
    let providers = tempfile::tempdir().expect("providers");
    std::fs::write(
        providers.path().join("paced.toml"),
        format!(
            "id = \"paced\"\nname = \"Paced\"\nbase_url = \"{}\"\nauth_modes = [\"bearer\"]\n\
             [rate_limit]\nrequests_per_second = {RATE}\nburst = 2\n",
            upstream.base
        ),
    )
    .expect("write provider");
    let toml = format!(
        r#"
[server]
database_url = "{}"
database_max_connections = 8

[security]
allow_private_networks = true

[connections]
providers_dir = "{}"
"#,
        schema.url(),
        providers.path().display()
    );
    let key = master_key();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().expect("dir")).collect();
    let nodes: Vec<Process> = dirs
        .iter()
        .map(|dir| {
            Process::spawn_with(
                dir.path(),
                &toml,
                "127.0.0.1:0",
                &[("SWITCHBOARD_MASTER_KEY", &key)],
            )
        })
        .collect();
    let apis: Vec<ApiClient> = nodes
        .iter()
        .map(|node| ApiClient::new(&node.base, Some(ADMIN_TOKEN)))
        .collect();
    apis[0]
        .post(
            "/v1/connections",
            &json!({"id": "p2", "provider": "paced", "credentials": {"token": "t"}}),
        )
        .await
        .ok(201);
    // Both nodes have heard each other's heartbeat: each paces at half the rate.
    for api in &apis {
        let pace = eventually(Duration::from_secs(20), "both nodes counted", || {
            let api = api.clone();
            async move {
                let health = api.get("/v1/health").await;
                let pace = health.body["connections"]
                    .as_array()?
                    .iter()
                    .find(|c| c["id"] == "p2")?["pace"]
                    .clone();
                (pace["nodes"] == 2).then_some(pace)
            }
        })
        .await;
        assert_eq!(pace["requests_per_second"], RATE, "{pace}");
        assert_eq!(pace["node_requests_per_second"], RATE / 2.0, "{pace}");
        assert_eq!(pace["burst"], 2, "{pace}");
        assert_eq!(pace["node_burst"], 1, "{pace}");
    }
    // Four callers per node for three seconds; the first second (bursts) is not measured.
    let started = Instant::now();
    let end = started + Duration::from_secs(3);
    let callers: Vec<_> = (0..8)
        .map(|caller| {
            let api = apis[caller % 2].clone();
            tokio::spawn(async move {
                let mut calls = 0u32;
                while Instant::now() < end {
                    // Distinct queries: identical concurrent GETs would be coalesced.
                    let answer = api
                        .get(&format!("/v1/proxy/p2/ping?c={caller}-{calls}"))
                        .await;
                    assert_eq!(answer.status, 200, "{}", answer.text);
                    calls += 1;
                }
                calls
            })
        })
        .collect();
    for caller in callers {
        caller.await.expect("caller");
    }
    let window = (started + Duration::from_secs(1), end);
    let seen = upstream
        .seen()
        .iter()
        .filter(|s| s.at >= window.0 && s.at < window.1)
        .count();
    let per_second = seen as f64 / (window.1 - window.0).as_secs_f64();
    let _ = writeln!(
        std::io::stderr(),
        "two nodes paced at {RATE}/s in all: the provider received {per_second:.1}/s"
    );
    // Unsplit, each node would pace at the full rate: about 2 × RATE in all.
    assert!(
        per_second < 1.5 * RATE,
        "the nodes together exceeded the pace: {per_second:.1}/s"
    );
    assert!(
        per_second > 0.5 * RATE,
        "the nodes stayed far below the pace: {per_second:.1}/s"
    );
    drop(nodes);
    drop(schema);
}

/// Runs the real binary against `base` with the admin token, feeding `stdin`.
async fn cli(base: &str, args: &[&str], stdin: &str) -> (i32, String, String) {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .env_remove("SWITCHBOARD_CONFIG")
        .env_remove("SWITCHBOARD_DATA_DIR")
        .env("SWITCHBOARD_URL", base)
        .env("SWITCHBOARD_TOKEN", ADMIN_TOKEN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run switchboard");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("write stdin");
    drop(input);
    let output = child.wait_with_output().await.expect("wait");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The CLI: create (the key read from standard input), list, show, test, connect, delete —
/// and no secret in any output.
#[tokio::test]
async fn cli_manages_connections() {
    const KEY: &str = "cli-key-NEVER-PRINTED-77";
    let upstream = FakeApi::start(|_, _| json_response(200, json!({"hello": "cli"}))).await;
    let auth = FakeAuth::start(Duration::ZERO, 3600).await;
    let keyed = format!(
        "id = \"keyed\"\nname = \"Keyed\"\nbase_url = \"{}\"\nauth_modes = [\"api_key\"]\n",
        upstream.base
    );
    let (server, _providers) = server_with(
        &[
            ("keyed.toml", keyed),
            (
                "flaky.toml",
                oauth_provider("flaky", &auth.api.base, &upstream.base, ""),
            ),
        ],
        |_| {},
    )
    .await;
    let base = server.base.clone();
    let (code, out, err) = cli(
        &base,
        &[
            "connections",
            "create",
            "k1",
            "--provider",
            "keyed",
            "--api-key",
            "-",
        ],
        &format!("{KEY}\n"),
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("created connection k1"), "{out}");
    let (code, out, _) = cli(&base, &["connections", "list"], "").await;
    assert_eq!(code, 0);
    assert!(out.contains("k1") && out.contains("active"), "{out}");
    let (code, out, _) = cli(&base, &["--json", "connections", "show", "k1"], "").await;
    assert_eq!(code, 0);
    let shown: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(shown["credentials"], json!(["api_key"]));
    assert!(!out.contains(KEY));
    let (code, out, err) = cli(&base, &["connections", "test", "k1", "--path", "me"], "").await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("HTTP 200") && out.contains("cli"), "{out}");
    assert_eq!(
        header(&upstream.seen()[0].headers, "authorization").as_deref(),
        Some(format!("Bearer {KEY}").as_str())
    );

    let (code, out, err) = cli(
        &base,
        &[
            "connections",
            "create",
            "o1",
            "--provider",
            "flaky",
            "--auth-mode",
            "oauth2",
            "--client-id",
            "cid",
            "--client-secret",
            "-",
        ],
        "csecret\n",
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("switchboard connect flaky --connection o1"),
        "{err}"
    );
    let (code, out, err) = cli(&base, &["connect", "flaky", "--connection", "o1"], "").await;
    assert_eq!(code, 0, "{out}{err}");
    let url = out.trim();
    assert!(
        url.starts_with(&format!("{}/authorize?", auth.api.base)),
        "{url}"
    );
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    let (code, _, err) = cli(&base, &["connect", "flaky", "--connection", "k1"], "").await;
    assert_eq!(code, 1);
    assert!(err.contains("not `flaky`"), "{err}");

    let (code, out, _) = cli(&base, &["connections", "delete", "k1"], "").await;
    assert_eq!(code, 0);
    assert!(out.contains("deleted connection k1"));
    let (code, _, err) = cli(&base, &["connections", "show", "k1"], "").await;
    assert_eq!(code, 1);
    assert!(err.contains("no connection"), "{err}");
    server.stop().await;
}

/// A refused refresh marks the connection `needs_reauth` and publishes
/// `connection.needs_reauth`; authorizing again publishes `connection.recovered`.
#[tokio::test]
async fn refused_refresh_needs_reauth_and_recovery_is_announced() {
    let auth = FakeAuth::start(Duration::ZERO, 1).await;
    let upstream = FakeApi::start(|_, _| json_response(200, json!({"ok": true}))).await;
    let (server, _providers) = server_with(
        &[(
            "flaky.toml",
            oauth_provider("flaky", &auth.api.base, &upstream.base, ""),
        )],
        |_| {},
    )
    .await;
    let api = server.api();
    api.post(
        "/v1/connections",
        &json!({"id": "r1", "provider": "flaky", "auth_mode": "oauth2",
                "credentials": {"client_id": "c", "client_secret": "s"}}),
    )
    .await
    .ok(201);
    authorize(&api, "flaky", "r1").await;
    auth.refuse.store(true, Ordering::SeqCst);
    let failed = api.get("/v1/proxy/r1/ping").await;
    failed.problem(502, "needs_reauth");
    let shown = api.get("/v1/connections/r1").await;
    assert_eq!(shown.ok(200)["status"], "needs_reauth");
    assert!(
        shown.body["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("invalid_grant"))
    );
    api.get("/v1/proxy/r1/ping")
        .await
        .problem(409, "connection_not_ready");
    auth.refuse.store(false, Ordering::SeqCst);
    authorize(&api, "flaky", "r1").await;
    assert_eq!(
        api.get("/v1/connections/r1").await.ok(200)["status"],
        "active"
    );
    let types = eventually(Duration::from_secs(10), "operational events", || async {
        let events = server
            .store()
            .list_events(&switchboard_store::EventFilter {
                source: Some("switchboard".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("events");
        let types: Vec<String> = events.iter().filter_map(|e| e.event_type.clone()).collect();
        (types.len() >= 2).then_some(types)
    })
    .await;
    assert!(
        types.contains(&"connection.needs_reauth".to_owned()),
        "{types:?}"
    );
    assert!(
        types.contains(&"connection.recovered".to_owned()),
        "{types:?}"
    );
    server.stop().await;
}

/// `kind = "api"`: a CI webhook comments on a "GitHub" pull request (a loopback stand-in)
/// through a bearer-token connection. The path is templated from the event, the body is the
/// route transform's output, the token is injected by the connection; a `503` with
/// `Retry-After` is retried after it; a `422` fails at once with the provider's error
/// normalised in the attempt; a missing connection fails for good.
#[tokio::test]
async fn api_destination_comments_on_a_pull_request() {
    use switchboard_core::DeliveryStatus;
    use switchboard_core::config::{DestinationConfig, RouteConfig};

    const TOKEN: &str = "ghp_TOPSECRET_api_destination";
    let outage = Arc::new(AtomicUsize::new(0));
    let upstream = FakeApi::start(move |seen, _| {
        if seen.path.contains("/issues/13/") {
            return json_response(
                422,
                json!({"message": "Validation Failed",
                       "errors": [{"code": "custom", "message": "locked"}]}),
            );
        }
        if seen.path.contains("/issues/8/") && outage.fetch_add(1, Ordering::SeqCst) == 0 {
            // The first try of PR 8 meets an outage.
            let mut response = json_response(503, json!({"message": "Service Unavailable"}));
            response
                .headers_mut()
                .insert("retry-after", "1".parse().expect("header"));
            return response;
        }
        json_response(201, json!({"id": 1, "body": "ok"}))
    })
    .await;
    let provider = format!(
        r#"id = "ghtest"
name = "GitHub stand-in"
base_url = "{}"
auth_modes = ["bearer"]
headers = {{ accept = "application/vnd.github+json" }}
[retry]
statuses = [500, 502, 503, 504]
[errors]
code = "/errors/0/code"
message = "/message"
"#,
        upstream.base
    );
    let api_destination = |id: &str, connection: &str| -> DestinationConfig {
        serde_json::from_value(json!({
            "kind": "api",
            "id": id,
            "connection": connection,
            "method": "POST",
            "path": "repos/{{ .body.repository.full_name }}/issues/{{ .body.pull_request.number }}/comments",
            "headers": {"x-ci-run": "{{ .body.run_id }}"},
            "timeout": "5s",
            "retry": serde_json::to_value(crate::support::schedule_ms(&[50, 50])).expect("retry"),
        }))
        .expect("api destination")
    };
    let (server, _providers) = server_with(&[("ghtest.toml", provider)], |c| {
        c.delivery.poll_interval = Duration::from_millis(100);
        c.sources.push(switchboard_core::config::SourceConfig::new(
            "ci",
            Default::default(),
        ));
        c.sources.push(switchboard_core::config::SourceConfig::new(
            "orphan",
            Default::default(),
        ));
        c.destinations = vec![
            api_destination("pr-comment", "gh"),
            api_destination("nowhere", "missing"),
        ];
        let transform = r#"{body: "CI \(.body.conclusion) for \(.body.head_sha[0:7])"}"#;
        c.routes = vec![
            RouteConfig {
                id: Some("ci-to-pr".into()),
                source: "ci".into(),
                destination: "pr-comment".into(),
                filter: None,
                transform: Some(transform.into()),
                enabled: true,
            },
            RouteConfig {
                id: Some("orphan".into()),
                source: "orphan".into(),
                destination: "nowhere".into(),
                filter: None,
                transform: None,
                enabled: true,
            },
        ];
    })
    .await;
    let api = server.api();
    api.post(
        "/v1/connections",
        &json!({"id": "gh", "provider": "ghtest", "credentials": {"token": TOKEN}}),
    )
    .await
    .ok(201);
    let event = |number: u64| {
        json!({"repository": {"full_name": "acme/widgets"}, "pull_request": {"number": number},
               "conclusion": "success", "head_sha": "0123456789abcdef", "run_id": 99})
        .to_string()
    };

    // The comment arrives, with the token and the templated path and header.
    let ok = server.ingest_ok("ci", event(7)).await;
    let delivered = server
        .wait_delivery(&ok, "commented", |d| d.status == DeliveryStatus::Succeeded)
        .await;
    assert_eq!(delivered.attempts, 1);
    let seen = upstream.seen();
    let call = seen
        .iter()
        .find(|s| s.path == "/repos/acme/widgets/issues/7/comments")
        .expect("the comment call");
    assert_eq!(call.method, "POST");
    assert_eq!(
        header(&call.headers, "authorization").as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(header(&call.headers, "x-ci-run").as_deref(), Some("99"));
    assert_eq!(
        header(&call.headers, "accept").as_deref(),
        Some("application/vnd.github+json")
    );
    assert_eq!(
        header(&call.headers, "idempotency-key").as_deref(),
        Some(delivered.id.as_str())
    );
    let body: Value = serde_json::from_slice(&call.body).expect("json body");
    assert_eq!(body, json!({"body": "CI success for 0123456"}));
    let attempts = server
        .store()
        .list_attempts(None, Some(&delivered.id))
        .await
        .expect("attempts");
    assert_eq!(attempts[0].status_code, Some(201));
    assert!(
        attempts[0].request_url.starts_with("api gh POST repos/"),
        "{}",
        attempts[0].request_url
    );
    assert!(!attempts[0].request_url.contains(TOKEN));

    // A 503 with Retry-After: 1 is retried after it (by the delivery, not inside the call),
    // then succeeds.
    let flaky = server.ingest_ok("ci", event(8)).await;
    let recovered = server
        .wait_delivery(&flaky, "commented after the outage", |d| {
            d.status == DeliveryStatus::Succeeded
        })
        .await;
    assert_eq!(recovered.attempts, 2);
    let attempts = server
        .store()
        .list_attempts(None, Some(&recovered.id))
        .await
        .expect("attempts");
    assert_eq!(attempts[0].outcome, "retryable");
    assert_eq!(attempts[0].status_code, Some(503));
    let error: Value =
        serde_json::from_str(attempts[0].error.as_deref().unwrap_or("")).expect("json error");
    assert_eq!(
        error,
        json!({"provider": "ghtest", "status": 503, "code": null,
               "message": "Service Unavailable", "retryable": true})
    );
    let waited = attempts[1].started_at - attempts[0].started_at;
    assert!(waited >= 900, "Retry-After: 1 was honoured ({waited} ms)");
    let tries = upstream
        .seen()
        .iter()
        .filter(|s| s.path.contains("/issues/8/"))
        .count();
    assert_eq!(
        tries, 2,
        "one call per attempt: the connection adds no retries of its own"
    );

    // A 422 fails at once, its error normalised.
    let refused = server.ingest_ok("ci", event(13)).await;
    let failed = server
        .wait_delivery(&refused, "refused", |d| d.status == DeliveryStatus::Failed)
        .await;
    assert_eq!(failed.attempts, 1, "a 422 is not retried");
    let error: Value =
        serde_json::from_str(failed.last_error.as_deref().unwrap_or("")).expect("json error");
    assert_eq!(
        error,
        json!({"provider": "ghtest", "status": 422, "code": "custom",
               "message": "Validation Failed", "retryable": false})
    );

    // No such connection: a permanent failure that says so.
    let orphan = server.ingest_ok("orphan", "{}").await;
    let failed = server
        .wait_delivery(&orphan, "no connection", |d| {
            d.status == DeliveryStatus::Failed
        })
        .await;
    assert!(
        failed
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("no connection `missing`"),
        "{:?}",
        failed.last_error
    );
    assert!(!contains(&data_bytes(server.dir.path()), TOKEN));
    server.stop().await;
}

/// The client's memory of a connection: a GET with an `ETag` is revalidated with
/// `If-None-Match` and a `304` answered from the cache (not for `no-store` answers); identical
/// concurrent GETs make one upstream call; a GraphQL `errors` array counts as a failure in the
/// metrics; `Deprecation`/`Sunset` headers become a warning in the connection's status.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gets_are_revalidated_and_coalesced_and_notices_surface() {
    let upstream = FakeApi::start(|seen, _| {
        let tagged = |status: u16, cache: Option<&str>| {
            let mut response = if status == 304 {
                StatusCode::NOT_MODIFIED.into_response()
            } else {
                json_response(200, json!({"items": [1, 2, 3]}))
            };
            response
                .headers_mut()
                .insert("etag", "\"v1\"".parse().expect("header"));
            if let Some(cache) = cache {
                response
                    .headers_mut()
                    .insert("cache-control", cache.parse().expect("header"));
            }
            response
        };
        let revalidating = header(&seen.headers, "if-none-match").as_deref() == Some("\"v1\"");
        match seen.path.as_str() {
            "/v1/tagged" if revalidating => tagged(304, None),
            "/v1/tagged" => tagged(200, None),
            "/v1/secret" if revalidating => tagged(304, Some("no-store")),
            "/v1/secret" => tagged(200, Some("no-store")),
            "/v1/slow" => {
                // Long enough for every concurrent caller to arrive meanwhile, also on a loaded
                // CI machine (500 ms was not: a straggler made a second call).
                std::thread::sleep(Duration::from_secs(3));
                json_response(200, json!({"slow": true}))
            }
            "/v1/graphql" => json_response(
                200,
                json!({"data": null, "errors": [{"message": "Field 'x' doesn't exist"}]}),
            ),
            "/v1/old" => {
                let mut response = json_response(200, json!({}));
                let headers = response.headers_mut();
                headers.insert("deprecation", "@1688169599".parse().expect("header"));
                headers.insert(
                    "sunset",
                    "Wed, 11 Nov 2026 23:59:59 GMT".parse().expect("header"),
                );
                response
            }
            _ => json_response(404, json!({"message": "Not Found"})),
        }
    })
    .await;
    let provider = format!(
        r#"id = "cachy"
name = "Cachy"
base_url = "{}/v1"
auth_modes = ["bearer"]
"#,
        upstream.base
    );
    let (server, _providers) = server_with(&[("cachy.toml", provider)], |_| {}).await;
    let api = server.api();
    api.post(
        "/v1/connections",
        &json!({"id": "c", "provider": "cachy", "credentials": {"token": "t0k"}}),
    )
    .await
    .ok(201);
    let seen_on = |path: &str| -> Vec<Seen> {
        upstream
            .seen()
            .into_iter()
            .filter(|s| s.path == path)
            .collect()
    };

    // ETag revalidation.
    let first = api.get("/v1/proxy/c/tagged").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-switchboard-cache"), "");
    let second = api.get("/v1/proxy/c/tagged").await;
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(second.text, first.text);
    assert_eq!(second.header("x-switchboard-cache"), "revalidated");
    let tagged = seen_on("/v1/tagged");
    assert_eq!(tagged.len(), 2);
    assert_eq!(header(&tagged[0].headers, "if-none-match"), None);
    assert_eq!(
        header(&tagged[1].headers, "if-none-match").as_deref(),
        Some("\"v1\"")
    );
    // `no-store` answers are never kept.
    api.get("/v1/proxy/c/secret").await.ok(200);
    api.get("/v1/proxy/c/secret").await.ok(200);
    assert!(
        seen_on("/v1/secret")
            .iter()
            .all(|s| header(&s.headers, "if-none-match").is_none())
    );

    // Twenty identical GETs at once: one upstream call, twenty answers.
    let calls = (0..20).map(|_| api.get("/v1/proxy/c/slow"));
    let answers = futures::future::join_all(calls).await;
    for answer in &answers {
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(answer.text, "{\"slow\":true}");
    }
    assert_eq!(seen_on("/v1/slow").len(), 1, "coalesced into one call");

    // GraphQL errors are failures in the metrics; deprecations are surfaced.
    api.get("/v1/proxy/c/graphql").await.ok(200);
    api.get("/v1/proxy/c/old").await.ok(200);
    let metrics = api.get("/metrics").await.text;
    assert!(
        metrics
            .lines()
            .any(|l| l
                .starts_with("switchboard_connection_graphql_errors_total{connection=\"c\"} 1")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("switchboard_connection_calls_total")
                && l.contains("outcome=\"graphql_error\"")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("switchboard_connection_cache_hits_total{connection=\"c\"} 1")),
        "{metrics}"
    );
    let shown = api.get("/v1/connections/c").await;
    let shown = shown.ok(200);
    let warning = shown["warnings"][0].as_str().unwrap_or_default().to_owned();
    assert!(
        warning.contains("`old` as deprecated") && warning.contains("2026"),
        "{shown}"
    );
    server.stop().await;
}

/// `PATCH /v1/connections/{id}` changes credentials (merged), parameters and settings in place
/// and answers the redacted view; the next call uses the new key. `POST /v1/connect/{provider}`
/// answers the authorize URL as JSON.
#[tokio::test]
async fn connections_are_patched_in_place_and_connect_answers_json() {
    const OLD: &str = "key-OLD-0001";
    const NEW: &str = "key-NEW-0002";
    let upstream = FakeApi::start(|_, _| json_response(200, json!({"ok": true}))).await;
    let keyed = format!(
        r#"id = "keyed"
name = "Keyed"
base_url = "{}/{{region}}"
auth_modes = ["api_key"]
[api_key]
header = "x-api-key"
"#,
        upstream.base
    );
    let auth = FakeAuth::start(Duration::ZERO, 3600).await;
    let oauth = oauth_provider("oa", &auth.api.base, &upstream.base, "");
    let (server, _providers) =
        server_with(&[("keyed.toml", keyed), ("oa.toml", oauth)], |_| {}).await;
    let api = server.api();
    api.post(
        "/v1/connections",
        &json!({"id": "k", "provider": "keyed", "params": {"region": "eu"},
                "credentials": {"api_key": OLD}}),
    )
    .await
    .ok(201);
    api.get("/v1/proxy/k/ping").await.ok(200);

    let patched = api
        .patch(
            "/v1/connections/k",
            &json!({"credentials": {"api_key": NEW}, "params": {"region": "us"},
                    "settings": {"max_concurrent": 2}}),
        )
        .await;
    assert!(!patched.text.contains(NEW), "{}", patched.text);
    let view = patched.ok(200);
    assert_eq!(view["params"], json!({"region": "us"}));
    assert_eq!(view["settings"]["max_concurrent"], 2);
    assert_eq!(view["credentials"], json!(["api_key"]));
    api.get("/v1/proxy/k/ping").await.ok(200);
    let seen = upstream.seen();
    let last = seen.last().expect("a call");
    assert_eq!(last.path, "/us/ping");
    assert_eq!(header(&last.headers, "x-api-key").as_deref(), Some(NEW));
    assert_eq!(header(&seen[0].headers, "x-api-key").as_deref(), Some(OLD));

    // Refusals: a credential the mode does not use, unknown fields, a missing connection.
    let wrong = api
        .patch("/v1/connections/k", &json!({"credentials": {"token": "x"}}))
        .await;
    assert_eq!(
        wrong.problem(422, "validation_failed")["errors"][0]["field"],
        "credentials.token"
    );
    api.patch("/v1/connections/k", &json!({"provider": "other"}))
        .await
        .problem(422, "validation_failed");
    api.patch("/v1/connections/nope", &json!({}))
        .await
        .problem(404, "not_found");
    assert!(!contains(&data_bytes(server.dir.path()), NEW));

    // The JSON connect flow for API clients.
    api.post(
        "/v1/connections",
        &json!({"id": "o", "provider": "oa", "auth_mode": "oauth2",
                "credentials": {"client_id": "cid", "client_secret": "cs"}}),
    )
    .await
    .ok(201);
    let started = api
        .post("/v1/connect/oa", &json!({"connection_id": "o"}))
        .await;
    let url = started.ok(200)["authorize_url"]
        .as_str()
        .expect("authorize_url")
        .to_owned();
    assert!(
        url.starts_with(&format!("{}/authorize?", auth.api.base)),
        "{url}"
    );
    assert!(
        url.contains("code_challenge_method=S256") && url.contains("state="),
        "{url}"
    );
    api.post("/v1/connect/keyed", &json!({"connection_id": "o"}))
        .await
        .problem(422, "validation_failed");
    server.stop().await;
}

/// A user who refuses at the provider comes back with `error=`: the page says so, the flow's
/// state is spent, the connection stays pending, and the refusal is in the audit trail.
#[tokio::test]
async fn a_refused_authorization_is_reported_spent_and_audited() {
    let (server, _providers) = server_with(
        &[(
            "mock.toml",
            oauth_provider("mock", "http://127.0.0.1:9", "http://127.0.0.1:9", ""),
        )],
        |_| {},
    )
    .await;
    let api = server.api();
    api.post(
        "/v1/connections",
        &json!({"id": "m1", "provider": "mock", "auth_mode": "oauth2",
                "credentials": {"client_id": "switchboard", "client_secret": "s"}}),
    )
    .await
    .ok(201);
    let started = api
        .post("/v1/connect/mock", &json!({"connection_id": "m1"}))
        .await;
    let authorize_url = started.ok(200)["authorize_url"]
        .as_str()
        .expect("authorize url")
        .to_owned();
    let state = reqwest::Url::parse(&authorize_url)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("state");
    let callback = |query: String| {
        let base = server.base.clone();
        async move {
            reqwest::get(format!("{base}/oauth/callback?{query}"))
                .await
                .expect("callback")
        }
    };
    let refused = callback(format!(
        "error=access_denied&error_description=The+user+said+no&state={state}"
    ))
    .await;
    assert_eq!(refused.status(), 400);
    let text = refused.text().await.expect("text");
    assert!(
        text.contains("Authorization refused") && text.contains("The user said no"),
        "{text}"
    );
    // The state was spent: a code arriving with it afterwards is refused.
    let replayed = callback(format!("code=stolen&state={state}")).await;
    assert_eq!(replayed.status(), 400);
    assert_eq!(
        api.get("/v1/connections/m1").await.ok(200)["status"],
        "pending"
    );
    let audit = api
        .get("/v1/audit?resource=connection:m1&action=authorize_refused")
        .await;
    let entries = audit.ok(200)["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(entries.len(), 1, "{}", audit.text);
    assert_eq!(entries[0]["actor"], "oauth-callback");
    assert_eq!(entries[0]["status"], 400);
    server.stop().await;
}
