//! Dashboard sessions: signing in with an API token gives a sealed session cookie; every page
//! checks it, and every form POST carries the session's CSRF token.
//!
//! The cookie is the session sealed by the server's vault (ChaCha20-Poly1305): opaque to the
//! browser, tamper-proof, and verifiable by every node sharing the master key, so no session
//! table is needed. It holds the token's SHA-256 (never the token), and the token is looked up
//! again on every request: revoking the token ends its sessions at once. Signing out records
//! the session id in the store until the session would have expired anyway, so the cookie is
//! refused by every node sharing the database and after restarts; each node caches what it
//! learned (a sign-out for good, its absence for [`SIGN_OUT_RECHECK`]), so page loads rarely
//! ask the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use switchboard_core::time::now_millis;
use switchboard_store::{Store, StoreError};

use crate::api::auth::{Principal, Scope, principal_for_hash};
use crate::problem::Problem;
use crate::state::AppState;

/// The session cookie's name.
pub const COOKIE: &str = "sb_session";

/// How long a session lasts after signing in.
pub const LIFETIME_MS: i64 = 8 * 60 * 60 * 1000;

/// What the sealed cookie carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sealed {
    /// Session id (random), so one session can be signed out.
    sid: String,
    /// Hex SHA-256 of the API token signed in with.
    token: String,
    /// CSRF token of this session.
    csrf: String,
    /// Expiry (unix millis).
    exp: i64,
}

/// How long this node trusts that a session was not signed out before asking the store again:
/// a sign-out on another node holds here within this time (on this node, at once).
pub const SIGN_OUT_RECHECK: Duration = Duration::from_secs(2);

/// Most sessions the sign-out cache remembers; beyond it, it starts over (the store is the
/// truth, the cache only spares it).
const CACHE_MAX: usize = 10_000;

/// What this node knows about one session id.
#[derive(Debug, Clone, Copy)]
enum Known {
    /// Signed out, refused until this instant (unix ms), when its cookie expires anyway.
    SignedOut(i64),
    /// Not signed out when the store was asked at this instant.
    Valid(Instant),
}

/// The dashboard's state: a cache of the sign-outs kept in the store (shared by every node and
/// kept across restarts) and the server's shutdown signal, which ends live streams so a
/// graceful shutdown is not held open by them.
#[derive(Debug, Default)]
pub struct UiState {
    known: Mutex<HashMap<String, Known>>,
    shutdown: tokio_util::sync::CancellationToken,
}

impl UiState {
    /// State whose live streams end when `shutdown` is cancelled.
    pub fn new(shutdown: tokio_util::sync::CancellationToken) -> Self {
        Self {
            known: Mutex::default(),
            shutdown,
        }
    }

    /// Cancelled when the server shuts down.
    pub fn shutdown(&self) -> &tokio_util::sync::CancellationToken {
        &self.shutdown
    }

    fn remember(&self, sid: &str, known: Known) {
        let now = now_millis();
        if let Ok(mut map) = self.known.lock() {
            if map.len() >= CACHE_MAX {
                map.retain(|_, k| match k {
                    Known::SignedOut(exp) => *exp > now,
                    Known::Valid(at) => at.elapsed() < SIGN_OUT_RECHECK,
                });
                if map.len() >= CACHE_MAX {
                    map.clear();
                }
            }
            map.insert(sid.to_owned(), known);
        }
    }

    /// Records the sign-out in the store (for every node, across restarts) and here.
    async fn sign_out(&self, store: &dyn Store, sid: &str, exp: i64) -> Result<(), StoreError> {
        store.record_sign_out(sid, exp, now_millis()).await?;
        self.remember(sid, Known::SignedOut(exp));
        Ok(())
    }

    /// Whether the session was signed out on any node: a sign-out known here is final; that
    /// it was not is trusted for [`SIGN_OUT_RECHECK`], then the store is asked again.
    async fn is_signed_out(&self, store: &dyn Store, sid: &str) -> Result<bool, StoreError> {
        let known = self.known.lock().ok().and_then(|map| map.get(sid).copied());
        match known {
            Some(Known::SignedOut(_)) => return Ok(true),
            Some(Known::Valid(at)) if at.elapsed() < SIGN_OUT_RECHECK => return Ok(false),
            _ => {}
        }
        let asked = Instant::now();
        let now = now_millis();
        if store.is_signed_out(sid, now).await? {
            // The exact expiry does not matter here: the cookie carries its own and is
            // refused after it; keep the entry for the longest a session lives.
            self.remember(sid, Known::SignedOut(now + LIFETIME_MS));
            Ok(true)
        } else {
            self.remember(sid, Known::Valid(asked));
            Ok(false)
        }
    }
}

