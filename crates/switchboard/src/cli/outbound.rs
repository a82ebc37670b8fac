//! Outbound webhooks through the API: `tenants`, `event-types` and `publish` (the endpoints of a
//! tenant are in [`super::endpoints`]). Tables by default, the API's own JSON with `--json`.

use std::io::Read as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde_json::{Map, Value, json};

use super::Ctx;
use super::output::outln;
use super::output::{field, items, print_fields, print_json, print_table};

/// `switchboard tenants …`
#[derive(Debug, clap::Subcommand)]
pub enum TenantsCommand {
    /// List tenants.
    List,
    /// Show one tenant.
    Show {
        /// Tenant id.
        id: String,
    },
    /// Create a tenant.
    Create {
        /// Tenant id: 1–64 letters, digits, `-`, `_` (e.g. your customer id).
        id: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// A label `key=value` (repeatable).
        #[arg(long = "metadata", value_name = "KEY=VALUE")]
        metadata: Vec<String>,
    },
    /// Delete a tenant and its endpoints (their pending deliveries are cancelled).
    Delete {
        /// Tenant id.
        id: String,
    },
}

/// `switchboard event-types …`
#[derive(Debug, clap::Subcommand)]
pub enum EventTypesCommand {
    /// List event types.
    List,
    /// Show one event type with its schema.
    Show {
        /// Event type, e.g. `invoice.paid`.
        name: String,
    },
    /// Create an event type; published payloads of this type must match its schema.
    Create {
        /// Event type: 1–128 letters, digits, `.`, `_`, `-`, `:` (e.g. `invoice.paid`).
        name: String,
        /// What it means.
        #[arg(long)]
        description: Option<String>,
        /// JSON Schema of the payload: a file, `-` for stdin, or inline JSON (starting with `{`).
        #[arg(long, value_name = "FILE|-|JSON")]
        schema: Option<String>,
    },
    /// Delete an event type (published events keep their type).
    Delete {
        /// Event type.
        name: String,
    },
}

/// Options of `publish`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("body").required(true).args(["payload", "payload_file"])))]
pub struct PublishArgs {
    /// Tenant id.
    #[arg(long)]
    tenant: String,
    /// Event type, e.g. `invoice.paid`.
    #[arg(long = "type", value_name = "TYPE")]
    event_type: String,
    /// The JSON payload, inline.
    #[arg(long, value_name = "JSON")]
    payload: Option<String>,
    /// Read the JSON payload from this file (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    payload_file: Option<String>,
    /// Channel (repeatable): endpoints listening on channels get only messages on theirs.
    #[arg(long = "channel", value_name = "CHANNEL")]
    channels: Vec<String>,
    /// A repeat with the same key returns the original event instead of publishing again.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// Extra header sent with this message's deliveries, `Name: value` or `Name=value`
    /// (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// FIFO key for ordered endpoints (default: the endpoint as a whole).
    #[arg(long, value_name = "KEY")]
    ordering_key: Option<String>,
}

