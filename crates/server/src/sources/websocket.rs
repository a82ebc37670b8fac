//! `kind = "websocket"`: one connection to a WebSocket stream; every text or binary message
//! becomes an event.
//!
//! A session connects (through the same SSRF policy as deliveries: the host is resolved once
//! and only allowed addresses are dialled), completes the TLS and WebSocket handshakes with the
//! configured headers, sends the authorization message and the subscribe messages, then reads.
//! It pings every `ping_interval`; any frame received (message, ping, pong) proves the
//! connection alive, and `idle_timeout` without one ends the session. After a session ends the
//! task waits (capped exponential backoff with jitter) and starts a new one, which subscribes
//! again. Messages go to the group committer in arrival order, up to [`IN_FLIGHT`] at once (so
//! a fast stream is stored in batches, not one commit per message); beyond that, and while the
//! store refuses messages (each is retried), reading pauses and the server's own buffering
//! applies. A session's messages are all stored before the next session starts.
//!
//! A stream has no acknowledgements: a message the server sent while no session was up is lost
//! unless the stream replays (usually through a subscribe option). `dedup_key` makes replayed
//! messages harmless.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{SinkExt, StreamExt};
use rand::Rng;
use switchboard_core::config::{WebsocketSource, message_text};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message as Frame};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use super::common::{self, Programs, Verdict};
use super::{Context, Emitted, Message};
use crate::delivery::ssrf::{GuardedResolver, Policy};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Messages between the socket and the store, in arrival order: first judged by the jq
/// programs (several at once on the blocking pool), then stored (several at once through the
/// group committer). Both stages are ordered queues, so messages reach the committer in the
/// order they arrived.
struct Pending<'a> {
    judging: FuturesOrdered<BoxFuture<'a, Option<Message>>>,
    storing: FuturesOrdered<BoxFuture<'a, Option<Emitted>>>,
}

/// Progress of the [`Pending`] queues.
enum Progress {
    /// A message was stored (or found stored already).
    Stored(Emitted),
    /// A message was judged (and queued for storing, unless dropped).
    Judged,
    /// Storing gave up: the task must stop.
    Stopping,
}

impl<'a> Pending<'a> {
    fn new() -> Self {
        Self {
            judging: FuturesOrdered::new(),
            storing: FuturesOrdered::new(),
        }
    }

    fn len(&self) -> usize {
        self.judging.len() + self.storing.len()
    }

    fn is_empty(&self) -> bool {
        self.judging.is_empty() && self.storing.is_empty()
    }

    fn judge(&mut self, judged: BoxFuture<'a, Option<Message>>) {
        self.judging.push_back(judged);
    }

    /// The next step of either queue; a judged message is queued for storing with `emitter`.
    /// Pending forever when both are empty.
    async fn next(&mut self, emitter: &'a super::Emitter, stop: &'a CancellationToken) -> Progress {
        if self.is_empty() {
            return std::future::pending().await;
        }
        tokio::select! {
            Some(stored) = self.storing.next(), if !self.storing.is_empty() => match stored {
                Some(emitted) => Progress::Stored(emitted),
                None => Progress::Stopping,
            },
            Some(judged) = self.judging.next(), if !self.judging.is_empty() => {
                if let Some(message) = judged {
                    self.storing
                        .push_back(Box::pin(common::emit_until_stored(emitter, message, stop)));
                }
                Progress::Judged
            }
        }
    }
}

/// Most messages on their way to the store at once; the group committer batches them. Beyond
/// this, reading pauses until the store catches up.
const IN_FLIGHT: usize = 256;
/// How long a stopping task waits for the messages it already received to be stored.
const STOP_DRAIN: Duration = Duration::from_secs(2);

/// Checks what the configuration cannot: the URL parses, header values are valid, the jq
/// programs compile.
pub fn check(settings: &WebsocketSource) -> Result<(), String> {
    let url = url::Url::parse(&settings.url).map_err(|e| format!("url: {e}"))?;
    if url.host().is_none() {
        return Err("url has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("url must not carry credentials; use headers".into());
    }
    handshake_headers(settings)?;
    programs(settings).map(|_| ())
}

fn programs(settings: &WebsocketSource) -> Result<Programs, String> {
    Ok(Programs {
        filter: common::compile("filter", settings.filter.as_deref())?,
        event_type: common::compile("event_type", settings.event_type.as_deref())?,
        dedup_key: common::compile("dedup_key", settings.dedup_key.as_deref())?,
        key_required: false,
    })
}

fn handshake_headers(settings: &WebsocketSource) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    settings
        .headers
        .iter()
        .map(|(name, value)| {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("`{name}` is not a valid header name"))?;
            let mut value = HeaderValue::from_str(value)
                .map_err(|_| format!("the value of header `{name}` is not a valid header value"))?;
            value.set_sensitive(true);
            Ok((header, value))
        })
        .collect()
}

