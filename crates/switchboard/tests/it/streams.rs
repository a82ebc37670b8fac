//! Fetching sources end to end: `websocket` against a local WebSocket server (checks the
//! handshake's credentials, expects the subscribe message, streams, drops connections, goes
//! silent) and `schedule` against a local JSON API whose list grows between polls and that
//! fails some of them. Events are asserted in the store and at a receiver through a route. The
//! multi-node test (two `switchboard serve` processes sharing PostgreSQL, with
//! `SWITCHBOARD_TEST_PG`) shows a websocket source connected from one node at a time, and the
//! other node taking over after the first is killed.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard_core::Config;
use switchboard_core::config::{
    ScheduleSource, SourceConfig, SourceKind, VerifierConfig, WebsocketSource,
};
use switchboard_store::EventFilter;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;

use crate::support::pg::{Schema, master_key};
use crate::support::process::Process;
use crate::support::{Receiver, TestServer, config_to, eventually, schedule_ms};

/// The credential the fake stream expects in `Authorization`.
const STREAM_TOKEN: &str = "Bearer stream-t0ken";

/// Generous deadline for anything that involves reconnecting or polling on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(30);

#[derive(Debug)]
enum Command {
    Send(String),
    Drop,
}

/// What the fake stream saw.
#[derive(Default)]
struct StreamState {
    /// Handshakes attempted (refused ones included).
    handshakes: usize,
    /// `Authorization` of every handshake.
    authorizations: Vec<String>,
    /// The first messages of each accepted connection (authorization, subscribe).
    openings: Vec<Vec<String>>,
    /// Connections subscribed and not yet closed.
    open: usize,
    /// Most connections open at once.
    max_open: usize,
    /// Pings received.
    pings: usize,
    /// The connection commands go to: (its number, its command channel).
    current: Option<(usize, mpsc::UnboundedSender<Command>)>,
}

/// How the fake stream behaves.
#[derive(Clone, Default)]
struct StreamScript {
    /// Refuse this many first handshakes with 503.
    refuse_first: usize,
    /// Messages read after the handshake before the connection counts as subscribed.
    opening_messages: usize,
    /// Accepted connections (0-based) that, once subscribed, stop reading: no pongs, nothing.
    silent: Vec<usize>,
}

/// A local WebSocket server standing in for a provider's stream.
#[derive(Clone)]
struct FakeStream {
    url: String,
    state: Arc<Mutex<StreamState>>,
}

impl FakeStream {
    async fn start(script: StreamScript) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("ws://{}/stream", listener.local_addr().expect("addr"));
        let state: Arc<Mutex<StreamState>> = Arc::default();
        let shared = state.clone();
        tokio::spawn(async move {
            let accepted = Arc::new(AtomicUsize::new(0));
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(connection(
                    tcp,
                    shared.clone(),
                    script.clone(),
                    accepted.clone(),
                ));
            }
        });
        Self { url, state }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, StreamState> {
        self.state.lock().expect("lock")
    }

    /// Waits until `n` connections have subscribed.
    async fn wait_subscribed(&self, n: usize) {
        eventually(PATIENCE, &format!("{n} subscribed connections"), || async {
            let state = self.state();
            (state.openings.len() >= n && state.open > 0).then_some(())
        })
        .await;
    }

    fn command(&self, command: Command) {
        let state = self.state();
        let (_, sender) = state.current.as_ref().expect("a connection is open");
        sender.send(command).expect("the connection is alive");
    }

    fn send(&self, message: Value) {
        self.command(Command::Send(message.to_string()));
    }
}

