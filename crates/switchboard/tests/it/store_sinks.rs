//! The `postgres` and `s3` destinations against real services on this machine.
//!
//! - PostgreSQL (`SWITCHBOARD_TEST_PG=postgres://user@host:port/database`): each test creates a
//!   schema of its own (dropped after it) and reads the rows back with `psql`.
//! - S3 (`SWITCHBOARD_TEST_S3=1`): each test starts moto's S3-compatible server
//!   (`python3 -m moto.server`, from `.ci/requirements.txt`) on a free loopback port with
//!   authentication on, creates an IAM user, its key and a bucket, and reads the objects back
//!   with boto3 (an independent S3 client, which also checks the signatures moto verifies).
//!
//! Without the variable a test reports `SKIPPED …` on stderr and passes.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read as _, Write as _};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use switchboard_core::config::{
    DestinationConfig, OnConflict, PostgresDestination, RouteConfig, S3Destination, S3Format,
};
use switchboard_core::{Config, DeliveryStatus};
use switchboard_store::{AttemptRecord, DeliveryRecord};

use crate::support::pg::psql;
use crate::support::{TestServer, config_to, eventually, schedule_ms};

fn env_or_skip(name: &str, test: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Some(value),
        _ => {
            // Past the harness's capture, so that CI sees it.
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: set {name} to run it");
            None
        }
    }
}

/// A config whose source `src` feeds only the given destinations, each through a route with
/// `transform`.
fn config_with(destinations: Vec<(DestinationConfig, Option<&str>)>) -> Config {
    let mut config = config_to("http://127.0.0.1:9/unused", schedule_ms(&[50]));
    config.destinations.clear();
    config.routes.clear();
    for (destination, transform) in destinations {
        config.routes.push(RouteConfig {
            id: Some(format!("to-{}", destination.id())),
            source: "src".into(),
            destination: destination.id().into(),
            filter: None,
            transform: transform.map(str::to_owned),
            enabled: true,
        });
        config.destinations.push(destination);
    }
    config
}

/// The delivery of `event` to `destination`, once `pred` holds.
async fn wait_for(
    server: &TestServer,
    event: &str,
    destination: &str,
    what: &str,
    pred: impl Fn(&DeliveryRecord) -> bool,
) -> DeliveryRecord {
    eventually(Duration::from_secs(30), what, || async {
        server
            .deliveries_of(event)
            .await
            .into_iter()
            .find(|d| d.destination == destination && pred(d))
    })
    .await
}

async fn attempts_of(server: &TestServer, delivery: &DeliveryRecord) -> Vec<AttemptRecord> {
    server
        .store()
        .list_attempts(None, Some(&delivery.id))
        .await
        .expect("attempts")
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// A schema of its own, dropped with this value.
struct SinkSchema {
    base: String,
    name: String,
}

impl SinkSchema {
    fn create(base: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "sb_sink_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        );
        psql(base, &[&format!("CREATE SCHEMA {name}")]).expect("create the test schema");
        Self {
            base: base.to_owned(),
            name,
        }
    }

    /// Rows of `SELECT … ` as JSON objects (`row_to_json`).
    fn rows(&self, select: &str) -> Vec<Value> {
        let output = Command::new("psql")
            .arg(&self.base)
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c"])
            .arg(format!("SELECT row_to_json(r) FROM ({select}) r"))
            .output()
            .expect("run psql");
        assert!(
            output.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("row json"))
            .collect()
    }
}

impl Drop for SinkSchema {
    fn drop(&mut self) {
        let drop = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        if let Err(error) = psql(&self.base, &["SET lock_timeout = '30s'", &drop]) {
            let _ = writeln!(
                std::io::stderr(),
                "could not drop schema {}: {error}",
                self.name
            );
        }
    }
}

fn postgres(id: &str, url: &str, table: &str, conflict: &[&str]) -> PostgresDestination {
    PostgresDestination {
        id: id.into(),
        url: url.into(),
        table: table.into(),
        conflict: conflict.iter().map(|c| (*c).to_owned()).collect(),
        on_conflict: None,
        columns: None,
        pool_size: 2,
        timeout: Duration::from_secs(10),
        retry: schedule_ms(&[50, 50, 50]),
        max_in_flight: None,
        rate_limit: None,
        ordered: false,
        enabled: true,
    }
}

/// The test URL with a password added: trust authentication never asks for it, so it must
/// merely never show up anywhere.
const PG_PASSWORD: &str = "pg-password-never-shown";

fn with_password(base: &str) -> String {
    match base.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((user, host)) if !user.contains(':') => {
                format!("{scheme}://{user}:{PG_PASSWORD}@{host}")
            }
            _ => base.to_owned(),
        },
        None => base.to_owned(),
    }
}

