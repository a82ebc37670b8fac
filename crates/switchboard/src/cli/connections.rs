//! `switchboard connections list|show|create|delete|refresh|test` and `switchboard connect`:
//! connections to third-party APIs. Secrets go to the server and are never printed; a secret
//! option given as `-` is read from standard input (one line), which keeps it out of the
//! process list and shell history.

use std::io::BufRead as _;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Map, Value, json};

use super::output::outln;
use super::output::{field, items, print_fields, print_json, print_table};
use super::{Ctx, Failure};

/// `switchboard connections …`
#[derive(Debug, clap::Subcommand)]
pub enum ConnectionsCommand {
    /// List connections (status, provider, auth mode, expiry).
    List,
    /// Show one connection (never its secrets).
    Show {
        /// Connection id.
        id: String,
    },
    /// Create a connection. `oauth2` connections start pending: authorize them with
    /// `switchboard connect PROVIDER --connection ID`.
    Create(Box<CreateArgs>),
    /// Delete a connection (its token is revoked at the provider when it supports that).
    Delete {
        /// Connection id.
        id: String,
    },
    /// Refresh an OAuth2 connection's access token now.
    Refresh {
        /// Connection id.
        id: String,
    },
    /// Call the provider through the connection (`GET /v1/proxy/ID/PATH`) and print the
    /// status, latency and body.
    Test {
        /// Connection id.
        id: String,
        /// Path below the provider's base URL (e.g. `user` for GitHub).
        #[arg(long, default_value = "")]
        path: String,
    },
}

/// `connections create` arguments.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Connection id.
    id: String,
    /// Provider id (`GET /v1/providers`).
    #[arg(long)]
    provider: String,
    /// Auth mode (default: implied by the credentials, else the provider's first).
    #[arg(long, value_parser = ["oauth2", "oauth2_client_credentials", "api_key", "basic", "bearer"])]
    auth_mode: Option<String>,
    /// URL parameter `NAME=VALUE` (repeatable), e.g. `subdomain=acme`.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// OAuth2 scope (repeatable; default: the provider's).
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
    /// API key (`-` reads it from standard input).
    #[arg(long)]
    api_key: Option<String>,
    /// Basic auth user name.
    #[arg(long)]
    username: Option<String>,
    /// Basic auth password (`-` reads it from standard input).
    #[arg(long)]
    password: Option<String>,
    /// Static bearer token (`-` reads it from standard input).
    #[arg(long)]
    bearer_token: Option<String>,
    /// OAuth2 client id.
    #[arg(long)]
    client_id: Option<String>,
    /// OAuth2 client secret (`-` reads it from standard input).
    #[arg(long)]
    client_secret: Option<String>,
    /// Calls per second (overrides the provider's pace).
    #[arg(long)]
    requests_per_second: Option<f64>,
    /// Burst (overrides the provider's).
    #[arg(long)]
    burst: Option<u32>,
    /// Most calls in flight.
    #[arg(long)]
    max_concurrent: Option<usize>,
}

/// `switchboard connect PROVIDER --connection ID`
#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// Provider id.
    provider: String,
    /// The `oauth2` connection to authorize.
    #[arg(long)]
    connection: String,
}

fn secret(value: Option<String>) -> anyhow::Result<Option<String>> {
    match value.as_deref() {
        Some("-") => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the secret from standard input")?;
            let line = line.trim_end_matches(['\r', '\n']).to_owned();
            if line.is_empty() {
                return Err(Failure::new(1, "standard input held no secret").into());
            }
            Ok(Some(line))
        }
        _ => Ok(value),
    }
}

fn create_body(args: CreateArgs) -> anyhow::Result<Value> {
    let mut params = Map::new();
    for pair in &args.params {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| Failure::new(1, format!("--param `{pair}` is not NAME=VALUE")))?;
        params.insert(name.to_owned(), Value::String(value.to_owned()));
    }
    let mut credentials = Map::new();
    for (name, value) in [
        ("api_key", secret(args.api_key)?),
        ("username", args.username),
        ("password", secret(args.password)?),
        ("token", secret(args.bearer_token)?),
        ("client_id", args.client_id),
        ("client_secret", secret(args.client_secret)?),
    ] {
        if let Some(value) = value {
            credentials.insert(name.to_owned(), Value::String(value));
        }
    }
    let mut settings = Map::new();
    if let Some(rate) = args.requests_per_second {
        settings.insert("requests_per_second".into(), json!(rate));
    }
    if let Some(burst) = args.burst {
        settings.insert("burst".into(), json!(burst));
    }
    if let Some(max) = args.max_concurrent {
        settings.insert("max_concurrent".into(), json!(max));
    }
    let mut body = json!({
        "id": args.id,
        "provider": args.provider,
        "params": params,
        "credentials": credentials,
        "scopes": args.scopes,
        "settings": settings,
    });
    if let Some(mode) = args.auth_mode {
        body["auth_mode"] = json!(mode);
    }
    Ok(body)
}

