//! Redis Streams.

use std::collections::HashMap;
use std::time::Duration;

use ::redis::AsyncCommands;
use ::redis::aio::MultiplexedConnection;
use serde_json::{Value, json};
use switchboard_core::DeliveryStatus;

use super::*;
use crate::support::{Receiver, TestServer, config_to, eventually};

const VAR: &str = "SWITCHBOARD_TEST_REDIS";

async fn connect(url: &str) -> MultiplexedConnection {
    ::redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis")
}

/// The fields of every entry of `key`, oldest first.
async fn entries(
    redis: &mut MultiplexedConnection,
    key: &str,
) -> Vec<(String, HashMap<String, Vec<u8>>)> {
    let reply: ::redis::streams::StreamRangeReply = redis.xrange_all(key).await.expect("XRANGE");
    reply
        .ids
        .into_iter()
        .map(|entry| {
            let fields = entry
                .map
                .into_iter()
                .map(|(k, v)| {
                    let bytes: Vec<u8> = ::redis::from_redis_value(v).unwrap_or_default();
                    (k, bytes)
                })
                .collect();
            (entry.id, fields)
        })
        .collect()
}

/// Ingested events are added to a templated stream key with `XADD`; the entry has the body,
/// the delivery id and the configured headers, and the delivery records the entry id.
#[tokio::test]
async fn redis_destination_adds_entries() {
    let Some(url) = broker_url(VAR, "redis_destination_adds_entries") else {
        return;
    };
    let mut redis = connect(&url).await;
    let key = unique("sb:out:");
    let mut config = config_to("http://127.0.0.1:9/unused", quick_retries());
    to_queue(
        &mut config,
        queue_destination(json!({
            "broker": "redis", "url": url, "stream": format!("{key}:{{{{ .body.kind }}}}"),
            "maxlen": 1000, "headers": {"event-kind": "{{ .body.kind }}"},
        })),
    );
    let server = TestServer::start(config).await;
    let body = r#"{"kind":"created","n":1}"#;
    let event = server.ingest_ok("src", body).await;
    let delivery = server
        .wait_delivery(&event, "added", |d| d.status == DeliveryStatus::Succeeded)
        .await;
    let stream = format!("{key}:created");
    let added = entries(&mut redis, &stream).await;
    assert_eq!(added.len(), 1);
    let (id, fields) = &added[0];
    assert_eq!(fields["body"], body.as_bytes());
    assert_eq!(fields["message-id"], delivery.id.as_bytes());
    assert_eq!(fields["content-type"], b"application/json");
    assert_eq!(fields["event-kind"], b"created");
    let attempts = server
        .store()
        .list_attempts(None, Some(&delivery.id))
        .await
        .expect("attempts");
    let confirmation: Value =
        serde_json::from_slice(&attempts[0].response_body).expect("confirmation json");
    assert_eq!(confirmation["id"], json!(id));
    server.stop().await;
    let _: i64 = redis.del(&stream).await.expect("DEL");
}

