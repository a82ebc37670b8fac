//! What request handlers share.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use switchboard_core::Config;
use switchboard_store::Store;

use crate::ingest::commit::Committer;
use crate::ingest::rejections::RejectionLog;
use crate::verifiers::{self, Verify};

/// A route as the ingest path needs it.
#[derive(Debug, Clone)]
pub struct RouteTarget {
    /// Route id.
    pub id: String,
    /// Destination id.
    pub destination: String,
}

/// A configured source, ready to take requests.
pub struct SourceRuntime {
    /// Request verifier.
    pub verifier: Box<dyn Verify>,
    /// Enabled routes leaving this source.
    pub routes: Vec<RouteTarget>,
    /// Body limit for this source.
    pub max_body_bytes: usize,
    /// Rate limiter, when configured.
    pub limiter: Option<DefaultDirectRateLimiter>,
    /// Extra headers (beyond the usual credential headers) whose values are never stored.
    pub credential_headers: Vec<String>,
    /// The source's kind (`webhook` sources accept `POST /in/{id}`; others fetch).
    pub kind: &'static str,
    /// `false` while the source is paused (webhook requests get `503`).
    pub enabled: bool,
}

/// Handler state.
pub struct AppState {
    /// Live sources, destinations and routes.
    pub registry: Arc<crate::runtime::Registry>,
    /// The group committer.
    pub committer: Committer,
    /// Due-time hints of the delivery worker (replays and resends add to them).
    pub due: Arc<crate::delivery::due::DueBook>,
    /// Circuit breakers and failure bookkeeping per destination.
    pub health: Arc<crate::delivery::health::HealthBook>,
    /// Recently rejected requests.
    pub rejections: RejectionLog,
    /// The store.
    pub store: Arc<dyn Store>,
    /// Wakes the delivery worker (after a replay).
    pub wake: Arc<tokio::sync::Notify>,
    /// Seals secrets at rest (resources, recorded idempotent responses).
    pub vault: switchboard_store::vault::Vault,
    /// SHA-256 (hex) of the configured bootstrap admin token.
    pub admin_token_hash: Option<String>,
    /// Whether `/metrics` needs a `read` token.
    pub metrics_require_token: bool,
    /// Connections to third-party APIs (credentials, tokens, the proxy's client).
    pub connections: Arc<crate::connections::Connections>,
    /// The live feed of events and attempts (`/v1/stream`, live views).
    pub live: Arc<crate::live::Live>,
    /// Accepted and rejected ingests per source on this node (`GET /v1/health`).
    pub activity: Arc<crate::telemetry::activity::SourceActivity>,
    /// The dashboard's own bookkeeping (signed-out sessions).
    pub ui: crate::ui::UiState,
    /// The sync engine (runs, cancels).
    pub syncs: Arc<crate::sync::Engine>,
    /// This node's id (as it heartbeats into the store).
    pub node: String,
    /// The SQLite data directory (`None` on PostgreSQL), whose free space `/v1/system` reports.
    pub data_dir: Option<std::path::PathBuf>,
}

/// Builds the source table from configuration.
pub fn build_sources(config: &Config) -> Result<HashMap<String, SourceRuntime>, String> {
    let mut sources = HashMap::new();
    for source in &config.sources {
        let verifier = verifiers::build(&source.verifier)
            .map_err(|e| format!("source `{}`: {e}", source.id))?;
        let routes = config
            .routes
            .iter()
            .filter(|r| r.source == source.id && r.enabled)
            .map(|r| RouteTarget {
                id: r.effective_id(),
                destination: r.destination.clone(),
            })
            .collect();
        let limiter = source.rate_limit.and_then(|limit| {
            let rate = NonZeroU32::new(limit.per_second)?;
            let burst = limit.burst.and_then(NonZeroU32::new).unwrap_or(rate);
            Some(RateLimiter::direct(
                Quota::per_second(rate).allow_burst(burst),
            ))
        });
        let credential_headers = verifier.credential_headers();
        sources.insert(
            source.id.clone(),
            SourceRuntime {
                credential_headers,
                verifier,
                routes,
                max_body_bytes: source
                    .max_body_bytes
                    .unwrap_or(config.server.max_body_bytes),
                limiter,
                kind: source.kind.name(),
                enabled: source.enabled,
            },
        );
    }
    Ok(sources)
}

/// The largest body any source accepts (the router-level limit).
pub fn largest_body_limit(config: &Config) -> usize {
    config
        .sources
        .iter()
        .filter_map(|s| s.max_body_bytes)
        .fold(config.server.max_body_bytes, usize::max)
}
