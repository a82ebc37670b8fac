//! The delivery worker: claims due deliveries in batches under a lease, sends each one, and
//! records the outcome.
//!
//! Per pass, the dispatcher looks only at destinations that may have due work ([`due`]), and
//! claims for each exactly what it may take now: its room (`max_in_flight` minus what it
//! holds, within the free global slots), its throttle tokens ([`throttle`]) and what its
//! circuit breaker allows ([`health`]). A slow, throttled or broken destination therefore holds
//! at most its own share of the worker: its backlog stays pending in the store and never delays
//! another destination's deliveries. Ordered destinations claim only the head of each ordering
//! key. At most `concurrency` deliveries are in memory at any time.

pub mod completer;
pub mod connectors;
pub mod destinations;
pub mod due;
pub mod health;
pub mod sender;
pub mod ssrf;
pub mod throttle;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_core::AttemptOutcome;
use switchboard_core::outbound::OPERATIONS_SOURCE;
use switchboard_core::time::{UnixMillis, now_millis};
use switchboard_store::{Claim, ClaimedDelivery, Completion, NewAttempt, NextStep, Store};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use self::completer::CompleterHandle;
use self::destinations::HttpTarget;
use self::due::{DueBook, Hint};
use self::health::{Gate, HealthBook, Transition};
use self::sender::{Prepared, Sender};
use self::throttle::Throttle;
use crate::operations::Operations;

/// Largest number of deliveries claimed in one statement.
const CLAIM_BATCH: usize = 256;

/// How often every destination's due time is looked up again (work created by another node,
/// or a hint that was missed).
const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// How often the node announces itself; a node silent for three beats no longer counts when
/// per-destination budgets are shared out.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);

/// Shared pieces the dispatcher and its attempt tasks use.
pub struct Worker {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Live destinations (through the registry, so API changes apply to the next attempt).
    pub registry: Arc<crate::runtime::Registry>,
    /// HTTP sender.
    pub sender: Sender,
    /// Batched completion writer.
    pub completer: CompleterHandle,
    /// Woken when new work may be due (ingest commit, scheduled retry, replay).
    pub wake: Arc<Notify>,
    /// Which destinations may have due work.
    pub due: Arc<DueBook>,
    /// Circuit breakers.
    pub health: Arc<HealthBook>,
    /// Publishes operational events.
    pub operations: Operations,
    /// Lease owner identity.
    pub owner: String,
    /// Lease length.
    pub lease: Duration,
    /// Idle poll interval.
    pub poll_interval: Duration,
    /// Global attempt concurrency.
    pub concurrency: usize,
    /// Failing this long without a success disables a tenant endpoint.
    pub disable_after: Duration,
    /// Calls through connections, for `api` destinations.
    pub connections: Option<crate::connections::client::ConnectionClient>,
    /// Where the heartbeat publishes the live node count (read by connection pacing).
    pub nodes: crate::nodes::NodeCount,
}

/// Per-destination count of claimed-but-unfinished deliveries.
type InFlight = Arc<Mutex<HashMap<String, usize>>>;

/// The dispatcher's own state, lent to each pass.
struct Local {
    rotation: usize,
    permits: Arc<Semaphore>,
    in_flight: InFlight,
    throttle: Throttle,
    nodes: u32,
    tasks: JoinSet<()>,
}

/// A claim a pass is about to make.
struct Planned<'a> {
    id: &'a String,
    room: usize,
    probe: bool,
    ordered: bool,
}

/// What one dispatcher pass found.
#[derive(Default)]
struct Pass {
    /// Some destination could take more right now.
    more_due: bool,
    /// Earliest instant something not claimable now may become claimable.
    wake_at: Option<UnixMillis>,
}

impl Pass {
    fn wake_at(&mut self, at: UnixMillis) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }
}