/// `switchboard tenants …`
pub async fn tenants(ctx: &Ctx, cmd: TenantsCommand) -> anyhow::Result<ExitCode> {
    let client = ctx.client()?;
    match cmd {
        TenantsCommand::List => {
            let tenants = client.get(&["tenants"], &[]).await?;
            if ctx.json {
                print_json(&tenants);
            } else {
                print_table(
                    &["ID", "NAME", "ENDPOINTS", "CREATED", "METADATA"],
                    items(&tenants).iter().map(|t| {
                        vec![
                            field(t, "id"),
                            field(t, "name"),
                            field(t, "endpoints"),
                            field(t, "created_at"),
                            labels(&t["metadata"]),
                        ]
                    }),
                );
            }
        }
        TenantsCommand::Show { id } => {
            let tenant = client.get(&["tenants", &id], &[]).await?;
            print_one(ctx, &tenant);
        }
        TenantsCommand::Create { id, name, metadata } => {
            let mut labels = Map::new();
            for raw in &metadata {
                let (key, value) = split_pair(raw, &['='], "--metadata", "key=value")?;
                labels.insert(key, json!(value));
            }
            let mut body = json!({ "id": id, "metadata": labels });
            if let Some(name) = name {
                body["name"] = json!(name);
            }
            let created = client.post(&["tenants"], &body).await?;
            if !ctx.json {
                outln!("created tenant {}", field(&created, "id"));
            }
            print_one(ctx, &created);
        }
        TenantsCommand::Delete { id } => {
            client.delete(&["tenants", &id]).await?;
            deleted(ctx, "id", "tenant", &id);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `switchboard event-types …`
pub async fn event_types(ctx: &Ctx, cmd: EventTypesCommand) -> anyhow::Result<ExitCode> {
    let client = ctx.client()?;
    match cmd {
        EventTypesCommand::List => {
            let types = client.get(&["event-types"], &[]).await?;
            if ctx.json {
                print_json(&types);
            } else {
                print_table(
                    &["NAME", "SCHEMA", "DESCRIPTION"],
                    items(&types).iter().map(|t| {
                        let schema = if t["schema"].is_null() { "no" } else { "yes" };
                        vec![field(t, "name"), schema.into(), field(t, "description")]
                    }),
                );
            }
        }
        EventTypesCommand::Show { name } => {
            let event_type = client.get(&["event-types", &name], &[]).await?;
            print_one(ctx, &event_type);
        }
        EventTypesCommand::Create {
            name,
            description,
            schema,
        } => {
            let mut body = json!({ "name": name });
            if let Some(description) = description {
                body["description"] = json!(description);
            }
            if let Some(schema) = schema {
                body["schema"] = json_arg(&schema, "--schema")?;
            }
            let created = client.post(&["event-types"], &body).await?;
            if !ctx.json {
                outln!("created event type {}", field(&created, "name"));
            }
            print_one(ctx, &created);
        }
        EventTypesCommand::Delete { name } => {
            client.delete(&["event-types", &name]).await?;
            deleted(ctx, "name", "event type", &name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `switchboard publish`: prints the event id, or the original id and `duplicate` for a
/// repeated `--idempotency-key`.
pub async fn publish(ctx: &Ctx, args: PublishArgs) -> anyhow::Result<ExitCode> {
    let payload = match (&args.payload, &args.payload_file) {
        (Some(inline), _) => serde_json::from_str(inline).context("--payload is not valid JSON")?,
        (None, Some(path)) => read_json(path, "--payload-file")?,
        (None, None) => bail!("give --payload or --payload-file"),
    };
    let mut headers = Map::new();
    for raw in &args.headers {
        let (name, value) = header_pair(raw)?;
        headers.insert(name, json!(value));
    }
    let mut body = json!({
        "type": args.event_type,
        "payload": payload,
        "channels": args.channels,
        "headers": headers,
    });
    if let Some(key) = &args.idempotency_key {
        body["idempotency_key"] = json!(key);
    }
    if let Some(key) = &args.ordering_key {
        body["ordering_key"] = json!(key);
    }
    let published = ctx
        .client()?
        .post(&["tenants", &args.tenant, "events"], &body)
        .await?;
    if ctx.json {
        print_json(&published);
    } else if published["duplicate"] == true {
        outln!("{} duplicate", field(&published, "id"));
    } else {
        outln!("{}", field(&published, "id"));
        if published["endpoints"] == 0 {
            eprintln!(
                "note: no enabled endpoint of tenant {} subscribes to it",
                args.tenant
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints one resource: `key  value` lines, or its JSON.
pub fn print_one(ctx: &Ctx, resource: &Value) {
    if ctx.json {
        print_json(resource);
    } else {
        print_fields(resource, &[]);
    }
}

/// Says that `what` `id` was deleted (`{"<key>": id, "deleted": true}` with `--json`).
pub fn deleted(ctx: &Ctx, key: &str, what: &str, id: &str) {
    if ctx.json {
        print_json(&json!({ key: id, "deleted": true }));
    } else {
        outln!("deleted {what} {id}");
    }
}

/// `k=v,k=v` of a JSON object of strings (`-` when empty).
fn labels(map: &Value) -> String {
    let pairs: Vec<String> = map
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", super::output::cell(v)))
        .collect();
    if pairs.is_empty() {
        "-".into()
    } else {
        pairs.join(",")
    }
}

/// Splits `raw` at the first of `separators` into a non-empty trimmed key and a trimmed value.
fn split_pair(
    raw: &str,
    separators: &[char],
    option: &str,
    shape: &str,
) -> anyhow::Result<(String, String)> {
    let (key, value) = raw
        .split_once(separators)
        .with_context(|| format!("{option} `{raw}` is not `{shape}`"))?;
    let key = key.trim();
    if key.is_empty() || key.contains(char::is_whitespace) {
        bail!("{option} `{raw}` has no valid name");
    }
    Ok((key.to_owned(), value.trim().to_owned()))
}

/// A header as `Name: value` or `Name=value` (header names contain neither `:` nor `=`).
pub fn header_pair(raw: &str) -> anyhow::Result<(String, String)> {
    split_pair(raw, &[':', '='], "header", "Name: value")
}

/// JSON from an option that takes a file, `-` (stdin) or inline JSON (starting with `{`, `[`).
fn json_arg(raw: &str, option: &str) -> anyhow::Result<Value> {
    let trimmed = raw.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        return serde_json::from_str(raw).with_context(|| format!("{option} is not valid JSON"));
    }
    read_json(raw, option)
}

/// JSON read from a file, or stdin for `-`.
fn read_json(path: &str, option: &str) -> anyhow::Result<Value> {
    let (bytes, what) = if path == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {option} from stdin"))?;
        (bytes, format!("{option} (stdin)"))
    } else {
        let bytes = std::fs::read(Path::new(path))
            .with_context(|| format!("cannot read {option} {path}"))?;
        (bytes, format!("{option} {path}"))
    };
    serde_json::from_slice(&bytes).with_context(|| format!("{what} is not valid JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_and_inline_json_are_read() {
        assert_eq!(
            header_pair("X-Team: a:b=c").expect("colon"),
            ("X-Team".into(), "a:b=c".into())
        );
        assert_eq!(
            header_pair("X-Url=http://x").expect("equals"),
            ("X-Url".into(), "http://x".into())
        );
        assert!(header_pair("nothing").is_err());
        assert!(split_pair("=v", &['='], "--metadata", "key=value").is_err());
        assert_eq!(
            json_arg(r#" {"type": "object"}"#, "--schema").expect("inline"),
            json!({"type": "object"})
        );
        assert!(json_arg("/no/such/schema.json", "--schema").is_err());
        assert_eq!(
            labels(&json!({"plan": "pro", "region": "eu"})),
            "plan=pro,region=eu"
        );
        assert_eq!(labels(&json!({})), "-");
    }
}
