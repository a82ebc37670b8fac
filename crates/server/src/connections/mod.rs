//! Connections to third-party APIs (issue 7): credentials and OAuth2 tokens sealed at rest, token
//! refresh that happens once however many callers and nodes need it, and a resilient client
//! ([`client::ConnectionClient`]) behind the `/v1/proxy/{id}/…` route.
//!
//! - **Storage**: one `connections` row per connection; credentials and tokens are sealed with
//!   the vault before they reach the store. Token updates are a compare-and-swap on the row's
//!   `version` (never through the `resources` table, which would rebuild the registry).
//! - **Single-flight refresh** ([`Connections::refresh`]): an in-process async mutex per
//!   connection, then a store lease `refresh:{id}` across nodes. Whoever gets both re-reads the
//!   row and refreshes only if it still needs it; everyone else waits and re-reads the stored
//!   tokens. A rotated refresh token is stored; a response without one keeps the old.
//! - **Status**: `pending` (an authorization-code connection not yet authorized), `active`,
//!   `needs_reauth` (the provider refused the grant: the user must connect again). Moving to
//!   `needs_reauth` emits the operational event `connection.needs_reauth`; coming back emits
//!   `connection.recovered`.

pub mod cache;
pub mod client;
pub mod oauth;
pub mod providers;
pub mod resilience;
pub mod routes;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use switchboard_core::config::ConnectionsConfig;
use switchboard_core::providers::{AuthMode, OAuth2Spec, ProviderSpec, expand};
use switchboard_core::time::{UnixMillis, now_millis};
use switchboard_store::vault::Vault;
use switchboard_store::{ConnectionRecord, OAuthStateRecord, Store, StoreError, TokenUpdate};

use crate::delivery::ssrf::Policy;
use crate::nodes::NodeCount;
use crate::operations::Operations;

pub use providers::Catalog;

/// How long an authorization-code flow may take (the `state` expires after it).
pub const STATE_TTL: Duration = Duration::from_secs(10 * 60);
/// How long a node may hold the refresh lease of a connection before another takes over.
const REFRESH_LEASE: Duration = Duration::from_secs(30);
/// How long a cached connection is trusted before it is read again (tokens refreshed by
/// another node, a deleted connection).
const CACHE_TTL: Duration = Duration::from_secs(2);

/// Where a connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Created; waiting for the user to authorize (`/v1/connect/…`).
    Pending,
    /// Usable.
    Active,
    /// The provider refused the stored grant: connect again.
    NeedsReauth,
}

impl Status {
    /// Stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::NeedsReauth => "needs_reauth",
        }
    }

    /// Parses a stored name.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "pending" => Some(Self::Pending),
            "active" => Some(Self::Active),
            "needs_reauth" => Some(Self::NeedsReauth),
            _ => None,
        }
    }
}

/// The static secrets of a connection (sealed at rest, never shown).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// API key (mode `api_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// User name (mode `basic`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password (mode `basic`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Static bearer token (mode `bearer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// OAuth2 client id (modes `oauth2`, `oauth2_client_credentials`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// OAuth2 client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

/// OAuth2 tokens (sealed at rest, never shown).
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Tokens {
    /// The access token.
    pub access_token: String,
    /// The refresh token, if the provider issued one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Fields kept from the token response (the provider's `token_fields`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(<redacted>)")
    }
}

/// Per-connection overrides of the provider's and the server's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Calls per second in all, shared between the live nodes (overrides the provider's
    /// `rate_limit.requests_per_second`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<f64>,
    /// Burst in all, shared between the live nodes (overrides the provider's
    /// `rate_limit.burst`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Most calls in flight (overrides `connections.max_concurrent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<usize>,
    /// Time allowed per upstream call in milliseconds (overrides `connections.timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// A connection read from the store with its secrets opened. `Debug` shows no secret.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Connection id.
    pub id: String,
    /// The provider.
    pub provider: Arc<ProviderSpec>,
    /// Auth mode.
    pub auth_mode: AuthMode,
    /// Status.
    pub status: Status,
    /// URL parameters.
    pub params: BTreeMap<String, String>,
    /// Overrides.
    pub settings: Settings,
    /// Scopes (space-separated in the store).
    pub scopes: Vec<String>,
    /// Static credentials.
    pub credentials: Credentials,
    /// OAuth2 tokens.
    pub tokens: Option<Tokens>,
    /// Access token expiry.
    pub expires_at: Option<UnixMillis>,
    /// Row version (bumped by every token update).
    pub version: i64,
    /// Last refresh or call error.
    pub last_error: Option<String>,
    /// Created.
    pub created_at: UnixMillis,
    /// Last change.
    pub updated_at: UnixMillis,
}

