//! Observability end to end, on the real binary: the correlation id from the ingest log line to
//! the receiver's headers, and the spans a local OTLP receiver (HTTP/protobuf and gRPC) gets.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message as _;

use crate::support::process::{Process, config_toml};
use crate::support::*;

/// The JSON log lines of a process.
fn json_lines(logs: &Mutex<Vec<String>>) -> Vec<serde_json::Value> {
    logs.lock()
        .expect("logs")
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

fn hex_of_uuid(id: &str) -> String {
    id.replace('-', "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correlation_id_runs_from_the_ingest_log_line_to_the_receivers_headers() {
    let receiver = Receiver::always(200).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (process, logs) = Process::spawn_logged(
        dir.path(),
        &config_toml(&receiver.url, ""),
        &[
            ("SWITCHBOARD_LOG", "info,switchboard_server::delivery=debug"),
            ("SWITCHBOARD_LOG_FORMAT", "json"),
        ],
    );
    let client = reqwest::Client::new();

    // 1. The caller's X-Request-Id is kept, echoed, logged and sent downstream.
    let response = client
        .post(format!("{}/in/src", process.base))
        .header("x-request-id", "req-obs-1")
        .body(r#"{"n":1}"#)
        .send()
        .await
        .expect("ingest");
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["x-request-id"], "req-obs-1");
    let event: serde_json::Value = response.json().await.expect("json");
    let event_id = event["id"].as_str().expect("id").to_owned();
    let received = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(received[0].header("x-request-id"), "req-obs-1");
    let traceparent = received[0].header("traceparent");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "traceparent {traceparent:?}");
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1], hex_of_uuid(&event_id), "trace id = the event's");
    assert_eq!(parts[2].len(), 16);
    assert_eq!(parts[3], "01");

    let ingest_line = eventually(Duration::from_secs(10), "ingest log line", || async {
        json_lines(&logs).into_iter().find(|line| {
            line["fields"]["message"] == "event stored" && line["fields"]["event"] == event_id
        })
    })
    .await;
    assert_eq!(ingest_line["fields"]["request_id"], "req-obs-1");
    assert_eq!(ingest_line["fields"]["trace_id"], hex_of_uuid(&event_id));
    assert_eq!(ingest_line["span"]["name"], "ingest");
    // The attempt's log line carries the same id through its span.
    let attempt_line = eventually(Duration::from_secs(10), "attempt log line", || async {
        json_lines(&logs).into_iter().find(|line| {
            line["fields"]["message"] == "delivered" && line["fields"]["event"] == event_id
        })
    })
    .await;
    assert_eq!(attempt_line["span"]["name"], "attempt");
    assert_eq!(attempt_line["span"]["request_id"], "req-obs-1");
    // The event as the API shows it names both ids.
    let api = ApiClient::new(&process.base, Some(crate::support::process::ADMIN_TOKEN));
    let stored = api.get(&format!("/v1/events/{event_id}")).await;
    let stored = stored.ok(200);
    assert_eq!(stored["request_id"], "req-obs-1");
    assert_eq!(stored["trace_id"], hex_of_uuid(&event_id));
    let attempts = api.get(&format!("/v1/attempts?event_id={event_id}")).await;
    let attempts = attempts.ok(200);
    assert_eq!(attempts[0]["request_id"], "req-obs-1");
    assert_eq!(attempts[0]["trace_id"], hex_of_uuid(&event_id));

    // 2. Without one, the event id is the request id.
    let response = client
        .post(format!("{}/in/src", process.base))
        .body(r#"{"n":2}"#)
        .send()
        .await
        .expect("ingest");
    assert_eq!(response.status(), 202);
    let echoed = response.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let event: serde_json::Value = response.json().await.expect("json");
    assert_eq!(echoed, event["id"].as_str().expect("id"));
    let received = receiver.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(received[1].header("x-request-id"), echoed);

    // 3. An inbound traceparent: the delivery continues the caller's trace; an oversized
    // X-Request-Id is ignored in favour of the trace id.
    let response = client
        .post(format!("{}/in/src", process.base))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .header("x-request-id", "x".repeat(200))
        .body(r#"{"n":3}"#)
        .send()
        .await
        .expect("ingest");
    assert_eq!(response.status(), 202);
    assert_eq!(
        response.headers()["x-request-id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    let received = receiver.wait_for(3, Duration::from_secs(20)).await;
    assert_eq!(
        received[2].header("x-request-id"),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert!(
        received[2]
            .header("traceparent")
            .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{}",
        received[2].header("traceparent")
    );
    drop(process);
}

/// A span as the collector received it.
#[derive(Debug, Clone)]
struct ReceivedSpan {
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    service: String,
}

type Spans = Arc<Mutex<Vec<ReceivedSpan>>>;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn record(spans: &Spans, request: ExportTraceServiceRequest) {
    let mut out = spans.lock().expect("spans");
    for resource in request.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref())
            .map(|v| format!("{:?}", v.value))
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                out.push(ReceivedSpan {
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent: hex(&span.parent_span_id),
                    service: service.clone(),
                });
            }
        }
    }
}

