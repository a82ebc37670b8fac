//! OAuth2 through the `oauth2` crate: authorize URLs with PKCE (S256), code exchange, refresh,
//! client credentials.
//!
//! The crate's own reqwest integration pins reqwest 0.12, so its `AsyncHttpClient` trait is
//! implemented here over the server's reqwest client ([`OAuthHttp`]), which keeps the SSRF
//! guard, timeouts and connection pool of every other outbound call. The adapter is also where
//! token responses are made lenient: a form-encoded or `text/plain` body is turned into JSON,
//! and [`LenientTokenResponse`] accepts `expires_in` as a number or a string (or not at all), a
//! missing `token_type`, and scopes separated by spaces or commas. A `429` or `5xx` from the
//! token endpoint is reported as a transport error ([`TokenError::transient`]): the grant is
//! still good, try again later.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AccessToken, AsyncHttpClient, AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret,
    CsrfToken, EndpointNotSet, EndpointSet, HttpRequest, HttpResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope, StandardRevocableToken,
    TokenResponse, TokenUrl,
};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use switchboard_core::providers::{ClientAuth, OAuth2Spec};

use crate::delivery::ssrf::Policy;

/// A token endpoint's answer, parsed leniently.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LenientTokenResponse {
    access_token: AccessToken,
    #[serde(default = "bearer", deserialize_with = "lenient_token_type")]
    token_type: BasicTokenType,
    #[serde(default, deserialize_with = "lenient_seconds")]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<RefreshToken>,
    #[serde(default, rename = "scope", deserialize_with = "lenient_scopes")]
    scopes: Option<Vec<Scope>>,
    /// Every other field (`instance_url`, `id_token`, …).
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

fn bearer() -> BasicTokenType {
    BasicTokenType::Bearer
}

fn lenient_token_type<'de, D: Deserializer<'de>>(d: D) -> Result<BasicTokenType, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) if s.eq_ignore_ascii_case("mac") => BasicTokenType::Mac,
        Some(Value::String(s)) if !s.eq_ignore_ascii_case("bearer") && !s.is_empty() => {
            BasicTokenType::Extension(s)
        }
        _ => BasicTokenType::Bearer,
    })
}

fn lenient_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Some(Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| *f >= 0.0)
            .map(|f| f as u64),
        _ => None,
    })
}

fn lenient_scopes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Scope>>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) => Some(
            s.split([' ', ','])
                .filter(|s| !s.is_empty())
                .map(|s| Scope::new(s.to_owned()))
                .collect(),
        ),
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .map(|s| Scope::new(s.to_owned()))
                .collect(),
        ),
        _ => None,
    })
}

impl TokenResponse for LenientTokenResponse {
    type TokenType = BasicTokenType;

    fn access_token(&self) -> &AccessToken {
        &self.access_token
    }

    fn token_type(&self) -> &BasicTokenType {
        &self.token_type
    }

    fn expires_in(&self) -> Option<Duration> {
        self.expires_in.map(Duration::from_secs)
    }

    fn refresh_token(&self) -> Option<&RefreshToken> {
        self.refresh_token.as_ref()
    }

    fn scopes(&self) -> Option<&Vec<Scope>> {
        self.scopes.as_ref()
    }
}

/// The `oauth2` client type used here: authorize and token URLs set.
pub type OAuthClient = oauth2::Client<
    BasicErrorResponse,
    LenientTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// A transport failure of a token request.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The request could not be sent or its answer not read.
    #[error("{0}")]
    Send(String),
    /// The endpoint answered `429` or `5xx`.
    #[error("the token endpoint answered HTTP {0}")]
    Status(u16),
    /// The address is not allowed by the SSRF policy.
    #[error("{0}")]
    Blocked(String),
}

/// `oauth2`'s HTTP client over the server's reqwest client.
#[derive(Clone)]
pub struct OAuthHttp {
    /// The SSRF-guarded client.
    pub client: reqwest::Client,
    /// The policy, for IP-literal URLs (which never reach the guarded resolver).
    pub policy: Arc<Policy>,
    /// Time allowed for one token request.
    pub timeout: Duration,
}