impl Worker {
    /// Runs until `shutdown` is cancelled, then waits up to `grace` for in-flight attempts,
    /// aborts the rest and hands their leases back.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken, grace: Duration) {
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let in_flight: InFlight = Arc::default();
        let mut tasks = JoinSet::new();
        let mut throttle = Throttle::default();
        let mut last_sweep = now_millis();
        let mut last_refresh = Instant::now();
        let mut last_heartbeat: Option<Instant> = None;
        let mut nodes = 1u32;
        let mut rotation = 0usize;
        loop {
            while tasks.try_join_next().is_some() {}
            if shutdown.is_cancelled() {
                break;
            }
            let now = now_millis();
            if now - last_sweep > (self.lease.as_millis() as i64 / 2).max(1000) {
                last_sweep = now;
                self.sweep_expired_leases(now).await;
                self.persist_health().await;
            }
            if last_refresh.elapsed() >= REFRESH_EVERY {
                last_refresh = Instant::now();
                self.due.all_unknown();
            }
            if last_heartbeat.is_none_or(|at| at.elapsed() >= HEARTBEAT_EVERY) {
                last_heartbeat = Some(Instant::now());
                nodes = self.heartbeat(now, nodes).await;
            }
            let mut local = Local {
                rotation,
                permits: permits.clone(),
                in_flight: in_flight.clone(),
                throttle: std::mem::take(&mut throttle),
                nodes,
                tasks: std::mem::take(&mut tasks),
            };
            let pass = self.dispatch(now, &mut local).await;
            rotation = local.rotation;
            throttle = local.throttle;
            tasks = local.tasks;
            if pass.more_due {
                tokio::task::yield_now().await;
                continue;
            }
            let mut sleep = self.poll_interval;
            if let Some(at) = pass.wake_at {
                let until = Duration::from_millis((at - now_millis()).max(1) as u64);
                sleep = sleep.min(until);
            }
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
        self.drain(tasks, grace).await;
        self.persist_health().await;
        if let Err(error) = self.store.leave(&self.owner).await {
            tracing::warn!(%error, "could not sign off; other nodes notice after the heartbeat ttl");
        }
    }

    /// Announces this node; returns how many nodes share the database now (for budgets).
    async fn heartbeat(&self, now: UnixMillis, previous: u32) -> u32 {
        let ttl = 3 * HEARTBEAT_EVERY.as_millis() as i64;
        match self.store.heartbeat(&self.owner, now, ttl).await {
            Ok(nodes) => {
                if nodes != previous {
                    tracing::info!(
                        nodes,
                        "nodes sharing the database; rate limits and connection pacing are split between them"
                    );
                }
                metrics::gauge!("switchboard_nodes").set(f64::from(nodes));
                self.nodes.set(nodes);
                nodes
            }
            Err(error) => {
                tracing::warn!(%error, "heartbeat failed");
                previous
            }
        }
    }