impl Snapshot {
    /// Whether the mode uses OAuth2 tokens.
    pub fn is_oauth(&self) -> bool {
        matches!(
            self.auth_mode,
            AuthMode::Oauth2 | AuthMode::Oauth2ClientCredentials
        )
    }

    /// A URL parameter: the connection's, a kept token field, or the provider's default.
    pub fn param(&self, name: &str) -> Option<String> {
        self.params
            .get(name)
            .or_else(|| self.tokens.as_ref().and_then(|t| t.fields.get(name)))
            .or_else(|| self.provider.params.get(name))
            .cloned()
    }

    /// Expands `{name}` placeholders of a provider URL.
    pub fn expand(&self, template: &str) -> Result<String, String> {
        expand(template, &|name| self.param(name))
    }

    /// Whether the access token is missing or expires within `margin`.
    pub fn token_stale(&self, margin: Duration, now: UnixMillis) -> bool {
        match (&self.tokens, self.expires_at) {
            (None, _) => true,
            (Some(_), Some(at)) => at - (margin.as_millis() as i64) <= now,
            (Some(_), None) => false,
        }
    }
}

/// Why a connection operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// No such connection.
    #[error("no connection `{0}`")]
    NotFound(String),
    /// The connection cannot do this in its state or mode.
    #[error("{0}")]
    Conflict(String),
    /// The connection or its provider file is unusable (a parameter missing, an unknown
    /// provider).
    #[error("{0}")]
    Invalid(String),
    /// The provider refused or failed a token request.
    #[error("{0}")]
    Token(oauth::TokenError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Waited too long for another refresh.
    #[error("{0}")]
    Busy(String),
}

/// Runtime state of one connection on this node.
pub struct ConnState {
    /// Created-at of the row this state was built for (a recreated connection starts over).
    generation: UnixMillis,
    /// One refresh at a time in this process.
    refresh: tokio::sync::Mutex<()>,
    /// The last read of the row.
    cache: RwLock<Option<(Instant, Arc<Snapshot>)>>,
    /// Pacing before the provider says no.
    pub pacer: resilience::Pacer,
    /// Most calls in flight.
    pub bulkhead: resilience::Bulkhead,
    /// Slots of the bulkhead.
    pub max_concurrent: usize,
    /// Circuit breaker.
    pub circuit: resilience::Circuit,
    /// ETag cache of GET answers.
    pub responses: cache::ResponseCache,
    /// Identical GETs in flight.
    pub inflight: cache::Coalescer,
    /// The provider's deprecation notices.
    pub notices: cache::Notices,
    /// Time allowed per call.
    pub timeout: Duration,
}

