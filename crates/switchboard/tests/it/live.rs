//! The live stream (`GET /v1/stream`) against a real server: events and delivery outcomes as
//! they happen, filters, auth, the stream limit, resuming with `Last-Event-ID` with no gap and
//! no repeat, two nodes sharing PostgreSQL; and the real `switchboard listen` (forwarding to a
//! local receiver across a server restart) and `switchboard tail` binaries.

use std::io::Write as _;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use switchboard_core::config::{RouteConfig, SourceConfig};
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::support::process::ADMIN_TOKEN;
use crate::support::*;

/// One SSE message.
#[derive(Debug, Clone)]
struct Message {
    id: String,
    event: String,
    data: Value,
}

/// A test client of the stream: reads messages one by one.
struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    /// Opens `/v1/stream?<query>` with the admin token (and `Last-Event-ID` when given).
    async fn open(base: &str, query: &str, last_event_id: Option<&str>) -> Self {
        Self::open_with(base, ADMIN_TOKEN, query, last_event_id).await
    }

    /// Opens `/v1/stream?<query>` with `token` (and `Last-Event-ID` when given).
    async fn open_with(base: &str, token: &str, query: &str, last_event_id: Option<&str>) -> Self {
        let mut request = reqwest::Client::new()
            .get(format!("{base}/v1/stream?{query}"))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.expect("stream request");
        assert_eq!(response.status(), 200, "stream opens");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .expect("content type")
                .starts_with("text/event-stream")
        );
        let mut stream = Self {
            response,
            buffer: String::new(),
        };
        let ready = stream.next().await;
        assert_eq!(ready.event, "ready");
        stream
    }

    /// The next message (keep-alive comments skipped); panics after 15 s without one.
    async fn next(&mut self) -> Message {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (String::new(), String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim_start().to_owned();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim_start().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if event.is_empty() && data.is_empty() {
                    continue; // a comment
                }
                let data = serde_json::from_str(&data).expect("data is JSON");
                return Message { id, event, data };
            }
            let chunk = tokio::time::timeout(Duration::from_secs(15), self.response.chunk())
                .await
                .expect("a message within 15s")
                .expect("stream read")
                .expect("the stream is still open");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Waits until the server ends the stream (messages still coming before the end are
    /// read and dropped); panics when it stays open for 15 s.
    async fn ended(mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Ok(Ok(None)) => return,
                Ok(Ok(Some(_))) => continue,
                Ok(Err(error)) => panic!("the stream failed instead of ending: {error}"),
                Err(_) => panic!("the stream is still open after 15s"),
            }
        }
    }

    /// Messages until `done` says the last one is the end.
    async fn until(&mut self, done: impl Fn(&Message) -> bool) -> Vec<Message> {
        let mut out = Vec::new();
        loop {
            let message = self.next().await;
            let end = done(&message);
            out.push(message);
            if end {
                return out;
            }
        }
    }
}

fn is_outcome(m: &Message, event_id: &str, outcome: &str) -> bool {
    m.event == "attempt" && m.data["event_id"] == event_id && m.data["outcome"] == outcome
}

#[tokio::test]
async fn stream_needs_a_token_and_checks_its_query() {
    let receiver = Receiver::always(200).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[50]))).await;
    let anonymous = server.api().anonymous();
    anonymous
        .get("/v1/stream")
        .await
        .problem(401, "unauthorized");
    let api = server.api();
    api.get("/v1/stream?from=later")
        .await
        .problem(422, "validation_failed");
    api.get("/v1/stream?after=nonsense")
        .await
        .problem(422, "validation_failed");
    api.get("/v1/stream?include=everything")
        .await
        .problem(422, "validation_failed");
    let many: Vec<String> = (0..101).map(|i| format!("s{i}")).collect();
    api.get(&format!("/v1/stream?source={}", many.join(",")))
        .await
        .problem(422, "validation_failed");
    let garbage = api
        .send(
            api.request(reqwest::Method::GET, "/v1/stream")
                .header("last-event-id", "e1-a2"),
        )
        .await;
    garbage.problem(422, "validation_failed");
    server.stop().await;
}

