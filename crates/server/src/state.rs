//! What request handlers share.

use std::collections::HashMap;
use std::sync::Arc;

use switchboard_core::Config;
use switchboard_store::Store;

use crate::ingest::commit::Committer;
use crate::ingest::verify::Verifier;

/// A route as the ingest path needs it.
#[derive(Debug, Clone)]
pub struct RouteTarget {
    /// Route id.
    pub id: String,
    /// Destination id.
    pub destination: String,
}

/// A configured source.
#[derive(Debug)]
pub struct SourceRuntime {
    /// Request verifier.
    pub verifier: Verifier,
    /// Routes leaving this source.
    pub routes: Vec<RouteTarget>,
}

/// Handler state.
pub struct AppState {
    /// Sources by id.
    pub sources: HashMap<String, SourceRuntime>,
    /// The group committer.
    pub committer: Committer,
    /// The store (health, metrics).
    pub store: Arc<dyn Store>,
    /// Ingest body limit.
    pub max_body_bytes: usize,
}

/// Builds the source table from configuration.
pub fn build_sources(config: &Config) -> Result<HashMap<String, SourceRuntime>, String> {
    let mut sources = HashMap::new();
    for source in &config.sources {
        let verifier = Verifier::build(&source.verifier)
            .map_err(|e| format!("source `{}`: {e}", source.id))?;
        let routes = config
            .routes
            .iter()
            .filter(|r| r.source == source.id)
            .map(|r| RouteTarget {
                id: r.effective_id(),
                destination: r.destination.clone(),
            })
            .collect();
        sources.insert(source.id.clone(), SourceRuntime { verifier, routes });
    }
    Ok(sources)
}
