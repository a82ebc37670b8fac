//! `switchboard endpoints …`: a tenant's outbound webhook endpoints through the API: create,
//! change (`PATCH`: only the given fields), secrets and rotation, health, recovery, resend and
//! ordering holds. The endpoint's own URL is `--endpoint-url`; `--url` stays the server's.

use std::process::ExitCode;

use reqwest::Method;
use serde_json::{Map, Value, json};
use switchboard_core::time::format_rfc3339;

use super::Ctx;
use super::input::time_or_age;
use super::outbound::{deleted, header_pair, print_one};
use super::output::outln;
use super::output::{cell, field, items, print_json, print_table};

/// A tenant and one of its endpoints.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// Tenant id.
    #[arg(long)]
    tenant: String,
    /// Endpoint id (`ep_…`).
    id: String,
}

/// `switchboard endpoints …`
#[derive(Debug, clap::Subcommand)]
pub enum EndpointsCommand {
    /// List a tenant's endpoints (without secrets).
    List {
        /// Tenant id.
        #[arg(long)]
        tenant: String,
    },
    /// Show one endpoint (without its secret).
    Show(Target),
    /// Create an endpoint and print it with its signing secret (shown in full only here;
    /// later: `endpoints secret`).
    Create {
        /// Tenant id.
        #[arg(long)]
        tenant: String,
        /// The endpoint's URL (http:// or https://). The server's URL stays `--url`.
        #[arg(long, value_name = "URL")]
        endpoint_url: String,
        /// Endpoint id (1–64 letters, digits, `-`, `_`); default a generated `ep_…`.
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        fields: EndpointFields,
        /// Signing secret (`whsec_…`); generated when absent.
        #[arg(long, value_name = "SECRET")]
        secret: Option<String>,
        /// Create it disabled (it receives nothing until enabled).
        #[arg(long)]
        disabled: bool,
    },
    /// Change an endpoint: only the given options (`--type`, `--channel`, `--header` replace
    /// the whole list). Rotate the secret with `rotate-secret`.
    Update {
        #[command(flatten)]
        target: Target,
        /// New URL (http:// or https://). The server's URL stays `--url`.
        #[arg(long, value_name = "URL")]
        endpoint_url: Option<String>,
        #[command(flatten)]
        fields: EndpointFields,
        /// Enable it (also clears an automatic disable and the failure history).
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Disable it.
        #[arg(long)]
        disable: bool,
        /// Deliver in any order again.
        #[arg(long, conflicts_with = "ordered")]
        unordered: bool,
        /// Receive every event type again.
        #[arg(long, conflicts_with = "event_types")]
        all_types: bool,
        /// Receive every message again, whatever its channels.
        #[arg(long, conflicts_with = "channels")]
        all_channels: bool,
        /// Remove the extra headers.
        #[arg(long, conflicts_with = "headers")]
        no_headers: bool,
        /// Remove the rate limit.
        #[arg(long, conflicts_with = "rate_limit")]
        no_rate_limit: bool,
        /// Remove the transform.
        #[arg(long, conflicts_with = "transform")]
        no_transform: bool,
    },
    /// Delete an endpoint (its pending deliveries are cancelled; the history stays).
    Delete(Target),
    /// Print the endpoint's signing secret (`whsec_…`; write scope).
    Secret(Target),
    /// Rotate the signing secret and print the new one. The previous secret keeps signing for
    /// the grace period, so receivers can switch at leisure.
    RotateSecret {
        #[command(flatten)]
        target: Target,
        /// How long the previous secret keeps signing, e.g. `24h` (default) or `0s`.
        #[arg(long, value_name = "DURATION")]
        grace: Option<String>,
        /// The new secret (`whsec_…`); generated when absent.
        #[arg(long, value_name = "SECRET")]
        secret: Option<String>,
    },
    /// Show the endpoint's health: circuit state, failures, last error, disabled, pending.
    Health(Target),
    /// Re-send the deliveries to this endpoint that failed since a time.
    Recover {
        #[command(flatten)]
        target: Target,
        /// Failed at or after (RFC 3339 time or an age such as `24h`).
        #[arg(long)]
        since: String,
    },
    /// Send one of the tenant's events to this endpoint again.
    Resend {
        #[command(flatten)]
        target: Target,
        /// Event id.
        #[arg(long)]
        event: String,
    },
    /// List the ordering keys held back by a failed (dead-lettered) delivery.
    Holds(Target),
    /// Release a held ordering key: the deliveries behind the failed one flow again.
    Release {
        #[command(flatten)]
        target: Target,
        /// The ordering key (`""` for an endpoint ordered as a whole).
        #[arg(long, value_name = "KEY")]
        key: String,
    },
}

/// Options shared by `create` and `update`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EndpointFields {
    /// Event type it receives (repeatable; none: all).
    #[arg(long = "type", value_name = "TYPE")]
    event_types: Vec<String>,
    /// Channel it listens on (repeatable; none: every message).
    #[arg(long = "channel", value_name = "CHANNEL")]
    channels: Vec<String>,
    /// Deliveries per second at most.
    #[arg(long, value_name = "N")]
    rate_limit: Option<f64>,
    /// Extra request header, `Name: value` or `Name=value` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Deliver in order (FIFO per ordering key).
    #[arg(long)]
    ordered: bool,
    /// jq program applied to the message before it is signed and sent.
    #[arg(long, value_name = "JQ")]
    transform: Option<String>,
    /// Description.
    #[arg(long)]
    description: Option<String>,
}