impl OAuthHttp {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = request.into_parts();
        let url = reqwest::Url::parse(&parts.uri.to_string())
            .map_err(|e| HttpError::Send(format!("bad token URL: {e}")))?;
        super::client::check_literal(&self.policy, &url).map_err(HttpError::Blocked)?;
        let response = self
            .client
            .request(parts.method, url)
            .headers(parts.headers)
            .body(body)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| HttpError::Send(super::client::describe_error(&e)))?;
        let status = response.status();
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(HttpError::Status(status.as_u16()));
        }
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| HttpError::Send(super::client::describe_error(&e)))?;
        let mut builder = http::Response::builder().status(status);
        let json = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|ct| ct.to_ascii_lowercase().contains("json"));
        let body = if json {
            for (name, value) in &headers {
                builder = builder.header(name, value);
            }
            bytes.to_vec()
        } else {
            // Form-encoded (GitHub without `Accept`) or JSON sent as text: make it JSON.
            for (name, value) in headers
                .iter()
                .filter(|(n, _)| *n != reqwest::header::CONTENT_TYPE)
            {
                builder = builder.header(name, value);
            }
            builder = builder.header(reqwest::header::CONTENT_TYPE, "application/json");
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(_) => bytes.to_vec(),
                Err(_) => {
                    let form: serde_json::Map<String, Value> = form_urlencoded::parse(&bytes)
                        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                        .collect();
                    serde_json::to_vec(&form).unwrap_or_default()
                }
            }
        };
        builder
            .body(body)
            .map_err(|e| HttpError::Send(e.to_string()))
    }
}

impl<'c> AsyncHttpClient<'c> for OAuthHttp {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

/// Why a token request failed.
#[derive(Debug, Clone)]
pub struct TokenError {
    /// What happened (no secrets).
    pub message: String,
    /// The grant may still be good (network, `429`, `5xx`): try again later rather than asking
    /// the user to reconnect.
    pub transient: bool,
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn token_error(error: RequestTokenError<HttpError, BasicErrorResponse>) -> TokenError {
    match error {
        RequestTokenError::ServerResponse(response) => {
            let mut message = format!("the provider refused the grant: {}", response.error());
            if let Some(description) = response.error_description() {
                message.push_str(&format!(" ({description})"));
            }
            TokenError {
                message,
                transient: false,
            }
        }
        RequestTokenError::Request(error) => TokenError {
            transient: !matches!(error, HttpError::Blocked(_)),
            message: format!("token request failed: {error}"),
        },
        RequestTokenError::Parse(error, _) => TokenError {
            message: format!("the token response is not usable: {error}"),
            transient: false,
        },
        RequestTokenError::Other(message) => TokenError {
            message: format!("token request failed: {message}"),
            transient: false,
        },
    }
}

/// What a grant produced.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The access token.
    pub access_token: String,
    /// A refresh token, when one was issued.
    pub refresh_token: Option<String>,
    /// The token type (`bearer`).
    pub token_type: String,
    /// Lifetime of the access token.
    pub expires_in: Option<Duration>,
    /// Granted scopes, when the provider said.
    pub scopes: Option<Vec<String>>,
    /// Other string fields of the response (for the provider's `token_fields`).
    pub extra: BTreeMap<String, String>,
}

impl From<LenientTokenResponse> for Grant {
    fn from(r: LenientTokenResponse) -> Self {
        Self {
            access_token: r.access_token.secret().clone(),
            refresh_token: r.refresh_token.as_ref().map(|t| t.secret().clone()),
            token_type: r.token_type.as_ref().to_owned(),
            expires_in: r.expires_in.map(Duration::from_secs),
            scopes: r
                .scopes
                .map(|s| s.iter().map(|s| s.as_str().to_owned()).collect()),
            extra: r
                .extra
                .into_iter()
                .filter_map(|(k, v)| match v {
                    Value::String(s) => Some((k, s)),
                    Value::Number(n) => Some((k, n.to_string())),
                    Value::Bool(b) => Some((k, b.to_string())),
                    _ => None,
                })
                .collect(),
        }
    }
}

/// The URLs and client of one provider for one connection.
pub struct Endpoints {
    /// Authorize URL (parameters expanded).
    pub authorize_url: String,
    /// Token URL (parameters expanded).
    pub token_url: String,
}

/// Builds the `oauth2` client.
pub fn client(
    endpoints: &Endpoints,
    spec: &OAuth2Spec,
    client_id: &str,
    client_secret: Option<&str>,
    redirect_uri: Option<&str>,
) -> Result<OAuthClient, String> {
    let mut client = oauth2::Client::new(ClientId::new(client_id.to_owned()))
        .set_auth_uri(
            AuthUrl::new(endpoints.authorize_url.clone())
                .map_err(|e| format!("authorize_url: {e}"))?,
        )
        .set_token_uri(
            TokenUrl::new(endpoints.token_url.clone()).map_err(|e| format!("token_url: {e}"))?,
        )
        .set_auth_type(match spec.client_auth {
            ClientAuth::Basic => AuthType::BasicAuth,
            ClientAuth::Body => AuthType::RequestBody,
        });
    if let Some(secret) = client_secret {
        client = client.set_client_secret(ClientSecret::new(secret.to_owned()));
    }
    if let Some(uri) = redirect_uri {
        client = client.set_redirect_uri(
            RedirectUrl::new(uri.to_owned()).map_err(|e| format!("redirect URI: {e}"))?,
        );
    }
    Ok(client)
}

/// The scopes as one parameter value joined with the provider's separator (`oauth2` joins
/// several with spaces, which Slack and Shopify do not accept).
fn scope_param(spec: &OAuth2Spec, scopes: &[String]) -> Option<Scope> {
    (!scopes.is_empty()).then(|| Scope::new(scopes.join(&spec.scope_separator)))
}

/// An authorize URL with a fresh `state` and, when the provider takes it, a PKCE challenge.
/// Returns the URL, the state and the verifier.
pub fn authorize(
    client: &OAuthClient,
    spec: &OAuth2Spec,
    scopes: &[String],
) -> (String, String, Option<String>) {
    let mut request = client.authorize_url(CsrfToken::new_random);
    if let Some(scope) = scope_param(spec, scopes) {
        request = request.add_scope(scope);
    }
    for (name, value) in &spec.authorize_params {
        request = request.add_extra_param(name.as_str(), value.as_str());
    }
    let verifier = if spec.pkce {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        request = request.set_pkce_challenge(challenge);
        Some(verifier.secret().clone())
    } else {
        None
    };
    let (url, state) = request.url();
    (url.to_string(), state.secret().clone(), verifier)
}

/// Exchanges an authorization code.
pub async fn exchange_code(
    client: &OAuthClient,
    http: &OAuthHttp,
    code: &str,
    verifier: Option<&str>,
) -> Result<Grant, TokenError> {
    let mut request = client.exchange_code(AuthorizationCode::new(code.to_owned()));
    if let Some(verifier) = verifier {
        request = request.set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()));
    }
    request
        .request_async(http)
        .await
        .map(Grant::from)
        .map_err(token_error)
}