fn print_connection(ctx: &Ctx, connection: &Value) {
    if ctx.json {
        print_json(connection);
    } else {
        print_fields(connection, &[]);
    }
}

/// Runs a `connections` subcommand.
pub async fn run(ctx: &Ctx, cmd: ConnectionsCommand) -> anyhow::Result<ExitCode> {
    let client = ctx.client()?;
    match cmd {
        ConnectionsCommand::List => {
            let list = client.get(&["connections"], &[]).await?;
            if ctx.json {
                print_json(&list);
            } else {
                print_table(
                    &["ID", "PROVIDER", "AUTH", "STATUS", "EXPIRES", "LAST ERROR"],
                    items(&list).iter().map(|c| {
                        vec![
                            field(c, "id"),
                            field(c, "provider"),
                            field(c, "auth_mode"),
                            field(c, "status"),
                            field(c, "expires_at"),
                            field(c, "last_error"),
                        ]
                    }),
                );
            }
        }
        ConnectionsCommand::Show { id } => {
            let connection = client.get(&["connections", &id], &[]).await?;
            print_connection(ctx, &connection);
        }
        ConnectionsCommand::Create(args) => {
            let body = create_body(*args)?;
            let created = client.post(&["connections"], &body).await?;
            if ctx.json {
                print_json(&created);
            } else {
                outln!(
                    "created connection {} ({}, {}, {})",
                    field(&created, "id"),
                    field(&created, "provider"),
                    field(&created, "auth_mode"),
                    field(&created, "status")
                );
                if created["status"] == "pending" {
                    eprintln!(
                        "authorize it: switchboard connect {} --connection {}",
                        field(&created, "provider"),
                        field(&created, "id")
                    );
                }
            }
        }
        ConnectionsCommand::Delete { id } => {
            client.delete(&["connections", &id]).await?;
            if ctx.json {
                print_json(&json!({ "id": id, "deleted": true }));
            } else {
                outln!("deleted connection {id}");
            }
        }
        ConnectionsCommand::Refresh { id } => {
            let connection = client
                .post(&["connections", &id, "refresh"], &json!({}))
                .await?;
            if ctx.json {
                print_json(&connection);
            } else {
                outln!(
                    "refreshed connection {}: {}, expires {}",
                    id,
                    field(&connection, "status"),
                    field(&connection, "expires_at")
                );
            }
        }
        ConnectionsCommand::Test { id, path } => {
            let mut segments = vec!["v1", "proxy", id.as_str()];
            segments.extend(path.split('/').filter(|s| !s.is_empty()));
            let url = client.url(&segments);
            let started = Instant::now();
            let reply = client
                .send(Method::GET, url, HeaderMap::new(), None, true)
                .await?;
            let elapsed = started.elapsed();
            let body: Value = serde_json::from_slice(&reply.body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&reply.body).into()));
            if ctx.json {
                print_json(&json!({
                    "status": reply.status.as_u16(),
                    "latency_ms": elapsed.as_secs_f64() * 1000.0,
                    "body": body,
                }));
            } else {
                outln!(
                    "HTTP {} in {:.0} ms",
                    reply.status.as_u16(),
                    elapsed.as_secs_f64() * 1000.0
                );
                let text = match &body {
                    Value::String(s) => s.clone(),
                    other => serde_json::to_string_pretty(other).unwrap_or_default(),
                };
                let excerpt: String = text.chars().take(2000).collect();
                outln!("{excerpt}");
            }
            if !reply.status.is_success() {
                return Err(client.api_error(&reply).into());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `switchboard connect`: prints the provider URL to open in a browser.
pub async fn connect(ctx: &Ctx, args: ConnectArgs) -> anyhow::Result<ExitCode> {
    let client = ctx.client()?;
    let mut url = client.url(&["v1", "connect", &args.provider]);
    url.query_pairs_mut()
        .append_pair("connection_id", &args.connection);
    let reply = client
        .send(Method::GET, url, HeaderMap::new(), None, true)
        .await?;
    if reply.status.as_u16() != 302 {
        return Err(client.api_error(&reply).into());
    }
    let location = reply
        .location
        .as_deref()
        .ok_or_else(|| Failure::new(1, "the server's redirect has no Location"))?;
    if ctx.json {
        print_json(&json!({ "connection_id": args.connection, "url": location }));
    } else {
        eprintln!(
            "open this URL in a browser within 10 minutes to authorize connection {}:",
            args.connection
        );
        outln!("{location}");
    }
    Ok(ExitCode::SUCCESS)
}
