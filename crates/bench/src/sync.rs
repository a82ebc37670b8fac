//! `--mode sync`: records per second of a full sync of `--events` records (100,000) from a
//! loopback list API (cursor pagination, `--page-size` records a page, 1000) into a SQLite
//! table, and into a PostgreSQL table with `--postgres`/`--database-url` (in a throw-away
//! schema). Each destination gets a first run (every record created) and a second run over the
//! unchanged listing (every record compared with the records cache, nothing written).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper::header::AUTHORIZATION;
use hyper::{Request, Uri};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::Args;
use crate::harness::{Schema, Server, Settings};
use crate::load::HttpClient;
use crate::outbound::{ADMIN_TOKEN, api};
use crate::report::Output;

/// The records the stand-in lists, pre-rendered.
struct Listing {
    records: Vec<Value>,
}

/// A number from a query string.
fn param(query: &str, name: &str) -> Option<usize> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .and_then(|(_, value)| value.parse().ok())
}

async fn list(State(listing): State<Arc<Listing>>, RawQuery(query): RawQuery) -> axum::Json<Value> {
    let query = query.unwrap_or_default();
    let start = param(&query, "cursor").unwrap_or(0);
    let limit = param(&query, "limit").unwrap_or(100);
    let end = (start + limit).min(listing.records.len());
    let data = &listing.records[start.min(end)..end];
    let next = (end < listing.records.len()).then(|| end.to_string());
    axum::Json(json!({"data": data, "next_cursor": next}))
}

async fn get(client: &HttpClient, addr: SocketAddr, path: &str) -> anyhow::Result<Value> {
    let uri: Uri = format!("http://{addr}{path}").parse()?;
    let request = Request::get(uri)
        .header(AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
        .body(Full::new(Bytes::new()))?;
    let response = client.request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if status != StatusCode::OK {
        bail!(
            "GET {path} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(serde_json::from_slice(&body)?)
}

/// Runs the sync mode.
pub async fn sync(args: &Args, settings: &Settings, out: Output) -> anyhow::Result<()> {
    let n = args.events.unwrap_or(100_000) as usize;
    let page_size = args.page_size;
    let listing = Arc::new(Listing {
        records: (0..n)
            .map(|i| {
                json!({"id": i + 1, "title": format!("record {} of the benchmark", i + 1),
                       "state": if i % 3 == 0 { "open" } else { "closed" },
                       "updated_at": format!("2026-01-01T00:00:{:02}Z", i % 60)})
            })
            .collect(),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let api_addr = listener.local_addr()?;
    let app = axum::Router::new()
        .route("/api/items", axum::routing::get(list))
        .with_state(listing);
    let api_task = tokio::spawn(async move { axum::serve(listener, app).await });
    let providers = tempfile::tempdir()?;
    std::fs::write(
        providers.path().join("bench.toml"),
        format!(
            "id = \"bench\"\nname = \"Bench list\"\nbase_url = \"http://{api_addr}/api\"\n\
             auth_modes = [\"api_key\"]\n[api_key]\nheader = \"x-api-key\"\n"
        ),
    )?;
    let tables = tempfile::tempdir_in(&settings.data_parent)?;
    let columns = json!([
        {"name": "id", "type": "integer", "key": true},
        {"name": "title"}, {"name": "state"}, {"name": "updated_at", "type": "timestamp"}
    ]);
    let mut destinations = vec![(
        "sqlite",
        json!({"kind": "sqlite", "path": tables.path().join("bench.db"), "table": "items",
               "columns": columns}),
    )];
    let mut schema = None;
    if let Some(url) = args.database_url() {
        let created = Schema::create(url)?;
        destinations.push((
            "postgres",
            json!({"kind": "postgres", "url": url, "table": format!("{}.items", created.name()),
                   "columns": columns}),
        ));
        schema = Some(created);
    }
    out.line(&format!(
        "sync: {n} records, {page_size} a page (cursor pagination), from a loopback list API"
    ));
    out.line("destination   run     records/s   seconds   created   unchanged");
    for (name, destination) in destinations {
        let providers_dir = providers.path().to_owned();
        let server = Server::start_with(settings, None, |config| {
            config.server.admin_token = Some(ADMIN_TOKEN.into());
            config.security.allow_private_networks = true;
            config.connections.providers_dir = Some(providers_dir);
        })
        .await?;
        let client = crate::load::client();
        api(
            &client,
            server.addr,
            "/v1/connections",
            &json!({"id": "bench", "provider": "bench", "credentials": {"api_key": "k"}}),
            StatusCode::CREATED,
        )
        .await?;
        api(
            &client,
            server.addr,
            "/v1/syncs",
            &json!({
                "id": "bench-sync", "connection": "bench", "path": "items",
                "pagination": {"style": "cursor", "cursor_path": ".next_cursor",
                               "cursor_param": "cursor", "limit_param": "limit",
                               "page_size": page_size},
                "records": ".data", "key": ".id",
                "mapping": "{id, title, state, updated_at}",
                "destination": destination,
            }),
            StatusCode::CREATED,
        )
        .await?;
        for label in ["first", "again"] {
            let started = Instant::now();
            let run = api(
                &client,
                server.addr,
                "/v1/syncs/bench-sync/run",
                &json!({}),
                StatusCode::ACCEPTED,
            )
            .await?;
            let id = run["id"].as_str().unwrap_or_default().to_owned();
            let ended = loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let runs = get(&client, server.addr, "/v1/syncs/bench-sync/runs?limit=1").await?;
                let run = &runs["items"][0];
                if run["id"] == id.as_str() && run["status"] != "running" {
                    break run.clone();
                }
            };
            let seconds = started.elapsed().as_secs_f64();
            if ended["status"] != "succeeded" || ended["fetched"].as_u64() != Some(n as u64) {
                bail!("the {name} run did not sync every record: {ended}");
            }
            let rate = n as f64 / seconds;
            out.line(&format!(
                "{name:<13} {label:<7} {rate:>9.0} {seconds:>9.2} {:>9} {:>11}",
                ended["created"], ended["unchanged"]
            ));
            out.record(&json!({"mode": "sync", "destination": name, "run": label,
                "records": n, "page_size": page_size, "seconds": seconds,
                "records_per_second": rate}));
        }
        server.stop().await?;
    }
    if let Some(mut schema) = schema {
        schema.drop_now()?;
    }
    api_task.abort();
    Ok(())
}