/// The connections service: store, vault, catalog, refresh coordination.
pub struct Connections {
    store: Arc<dyn Store>,
    vault: Vault,
    catalog: Arc<BTreeMap<String, Arc<ProviderSpec>>>,
    config: ConnectionsConfig,
    redirect_uri: String,
    http: reqwest::Client,
    policy: Arc<Policy>,
    owner: String,
    operations: Option<Operations>,
    max_body_bytes: usize,
    nodes: NodeCount,
    states: Mutex<HashMap<String, Arc<ConnState>>>,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("providers", &self.catalog.len())
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

/// What [`Connections::new`] needs.
pub struct Parts {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The vault sealing credentials and tokens.
    pub vault: Vault,
    /// The provider catalog.
    pub catalog: Catalog,
    /// `[connections]`.
    pub config: ConnectionsConfig,
    /// The listener's address (the default public URL).
    pub listen: std::net::SocketAddr,
    /// `[security]` as a policy.
    pub policy: Policy,
    /// Lease owner name of this node.
    pub owner: String,
    /// Publishes `connection.needs_reauth` / `connection.recovered`.
    pub operations: Option<Operations>,
    /// Largest request body the proxy forwards (`server.max_body_bytes`).
    pub max_body_bytes: usize,
    /// Live nodes sharing the store (set by the delivery worker's heartbeat): each node paces
    /// a connection at its share of the connection's pace.
    pub nodes: NodeCount,
}

/// The `user-agent` of provider calls.
pub const USER_AGENT: &str = concat!("Switchboard/", env!("CARGO_PKG_VERSION"));

impl Connections {
    /// Builds the service and its HTTP client (SSRF-guarded, no redirects, no proxies).
    pub fn new(parts: Parts) -> Result<Self, reqwest::Error> {
        let policy = Arc::new(parts.policy);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .user_agent(USER_AGENT)
            .dns_resolver(Arc::new(crate::delivery::ssrf::GuardedResolver::new(
                policy.clone(),
            )))
            .build()?;
        let public = parts
            .config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", parts.listen));
        Ok(Self {
            store: parts.store,
            vault: parts.vault,
            catalog: Arc::new(
                parts
                    .catalog
                    .into_iter()
                    .map(|(id, spec)| (id, Arc::new(spec)))
                    .collect(),
            ),
            redirect_uri: format!("{}/oauth/callback", public.trim_end_matches('/')),
            config: parts.config,
            http,
            policy,
            owner: parts.owner,
            operations: parts.operations,
            max_body_bytes: parts.max_body_bytes,
            nodes: parts.nodes,
            states: Mutex::new(HashMap::new()),
        })
    }

    /// The provider catalog.
    pub fn catalog(&self) -> &BTreeMap<String, Arc<ProviderSpec>> {
        &self.catalog
    }

    /// One provider.
    pub fn provider(&self, id: &str) -> Option<Arc<ProviderSpec>> {
        self.catalog.get(id).cloned()
    }

    /// `[connections]`.
    pub fn config(&self) -> &ConnectionsConfig {
        &self.config
    }

    /// The OAuth2 redirect URI (`<public_url>/oauth/callback`).
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// The HTTP client of provider calls.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Largest request body the proxy forwards.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// The SSRF policy.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Live nodes sharing the store, as the delivery worker's heartbeat last counted them.
    pub fn nodes(&self) -> u32 {
        self.nodes.get()
    }

    fn seal<T: Serialize>(&self, value: &T) -> Result<Vec<u8>, StoreError> {
        let json = serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.vault.seal(&json)
    }