// The handshake callback's error type is tungstenite's (an HTTP response).
#[allow(clippy::result_large_err)]
async fn connection(
    tcp: tokio::net::TcpStream,
    state: Arc<Mutex<StreamState>>,
    script: StreamScript,
    accepted: Arc<AtomicUsize>,
) {
    let refuse = {
        let mut state = state.lock().expect("lock");
        state.handshakes += 1;
        state.handshakes <= script.refuse_first
    };
    let recorder = state.clone();
    let callback = move |request: &Request, response: Response| {
        let auth = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        recorder
            .lock()
            .expect("lock")
            .authorizations
            .push(auth.clone());
        let refuse_with = |status: StatusCode| {
            let mut refusal = ErrorResponse::new(Some("refused".into()));
            *refusal.status_mut() = status;
            Err(refusal)
        };
        if refuse {
            refuse_with(StatusCode::SERVICE_UNAVAILABLE)
        } else if auth != STREAM_TOKEN {
            refuse_with(StatusCode::UNAUTHORIZED)
        } else {
            Ok(response)
        }
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
        return;
    };
    let mut opening = Vec::new();
    while opening.len() < script.opening_messages {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Frame::Text(text)))) => opening.push(text.to_string()),
            Ok(Some(Ok(_))) => continue,
            _ => return,
        }
    }
    let number = accepted.fetch_add(1, Ordering::SeqCst);
    let (tx, mut rx) = mpsc::unbounded_channel();
    {
        let mut state = state.lock().expect("lock");
        state.openings.push(opening);
        state.open += 1;
        state.max_open = state.max_open.max(state.open);
        state.current = Some((number, tx));
    }
    if script.silent.contains(&number) {
        // Hold the socket without reading it (no pongs) until told to drop it, or for long
        // enough that the client must have given up.
        tokio::select! {
            _ = rx.recv() => {}
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
    } else {
        loop {
            tokio::select! {
                command = rx.recv() => match command {
                    Some(Command::Send(text)) => {
                        if ws.send(Frame::text(text)).await.is_err() {
                            break;
                        }
                    }
                    // Dropped without a close frame: an abrupt loss.
                    Some(Command::Drop) | None => break,
                },
                frame = ws.next() => match frame {
                    Some(Ok(Frame::Ping(_))) => state.lock().expect("lock").pings += 1,
                    Some(Ok(Frame::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
            }
        }
    }
    let mut state = state.lock().expect("lock");
    state.open -= 1;
    if state.current.as_ref().is_some_and(|(n, _)| *n == number) {
        state.current = None;
    }
}

/// A websocket source `id` routed to the HTTP destination `dst` at `receiver`.
fn websocket_config(receiver: &str, id: &str, settings: WebsocketSource) -> Config {
    let mut config = config_to(receiver, schedule_ms(&[100, 500, 1000]));
    let mut source = SourceConfig::new(id, VerifierConfig::None);
    source.kind = SourceKind::Websocket(settings);
    config.sources = vec![source];
    config.routes[0].source = id.into();
    config
}

fn stream_settings(url: &str) -> WebsocketSource {
    let mut settings = WebsocketSource::new(url);
    settings.headers = BTreeMap::from([("Authorization".into(), STREAM_TOKEN.into())]);
    settings.subscribe = vec![json!({"type": "subscribe", "channels": ["trades"]})];
    settings.ping_interval = Duration::from_millis(300);
    settings.idle_timeout = Duration::from_secs(5);
    settings.reconnect_min = Duration::from_millis(100);
    settings.reconnect_max = Duration::from_secs(1);
    settings
}

async fn events_of(server: &TestServer, source: &str) -> Vec<switchboard_store::EventRecord> {
    let mut events = server
        .store()
        .list_events(&EventFilter {
            source: Some(source.into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("list events");
    events.reverse(); // oldest first
    // Listings leave bodies out: read each event whole.
    let mut whole = Vec::with_capacity(events.len());
    for event in events {
        let event = server
            .store()
            .get_event(&event.id)
            .await
            .expect("get event");
        whole.push(event.expect("the listed event exists"));
    }
    whole
}

async fn metrics_text(server: &TestServer) -> String {
    reqwest::get(format!("{}/metrics", server.base))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

/// The value of the metric line starting with `prefix` (`name{labels}`), 0 when absent.
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn trade(id: u64, side: &str) -> Value {
    json!({"type": "trade", "id": id, "side": side, "price": 100 + id})
}

#[tokio::test]
async fn websocket_messages_become_events_and_survive_a_dropped_connection() {
    let stream = FakeStream::start(StreamScript {
        refuse_first: 1,
        opening_messages: 1,
        ..Default::default()
    })
    .await;
    let receiver = Receiver::always(200).await;
    let mut settings = stream_settings(&stream.url);
    settings.filter = Some(r#".type == "trade""#.into());
    settings.event_type = Some(r#""trade." + .side"#.into());
    settings.dedup_key = Some(".id | tostring".into());
    let server = TestServer::start(websocket_config(&receiver.url, "trades", settings)).await;

    // The first handshake is refused (503); the source backs off and connects again, with its
    // credentials, and subscribes.
    stream.wait_subscribed(1).await;
    {
        let state = stream.state();
        assert!(state.handshakes >= 2, "refused once, then accepted");
        assert!(state.authorizations.iter().all(|a| a == STREAM_TOKEN));
        assert_eq!(
            state.openings[0],
            [r#"{"channels":["trades"],"type":"subscribe"}"#]
        );
    }
    stream.send(json!({"type": "heartbeat"}));
    stream.send(trade(1, "buy"));
    stream.send(json!({"type": "ack", "id": 99}));
    stream.command(Command::Send("not json".into())); // the filter fails on text: not stored
    stream.send(trade(2, "sell"));
    stream.send(trade(2, "sell")); // same key: stored once
    let got = receiver.wait_for(2, PATIENCE).await;
    let bodies: Vec<Value> = got
        .iter()
        .map(|r| serde_json::from_slice(&r.body).expect("json"))
        .collect();
    assert_eq!(bodies, [trade(1, "buy"), trade(2, "sell")]);

    // The server drops the connection without a close frame: the source reconnects,
    // subscribes again and continues; a replayed message is still stored once.
    stream.command(Command::Drop);
    stream.wait_subscribed(2).await;
    {
        let state = stream.state();
        assert_eq!(state.openings[1], state.openings[0], "subscribed again");
    }
    stream.send(trade(2, "sell"));
    stream.send(trade(3, "buy"));
    let got = receiver.wait_for(3, PATIENCE).await;
    let third: Value = serde_json::from_slice(&got[2].body).expect("json");
    assert_eq!(third, trade(3, "buy"));

    let events = events_of(&server, "trades").await;
    let summary: Vec<(Option<&str>, Option<&str>, Option<&str>)> = events
        .iter()
        .map(|e| {
            (
                e.event_type.as_deref(),
                e.dedup_key.as_deref(),
                e.content_type.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (Some("trade.buy"), Some("1"), Some("application/json")),
            (Some("trade.sell"), Some("2"), Some("application/json")),
            (Some("trade.buy"), Some("3"), Some("application/json")),
        ]
    );
    assert_eq!(receiver.requests().len(), 3, "nothing else was delivered");
    eventually(PATIENCE, "a ping from the source", || async {
        (stream.state().pings > 0).then_some(())
    })
    .await;

    let metrics = metrics_text(&server).await;
    assert_eq!(
        metric(&metrics, r#"switchboard_source_connected{source="trades"}"#),
        1.0
    );
    assert!(
        metric(
            &metrics,
            r#"switchboard_source_reconnects_total{source="trades"}"#
        ) >= 2.0
    );
    for (outcome, at_least) in [
        ("stored", 3.0),
        ("duplicate", 2.0),
        ("filtered", 2.0),
        ("failed", 1.0),
    ] {
        let line =
            format!(r#"switchboard_source_messages_total{{source="trades",outcome="{outcome}"}}"#);
        let alt =
            format!(r#"switchboard_source_messages_total{{outcome="{outcome}",source="trades"}}"#);
        let value = metric(&metrics, &line).max(metric(&metrics, &alt));
        assert!(value >= at_least, "{outcome}: {value} in\n{metrics}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_websocket_that_stops_answering_pings_is_replaced() {
    let stream = FakeStream::start(StreamScript {
        opening_messages: 2,
        silent: vec![0],
        ..Default::default()
    })
    .await;
    let receiver = Receiver::always(200).await;
    let mut settings = stream_settings(&stream.url);
    settings.ping_interval = Duration::from_millis(200);
    settings.idle_timeout = Duration::from_secs(1);
    settings.authorization_message = Some(json!({"action": "auth", "key": "in-band-secret"}));
    let server = TestServer::start(websocket_config(&receiver.url, "silent", settings)).await;

    stream.wait_subscribed(1).await;
    let first = Instant::now();
    assert_eq!(
        stream.state().openings[0],
        [
            r#"{"action":"auth","key":"in-band-secret"}"#,
            r#"{"channels":["trades"],"type":"subscribe"}"#
        ],
        "the authorization message comes first"
    );
    // The first connection never answers: after idle_timeout the source gives up on it and
    // connects again (authorizing and subscribing again).
    eventually(PATIENCE, "a second connection", || async {
        (stream.state().openings.len() >= 2).then_some(())
    })
    .await;
    assert!(
        first.elapsed() >= Duration::from_millis(900),
        "not before idle_timeout: {:?}",
        first.elapsed()
    );
    {
        let state = stream.state();
        assert_eq!(state.openings[1], state.openings[0], "subscribed again");
    }
    // The replacement works.
    eventually(PATIENCE, "the new connection to be current", || async {
        stream
            .state()
            .current
            .as_ref()
            .is_some_and(|(n, _)| *n == 1)
            .then_some(())
    })
    .await;
    stream.send(json!({"hello": "again"}));
    let got = receiver.wait_for(1, PATIENCE).await;
    assert_eq!(&got[0].body[..], br#"{"hello":"again"}"#);
    // The in-band secret is not shown by the API.
    let shown = server.api().get("/v1/sources/silent").await;
    shown.ok(200);
    assert!(!shown.text.contains("in-band-secret"), "{}", shown.text);
    assert!(!shown.text.contains("stream-t0ken"), "{}", shown.text);
    server.stop().await;
}

/// A local JSON API answering `GET /tickets` from a script of `(status, body)` per poll.
#[derive(Clone)]
struct FakeApi {
    url: String,
    polls: Arc<AtomicUsize>,
    authorizations: Arc<Mutex<Vec<String>>>,
}

impl FakeApi {
    async fn start(script: impl Fn(usize) -> (u16, String) + Send + Sync + 'static) -> Self {
        let polls = Arc::new(AtomicUsize::new(0));
        let authorizations: Arc<Mutex<Vec<String>>> = Arc::default();
        let (counter, seen, script) = (polls.clone(), authorizations.clone(), Arc::new(script));
        let app = axum::Router::new().route(
            "/tickets",
            axum::routing::get(move |headers: axum::http::HeaderMap| {
                let (counter, seen, script) = (counter.clone(), seen.clone(), script.clone());
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    seen.lock().expect("lock").push(auth);
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = script(n);
                    (
                        StatusCode::from_u16(status).expect("status"),
                        [("content-type", "application/json")],
                        body,
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/tickets", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url,
            polls,
            authorizations,
        }
    }

    fn polls(&self) -> usize {
        self.polls.load(Ordering::SeqCst)
    }

    async fn wait_polls(&self, n: usize) {
        eventually(Duration::from_secs(60), &format!("{n} polls"), || async {
            (self.polls() >= n).then_some(())
        })
        .await;
    }
}

fn ticket(id: usize) -> Value {
    json!({"id": id, "state": if id.is_multiple_of(2) { "closed" } else { "open" }, "title": format!("ticket {id}")})
}

/// Tickets 1..=n as the API lists them (newest first, as APIs do).
fn tickets(n: usize) -> String {
    let items: Vec<Value> = (1..=n).rev().map(ticket).collect();
    json!({"tickets": items, "total": n}).to_string()
}

#[tokio::test]
async fn a_schedule_stores_each_new_item_once_and_outlives_failed_polls() {
    // Polls 1, 3 and 5 fail (503, a body that is not JSON, 404); the list grows by one item
    // every other poll up to 5.
    let api = FakeApi::start(|n| match n {
        1 => (503, "busy".into()),
        3 => (200, "<html>not json</html>".into()),
        5 => (404, "gone".into()),
        n => (200, tickets((n / 2 + 1).min(5))),
    })
    .await;
    let receiver = Receiver::always(200).await;
    let mut config = config_to(&receiver.url, schedule_ms(&[100, 500]));
    let mut settings = ScheduleSource::new("*/1 * * * * *", &api.url);
    settings.headers = BTreeMap::from([("Authorization".into(), "Bearer api-s3cret".into())]);
    settings.items = Some(".tickets".into());
    settings.key = Some(".id".into());
    settings.event_type = Some(r#""ticket." + .state"#.into());
    settings.run_on_start = true;
    let mut source = SourceConfig::new("tickets", VerifierConfig::None);
    source.kind = SourceKind::Schedule(settings);
    config.sources = vec![source];
    config.routes[0].source = "tickets".into();
    let server = TestServer::start(config).await;

    api.wait_polls(11).await;
    let got = receiver.wait_for(5, PATIENCE).await;
    // A few more polls: nothing new.
    let polled = api.polls();
    api.wait_polls(polled + 2).await;
    let got_after = receiver.requests();
    assert_eq!(got_after.len(), 5, "each item delivered once: {got:?}");
    let mut delivered: Vec<u64> = got_after
        .iter()
        .map(|r| {
            let item: Value = serde_json::from_slice(&r.body).expect("json");
            item["id"].as_u64().expect("id")
        })
        .collect();
    delivered.sort_unstable();
    assert_eq!(delivered, [1, 2, 3, 4, 5]);
    let events = events_of(&server, "tickets").await;
    assert_eq!(events.len(), 5);
    for event in &events {
        let item: Value = serde_json::from_slice(&event.body).expect("json");
        let id = item["id"].as_u64().expect("id");
        assert_eq!(item, ticket(id as usize));
        assert_eq!(event.dedup_key.as_deref(), Some(id.to_string().as_str()));
        let state = if id.is_multiple_of(2) {
            "closed"
        } else {
            "open"
        };
        assert_eq!(
            event.event_type.as_deref(),
            Some(format!("ticket.{state}").as_str())
        );
        assert_eq!(event.content_type.as_deref(), Some("application/json"));
    }
    assert!(
        api.authorizations
            .lock()
            .expect("lock")
            .iter()
            .all(|a| a == "Bearer api-s3cret")
    );
    let metrics = metrics_text(&server).await;
    let polls = |outcome: &str| {
        metric(
            &metrics,
            &format!(r#"switchboard_source_polls_total{{source="tickets",outcome="{outcome}"}}"#),
        )
        .max(metric(
            &metrics,
            &format!(r#"switchboard_source_polls_total{{outcome="{outcome}",source="tickets"}}"#),
        ))
    };
    assert!(polls("http_error") >= 2.0, "{metrics}");
    assert!(polls("invalid_response") >= 1.0, "{metrics}");
    assert!(polls("ok") >= 8.0, "{metrics}");
    server.stop().await;
}

#[tokio::test]
async fn a_schedule_source_created_through_the_api_polls_until_deleted() {
    // The whole response is the event; its `version` is the key, so a poll stores only a new
    // version.
    let api = FakeApi::start(|n| {
        (
            200,
            json!({"version": (n / 2).min(2), "ok": true}).to_string(),
        )
    })
    .await;
    let receiver = Receiver::always(200).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[100]))).await;
    let client = server.api();
    let settings = |schedule: &str, key: &str| {
        json!({
            "schedule": schedule,
            "url": api.url,
            "headers": {"Authorization": "Bearer api-s3cret"},
            "key": key,
            "run_on_start": true,
        })
    };
    let refused = client
        .post(
            "/v1/sources",
            &json!({"id": "status", "kind": "schedule", "settings": settings("every minute", ".version")}),
        )
        .await;
    let problem = refused.problem(422, "validation_failed");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("is not a cron expression")),
        "{problem}"
    );
    let refused = client
        .post(
            "/v1/sources",
            &json!({"id": "status", "kind": "schedule", "settings": settings("*/1 * * * * *", ".version |")}),
        )
        .await;
    let problem = refused.problem(422, "validation_failed");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("key: jq error")),
        "{problem}"
    );
    assert_eq!(api.polls(), 0, "refused sources never run");

    let created = client
        .post(
            "/v1/sources",
            &json!({"id": "status", "kind": "schedule", "settings": settings("*/1 * * * * *", ".version")}),
        )
        .await;
    let body = created.ok(201);
    assert_eq!(body["kind"], "schedule");
    assert_eq!(body["settings"]["schedule"], "*/1 * * * * *");
    assert!(!created.text.contains("api-s3cret"), "{}", created.text);
    client
        .post(
            "/v1/routes",
            &json!({"source": "status", "destination": "dst"}),
        )
        .await
        .ok(201);

    api.wait_polls(7).await;
    let listed = eventually(PATIENCE, "three versions stored", || async {
        let page = client.get("/v1/events?source=status").await;
        let items = page.ok(200)["items"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (items.len() >= 3).then_some(items)
    })
    .await;
    let mut keys: Vec<&str> = listed
        .iter()
        .map(|e| e["dedup_key"].as_str().expect("key"))
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["0", "1", "2"]);
    receiver.wait_for(3, PATIENCE).await;

    // Disabled, the source stops polling; enabled again, it polls with its settings intact
    // (the header shown redacted was kept by the merge patch).
    let paused = client
        .patch("/v1/sources/status", &json!({"enabled": false}))
        .await;
    assert_eq!(paused.ok(200)["enabled"], false, "{}", paused.text);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let while_paused = api.polls();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(api.polls(), while_paused, "a disabled source does not poll");
    let resumed = client
        .patch("/v1/sources/status", &json!({"enabled": true}))
        .await;
    assert_eq!(resumed.ok(200)["enabled"], true);
    api.wait_polls(while_paused + 2).await;
    let seen = api.authorizations.lock().expect("lock").clone();
    assert_eq!(
        seen.last().map(String::as_str),
        Some("Bearer api-s3cret"),
        "the credential survives the patch"
    );

    client.delete("/v1/routes/status-dst").await.ok(204);
    let deleted = client.delete("/v1/sources/status").await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    // The supervisor stops the task within a tick; then the API hears nothing more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_delete = api.polls();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(api.polls(), after_delete, "polling stopped with the source");
    assert_eq!(receiver.requests().len(), 3);
    server.stop().await;
}

#[tokio::test]
async fn fetching_sources_keep_to_the_ssrf_policy() {
    let stream = FakeStream::start(StreamScript {
        opening_messages: 1,
        ..Default::default()
    })
    .await;
    let api = FakeApi::start(|n| (200, tickets(n + 1))).await;
    let mut config = config_to("http://127.0.0.1:9/unused", schedule_ms(&[100]));
    config.security.allow_private_networks = false;
    config.routes.clear();
    config.sources.clear();
    // Each kind with an IP literal (checked before connecting) and a name that resolves to
    // loopback (checked on the resolved addresses).
    let by_name = |url: &str| url.replace("127.0.0.1", "localhost");
    for (id, url) in [
        ("ws-ip", stream.url.clone()),
        ("ws-name", by_name(&stream.url)),
    ] {
        let mut source = SourceConfig::new(id, VerifierConfig::None);
        source.kind = SourceKind::Websocket(stream_settings(&url));
        config.sources.push(source);
    }
    for (id, url) in [
        ("poll-ip", api.url.clone()),
        ("poll-name", by_name(&api.url)),
    ] {
        let mut poll = ScheduleSource::new("*/1 * * * * *", url);
        poll.run_on_start = true;
        let mut source = SourceConfig::new(id, VerifierConfig::None);
        source.kind = SourceKind::Schedule(poll);
        config.sources.push(source);
    }
    let server = TestServer::start(config).await;

    // Every source tries and is refused before connecting: the websockets reconnect, the
    // schedules count transport errors.
    let metrics = eventually(PATIENCE, "refused attempts of every source", || async {
        let metrics = metrics_text(&server).await;
        let reconnects = |id: &str| {
            metric(
                &metrics,
                &format!(r#"switchboard_source_reconnects_total{{source="{id}"}}"#),
            )
        };
        let refused = |id: &str| {
            metric(
                &metrics,
                &format!(
                    r#"switchboard_source_polls_total{{source="{id}",outcome="transport_error"}}"#
                ),
            )
            .max(metric(
                &metrics,
                &format!(
                    r#"switchboard_source_polls_total{{outcome="transport_error",source="{id}"}}"#
                ),
            ))
        };
        let all = reconnects("ws-ip") >= 2.0
            && reconnects("ws-name") >= 2.0
            && refused("poll-ip") >= 2.0
            && refused("poll-name") >= 2.0;
        all.then_some(metrics)
    })
    .await;
    assert_eq!(
        stream.state().handshakes,
        0,
        "no connection reached the stream"
    );
    assert_eq!(api.polls(), 0, "no request reached the API");
    assert!(
        !metrics.contains("switchboard_source_polls_total{source=\"poll-ip\",outcome=\"ok\"}"),
        "{metrics}"
    );
    server.stop().await;
}

/// The PostgreSQL server of the multi-node test, or `None` after reporting it skipped.
fn pg_base(test: &str) -> Option<String> {
    match std::env::var("SWITCHBOARD_TEST_PG") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: set SWITCHBOARD_TEST_PG=postgres://… to run the multi-node tests"
            );
            None
        }
    }
}

#[tokio::test]
async fn a_websocket_source_runs_on_one_node_and_moves_when_it_dies() {
    let Some(base) = pg_base("a_websocket_source_runs_on_one_node_and_moves_when_it_dies") else {
        return;
    };
    let schema = Schema::create(&base, "sb_streams");
    let key = master_key();
    let stream = FakeStream::start(StreamScript {
        opening_messages: 1,
        ..Default::default()
    })
    .await;
    let receiver = Receiver::always(200).await;
    let toml = format!(
        r#"
[server]
database_url = "{database}"
database_max_connections = 4

[security]
allow_private_networks = true

[delivery]
poll_interval = "100ms"

[[sources]]
id = "ticker"
kind = "websocket"
url = "{stream}"
headers = {{ Authorization = "{STREAM_TOKEN}" }}
subscribe = ['{{"type":"subscribe"}}']
ping_interval = "1s"
idle_timeout = "10s"
reconnect_min = "100ms"
reconnect_max = "1s"
dedup_key = ".n | tostring"

[[destinations]]
id = "dst"
kind = "http"
url = "{receiver}"
timeout = "2s"
retry = {{ schedule = ["100ms", "500ms", "1s"] }}

[[routes]]
source = "ticker"
destination = "dst"
"#,
        database = schema.url(),
        stream = stream.url,
        receiver = receiver.url,
    );
    let spawn = |toml: String, key: String| {
        tokio::task::spawn_blocking(move || {
            let dir = tempfile::tempdir().expect("temp dir");
            let process = Process::spawn_with(
                dir.path(),
                &toml,
                "127.0.0.1:0",
                &[("SWITCHBOARD_MASTER_KEY", &key)],
            );
            (dir, process)
        })
    };
    // Node A starts first and takes the source's lease; node B starts once A is connected.
    let (_dir_a, node_a) = spawn(toml.clone(), key.clone()).await.expect("node A");
    stream.wait_subscribed(1).await;
    let (_dir_b, node_b) = spawn(toml.clone(), key.clone()).await.expect("node B");
    // B's supervisor looks every second; give it several looks.
    tokio::time::sleep(Duration::from_secs(4)).await;
    {
        let state = stream.state();
        assert_eq!(state.handshakes, 1, "only the lease holder connects");
        assert_eq!(state.max_open, 1);
    }
    stream.send(json!({"n": 1}));
    receiver.wait_for(1, PATIENCE).await;

    // A dies without a goodbye: its lease runs out (10 s) and B connects.
    tokio::task::spawn_blocking(move || node_a.kill_hard())
        .await
        .expect("kill node A");
    eventually(Duration::from_secs(60), "node B to take over", || async {
        let state = stream.state();
        (state.openings.len() >= 2 && state.open == 1).then_some(())
    })
    .await;
    assert_eq!(stream.state().max_open, 1, "never two connections at once");
    stream.send(json!({"n": 2}));
    let got = receiver.wait_for(2, PATIENCE).await;
    assert_eq!(&got[1].body[..], br#"{"n":2}"#);
    drop(node_b);
}

/// A burst of 3,000 websocket messages is stored completely (batched, none lost), and the
/// rate is printed: the figure in `docs/benchmarks.md` comes from
/// `cargo test -p switchboard --test it websocket_burst -- --nocapture` (`BENCH_JQ=1` adds a
/// filter and a dedup key).
#[tokio::test]
async fn websocket_burst_is_stored_completely() {
    let stream = FakeStream::start(StreamScript {
        opening_messages: 1,
        ..Default::default()
    })
    .await;
    let receiver = Receiver::always(200).await;
    let mut settings = stream_settings(&stream.url);
    if std::env::var("BENCH_JQ").is_ok() {
        settings.filter = Some(r#".type == "trade""#.into());
        settings.dedup_key = Some(".id | tostring".into());
    }
    let mut config = websocket_config(&receiver.url, "bench", settings);
    config.routes.clear();
    let server = TestServer::start(config).await;
    stream.wait_subscribed(1).await;
    let n = 3000u64;
    let start = Instant::now();
    for i in 0..n {
        stream.send(trade(i, "buy"));
    }
    eventually(Duration::from_secs(120), "all stored", || async {
        let events = server
            .store()
            .list_events(&EventFilter {
                source: Some("bench".into()),
                limit: 5000,
                ..Default::default()
            })
            .await
            .expect("list");
        (events.len() as u64 >= n).then_some(())
    })
    .await;
    let took = start.elapsed();
    let stored = server
        .store()
        .list_events(&EventFilter {
            source: Some("bench".into()),
            limit: 5000,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(stored.len() as u64, n, "each message stored once");
    eprintln!(
        "websocket source: {n} messages stored in {took:?}: {:.0}/s",
        n as f64 / took.as_secs_f64()
    );
    server.stop().await;
}

/// A schedule can poll through a connection: the path goes below the provider's base URL and
/// the connection's credentials are injected (none in the source's own settings).
#[tokio::test]
async fn a_schedule_polls_through_a_connection() {
    let api = FakeApi::start(|_| (200, tickets(3))).await;
    let base = api
        .url
        .strip_suffix("/tickets")
        .expect("the fake API's list")
        .to_owned();
    let providers = tempfile::tempdir().expect("providers dir");
    std::fs::write(
        providers.path().join("tickets.toml"),
        format!(
            "id = \"tickets-api\"\nname = \"Tickets\"\nbase_url = \"{base}\"\nauth_modes = [\"bearer\"]\n"
        ),
    )
    .expect("provider file");
    let receiver = Receiver::always(200).await;
    let mut config = config_to(&receiver.url, schedule_ms(&[100, 500]));
    config.connections.providers_dir = Some(providers.path().to_owned());
    let mut settings = ScheduleSource::new("*/1 * * * * *", "tickets?state=open");
    settings.connection = Some("tix".into());
    settings.items = Some(".tickets".into());
    settings.key = Some(".id".into());
    let mut source = SourceConfig::new("tickets", VerifierConfig::None);
    source.kind = SourceKind::Schedule(settings);
    config.sources = vec![source];
    config.routes[0].source = "tickets".into();
    let server = TestServer::start(config).await;
    // Polls before the connection exists store nothing; then they go through it.
    server
        .api()
        .post(
            "/v1/connections",
            &json!({"id": "tix", "provider": "tickets-api",
                    "credentials": {"token": "conn-token-1"}}),
        )
        .await
        .ok(201);
    let got = receiver.wait_for(3, PATIENCE).await;
    assert_eq!(got.len(), 3);
    let authorizations = api.authorizations.lock().expect("lock").clone();
    assert!(
        !authorizations.is_empty() && authorizations.iter().all(|a| a == "Bearer conn-token-1"),
        "{authorizations:?}"
    );
    assert_eq!(events_of(&server, "tickets").await.len(), 3);
    server.stop().await;
}
