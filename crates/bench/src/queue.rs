//! `--mode queue`: queue source and queue destination throughput for each broker (NATS
//! JetStream, RabbitMQ, Redis Streams) on this machine.
//!
//! - **source**: `--events` messages of `--body-bytes` are published to a fresh stream, queue
//!   or key; then a server starts with a queue source (`--queue-concurrency` messages stored at
//!   once) routed to a receiver held shut, and the clock runs from the server's start until
//!   every message is stored as an event (its delivery exists), i.e. consumed, committed and
//!   acknowledged. The publishing rate of the bench's own client is shown for scale.
//! - **sink**: a server with a route from `/in/bench` to a queue destination throttled to
//!   (almost) nothing; `--events` events are ingested by `--preload-concurrency` clients; the
//!   server restarts on the same data directory without the throttle and the clock runs from
//!   that start until every delivery succeeded, i.e. was published and confirmed by the broker
//!   (`delivery.per_destination_concurrency` publishes in flight). The count on the broker is
//!   checked.

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use serde_json::{Value, json};
use switchboard_core::config::{
    DestinationConfig, QueueDestination, QueueSource, RouteConfig, SourceConfig, SourceKind,
    VerifierConfig,
};

use crate::harness::{
    self, DESTINATION, Receiver, Route, SOURCE, Server, Settings, delivery_counts_at,
};
use crate::load::{self, Spec, Stop, per_second};
use crate::report::Output;
use crate::{Args, QueueBrokerArg};

/// Id of the queue source.
const QUEUE_SOURCE: &str = "queue-in";
/// Id of the queue destination.
const QUEUE_DESTINATION: &str = "queue-out";

/// Runs the source and sink measurements for every `--broker`.
pub async fn queue(args: &Args, settings: &Settings, out: Output) -> anyhow::Result<()> {
    let events = args.events.unwrap_or(20_000);
    let body = load::body(args.body_bytes);
    for &broker in &args.broker {
        let url = args.broker_url(broker);
        let client = Broker::connect(broker, &url)
            .await
            .with_context(|| format!("connecting to {} for the benchmark", broker.name()))?;
        source(&client, &url, events, &body, args, settings, out).await?;
        sink(&client, &url, events, args, settings, out).await?;
    }
    Ok(())
}

