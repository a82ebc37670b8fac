//! A real HTTP receiver on loopback that records every request and answers from a script.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Plain status.
    Status(u16),
    /// Status with extra headers.
    WithHeaders(u16, Vec<(&'static str, String)>),
    /// Wait, then answer with the status.
    Slow(Duration, u16),
}

/// A shared on/off flag for scripted receivers.
#[derive(Debug, Clone, Default)]
pub struct Switch(Arc<std::sync::atomic::AtomicBool>);

impl Switch {
    /// Turns it on.
    pub fn on(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether it is on.
    pub fn is_on(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Path and query (`/hook…`).
    pub path: String,
    /// Request headers.
    pub headers: HeaderMap,
    /// Raw body.
    pub body: Bytes,
    /// Arrival time.
    pub at: Instant,
}

impl Recorded {
    /// A header as a string.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

type Script = Box<dyn Fn(usize, &[u8]) -> Reply + Send + Sync>;

struct Shared {
    requests: Mutex<Vec<Recorded>>,
    script: Script,
}

/// The receiver; its task ends with the test's runtime.
#[derive(Clone)]
pub struct Receiver {
    /// `http://127.0.0.1:PORT/hook`
    pub url: String,
    shared: Arc<Shared>,
}

impl Receiver {
    /// Answers every request with `status`.
    pub async fn always(status: u16) -> Self {
        Self::scripted(move |_| Reply::Status(status)).await
    }

    /// Answers `status` until the returned switch is turned on, then `200`: an endpoint that
    /// is down and comes back.
    pub async fn switchable(status: u16) -> (Self, Switch) {
        let up = Switch::default();
        let flag = up.clone();
        let receiver = Self::scripted(move |_| {
            if flag.is_on() {
                Reply::Status(200)
            } else {
                Reply::Status(status)
            }
        })
        .await;
        (receiver, up)
    }

    /// Answers request `n` (0-based) with `script(n)`.
    pub async fn scripted(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Self {
        Self::by_body(move |n, _| script(n)).await
    }

    /// Answers request `n` (0-based) with `script(n, body)`.
    pub async fn by_body(script: impl Fn(usize, &[u8]) -> Reply + Send + Sync + 'static) -> Self {
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            script: Box::new(script),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let state = shared.clone();
        let handler = axum::routing::post(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let state = state.clone();
            async move { handle(state, uri, headers, body).await }
        });
        // `/hook` and anything below it (templated URLs add to the path).
        let app = axum::Router::new()
            .route("/hook", handler.clone())
            .route("/hook/{*rest}", handler);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, shared }
    }

    /// Requests so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().expect("lock").clone()
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        super::eventually(
            timeout,
            &format!("{n} requests at the receiver"),
            || async {
                let requests = self.requests();
                (requests.len() >= n).then_some(requests)
            },
        )
        .await
    }
}

async fn handle(state: Arc<Shared>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let n = {
        let mut requests = state.requests.lock().expect("lock");
        requests.push(Recorded {
            path: uri
                .path_and_query()
                .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned()),
            headers,
            body: body.clone(),
            at: Instant::now(),
        });
        requests.len() - 1
    };
    let status = |s: u16| StatusCode::from_u16(s).expect("status");
    match (state.script)(n, &body) {
        Reply::Status(s) => status(s).into_response(),
        Reply::WithHeaders(s, headers) => {
            let mut response = (status(s), "scripted").into_response();
            for (name, value) in headers {
                response
                    .headers_mut()
                    .insert(name, value.parse().expect("header value"));
            }
            response
        }
        Reply::Slow(delay, s) => {
            tokio::time::sleep(delay).await;
            status(s).into_response()
        }
    }
}