/// A signed-in dashboard user.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who signed in.
    pub principal: Principal,
    /// The CSRF token every form of this session must send back.
    pub csrf: String,
    /// The live feed's head when the request came in (GET requests only): the page's live
    /// stream starts after it, so nothing between rendering and connecting is missed.
    pub live_cursor: Option<String>,
    sid: String,
    exp: i64,
    token_hash: String,
}

impl Session {
    /// Whether the session still holds: not expired, not signed out (on any node), its token
    /// not revoked (long-lived live streams check this now and then). A store that cannot
    /// answer counts as no.
    pub async fn still_valid(&self, state: &AppState) -> bool {
        self.exp > now_millis()
            && matches!(
                state.ui.is_signed_out(&*state.store, &self.sid).await,
                Ok(false)
            )
            && principal_for_hash(state, &self.token_hash).await.is_ok()
    }

    /// Whether the session's token may change things.
    pub fn can_write(&self) -> bool {
        self.principal.scope >= Scope::Write
    }

    /// Fails with `403` unless the token has `write`.
    pub fn require_write(&self) -> Result<(), Problem> {
        if self.can_write() {
            Ok(())
        } else {
            Err(Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Forbidden",
                "this session's token has scope `read`; this action needs `write`",
            ))
        }
    }

    /// Checks a submitted CSRF token against the session's, in constant time.
    pub fn check_csrf(&self, submitted: &str) -> Result<(), Problem> {
        let ok = submitted.len() == self.csrf.len()
            && bool::from(submitted.as_bytes().ct_eq(self.csrf.as_bytes()));
        if ok {
            Ok(())
        } else {
            Err(Problem::new(
                StatusCode::FORBIDDEN,
                "csrf_rejected",
                "Forbidden",
                "the form's CSRF token does not match this session; reload the page and try again",
            ))
        }
    }

    /// Checks a button's form (no fields besides the CSRF token) and that the session may
    /// change things: what every one-button action (enable, delete, rotate, …) starts with.
    pub fn button(&self, body: &[u8]) -> Result<(), Problem> {
        let _: std::collections::HashMap<String, String> = self.form(body)?;
        self.require_write()
    }

    /// Parses a URL-encoded form body after checking its `csrf` field.
    pub fn form<T: serde::de::DeserializeOwned>(&self, body: &[u8]) -> Result<T, Problem> {
        #[derive(Deserialize)]
        struct Csrf {
            #[serde(default)]
            csrf: String,
        }
        let csrf: Csrf = serde_urlencoded::from_bytes(body)
            .map_err(|e| Problem::bad_request(format!("unreadable form: {e}")))?;
        self.check_csrf(&csrf.csrf)?;
        serde_urlencoded::from_bytes(body)
            .map_err(|e| Problem::bad_request(format!("unreadable form: {e}")))
    }
}

fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(buf.as_mut_slice());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// Whether the browser reached us over https (directly or through a proxy that says so).
fn is_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn set_cookie(headers: &HeaderMap, value: &str, max_age_s: i64) -> Option<HeaderValue> {
    let secure = if is_https(headers) { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}"
    ))
    .ok()
}

/// Opens the sealed session cookie of a request, if it carries one that is ours.
fn open_cookie(state: &AppState, headers: &HeaderMap) -> Option<Sealed> {
    let raw = cookie_value(headers)?;
    let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw.as_bytes())
        .ok()?;
    let plain = state.vault.open_sealed(&sealed).ok()?;
    serde_json::from_slice(&plain).ok()
}