async fn source(
    broker: &Broker,
    url: &str,
    events: u64,
    body: &[u8],
    args: &Args,
    settings: &Settings,
    out: Output,
) -> anyhow::Result<()> {
    let name = unique("sbbenchin");
    broker.prepare(&name).await?;
    let published = Instant::now();
    broker.fill(&name, events, body).await?;
    let fill = published.elapsed();

    let mut queue = broker.source_settings(&name);
    queue["url"] = json!(url);
    queue["concurrency"] = json!(args.queue_concurrency);
    let queue: QueueSource = serde_json::from_value(queue)?;
    queue.validate().map_err(anyhow::Error::msg)?;
    let receiver = Receiver::start(false).await?;
    let route = Route {
        url: receiver.url.clone(),
        timeout: Duration::from_secs(3600),
        retry: Default::default(),
        filter: None,
        transform: None,
    };
    let started = Instant::now();
    let server = Server::start_with(settings, Some(&route), |config| {
        config.sources.push(SourceConfig {
            id: QUEUE_SOURCE.into(),
            verifier: VerifierConfig::None,
            max_body_bytes: None,
            rate_limit: None,
            kind: SourceKind::Queue(Box::new(queue)),
            enabled: true,
        });
        config.routes.push(RouteConfig {
            id: Some("queue-in-to-sink".into()),
            source: QUEUE_SOURCE.into(),
            destination: DESTINATION.into(),
            filter: None,
            transform: None,
            enabled: true,
        });
    })
    .await?;
    let mut stalled = Stalled::new("every queue message to be stored");
    loop {
        let counts = server.delivery_counts().await?;
        let stored = counts.pending + counts.in_flight + counts.succeeded + counts.failed;
        if stored >= events {
            break;
        }
        stalled.check(stored)?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    server.stop().await?;
    receiver.stop().await;
    let left = broker.unconsumed(&name).await.unwrap_or(u64::MAX);
    broker.remove(&name).await;
    let rate = per_second(events, elapsed);
    out.line(&format!(
        "{} source: {events} messages consumed, stored and acknowledged in {:.2} s = {rate:.0} \
         messages/s (concurrency {}; server start included); {left} left unacknowledged; the \
         bench's publisher filled the {} at {:.0} messages/s",
        broker.name(),
        elapsed.as_secs_f64(),
        args.queue_concurrency,
        broker.container(),
        per_second(events, fill),
    ));
    out.record(&json!({
        "mode": "queue", "broker": broker.name(), "direction": "source", "messages": events,
        "seconds": elapsed.as_secs_f64(), "per_second": rate,
        "concurrency": args.queue_concurrency, "publish_per_second": per_second(events, fill),
    }));
    Ok(())
}

async fn sink(
    broker: &Broker,
    url: &str,
    events: u64,
    args: &Args,
    settings: &Settings,
    out: Output,
) -> anyhow::Result<()> {
    let name = unique("sbbenchout");
    broker.prepare(&name).await?;
    let mut destination = broker.sink_settings(&name);
    destination["id"] = json!(QUEUE_DESTINATION);
    destination["url"] = json!(url);
    let destination: QueueDestination = serde_json::from_value(destination)?;
    let data_dir = tempfile::Builder::new()
        .prefix("switchboard-bench-")
        .tempdir_in(&settings.data_parent)?;
    let configure = |throttled: bool| {
        let mut config = harness::config(settings, data_dir.path(), None);
        let mut destination = destination.clone();
        // While the backlog is ingested the destination is throttled to (almost) nothing.
        destination.rate_limit = throttled.then_some(0.001);
        config.destinations = vec![DestinationConfig::Queue(destination)];
        config.routes = vec![RouteConfig {
            id: Some("bench-to-queue".into()),
            source: SOURCE.into(),
            destination: QUEUE_DESTINATION.into(),
            filter: None,
            transform: None,
            enabled: true,
        }];
        config
    };

    // 1. The backlog: events ingested while the destination is throttled.
    let node = Node::start(configure(true)).await?;
    let ingest = load::run(&Spec {
        addrs: vec![node.addr],
        concurrency: args.preload_concurrency,
        body: load::body(args.body_bytes),
        stop: Stop::Count(events),
        record_latencies: false,
        progress_every: None,
    })
    .await?;
    if ingest.accepted != events {
        bail!(
            "only {} of {events} events were accepted ({} errors)",
            ingest.accepted,
            ingest.errors()
        );
    }
    node.stop().await?;

    // 2. The same data directory without the throttle: the clock runs until every delivery
    //    was confirmed by the broker.
    let started = Instant::now();
    let node = Node::start(configure(false)).await?;
    let mut stalled = Stalled::new("every delivery to be confirmed by the broker");
    let last = loop {
        let counts = delivery_counts_at(node.addr).await?;
        if counts.backlog() == 0 && counts.succeeded + counts.failed >= events {
            break counts;
        }
        stalled.check(counts.succeeded + counts.failed)?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let elapsed = started.elapsed();
    node.stop().await?;
    let on_broker = broker.published(&name).await.unwrap_or(0);
    broker.remove(&name).await;
    let rate = per_second(last.succeeded, elapsed);
    out.line(&format!(
        "{} sink: a backlog of {events} deliveries published and confirmed in {:.2} s = {rate:.0} \
         messages/s (server start included; {} failed; at most {} in flight); the broker holds \
         {on_broker}",
        broker.name(),
        elapsed.as_secs_f64(),
        last.failed,
        args.per_destination_concurrency.unwrap_or(128),
    ));
    if on_broker < last.succeeded {
        bail!(
            "the broker holds {on_broker} messages but {} deliveries succeeded",
            last.succeeded
        );
    }
    out.record(&json!({
        "mode": "queue", "broker": broker.name(), "direction": "sink", "messages": last.succeeded,
        "seconds": elapsed.as_secs_f64(), "per_second": rate, "failed": last.failed,
        "on_broker": on_broker,
    }));
    Ok(())
}

/// A server on a given configuration (the harness's [`Server`] owns its data directory; the
/// sink measurement restarts on the same one).
struct Node {
    addr: std::net::SocketAddr,
    shutdown: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Result<(), switchboard_server::ServerError>>,
}

impl Node {
    async fn start(config: switchboard_core::Config) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shutdown = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(switchboard_server::run(config, listener, shutdown.clone()));
        let deadline = Instant::now() + Duration::from_secs(30);
        while delivery_counts_at(addr).await.is_err() {
            if task.is_finished() || Instant::now() > deadline {
                bail!("the server did not start");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Self {
            addr,
            shutdown,
            task,
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .context("the server did not stop within 60 s")???;
        Ok(())
    }
}

/// A name for this run's stream, queue or key.
fn unique(prefix: &str) -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{prefix}{}x{millis}", std::process::id())
}

/// The bench's own client of a broker: prepares, fills, counts and removes.
enum Broker {
    Nats(async_nats::jetstream::Context),
    Rabbitmq {
        /// Kept open for the channel.
        _connection: lapin::Connection,
        channel: lapin::Channel,
    },
    Redis(redis::aio::MultiplexedConnection),
}

impl Broker {
    async fn connect(broker: QueueBrokerArg, url: &str) -> anyhow::Result<Self> {
        Ok(match broker {
            QueueBrokerArg::Nats => {
                Self::Nats(async_nats::jetstream::new(async_nats::connect(url).await?))
            }
            QueueBrokerArg::Rabbitmq => {
                let connection =
                    lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await?;
                let channel = connection.create_channel().await?;
                channel
                    .confirm_select(lapin::options::ConfirmSelectOptions::default())
                    .await?;
                Self::Rabbitmq {
                    _connection: connection,
                    channel,
                }
            }
            QueueBrokerArg::Redis => Self::Redis(
                redis::Client::open(url)?
                    .get_multiplexed_async_connection()
                    .await?,
            ),
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Nats(_) => "nats",
            Self::Rabbitmq { .. } => "rabbitmq",
            Self::Redis(_) => "redis",
        }
    }

    fn container(&self) -> &'static str {
        match self {
            Self::Nats(_) => "stream",
            Self::Rabbitmq { .. } => "queue",
            Self::Redis(_) => "stream",
        }
    }

    /// Creates the stream (NATS, capturing `name.>`) or queue (RabbitMQ).
    async fn prepare(&self, name: &str) -> anyhow::Result<()> {
        match self {
            Self::Nats(js) => {
                js.create_stream(async_nats::jetstream::stream::Config {
                    name: name.into(),
                    subjects: vec![format!("{name}.>")],
                    ..Default::default()
                })
                .await?;
            }
            Self::Rabbitmq { channel, .. } => {
                channel
                    .queue_declare(
                        name.into(),
                        lapin::options::QueueDeclareOptions {
                            durable: true,
                            ..Default::default()
                        },
                        lapin::types::FieldTable::default(),
                    )
                    .await?;
            }
            Self::Redis(_) => {}
        }
        Ok(())
    }

    /// Publishes `count` copies of `body`, confirmed, in pipelined batches.
    async fn fill(&self, name: &str, count: u64, body: &[u8]) -> anyhow::Result<()> {
        const BATCH: u64 = 1000;
        let mut sent = 0;
        while sent < count {
            let n = BATCH.min(count - sent);
            match self {
                Self::Nats(js) => {
                    let mut acks = Vec::with_capacity(n as usize);
                    for _ in 0..n {
                        acks.push(
                            js.publish(format!("{name}.bench"), body.to_vec().into())
                                .await?,
                        );
                    }
                    let mut acks = futures::stream::iter(acks.into_iter().map(|a| a.into_future()))
                        .buffer_unordered(n as usize);
                    while let Some(ack) = acks.next().await {
                        ack?;
                    }
                }
                Self::Rabbitmq { channel, .. } => {
                    let mut confirms = Vec::with_capacity(n as usize);
                    for _ in 0..n {
                        confirms.push(
                            channel
                                .basic_publish(
                                    "".into(),
                                    name.into(),
                                    lapin::options::BasicPublishOptions::default(),
                                    body,
                                    lapin::BasicProperties::default().with_delivery_mode(2),
                                )
                                .await?,
                        );
                    }
                    for confirm in confirms {
                        if !confirm.await?.is_ack() {
                            bail!("RabbitMQ did not confirm a message");
                        }
                    }
                }
                Self::Redis(connection) => {
                    let mut pipe = redis::pipe();
                    for _ in 0..n {
                        pipe.cmd("XADD")
                            .arg(name)
                            .arg("*")
                            .arg("body")
                            .arg(body)
                            .ignore();
                    }
                    pipe.query_async::<()>(&mut connection.clone()).await?;
                }
            }
            sent += n;
        }
        Ok(())
    }

    fn source_settings(&self, name: &str) -> Value {
        match self {
            Self::Nats(_) => json!({"broker": "nats", "stream": name, "consumer": "bench"}),
            Self::Rabbitmq { .. } => json!({"broker": "rabbitmq", "queue": name}),
            Self::Redis(_) => json!({"broker": "redis", "stream": name}),
        }
    }

    fn sink_settings(&self, name: &str) -> Value {
        match self {
            Self::Nats(_) => json!({"broker": "nats", "subject": format!("{name}.out")}),
            Self::Rabbitmq { .. } => json!({"broker": "rabbitmq", "routing_key": name}),
            Self::Redis(_) => json!({"broker": "redis", "stream": name}),
        }
    }

    /// Messages on the broker (stream length, queue depth).
    async fn published(&self, name: &str) -> anyhow::Result<u64> {
        Ok(match self {
            Self::Nats(js) => js.get_stream(name).await?.info().await?.state.messages,
            Self::Rabbitmq { channel, .. } => u64::from(
                channel
                    .queue_declare(
                        name.into(),
                        lapin::options::QueueDeclareOptions {
                            passive: true,
                            ..Default::default()
                        },
                        lapin::types::FieldTable::default(),
                    )
                    .await?
                    .message_count(),
            ),
            Self::Redis(connection) => {
                redis::cmd("XLEN")
                    .arg(name)
                    .query_async::<u64>(&mut connection.clone())
                    .await?
            }
        })
    }

    /// Messages not yet acknowledged by the source's consumer.
    async fn unconsumed(&self, name: &str) -> anyhow::Result<u64> {
        Ok(match self {
            Self::Nats(js) => {
                let stream = js.get_stream(name).await?;
                let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream
                    .get_consumer("bench")
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let info = consumer.info().await?;
                info.num_pending + info.num_ack_pending as u64
            }
            Self::Rabbitmq { .. } => self.published(name).await?,
            Self::Redis(connection) => {
                let pending: Value = redis_json(
                    redis::cmd("XPENDING")
                        .arg(name)
                        .arg("switchboard")
                        .query_async::<redis::Value>(&mut connection.clone())
                        .await?,
                );
                pending[0].as_u64().unwrap_or(0)
            }
        })
    }

    /// Deletes the stream, queue or key (best effort).
    async fn remove(&self, name: &str) {
        match self {
            Self::Nats(js) => {
                let _ = js.delete_stream(name).await;
            }
            Self::Rabbitmq { channel, .. } => {
                let _ = channel
                    .queue_delete(name.into(), lapin::options::QueueDeleteOptions::default())
                    .await;
            }
            Self::Redis(connection) => {
                let _ = redis::cmd("DEL")
                    .arg(name)
                    .query_async::<i64>(&mut connection.clone())
                    .await;
            }
        }
    }
}

/// A Redis reply as JSON (integers and strings), for reading counts.
fn redis_json(value: redis::Value) -> Value {
    match value {
        redis::Value::Int(n) => json!(n),
        redis::Value::BulkString(bytes) => json!(String::from_utf8_lossy(&bytes)),
        redis::Value::SimpleString(s) => json!(s),
        redis::Value::Array(items) => Value::Array(items.into_iter().map(redis_json).collect()),
        _ => Value::Null,
    }
}

/// Fails a wait when its progress counter has not moved for a minute.
struct Stalled {
    what: &'static str,
    seen: u64,
    since: Instant,
}

impl Stalled {
    fn new(what: &'static str) -> Self {
        Self {
            what,
            seen: 0,
            since: Instant::now(),
        }
    }

    fn check(&mut self, progress: u64) -> anyhow::Result<()> {
        if progress != self.seen {
            self.seen = progress;
            self.since = Instant::now();
        } else if self.since.elapsed() > Duration::from_secs(60) {
            bail!(
                "gave up waiting for {}: no progress for 60 s (at {progress})",
                self.what
            );
        }
        Ok(())
    }
}