/// Events become rows: the first insert, then an upsert by key updating the row (one row in
/// all), with PostgreSQL casting the JSON values to the column types; an allow-listed
/// destination with `on_conflict = "ignore"` keeps the first row.
#[tokio::test]
async fn postgres_inserts_then_upserts_by_key() {
    let Some(base) = env_or_skip(
        "SWITCHBOARD_TEST_PG",
        "postgres_inserts_then_upserts_by_key",
    ) else {
        return;
    };
    let schema = SinkSchema::create(&base);
    let s = &schema.name;
    psql(
        &base,
        &[
            &format!(
                "CREATE TABLE {s}.orders (id bigint PRIMARY KEY, status text NOT NULL, \
                 total numeric(10,2), placed_at timestamptz, tags text[], meta jsonb, \
                 updated_by text DEFAULT 'default')"
            ),
            &format!("CREATE TABLE {s}.first_seen (id bigint PRIMARY KEY, status text)"),
        ],
    )
    .expect("create tables");
    let url = with_password(&base);
    let upsert = postgres("orders", &url, &format!("{s}.orders"), &["id"]);
    let mut first_seen = postgres("first-seen", &url, &format!("{s}.first_seen"), &["id"]);
    first_seen.on_conflict = Some(OnConflict::Ignore);
    first_seen.columns = Some(vec!["id".into(), "status".into()]);
    let transform = r#"{id: .body.id, status: .body.status, total: .body.total,
        placed_at: .body.at, tags: .body.tags, meta: {source: "shop", n: .body.n}}"#;
    let config = config_with(vec![
        (DestinationConfig::Postgres(upsert), Some(transform)),
        (DestinationConfig::Postgres(first_seen), Some(transform)),
    ]);
    let server = TestServer::start(config).await;

    let created = server
        .ingest_ok(
            "src",
            r#"{"id": 42, "status": "created", "total": "19.90", "at": "2024-05-01T10:00:00Z",
                "tags": ["new", "web"], "n": 1}"#,
        )
        .await;
    for destination in ["orders", "first-seen"] {
        wait_for(&server, &created, destination, "first row", |d| {
            d.status == DeliveryStatus::Succeeded
        })
        .await;
    }
    let rows = schema.rows(&format!(
        "SELECT id, status, total::text AS total, extract(epoch FROM placed_at)::bigint AS at, \
         tags, meta, updated_by FROM {s}.orders"
    ));
    assert_eq!(
        rows,
        vec![json!({
            "id": 42, "status": "created", "total": "19.90", "at": 1_714_557_600,
            "tags": ["new", "web"], "meta": {"n": 1, "source": "shop"}, "updated_by": "default"
        })]
    );

    let paid = server
        .ingest_ok(
            "src",
            r#"{"id": 42, "status": "paid", "total": 21.5, "at": "2024-05-01T11:00:00+01:00",
                "tags": [], "n": 2}"#,
        )
        .await;
    let delivery = wait_for(&server, &paid, "orders", "upsert", |d| {
        d.status == DeliveryStatus::Succeeded
    })
    .await;
    wait_for(&server, &paid, "first-seen", "ignored", |d| {
        d.status == DeliveryStatus::Succeeded
    })
    .await;
    let rows = schema.rows(&format!(
        "SELECT id, status, total::text AS total, extract(epoch FROM placed_at)::bigint AS at, \
         tags, meta FROM {s}.orders"
    ));
    assert_eq!(
        rows,
        vec![json!({
            "id": 42, "status": "paid", "total": "21.50", "at": 1_714_557_600,
            "tags": [], "meta": {"n": 2, "source": "shop"}
        })],
        "the second event updated the row"
    );
    assert_eq!(
        schema.rows(&format!("SELECT id, status FROM {s}.first_seen")),
        vec![json!({"id": 42, "status": "created"})],
        "on_conflict = ignore keeps the first row"
    );

    // Where it wrote is recorded, never the password; the API shows no password either.
    let attempts = attempts_of(&server, &delivery).await;
    assert_eq!(attempts.len(), 1);
    assert!(
        attempts[0].request_url.starts_with("postgres ")
            && attempts[0]
                .request_url
                .ends_with(&format!("table {s}.orders")),
        "{}",
        attempts[0].request_url
    );
    assert_eq!(attempts[0].response_body, b"rows affected: 1");
    let shown = server.api().get("/v1/destinations/orders").await;
    assert_eq!(shown.body["kind"], "postgres", "{}", shown.text);
    for text in [
        shown.text.as_str(),
        &attempts[0].request_url,
        &server.api().get("/v1/destinations").await.text,
    ] {
        assert!(!text.contains(PG_PASSWORD), "password shown: {text}");
    }
    server.stop().await;
}