    fn open<T: for<'de> Deserialize<'de>>(&self, sealed: &[u8]) -> Result<T, StoreError> {
        let json = self.vault.open_sealed(sealed)?;
        serde_json::from_slice(&json).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// Opens a stored row.
    pub fn snapshot_of(&self, record: ConnectionRecord) -> Result<Snapshot, ConnectionError> {
        let provider = self.provider(&record.provider).ok_or_else(|| {
            ConnectionError::Invalid(format!(
                "connection `{}` names provider `{}`, which is not in the catalog",
                record.id, record.provider
            ))
        })?;
        let auth_mode = parse_mode(&record.auth_mode).ok_or_else(|| {
            ConnectionError::Store(StoreError::Corrupt(format!(
                "connection `{}` has auth mode `{}`",
                record.id, record.auth_mode
            )))
        })?;
        let corrupt = |what: &str, e: serde_json::Error| {
            ConnectionError::Store(StoreError::Corrupt(format!(
                "connection `{}`: {what}: {e}",
                record.id
            )))
        };
        Ok(Snapshot {
            params: serde_json::from_str(&record.params).map_err(|e| corrupt("params", e))?,
            settings: serde_json::from_str(&record.settings).map_err(|e| corrupt("settings", e))?,
            status: Status::parse(&record.status).unwrap_or(Status::NeedsReauth),
            scopes: record
                .scopes
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            credentials: record
                .credentials
                .as_deref()
                .map(|s| self.open(s))
                .transpose()?
                .unwrap_or_default(),
            tokens: record.tokens.as_deref().map(|s| self.open(s)).transpose()?,
            expires_at: record.expires_at,
            version: record.version,
            last_error: record.last_error,
            created_at: record.created_at,
            updated_at: record.updated_at,
            id: record.id,
            provider,
            auth_mode,
        })
    }

    /// Stores a new connection (`Conflict` if the id exists).
    pub async fn create(&self, new: NewConnection) -> Result<Snapshot, ConnectionError> {
        let now = now_millis();
        let record = ConnectionRecord {
            id: new.id.clone(),
            provider: new.provider.clone(),
            auth_mode: new.auth_mode.as_str().to_owned(),
            params: serde_json::to_string(&new.params)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            settings: serde_json::to_string(&new.settings)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            status: new.status.as_str().to_owned(),
            scopes: new.scopes.join(" "),
            credentials: Some(self.seal(&new.credentials)?),
            tokens: None,
            expires_at: None,
            version: 1,
            last_error: None,
            created_at: now,
            updated_at: now,
        };
        self.store.put_connection(&record, true).await?;
        self.forget(&new.id);
        self.snapshot_of(record)
    }

    /// Replaces a connection's parameters, credentials, scopes and settings (`new`), keeping
    /// its tokens and status: a compare-and-swap on the version `current` was read at, which it
    /// does not bump, so a refresh in flight still stores its tokens. `Conflict` when a token
    /// update happened since `current` was read (nothing is written then).
    pub async fn update(
        &self,
        current: &Snapshot,
        new: NewConnection,
    ) -> Result<Snapshot, ConnectionError> {
        let update = switchboard_store::ConfigUpdate {
            id: current.id.clone(),
            expected_version: current.version,
            params: serde_json::to_string(&new.params)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            settings: serde_json::to_string(&new.settings)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            scopes: new.scopes.join(" "),
            credentials: Some(self.seal(&new.credentials)?),
            updated_at: now_millis(),
        };
        let applied = self.store.update_connection_config(&update).await?;
        self.forget(&current.id);
        if !applied {
            return match self.store.get_connection(&current.id).await? {
                None => Err(ConnectionError::NotFound(current.id.clone())),
                Some(_) => Err(StoreError::Conflict.into()),
            };
        }
        let record = self
            .store
            .get_connection(&current.id)
            .await?
            .ok_or_else(|| ConnectionError::NotFound(current.id.clone()))?;
        self.snapshot_of(record)
    }

    /// Deletes a connection; revokes its tokens at the provider in the background (best
    /// effort) when the provider has a `revoke_url`. Returns whether it existed.
    pub async fn delete(&self, id: &str) -> Result<bool, ConnectionError> {
        let existing = match self.store.get_connection(id).await? {
            Some(record) => self.snapshot_of(record).ok(),
            None => return Ok(false),
        };
        let deleted = self.store.delete_connection(id).await?;
        self.forget(id);
        if let Some(snapshot) = existing.filter(|_| deleted) {
            let http = self.oauth_http(Duration::from_secs(10));
            tokio::spawn(async move { revoke(&http, &snapshot).await });
        }
        Ok(deleted)
    }

    /// Forgets the runtime state of a connection (after a change).
    pub fn forget(&self, id: &str) {
        self.states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// The provider's deprecation notices seen on this node for connection `id`.
    pub fn warnings(&self, id: &str) -> Vec<String> {
        self.states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .map(|state| state.notices.warnings())
            .unwrap_or_default()
    }

    fn state_for(&self, snapshot: &Snapshot) -> Arc<ConnState> {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(state) = states.get(&snapshot.id)
            && state.generation == snapshot.created_at
        {
            return state.clone();
        }
        let max_concurrent = snapshot
            .settings
            .max_concurrent
            .unwrap_or(self.config.max_concurrent)
            .max(1);
        let state = Arc::new(ConnState {
            generation: snapshot.created_at,
            refresh: tokio::sync::Mutex::new(()),
            cache: RwLock::new(None),
            pacer: resilience::Pacer::new(
                &snapshot.id,
                pace_of(&snapshot.settings, &snapshot.provider),
                self.nodes.clone(),
            ),
            bulkhead: resilience::Bulkhead::new(max_concurrent),
            max_concurrent,
            responses: cache::ResponseCache::default(),
            inflight: cache::Coalescer::default(),
            notices: cache::Notices::default(),
            circuit: resilience::Circuit::new(
                self.config.circuit_failures,
                self.config.circuit_cooldown,
            ),
            timeout: snapshot
                .settings
                .timeout_ms
                .map(Duration::from_millis)
                .unwrap_or(self.config.timeout),
        });
        states.insert(snapshot.id.clone(), state.clone());
        state
    }

    /// This node's live state of connection `id` (circuit, pacing, calls in flight), if it
    /// has made or prepared a call through it since it started.
    pub fn live_state(&self, id: &str) -> Option<Arc<ConnState>> {
        self.states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Reads the connection from the store (bypassing the cache) and caches it.
    pub async fn load(&self, id: &str) -> Result<(Arc<Snapshot>, Arc<ConnState>), ConnectionError> {
        let record = self
            .store
            .get_connection(id)
            .await?
            .ok_or_else(|| ConnectionError::NotFound(id.to_owned()))?;
        let snapshot = Arc::new(self.snapshot_of(record)?);
        let state = self.state_for(&snapshot);
        *state.cache.write().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), snapshot.clone()));
        Ok((snapshot, state))
    }