    /// One pass over the destinations that may have due work.
    async fn dispatch(self: &Arc<Self>, now: UnixMillis, local: &mut Local) -> Pass {
        let Local {
            rotation,
            permits,
            in_flight,
            throttle,
            nodes,
            tasks,
        } = local;
        let nodes = *nodes;
        let mut pass = Pass::default();
        let runtime = self.registry.current();
        let mut sorted: Vec<&String> = runtime.destinations.keys().collect();
        sorted.sort_unstable();
        let mut ids = sorted.clone();
        if !ids.is_empty() {
            let start = *rotation % ids.len();
            ids.rotate_left(start);
        }
        // Round robin that resumes where the last pass ran out of slots, so that with more
        // destinations than slots every one of them is reached in turn.
        *rotation = rotation.wrapping_add(1);
        let hints = self.due.snapshot(ids.into_iter());
        // Fair share of the global slots among destinations with work due now. A destination
        // beyond its share may still claim, but only from the upper half of the free slots:
        // slow or hanging destinations can never take the slots the others need.
        let active = hints
            .iter()
            .filter(|(_, hint)| match hint {
                Hint::At(at) => *at <= now,
                Hint::Unknown => true,
            })
            .count()
            .max(1);
        let fair_share = (self.concurrency / active).max(1);
        let reserve = self.concurrency / 2;
        let mut free = permits.available_permits();
        let mut planned: Vec<Planned<'_>> = Vec::new();
        for (id, hint) in hints {
            if free == 0 {
                pass.more_due = true;
                if let Ok(position) = sorted.binary_search(&id) {
                    *rotation = position;
                }
                break;
            }
            let Some(target) = runtime.destinations.get(id) else {
                continue;
            };
            if !target.enabled {
                continue;
            }
            let due_at = match hint {
                Hint::At(at) => at,
                Hint::Unknown => match self.store.next_due_for(id).await {
                    Ok(next) => {
                        self.due.set(id, next);
                        match next {
                            Some(at) => at,
                            None => continue,
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, destination = %id, "looking up due deliveries failed");
                        pass.wake_at(now + 1000);
                        continue;
                    }
                },
            };
            if due_at > now {
                pass.wake_at(due_at);
                continue;
            }
            let held = lock(in_flight).get(id).copied().unwrap_or(0);
            let probe = match self.health.gate(id, now) {
                Gate::Open => false,
                Gate::Probe if held == 0 => true,
                // Attempts from before the circuit opened are still out: wait for them.
                Gate::Probe => continue,
                Gate::WaitUntil(at) => {
                    pass.wake_at(at);
                    continue;
                }
            };
            let mut room = target
                .max_in_flight
                .saturating_sub(held)
                .min(free)
                .min(CLAIM_BATCH);
            if probe {
                room = room.min(1);
            }
            if held >= fair_share {
                room = room.min(free.saturating_sub(reserve));
            }
            if room == 0 {
                // Full: one of its attempts finishing wakes us.
                continue;
            }
            // The rate is the destination's total: each of the live nodes takes its share.
            let rate = target.rate_limit.map(|r| r / f64::from(nodes.max(1)));
            let tokens = throttle.available(id, rate, Instant::now());
            if tokens == 0 {
                if let Some(wait) = throttle.next_token_in(id) {
                    pass.wake_at(now_millis() + wait.as_millis() as i64);
                }
                continue;
            }
            room = room.min(tokens);
            free -= room;
            planned.push(Planned {
                id,
                room,
                probe,
                ordered: target.ordered,
            });
        }
        if planned.is_empty() {
            return pass;
        }
        // One store call (one transaction on SQLite) claims for every planned destination.
        let lease_until = now + self.lease.as_millis() as i64;
        let claims: Vec<Claim<'_>> = planned
            .iter()
            .map(|p| Claim {
                now,
                limit: p.room,
                owner: &self.owner,
                lease_until,
                exclude: &[],
                destination: Some(p.id.as_str()),
                ordered: p.ordered,
            })
            .collect();
        let batches = match self.store.claim_many(&claims).await {
            Ok(batches) => batches,
            Err(error) => {
                tracing::error!(%error, "claiming deliveries failed; retrying shortly");
                metrics::counter!("switchboard_store_errors_total", "operation" => "claim")
                    .increment(1);
                pass.wake_at(now + 1000);
                return pass;
            }
        };
        for (plan, claimed) in planned.iter().zip(batches) {
            let id = plan.id;
            throttle.spend(id, claimed.len());
            if plan.probe && !claimed.is_empty() {
                self.health.probe_started(id, now);
            }
            if claimed.len() < plan.room {
                // Nothing more is claimable now: learn when something will be.
                match self.store.next_due_for(id).await {
                    // Due but not claimable: held behind its ordering key. A completion of
                    // this destination marks it due again; poll meanwhile.
                    Ok(Some(at)) if at <= now => {
                        let retry = now + self.poll_interval.as_millis() as i64;
                        self.due.set(id, Some(retry));
                        pass.wake_at(retry);
                    }
                    Ok(next) => {
                        self.due.set(id, next);
                        if let Some(at) = next {
                            pass.wake_at(at);
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, destination = %id, "looking up due deliveries failed")
                    }
                }
            } else {
                pass.more_due = true;
            }
            for delivery in claimed {
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    // Cannot happen: no more than the free permits were claimed. The lease
                    // expires and the delivery is claimed again.
                    tracing::error!(delivery = %delivery.id, "no permit for a claimed delivery");
                    continue;
                };
                *lock(in_flight)
                    .entry(delivery.destination.clone())
                    .or_default() += 1;
                let worker = self.clone();
                let in_flight = in_flight.clone();
                tasks.spawn(async move {
                    let destination = delivery.destination.clone();
                    worker.attempt(delivery).await;
                    if let Some(n) = lock(&in_flight).get_mut(&destination) {
                        *n = n.saturating_sub(1);
                    }
                    drop(permit);
                    worker.wake.notify_one();
                });
            }
        }
        pass
    }

    async fn sweep_expired_leases(&self, now: UnixMillis) {
        match self.store.release_leases(None, now).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(released = n, "re-queued deliveries whose lease expired");
                self.due.all_unknown();
            }
            Err(error) => tracing::error!(%error, "could not release expired leases"),
        }
    }

    /// Writes changed circuit states to the store (so they survive restarts and show in the
    /// API of every node).
    pub async fn persist_health(&self) {
        let dirty = self.health.take_dirty();
        if dirty.is_empty() {
            return;
        }
        for (state, count) in self.health.state_counts() {
            metrics::gauge!("switchboard_destination_circuits", "state" => state.as_str())
                .set(count as f64);
        }
        for record in &dirty {
            let destination = record.destination.clone();
            metrics::gauge!("switchboard_destination_consecutive_failures", "destination" => destination.clone())
                .set(f64::from(record.consecutive_failures));
            metrics::gauge!("switchboard_destination_circuit_open", "destination" => destination)
                .set(if record.state == "closed" { 0.0 } else { 1.0 });
        }
        if let Err(error) = self.store.put_health(&dirty).await {
            tracing::error!(%error, "could not record destination health");
        }
    }

    async fn drain(&self, mut tasks: JoinSet<()>, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        while !tasks.is_empty() {
            match tokio::time::timeout_at(deadline, tasks.join_next()).await {
                Ok(_) => {}
                Err(_) => {
                    tracing::warn!(
                        remaining = tasks.len(),
                        "grace period over; abandoning attempts"
                    );
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                }
            }
        }
        self.completer.flush().await;
        match self
            .store
            .release_leases(Some(&self.owner), now_millis())
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(released = n, "handed unfinished deliveries back"),
            Err(error) => {
                tracing::error!(%error, "could not release leases; they expire on their own")
            }
        }
    }

    /// Makes one attempt and queues its completion, inside a span carrying the event's
    /// correlation (so every log line of the attempt has it, and traces link it to the event).
    async fn attempt(&self, delivery: ClaimedDelivery) {
        let span = crate::telemetry::spans::attempt(&delivery);
        self.attempt_in_span(delivery).instrument(span).await
    }

    async fn attempt_in_span(&self, delivery: ClaimedDelivery) {
        let attempt_no = delivery.attempts + 1;
        let run_attempt = delivery.run_attempts + 1;
        let started_at = now_millis();
        let runtime = self.registry.current();
        let target = runtime.destinations.get(&delivery.destination).cloned();
        let refusal = match &target {
            None => Some(format!(
                "destination `{}` is not configured",
                delivery.destination
            )),
            Some(_) if delivery.body_pruned => Some(
                "the event's payload was removed by retention; there is nothing to send".into(),
            ),
            Some(_) => None,
        };
        let (Some(target), None) = (target, refusal.as_ref()) else {
            let error = refusal.unwrap_or_default();
            tracing::warn!(delivery = %delivery.id, %error, "delivery failed");
            let record = Record::unsent(
                started_at,
                "permanent",
                NextStep::Failed,
                error,
                String::new(),
            );
            self.finish(&delivery, record);
            return;
        };
        let route = runtime.route_programs.get(&delivery.route_id).cloned();
        drop(runtime);
        let prepared = match prepare(&target, route, &delivery)
            .instrument(crate::telemetry::spans::route(&delivery.route_id))
            .await
        {
            Ok(Plan::Send(prepared)) => prepared,
            Ok(Plan::Filtered) => {
                tracing::debug!(delivery = %delivery.id, route = %delivery.route_id, "filtered out by the route");
                let error = format!(
                    "not sent: the filter of route `{}` did not match",
                    delivery.route_id
                );
                let record = Record::unsent(
                    started_at,
                    "filtered",
                    NextStep::Filtered,
                    error,
                    target.describe(),
                );
                self.finish(&delivery, record);
                return;
            }
            Err(error) => {
                tracing::warn!(delivery = %delivery.id, destination = %target.id, %error, "transform failed; delivery failed");
                metrics::counter!("switchboard_attempts_total", "destination" => target.id.clone(), "outcome" => "permanent")
                    .increment(1);
                let record = Record::unsent(
                    started_at,
                    "permanent",
                    NextStep::Failed,
                    error,
                    target.describe(),
                );
                self.finish(&delivery, record);
                self.after_exhausted(&target, &delivery, attempt_no, "transform failed");
                return;
            }
        };
        let report = match &target.connector {
            None => {
                let outgoing = crate::telemetry::Outgoing::new(
                    &delivery.correlation,
                    crate::telemetry::spans::current_span_id(),
                );
                self.sender
                    .send(&target, &delivery.id, &prepared, outgoing.as_ref())
                    .await
            }
            Some(connector) => {
                connector
                    .deliver(connectors::Attempt {
                        delivery_id: &delivery.id,
                        client: self.sender.client(),
                        policy: self.sender.policy(),
                        timeout: target.timeout,
                        message: &prepared,
                        connections: self.connections.as_ref(),
                    })
                    .await
            }
        };
        let latency_ms = report.latency.as_millis() as u64;
        metrics::histogram!("switchboard_attempt_duration_seconds", "destination" => target.id.clone())
            .record(report.latency.as_secs_f64());
        let (label, next) = match &report.outcome {
            AttemptOutcome::Delivered => ("delivered", NextStep::Succeeded),
            AttemptOutcome::Permanent => ("permanent", NextStep::Failed),
            AttemptOutcome::Retryable { retry_after } => {
                let delay = target
                    .retry
                    .next_delay(run_attempt, *retry_after, &mut rand::rng());
                match delay {
                    Some(delay) => (
                        "retryable",
                        NextStep::RetryAt(now_millis() + delay.as_millis() as i64),
                    ),
                    None => ("retryable", NextStep::Failed),
                }
            }
        };
        metrics::counter!("switchboard_attempts_total", "destination" => target.id.clone(), "outcome" => label)
            .increment(1);
        let error_text = report.error.clone().unwrap_or_default();
        self.observe_health(&target, &delivery, next == NextStep::Succeeded, &error_text);
        match next {
            NextStep::Filtered => {}
            NextStep::Succeeded => {
                tracing::debug!(delivery = %delivery.id, event = %delivery.event_id, destination = %target.id, attempt = attempt_no, latency_ms, "delivered");
                if delivery.exhausted_before && delivery.source != OPERATIONS_SOURCE {
                    self.operations.emit(
                        "delivery.recovered",
                        delivery.tenant.as_deref(),
                        json!({
                            "delivery_id": delivery.id,
                            "event_id": delivery.event_id,
                            "destination": target.id,
                            "tenant": target.tenant,
                            "attempts": attempt_no,
                        }),
                    );
                }
            }
            NextStep::RetryAt(at) => {
                tracing::info!(delivery = %delivery.id, event = %delivery.event_id, destination = %target.id, attempt = attempt_no, error = %error_text, retry_in_ms = at - now_millis(), "attempt failed; retry scheduled")
            }
            NextStep::Failed => {
                tracing::warn!(delivery = %delivery.id, event = %delivery.event_id, destination = %target.id, attempt = attempt_no, error = %error_text, "delivery failed; dead-lettered");
                self.after_exhausted(&target, &delivery, attempt_no, &error_text);
            }
        }
        self.finish(
            &delivery,
            Record {
                started_at,
                outcome: label,
                next,
                status_code: report.status,
                error: report.error,
                request_url: prepared
                    .rendered
                    .get("url")
                    .map_or_else(|| target.describe(), str::to_owned),
                response_headers: report.headers,
                response_body: report.body_excerpt,
                latency_ms,
            },
        );
    }

    /// Publishes `delivery.exhausted` for a dead-lettered delivery.
    fn after_exhausted(
        &self,
        target: &HttpTarget,
        delivery: &ClaimedDelivery,
        attempts: u32,
        error: &str,
    ) {
        if delivery.source == OPERATIONS_SOURCE {
            // Never report on the delivery of a report: no loops.
            return;
        }
        self.operations.emit(
            "delivery.exhausted",
            delivery.tenant.as_deref(),
            json!({
                "delivery_id": delivery.id,
                "event_id": delivery.event_id,
                "destination": target.id,
                "tenant": target.tenant,
                "attempts": attempts,
                "last_error": error,
            }),
        );
    }

    /// Feeds the circuit breaker; opens, closes and auto-disables as needed.
    fn observe_health(
        &self,
        target: &HttpTarget,
        delivery: &ClaimedDelivery,
        success: bool,
        error: &str,
    ) {
        let now = now_millis();
        let transition = self
            .health
            .record(&target.id, success, (!success).then_some(error), now);
        let loop_guard = delivery.source == OPERATIONS_SOURCE;
        match transition {
            Some(Transition::Opened {
                consecutive_failures,
                last_error,
            }) => {
                tracing::warn!(destination = %target.id, consecutive_failures, "circuit opened; deliveries wait for the cooldown");
                metrics::counter!("switchboard_circuit_opened_total").increment(1);
                if !loop_guard {
                    self.operations.emit(
                        "endpoint.circuit_opened",
                        target.tenant.as_deref(),
                        json!({
                            "destination": target.id,
                            "tenant": target.tenant,
                            "consecutive_failures": consecutive_failures,
                            "last_error": last_error,
                        }),
                    );
                }
            }
            Some(Transition::Closed) => {
                tracing::info!(destination = %target.id, "circuit closed; deliveries resume");
            }
            None => {}
        }
        if success || target.tenant.is_none() {
            return;
        }
        let Some(since) = self.health.failing_since(&target.id) else {
            return;
        };
        if now - since >= self.disable_after.as_millis() as i64 {
            self.operations
                .disable_endpoint(&target.id, since, self.disable_after, error);
        }
    }

    fn finish(&self, delivery: &ClaimedDelivery, record: Record) {
        let status = match record.next {
            NextStep::Succeeded => Some("succeeded"),
            NextStep::Failed => Some("failed"),
            NextStep::Filtered => Some("filtered"),
            NextStep::RetryAt(_) => None,
        };
        if let Some(status) = status {
            metrics::counter!("switchboard_deliveries_finished_total", "destination" => delivery.destination.clone(), "status" => status)
                .increment(1);
        }
        self.completer.submit(Completion {
            lease_owner: self.owner.clone(),
            next: record.next,
            attempt: NewAttempt {
                delivery_id: delivery.id.clone(),
                event_id: delivery.event_id.clone(),
                destination: delivery.destination.clone(),
                attempt: delivery.attempts + 1,
                run_attempt: delivery.run_attempts + 1,
                started_at: record.started_at,
                latency_ms: record.latency_ms,
                outcome: record.outcome,
                status_code: record.status_code,
                error: record.error,
                request_url: record.request_url,
                response_headers: record.response_headers,
                response_body: record.response_body,
            },
        });
    }
}

