//! The live set of sources, destinations and routes.
//!
//! Two origins merge here: the configuration file (applied at every start, read-only through the
//! API, `managed_by: "config"`) and resources created through the management API (sealed in the
//! store, `managed_by: "api"`). Every change builds a complete new [`Runtime`] from both, checks
//! it as a whole (dangling routes, bad secrets, duplicate ids) and swaps it in atomically: a
//! request or an attempt always sees one consistent snapshot, and a rejected change leaves the
//! running one untouched.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use switchboard_core::Config;
use switchboard_core::config::{DestinationConfig, RouteConfig, SourceConfig};
use switchboard_core::time::now_millis;
use switchboard_store::vault::Vault;
use switchboard_store::{ResourceRecord, Store, StoreError};
use tokio::sync::Mutex;

use crate::delivery::destinations::{self, Destinations};
use crate::state::{self, SourceRuntime};

/// Resource kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A source.
    Source,
    /// A destination.
    Destination,
    /// A route.
    Route,
}

impl Kind {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Destination => "destination",
            Self::Route => "route",
        }
    }
}

/// Who owns a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManagedBy {
    /// The configuration file: read-only through the API.
    Config,
    /// The management API.
    Api,
}

impl ManagedBy {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Api => "api",
        }
    }
}

/// Timestamps of an API-managed resource.
#[derive(Debug, Clone, Copy)]
pub struct Stamps {
    /// Created.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
}

/// One consistent snapshot.
pub struct Runtime {
    /// The effective configuration (file + API resources).
    pub config: Config,
    /// Sources ready for ingest.
    pub sources: HashMap<String, SourceRuntime>,
    /// Destinations ready for delivery.
    pub destinations: Destinations,
    /// Ids defined by the configuration file, per kind.
    pub from_file: HashMap<Kind, BTreeSet<String>>,
    /// Timestamps of API resources.
    pub stamps: HashMap<(Kind, String), Stamps>,
}