/// A key holding another type: `WRONGTYPE`, retried with the error recorded.
#[tokio::test]
async fn redis_destination_refusal_is_retried_with_a_clear_error() {
    let Some(url) = broker_url(
        VAR,
        "redis_destination_refusal_is_retried_with_a_clear_error",
    ) else {
        return;
    };
    let mut redis = connect(&url).await;
    let key = unique("sb:string:");
    let _: () = redis.set(&key, "not a stream").await.expect("SET");
    let mut config = config_to("http://127.0.0.1:9/unused", quick_retries());
    to_queue(
        &mut config,
        queue_destination(json!({"broker": "redis", "url": url, "stream": key})),
    );
    let server = TestServer::start(config).await;
    let event = server.ingest_ok("src", r#"{"n":1}"#).await;
    let failing = server
        .wait_delivery(&event, "retried", |d| d.attempts >= 2)
        .await;
    let error = failing.last_error.unwrap_or_default();
    assert!(
        error.contains(&format!("Redis refused XADD to `{key}`")) && error.contains("WRONGTYPE"),
        "{error}"
    );
    let _: i64 = redis.del(&key).await.expect("DEL");
    server
        .wait_delivery(&event, "added once the key is free", |d| {
            d.status == DeliveryStatus::Succeeded
        })
        .await;
    server.stop().await;
    let _: i64 = redis.del(&key).await.expect("DEL");
}

/// Entries become events (body from the `body` field, or all fields as JSON; type from a
/// field; dedup key from the entry id) delivered to the route's receiver and acknowledged;
/// rewinding the group (every entry read again) stores nothing twice.
#[tokio::test]
async fn redis_source_stores_and_routes_entries_once() {
    let Some(url) = broker_url(VAR, "redis_source_stores_and_routes_entries_once") else {
        return;
    };
    let mut redis = connect(&url).await;
    let key = unique("sb:in:");
    let receiver = Receiver::always(200).await;
    let mut config = config_to(&receiver.url, quick_retries());
    from_queue(
        &mut config,
        json!({
            "broker": "redis", "url": url, "stream": key, "group": "sbtest",
            "type_header": "type", "ack_wait": "2s",
        }),
    );
    let _: String = redis
        .xadd(
            &key,
            "*",
            &[
                ("body", r#"{"n":1}"#),
                ("type", "order.created"),
                ("content-type", "application/json"),
            ],
        )
        .await
        .expect("XADD");
    let _: String = redis
        .xadd(&key, "*", &[("n", "2"), ("type", "order.paid")])
        .await
        .expect("XADD");
    let server = TestServer::start(config).await;
    let got = receiver.wait_for(2, Duration::from_secs(20)).await;
    let bodies: Vec<Value> = got
        .iter()
        .map(|r| serde_json::from_slice(&r.body).expect("json"))
        .collect();
    assert!(bodies.contains(&json!({"n": 1})), "{bodies:?}");
    assert!(
        bodies.contains(&json!({"n": "2", "type": "order.paid"})),
        "{bodies:?}"
    );
    let events = events_of(server.store(), "qin").await;
    assert_eq!(events.len(), 2);
    let created = events
        .iter()
        .find(|e| e.event_type.as_deref() == Some("order.created"))
        .expect("order.created");
    assert_eq!(header(created, "redis-stream"), Some(key.as_str()));
    let id = header(created, "redis-id").unwrap_or_default().to_owned();
    assert_eq!(created.dedup_key.as_deref(), Some(&*format!("{key}:{id}")));
    let probe = redis.clone();
    let pending = || {
        let mut redis = probe.clone();
        let key = key.clone();
        async move {
            let reply: ::redis::streams::StreamPendingReply =
                redis.xpending(&key, "sbtest").await.ok()?;
            Some(reply.count())
        }
    };
    eventually(
        Duration::from_secs(20),
        "every entry acknowledged",
        || async { (pending().await? == 0).then_some(()) },
    )
    .await;

    // Rewind the group: both entries are read and acknowledged again, and recognised.
    let _: () = ::redis::cmd("XGROUP")
        .arg("SETID")
        .arg(&key)
        .arg("sbtest")
        .arg("0")
        .query_async(&mut redis)
        .await
        .expect("XGROUP SETID");
    eventually(
        Duration::from_secs(20),
        "the rewound entries read again",
        || async {
            let groups: ::redis::streams::StreamInfoGroupsReply =
                redis.clone().xinfo_groups(&key).await.ok()?;
            let group = groups.groups.into_iter().find(|g| g.name == "sbtest")?;
            (group.last_delivered_id != "0-0" && pending().await? == 0).then_some(())
        },
    )
    .await;
    assert_eq!(
        events_of(server.store(), "qin").await.len(),
        2,
        "nothing stored twice"
    );
    assert_eq!(receiver.requests().len(), 2, "nothing delivered twice");
    server.stop().await;
    let _: i64 = redis.del(&key).await.expect("DEL");
}

/// `kill -9` while consuming: the dead consumer's pending entries are claimed (`XAUTOCLAIM`)
/// after `ack_wait` by the restarted process, and every entry is stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_source_survives_kill_9() {
    let Some(url) = broker_url(VAR, "redis_source_survives_kill_9") else {
        return;
    };
    let mut redis = connect(&url).await;
    let key = unique("sb:crash:");
    let total = 1500u64;
    let mut pipe = ::redis::pipe();
    for n in 0..total {
        pipe.xadd(&key, "*", &[("body", format!(r#"{{"n":{n}}}"#))])
            .ignore();
    }
    let _: () = pipe.query_async(&mut redis).await.expect("XADD");
    let settings = |concurrency: usize| {
        format!(
            "broker = \"redis\"\nurl = \"{url}\"\nstream = \"{key}\"\nack_wait = \"2s\"\n\
             concurrency = {concurrency}\n"
        )
    };
    crash_and_restart(total, &settings(8), &settings(64)).await;
    let reply: ::redis::streams::StreamPendingReply =
        redis.xpending(&key, "switchboard").await.expect("XPENDING");
    assert_eq!(reply.count(), 0, "nothing left pending");
    let _: i64 = redis.del(&key).await.expect("DEL");
}

/// Connections cut under both the source and the destination: the source reconnects and
/// consumes on, the destination's next attempts reconnect and add.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_survives_connection_loss() {
    let Some(url) = broker_url(VAR, "redis_survives_connection_loss") else {
        return;
    };
    let redis = connect(&url).await;
    let (source_key, sink_key) = (unique("sb:rcin:"), unique("sb:rcout:"));
    let toml = both_ways_toml(
        "RECEIVER_URL",
        &format!(
            "broker = \"redis\"\nurl = \"{url}\"\nstream = \"{source_key}\"\nack_wait = \"2s\"\n"
        ),
        &format!("broker = \"redis\"\nurl = \"{url}\"\nstream = \"{sink_key}\"\n"),
    );
    let publish = |n: u64| {
        let (mut redis, key) = (redis.clone(), source_key.clone());
        async move {
            let _: String = redis
                .xadd(&key, "*", &[("body", format!(r#"{{"n":{n}}}"#))])
                .await
                .expect("XADD");
        }
    };
    let published = |n: u64| {
        let (mut redis, key) = (redis.clone(), sink_key.clone());
        async move {
            entries(&mut redis, &key)
                .await
                .iter()
                .any(|(_, fields)| fields.get("body").and_then(|b| marker(b)) == Some(n))
        }
    };
    survive_connection_loss(&toml, 6379, publish, published).await;
    let mut redis = redis;
    let _: i64 = redis.del(&[&source_key, &sink_key]).await.expect("DEL");
}
