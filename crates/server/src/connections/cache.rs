//! Per-connection memory of provider answers on this node: the ETag cache of GETs
//! (`If-None-Match` revalidation), the coalescing of identical concurrent GETs into one
//! upstream call, and the provider's deprecation notices.
//!
//! The ETag cache is per connection — one credential, so a private cache in HTTP's sense — held
//! in memory only (never written to the store, so no provider data at rest), bounded in entries
//! and in the size of each body, and skips answers marked `Cache-Control: no-store`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use reqwest::header::{HeaderMap, HeaderValue};

use super::client::{ApiRequest, ApiResponse, CallError};

/// Cached answers per connection at most (the oldest goes first).
pub const MAX_ENTRIES: usize = 256;
/// Largest body cached.
pub const MAX_BODY: usize = 1024 * 1024;
/// Request headers that differ per call without changing the answer (left out of the key).
const UNKEYED: &[&str] = &[
    "x-request-id",
    "traceparent",
    "tracestate",
    "user-agent",
    "idempotency-key",
];

/// What identifies a GET: path, query and the headers that may change the answer.
pub fn request_key(request: &ApiRequest) -> String {
    let mut headers: Vec<String> = request
        .headers
        .iter()
        .filter(|(name, _)| !UNKEYED.contains(&name.as_str()))
        .map(|(name, value)| format!("{name}:{}", String::from_utf8_lossy(value.as_bytes())))
        .collect();
    headers.sort();
    format!(
        "{} {}?{}\n{}",
        request.method,
        request.path.trim_start_matches('/'),
        request.query.as_deref().unwrap_or(""),
        headers.join("\n")
    )
}

/// A cached answer and the validator to revalidate it with.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The answer's `ETag`.
    pub etag: HeaderValue,
    /// The answer.
    pub response: ApiResponse,
}

/// The ETag cache of one connection.
#[derive(Debug, Default)]
pub struct ResponseCache {
    inner: Mutex<(HashMap<String, Entry>, VecDeque<String>)>,
}

fn no_store(headers: &HeaderMap) -> bool {
    headers
        .get_all(reqwest::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("no-store"))
}

impl ResponseCache {
    /// The cached answer for `key`.
    pub fn get(&self, key: &str) -> Option<Entry> {
        self.inner.lock().ok()?.0.get(key).cloned()
    }

    /// Remembers a `200` answer that has an `ETag` (and may be stored); forgets `key`
    /// otherwise.
    pub fn store(&self, key: &str, response: &ApiResponse) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let (entries, order) = &mut *inner;
        let etag = response.headers.get(reqwest::header::ETAG).cloned();
        let cacheable = response.status == reqwest::StatusCode::OK
            && response.body.len() <= MAX_BODY
            && !no_store(&response.headers);
        match etag {
            Some(etag) if cacheable => {
                if entries
                    .insert(
                        key.to_owned(),
                        Entry {
                            etag,
                            response: response.clone(),
                        },
                    )
                    .is_none()
                {
                    order.push_back(key.to_owned());
                }
                while entries.len() > MAX_ENTRIES {
                    match order.pop_front() {
                        Some(oldest) => {
                            entries.remove(&oldest);
                        }
                        None => break,
                    }
                }
            }
            _ => {
                if entries.remove(key).is_some() {
                    order.retain(|k| k != key);
                }
            }
        }
    }

    /// Cached answers.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.0.len()).unwrap_or(0)
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The result identical concurrent GETs share.
pub type Shared = Result<ApiResponse, Arc<CallError>>;

/// Identical GETs in flight on one connection.
#[derive(Debug, Default)]
pub struct Coalescer {
    calls: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Shared>>>>,
}

impl Coalescer {
    /// Runs `call` for `key`, or waits for the identical call already running and shares its
    /// answer. If the running call's caller goes away, a waiter makes the call itself.
    pub async fn run<F>(&self, key: String, call: F) -> Shared
    where
        F: Future<Output = Shared>,
    {
        let cell = self
            .calls
            .lock()
            .ok()
            .map(|mut calls| calls.entry(key.clone()).or_default().clone());
        let Some(cell) = cell else {
            return call.await;
        };
        let shared = cell.get_or_init(|| call).await.clone();
        // Whoever sees the answer first retires the entry, so later calls go upstream again.
        if let Ok(mut calls) = self.calls.lock()
            && calls.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell))
        {
            calls.remove(&key);
        }
        shared
    }
}

/// The provider's `Deprecation` / `Sunset` notices seen on this node.
#[derive(Debug, Default)]
pub struct Notices {
    last: Mutex<Option<String>>,
}

impl Notices {
    /// Records a notice from an answer's headers, if it has one; returns whether it had.
    pub fn observe(&self, path: &str, headers: &HeaderMap) -> bool {
        let read = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (deprecation, sunset) = (read("deprecation"), read("sunset"));
        if deprecation.is_none() && sunset.is_none() {
            return false;
        }
        let mut text = format!(
            "the provider marks `{}` as deprecated",
            path.trim_start_matches('/')
        );
        if let Some(d) = deprecation.filter(|d| d != "true" && d != "?1") {
            text.push_str(&format!(" (since {d})"));
        }
        if let Some(s) = sunset {
            text.push_str(&format!("; it stops working at {s}"));
        }
        if let Some(link) =
            read("link").filter(|l| l.contains("deprecation") || l.contains("sunset"))
        {
            text.push_str(&format!("; see {link}"));
        }
        if let Ok(mut last) = self.last.lock() {
            *last = Some(text);
        }
        true
    }