impl Runtime {
    /// Who manages `(kind, id)`.
    pub fn managed_by(&self, kind: Kind, id: &str) -> ManagedBy {
        if self
            .from_file
            .get(&kind)
            .is_some_and(|ids| ids.contains(id))
        {
            ManagedBy::Config
        } else {
            ManagedBy::Api
        }
    }
}

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The resulting configuration is invalid (the message says why).
    #[error("{0}")]
    Invalid(String),
    /// The resource belongs to the configuration file.
    #[error(
        "{kind} `{id}` is defined in the configuration file and is read-only through the API; change the file instead"
    )]
    ConfigManaged {
        /// Kind name.
        kind: &'static str,
        /// Id.
        id: String,
    },
    /// A resource with this id exists.
    #[error("{kind} `{id}` already exists")]
    Exists {
        /// Kind name.
        kind: &'static str,
        /// Id.
        id: String,
    },
    /// No such resource.
    #[error("no {kind} `{id}`")]
    NotFound {
        /// Kind name.
        kind: &'static str,
        /// Id.
        id: String,
    },
    /// Other resources refer to it.
    #[error("{kind} `{id}` is used by route(s) {routes}; delete or change them first")]
    InUse {
        /// Kind name.
        kind: &'static str,
        /// Id.
        id: String,
        /// Referring routes.
        routes: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A change to API-managed resources.
#[derive(Debug, Clone)]
pub enum Change {
    /// Create or replace a source.
    PutSource(SourceConfig, bool),
    /// Create or replace a destination.
    PutDestination(DestinationConfig, bool),
    /// Create or replace a route.
    PutRoute(RouteConfig, bool),
    /// Delete a resource.
    Delete(Kind, String),
}

/// Holds the current [`Runtime`] and applies changes.
pub struct Registry {
    current: ArcSwap<Runtime>,
    file: Config,
    store: Arc<dyn Store>,
    vault: Vault,
    writes: Mutex<()>,
}

impl Registry {
    /// Builds the first snapshot from the file and the store.
    pub async fn load(
        file: Config,
        store: Arc<dyn Store>,
        vault: Vault,
    ) -> Result<Self, ChangeError> {
        let records = store.list_resources().await?;
        let runtime = build(&file, &records, &vault)?;
        Ok(Self {
            current: ArcSwap::from_pointee(runtime),
            file,
            store,
            vault,
            writes: Mutex::new(()),
        })
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<Runtime> {
        self.current.load_full()
    }

    /// Validates and applies a change: persist, then swap. Changes are serialized.
    pub async fn apply(&self, change: Change) -> Result<(), ChangeError> {
        let _guard = self.writes.lock().await;
        let now = now_millis();
        let current = self.current();
        let mut records = self.store.list_resources().await?;
        let (kind, id) = match &change {
            Change::PutSource(s, _) => (Kind::Source, s.id.clone()),
            Change::PutDestination(d, _) => (Kind::Destination, d.id().to_owned()),
            Change::PutRoute(r, _) => (Kind::Route, r.effective_id()),
            Change::Delete(kind, id) => (*kind, id.clone()),
        };
        if current.managed_by(kind, &id) == ManagedBy::Config {
            return Err(ChangeError::ConfigManaged {
                kind: kind.as_str(),
                id,
            });
        }
        let existing = records
            .iter()
            .position(|r| r.kind == kind.as_str() && r.id == id);
        let change_spec = match &change {
            Change::PutSource(s, _) => Some(serde_json::to_vec(s)),
            Change::PutDestination(d, _) => Some(serde_json::to_vec(d)),
            Change::PutRoute(r, _) => Some(serde_json::to_vec(r)),
            Change::Delete(..) => None,
        }
        .transpose()
        .map_err(|e| ChangeError::Invalid(e.to_string()))?;
        match change {
            Change::Delete(..) => {
                let Some(index) = existing else {
                    return Err(ChangeError::NotFound {
                        kind: kind.as_str(),
                        id,
                    });
                };
                records.remove(index);
                let candidate = build(&self.file, &records, &self.vault).map_err(|e| match e {
                    ChangeError::Invalid(_) => in_use(&current.config, kind, &id),
                    other => other,
                })?;
                self.store.delete_resource(kind.as_str(), &id).await?;
                self.current.store(Arc::new(candidate));
            }
            Change::PutSource(_, create_only)
            | Change::PutDestination(_, create_only)
            | Change::PutRoute(_, create_only) => {
                let spec = match &change_spec {
                    Some(spec) => spec.clone(),
                    None => return Err(ChangeError::Invalid("nothing to store".into())),
                };
                if create_only && existing.is_some() {
                    return Err(ChangeError::Exists {
                        kind: kind.as_str(),
                        id,
                    });
                }
                if !create_only && existing.is_none() {
                    return Err(ChangeError::NotFound {
                        kind: kind.as_str(),
                        id,
                    });
                }
                let record = ResourceRecord {
                    kind: kind.as_str().to_owned(),
                    id: id.clone(),
                    sealed: self.vault.seal(&spec)?,
                    created_at: existing.map_or(now, |i| records[i].created_at),
                    updated_at: now,
                };
                match existing {
                    Some(index) => records[index] = record.clone(),
                    None => records.push(record.clone()),
                }
                let candidate = build(&self.file, &records, &self.vault)?;
                self.store
                    .put_resource(&record, create_only)
                    .await
                    .map_err(|e| match e {
                        StoreError::Conflict => ChangeError::Exists {
                            kind: kind.as_str(),
                            id: id.clone(),
                        },
                        other => other.into(),
                    })?;
                self.current.store(Arc::new(candidate));
            }
        }
        tracing::info!(kind = kind.as_str(), %id, "configuration changed through the API");
        Ok(())
    }
}

fn in_use(config: &Config, kind: Kind, id: &str) -> ChangeError {
    let routes: Vec<String> = config
        .routes
        .iter()
        .filter(|r| match kind {
            Kind::Source => r.source == id,
            Kind::Destination => r.destination == id,
            Kind::Route => false,
        })
        .map(RouteConfig::effective_id)
        .collect();
    if routes.is_empty() {
        ChangeError::Invalid(format!(
            "deleting {} `{id}` would leave the configuration invalid",
            kind.as_str()
        ))
    } else {
        ChangeError::InUse {
            kind: kind.as_str(),
            id: id.to_owned(),
            routes: routes.join(", "),
        }
    }
}

/// Builds a snapshot from the file configuration and sealed API resources.
fn build(file: &Config, records: &[ResourceRecord], vault: &Vault) -> Result<Runtime, ChangeError> {
    let mut config = file.clone();
    let mut from_file: HashMap<Kind, BTreeSet<String>> = HashMap::new();
    from_file.insert(
        Kind::Source,
        file.sources.iter().map(|s| s.id.clone()).collect(),
    );
    from_file.insert(
        Kind::Destination,
        file.destinations
            .iter()
            .map(|d| d.id().to_owned())
            .collect(),
    );
    from_file.insert(
        Kind::Route,
        file.routes.iter().map(RouteConfig::effective_id).collect(),
    );
    let mut stamps = HashMap::new();
    for record in records {
        let spec = vault.open_sealed(&record.sealed)?;
        let invalid = |e: serde_json::Error| {
            ChangeError::Invalid(format!(
                "stored {} `{}` is unreadable: {e}",
                record.kind, record.id
            ))
        };
        let kind = match record.kind.as_str() {
            "source" => {
                config
                    .sources
                    .push(serde_json::from_slice(&spec).map_err(invalid)?);
                Kind::Source
            }
            "destination" => {
                config
                    .destinations
                    .push(serde_json::from_slice(&spec).map_err(invalid)?);
                Kind::Destination
            }
            "route" => {
                config
                    .routes
                    .push(serde_json::from_slice(&spec).map_err(invalid)?);
                Kind::Route
            }
            other => {
                tracing::warn!(kind = other, id = %record.id, "ignoring a stored resource of unknown kind");
                continue;
            }
        };
        stamps.insert(
            (kind, record.id.clone()),
            Stamps {
                created_at: record.created_at,
                updated_at: record.updated_at,
            },
        );
    }
    config
        .validate()
        .map_err(|e| ChangeError::Invalid(e.to_string()))?;
    let sources = state::build_sources(&config).map_err(ChangeError::Invalid)?;
    let destinations = destinations::build(&config).map_err(ChangeError::Invalid)?;
    Ok(Runtime {
        config,
        sources,
        destinations,
        from_file,
        stamps,
    })
}
