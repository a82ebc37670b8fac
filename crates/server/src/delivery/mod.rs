//! The delivery worker: claims due deliveries in batches under a lease, sends each one, and
//! records the outcome.
//!
//! Fairness: deliveries are claimed per destination, never more than the destination's room
//! (`max_in_flight` minus what it holds), so one slow receiver holds at most its own share of
//! the worker and never delays another destination's deliveries. A destination at its cap costs
//! nothing until one of its attempts finishes. Deliveries whose destination is no longer
//! configured stay pending (visible) until it is configured again. The backlog stays in
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
        let mut rotation = 0usize;
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
            // Claim per destination, exactly the room each one has (its in-flight cap minus what
            // it holds, within the free global slots), starting at a rotating destination so
            // that no destination is always served last.
            let runtime = self.registry.current();
            let mut ids: Vec<&String> = runtime.destinations.keys().collect();
            ids.sort_unstable();
            if !ids.is_empty() {
                let start = rotation % ids.len();
                ids.rotate_left(start);
            }
            rotation = rotation.wrapping_add(1);
            let mut free = permits.available_permits();
            let mut more_due = false;
            let mut saturated = false;
            for id in ids {
                if free == 0 {
                    more_due = true;
                    break;
                }
                let Some(target) = runtime.destinations.get(id) else {
                    continue;
                };
                let held = lock(&in_flight).get(id).copied().unwrap_or(0);
                let room = target
                    .max_in_flight
                    .saturating_sub(held)
                    .min(free)
                    .min(CLAIM_BATCH);
                if room == 0 {
                    saturated = true;
                    continue;
                }
                let claim = Claim {
                    now,
                    limit: room,
                    owner: &self.owner,
                    lease_until: now + self.lease.as_millis() as i64,
                    exclude: &[],
                    destination: Some(id),
                };
                let claimed = match self.store.claim_due(&claim).await {
                    Ok(claimed) => claimed,
                    Err(error) => {
                        tracing::error!(%error, destination = %id, "claiming deliveries failed; retrying shortly");
                        Vec::new()
                    }
                };
                more_due |= claimed.len() == room;
                free -= claimed.len().min(free);
                for delivery in claimed {
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        // Cannot happen: no more than the free permits were claimed. The lease
                        // expires and the delivery is claimed again.
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
            }
            if more_due {
                continue;
            }
            // A saturated destination may have due work we did not claim: its next chance comes
            // when one of its attempts finishes (which wakes us), not from polling the clock.
            let sleep = if saturated {
                self.poll_interval
            } else {
                self.idle_sleep().await
            };
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
            // Everything claimable that was due has just been claimed; a due time in the past
            // belongs to a delivery nobody can take now (its destination is not configured), so
            // it must not make the loop spin.
            Ok(Some(due)) if due > now_millis() => {
                Duration::from_millis((due - now_millis()) as u64).min(self.poll_interval)
            }
            _ => self.poll_interval,
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
