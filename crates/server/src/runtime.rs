//! The live set of sources, destinations and routes.
//!
//! Two origins merge here: the configuration file (applied at every start, read-only through the
//! API, `managed_by: "config"`) and resources created through the management API (sealed in the
//! store, `managed_by: "api"`). Every change builds a complete new [`Runtime`] from both, checks
//! it as a whole (dangling routes, bad secrets, duplicate ids) and swaps it in atomically: a
//! request or an attempt always sees one consistent snapshot, and a rejected change leaves the
//! running one untouched.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use switchboard_core::Config;
use switchboard_core::config::{DestinationConfig, RouteConfig, SourceConfig, SyncConfig};
use switchboard_core::outbound::{EndpointSpec, EventTypeSpec, TenantSpec};
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
    /// A tenant (our user's customer).
    Tenant,
    /// A tenant's endpoint.
    Endpoint,
    /// An event type of the catalog.
    EventType,
    /// A sync job.
    Sync,
}

impl Kind {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Destination => "destination",
            Self::Route => "route",
            Self::Tenant => "tenant",
            Self::Endpoint => "endpoint",
            Self::EventType => "event type",
            Self::Sync => "sync",
        }
    }

    /// The `kind` column value in the store.
    fn stored(self) -> &'static str {
        match self {
            Self::EventType => "event_type",
            other => other.as_str(),
        }
    }
}

/// A catalog event type with its compiled schema.
pub struct EventType {
    /// The spec as stored.
    pub spec: EventTypeSpec,
    /// Compiled JSON Schema validator.
    pub validator: Option<jsonschema::Validator>,
}

impl EventType {
    /// Validates a payload; returns `(instance path, message)` for each violation (at most 20).
    pub fn violations(&self, payload: &serde_json::Value) -> Vec<(String, String)> {
        let Some(validator) = &self.validator else {
            return Vec::new();
        };
        validator
            .iter_errors(payload)
            .take(20)
            .map(|e| (e.instance_path().to_string(), e.to_string()))
            .collect()
    }
}

/// Compiles an event type's schema (rejecting invalid schemas with the reason).
pub fn compile_event_type(spec: EventTypeSpec) -> Result<EventType, String> {
    let validator = spec
        .schema
        .as_ref()
        .map(|schema| {
            jsonschema::validator_for(schema)
                .map_err(|e| format!("event type `{}`: invalid JSON Schema: {e}", spec.name))
        })
        .transpose()?;
    Ok(EventType { spec, validator })
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
    /// Tenants by id.
    pub tenants: BTreeMap<String, TenantSpec>,
    /// Endpoints by id.
    pub endpoints: BTreeMap<String, EndpointSpec>,
    /// Endpoint ids per tenant, in id order.
    pub by_tenant: HashMap<String, Vec<String>>,
    /// Event types by name.
    pub event_types: BTreeMap<String, Arc<EventType>>,
    /// Compiled filters and transforms of the routes that have them, by route id.
    pub route_programs: HashMap<String, Arc<crate::transform::RouteProgram>>,
}

impl Runtime {
    /// The endpoints of a tenant, by id.
    pub fn tenant_endpoints<'a>(
        &'a self,
        tenant: &'a str,
    ) -> impl Iterator<Item = &'a EndpointSpec> {
        self.endpoints.values().filter(move |e| e.tenant == tenant)
    }

    /// One new delivery per route leaving `source`. Deliveries to an ordered destination get
    /// the empty ordering key (FIFO per destination).
    pub fn new_deliveries(&self, source: &str) -> Vec<switchboard_store::NewDelivery> {
        self.routes_from(source)
            .into_iter()
            .map(|(route_id, destination)| switchboard_store::NewDelivery {
                id: switchboard_core::ids::new_delivery_id(),
                ordering_key: self
                    .destinations
                    .get(&destination)
                    .filter(|t| t.ordered)
                    .map(|_| String::new()),
                route_id,
                destination,
            })
            .collect()
    }

    /// Enabled routes whose source is `source`, as `(route id, destination id)`.
    pub fn routes_from(&self, source: &str) -> Vec<(String, String)> {
        self.config
            .routes
            .iter()
            .filter(|r| r.source == source && r.enabled)
            .map(|r| (r.effective_id(), r.destination.clone()))
            .collect()
    }
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
    /// Create or replace a tenant.
    PutTenant(TenantSpec, bool),
    /// Create or replace an endpoint.
    PutEndpoint(EndpointSpec, bool),
    /// Create or replace an event type.
    PutEventType(EventTypeSpec, bool),
    /// Create or replace a sync job.
    PutSync(Box<SyncConfig>, bool),
    /// Delete a resource (a tenant takes its endpoints with it).
    Delete(Kind, String),
}