/// The TLS settings of `wss://` connections: the same crypto provider and platform certificate
/// verifier as the delivery client.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_platform_verifier()
        .map_err(|e| format!("TLS certificate verifier: {e}"))?
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Runs the source until `context.stop` is cancelled.
pub async fn run(settings: WebsocketSource, context: Context) {
    common::describe_metrics();
    let source = context.emitter.source().to_owned();
    let prepared = programs(&settings).and_then(|p| Ok((p, tls_config()?)));
    let (programs, tls) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => {
            // The registry checked the settings before they went live; this is unexpected.
            tracing::error!(source, %error, "websocket source cannot start");
            context.stop.cancelled().await;
            return;
        }
    };
    let session = Session {
        source: source.clone(),
        settings: &settings,
        context: &context,
        programs: Arc::new(programs),
        tls,
    };
    let connected = metrics::gauge!("switchboard_source_connected", "source" => source.clone());
    let reconnects =
        metrics::counter!("switchboard_source_reconnects_total", "source" => source.clone());
    let mut failures: u32 = 0;
    loop {
        let ended = session.run(&connected).await;
        connected.set(0.0);
        let reason = match ended {
            Ended::Stopped => return,
            Ended::Lost { reason, worked } => {
                if worked {
                    failures = 0;
                }
                reason
            }
        };
        let delay = backoff(
            settings.reconnect_min,
            settings.reconnect_max,
            failures,
            &mut rand::rng(),
        );
        failures = failures.saturating_add(1);
        reconnects.increment(1);
        tracing::warn!(source, %reason, retry_in = ?delay, "websocket connection lost; reconnecting");
        tokio::select! {
            _ = context.stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// How long to wait before reconnect number `failures + 1`: `min` doubled `failures` times,
/// capped at `max`, then jittered into its upper half (so many clients that lost the same
/// server do not come back at once, and the wait never drops below half the step).
pub(crate) fn backoff(min: Duration, max: Duration, failures: u32, rng: &mut impl Rng) -> Duration {
    let step = min
        .checked_mul(2u32.saturating_pow(failures.min(31)))
        .unwrap_or(max)
        .min(max);
    let half = step / 2;
    let jitter = rng.random_range(0..=half.as_millis().min(u128::from(u64::MAX)) as u64);
    half + Duration::from_millis(jitter)
}

/// Why a session ended.
enum Ended {
    /// The task must stop.
    Stopped,
    /// The connection failed or was lost.
    Lost {
        /// What happened (no secrets).
        reason: String,
        /// Whether it delivered messages (then the backoff starts over).
        worked: bool,
    },
}

impl Ended {
    fn lost(reason: impl Into<String>, worked: bool) -> Self {
        Self::Lost {
            reason: reason.into(),
            worked,
        }
    }
}

struct Session<'a> {
    source: String,
    settings: &'a WebsocketSource,
    context: &'a Context,
    programs: Arc<Programs>,
    tls: Arc<rustls::ClientConfig>,
}

impl Session<'_> {
    async fn run(&self, connected: &metrics::Gauge) -> Ended {
        let stop = &self.context.stop;
        let opened = tokio::select! {
            _ = stop.cancelled() => return Ended::Stopped,
            opened = tokio::time::timeout(self.settings.connect_timeout, self.open()) => opened,
        };
        let mut socket = match opened {
            Ok(Ok(socket)) => socket,
            Ok(Err(reason)) => return Ended::lost(reason, false),
            Err(_) => {
                return Ended::lost(
                    format!(
                        "no connection within connect_timeout ({})",
                        humantime::format_duration(self.settings.connect_timeout)
                    ),
                    false,
                );
            }
        };
        connected.set(1.0);
        tracing::info!(source = self.source, "websocket connected and subscribed");
        let mut pending = Pending::new();
        let ended = self.read(&mut socket, &mut pending).await;
        connected.set(0.0);
        let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
        // Messages already received are stored before anything else happens (at shutdown, for
        // a moment at most).
        let drained = match ended {
            Ended::Stopped => tokio::time::timeout(STOP_DRAIN, self.drain(&mut pending))
                .await
                .unwrap_or(false),
            Ended::Lost { .. } => self.drain(&mut pending).await,
        };
        if drained { ended } else { Ended::Stopped }
    }

    /// Reads until the connection ends or the task must stop, keeping up to [`IN_FLIGHT`]
    /// messages on their way to the store.
    async fn read<'s>(&'s self, socket: &mut Socket, pending: &mut Pending<'s>) -> Ended {
        let stop = &self.context.stop;
        let every = self.settings.ping_interval;
        let mut ping = tokio::time::interval_at(Instant::now() + every, every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_seen = Instant::now();
        let mut worked = false;
        loop {
            // While the store is behind, reading pauses (and with it the liveness check, which
            // needs reading to see pongs).
            let reading = pending.len() < IN_FLIGHT;
            let frame = tokio::select! {
                biased;
                _ = stop.cancelled() => return Ended::Stopped,
                progress = pending.next(&self.context.emitter, stop) => {
                    match progress {
                        Progress::Stored(emitted) => common::count_emitted(&self.source, &emitted),
                        Progress::Judged => {}
                        Progress::Stopping => return Ended::Stopped,
                    }
                    if !reading {
                        last_seen = Instant::now();
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(last_seen + self.settings.idle_timeout), if reading => {
                    return Ended::lost(format!(
                        "no traffic (not even a pong) for idle_timeout ({})",
                        humantime::format_duration(self.settings.idle_timeout)
                    ), worked);
                }
                _ = ping.tick() => {
                    if let Err(error) = socket.send(Frame::Ping(Default::default())).await {
                        return Ended::lost(format!("sending a ping failed: {error}"), worked);
                    }
                    continue;
                }
                frame = socket.next(), if reading => frame,
            };
            let frame = match frame {
                None => return Ended::lost("the server closed the connection", worked),
                Some(Err(error)) => return Ended::lost(describe(&error), worked),
                Some(Ok(frame)) => frame,
            };
            last_seen = Instant::now();
            let (body, text) = match frame {
                Frame::Text(text) => (bytes::Bytes::from(text), true),
                Frame::Binary(data) => (data, false),
                Frame::Close(close) => {
                    let reason = match close {
                        Some(close) => format!(
                            "the server closed the connection ({} {})",
                            u16::from(close.code),
                            close.reason
                        ),
                        None => "the server closed the connection".into(),
                    };
                    return Ended::lost(reason, worked);
                }
                // Pings are answered by the protocol layer; pongs only prove liveness.
                Frame::Ping(_) | Frame::Pong(_) | Frame::Frame(_) => continue,
            };
            worked = true;
            pending.judge(Box::pin(self.prepare(body, text)));
        }
    }

    /// Waits for the messages on their way to the store; `false` when the task must stop.
    async fn drain<'s>(&'s self, pending: &mut Pending<'s>) -> bool {
        while !pending.is_empty() {
            match pending
                .next(&self.context.emitter, &self.context.stop)
                .await
            {
                Progress::Stored(emitted) => common::count_emitted(&self.source, &emitted),
                Progress::Judged => {}
                Progress::Stopping => return false,
            }
        }
        true
    }

    /// Connects, shakes hands and subscribes; the error is a sentence without secrets.
    async fn open(&self) -> Result<Socket, String> {
        let url = url::Url::parse(&self.settings.url).map_err(|e| format!("bad url: {e}"))?;
        let port = url
            .port_or_known_default()
            .ok_or("the url has no port and its scheme has no default")?;
        let policy = {
            let runtime = self.context.emitter.registry.current();
            Arc::new(Policy::from_config(&runtime.config.security)?)
        };
        let addrs: Vec<SocketAddr> = match url.host() {
            Some(url::Host::Ipv4(ip)) => vec![allowed(&policy, IpAddr::V4(ip), port)?],
            Some(url::Host::Ipv6(ip)) => vec![allowed(&policy, IpAddr::V6(ip), port)?],
            Some(url::Host::Domain(host)) => GuardedResolver::new(policy)
                .resolve_host(host)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|addr| SocketAddr::new(addr.ip(), port))
                .collect(),
            None => return Err("the url has no host".into()),
        };
        let tcp = dial(&addrs).await?;
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| format!("bad request: {e}"))?;
        for (name, value) in handshake_headers(self.settings)? {
            request.headers_mut().insert(name, value);
        }
        let max = self.settings.max_message_bytes;
        let config = WebSocketConfig::default()
            .max_message_size(Some(max))
            .max_frame_size(Some(max));
        let (mut socket, _response) = tokio_tungstenite::client_async_tls_with_config(
            request,
            tcp,
            Some(config),
            Some(Connector::Rustls(self.tls.clone())),
        )
        .await
        .map_err(|e| describe(&e))?;
        let first = self.settings.authorization_message.iter();
        for (n, message) in first.chain(&self.settings.subscribe).enumerate() {
            let is_auth = n == 0 && self.settings.authorization_message.is_some();
            if let Err(error) = socket.send(Frame::text(message_text(message))).await {
                let what = if is_auth {
                    "the authorization message"
                } else {
                    "a subscribe message"
                };
                return Err(format!("sending {what} failed: {}", describe(&error)));
            }
        }
        Ok(socket)
    }

    /// Judges one message: the message to store, or `None` when the filter drops it or a
    /// program fails (counted and logged).
    async fn prepare(&self, body: bytes::Bytes, text: bool) -> Option<Message> {
        let (is_json, verdict) = if self.programs.is_empty() {
            let is_json = serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok();
            let keep = Verdict::Keep {
                event_type: None,
                dedup_key: None,
            };
            (is_json, keep)
        } else {
            let programs = self.programs.clone();
            let body = body.clone();
            common::blocking(move || {
                let parsed = common::parse_json(&body);
                let is_json = parsed.is_some();
                (is_json, programs.judge(&common::jq_input(&body, parsed)))
            })
            .await
            .unwrap_or_else(|error| (false, Verdict::Failed(error)))
        };
        let (event_type, dedup_key) = match verdict {
            Verdict::Dropped => {
                common::count_message(&self.source, "filtered");
                return None;
            }
            Verdict::Failed(error) => {
                tracing::warn!(source = self.source, %error, "websocket message not stored");
                common::count_message(&self.source, "failed");
                return None;
            }
            Verdict::Keep {
                event_type,
                dedup_key,
            } => (event_type, dedup_key),
        };
        let content_type = match (is_json, text) {
            (true, _) => "application/json",
            (false, true) => "text/plain; charset=utf-8",
            (false, false) => "application/octet-stream",
        };
        Some(Message {
            event_type,
            dedup_key,
            headers: Vec::new(),
            content_type: Some(content_type.into()),
            body: body.to_vec(),
        })
    }
}