/// Uses a refresh token.
pub async fn refresh(
    client: &OAuthClient,
    http: &OAuthHttp,
    refresh_token: &str,
) -> Result<Grant, TokenError> {
    let token = RefreshToken::new(refresh_token.to_owned());
    client
        .exchange_refresh_token(&token)
        .request_async(http)
        .await
        .map(Grant::from)
        .map_err(token_error)
}

/// Client credentials grant.
pub async fn client_credentials(
    client: &OAuthClient,
    http: &OAuthHttp,
    spec: &OAuth2Spec,
    scopes: &[String],
) -> Result<Grant, TokenError> {
    let mut request = client.exchange_client_credentials();
    if let Some(scope) = scope_param(spec, scopes) {
        request = request.add_scope(scope);
    }
    request
        .request_async(http)
        .await
        .map(Grant::from)
        .map_err(token_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_responses_are_parsed_leniently() {
        let parsed: LenientTokenResponse = serde_json::from_str(
            r#"{"access_token":"a","expires_in":"3600","scope":"read,write","instance_url":"https://x"}"#,
        )
        .expect("string expiry, no token_type");
        let grant = Grant::from(parsed);
        assert_eq!(grant.expires_in, Some(Duration::from_secs(3600)));
        assert_eq!(grant.token_type, "bearer");
        assert_eq!(grant.scopes, Some(vec!["read".into(), "write".into()]));
        assert_eq!(grant.extra["instance_url"], "https://x");
        let parsed: LenientTokenResponse = serde_json::from_str(
            r#"{"access_token":"a","token_type":"Bearer","refresh_token":"r"}"#,
        )
        .expect("no expiry");
        let grant = Grant::from(parsed);
        assert_eq!(grant.expires_in, None);
        assert_eq!(grant.refresh_token.as_deref(), Some("r"));
        assert!(serde_json::from_str::<LenientTokenResponse>(r#"{"error":"x"}"#).is_err());
    }
}