impl EndpointFields {
    /// Puts the given options into an API body.
    fn apply(&self, body: &mut Map<String, Value>) -> anyhow::Result<()> {
        if !self.event_types.is_empty() {
            body.insert("event_types".into(), json!(self.event_types));
        }
        if !self.channels.is_empty() {
            body.insert("channels".into(), json!(self.channels));
        }
        if let Some(rate) = self.rate_limit {
            body.insert("rate_limit".into(), json!(rate));
        }
        if !self.headers.is_empty() {
            let mut headers = Map::new();
            for raw in &self.headers {
                let (name, value) = header_pair(raw)?;
                headers.insert(name, json!(value));
            }
            body.insert("headers".into(), Value::Object(headers));
        }
        if self.ordered {
            body.insert("ordered".into(), json!(true));
        }
        if let Some(transform) = &self.transform {
            body.insert("transform".into(), json!(transform));
        }
        if let Some(description) = &self.description {
            body.insert("description".into(), json!(description));
        }
        Ok(())
    }
}

/// `["tenants", T, "endpoints", id, rest…]`.
fn path<'a>(target: &'a Target, rest: &[&'a str]) -> Vec<&'a str> {
    let mut path = vec!["tenants", target.tenant.as_str(), "endpoints", &target.id];
    path.extend_from_slice(rest);
    path
}

/// `switchboard endpoints …`
pub async fn run(ctx: &Ctx, cmd: EndpointsCommand) -> anyhow::Result<ExitCode> {
    let client = ctx.client()?;
    match cmd {
        EndpointsCommand::List { tenant } => {
            let endpoints = client.get(&["tenants", &tenant, "endpoints"], &[]).await?;
            if ctx.json {
                print_json(&endpoints);
            } else {
                print_table(
                    &["ID", "URL", "ENABLED", "TYPES", "CHANNELS", "RATE-LIMIT"],
                    items(&endpoints).iter().map(|e| {
                        vec![
                            field(e, "id"),
                            field(e, "url"),
                            field(e, "enabled"),
                            list_cell(&e["event_types"]),
                            list_cell(&e["channels"]),
                            match &e["rate_limit"] {
                                Value::Null => "-".into(),
                                rate => format!("{}/s", cell(rate)),
                            },
                        ]
                    }),
                );
            }
        }
        EndpointsCommand::Show(target) => {
            let endpoint = client.get(&path(&target, &[]), &[]).await?;
            print_one(ctx, &endpoint);
        }
        EndpointsCommand::Create {
            tenant,
            endpoint_url,
            id,
            fields,
            secret,
            disabled,
        } => {
            let mut body = Map::new();
            body.insert("url".into(), json!(endpoint_url));
            if let Some(id) = id {
                body.insert("id".into(), json!(id));
            }
            fields.apply(&mut body)?;
            if let Some(secret) = secret {
                body.insert("secret".into(), json!(secret));
            }
            if disabled {
                body.insert("enabled".into(), json!(false));
            }
            let created = client
                .post(&["tenants", &tenant, "endpoints"], &Value::Object(body))
                .await?;
            if !ctx.json {
                outln!(
                    "created endpoint {} for tenant {tenant}",
                    field(&created, "id")
                );
            }
            print_one(ctx, &created);
            if !ctx.json {
                eprintln!(
                    "the secret is shown only here; later: switchboard endpoints secret --tenant \
                     {tenant} {}",
                    field(&created, "id")
                );
            }
        }
        EndpointsCommand::Update {
            target,
            endpoint_url,
            fields,
            enable,
            disable,
            unordered,
            all_types,
            all_channels,
            no_headers,
            no_rate_limit,
            no_transform,
        } => {
            let mut body = Map::new();
            if let Some(url) = endpoint_url {
                body.insert("url".into(), json!(url));
            }
            fields.apply(&mut body)?;
            let clears = [
                (enable, "enabled", json!(true)),
                (disable, "enabled", json!(false)),
                (unordered, "ordered", json!(false)),
                (all_types, "event_types", json!([])),
                (all_channels, "channels", json!([])),
                (no_headers, "headers", json!({})),
                (no_rate_limit, "rate_limit", Value::Null),
                (no_transform, "transform", Value::Null),
            ];
            for (given, key, value) in clears {
                if given {
                    body.insert(key.into(), value);
                }
            }
            if body.is_empty() {
                anyhow::bail!("nothing to change: give the options to change (see --help)");
            }
            let updated = client
                .call(
                    Method::PATCH,
                    &path(&target, &[]),
                    &[],
                    Some(&Value::Object(body)),
                )
                .await?;
            if !ctx.json {
                outln!("updated endpoint {}", target.id);
            }
            print_one(ctx, &updated);
        }
        EndpointsCommand::Delete(target) => {
            client.delete(&path(&target, &[])).await?;
            deleted(ctx, "id", "endpoint", &target.id);
        }
        EndpointsCommand::Secret(target) => {
            let secret = client.get(&path(&target, &["secret"]), &[]).await?;
            if ctx.json {
                print_json(&secret);
            } else {
                outln!("{}", field(&secret, "secret"));
                for previous in items(&secret["previous"]) {
                    eprintln!(
                        "a previous secret also signs until {}",
                        field(previous, "expires_at")
                    );
                }
            }
        }
        EndpointsCommand::RotateSecret {
            target,
            grace,
            secret,
        } => {
            let mut body = json!({});
            if let Some(grace) = grace {
                body["grace"] = json!(grace);
            }
            if let Some(secret) = secret {
                body["secret"] = json!(secret);
            }
            let rotated = client
                .post(&path(&target, &["rotate-secret"]), &body)
                .await?;
            if ctx.json {
                print_json(&rotated);
            } else {
                outln!("{}", field(&rotated, "secret"));
                match rotated["previous_expires_at"].as_str() {
                    Some(until) => eprintln!("the previous secret also signs until {until}"),
                    None => eprintln!("the previous secret no longer signs"),
                }
            }
        }
        EndpointsCommand::Health(target) => {
            let health = client.get(&path(&target, &["health"]), &[]).await?;
            if ctx.json {
                print_json(&health);
            } else {
                let disabled = match (&health["disabled"], health["disabled_reason"].as_str()) {
                    (Value::Bool(true), Some(reason)) => format!("yes ({reason})"),
                    (Value::Bool(true), None) => "yes".into(),
                    _ => "no".into(),
                };
                print_table(
                    &[
                        "CIRCUIT",
                        "FAILURES",
                        "DISABLED",
                        "PENDING",
                        "LAST-SUCCESS",
                        "LAST-ERROR",
                    ],
                    std::iter::once(vec![
                        field(&health, "circuit_state"),
                        field(&health, "consecutive_failures"),
                        disabled,
                        field(&health, "pending"),
                        field(&health, "last_success_at"),
                        field(&health, "last_error"),
                    ]),
                );
            }
        }
        EndpointsCommand::Recover { target, since } => {
            let since = format_rfc3339(time_or_age(&since)?);
            let queued = client
                .post(&path(&target, &["recover"]), &json!({ "since": since }))
                .await?;
            if ctx.json {
                print_json(&queued);
            } else {
                let n = queued["queued"].as_u64().unwrap_or(0);
                outln!("queued {n} deliver{}", if n == 1 { "y" } else { "ies" });
            }
        }
        EndpointsCommand::Resend { target, event } => {
            let resent = client
                .post(&path(&target, &["resend"]), &json!({ "event_id": event }))
                .await?;
            if ctx.json {
                print_json(&resent);
            } else {
                outln!("queued delivery {}", field(&resent, "delivery_id"));
            }
        }
        EndpointsCommand::Holds(target) => {
            let holds = client.get(&path(&target, &["holds"]), &[]).await?;
            if ctx.json {
                print_json(&holds);
            } else {
                print_table(
                    &[
                        "ORDERING-KEY",
                        "DELIVERY",
                        "EVENT",
                        "FAILED-AT",
                        "WAITING",
                        "LAST-ERROR",
                    ],
                    items(&holds).iter().map(|h| {
                        vec![
                            format!("{:?}", h["ordering_key"].as_str().unwrap_or_default()),
                            field(h, "delivery_id"),
                            field(h, "event_id"),
                            field(h, "failed_at"),
                            field(h, "waiting"),
                            field(h, "last_error"),
                        ]
                    }),
                );
            }
        }
        EndpointsCommand::Release { target, key } => {
            let released = client
                .post(
                    &path(&target, &["holds", "release"]),
                    &json!({ "ordering_key": key }),
                )
                .await?;
            if ctx.json {
                print_json(&released);
            } else {
                let n = released["released"].as_u64().unwrap_or(0);
                outln!(
                    "released {n} held deliver{}",
                    if n == 1 { "y" } else { "ies" }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A list as `a,b` (`*` when empty: everything).
fn list_cell(list: &Value) -> String {
    let names: Vec<String> = items(list).iter().map(cell).collect();
    if names.is_empty() {
        "*".into()
    } else {
        names.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_map_to_the_api_body() {
        let fields = EndpointFields {
            event_types: vec!["invoice.paid".into()],
            headers: vec!["X-Team: billing".into(), "X-Env=prod".into()],
            rate_limit: Some(2.5),
            ordered: true,
            ..Default::default()
        };
        let mut body = Map::new();
        fields.apply(&mut body).expect("applies");
        assert_eq!(
            Value::Object(body),
            json!({"event_types": ["invoice.paid"], "rate_limit": 2.5, "ordered": true,
                   "headers": {"X-Team": "billing", "X-Env": "prod"}})
        );
        assert_eq!(list_cell(&json!([])), "*");
        assert_eq!(list_cell(&json!(["a", "b"])), "a,b");
    }
}