/// The resource a change is about, its spec as JSON (for puts) and whether it must be new.
type Target = (Kind, String, Option<Vec<u8>>, bool);

impl Change {
    /// The resource it changes, its spec as JSON (for puts) and whether it must be new.
    fn target(&self) -> Result<Target, serde_json::Error> {
        Ok(match self {
            Self::PutSource(s, c) => (Kind::Source, s.id.clone(), Some(serde_json::to_vec(s)?), *c),
            Self::PutDestination(d, c) => (
                Kind::Destination,
                d.id().to_owned(),
                Some(serde_json::to_vec(d)?),
                *c,
            ),
            Self::PutRoute(r, c) => (
                Kind::Route,
                r.effective_id(),
                Some(serde_json::to_vec(r)?),
                *c,
            ),
            Self::PutTenant(t, c) => (Kind::Tenant, t.id.clone(), Some(serde_json::to_vec(t)?), *c),
            Self::PutEndpoint(e, c) => (
                Kind::Endpoint,
                e.id.clone(),
                Some(serde_json::to_vec(e)?),
                *c,
            ),
            Self::PutEventType(t, c) => (
                Kind::EventType,
                t.name.clone(),
                Some(serde_json::to_vec(t)?),
                *c,
            ),
            Self::PutSync(s, c) => (Kind::Sync, s.id.clone(), Some(serde_json::to_vec(s)?), *c),
            Self::Delete(kind, id) => (*kind, id.clone(), None, false),
        })
    }
}

/// Holds the current [`Runtime`] and applies changes.
pub struct Registry {
    current: ArcSwap<Runtime>,
    file: Config,
    store: Arc<dyn Store>,
    vault: Vault,
    writes: Mutex<()>,
    /// Fingerprint of the stored resources the current snapshot was built from.
    seen: std::sync::atomic::AtomicU64,
}