fn allowed(policy: &Policy, ip: IpAddr, port: u16) -> Result<SocketAddr, String> {
    policy.check(ip).map_err(|blocked| blocked.to_string())?;
    Ok(SocketAddr::new(ip, port))
}

/// Connects to the first address that answers.
async fn dial(addrs: &[SocketAddr]) -> Result<TcpStream, String> {
    let mut last = String::from("no address to connect to");
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(tcp) => {
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Err(error) => last = format!("connecting to {addr} failed: {error}"),
        }
    }
    Err(last)
}

/// A protocol error as a sentence. A refused handshake names its status only (the response
/// may echo credentials).
fn describe(error: &tungstenite::Error) -> String {
    match error {
        tungstenite::Error::Http(response) => format!(
            "the server refused the WebSocket handshake with HTTP {}",
            response.status()
        ),
        tungstenite::Error::Capacity(e) => format!("message too large: {e} (max_message_bytes)"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(2));
        for failures in 0..40 {
            let step = (min * 2u32.saturating_pow(failures.min(31))).min(max);
            for _ in 0..20 {
                let delay = backoff(min, max, failures, &mut rng);
                assert!(delay >= step / 2 && delay <= step, "{failures}: {delay:?}");
            }
        }
        assert!(backoff(min, max, u32::MAX, &mut rng) <= max);
    }

    #[test]
    fn check_refuses_credentials_in_the_url_and_bad_programs() {
        let mut settings = WebsocketSource::new("wss://user:pw@stream.example.com/");
        assert!(
            check(&settings)
                .expect_err("credentials")
                .contains("credentials")
        );
        settings.url = "wss://stream.example.com/v1".into();
        check(&settings).expect("valid");
        settings.filter = Some(".a ==".into());
        assert!(
            check(&settings)
                .expect_err("bad jq")
                .starts_with("filter: jq error")
        );
    }

    #[test]
    fn the_tls_configuration_builds() {
        tls_config().expect("the platform verifier is available");
    }
}