#[tokio::test]
async fn stream_shows_events_and_outcomes_and_resumes_without_gap_or_repeat() {
    // The first delivery attempt fails, the retry succeeds.
    let receiver = Receiver::scripted(|n| Reply::Status(if n == 0 { 503 } else { 200 })).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[100]))).await;

    let mut stream = Stream::open(&server.base, "", None).await;
    let a = server.ingest_ok("src", r#"{"n":"a"}"#).await;
    let seen = stream.until(|m| is_outcome(m, &a, "delivered")).await;
    let kinds: Vec<(String, String)> = seen
        .iter()
        .map(|m| {
            let outcome = m.data["outcome"].as_str().unwrap_or("").to_owned();
            (m.event.clone(), outcome)
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("event".to_owned(), String::new()),
            ("attempt".to_owned(), "retrying".to_owned()),
            ("attempt".to_owned(), "delivered".to_owned()),
        ]
    );
    assert_eq!(seen[0].data["id"], a.as_str());
    assert_eq!(seen[0].data["source"], "src");
    assert!(
        seen[0].data.get("body_base64").is_none(),
        "no body unless asked"
    );
    assert_eq!(seen[1].data["status_code"], 503);
    assert_eq!(seen[2].data["destination"], "dst");
    let last_id = seen[2].id.clone();
    drop(stream);

    // While nobody listens, two more events arrive and are delivered.
    let b = server.ingest_ok("src", r#"{"n":"b"}"#).await;
    let c = server.ingest_ok("src", r#"{"n":"c"}"#).await;
    receiver.wait_for(4, Duration::from_secs(15)).await;

    // Resuming after the last message: exactly what came after it, nothing of `a` again.
    let mut resumed = Stream::open(&server.base, "include=events&body=true", Some(&last_id)).await;
    let first = resumed.next().await;
    let second = resumed.next().await;
    assert_eq!(
        (first.data["id"].as_str(), second.data["id"].as_str()),
        (Some(b.as_str()), Some(c.as_str()))
    );
    assert_eq!(first.data["body_base64"], "eyJuIjoiYiJ9"); // {"n":"b"}
    // `?after=` resumes the same way, from the middle.
    let mut after = Stream::open(
        &server.base,
        &format!("include=events&after={}", first.id),
        None,
    )
    .await;
    assert_eq!(after.next().await.data["id"], c.as_str());
    // Live again: a new event reaches the open streams, once.
    let d = server.ingest_ok("src", r#"{"n":"d"}"#).await;
    assert_eq!(resumed.next().await.data["id"], d.as_str());
    assert_eq!(after.next().await.data["id"], d.as_str());
    drop((resumed, after));
    server.stop().await;
}

#[tokio::test]
async fn stream_filters_by_source_and_kind_and_limits_open_streams() {
    let receiver = Receiver::always(200).await;
    let mut config = config_to(&receiver.url, schedule_ms(&[50]));
    config
        .sources
        .push(SourceConfig::new("other", Default::default()));
    config.routes.push(RouteConfig {
        id: None,
        source: "other".into(),
        destination: "dst".into(),
        filter: None,
        transform: None,
        enabled: true,
    });
    config.stream.max_streams = 3;
    // The request timeout bounds reading a request, not an endless response.
    config.server.request_timeout = Duration::from_secs(1);
    let server = TestServer::start(config).await;

    let mut other_events = Stream::open(&server.base, "source=other&include=events", None).await;
    let mut outcomes = Stream::open(&server.base, "include=attempts&source=src", None).await;
    let mut everything = Stream::open(&server.base, "from=beginning", None).await;
    // The fourth stream is over the limit.
    server
        .api()
        .get("/v1/stream")
        .await
        .problem(429, "too_many_streams");

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let skipped = server.ingest_ok("src", "{}").await;
    let wanted = server.ingest_ok("other", "{}").await;
    let event = other_events.next().await;
    assert_eq!(
        (event.event.as_str(), &event.data["id"]),
        ("event", &Value::from(wanted.clone()))
    );
    let outcome = outcomes.next().await;
    assert_eq!(outcome.event, "attempt");
    assert_eq!(outcome.data["event_id"], skipped.as_str());
    assert_eq!(outcome.data["source"], "src");
    let all = everything
        .until(|m| m.event == "event" && m.data["id"] == wanted.as_str())
        .await;
    assert!(all.iter().any(|m| m.data["id"] == skipped.as_str()));

    let metrics = reqwest::get(format!("{}/metrics", server.base))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    // (The recorder is shared by every server of this test process, so only its presence is
    // checked, not the count.)
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("switchboard_streams_open ")),
        "{metrics}"
    );
    // Closing a stream frees its slot.
    drop(everything);
    eventually(Duration::from_secs(10), "a free stream slot", || async {
        let response = reqwest::Client::new()
            .get(format!("{}/v1/stream", server.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request");
        (response.status() == 200).then_some(())
    })
    .await;
    drop((other_events, outcomes));
    server.stop().await;
}

/// A stream checks its token again every `stream.auth_recheck`: revoking the token ends the
/// stream (and a reconnect is refused), while a stream of another token goes on.
#[tokio::test]
async fn stream_ends_when_its_token_is_revoked() {
    let receiver = Receiver::always(200).await;
    let mut config = config_to(&receiver.url, schedule_ms(&[50]));
    config.stream.auth_recheck = Duration::from_millis(200);
    let server = TestServer::start(config).await;
    let created = server
        .api()
        .post(
            "/v1/tokens",
            &serde_json::json!({"name": "watcher", "scopes": ["read"]}),
        )
        .await;
    let created = created.ok(201);
    let token = created["token"].as_str().expect("token").to_owned();
    let id = created["id"].as_str().expect("id").to_owned();

    let mut watcher = Stream::open_with(&server.base, &token, "include=events", None).await;
    let mut admin = Stream::open(&server.base, "include=events", None).await;
    let first = server.ingest_ok("src", r#"{"n":1}"#).await;
    for stream in [&mut watcher, &mut admin] {
        let seen = stream.next().await;
        assert_eq!(
            (seen.event.as_str(), &seen.data["id"]),
            ("event", &Value::from(first.as_str()))
        );
    }

    server
        .api()
        .delete(&format!("/v1/tokens/{id}"))
        .await
        .ok(204);
    watcher.ended().await;
    server
        .api()
        .with_token(&token)
        .get("/v1/stream")
        .await
        .problem(401, "unauthorized");

    // The admin token's stream is still open and still live.
    let second = server.ingest_ok("src", r#"{"n":2}"#).await;
    let seen = admin.next().await;
    assert_eq!(seen.data["id"], second.as_str());
    drop(admin);
    server.stop().await;
}

/// Two nodes on one PostgreSQL database: an event ingested on node B appears on node A's
/// stream, and so does its outcome, recorded by whichever node delivered it.
#[tokio::test]
async fn stream_shows_events_of_another_node() {
    let Some(base) = std::env::var("SWITCHBOARD_TEST_PG")
        .ok()
        .filter(|u| !u.trim().is_empty())
    else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED stream_shows_events_of_another_node: set SWITCHBOARD_TEST_PG=postgres://… to run it"
        );
        return;
    };
    let schema = crate::support::pg::Schema::create(&base, "sb_live");
    let receiver = Receiver::always(200).await;
    let mut config = config_to(&receiver.url, schedule_ms(&[50]));
    config.server.database_url = Some(schema.url());
    config.stream.poll_interval = Duration::from_millis(200);
    let node_a = TestServer::start(config.clone()).await;
    let node_b = TestServer::start(config).await;

    let mut stream = Stream::open(&node_a.base, "", None).await;
    let id = node_b.ingest_ok("src", r#"{"from":"b"}"#).await;
    let seen = stream.until(|m| is_outcome(m, &id, "delivered")).await;
    assert_eq!(seen[0].event, "event");
    assert_eq!(seen[0].data["id"], id.as_str());
    assert_eq!(seen.len(), 2, "the event and its one attempt: {seen:?}");
    drop(stream);
    node_a.stop().await;
    node_b.stop().await;
    drop(schema);
}

/// The binary with none of the caller's `SWITCHBOARD_*` settings, output piped.
fn binary(args: &[&str]) -> tokio::process::Child {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
    for name in [
        "SWITCHBOARD_URL",
        "SWITCHBOARD_TOKEN",
        "SWITCHBOARD_DATA_DIR",
        "SWITCHBOARD_CONFIG",
    ] {
        command.env_remove(name);
    }
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn switchboard")
}

/// Reads stdout lines of `child` until `done` holds for the collected lines.
async fn lines_until(
    child: &mut tokio::process::Child,
    what: &str,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let stdout = child.stdout.take().expect("stdout");
    let mut reader = BufReader::new(stdout).lines();
    let mut lines = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done(&lines) {
        match tokio::time::timeout_at(deadline, reader.next_line()).await {
            Ok(Ok(Some(line))) => lines.push(line),
            Ok(Ok(None)) => panic!("stdout closed before {what}: {lines:?}"),
            Ok(Err(e)) => panic!("reading stdout: {e}"),
            Err(_) => panic!("timed out waiting for {what}: {lines:?}"),
        }
    }
    child.stdout = Some(reader.into_inner().into_inner());
    lines
}

#[tokio::test]
async fn listen_forwards_events_and_resumes_after_a_server_restart() {
    let delivered = Receiver::always(200).await;
    let local = Receiver::always(201).await;
    let config = config_to(&delivered.url, schedule_ms(&[50]));
    let server = TestServer::start(config.clone()).await;
    let addr = server.base.trim_start_matches("http://").to_owned();

    let mut listen = binary(&[
        "--json",
        "listen",
        "--url",
        &server.base,
        "--token",
        ADMIN_TOKEN,
        "--source",
        "src",
        "--forward-to",
        &local.url,
        "--from",
        "beginning",
    ]);
    let first = reqwest::Client::new()
        .post(format!("{}/in/src", server.base))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .body(r#"{"n":1}"#)
        .send()
        .await
        .expect("ingest");
    assert_eq!(first.status(), 202);
    let requests = local.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(&requests[0].body[..], br#"{"n":1}"#);
    assert_eq!(requests[0].header("content-type"), "application/json");
    assert_eq!(requests[0].header("x-github-event"), "push");
    assert!(!requests[0].header("x-switchboard-event-id").is_empty());

    // The server goes away (its streams end) and comes back on the same port and data.
    let dir = server.stop().await;
    let server = TestServer::start_on(config, dir, &addr).await;
    let second = server.ingest_ok("src", r#"{"n":2}"#).await;
    let third = server.ingest_ok("src", r#"{"n":3}"#).await;
    let requests = local.wait_for(3, Duration::from_secs(30)).await;
    let bodies: Vec<&[u8]> = requests.iter().map(|r| &r.body[..]).collect();
    assert_eq!(
        bodies,
        [&br#"{"n":1}"#[..], br#"{"n":2}"#, br#"{"n":3}"#],
        "every event once, in order"
    );
    assert_eq!(requests[2].header("x-switchboard-event-id"), third);

    let lines = lines_until(&mut listen, "three report lines", |lines| lines.len() >= 3).await;
    let reports: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(reports.iter().all(|r| r["status"] == 201), "{reports:?}");
    assert_eq!(reports[1]["event_id"], second.as_str());
    assert!(reports[2]["latency_ms"].is_u64());
    // Nothing more was forwarded (no repeat after the reconnect).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(local.requests().len(), 3);
    listen.kill().await.expect("stop listen");
    server.stop().await;
}

#[tokio::test]
async fn tail_prints_events_and_outcomes() {
    let receiver = Receiver::scripted(|n| Reply::Status(if n == 0 { 500 } else { 200 })).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[100]))).await;
    let id = server.ingest_ok("src", "{}").await;
    server
        .wait_delivery(&id, "delivered", |d| {
            d.status == switchboard_core::DeliveryStatus::Succeeded
        })
        .await;

    let mut json = binary(&[
        "--json",
        "tail",
        "--url",
        &server.base,
        "--token",
        ADMIN_TOKEN,
        "--from",
        "beginning",
    ]);
    let lines = lines_until(&mut json, "event and two outcomes", |l| l.len() >= 3).await;
    let items: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(items[0]["kind"], "event");
    assert_eq!(items[0]["id"], id.as_str());
    assert_eq!(
        (items[1]["kind"].as_str(), items[1]["outcome"].as_str()),
        (Some("attempt"), Some("retrying"))
    );
    assert_eq!(items[2]["outcome"], "delivered");
    assert!(items[2]["cursor"].is_string());
    json.kill().await.expect("stop tail");

    let mut text = binary(&[
        "tail",
        "--url",
        &server.base,
        "--token",
        ADMIN_TOKEN,
        "--from",
        "beginning",
        "--source",
        "src",
    ]);
    let lines = lines_until(&mut text, "three lines", |l| l.len() >= 3).await;
    assert!(
        lines[0].contains(" event ") && lines[0].contains(&id),
        "{lines:?}"
    );
    assert!(
        lines[1].contains("retrying") && lines[1].contains("500"),
        "{lines:?}"
    );
    assert!(
        lines[2].contains("delivered") && lines[2].contains("→ dst #2"),
        "{lines:?}"
    );
    text.kill().await.expect("stop tail");

    // From `now`: a new event shows up (events are sent until the stream, opening in the
    // background, has one).
    let mut live = binary(&[
        "tail",
        "--url",
        &server.base,
        "--token",
        ADMIN_TOKEN,
        "--events-only",
    ]);
    let stdout = live.stdout.take().expect("stdout");
    let mut reader = BufReader::new(stdout).lines();
    let mut sent = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let line = loop {
        assert!(tokio::time::Instant::now() < deadline, "no live line");
        sent.push(server.ingest_ok("src", "{}").await);
        if let Ok(Ok(Some(line))) =
            tokio::time::timeout(Duration::from_millis(500), reader.next_line()).await
        {
            break line;
        }
    };
    assert!(line.contains(" event "), "{line}");
    assert!(sent.iter().any(|id| line.contains(id.as_str())), "{line}");
    assert!(
        !line.contains(&id),
        "stored events are not repeated from `now`: {line}"
    );
    live.kill().await.expect("stop tail");
    let denied = binary(&["tail", "--url", &server.base, "--token", "sb_wrong"])
        .wait_with_output()
        .await
        .expect("tail exits");
    assert_eq!(denied.status.code(), Some(1));
    server.stop().await;
}
