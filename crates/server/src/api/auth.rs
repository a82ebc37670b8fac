//! Bearer-token authentication with scopes `read` < `write` < `admin`.
//!
//! Tokens look like `sb_<43 base64url chars>`; only their SHA-256 is stored. The bootstrap admin
//! token (`SWITCHBOARD_ADMIN_TOKEN` / `[server] admin_token`) is compared by hash in memory and
//! never stored. Missing or unknown tokens get `401`, insufficient scope `403`.

use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::problem::Problem;
use crate::state::AppState;

/// What a token may do. Each scope includes the ones below it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Inspect everything.
    Read,
    /// Also create, change, delete resources and replay.
    Write,
    /// Also manage tokens.
    Admin,
}

impl Scope {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }

    /// Parses a wire name.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "read" => Some(Self::Read),
            "write" => Some(Self::Write),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Token id (`bootstrap` for the configured admin token).
    pub token_id: String,
    /// Highest granted scope.
    pub scope: Scope,
}

/// Hex SHA-256 of a token.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh random token and its id.
pub fn generate_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let token = format!(
        "sb_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let id = format!("tok_{}", uuid::Uuid::now_v7().simple());
    (token, id)
}

/// Type-level scope requirement for [`Auth`].
pub trait Required: Send + Sync + 'static {
    /// The minimum scope.
    const SCOPE: Scope;
}

/// Requires `read`.
pub struct Read;
/// Requires `write`.
pub struct Write;
/// Requires `admin`.
pub struct Admin;

impl Required for Read {
    const SCOPE: Scope = Scope::Read;
}
impl Required for Write {
    const SCOPE: Scope = Scope::Write;
}
impl Required for Admin {
    const SCOPE: Scope = Scope::Admin;
}

/// Extractor: the request carries a valid token with at least `R::SCOPE`.
pub struct Auth<R: Required>(pub Principal, PhantomData<R>);

/// Why authentication failed.
pub struct AuthRejection(Problem);

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        let unauthorized = self.0.status == 401;
        let mut response = self.0.into_response();
        if unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Checks the `Authorization` header against the bootstrap token and the store.
pub async fn authenticate(state: &AppState, parts: &Parts) -> Result<Principal, Problem> {
    principal_for_hash(state, &bearer_hash(&parts.headers)?).await
}

/// The hex SHA-256 of the bearer token in the `Authorization` header (what
/// [`principal_for_hash`] looks up), or the `401` when there is none. A long-lived response
/// (the live stream) keeps it to check the token again later.
pub fn bearer_hash(headers: &HeaderMap) -> Result<String, Problem> {
    let unauthorized = |detail: &str| {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            detail,
        )
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("send `Authorization: Bearer <token>`"))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
    Ok(hash_token(token))
}

/// The principal whose token has this hash (the bootstrap admin token or an active stored one).
/// The dashboard's sessions call this on every request, so a revoked token ends its sessions.
pub async fn principal_for_hash(state: &AppState, hash: &str) -> Result<Principal, Problem> {
    let unauthorized = |detail: &str| {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            detail,
        )
    };
    if let Some(admin) = &state.admin_token_hash
        && bool::from(admin.as_bytes().ct_eq(hash.as_bytes()))
    {
        return Ok(Principal {
            token_id: "bootstrap".into(),
            scope: Scope::Admin,
        });
    }
    let record = state.store.token_by_hash(hash).await.map_err(|error| {
        tracing::error!(%error, "token lookup failed");
        Problem::unavailable("cannot check the token right now")
    })?;
    match record {
        Some(record) if record.revoked_at.is_none() => Ok(Principal {
            scope: record
                .scopes
                .iter()
                .filter_map(|s| Scope::parse(s))
                .max()
                .unwrap_or(Scope::Read),
            token_id: record.id,
        }),
        Some(_) => Err(unauthorized("this token was revoked")),
        None => Err(unauthorized("unknown token")),
    }
}

impl<R: Required> FromRequestParts<Arc<AppState>> for Auth<R> {
    type Rejection = AuthRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let principal = authenticate(state, parts).await.map_err(AuthRejection)?;
        if let Some(slot) = parts.extensions.get::<super::audit::AuditSlot>() {
            slot.set_actor(&principal.token_id);
        }
        if principal.scope < R::SCOPE {
            return Err(AuthRejection(Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Forbidden",
                format!(
                    "this token has scope `{}`; this operation needs `{}`",
                    principal.scope.as_str(),
                    R::SCOPE.as_str()
                ),
            )));
        }
        Ok(Self(principal, PhantomData))
    }
}
