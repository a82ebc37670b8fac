//! `sources`, `destinations`, `routes`: list, show, create, update, delete through the API.
//!
//! `create` builds the request body from `--file`/`--data` (the full JSON body) and then the
//! flags (which win). `update` replaces the resource (`PUT`): with `--file`/`--data` that body is
//! sent as given (plus the flags); with flags only, the current resource is fetched and the flags
//! are applied to it, so unchanged fields are kept.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde_json::{Map, Value, json};

use super::Ctx;
use super::input::{BodyArgs, parse_header};
use super::output::outln;
use super::output::{field, items, print_fields, print_json, print_table};

/// Fields the API adds to a resource that are not part of its input.
const READ_ONLY: [&str; 4] = ["managed_by", "ingest_path", "created_at", "updated_at"];

/// `switchboard sources …`
#[derive(Debug, clap::Subcommand)]
pub enum SourcesCommand {
    /// Pause a source (webhook requests get 503 and are retried by their senders; a fetching source stops).
    Disable {
        /// Source id.
        id: String,
    },
    /// Resume a paused source.
    Enable {
        /// Source id.
        id: String,
    },
    /// List sources.
    List,
    /// Show one source (secrets redacted).
    Show {
        /// Source id.
        id: String,
    },
    /// Create a source.
    Create {
        /// Source id (or `id` in the JSON body).
        id: Option<String>,
        #[command(flatten)]
        fields: SourceFields,
        #[command(flatten)]
        body: BodyArgs,
    },
    /// Replace a source (with flags only: change those fields of the current one).
    Update {
        /// Source id.
        id: String,
        #[command(flatten)]
        fields: SourceFields,
        #[command(flatten)]
        body: BodyArgs,
    },
    /// Delete a source (refused while routes use it).
    Delete {
        /// Source id.
        id: String,
    },
}

/// The common fields of a source.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SourceFields {
    /// Verifier kind: github, stripe, slack, shopify, twilio, sendgrid, standard-webhooks, hmac,
    /// basic, api-key, none.
    #[arg(long, value_name = "KIND")]
    verifier_kind: Option<String>,
    /// Verifier secret (repeat to accept several, e.g. while rotating).
    #[arg(long = "secret", value_name = "SECRET")]
    secrets: Vec<String>,
    /// SendGrid: the verification key (base64 DER).
    #[arg(long, value_name = "KEY")]
    public_key: Option<String>,
    /// Twilio: the URL Twilio calls, as Twilio sees it.
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Verifier timestamp tolerance, e.g. `5m`.
    #[arg(long, value_name = "DURATION")]
    tolerance: Option<String>,
    /// Largest accepted body, in bytes.
    #[arg(long, value_name = "BYTES")]
    max_body_bytes: Option<u64>,
    /// Rate limit, requests per second.
    #[arg(long, value_name = "N")]
    rate_limit: Option<u32>,
    /// Rate limit burst (default: the rate).
    #[arg(long, value_name = "N")]
    burst: Option<u32>,
}

/// `switchboard destinations …`
#[derive(Debug, clap::Subcommand)]
pub enum DestinationsCommand {
    /// Pause a destination (its deliveries wait and are sent once it is enabled again).
    Disable {
        /// Destination id.
        id: String,
    },
    /// Resume a paused destination.
    Enable {
        /// Destination id.
        id: String,
    },
    /// List destinations.
    List,
    /// Show one destination (secret redacted).
    Show {
        /// Destination id.
        id: String,
    },
    /// Create a destination (a signing secret is generated unless `--secret` is given).
    Create {
        /// Destination id (or `id` in the JSON body).
        id: Option<String>,
        #[command(flatten)]
        fields: DestinationFields,
        #[command(flatten)]
        body: BodyArgs,
    },
    /// Replace a destination (with flags only: change those fields of the current one; the
    /// secret is kept unless `--secret` is given).
    Update {
        /// Destination id.
        id: String,
        #[command(flatten)]
        fields: DestinationFields,
        #[command(flatten)]
        body: BodyArgs,
    },
    /// Delete a destination (refused while routes use it).
    Delete {
        /// Destination id.
        id: String,
    },
    /// Print a destination's signing secret (`whsec_…`; write scope).
    Secret {
        /// Destination id.
        id: String,
    },
}

