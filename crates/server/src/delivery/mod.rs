//! The delivery worker: claims due deliveries in batches under a lease, sends each one, and
//! records the outcome.
//!
//! Fairness: a destination's in-flight attempts are capped (`max_in_flight`), and destinations
//! at their cap are excluded from the next claim, so one slow receiver can hold at most its own
//! share of the worker and never delays another destination's deliveries. The backlog stays in
//! the store: at most `concurrency` deliveries are in memory at any time.

pub mod completer;
pub mod destinations;
pub mod sender;
pub mod ssrf;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_core::AttemptOutcome;
use switchboard_core::time::now_millis;
use switchboard_store::{Claim, ClaimedDelivery, Completion, NewAttempt, NextStep, Store};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use self::completer::CompleterHandle;
use self::sender::Sender;

/// Largest number of deliveries claimed in one statement.
const CLAIM_BATCH: usize = 256;

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
    /// Lease owner identity.
    pub owner: String,
    /// Lease length.
    pub lease: Duration,
    /// Idle poll interval.
    pub poll_interval: Duration,
    /// Global attempt concurrency.
    pub concurrency: usize,
}

/// Per-destination count of claimed-but-unfinished deliveries.
type InFlight = Arc<Mutex<HashMap<String, usize>>>;

impl Worker {
    /// Runs until `shutdown` is cancelled, then waits up to `grace` for in-flight attempts,
    /// aborts the rest and hands their leases back.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken, grace: Duration) {
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let in_flight: InFlight = Arc::default();
        let mut tasks = JoinSet::new();
        let mut last_sweep = now_millis();
        loop {
            while tasks.try_join_next().is_some() {}
            if shutdown.is_cancelled() {
                break;
            }
            let now = now_millis();
            if now - last_sweep > (self.lease.as_millis() as i64 / 2).max(1000) {
                last_sweep = now;
                match self.store.release_leases(None, now).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::warn!(released = n, "re-queued deliveries whose lease expired")
                    }
                    Err(error) => tracing::error!(%error, "could not release expired leases"),
                }
            }
            let capacity = permits.available_permits().min(CLAIM_BATCH);
            let claimed = if capacity == 0 {
                Vec::new()
            } else {
                let exclude = self.saturated(&in_flight);
                let claim = Claim {
                    now,
                    limit: capacity,
                    owner: &self.owner,
                    lease_until: now + self.lease.as_millis() as i64,
                    exclude: &exclude,
                };
                match self.store.claim_due(&claim).await {
                    Ok(claimed) => claimed,
                    Err(error) => {
                        tracing::error!(%error, "claiming deliveries failed; retrying shortly");
                        Vec::new()
                    }
                }
            };
            let full_batch = capacity > 0 && claimed.len() == capacity;
            for delivery in claimed {
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    // Cannot happen: we claimed no more than the free permits. Hand it back.
                    tracing::error!(delivery = %delivery.id, "no permit for a claimed delivery");
                    continue;
                };
                *lock(&in_flight)
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
            if full_batch {
                continue;
            }
            let sleep = self.idle_sleep().await;
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
        self.drain(tasks, grace).await;
    }

    /// How long to sleep when there is no immediately due work.
    async fn idle_sleep(&self) -> Duration {
        match self.store.next_due_at().await {
            Ok(Some(due)) => {
                let wait = (due - now_millis()).max(0) as u64;
                Duration::from_millis(wait).min(self.poll_interval)
            }
            _ => self.poll_interval,
        }
    }

    fn saturated(&self, in_flight: &InFlight) -> Vec<String> {
        let runtime = self.registry.current();
        lock(in_flight)
            .iter()
            .filter(|(id, n)| {
                runtime
                    .destinations
                    .get(*id)
                    .is_some_and(|target| **n >= target.max_in_flight)
            })
            .map(|(id, _)| id.clone())
            .collect()
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

    /// Makes one attempt and queues its completion.
    async fn attempt(&self, delivery: ClaimedDelivery) {
        let attempt_no = delivery.attempts + 1;
        let run_attempt = delivery.run_attempts + 1;
        let started_at = now_millis();
        let target = self
            .registry
            .current()
            .destinations
            .get(&delivery.destination)
            .cloned();
        let Some(target) = target else {
            let error = format!("destination `{}` is not configured", delivery.destination);
            tracing::warn!(delivery = %delivery.id, %error, "delivery failed");
            self.finish(
                &delivery,
                attempt_no,
                run_attempt,
                started_at,
                "permanent",
                NextStep::Failed,
                None,
                Some(error),
                String::new(),
                Vec::new(),
                Vec::new(),
                0,
            );
            return;
        };
        let report = self
            .sender
            .send(
                &target,
                &delivery.id,
                &delivery.body,
                delivery.content_type.as_deref(),
            )
            .await;
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
        match next {
            NextStep::Succeeded => {
                tracing::debug!(delivery = %delivery.id, event = %delivery.event_id, destination = %target.id, attempt = attempt_no, latency_ms, "delivered")
            }
            NextStep::RetryAt(at) => {
                tracing::info!(delivery = %delivery.id, event = %delivery.event_id, destination = %target.id, attempt = attempt_no, error = report.error.as_deref().unwrap_or(""), retry_in_ms = at - now_millis(), "attempt failed; retry scheduled")
            }
            NextStep::Failed => {
                tracing::warn!(delivery = %delivery.id, event = %delivery.event_id, destination = %target.id, attempt = attempt_no, error = report.error.as_deref().unwrap_or(""), "delivery failed; dead-lettered")
            }
        }
        self.finish(
            &delivery,
            attempt_no,
            run_attempt,
            started_at,
            label,
            next,
            report.status,
            report.error,
            target.url.to_string(),
            report.headers,
            report.body_excerpt,
            latency_ms,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        delivery: &ClaimedDelivery,
        attempt: u32,
        run_attempt: u32,
        started_at: i64,
        outcome: &'static str,
        next: NextStep,
        status_code: Option<u16>,
        error: Option<String>,
        request_url: String,
        response_headers: Vec<(String, String)>,
        response_body: Vec<u8>,
        latency_ms: u64,
    ) {
        let status = match next {
            NextStep::Succeeded => Some("succeeded"),
            NextStep::Failed => Some("failed"),
            NextStep::RetryAt(_) => None,
        };
        if let Some(status) = status {
            metrics::counter!("switchboard_deliveries_finished_total", "destination" => delivery.destination.clone(), "status" => status)
                .increment(1);
        }
        self.completer.submit(Completion {
            lease_owner: self.owner.clone(),
            next,
            attempt: NewAttempt {
                delivery_id: delivery.id.clone(),
                event_id: delivery.event_id.clone(),
                destination: delivery.destination.clone(),
                attempt,
                run_attempt,
                started_at,
                latency_ms,
                outcome,
                status_code,
                error,
                request_url,
                response_headers,
                response_body,
            },
        });
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