/// Failures the database reports: a value its column type refuses, a body that is not an
/// object, a table that does not exist. Each fails at once (no retry) with PostgreSQL's
/// message in the attempt record.
#[tokio::test]
async fn postgres_refusals_are_permanent_and_explained() {
    let Some(base) = env_or_skip(
        "SWITCHBOARD_TEST_PG",
        "postgres_refusals_are_permanent_and_explained",
    ) else {
        return;
    };
    let schema = SinkSchema::create(&base);
    let s = &schema.name;
    psql(
        &base,
        &[&format!(
            "CREATE TABLE {s}.readings (id bigint PRIMARY KEY, value numeric NOT NULL)"
        )],
    )
    .expect("create table");
    let mut config = config_with(vec![
        (
            DestinationConfig::Postgres(postgres(
                "readings",
                &base,
                &format!("{s}.readings"),
                &["id"],
            )),
            None,
        ),
        (
            DestinationConfig::Postgres(postgres(
                "missing",
                &base,
                &format!("{s}.no_such_table"),
                &[],
            )),
            Some(r#"if .body | type == "object" then {id: .body.id} else .body end"#),
        ),
        (
            DestinationConfig::Postgres(PostgresDestination {
                timeout: Duration::from_secs(3),
                ..postgres(
                    "unreachable",
                    &format!("postgres://postgres:{PG_PASSWORD}@127.0.0.1:1/test"),
                    "readings",
                    &[],
                )
            }),
            Some(".body"),
        ),
    ]);
    // A long retry schedule: a permanent failure must not wait for it.
    for destination in &mut config.destinations {
        if let DestinationConfig::Postgres(pg) = destination {
            pg.retry = schedule_ms(&[60_000]);
        }
    }
    let server = TestServer::start(config).await;

    let bad_value = server
        .ingest_ok("src", r#"{"id": 1, "value": "twelve"}"#)
        .await;
    let failed = wait_for(
        &server,
        &bad_value,
        "readings",
        "type mismatch fails",
        |d| d.status == DeliveryStatus::Failed,
    )
    .await;
    assert_eq!(failed.attempts, 1, "not retried");
    let attempts = attempts_of(&server, &failed).await;
    assert_eq!(attempts[0].outcome, "permanent");
    let error = attempts[0].error.clone().unwrap_or_default();
    assert!(
        error.contains("invalid input syntax for type numeric") && error.contains("22P02"),
        "{error}"
    );

    let missing = wait_for(&server, &bad_value, "missing", "missing table fails", |d| {
        d.status == DeliveryStatus::Failed
    })
    .await;
    let error = attempts_of(&server, &missing).await[0]
        .error
        .clone()
        .unwrap_or_default();
    assert!(
        error.contains(&format!("relation \"{s}.no_such_table\" does not exist"))
            && error.contains("42P01"),
        "{error}"
    );

    // No database there: retried later, not failed.
    let waiting = wait_for(
        &server,
        &bad_value,
        "unreachable",
        "connection failed",
        |d| d.attempts == 1 && d.status == DeliveryStatus::Pending,
    )
    .await;
    let attempt = &attempts_of(&server, &waiting).await[0];
    assert_eq!(attempt.outcome, "retryable");
    let error = attempt.error.clone().unwrap_or_default();
    assert!(
        error.starts_with("postgres") && error.contains("while connecting"),
        "the cause is named: {error}"
    );
    assert!(!error.contains(PG_PASSWORD), "{error}");

    let array = server.ingest_ok("src", "[1, 2, 3]").await;
    let failed = wait_for(&server, &array, "readings", "array fails", |d| {
        d.status == DeliveryStatus::Failed
    })
    .await;
    let error = attempts_of(&server, &failed).await[0]
        .error
        .clone()
        .unwrap_or_default();
    assert!(
        error.contains("writes a JSON object") && error.contains("an array"),
        "{error}"
    );

    // Good rows still go in, values exactly as delivered (every digit of a `numeric`).
    let good = server.ingest_ok("src", r#"{"id": 2, "value": 12}"#).await;
    let big = server
        .ingest_ok(
            "src",
            r#"{"id": 3, "value": 123456789012345678901234567890.000000000000000000001}"#,
        )
        .await;
    for event in [&good, &big] {
        wait_for(&server, event, "readings", "good row", |d| {
            d.status == DeliveryStatus::Succeeded
        })
        .await;
    }
    assert_eq!(
        schema.rows(&format!(
            "SELECT id, value::text AS value FROM {s}.readings ORDER BY id"
        )),
        vec![
            json!({"id": 2, "value": "12"}),
            json!({"id": 3, "value": "123456789012345678901234567890.000000000000000000001"}),
        ]
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// S3

/// moto's S3 server on a free loopback port, killed when dropped, with an IAM user allowed
/// everything and a bucket.
struct Moto {
    child: Child,
    endpoint: String,
    access_key_id: String,
    secret_access_key: String,
}

/// Requests moto answers without authentication: creating the user, its key, its policy and
/// the bucket. Every later request must be signed by the user's key.
const UNAUTHENTICATED_SETUP_ACTIONS: &str = "4";

const SETUP: &str = r#"
import boto3, json, sys
endpoint, bucket = sys.argv[1], sys.argv[2]
kw = dict(endpoint_url=endpoint, region_name="us-east-1",
          aws_access_key_id="AKIASETUP", aws_secret_access_key="setup")
iam = boto3.client("iam", **kw)
iam.create_user(UserName="switchboard")
key = iam.create_access_key(UserName="switchboard")["AccessKey"]
iam.put_user_policy(UserName="switchboard", PolicyName="all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
boto3.client("s3", **kw).create_bucket(Bucket=bucket)
print(json.dumps({"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}))
"#;

const READ_BACK: &str = r#"
import base64, boto3, json, sys
endpoint, key, secret, bucket = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id=key, aws_secret_access_key=secret)
out = {}
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
    for item in page.get("Contents", []):
        got = s3.get_object(Bucket=bucket, Key=item["Key"])
        out[item["Key"]] = {"content_type": got["ContentType"],
                            "body": base64.b64encode(got["Body"].read()).decode()}
print(json.dumps(out))
"#;

fn python(script: &str, args: &[&str]) -> Value {
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3 (the S3 tests need python3 with moto[server] and boto3)");
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("python printed JSON")
}

impl Moto {
    async fn start(bucket: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .env(
                "INITIAL_NO_AUTH_ACTION_COUNT",
                UNAUTHENTICATED_SETUP_ACTIONS,
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto (pip install 'moto[server]')");
        let mut moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            access_key_id: String::new(),
            secret_access_key: String::new(),
        };
        // Only a TCP connect: every HTTP request would count against the unauthenticated ones.
        eventually(Duration::from_secs(60), "moto listening", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        let key = python(SETUP, &[&moto.endpoint, bucket]);
        moto.access_key_id = key["id"].as_str().expect("key id").to_owned();
        moto.secret_access_key = key["secret"].as_str().expect("secret").to_owned();
        moto
    }

    /// Every object of `bucket`: key → (content type, bytes).
    fn objects(&self, bucket: &str) -> BTreeMap<String, (String, Vec<u8>)> {
        let listed = python(
            READ_BACK,
            &[
                &self.endpoint,
                &self.access_key_id,
                &self.secret_access_key,
                bucket,
            ],
        );
        listed
            .as_object()
            .expect("object")
            .iter()
            .map(|(key, object)| {
                let body = base64::engine::general_purpose::STANDARD
                    .decode(object["body"].as_str().expect("body"))
                    .expect("base64");
                let content_type = object["content_type"].as_str().unwrap_or("").to_owned();
                (key.clone(), (content_type, body))
            })
            .collect()
    }

    fn destination(&self, id: &str, bucket: &str, key: Option<&str>) -> S3Destination {
        S3Destination {
            id: id.into(),
            bucket: bucket.into(),
            endpoint: Some(self.endpoint.clone()),
            path_style: None,
            region: "us-east-1".into(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            session_token: None,
            key: key.map(str::to_owned),
            format: S3Format::Json,
            batch_max_events: 100,
            batch_max_bytes: 8 * 1024 * 1024,
            batch_max_wait: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            retry: schedule_ms(&[60_000]),
            max_in_flight: None,
            rate_limit: None,
            ordered: false,
            enabled: true,
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gunzip(bytes: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut out)
        .expect("a gzip object");
    out
}

fn header<'a>(attempt: &'a AttemptRecord, name: &str) -> &'a str {
    attempt
        .response_headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// One JSON object per event: under the default key (source, day, delivery id) and under a
/// templated one; the stored bytes are the delivered body.
#[tokio::test]
async fn s3_stores_one_json_object_per_event_under_its_templated_key() {
    if env_or_skip(
        "SWITCHBOARD_TEST_S3",
        "s3_stores_one_json_object_per_event_under_its_templated_key",
    )
    .is_none()
    {
        return;
    }
    let moto = Moto::start("archive").await;
    let config = config_with(vec![
        (
            DestinationConfig::S3(moto.destination("by-day", "archive", None)),
            None,
        ),
        (
            DestinationConfig::S3(moto.destination(
                "by-order",
                "archive",
                Some("orders/{{ .body.customer }}/{{ .body.id }}.json"),
            )),
            Some(r#"{order: .body.id, customer: .body.customer}"#),
        ),
    ]);
    let server = TestServer::start(config).await;
    let bodies = [
        r#"{"id": 7, "customer": "ada lovelace", "total": 12.5}"#,
        r#"{"id": 8, "customer": "alan", "note": "line\nbreak"}"#,
    ];
    let mut events = Vec::new();
    for body in bodies {
        events.push(server.ingest_ok("src", body).await);
    }
    let mut by_day = Vec::new();
    for event in &events {
        by_day.push(
            wait_for(&server, event, "by-day", "stored by day", |d| {
                d.status == DeliveryStatus::Succeeded
            })
            .await,
        );
        wait_for(&server, event, "by-order", "stored by order", |d| {
            d.status == DeliveryStatus::Succeeded
        })
        .await;
    }
    let objects = moto.objects("archive");
    assert_eq!(objects.len(), 4, "{:?}", objects.keys());
    let (content_type, body) = &objects["orders/ada lovelace/7.json"];
    assert_eq!(content_type, "application/json");
    assert_eq!(
        serde_json::from_slice::<Value>(body).expect("json"),
        json!({"order": 7, "customer": "ada lovelace"})
    );
    assert!(objects.contains_key("orders/alan/8.json"));
    for (delivery, body) in by_day.iter().zip(bodies) {
        let received_at = server
            .store()
            .get_event(&delivery.event_id)
            .await
            .expect("event")
            .expect("stored")
            .received_at;
        let day = &switchboard_server::transform::rfc3339(received_at)[..10];
        let key = format!("src/{day}/{}.json", delivery.id);
        let (content_type, stored) = objects
            .get(&key)
            .unwrap_or_else(|| panic!("{key} missing from {:?}", objects.keys()));
        assert_eq!(content_type, "application/json");
        assert_eq!(stored, body.as_bytes(), "the event's bytes, unchanged");
        let attempts = attempts_of(&server, delivery).await;
        assert_eq!(attempts[0].status_code, Some(200));
        assert_eq!(
            header(&attempts[0], "x-switchboard-object"),
            format!("s3://archive/{key}")
        );
    }
    server.stop().await;
}

/// `jsonl_gzip`: the deliveries of a batch succeed once the gzip JSON Lines object holding
/// them is stored; a full batch is uploaded at once, the rest after `batch_max_wait`; the
/// objects hold exactly the delivered events, each once.
#[tokio::test]
async fn s3_batches_events_into_gzip_json_lines() {
    if env_or_skip(
        "SWITCHBOARD_TEST_S3",
        "s3_batches_events_into_gzip_json_lines",
    )
    .is_none()
    {
        return;
    }
    let moto = Moto::start("batches").await;
    let mut destination = moto.destination("lines", "batches", Some("{{ .source }}/lines-"));
    destination.format = S3Format::JsonlGzip;
    destination.batch_max_events = 3;
    destination.batch_max_wait = Duration::from_secs(2);
    destination.timeout = Duration::from_secs(20);
    let config = config_with(vec![(
        DestinationConfig::S3(destination),
        Some(r#"{n: .body.n, text: .body.text}"#),
    )]);
    let server = TestServer::start(config).await;
    let mut events = Vec::new();
    for n in 0..5 {
        let body = json!({"n": n, "text": format!("event {n}\nwith a line break")});
        events.push(server.ingest_ok("src", body.to_string()).await);
    }
    let mut deliveries = Vec::new();
    for event in &events {
        deliveries.push(
            wait_for(&server, event, "lines", "batched and uploaded", |d| {
                d.status == DeliveryStatus::Succeeded
            })
            .await,
        );
    }
    let objects = moto.objects("batches");
    let mut seen = Vec::new();
    let mut lines_of = BTreeMap::new();
    for (key, (content_type, body)) in &objects {
        assert!(
            key.starts_with("src/lines-") && key.ends_with(".jsonl.gz"),
            "{key}"
        );
        assert_eq!(content_type, "application/gzip");
        let text = gunzip(body);
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON value per line"))
            .collect();
        assert!(lines.len() <= 3, "at most batch_max_events per object");
        for line in &lines {
            seen.push(line["n"].as_i64().expect("n"));
            assert!(line["text"].as_str().expect("text").contains('\n'));
        }
        lines_of.insert(format!("s3://batches/{key}"), lines);
    }
    seen.sort_unstable();
    assert_eq!(seen, vec![0, 1, 2, 3, 4], "every event exactly once");
    assert!(
        lines_of.values().any(|lines| lines.len() == 3),
        "a full batch: {lines_of:?}"
    );
    // Each delivery's attempt names the object holding its event.
    let mut objects_used = HashSet::new();
    for (n, delivery) in deliveries.iter().enumerate() {
        let attempts = attempts_of(&server, delivery).await;
        assert_eq!(attempts.len(), 1);
        let object = header(&attempts[0], "x-switchboard-object").to_owned();
        let lines = lines_of
            .get(&object)
            .unwrap_or_else(|| panic!("attempt names `{object}`"));
        assert!(lines.iter().any(|l| l["n"] == n), "event {n} in {object}");
        assert_eq!(
            header(&attempts[0], "x-switchboard-batch-events"),
            lines.len().to_string()
        );
        objects_used.insert(object);
    }
    assert_eq!(objects_used.len(), objects.len());
    server.stop().await;
}

/// Wrong credentials are refused (403) and a missing bucket is named: both fail at once with
/// S3's reason; the secret key never shows in the API or the attempt records.
#[tokio::test]
async fn s3_wrong_credentials_and_missing_buckets_fail_clearly() {
    if env_or_skip(
        "SWITCHBOARD_TEST_S3",
        "s3_wrong_credentials_and_missing_buckets_fail_clearly",
    )
    .is_none()
    {
        return;
    }
    let moto = Moto::start("present").await;
    let mut wrong = moto.destination("wrong-secret", "present", None);
    wrong.secret_access_key = "not-the-secret-key".into();
    let mut wrong_batch = moto.destination("wrong-secret-batch", "present", None);
    wrong_batch.secret_access_key = "not-the-secret-key".into();
    wrong_batch.format = S3Format::JsonlGzip;
    wrong_batch.batch_max_wait = Duration::from_millis(200);
    let missing = moto.destination("missing-bucket", "no-such-bucket", None);
    let config = config_with(vec![
        (DestinationConfig::S3(wrong), None),
        (DestinationConfig::S3(wrong_batch), None),
        (DestinationConfig::S3(missing), None),
    ]);
    let server = TestServer::start(config).await;
    let event = server.ingest_ok("src", r#"{"hello": "world"}"#).await;

    for id in ["wrong-secret", "wrong-secret-batch"] {
        let failed = wait_for(&server, &event, id, "refused", |d| {
            d.status == DeliveryStatus::Failed
        })
        .await;
        assert_eq!(failed.attempts, 1, "{id}: not retried");
        let attempt = &attempts_of(&server, &failed).await[0];
        assert_eq!(attempt.status_code, Some(403), "{id}");
        assert_eq!(attempt.outcome, "permanent");
        let error = attempt.error.clone().unwrap_or_default();
        assert!(
            error.contains("SignatureDoesNotMatch") && error.contains("secret_access_key"),
            "{id}: {error}"
        );
    }
    let failed = wait_for(&server, &event, "missing-bucket", "no bucket", |d| {
        d.status == DeliveryStatus::Failed
    })
    .await;
    let attempt = &attempts_of(&server, &failed).await[0];
    assert_eq!(attempt.status_code, Some(404));
    let error = attempt.error.clone().unwrap_or_default();
    assert!(
        error.contains("bucket `no-such-bucket` does not exist"),
        "{error}"
    );
    assert!(moto.objects("present").is_empty());

    let shown = server.api().get("/v1/destinations/missing-bucket").await;
    assert_eq!(shown.body["kind"], "s3", "{}", shown.text);
    assert!(
        shown.body["url"]
            .as_str()
            .is_some_and(|u| u.contains("no-such-bucket")),
        "{}",
        shown.text
    );
    let everything = server.api().get("/v1/destinations").await.text;
    assert!(
        !everything.contains(&moto.secret_access_key),
        "{everything}"
    );
    assert!(!attempt.request_url.contains(&moto.secret_access_key));
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Documentation

/// The ```toml blocks of `text` between `from` and `to`.
fn toml_blocks(text: &str, from: &str, to: &str) -> Vec<String> {
    let start = text.find(from).expect("section start");
    let end = start + text[start..].find(to).expect("section end");
    text[start..end]
        .split("```toml\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap_or_default().to_owned())
        .collect()
}

/// Parses, validates and builds (connectors and templates included) a documented example.
fn load_example(toml: &str) -> Config {
    let mut config = Config::from_toml(toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    let sources: HashSet<String> = config.sources.iter().map(|s| s.id.clone()).collect();
    for route in &config.routes {
        if !sources.contains(&route.source) {
            config
                .sources
                .push(switchboard_core::config::SourceConfig::new(
                    &route.source,
                    Default::default(),
                ));
        }
    }
    config.validate().unwrap_or_else(|e| panic!("{e}\n{toml}"));
    for destination in &config.destinations {
        switchboard_server::delivery::connectors::build(destination)
            .unwrap_or_else(|e| panic!("{e}\n{toml}"));
    }
    for route in &config.routes {
        switchboard_server::transform::RouteProgram::compile(route)
            .unwrap_or_else(|e| panic!("{e}\n{toml}"));
    }
    config
}

/// The `postgres` and `s3` examples of docs/configuration.md and the recipe load as they are,
/// and the recipe's row transform makes a row of Shopify's sample order.
#[test]
fn documented_examples_load() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let reference = std::fs::read_to_string(format!("{root}/docs/configuration.md"))
        .expect("docs/configuration.md");
    let blocks = toml_blocks(
        &reference,
        "### `[[destinations]]` (`kind = \"postgres\"`)",
        "### `[[routes]]`",
    );
    // The postgres and s3 sections come first; the kinds after them (email, sms) load too.
    assert!(blocks.len() >= 2, "one example per kind");
    for block in &blocks {
        load_example(block);
    }
    let recipe = std::fs::read_to_string(format!(
        "{root}/docs/recipes/events-into-postgres-and-s3.md"
    ))
    .expect("recipe");
    let blocks = toml_blocks(&recipe, "## 3. The configuration", "What happens");
    assert_eq!(blocks.len(), 1);
    let config = load_example(&blocks[0]);
    assert_eq!(config.destinations.len(), 2);

    let route = config
        .routes
        .iter()
        .find(|r| r.destination == "orders-db")
        .expect("route");
    let program = switchboard_server::transform::RouteProgram::compile(route).expect("route");
    let sample = std::fs::read(format!("{root}/samples/shopify/orders/paid.json")).expect("sample");
    let input = switchboard_server::transform::event_input(
        &sample,
        Some("application/json"),
        &[],
        Some("orders/paid"),
        "shopify",
        1_714_557_600_000,
    );
    let switchboard_server::transform::Routed::Send(Some(row)) =
        program.apply(&input).expect("runs")
    else {
        panic!("the sample order is routed with a body");
    };
    assert_eq!(row["status"], "paid");
    assert_eq!(row["total"], "215.42");
    assert_eq!(row["updated_at"], "2024-05-01T10:00:00.000Z");
    assert!(row["items"][0]["sku"].is_string(), "{row}");
}