/// A cheap identity of a set of stored resources: changes whenever one is added, removed or
/// updated (without opening any sealed spec).
fn fingerprint(records: &[ResourceRecord]) -> u64 {
    use std::hash::{Hash, Hasher};
    // Order-independent: a sum of per-record hashes, plus the count.
    records.iter().fold(records.len() as u64, |sum, r| {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (&r.kind, &r.id, r.updated_at, &r.sealed).hash(&mut hasher);
        sum.wrapping_add(hasher.finish())
    })
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
        let seen = std::sync::atomic::AtomicU64::new(fingerprint(&records));
        Ok(Self {
            current: ArcSwap::from_pointee(runtime),
            file,
            store,
            vault,
            writes: Mutex::new(()),
            seen,
        })
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<Runtime> {
        self.current.load_full()
    }

    /// Picks up resources changed by another node sharing the database. Returns whether the
    /// snapshot changed. A stored state this build cannot use is logged and left aside (the
    /// current snapshot stays).
    pub async fn refresh(&self) -> Result<bool, ChangeError> {
        let _guard = self.writes.lock().await;
        let records = self.store.list_resources().await?;
        let print = fingerprint(&records);
        if print == self.seen.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(false);
        }
        let runtime = build(&self.file, &records, &self.vault)?;
        self.current.store(Arc::new(runtime));
        self.seen.store(print, std::sync::atomic::Ordering::Release);
        tracing::info!("picked up resources changed by another node");
        Ok(true)
    }

    /// Validates and applies a change: persist, then swap. Changes are serialized.
    pub async fn apply(&self, change: Change) -> Result<(), ChangeError> {
        let _guard = self.writes.lock().await;
        let now = now_millis();
        let current = self.current();
        let mut records = self.store.list_resources().await?;
        let (kind, id, spec, create_only) = change
            .target()
            .map_err(|e| ChangeError::Invalid(e.to_string()))?;
        if current.managed_by(kind, &id) == ManagedBy::Config {
            return Err(ChangeError::ConfigManaged {
                kind: kind.as_str(),
                id,
            });
        }
        let existing = records
            .iter()
            .position(|r| r.kind == kind.stored() && r.id == id);
        match spec {
            None => {
                let Some(index) = existing else {
                    return Err(ChangeError::NotFound {
                        kind: kind.as_str(),
                        id,
                    });
                };
                records.remove(index);
                // A tenant's endpoints go with it.
                let cascade: Vec<String> = if kind == Kind::Tenant {
                    current
                        .tenant_endpoints(&id)
                        .map(|e| e.id.clone())
                        .collect()
                } else {
                    Vec::new()
                };
                records.retain(|r| !(r.kind == Kind::Endpoint.stored() && cascade.contains(&r.id)));
                let candidate = build(&self.file, &records, &self.vault).map_err(|e| match e {
                    ChangeError::Invalid(_) => in_use(&current.config, kind, &id),
                    other => other,
                })?;
                for endpoint in &cascade {
                    self.store
                        .delete_resource(Kind::Endpoint.stored(), endpoint)
                        .await?;
                }
                self.store.delete_resource(kind.stored(), &id).await?;
                self.current.store(Arc::new(candidate));
                self.seen
                    .store(fingerprint(&records), std::sync::atomic::Ordering::Release);
            }
            Some(spec) => {
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
                    kind: kind.stored().to_owned(),
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
                self.seen
                    .store(fingerprint(&records), std::sync::atomic::Ordering::Release);
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
            _ => false,
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

/// Builds everything `serve` builds from a configuration file — verifiers, jq programs,
/// templates, connectors, fetching sources' settings — without opening a store or a socket:
/// the error is the one `serve` would stop with.
pub fn check(file: &Config) -> Result<(), String> {
    file.validate().map_err(|e| e.to_string())?;
    let vault = Vault::from_key(&[0; 32]).map_err(|e| e.to_string())?;
    build(file, &[], &vault)
        .map(|_| ())
        .map_err(|e| e.to_string())
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
        Kind::Sync,
        file.syncs.iter().map(|s| s.id.clone()).collect(),
    );
    from_file.insert(
        Kind::Route,
        file.routes.iter().map(RouteConfig::effective_id).collect(),
    );
    let mut stamps = HashMap::new();
    let mut tenants = BTreeMap::new();
    let mut endpoints: BTreeMap<String, EndpointSpec> = BTreeMap::new();
    let mut event_types = BTreeMap::new();
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
            "tenant" => {
                let tenant: TenantSpec = serde_json::from_slice(&spec).map_err(invalid)?;
                tenants.insert(tenant.id.clone(), tenant);
                Kind::Tenant
            }
            "endpoint" => {
                let endpoint: EndpointSpec = serde_json::from_slice(&spec).map_err(invalid)?;
                endpoints.insert(endpoint.id.clone(), endpoint);
                Kind::Endpoint
            }
            "event_type" => {
                let spec: EventTypeSpec = serde_json::from_slice(&spec).map_err(invalid)?;
                let compiled = compile_event_type(spec).map_err(ChangeError::Invalid)?;
                event_types.insert(compiled.spec.name.clone(), Arc::new(compiled));
                Kind::EventType
            }
            "sync" => {
                config
                    .syncs
                    .push(serde_json::from_slice(&spec).map_err(invalid)?);
                Kind::Sync
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
    for endpoint in endpoints.values() {
        if !tenants.contains_key(&endpoint.tenant) {
            return Err(ChangeError::Invalid(format!(
                "endpoint `{}`: unknown tenant `{}`",
                endpoint.id, endpoint.tenant
            )));
        }
    }
    let mut by_tenant: HashMap<String, Vec<String>> = HashMap::new();
    for endpoint in endpoints.values() {
        by_tenant
            .entry(endpoint.tenant.clone())
            .or_default()
            .push(endpoint.id.clone());
    }
    let mut route_programs = HashMap::new();
    for route in &config.routes {
        let program =
            crate::transform::RouteProgram::compile(route).map_err(ChangeError::Invalid)?;
        if !program.is_empty() {
            route_programs.insert(route.effective_id(), Arc::new(program));
        }
    }
    for source in &config.sources {
        crate::sources::check(source).map_err(ChangeError::Invalid)?;
    }
    for sync in &config.syncs {
        crate::sync::check(sync).map_err(ChangeError::Invalid)?;
    }
    let sources = state::build_sources(&config).map_err(ChangeError::Invalid)?;
    let endpoint_list: Vec<EndpointSpec> = endpoints.values().cloned().collect();
    let destinations =
        destinations::build(&config, &endpoint_list).map_err(ChangeError::Invalid)?;
    Ok(Runtime {
        config,
        sources,
        destinations,
        from_file,
        stamps,
        tenants,
        endpoints,
        by_tenant,
        event_types,
        route_programs,
    })
}
