//! A local REST stand-in for sync tests: a list endpoint over an in-memory set of records, in
//! each pagination style, with rate-limit headers, an API key, injected `500`s and an optional
//! delay per request.
//!
//! `GET /api/{style}/items` where style is
//! - `cursor`: `?cursor=<last id>&limit=n` → `{"data": [...], "next_cursor": "<id>" | null}`
//! - `offset`: `?offset=o&limit=n` → `{"data": [...], "total": t}`
//! - `page`: `?page=p&per_page=n` (1-based) → `[...]`
//! - `link`: `?page=p&per_page=n` → `[...]` with `Link: <…>; rel="next"` while more remain
//!
//! `since=<rev>` (any style) lists only records changed after that revision. Records are listed
//! in id order. Every mutation bumps the revision, a counter shared by every stand-in of the
//! process (so revisions of two stand-ins compare like timestamps).
//!
//! Writes (two-way and REST destinations): `POST /api/{style}/items` with `{"id", "title"}`
//! creates, `PUT /api/{style}/items/{id}` with `{"title"}` updates, `DELETE …/{id}` deletes
//! (`404` when absent).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

/// The API key the stand-in accepts (header `x-api-key`).
pub const API_KEY: &str = "records-key-123";

/// One record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// Primary key.
    pub id: u64,
    /// Content.
    pub title: String,
    /// Revision of the last change (the incremental cursor).
    pub rev: u64,
}

/// The revision counter shared by every stand-in.
static REV: AtomicU64 = AtomicU64::new(0);

fn next_rev() -> u64 {
    REV.fetch_add(1, Ordering::SeqCst) + 1
}

#[derive(Default)]
struct State {
    items: BTreeMap<u64, Item>,
    next_id: u64,
    requests: usize,
    failed: usize,
    fail_every: usize,
    delay: Duration,
    queries: Vec<String>,
}

impl State {
    fn insert(&mut self, n: u64) -> Vec<u64> {
        (0..n)
            .map(|_| {
                self.next_id += 1;
                let id = self.next_id;
                self.items.insert(
                    id,
                    Item {
                        id,
                        title: format!("item {id}"),
                        rev: next_rev(),
                    },
                );
                id
            })
            .collect()
    }
}

/// The running stand-in.
#[derive(Clone)]
pub struct RecordsApi {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    state: Arc<Mutex<State>>,
}