/// The common fields of a destination.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DestinationFields {
    /// The destination's URL (http:// or https://). The server's URL is `--server` here.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Signing secret (`whsec_…`).
    #[arg(long, value_name = "SECRET")]
    secret: Option<String>,
    /// Per-attempt timeout, e.g. `15s`.
    #[arg(long, value_name = "DURATION")]
    timeout: Option<String>,
    /// Retry delays, comma-separated, e.g. `5s,5m,30m`.
    #[arg(long, value_name = "DELAYS", value_delimiter = ',')]
    retry_schedule: Vec<String>,
    /// Extra request header `Name: value` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Most deliveries in flight at once to this destination.
    #[arg(long, value_name = "N")]
    max_in_flight: Option<u64>,
}

/// `switchboard routes …`
#[derive(Debug, clap::Subcommand)]
pub enum RoutesCommand {
    /// Pause a route (events arriving meanwhile get no delivery through it).
    Disable {
        /// Route id.
        id: String,
    },
    /// Resume a paused route.
    Enable {
        /// Route id.
        id: String,
    },
    /// List routes.
    List,
    /// Show one route.
    Show {
        /// Route id.
        id: String,
    },
    /// Create a route.
    Create {
        /// Route id (default `<source>-<destination>`).
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        fields: RouteFields,
        #[command(flatten)]
        body: BodyArgs,
    },
    /// Replace a route (with flags only: change those fields of the current one).
    Update {
        /// Route id.
        id: String,
        #[command(flatten)]
        fields: RouteFields,
        #[command(flatten)]
        body: BodyArgs,
    },
    /// Delete a route.
    Delete {
        /// Route id.
        id: String,
    },
    /// Dry-run a route on a stored event: whether its filter matches, the transformed body and
    /// the request it would send. Nothing is sent or stored.
    Test {
        /// Route id.
        id: String,
        /// A stored event's id.
        #[arg(long)]
        event: String,
    },
}

/// The fields of a route.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RouteFields {
    /// Source id.
    #[arg(long)]
    source: Option<String>,
    /// Destination id.
    #[arg(long)]
    destination: Option<String>,
    /// jq filter that must yield true for an event to be delivered (`""` removes it).
    #[arg(long)]
    filter: Option<String>,
    /// jq transform whose output is the delivered body (`""` removes it).
    #[arg(long)]
    transform: Option<String>,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Source,
    Destination,
    Route,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Self::Source => "sources",
            Self::Destination => "destinations",
            Self::Route => "routes",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Destination => "destination",
            Self::Route => "route",
        }
    }
}

/// `switchboard sources …`
pub async fn sources(ctx: &Ctx, cmd: SourcesCommand) -> anyhow::Result<ExitCode> {
    let kind = Kind::Source;
    match cmd {
        SourcesCommand::List => list(ctx, kind).await,
        SourcesCommand::Disable { id } => set_enabled(ctx, kind, &id, false).await,
        SourcesCommand::Enable { id } => set_enabled(ctx, kind, &id, true).await,
        SourcesCommand::Show { id } => show(ctx, kind, &id).await,
        SourcesCommand::Create { id, fields, body } => {
            create(ctx, kind, id, &body, |b| apply_source(b, &fields)).await?;
            Ok(ExitCode::SUCCESS)
        }
        SourcesCommand::Update { id, fields, body } => {
            update(ctx, kind, &id, &body, |b| apply_source(b, &fields)).await
        }
        SourcesCommand::Delete { id } => delete(ctx, kind, &id).await,
    }
}