/// An OTLP/HTTP collector: `POST /v1/traces` with a protobuf `ExportTraceServiceRequest`.
async fn http_collector() -> (String, Spans) {
    let spans: Spans = Arc::default();
    let app =
        axum::Router::new()
            .route(
                "/v1/traces",
                axum::routing::post(
                    |axum::extract::State(spans): axum::extract::State<Spans>,
                     body: bytes::Bytes| async move {
                        match ExportTraceServiceRequest::decode(body) {
                            Ok(request) => {
                                record(&spans, request);
                                (
                                    axum::http::StatusCode::OK,
                                    [("content-type", "application/x-protobuf")],
                                    ExportTraceServiceResponse::default().encode_to_vec(),
                                )
                            }
                            Err(_) => (
                                axum::http::StatusCode::BAD_REQUEST,
                                [("content-type", "text/plain")],
                                b"not an ExportTraceServiceRequest".to_vec(),
                            ),
                        }
                    },
                ),
            )
            .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), spans)
}

/// An OTLP/gRPC collector.
struct GrpcCollector(Spans);

#[tonic::async_trait]
impl TraceService for GrpcCollector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        record(&self.0, request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn grpc_collector() -> (String, Spans) {
    let spans: Spans = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let service = TraceServiceServer::new(GrpcCollector(spans.clone()));
    let incoming = tokio_stream_of(listener);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
    });
    (format!("http://{addr}"), spans)
}

/// The accepted connections of `listener` as the stream tonic serves.
fn tokio_stream_of(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    })
}