impl RecordsApi {
    /// Starts with `n` records; every `fail_every`-th request (0: none) answers `500`.
    pub async fn start(n: u64, fail_every: usize) -> Self {
        let state = Arc::new(Mutex::new(State {
            fail_every,
            ..State::default()
        }));
        state.lock().expect("lock").insert(n);
        let shared = state.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let own = base.clone();
        let app = axum::Router::new().fallback(move |request: Request| {
            let state = shared.clone();
            let base = own.clone();
            async move { answer(&state, &base, request).await }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { base, state }
    }

    /// A provider file for this API (API key, rate-limit headers, retries on 5xx).
    pub fn provider(&self) -> String {
        format!(
            r#"id = "records"
name = "Records stand-in"
base_url = "{}/api"
auth_modes = ["api_key"]
[api_key]
header = "x-api-key"
[rate_limit]
limit_header = "x-ratelimit-limit"
remaining_header = "x-ratelimit-remaining"
reset_header = "x-ratelimit-reset"
reset_format = "unix_seconds"
[retry]
statuses = [500, 502, 503]
"#,
            self.base
        )
    }

    /// Sets a delay before every answer.
    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().expect("lock").delay = delay;
    }

    /// Adds `n` records; returns their ids.
    pub fn add(&self, n: u64) -> Vec<u64> {
        self.state.lock().expect("lock").insert(n)
    }

    /// Changes the titles of `ids`.
    pub fn update(&self, ids: impl IntoIterator<Item = u64>) {
        let mut state = self.state.lock().expect("lock");
        for id in ids {
            let rev = next_rev();
            if let Some(item) = state.items.get_mut(&id) {
                item.title = format!("{} (edited at {rev})", item.title);
                item.rev = rev;
            }
        }
    }

    /// Removes `ids`.
    pub fn delete(&self, ids: impl IntoIterator<Item = u64>) {
        let mut state = self.state.lock().expect("lock");
        for id in ids {
            state.items.remove(&id);
        }
    }

    /// Every record, in id order.
    pub fn items(&self) -> Vec<Item> {
        self.state
            .lock()
            .expect("lock")
            .items
            .values()
            .cloned()
            .collect()
    }

    /// Requests answered `500` on purpose so far.
    pub fn failed(&self) -> usize {
        self.state.lock().expect("lock").failed
    }

    /// Query strings of the list requests so far.
    pub fn queries(&self) -> Vec<String> {
        self.state.lock().expect("lock").queries.clone()
    }
}

async fn answer(state: &Mutex<State>, base: &str, request: Request) -> Response {
    let delay = state.lock().expect("lock").delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let params: BTreeMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let key_ok = request
        .headers()
        .get("x-api-key")
        .is_some_and(|v| v.as_bytes() == API_KEY.as_bytes());
    let method = request.method().clone();
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let mut state = state.lock().expect("lock");
    state.requests += 1;
    let n = state.requests;
    // Rate-limit headers: a small window that runs out every 50 requests for up to a second.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let remaining = if n.is_multiple_of(50) { 0 } else { 50 - n % 50 };
    let rate_headers = [
        ("x-ratelimit-limit", "50".to_owned()),
        ("x-ratelimit-remaining", remaining.to_string()),
        ("x-ratelimit-reset", (now + 1).to_string()),
    ];
    let finish = |mut response: Response| {
        for (name, value) in &rate_headers {
            if let Ok(value) = HeaderValue::from_str(value) {
                response.headers_mut().insert(*name, value);
            }
        }
        response
    };
    if !key_ok {
        return finish(
            (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"error": "bad key"})),
            )
                .into_response(),
        );
    }
    if state.fail_every > 0 && n.is_multiple_of(state.fail_every) {
        state.failed += 1;
        return finish(
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({"error": "injected failure"})),
            )
                .into_response(),
        );
    }
    if method != axum::http::Method::GET {
        return finish(write(&mut state, &path, &method, &body));
    }
    state.queries.push(query.clone());
    let style = path
        .strip_prefix("/api/")
        .and_then(|rest| rest.strip_suffix("/items"))
        .unwrap_or("")
        .to_owned();
    let number = |name: &str, default: u64| {
        params
            .get(name)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(default)
    };
    let since = number("since", 0);
    let listed: Vec<&Item> = state.items.values().filter(|i| i.rev > since).collect();
    let response = match style.as_str() {
        "cursor" => {
            let after = number("cursor", 0);
            let limit = number("limit", 100) as usize;
            let page: Vec<&Item> = listed
                .iter()
                .copied()
                .filter(|i| i.id > after)
                .take(limit)
                .collect();
            let more = listed
                .iter()
                .any(|i| i.id > page.last().map_or(after, |l| l.id));
            let next = if more && !page.is_empty() {
                page.last().map(|l| json!(l.id.to_string()))
            } else {
                None
            };
            axum::Json(json!({"data": page, "next_cursor": next})).into_response()
        }
        "offset" => {
            let offset = number("offset", 0) as usize;
            let limit = number("limit", 100) as usize;
            let page: Vec<&Item> = listed.iter().copied().skip(offset).take(limit).collect();
            axum::Json(json!({"data": page, "total": listed.len()})).into_response()
        }
        "page" | "link" => {
            let page_no = number("page", 1).max(1) as usize;
            let per_page = number("per_page", 30) as usize;
            let start = (page_no - 1) * per_page;
            let page: Vec<&Item> = listed.iter().copied().skip(start).take(per_page).collect();
            let mut response = axum::Json(json!(page)).into_response();
            if style == "link" && start + per_page < listed.len() {
                let mut next = format!(
                    "{base}/api/link/items?page={}&per_page={per_page}",
                    page_no + 1
                );
                if since > 0 {
                    next.push_str(&format!("&since={since}"));
                }
                let link = format!(
                    "<{base}/api/link/items?page=1&per_page={per_page}>; rel=\"first\", <{next}>; rel=\"next\""
                );
                if let Ok(value) = HeaderValue::from_str(&link) {
                    response.headers_mut().insert("link", value);
                }
            }
            response
        }
        _ => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "no such list"})),
        )
            .into_response(),
    };
    finish(response)
}

/// A write to the collection.
fn write(
    state: &mut State,
    path: &str,
    method: &axum::http::Method,
    body: &serde_json::Value,
) -> Response {
    let rest = path.strip_prefix("/api/").unwrap_or("");
    let id = rest.split('/').nth(2).and_then(|id| id.parse::<u64>().ok());
    let title = body["title"].as_str().unwrap_or("").to_owned();
    match (method.as_str(), id) {
        ("POST", None) => {
            let Some(id) = body["id"].as_u64() else {
                return (StatusCode::UNPROCESSABLE_ENTITY, "id required").into_response();
            };
            state.next_id = state.next_id.max(id);
            let item = Item {
                id,
                title,
                rev: next_rev(),
            };
            state.items.insert(id, item.clone());
            (StatusCode::CREATED, axum::Json(item)).into_response()
        }
        ("PUT", Some(id)) => match state.items.get_mut(&id) {
            Some(item) => {
                item.title = title;
                item.rev = next_rev();
                axum::Json(item.clone()).into_response()
            }
            None => StatusCode::NOT_FOUND.into_response(),
        },
        ("DELETE", Some(id)) => match state.items.remove(&id) {
            Some(_) => StatusCode::NO_CONTENT.into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        },
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

impl RecordsApi {
    /// Sets the title of record `id` (a change made at this side).
    pub fn retitle(&self, id: u64, title: &str) {
        let mut state = self.state.lock().expect("lock");
        if let Some(item) = state.items.get_mut(&id) {
            item.title = title.to_owned();
            item.rev = next_rev();
        }
    }

    /// Adds record `id` with `title`.
    pub fn put(&self, id: u64, title: &str) {
        let mut state = self.state.lock().expect("lock");
        state.next_id = state.next_id.max(id);
        state.items.insert(
            id,
            Item {
                id,
                title: title.to_owned(),
                rev: next_rev(),
            },
        );
    }

    /// `(id, title)` of every record.
    pub fn titles(&self) -> Vec<(u64, String)> {
        self.items().into_iter().map(|i| (i.id, i.title)).collect()
    }
}