    /// The latest notice.
    pub fn warnings(&self) -> Vec<String> {
        self.last
            .lock()
            .ok()
            .and_then(|l| l.clone())
            .into_iter()
            .collect()
    }
}

/// Whether a JSON body is a GraphQL answer with a non-empty `errors` array (GraphQL reports
/// failures with status 200).
pub fn graphql_errors(headers: &HeaderMap, body: &[u8]) -> bool {
    let json = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    if !json || !body.trim_ascii_start().starts_with(b"{") {
        return false;
    }
    // Cheap test first: most answers never mention `errors`.
    if !body.windows(8).any(|w| w == b"\"errors\"") {
        return false;
    }
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("errors")
                .and_then(|e| e.as_array())
                .map(|a| !a.is_empty())
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use reqwest::{Method, StatusCode};

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> ApiResponse {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(
                reqwest::header::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        ApiResponse {
            status: StatusCode::from_u16(status).expect("status"),
            headers: map,
            body: Bytes::from(body.to_owned()),
            attempts: 1,
            error: None,
        }
    }

    #[test]
    fn keys_ignore_per_call_headers() {
        let mut a = ApiRequest::new(Method::GET, "/repos/o/r");
        a.headers
            .insert("x-request-id", HeaderValue::from_static("1"));
        let mut b = ApiRequest::new(Method::GET, "repos/o/r");
        b.headers
            .insert("x-request-id", HeaderValue::from_static("2"));
        assert_eq!(request_key(&a), request_key(&b));
        b.headers
            .insert("accept", HeaderValue::from_static("text/plain"));
        assert_ne!(request_key(&a), request_key(&b));
    }

    #[test]
    fn only_validated_storable_answers_are_kept_and_the_cache_is_bounded() {
        let cache = ResponseCache::default();
        cache.store("a", &response(200, &[("etag", "\"v1\"")], "{}"));
        assert_eq!(cache.get("a").expect("cached").etag, "\"v1\"");
        cache.store(
            "a",
            &response(
                200,
                &[("etag", "\"v2\""), ("cache-control", "private, no-store")],
                "{}",
            ),
        );
        assert!(cache.get("a").is_none(), "no-store forgets");
        cache.store("b", &response(200, &[], "{}"));
        cache.store("c", &response(404, &[("etag", "\"x\"")], "{}"));
        assert!(cache.is_empty());
        for i in 0..MAX_ENTRIES + 10 {
            cache.store(&i.to_string(), &response(200, &[("etag", "\"e\"")], "{}"));
        }
        assert_eq!(cache.len(), MAX_ENTRIES);
        assert!(cache.get("0").is_none(), "oldest evicted");
    }

    #[test]
    fn graphql_errors_and_deprecations_are_recognised() {
        let json = response(200, &[("content-type", "application/json")], "").headers;
        assert!(graphql_errors(
            &json,
            br#"{"data": null, "errors": [{"message": "x"}]}"#
        ));
        assert!(!graphql_errors(&json, br#"{"data": {}, "errors": []}"#));
        assert!(!graphql_errors(&json, br#"{"data": {"errors": 1}}"#));
        assert!(!graphql_errors(&HeaderMap::new(), br#"{"errors": [1]}"#));
        let notices = Notices::default();
        assert!(!notices.observe("/v1/x", &HeaderMap::new()));
        let headers = response(
            200,
            &[
                ("deprecation", "@1688169599"),
                ("sunset", "Wed, 11 Nov 2026 23:59:59 GMT"),
            ],
            "",
        )
        .headers;
        assert!(notices.observe("/v1/x", &headers));
        assert_eq!(
            notices.warnings(),
            [
                "the provider marks `v1/x` as deprecated (since @1688169599); it stops working at Wed, 11 Nov 2026 23:59:59 GMT"
            ]
        );
    }

    #[tokio::test]
    async fn identical_calls_share_one_answer() {
        let coalescer = Arc::new(Coalescer::default());
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (release, wait) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (coalescer, calls, mut wait) = (coalescer.clone(), calls.clone(), wait.clone());
            tasks.push(tokio::spawn(async move {
                coalescer
                    .run("k".into(), async move {
                        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let _ = wait.wait_for(|go| *go).await;
                        Ok(response(200, &[], "shared"))
                    })
                    .await
            }));
        }
        tokio::task::yield_now().await;
        while coalescer.calls.lock().expect("lock").is_empty() {
            tokio::task::yield_now().await;
        }
        // Let every task reach the cell before the answer arrives.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        release.send(true).expect("release");
        for task in tasks {
            let answer = task.await.expect("task").expect("ok");
            assert_eq!(&answer.body[..], b"shared");
        }
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(coalescer.calls.lock().expect("lock").is_empty(), "retired");
    }
}