impl Record {
    /// An attempt that sent nothing (refused before sending, or filtered out).
    fn unsent(
        started_at: UnixMillis,
        outcome: &'static str,
        next: NextStep,
        error: String,
        request_url: String,
    ) -> Self {
        Self {
            started_at,
            outcome,
            next,
            status_code: None,
            error: Some(error),
            request_url,
            response_headers: Vec::new(),
            response_body: Vec::new(),
            latency_ms: 0,
        }
    }
}

/// One attempt's result, as recorded (the attempt numbers follow from the delivery).
struct Record {
    started_at: UnixMillis,
    outcome: &'static str,
    next: NextStep,
    status_code: Option<u16>,
    error: Option<String>,
    request_url: String,
    response_headers: Vec<(String, String)>,
    response_body: Vec<u8>,
    latency_ms: u64,
}

/// What an attempt will do.
enum Plan {
    /// Send this request.
    Send(Prepared),
    /// The route's filter did not match: record it, send nothing.
    Filtered,
}

/// Builds the request: the event's bytes as stored, or the output of the route's transform and
/// then the destination's (endpoint) transform, after the route's filter; and the destination's
/// templates (URL, headers, connector fields) rendered against the event. jq runs on the
/// blocking pool, bounded in time and size; a jq error is the attempt's (permanent) error.
async fn prepare(
    target: &Arc<HttpTarget>,
    route: Option<Arc<crate::transform::RouteProgram>>,
    delivery: &ClaimedDelivery,
) -> Result<Plan, String> {
    let static_rendered = target.templates.render_static();
    let endpoint_transform = target.transform.clone();
    if route.is_none()
        && endpoint_transform.is_none()
        && let Some(rendered) = static_rendered.clone()
    {
        return Ok(Plan::Send(Prepared {
            body: delivery.body.clone(),
            content_type: delivery.content_type.clone(),
            headers: delivery.forward_headers.clone(),
            rendered,
        }));
    }
    let input = crate::transform::event_input(
        &delivery.body,
        delivery.content_type.as_deref(),
        &delivery.forward_headers,
        delivery.event_type.as_deref(),
        &delivery.source,
        delivery.received_at,
    );
    let templates = target.templates.clone();
    type Output = Option<(Option<Value>, crate::template::Rendered)>;
    // One evaluation stack for the filter, transform and templates of this delivery.
    let output = tokio::task::spawn_blocking(move || {
        switchboard_jq::with_eval_stack(|| -> Result<Output, String> {
            let mut input = input;
            let mut body = None;
            if let Some(route) = route {
                match route.apply(&input)? {
                    crate::transform::Routed::Filtered => return Ok(None),
                    crate::transform::Routed::Send(out) => body = out,
                }
            }
            let rendered = match static_rendered {
                Some(rendered) => rendered,
                None => templates.render(&input)?,
            };
            if let Some(transform) = endpoint_transform {
                if let Some(routed) = body.take() {
                    input["body"] = routed;
                }
                let out = transform
                    .run_one(&input, &crate::transform::limits())
                    .map_err(|e| format!("transform failed: {e}"))?;
                body = Some(out);
            }
            Ok(Some((body, rendered)))
        })
    })
    .await
    .map_err(|e| format!("transform did not run: {e}"))??;
    let Some((body, rendered)) = output else {
        return Ok(Plan::Filtered);
    };
    Ok(Plan::Send(match body {
        None => Prepared {
            body: delivery.body.clone(),
            content_type: delivery.content_type.clone(),
            headers: delivery.forward_headers.clone(),
            rendered,
        },
        Some(value) => Prepared {
            body: serde_json::to_vec(&value).map_err(|e| format!("transform output: {e}"))?,
            content_type: Some("application/json".into()),
            headers: delivery.forward_headers.clone(),
            rendered,
        },
    }))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