/// Ingests one event through a process exporting to `endpoint` and checks its spans.
async fn spans_of_one_event(endpoint: &str, protocol: &str, spans: &Spans) {
    let receiver = Receiver::always(200).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let extra = format!(
        "\n[tracing]\nendpoint = \"{endpoint}\"\nprotocol = \"{protocol}\"\nservice_name = \"sb-test\"\n"
    );
    // `[tracing]` must precede the `[[routes]]` array in the file: put it first.
    let toml = format!("{extra}\n{}", config_toml(&receiver.url, ""));
    let (process, _logs) = Process::spawn_logged(
        dir.path(),
        &toml,
        &[
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("SWITCHBOARD_LOG", "warn"),
        ],
    );
    let response = reqwest::Client::new()
        .post(format!("{}/in/src", process.base))
        .body(r#"{"n":1}"#)
        .send()
        .await
        .expect("ingest");
    assert_eq!(response.status(), 202);
    let event: serde_json::Value = response.json().await.expect("json");
    let event_id = event["id"].as_str().expect("id").to_owned();
    let trace_id = hex_of_uuid(&event_id);
    let received = receiver.wait_for(1, Duration::from_secs(20)).await;

    let names = ["ingest", "commit", "attempt", "route"];
    let got = eventually(Duration::from_secs(20), "the event's spans", || async {
        let all: Vec<ReceivedSpan> = spans
            .lock()
            .expect("spans")
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect();
        names
            .iter()
            .all(|n| all.iter().any(|s| s.name == *n))
            .then_some(all)
    })
    .await;
    let span = |name: &str| {
        got.iter()
            .find(|s| s.name == name)
            .cloned()
            .expect("span present")
    };
    let (ingest, commit, attempt, route) = (
        span("ingest"),
        span("commit"),
        span("attempt"),
        span("route"),
    );
    assert_eq!(ingest.parent, "", "ingest is the root: {ingest:?}");
    assert_eq!(
        ingest.span_id,
        &trace_id[16..],
        "ingest span id derives from the event id"
    );
    assert_eq!(commit.parent, ingest.span_id);
    assert_eq!(attempt.parent, ingest.span_id);
    assert_eq!(route.parent, attempt.span_id);
    assert!(ingest.service.contains("sb-test"), "{}", ingest.service);
    // The receiver saw the attempt span as the parent of its request.
    assert_eq!(
        received[0].header("traceparent"),
        format!("00-{trace_id}-{}-01", attempt.span_id)
    );
    drop(process);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_http_collector_with_the_events_trace_id() {
    let (endpoint, spans) = http_collector().await;
    spans_of_one_event(&endpoint, "http/protobuf", &spans).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_grpc_collector() {
    let (endpoint, spans) = grpc_collector().await;
    spans_of_one_event(&endpoint, "grpc", &spans).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_document_shows_sources_destinations_and_workers() {
    let receiver = Receiver::always(500).await;
    let mut config = config_to(&receiver.url, schedule_ms(&[60_000]));
    config.server.max_body_bytes = 64;
    let server = TestServer::start(config).await;
    let api = server.api();

    assert_eq!(api.anonymous().get("/v1/health").await.status, 401);
    let fresh = api.get("/v1/health").await;
    let fresh = fresh.ok(200);
    assert_eq!(fresh["sources"][0]["id"], "src");
    assert_eq!(
        fresh["sources"][0]["last_event_at"],
        serde_json::Value::Null
    );
    assert_eq!(fresh["destinations"][0]["id"], "dst");
    assert_eq!(fresh["destinations"][0]["circuit"], "closed");
    assert_eq!(fresh["syncs"], serde_json::json!([]));
    assert_eq!(fresh["connections"], serde_json::json!([]));

    let event_id = server.ingest_ok("src", r#"{"n":1}"#).await;
    let too_large = server.ingest("src", "x".repeat(100)).await;
    assert_eq!(too_large.status(), 413);
    receiver.wait_for(1, Duration::from_secs(20)).await;

    let health = eventually(Duration::from_secs(20), "a failing destination", || async {
        let doc = api.get("/v1/health").await.ok(200).clone();
        (doc["destinations"][0]["consecutive_failures"] == 1
            && doc["workers"]["nodes"]
                .as_array()
                .is_some_and(|n| !n.is_empty()))
        .then_some(doc)
    })
    .await;
    assert_eq!(health["status"], "degraded");
    let source = &health["sources"][0];
    assert!(source["last_event_at"].is_string(), "{source}");
    assert_eq!(source["accepted"], 1);
    assert_eq!(source["rejected"], 1);
    assert_eq!(source["reject_rate"], 0.5);
    let destination = &health["destinations"][0];
    assert_eq!(destination["last_error"], "HTTP 500");
    assert_eq!(destination["pending"], 1, "the retry waits: {destination}");
    assert_eq!(destination["in_flight"], 0);
    assert!(destination["failing_since"].is_string());
    let deliveries = server.deliveries_of(&event_id).await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(health["workers"]["nodes"].as_array().map(Vec::len), Some(1));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_reach_a_statsd_agent_over_udp() {
    let agent = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind udp");
    let port = agent.local_addr().expect("addr").port();
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = received.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok(n) = agent.recv(&mut buf).await {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            sink.lock()
                .expect("lines")
                .extend(text.lines().map(str::to_owned));
        }
    });
    let receiver = Receiver::always(200).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let toml = format!(
        "[metrics]\nstatsd = \"127.0.0.1:{port}\"\nstatsd_prefix = \"sb.\"\nstatsd_interval = \"100ms\"\n{}",
        config_toml(&receiver.url, "")
    );
    let (process, _logs) = Process::spawn_logged(dir.path(), &toml, &[]);
    let response = reqwest::Client::new()
        .post(format!("{}/in/src", process.base))
        .body(r#"{"n":1}"#)
        .send()
        .await
        .expect("ingest");
    assert_eq!(response.status(), 202);
    receiver.wait_for(1, Duration::from_secs(20)).await;
    let lines = eventually(Duration::from_secs(20), "statsd lines", || async {
        let lines = received.lock().expect("lines").clone();
        let has = |prefix: &str| lines.iter().any(|l| l.starts_with(prefix));
        (has("sb.switchboard_events_received_total:1|c|#source:src")
            && has("sb.switchboard_attempts_total:1|c|#")
            && has("sb.switchboard_attempt_duration_seconds:"))
        .then_some(lines)
    })
    .await;
    let attempts = lines
        .iter()
        .find(|l| l.starts_with("sb.switchboard_attempts_total:"))
        .expect("attempts line");
    assert!(
        attempts.contains("destination:dst") && attempts.contains("outcome:delivered"),
        "{attempts}"
    );
    drop(process);
}
