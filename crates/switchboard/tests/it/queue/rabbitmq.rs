//! RabbitMQ.

use std::time::Duration;

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde_json::json;
use switchboard_core::DeliveryStatus;
use switchboard_signatures::standard_webhooks;

use super::*;
use crate::support::{Receiver, TestServer, config_to};

const VAR: &str = "SWITCHBOARD_TEST_AMQP";

async fn channel(url: &str) -> (Connection, Channel) {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("connect to RabbitMQ");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    (connection, channel)
}

async fn declare_queue(channel: &Channel, queue: &str) {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("declare queue");
}

async fn publish(channel: &Channel, routing_key: &str, body: &[u8], properties: BasicProperties) {
    let confirm = channel
        .basic_publish(
            "".into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(confirm.is_ack());
}

/// Ingested events are published to a topic exchange with a templated routing key; the
/// delivery succeeds on the publisher confirm and the queue bound to it holds the message,
/// persistent, with the delivery id as `message_id`.
#[tokio::test]
async fn rabbitmq_destination_publishes_with_confirms() {
    let Some(url) = broker_url(VAR, "rabbitmq_destination_publishes_with_confirms") else {
        return;
    };
    let (_connection, channel) = channel(&url).await;
    let exchange = unique("sb.events.");
    let queue = unique("sb.orders.");
    channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("declare exchange");
    declare_queue(&channel, &queue).await;
    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            "orders.*".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");

    let mut config = config_to("http://127.0.0.1:9/unused", quick_retries());
    to_queue(
        &mut config,
        queue_destination(json!({
            "broker": "rabbitmq", "url": url, "exchange": exchange,
            "routing_key": "orders.{{ .body.kind }}",
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

    let message = channel
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
        .expect("a message in the queue");
    let delivered = &message.delivery;
    assert_eq!(delivered.data, body.as_bytes());
    assert_eq!(delivered.routing_key.as_str(), "orders.created");
    let properties = &delivered.properties;
    assert_eq!(
        properties.message_id().as_ref().map(|s| s.as_str()),
        Some(delivery.id.as_str())
    );
    assert_eq!(
        properties.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    assert_eq!(*properties.delivery_mode(), Some(2));
    let kind = properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("event-kind").cloned());
    assert_eq!(
        kind,
        Some(AMQPValue::LongString(LongString::from("created")))
    );
    server.stop().await;
    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete queue");
    channel
        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .expect("delete exchange");
}

/// An exchange that does not exist (the broker closes the channel with `NOT_FOUND`) and a
/// routing key no queue is bound to (the mandatory message comes back with `NO_ROUTE`) both
/// fail the attempt with a clear error and are retried; the publisher recovers its channel for
/// the next message.
#[tokio::test]
async fn rabbitmq_destination_refusals_are_retried_with_clear_errors() {
    let Some(url) = broker_url(
        VAR,
        "rabbitmq_destination_refusals_are_retried_with_clear_errors",
    ) else {
        return;
    };
    let missing = unique("sb.missing.");
    let mut config = config_to("http://127.0.0.1:9/unused", quick_retries());
    to_queue(
        &mut config,
        queue_destination(json!({
            "broker": "rabbitmq", "url": url, "exchange": missing, "routing_key": "x",
        })),
    );
    let server = TestServer::start(config).await;
    let event = server.ingest_ok("src", r#"{"n":1}"#).await;
    let failing = server
        .wait_delivery(&event, "retried", |d| d.attempts >= 2)
        .await;
    let error = failing.last_error.unwrap_or_default();
    assert!(
        error.contains("NOT_FOUND") && error.contains(&format!("does exchange `{missing}` exist")),
        "{error}"
    );
    assert!(!error.contains("guest:guest"), "{error}");
    server.stop().await;

    // The default exchange with a routing key that names no queue: returned, not confirmed.
    let nowhere = unique("sb.nowhere.");
    let mut config = config_to("http://127.0.0.1:9/unused", quick_retries());
    to_queue(
        &mut config,
        queue_destination(json!({"broker": "rabbitmq", "url": url, "routing_key": nowhere})),
    );
    let server = TestServer::start(config).await;
    let event = server.ingest_ok("src", r#"{"n":2}"#).await;
    let failing = server
        .wait_delivery(&event, "retried", |d| d.attempts >= 2)
        .await;
    assert_eq!(failing.status, DeliveryStatus::Pending);
    let error = failing.last_error.unwrap_or_default();
    assert!(
        error.contains("returned the message") && error.contains("NO_ROUTE"),
        "{error}"
    );
    // Once the queue exists the same delivery goes through.
    let (_connection, channel) = channel(&url).await;
    declare_queue(&channel, &nowhere).await;
    server
        .wait_delivery(&event, "published once routable", |d| {
            d.status == DeliveryStatus::Succeeded
        })
        .await;
    server.stop().await;
    channel
        .queue_delete(nowhere.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete queue");
}

/// Messages in the queue become events (type from the `type` property, headers kept, dedup
/// key from `message_id`) delivered to the route's receiver; a second message with the same
/// `message_id` is stored once.
#[tokio::test]
async fn rabbitmq_source_stores_and_routes_messages_once() {
    let Some(url) = broker_url(VAR, "rabbitmq_source_stores_and_routes_messages_once") else {
        return;
    };
    let (_connection, channel) = channel(&url).await;
    let queue = unique("sb.in.");
    declare_queue(&channel, &queue).await;
    let receiver = Receiver::always(200).await;
    let mut config = config_to(&receiver.url, quick_retries());
    from_queue(
        &mut config,
        json!({"broker": "rabbitmq", "url": url, "queue": queue, "prefetch": 10}),
    );
    let server = TestServer::start(config).await;
    let mut headers = FieldTable::default();
    headers.insert("x-trace".into(), AMQPValue::LongString("t1".into()));
    headers.insert("x-attempt".into(), AMQPValue::LongInt(3));
    for (n, id) in [(1, "m-1"), (2, "m-2"), (3, "m-1")] {
        publish(
            &channel,
            &queue,
            format!(r#"{{"n":{n}}}"#).as_bytes(),
            BasicProperties::default()
                .with_message_id(id.into())
                .with_type("order.created".into())
                .with_content_type("application/json".into())
                .with_headers(headers.clone()),
        )
        .await;
    }
    // A message without message_id has no dedup key but is stored all the same.
    publish(&channel, &queue, br#"{"n":4}"#, BasicProperties::default()).await;

    let got = receiver.wait_for(3, Duration::from_secs(20)).await;
    eventually(Duration::from_secs(20), "the queue drained", || async {
        let (_c, ch) = channel_for(&url).await;
        let state = ch
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .ok()?;
        (state.message_count() == 0 && events_of(server.store(), "qin").await.len() == 3)
            .then_some(())
    })
    .await;
    assert!(got.len() >= 3);
    let events = events_of(server.store(), "qin").await;
    assert_eq!(events.len(), 3, "m-1 twice is stored once");
    let first = events
        .iter()
        .find(|e| e.dedup_key.as_deref() == Some("m-1"))
        .expect("m-1");
    assert!(
        events.iter().any(|e| e.dedup_key.is_none()),
        "the message without message_id"
    );
    assert_eq!(first.event_type.as_deref(), Some("order.created"));
    assert_eq!(first.content_type.as_deref(), Some("application/json"));
    assert_eq!(header(first, "x-trace"), Some("t1"));
    assert_eq!(header(first, "x-attempt"), Some("3"));
    assert_eq!(header(first, "amqp-routing-key"), Some(queue.as_str()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut markers_now: Vec<u64> = receiver
        .requests()
        .iter()
        .filter_map(|r| marker(&r.body))
        .collect();
    markers_now.sort_unstable();
    assert_eq!(
        markers_now.len(),
        3,
        "one of the two m-1, m-2, and the one without id: {markers_now:?}"
    );
    assert!(
        markers_now.contains(&2) && markers_now.contains(&4),
        "{markers_now:?}"
    );
    server.stop().await;
    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete queue");
}

async fn channel_for(url: &str) -> (Connection, Channel) {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("connect to RabbitMQ");
    let channel = connection.create_channel().await.expect("channel");
    (connection, channel)
}

/// `kill -9` while consuming: every message is stored exactly once after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_source_survives_kill_9() {
    let Some(url) = broker_url(VAR, "rabbitmq_source_survives_kill_9") else {
        return;
    };
    let (_connection, channel) = channel(&url).await;
    let queue = unique("sb.crash.");
    declare_queue(&channel, &queue).await;
    let total = 1500u64;
    let mut confirms = Vec::new();
    for n in 0..total {
        confirms.push(
            channel
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions::default(),
                    format!(r#"{{"n":{n}}}"#).as_bytes(),
                    BasicProperties::default().with_message_id(format!("msg-{n}").into()),
                )
                .await
                .expect("publish"),
        );
    }
    for confirm in confirms {
        assert!(confirm.await.expect("confirm").is_ack());
    }
    let settings = |concurrency: usize| {
        format!(
            "broker = \"rabbitmq\"\nurl = \"{url}\"\nqueue = \"{queue}\"\nconcurrency = {concurrency}\n"
        )
    };
    crash_and_restart(total, &settings(8), &settings(64)).await;
    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete queue");
}

/// `docs/recipes/queue-to-webhook.md` as written: with the queue name, the broker URL and the
/// customer's URL pointed at this test's, a message published as the recipe shows reaches the
/// customer signed and reshaped, and a message of another customer is filtered out.
#[tokio::test]
async fn recipe_queue_to_webhook_works_as_written() {
    let Some(url) = broker_url(VAR, "recipe_queue_to_webhook_works_as_written") else {
        return;
    };
    let recipe = repository_file("docs/recipes/queue-to-webhook.md");
    let blocks = toml_blocks(&recipe);
    assert_eq!(blocks.len(), 1, "one configuration in the recipe");
    let customer = Receiver::always(200).await;
    let queue = unique("customer-webhooks-");
    let toml = blocks[0]
        .replace(
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            &url.replace('\\', "\\\\"),
        )
        .replace("\"customer-webhooks\"", &format!("\"{queue}\""))
        .replace("https://hooks.acme.example/switchboard", &customer.url);
    let mut config = switchboard_core::Config::from_toml(&toml).expect("the recipe parses");
    config.validate().expect("the recipe is valid");
    config.security.allow_private_networks = true;
    config.delivery.poll_interval = Duration::from_millis(100);

    let (_connection, channel) = channel(&url).await;
    declare_queue(&channel, &queue).await;
    let server = TestServer::start(config).await;
    let mut headers = FieldTable::default();
    headers.insert(
        "event-type".into(),
        AMQPValue::LongString("order.shipped".into()),
    );
    for (customer_name, id) in [
        ("globex", "order-G-7-shipped"),
        ("acme", "order-A-1001-shipped"),
    ] {
        let body = json!({"customer": customer_name, "order": "A-1001", "status": "shipped"});
        publish(
            &channel,
            &queue,
            body.to_string().as_bytes(),
            BasicProperties::default()
                .with_content_type("application/json".into())
                .with_message_id(id.into())
                .with_headers(headers.clone()),
        )
        .await;
    }
    let got = customer.wait_for(1, Duration::from_secs(20)).await;
    let request = &got[0];
    let body: serde_json::Value = serde_json::from_slice(&request.body).expect("json");
    assert_eq!(
        body,
        json!({"type": "order.shipped", "data": {"customer": "acme", "order": "A-1001", "status": "shipped"}})
    );
    let key = standard_webhooks::SigningKey::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .expect("the recipe's secret");
    let timestamp: i64 = request.header("webhook-timestamp").parse().expect("ts");
    let signed = standard_webhooks::Headers {
        id: Some(request.header("webhook-id")),
        timestamp: Some(request.header("webhook-timestamp")),
        signature: Some(request.header("webhook-signature")),
    };
    standard_webhooks::verify(&[key], signed, &request.body, timestamp, 300)
        .expect("the customer can verify the signature");
    let events = events_of(server.store(), "orders-queue").await;
    assert_eq!(events.len(), 2, "both stored, one filtered out");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        customer.requests().len(),
        1,
        "globex's message is filtered out"
    );
    server.stop().await;
    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete queue");
}

/// Connections cut under both the source and the destination: the source reconnects and
/// consumes on, the destination's next attempts reconnect and publish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_survives_connection_loss() {
    let Some(url) = broker_url(VAR, "rabbitmq_survives_connection_loss") else {
        return;
    };
    let (_connection, channel) = channel(&url).await;
    let (source_queue, sink_queue) = (unique("sb.rcin."), unique("sb.rcout."));
    declare_queue(&channel, &source_queue).await;
    declare_queue(&channel, &sink_queue).await;
    let toml = both_ways_toml(
        "RECEIVER_URL",
        &format!("broker = \"rabbitmq\"\nurl = \"{url}\"\nqueue = \"{source_queue}\"\n"),
        &format!("broker = \"rabbitmq\"\nurl = \"{url}\"\nrouting_key = \"{sink_queue}\"\n"),
    );
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let publish = |n: u64| {
        let (channel, queue) = (channel.clone(), source_queue.clone());
        async move {
            publish(
                &channel,
                &queue,
                format!(r#"{{"n":{n}}}"#).as_bytes(),
                BasicProperties::default().with_message_id(format!("rc-{n}").into()),
            )
            .await;
        }
    };
    let published = |n: u64| {
        let (channel, queue, seen) = (channel.clone(), sink_queue.clone(), seen.clone());
        async move {
            while let Ok(Some(message)) = channel
                .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
                .await
            {
                if let Some(m) = marker(&message.delivery.data) {
                    seen.lock().expect("lock").insert(m);
                }
            }
            seen.lock().expect("lock").contains(&n)
        }
    };
    survive_connection_loss(&toml, 5672, publish, published).await;
    for queue in [&source_queue, &sink_queue] {
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .expect("delete queue");
    }
}