/// Opens and checks the session cookie of a request: `None` without a valid session, an error
/// when the store cannot tell.
async fn load(state: &AppState, headers: &HeaderMap) -> Result<Option<Session>, Problem> {
    let Some(session) = open_cookie(state, headers) else {
        return Ok(None);
    };
    if session.exp <= now_millis() {
        return Ok(None);
    }
    let signed_out = state
        .ui
        .is_signed_out(&*state.store, &session.sid)
        .await
        .map_err(|error| {
            tracing::error!(%error, "dashboard: cannot check the session's sign-out");
            Problem::unavailable("cannot check the session right now")
        })?;
    if signed_out {
        return Ok(None);
    }
    let principal = match principal_for_hash(state, &session.token).await {
        Ok(principal) => principal,
        Err(problem) if problem.status == StatusCode::UNAUTHORIZED.as_u16() => return Ok(None),
        Err(problem) => return Err(problem),
    };
    Ok(Some(Session {
        principal,
        csrf: session.csrf,
        sid: session.sid,
        exp: session.exp,
        token_hash: session.token,
        live_cursor: None,
    }))
}

/// Answered to a request without a valid session: pages go to the sign-in page (and come back
/// afterwards); the live stream gets a plain `401`.
pub struct SignInFirst(Response);

impl IntoResponse for SignInFirst {
    fn into_response(self) -> Response {
        self.0
    }
}

impl FromRequestParts<Arc<AppState>> for Session {
    type Rejection = SignInFirst;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let loaded = load(state, &parts.headers)
            .await
            .map_err(|problem| SignInFirst(problem.into_response()))?;
        if let Some(mut session) = loaded {
            if let Some(slot) = parts.extensions.get::<crate::api::audit::AuditSlot>() {
                slot.set_actor(&session.principal.token_id);
            }
            if parts.method == axum::http::Method::GET && parts.uri.path() != "/ui/live" {
                session.live_cursor = state
                    .live
                    .start(crate::live::Start::Now)
                    .await
                    .ok()
                    .map(|c| c.encode());
            }
            return Ok(session);
        }
        if parts.uri.path() == "/ui/live" {
            return Err(SignInFirst(StatusCode::UNAUTHORIZED.into_response()));
        }
        let next = if parts.method == axum::http::Method::GET {
            parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/ui")
        } else {
            "/ui"
        };
        let target = format!(
            "/ui/sign-in?next={}",
            form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
        );
        Err(SignInFirst(Redirect::to(&target).into_response()))
    }
}

/// Where to go after signing in: only a dashboard path, never another site.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/ui") && !n.starts_with("//") && !n.contains('\\') => n.into(),
        _ => "/ui".into(),
    }
}

/// Checks a token and starts a session: the `Set-Cookie` value, or why the token was refused.
pub async fn start(
    state: &AppState,
    headers: &HeaderMap,
    token: &str,
) -> Result<(HeaderValue, String), Problem> {
    let hash = crate::api::auth::hash_token(token.trim());
    let principal = principal_for_hash(state, &hash).await?;
    let sealed = Sealed {
        sid: random_b64(16),
        token: hash,
        csrf: random_b64(32),
        exp: now_millis() + LIFETIME_MS,
    };
    let json = serde_json::to_vec(&sealed).map_err(crate::api::internal)?;
    let bytes = state.vault.seal(&json).map_err(crate::api::internal)?;
    let value = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let cookie = set_cookie(headers, &value, LIFETIME_MS / 1000).ok_or_else(Problem::internal)?;
    Ok((cookie, principal.token_id))
}

/// Ends a session: it is refused from now on, on every node and after restarts (the sign-out
/// is kept in the store until the session's expiry), and the browser is told to drop the
/// cookie.
pub async fn end(
    state: &AppState,
    session: &Session,
    headers: &HeaderMap,
) -> Result<Option<HeaderValue>, Problem> {
    state
        .ui
        .sign_out(&*state.store, &session.sid, session.exp)
        .await
        .map_err(crate::api::internal)?;
    Ok(set_cookie(headers, "", 0))
}

/// Refuses a cross-site sign-in POST (login CSRF): when the browser names the page's origin, it
/// must be this host.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest == host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_the_dashboard() {
        assert_eq!(safe_next(Some("/ui/events?x=1")), "/ui/events?x=1");
        assert_eq!(safe_next(Some("https://evil.example/ui")), "/ui");
        assert_eq!(safe_next(Some("//evil.example")), "/ui");
        assert_eq!(safe_next(None), "/ui");
    }

    #[test]
    fn origin_must_match_host() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&headers));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin(&headers));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_origin(&headers));
    }

    #[test]
    fn cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; sb_session=xyz; b=2"),
        );
        assert_eq!(cookie_value(&headers).as_deref(), Some("xyz"));
    }
}