/// `switchboard destinations …`
pub async fn destinations(ctx: &Ctx, cmd: DestinationsCommand) -> anyhow::Result<ExitCode> {
    let kind = Kind::Destination;
    match cmd {
        DestinationsCommand::List => list(ctx, kind).await,
        DestinationsCommand::Disable { id } => set_enabled(ctx, kind, &id, false).await,
        DestinationsCommand::Enable { id } => set_enabled(ctx, kind, &id, true).await,
        DestinationsCommand::Show { id } => show(ctx, kind, &id).await,
        DestinationsCommand::Create { id, fields, body } => {
            let created = create(ctx, kind, id, &body, |b| apply_destination(b, &fields)).await?;
            if !ctx.json && fields.secret.is_none() {
                outln!(
                    "its signing secret: switchboard destinations secret {}",
                    field(&created, "id")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        DestinationsCommand::Update { id, fields, body } => {
            update(ctx, kind, &id, &body, |b| apply_destination(b, &fields)).await
        }
        DestinationsCommand::Delete { id } => delete(ctx, kind, &id).await,
        DestinationsCommand::Secret { id } => {
            let secret = ctx
                .client()?
                .get(&["destinations", &id, "secret"], &[])
                .await?;
            if ctx.json {
                print_json(&secret);
            } else {
                match secret["secret"].as_str() {
                    Some(value) => outln!("{value}"),
                    None => outln!("(destination {id} does not sign its requests)"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `switchboard routes …`
pub async fn routes(ctx: &Ctx, cmd: RoutesCommand) -> anyhow::Result<ExitCode> {
    let kind = Kind::Route;
    match cmd {
        RoutesCommand::List => list(ctx, kind).await,
        RoutesCommand::Disable { id } => set_enabled(ctx, kind, &id, false).await,
        RoutesCommand::Enable { id } => set_enabled(ctx, kind, &id, true).await,
        RoutesCommand::Show { id } => show(ctx, kind, &id).await,
        RoutesCommand::Create { id, fields, body } => {
            create(ctx, kind, id, &body, |b| apply_route(b, &fields)).await?;
            Ok(ExitCode::SUCCESS)
        }
        RoutesCommand::Update { id, fields, body } => {
            update(ctx, kind, &id, &body, |b| apply_route(b, &fields)).await
        }
        RoutesCommand::Delete { id } => delete(ctx, kind, &id).await,
        RoutesCommand::Test { id, event } => {
            let result = ctx
                .client()?
                .post(&["routes", &id, "test"], &json!({ "event_id": event }))
                .await?;
            if ctx.json {
                print_json(&result);
            } else {
                let matched = result["matched"].as_bool().unwrap_or(false);
                crate::cli::output::outln!("matched: {}", if matched { "yes" } else { "no" });
                if let Some(error) = result["error"].as_str() {
                    crate::cli::output::outln!("error:   {error}");
                }
                if let Some(request) = result["request"].as_object() {
                    crate::cli::output::outln!(
                        "request: {} {}",
                        request
                            .get("method")
                            .and_then(Value::as_str)
                            .unwrap_or("POST"),
                        request.get("url").and_then(Value::as_str).unwrap_or("")
                    );
                    if let Some(headers) = request.get("headers").and_then(Value::as_object) {
                        for (name, value) in headers {
                            crate::cli::output::outln!(
                                "  {name}: {}",
                                value.as_str().unwrap_or("")
                            );
                        }
                    }
                }
                if !result["body"].is_null() {
                    crate::cli::output::outln!("body:");
                    print_json(&result["body"]);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `PATCH {"enabled": …}` and a one-line confirmation.
async fn set_enabled(ctx: &Ctx, kind: Kind, id: &str, enabled: bool) -> anyhow::Result<ExitCode> {
    let resource = ctx
        .client()?
        .patch(&[kind.path(), id], &json!({ "enabled": enabled }))
        .await?;
    if ctx.json {
        print_json(&resource);
    } else {
        let state = if enabled { "enabled" } else { "disabled" };
        outln!("{} {id} {state}", kind.name());
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(ctx: &Ctx, kind: Kind) -> anyhow::Result<ExitCode> {
    let listing = ctx.client()?.get(&[kind.path()], &[]).await?;
    if ctx.json {
        print_json(&listing);
        return Ok(ExitCode::SUCCESS);
    }
    let rows = items(&listing).iter();
    match kind {
        Kind::Source => print_table(
            &["ID", "STATE", "MANAGED-BY", "VERIFIER", "INGEST-PATH"],
            rows.map(|s| {
                vec![
                    field(s, "id"),
                    state(s),
                    field(s, "managed_by"),
                    field(&s["verifier"], "kind"),
                    field(s, "ingest_path"),
                ]
            }),
        ),
        Kind::Destination => print_table(
            &["ID", "STATE", "MANAGED-BY", "URL", "TIMEOUT", "RETRY"],
            rows.map(|d| {
                vec![
                    field(d, "id"),
                    state(d),
                    field(d, "managed_by"),
                    field(d, "url"),
                    field(d, "timeout"),
                    retry_summary(&d["retry"]),
                ]
            }),
        ),
        Kind::Route => print_table(
            &["ID", "STATE", "MANAGED-BY", "SOURCE", "DESTINATION"],
            rows.map(|r| {
                vec![
                    field(r, "id"),
                    state(r),
                    field(r, "managed_by"),
                    field(r, "source"),
                    field(r, "destination"),
                ]
            }),
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `enabled`/`disabled` from a resource's `enabled`.
fn state(resource: &Value) -> String {
    if resource["enabled"].as_bool() == Some(false) {
        "disabled".into()
    } else {
        "enabled".into()
    }
}

fn retry_summary(retry: &Value) -> String {
    if let Some(schedule) = retry["schedule"].as_array() {
        let delays: Vec<String> = schedule.iter().map(super::output::cell).collect();
        format!("schedule {}", delays.join(","))
    } else if retry["exponential"].is_object() {
        let e = &retry["exponential"];
        format!(
            "exponential {}×{} ≤{}, {} attempts",
            field(e, "base"),
            field(e, "factor"),
            field(e, "max_delay"),
            field(e, "attempts")
        )
    } else {
        super::output::cell(retry)
    }
}

async fn show(ctx: &Ctx, kind: Kind, id: &str) -> anyhow::Result<ExitCode> {
    let resource = ctx.client()?.get(&[kind.path(), id], &[]).await?;
    print_resource(ctx, &resource);
    Ok(ExitCode::SUCCESS)
}

fn print_resource(ctx: &Ctx, resource: &Value) {
    if ctx.json {
        print_json(resource);
    } else {
        print_fields(resource, &[]);
    }
}

async fn create(
    ctx: &Ctx,
    kind: Kind,
    id: Option<String>,
    body: &BodyArgs,
    apply: impl FnOnce(&mut Map<String, Value>) -> anyhow::Result<()>,
) -> anyhow::Result<Value> {
    let mut request = body.json_object()?.unwrap_or_default();
    if let Some(id) = id {
        request.insert("id".into(), json!(id));
    }
    apply(&mut request)?;
    let created = ctx
        .client()?
        .post(&[kind.path()], &Value::Object(request))
        .await?;
    if !ctx.json {
        outln!("created {} {}", kind.name(), field(&created, "id"));
    }
    print_resource(ctx, &created);
    Ok(created)
}

async fn update(
    ctx: &Ctx,
    kind: Kind,
    id: &str,
    body: &BodyArgs,
    apply: impl FnOnce(&mut Map<String, Value>) -> anyhow::Result<()>,
) -> anyhow::Result<ExitCode> {
    let client = ctx.client()?;
    let mut request = match body.json_object()? {
        Some(request) => request,
        None => {
            let current = client.get(&[kind.path(), id], &[]).await?;
            let Value::Object(mut current) = current else {
                bail!(
                    "the server answered with something other than a {}",
                    kind.name()
                );
            };
            for key in READ_ONLY {
                current.remove(key);
            }
            if matches!(kind, Kind::Destination) {
                // Redacted; leaving it out keeps the current secret.
                current.remove("secret");
                if current.get("kind").and_then(Value::as_str) != Some("http") {
                    // Other kinds show where they send (`url`) but take it in `settings`.
                    current.remove("url");
                    current.remove("headers");
                }
            }
            current
        }
    };
    request.insert("id".into(), json!(id));
    apply(&mut request)?;
    // Values still shown as `********` are kept by the server (it puts the current secret back).
    let updated = client
        .put(&[kind.path(), id], &Value::Object(request))
        .await?;
    if !ctx.json {
        outln!("updated {} {id}", kind.name());
    }
    print_resource(ctx, &updated);
    Ok(ExitCode::SUCCESS)
}

async fn delete(ctx: &Ctx, kind: Kind, id: &str) -> anyhow::Result<ExitCode> {
    ctx.client()?.delete(&[kind.path(), id]).await?;
    if ctx.json {
        print_json(&json!({ "id": id, "deleted": true }));
    } else {
        outln!("deleted {} {id}", kind.name());
    }
    Ok(ExitCode::SUCCESS)
}

fn apply_source(body: &mut Map<String, Value>, f: &SourceFields) -> anyhow::Result<()> {
    let touches_verifier = f.verifier_kind.is_some()
        || !f.secrets.is_empty()
        || f.public_key.is_some()
        || f.public_url.is_some()
        || f.tolerance.is_some();
    if touches_verifier {
        let current = body
            .get("verifier")
            .filter(|v| v.is_object())
            .cloned()
            .unwrap_or_else(|| json!({}));
        let mut verifier = match &f.verifier_kind {
            Some(kind) if current["kind"].as_str() != Some(kind) => json!({ "kind": kind }),
            _ => current,
        };
        if verifier["kind"].is_null() {
            bail!("give --verifier-kind (github, stripe, slack, …) with the verifier's settings");
        }
        if !f.secrets.is_empty() {
            verifier["secrets"] = json!(f.secrets);
        }
        if let Some(key) = &f.public_key {
            verifier["public_key"] = json!(key);
        }
        if let Some(url) = &f.public_url {
            verifier["public_url"] = json!(url);
        }
        if let Some(tolerance) = &f.tolerance {
            verifier["tolerance"] = json!(tolerance);
        }
        body.insert("verifier".into(), verifier);
    }
    if let Some(max) = f.max_body_bytes {
        body.insert("max_body_bytes".into(), json!(max));
    }
    if let Some(rate) = f.rate_limit {
        body.insert(
            "rate_limit".into(),
            json!({ "per_second": rate, "burst": f.burst.unwrap_or(rate) }),
        );
    } else if let Some(burst) = f.burst {
        let limit = body
            .get_mut("rate_limit")
            .filter(|l| l.is_object())
            .context("--burst needs --rate-limit (the source has no rate limit)")?;
        limit["burst"] = json!(burst);
    }
    Ok(())
}

fn apply_destination(body: &mut Map<String, Value>, f: &DestinationFields) -> anyhow::Result<()> {
    if let Some(url) = &f.url {
        body.insert("url".into(), json!(url));
    }
    if let Some(secret) = &f.secret {
        body.insert("secret".into(), json!(secret));
    }
    if let Some(timeout) = &f.timeout {
        body.insert("timeout".into(), json!(timeout));
    }
    if !f.retry_schedule.is_empty() {
        let delays: Vec<&str> = f.retry_schedule.iter().map(|d| d.trim()).collect();
        body.insert("retry".into(), json!({ "schedule": delays }));
    }
    if !f.headers.is_empty() {
        let headers = body
            .entry("headers")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .context("`headers` in the body must be an object")?;
        for raw in &f.headers {
            let (name, value) = parse_header(raw)?;
            headers.insert(name, json!(value));
        }
    }
    if let Some(max) = f.max_in_flight {
        body.insert("max_in_flight".into(), json!(max));
    }
    Ok(())
}

fn apply_route(body: &mut Map<String, Value>, f: &RouteFields) -> anyhow::Result<()> {
    if let Some(source) = &f.source {
        body.insert("source".into(), json!(source));
    }
    if let Some(destination) = &f.destination {
        body.insert("destination".into(), json!(destination));
    }
    for (key, value) in [("filter", &f.filter), ("transform", &f.transform)] {
        match value.as_deref() {
            Some("") => {
                body.remove(key);
            }
            Some(program) => {
                body.insert(key.into(), json!(program));
            }
            None => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_flags_build_the_verifier_and_keep_unrelated_settings() {
        let mut body = Map::new();
        let fields = SourceFields {
            verifier_kind: Some("github".into()),
            secrets: vec!["a".into(), "b".into()],
            rate_limit: Some(5),
            ..Default::default()
        };
        apply_source(&mut body, &fields).expect("applies");
        assert_eq!(
            Value::Object(body.clone()),
            json!({"verifier": {"kind": "github", "secrets": ["a", "b"]},
                   "rate_limit": {"per_second": 5, "burst": 5}})
        );
        // Same kind: other verifier settings stay; a new kind starts afresh.
        body.insert(
            "verifier".into(),
            json!({"kind": "stripe", "secrets": ["x"], "tolerance": "5m"}),
        );
        let fields = SourceFields {
            secrets: vec!["y".into()],
            ..Default::default()
        };
        apply_source(&mut body, &fields).expect("applies");
        assert_eq!(
            body["verifier"],
            json!({"kind": "stripe", "secrets": ["y"], "tolerance": "5m"})
        );
    }

    #[test]
    fn destination_flags_map_to_the_api_body() {
        let mut body = Map::new();
        let fields = DestinationFields {
            url: Some("https://example.com".into()),
            retry_schedule: vec!["5s".into(), "5m".into()],
            headers: vec!["X-Team: billing".into()],
            ..Default::default()
        };
        apply_destination(&mut body, &fields).expect("applies");
        assert_eq!(
            Value::Object(body),
            json!({"url": "https://example.com", "retry": {"schedule": ["5s", "5m"]},
                   "headers": {"X-Team": "billing"}})
        );
    }
}
