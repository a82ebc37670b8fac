//! NATS JetStream.

use std::time::Duration;

use async_nats::jetstream;
use serde_json::{Value, json};
use switchboard_core::DeliveryStatus;

use super::*;
use crate::support::{Receiver, TestServer, config_to, eventually};

const VAR: &str = "SWITCHBOARD_TEST_NATS";

async fn connect(url: &str) -> jetstream::Context {
    let client = async_nats::connect(url).await.expect("connect to NATS");
    jetstream::new(client)
}

/// A stream `name` capturing `{subject}.>`.
async fn create_stream(
    js: &jetstream::Context,
    name: &str,
    subject: &str,
) -> jetstream::stream::Stream {
    js.create_stream(jetstream::stream::Config {
        name: name.into(),
        subjects: vec![format!("{subject}.>")],
        ..Default::default()
    })
    .await
    .expect("create stream")
}

/// Ingested events are published with a templated subject; the delivery succeeds on the
/// `PubAck`, whose stream and sequence are recorded; the message carries the body, the
/// delivery id as `Nats-Msg-Id` and the configured headers.
#[tokio::test]
async fn nats_destination_publishes_with_pub_ack() {
    let Some(url) = broker_url(VAR, "nats_destination_publishes_with_pub_ack") else {
        return;
    };
    let js = connect(&url).await;
    let name = unique("SBOUT");
    let subject = format!("sbout.{name}");
    let stream = create_stream(&js, &name, &subject).await;

    let mut config = config_to("http://127.0.0.1:9/unused", quick_retries());
    to_queue(
        &mut config,
        queue_destination(json!({
            "broker": "nats", "url": url,
            "subject": format!("{subject}.{{{{ .body.kind }}}}"),
            "headers": {"event-kind": "{{ .body.kind }}"},
        })),
    );
    let server = TestServer::start(config).await;
    let body = r#"{"kind":"created","n":1}"#;
    let event = server.ingest_ok("src", body).await;
    let delivery = server
        .wait_delivery(&event, "published", |d| {
            d.status == DeliveryStatus::Succeeded
        })
        .await;

    let message = stream.get_raw_message(1).await.expect("message 1");
    assert_eq!(message.subject.as_str(), format!("{subject}.created"));
    assert_eq!(&message.payload[..], body.as_bytes());
    let get = |name: &str| {
        message
            .headers
            .get(name)
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(get("Nats-Msg-Id"), delivery.id);
    assert_eq!(get("Content-Type"), "application/json");
    assert_eq!(get("event-kind"), "created");
    let attempts = server
        .store()
        .list_attempts(None, Some(&delivery.id))
        .await
        .expect("attempts");
    let ack: Value = serde_json::from_slice(&attempts[0].response_body).expect("ack json");
    assert_eq!(ack["stream"], json!(name));
    assert_eq!(ack["seq"], json!(1));
    assert!(attempts[0].request_url.starts_with("nats nats://"));
    server.stop().await;
    js.delete_stream(&name).await.expect("delete stream");
}

/// A subject no stream captures gets "no responders": the attempt fails with a clear,
/// retryable error, and the delivery succeeds once a stream exists.
#[tokio::test]
async fn nats_destination_without_a_stream_retries_until_one_exists() {
    let Some(url) = broker_url(
        VAR,
        "nats_destination_without_a_stream_retries_until_one_exists",
    ) else {
        return;
    };
    let js = connect(&url).await;
    let name = unique("SBLATE");
    let subject = format!("sblate.{name}");
    let mut config = config_to("http://127.0.0.1:9/unused", quick_retries());
    let destination = queue_destination(json!({
        "broker": "nats", "url": url, "subject": format!("{subject}.x"),
    }));
    to_queue(&mut config, destination);
    let server = TestServer::start(config).await;
    let event = server.ingest_ok("src", r#"{"n":1}"#).await;
    let failing = server
        .wait_delivery(&event, "a failed attempt", |d| d.attempts >= 2)
        .await;
    assert_eq!(
        failing.status,
        DeliveryStatus::Pending,
        "retried, not failed"
    );
    let error = failing.last_error.unwrap_or_default();
    assert!(
        error.contains(&format!(
            "no JetStream stream captures subject `{subject}.x`"
        )),
        "{error}"
    );
    let stream = create_stream(&js, &name, &subject).await;
    server
        .wait_delivery(&event, "published once the stream exists", |d| {
            d.status == DeliveryStatus::Succeeded
        })
        .await;
    let mut stream = stream;
    assert_eq!(stream.info().await.expect("info").state.messages, 1);
    server.stop().await;
    js.delete_stream(&name).await.expect("delete stream");
}

/// Messages on the stream become events (type from the subject, headers kept, dedup key from
/// the stream sequence) delivered to the route's receiver; replaying the stream (the durable
/// consumer deleted and created again) stores nothing twice.
#[tokio::test]
async fn nats_source_stores_and_routes_messages_once() {
    let Some(url) = broker_url(VAR, "nats_source_stores_and_routes_messages_once") else {
        return;
    };
    let js = connect(&url).await;
    let name = unique("SBIN");
    let subject = format!("sbin.{name}");
    let stream = create_stream(&js, &name, &subject).await;
    let consumer = unique("sb");
    let receiver = Receiver::always(200).await;
    let mut config = config_to(&receiver.url, quick_retries());
    from_queue(
        &mut config,
        json!({
            "broker": "nats", "url": url, "stream": name, "subject": format!("{subject}.>"),
            "consumer": consumer, "type_from_subject": true, "ack_wait": "2s",
        }),
    );
    for n in 0..3u64 {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("x-trace", format!("t{n}").as_str());
        headers.insert("Authorization", "Bearer secret");
        js.publish_with_headers(
            format!("{subject}.order.created"),
            headers,
            format!(r#"{{"n":{n}}}"#).into(),
        )
        .await
        .expect("publish")
        .await
        .expect("pub ack");
    }
    let server = TestServer::start(config).await;
    let got = receiver.wait_for(3, Duration::from_secs(20)).await;
    let mut markers: Vec<u64> = got.iter().filter_map(|r| marker(&r.body)).collect();
    markers.sort_unstable();
    assert_eq!(markers, vec![0, 1, 2]);
    let events = events_of(server.store(), "qin").await;
    assert_eq!(events.len(), 3);
    let first = events
        .iter()
        .find(|e| header(e, "x-trace") == Some("t0"))
        .expect("t0");
    assert_eq!(
        first.event_type.as_deref(),
        Some(&*format!("{subject}.order.created"))
    );
    assert_eq!(header(first, "nats-stream"), Some(name.as_str()));
    assert_eq!(header(first, "authorization"), Some("[redacted]"));
    let key = first.dedup_key.as_deref().unwrap_or_default();
    assert!(
        key.starts_with(&format!("{name}:")) && key.ends_with(":1"),
        "{key}"
    );

    // Replay everything: the redelivered messages are recognised.
    stream
        .delete_consumer(&consumer)
        .await
        .expect("delete consumer");
    eventually(
        Duration::from_secs(30),
        "the stream replayed to a new consumer",
        || {
            let stream = stream.clone();
            let consumer = consumer.clone();
            async move {
                let mut c: jetstream::consumer::PullConsumer =
                    stream.get_consumer(&consumer).await.ok()?;
                let info = c.info().await.ok()?;
                (info.ack_floor.stream_sequence == 3 && info.num_ack_pending == 0).then_some(())
            }
        },
    )
    .await;
    assert_eq!(
        events_of(server.store(), "qin").await.len(),
        3,
        "nothing stored twice"
    );
    assert_eq!(receiver.requests().len(), 3, "nothing delivered twice");
    server.stop().await;
    js.delete_stream(&name).await.expect("delete stream");
}

/// `kill -9` while consuming: every message is stored exactly once after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_source_survives_kill_9() {
    let Some(url) = broker_url(VAR, "nats_source_survives_kill_9") else {
        return;
    };
    let js = connect(&url).await;
    let name = unique("SBCRASH");
    let subject = format!("sbcrash.{name}");
    create_stream(&js, &name, &subject).await;
    let total = 1500u64;
    let mut acks = Vec::new();
    for n in 0..total {
        acks.push(
            js.publish(format!("{subject}.e"), format!(r#"{{"n":{n}}}"#).into())
                .await
                .expect("publish"),
        );
    }
    for ack in acks {
        ack.await.expect("pub ack");
    }
    let settings = |concurrency: usize| {
        format!(
            "broker = \"nats\"\nurl = \"{url}\"\nstream = \"{name}\"\nconsumer = \"sb\"\n\
             ack_wait = \"2s\"\nconcurrency = {concurrency}\n"
        )
    };
    crash_and_restart(total, &settings(8), &settings(64)).await;
    js.delete_stream(&name).await.expect("delete stream");
}

/// Connections cut under both the source and the destination: the source reconnects and
/// consumes on, the destination's next attempts reconnect and publish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_survives_connection_loss() {
    let Some(url) = broker_url(VAR, "nats_survives_connection_loss") else {
        return;
    };
    let js = connect(&url).await;
    let (source_stream, sink_stream) = (unique("SBRCIN"), unique("SBRCOUT"));
    let (source_subject, sink_subject) = (
        format!("sbrcin.{source_stream}"),
        format!("sbrcout.{sink_stream}"),
    );
    create_stream(&js, &source_stream, &source_subject).await;
    let sink = create_stream(&js, &sink_stream, &sink_subject).await;
    let toml = both_ways_toml(
        "RECEIVER_URL",
        &format!(
            "broker = \"nats\"\nurl = \"{url}\"\nstream = \"{source_stream}\"\nack_wait = \"2s\"\n"
        ),
        &format!("broker = \"nats\"\nurl = \"{url}\"\nsubject = \"{sink_subject}.e\"\n"),
    );
    let publish = |n: u64| {
        let (js, subject) = (js.clone(), format!("{source_subject}.e"));
        async move {
            js.publish(subject, format!(r#"{{"n":{n}}}"#).into())
                .await
                .expect("publish")
                .await
                .expect("pub ack");
        }
    };
    let published = |n: u64| {
        let mut sink = sink.clone();
        async move {
            let Ok(info) = sink.info().await else {
                return false;
            };
            let last = info.state.last_sequence;
            for seq in 1..=last {
                if let Ok(message) = sink.get_raw_message(seq).await
                    && marker(&message.payload) == Some(n)
                {
                    return true;
                }
            }
            false
        }
    };
    survive_connection_loss(&toml, 4222, publish, published).await;
    js.delete_stream(&source_stream).await.expect("delete");
    js.delete_stream(&sink_stream).await.expect("delete");
}