    /// The connection, from the cache when it is fresh enough.
    pub async fn get(&self, id: &str) -> Result<(Arc<Snapshot>, Arc<ConnState>), ConnectionError> {
        let state = self
            .states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned();
        if let Some(state) = state {
            let cached = state
                .cache
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if let Some((at, snapshot)) = cached
                && at.elapsed() < CACHE_TTL
            {
                return Ok((snapshot, state));
            }
        }
        match self.load(id).await {
            Err(ConnectionError::NotFound(id)) => {
                self.forget(&id);
                Err(ConnectionError::NotFound(id))
            }
            other => other,
        }
    }

    fn oauth_http(&self, timeout: Duration) -> oauth::OAuthHttp {
        oauth::OAuthHttp {
            client: self.http.clone(),
            policy: self.policy.clone(),
            timeout,
        }
    }

    fn oauth_spec<'a>(&self, snapshot: &'a Snapshot) -> Result<&'a OAuth2Spec, ConnectionError> {
        snapshot.provider.oauth2.as_ref().ok_or_else(|| {
            ConnectionError::Invalid(format!(
                "provider `{}` has no [oauth2] table",
                snapshot.provider.id
            ))
        })
    }

    fn oauth_client(
        &self,
        snapshot: &Snapshot,
        redirect: bool,
    ) -> Result<oauth::OAuthClient, ConnectionError> {
        let spec = self.oauth_spec(snapshot)?;
        let endpoints = oauth::Endpoints {
            authorize_url: snapshot
                .expand(&spec.authorize_url)
                .map_err(ConnectionError::Invalid)?,
            token_url: snapshot
                .expand(&spec.token_url)
                .map_err(ConnectionError::Invalid)?,
        };
        let client_id = snapshot.credentials.client_id.as_deref().ok_or_else(|| {
            ConnectionError::Invalid(format!("connection `{}` has no client_id", snapshot.id))
        })?;
        oauth::client(
            &endpoints,
            spec,
            client_id,
            snapshot.credentials.client_secret.as_deref(),
            redirect.then_some(self.redirect_uri.as_str()),
        )
        .map_err(ConnectionError::Invalid)
    }

    /// Starts an authorization-code flow: stores a single-use state (10 minutes) with the PKCE
    /// verifier and returns the provider's authorize URL.
    pub async fn start_authorization(&self, id: &str) -> Result<String, ConnectionError> {
        let (snapshot, _) = self.load(id).await?;
        if snapshot.auth_mode != AuthMode::Oauth2 {
            return Err(ConnectionError::Conflict(format!(
                "connection `{id}` uses `{}`; only `oauth2` connections are authorized in a browser",
                snapshot.auth_mode.as_str()
            )));
        }
        let client = self.oauth_client(&snapshot, true)?;
        let spec = self.oauth_spec(&snapshot)?;
        let scopes = if snapshot.scopes.is_empty() {
            spec.default_scopes.clone()
        } else {
            snapshot.scopes.clone()
        };
        let (url, state, verifier) = oauth::authorize(&client, spec, &scopes);
        let now = now_millis();
        let pending = PendingFlow {
            verifier,
            redirect_uri: self.redirect_uri.clone(),
        };
        self.store
            .put_oauth_state(&OAuthStateRecord {
                state_hash: crate::api::auth::hash_token(&state),
                connection_id: id.to_owned(),
                sealed: self.seal(&pending)?,
                expires_at: now + STATE_TTL.as_millis() as i64,
                created_at: now,
            })
            .await?;
        Ok(url)
    }

    /// Finishes an authorization-code flow: takes the state (once), exchanges the code with
    /// the PKCE verifier, stores the tokens and marks the connection active. Returns its id.
    pub async fn finish_authorization(
        &self,
        state: &str,
        code: &str,
    ) -> Result<String, ConnectionError> {
        let flow = self
            .store
            .take_oauth_state(&crate::api::auth::hash_token(state), now_millis())
            .await?
            .ok_or_else(|| {
                ConnectionError::Invalid(
                    "this authorization link is unknown, was already used or expired (after 10 \
                     minutes); start again"
                        .into(),
                )
            })?;
        let pending: PendingFlow = self.open(&flow.sealed)?;
        let (snapshot, _) = self.load(&flow.connection_id).await?;
        let client = self.oauth_client(&snapshot, true)?;
        let http = self.oauth_http(self.config.timeout);
        let grant = oauth::exchange_code(&client, &http, code, pending.verifier.as_deref())
            .await
            .map_err(ConnectionError::Token)?;
        self.store_grant(&snapshot, grant).await?;
        Ok(snapshot.id.clone())
    }

    /// Writes a grant (CAS on the snapshot's version, retried on a fresh read if the row moved
    /// for another reason) and announces a recovery.
    async fn store_grant(
        &self,
        snapshot: &Snapshot,
        grant: oauth::Grant,
    ) -> Result<Arc<Snapshot>, ConnectionError> {
        let spec = self.oauth_spec(snapshot)?;
        let now = now_millis();
        let kept: BTreeMap<String, String> = spec
            .token_fields
            .iter()
            .filter_map(|f| grant.extra.get(f).map(|v| (f.clone(), v.clone())))
            .collect();
        let mut current = snapshot.clone();
        for _ in 0..5 {
            let previous = current.tokens.clone().unwrap_or_default();
            let tokens = Tokens {
                access_token: grant.access_token.clone(),
                // A rotated refresh token replaces the old one; none in the answer keeps it.
                refresh_token: grant.refresh_token.clone().or(previous.refresh_token),
                fields: {
                    let mut fields = previous.fields;
                    fields.extend(kept.clone());
                    fields
                },
            };
            let update = TokenUpdate {
                id: current.id.clone(),
                expected_version: current.version,
                status: Status::Active.as_str().to_owned(),
                tokens: Some(self.seal(&tokens)?),
                expires_at: grant
                    .expires_in
                    .map(|d| now.saturating_add(d.as_millis() as i64)),
                scopes: grant.scopes.as_ref().map(|s| s.join(" ")),
                last_error: None,
                updated_at: now,
            };
            if self.store.update_connection_tokens(&update).await? {
                if current.status == Status::NeedsReauth {
                    self.emit("connection.recovered", &current, None);
                }
                let (fresh, _) = self.load(&current.id).await?;
                return Ok(fresh);
            }
            current = (*self.load(&current.id).await?.0).clone();
        }
        Err(ConnectionError::Busy(format!(
            "connection `{}` kept changing while its tokens were stored",
            snapshot.id
        )))
    }

    fn emit(&self, event_type: &str, snapshot: &Snapshot, error: Option<&str>) {
        tracing::warn!(connection = %snapshot.id, provider = %snapshot.provider.id, event_type, error, "connection status changed");
        if let Some(operations) = &self.operations {
            let mut data = json!({
                "connection_id": snapshot.id,
                "provider": snapshot.provider.id,
            });
            if let Some(error) = error {
                data["error"] = json!(error);
            }
            operations.emit(event_type, None, data);
        }
    }

    /// Refreshes the connection's access token once, however many callers (and nodes) ask at
    /// the same time, and returns the current connection.
    ///
    /// `seen_version` is the version of the token the caller found wanting: `None` after a
    /// `401` is not given, so the refresh happens only if the token is missing or expires
    /// within the margin; `Some(v)` (a `401`, or an explicit refresh) refreshes unless the
    /// stored version moved past `v` in the meantime (someone else refreshed).
    pub async fn refresh(
        &self,
        id: &str,
        seen_version: Option<i64>,
    ) -> Result<Arc<Snapshot>, ConnectionError> {
        use tracing::Instrument as _;
        self.refresh_in_span(id, seen_version)
            .instrument(crate::telemetry::spans::oauth_refresh(id))
            .await
    }

    async fn refresh_in_span(
        &self,
        id: &str,
        seen_version: Option<i64>,
    ) -> Result<Arc<Snapshot>, ConnectionError> {
        let (_, state) = self.get(id).await?;
        let _local = state.refresh.lock().await;
        let margin = self.config.refresh_margin;
        let needed = |s: &Snapshot| match seen_version {
            Some(v) => s.version == v,
            None => s.token_stale(margin, now_millis()),
        };
        let (snapshot, _) = self.load(id).await?;
        if !needed(&snapshot) {
            return Ok(snapshot);
        }
        // Across nodes: whoever holds `refresh:{id}` refreshes; the others wait for its result.
        let lease = format!("refresh:{id}");
        let deadline = Instant::now() + REFRESH_LEASE + self.config.timeout;
        loop {
            if self
                .store
                .try_lease(
                    &lease,
                    &self.owner,
                    now_millis(),
                    REFRESH_LEASE.as_millis() as i64,
                )
                .await?
            {
                break;
            }
            if Instant::now() > deadline {
                return Err(ConnectionError::Busy(format!(
                    "another node has been refreshing connection `{id}` for too long"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            let (snapshot, _) = self.load(id).await?;
            if !needed(&snapshot) {
                return Ok(snapshot);
            }
        }
        let result = async {
            let (snapshot, _) = self.load(id).await?;
            if !needed(&snapshot) {
                return Ok(snapshot);
            }
            self.refresh_now(&snapshot).await
        }
        .await;
        if let Err(error) = self.store.release_lease(&lease, &self.owner).await {
            tracing::warn!(%error, connection = %id, "could not release the refresh lease");
        }
        result
    }

    /// Asks the token endpoint for a new access token (refresh token, or client credentials)
    /// and stores it. A refusal marks the connection `needs_reauth`.
    async fn refresh_now(&self, snapshot: &Snapshot) -> Result<Arc<Snapshot>, ConnectionError> {
        let client = self.oauth_client(snapshot, false)?;
        let spec = self.oauth_spec(snapshot)?;
        let http = self.oauth_http(self.config.timeout);
        let result = match snapshot.auth_mode {
            AuthMode::Oauth2ClientCredentials => {
                let scopes = if snapshot.scopes.is_empty() {
                    spec.client_credentials_scopes
                        .clone()
                        .unwrap_or_else(|| spec.default_scopes.clone())
                } else {
                    snapshot.scopes.clone()
                };
                oauth::client_credentials(&client, &http, spec, &scopes).await
            }
            AuthMode::Oauth2 => {
                if snapshot.status == Status::Pending {
                    return Err(ConnectionError::Conflict(format!(
                        "connection `{}` is pending: authorize it first (GET /v1/connect/{}?connection_id={})",
                        snapshot.id, snapshot.provider.id, snapshot.id
                    )));
                }
                match snapshot
                    .tokens
                    .as_ref()
                    .and_then(|t| t.refresh_token.as_deref())
                {
                    Some(refresh_token) => oauth::refresh(&client, &http, refresh_token).await,
                    None => Err(oauth::TokenError {
                        message: "the access token expired and the provider issued no refresh \
                                  token: connect again"
                            .into(),
                        transient: false,
                    }),
                }
            }
            other => {
                return Err(ConnectionError::Conflict(format!(
                    "connection `{}` uses `{}`, which has no tokens to refresh",
                    snapshot.id,
                    other.as_str()
                )));
            }
        };
        metrics::counter!(
            "switchboard_connection_refreshes_total",
            "connection" => snapshot.id.clone(),
            "result" => if result.is_ok() { "ok" } else { "error" }
        )
        .increment(1);
        match result {
            Ok(grant) => self.store_grant(snapshot, grant).await,
            Err(error) => {
                let status = if error.transient {
                    snapshot.status
                } else {
                    Status::NeedsReauth
                };
                let update = TokenUpdate {
                    id: snapshot.id.clone(),
                    expected_version: snapshot.version,
                    status: status.as_str().to_owned(),
                    tokens: None,
                    expires_at: None,
                    scopes: None,
                    last_error: Some(error.message.clone()),
                    updated_at: now_millis(),
                };
                if self.store.update_connection_tokens(&update).await?
                    && status == Status::NeedsReauth
                    && snapshot.status != Status::NeedsReauth
                {
                    self.emit("connection.needs_reauth", snapshot, Some(&error.message));
                }
                self.load(&snapshot.id).await?;
                Err(ConnectionError::Token(error))
            }
        }
    }
}

/// What is sealed with a pending flow.
#[derive(Serialize, Deserialize)]
struct PendingFlow {
    verifier: Option<String>,
    redirect_uri: String,
}

/// A validated connection to create.
#[derive(Debug, Clone)]
pub struct NewConnection {
    /// Id.
    pub id: String,
    /// Provider id.
    pub provider: String,
    /// Auth mode.
    pub auth_mode: AuthMode,
    /// URL parameters.
    pub params: BTreeMap<String, String>,
    /// Overrides.
    pub settings: Settings,
    /// Requested scopes.
    pub scopes: Vec<String>,
    /// Static credentials.
    pub credentials: Credentials,
    /// Initial status.
    pub status: Status,
}

/// A connection's pace in all (across every node): its `settings` override the provider's
/// `rate_limit`; `None` when neither sets a rate (calls are then paced only by headers).
pub fn pace_of(settings: &Settings, provider: &ProviderSpec) -> Option<resilience::Pace> {
    let rate = &provider.rate_limit;
    resilience::Pace::new(
        settings.requests_per_second.or(rate.requests_per_second),
        settings.burst.or(rate.burst),
    )
}

/// Parses a stored auth mode.
pub fn parse_mode(value: &str) -> Option<AuthMode> {
    [
        AuthMode::Oauth2,
        AuthMode::Oauth2ClientCredentials,
        AuthMode::ApiKey,
        AuthMode::Basic,
        AuthMode::Bearer,
    ]
    .into_iter()
    .find(|m| m.as_str() == value)
}

/// RFC 7009 revocation of the refresh token (or the access token), best effort.
async fn revoke(http: &oauth::OAuthHttp, snapshot: &Snapshot) {
    let Some(spec) = snapshot.provider.oauth2.as_ref() else {
        return;
    };
    let (Some(url), Some(tokens)) = (spec.revoke_url.as_deref(), snapshot.tokens.as_ref()) else {
        return;
    };
    let url = match snapshot.expand(url).map(|u| reqwest::Url::parse(&u)) {
        Ok(Ok(url)) => url,
        _ => return,
    };
    if client::check_literal(&http.policy, &url).is_err() {
        return;
    }
    let (token, hint) = match &tokens.refresh_token {
        Some(refresh) => (refresh.as_str(), "refresh_token"),
        None => (tokens.access_token.as_str(), "access_token"),
    };
    let mut form = vec![("token", token), ("token_type_hint", hint)];
    let mut request = http.client.post(url).timeout(http.timeout);
    let credentials = &snapshot.credentials;
    match (
        spec.client_auth,
        credentials.client_id.as_deref(),
        credentials.client_secret.as_deref(),
    ) {
        (switchboard_core::providers::ClientAuth::Basic, Some(id), secret) => {
            request = request.basic_auth(id, secret);
        }
        (_, Some(id), secret) => {
            form.push(("client_id", id));
            if let Some(secret) = secret {
                form.push(("client_secret", secret));
            }
        }
        _ => {}
    }
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let result = request
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
        .send()
        .await;
    match result {
        Ok(response) if response.status().is_success() => {
            tracing::info!(connection = %snapshot.id, "revoked the connection's token at the provider")
        }
        Ok(response) => {
            tracing::warn!(connection = %snapshot.id, status = %response.status(), "the provider refused to revoke the token")
        }
        Err(error) => {
            tracing::warn!(connection = %snapshot.id, error = %client::describe_error(&error), "could not revoke the token")
        }
    }
}
