//! Pull consumers: bounded concurrency per step, progress heartbeats, and the one place that
//! decides what happens to a message after its step ran ([`decide`]).
//!
//! A message is acked when its step succeeded, nak'ed with a delay when it failed
//! transiently, deferred (nak'ed until GitHub's budget is back, without using up its
//! delivery budget) when GitHub's budget is exhausted, and terminated — after its dead
//! letter is safely stored and the failure recorded on its run — when it failed permanently
//! or used up the application's delivery budget (`nats.max_deliver`). The server's
//! MaxDeliver (`nats.server_max_deliver`) is far above that budget; a message that still
//! exhausts it without an outcome (crashes, drains) is dead-lettered from the server's
//! max-deliveries advisory ([`watch_max_deliveries`]). Undecodable payloads are permanent
//! failures. When the dead letter or its record on the run cannot be stored, the message is
//! nak'ed instead: never lost.
//!
//! Consumers take work only while the kill switches are known and `pause_runs` is off, and
//! steps that call GitHub take none while the fleet-wide "GitHub budget exhausted" time
//! lies ahead. On shutdown the loop stops fetching, lets in-flight steps finish within the
//! drain timeout and hands the rest back with a nak.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use futures::StreamExt as _;
use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use super::envelope::Envelope;
use super::flags::{self, Flags};
use super::outcome::{ErrorKind, StepError};
use super::{Bus, BusError, DEFERRALS_BUCKET, Step, WORK_STREAM, dlq};
use crate::config::NatsSettings;
use crate::domain::RepoRef;
use crate::telemetry;

/// What becomes of a message once its step returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    Ack,
    Nak(Duration),
    /// Nak for the given time without counting the delivery against the budget.
    Defer(Duration),
    Terminate(String),
}

/// Longest delay a nak may ask for; a rate-limit reset further away is retried then.
const MAX_NAK_DELAY: Duration = Duration::from_secs(3600);
/// Shortest deferral, so a reset that is due already does not spin.
const MIN_DEFER: Duration = Duration::from_secs(1);

/// The single decision: ack, nak with delay, defer, or terminate (dead-letter). Never
/// both, never neither. `deferred` deliveries (GitHub budget waits) do not count against
/// `max_deliver`, the application's budget.
pub fn decide(
    result: &Result<(), StepError>,
    delivered: i64,
    deferred: i64,
    max_deliver: i64,
    backoff: &[Duration],
) -> Disposition {
    let failed = delivered.saturating_sub(deferred).max(1);
    match result {
        Ok(()) => Disposition::Ack,
        Err(StepError::Permanent { message, .. }) => Disposition::Terminate(message.clone()),
        Err(StepError::BudgetExhausted { wait, .. }) => {
            Disposition::Defer((*wait).clamp(MIN_DEFER, MAX_NAK_DELAY))
        }
        Err(StepError::Transient { message, .. }) if failed >= max_deliver => {
            Disposition::Terminate(format!(
                "gave up after {failed} failed deliveries, last error: {message}"
            ))
        }
        Err(StepError::Transient { retry_after, .. }) => {
            let index = usize::try_from(failed.saturating_sub(1)).unwrap_or(0);
            let scheduled = backoff
                .get(index)
                .or(backoff.last())
                .copied()
                .unwrap_or(Duration::from_secs(5));
            Disposition::Nak(retry_after.unwrap_or(scheduled).min(MAX_NAK_DELAY))
        }
    }
}

/// A step that was dead-lettered, as the workflow needs to record it on its run.
#[derive(Debug, Clone)]
pub struct DeadLettered {
    pub step: Step,
    /// The run the payload names, even when it did not decode.
    pub run_id: Option<String>,
    /// The repository the payload names, even when it did not decode.
    pub repo: Option<RepoRef>,
    pub reason: String,
}

impl DeadLettered {
    fn from_payload(step: Step, payload: &[u8], reason: String) -> Self {
        DeadLettered {
            step,
            run_id: Envelope::peek_run_id(payload),
            repo: Envelope::peek_repo(payload),
            reason,
        }
    }
}

/// The workflow side of a consumer.
pub trait StepHandler: Send + Sync + 'static {
    /// Runs one step. Must be idempotent: JetStream delivers at least once.
    fn handle(&self, envelope: Envelope) -> BoxFuture<'static, Result<(), StepError>>;
    /// Records on the run that a step was dead-lettered (the dead letter is already stored).
    fn dead_lettered(&self, letter: DeadLettered) -> BoxFuture<'static, Result<(), StepError>>;
}

/// Consumer settings a loop needs.
#[derive(Clone)]
pub struct ConsumerOptions {
    pub step: Step,
    pub concurrency: usize,
    pub nats: NatsSettings,
    pub drain_timeout: Duration,
}

/// Whether a step calls GitHub (and so waits while GitHub's budget is exhausted).
fn uses_github(step: Step) -> bool {
    !matches!(step, Step::Review)
}

/// Consumes `step` until `shutdown`, then drains. Returns when every in-flight step ended;
/// an error when the consumer cannot be bound any more (the worker treats that as fatal).
pub async fn run_step_consumer(
    bus: Bus,
    options: ConsumerOptions,
    handler: Arc<dyn StepHandler>,
    flags: Flags,
    shutdown: CancellationToken,
) -> Result<(), BusError> {
    let step = options.step;
    let stream = bus
        .js
        .get_stream(WORK_STREAM)
        .await
        .map_err(|e| BusError::nats("binding GUARDIAN_WORK", e))?;
    let bind = || async {
        stream
            .get_consumer::<jetstream::consumer::pull::Config>(&step.consumer())
            .await
            .map_err(|e| BusError::nats(format!("binding consumer {}", step.consumer()), e))
    };
    let consumer = bind().await?;
    let deferrals = bus.kv(DEFERRALS_BUCKET).await?;
    let permits = Arc::new(Semaphore::new(options.concurrency));
    let tracker = TaskTracker::new();
    let abort = CancellationToken::new();
    let mut fetch_failures = 0u32;

    let idle = |pause: Duration| {
        let shutdown = shutdown.clone();
        async move {
            tokio::select! {
                _ = shutdown.cancelled() => false,
                _ = tokio::time::sleep(pause) => true,
            }
        }
    };
    'fetching: loop {
        if shutdown.is_cancelled() {
            break;
        }
        // A consumer that is gone for good (deleted) ends this loop with an error instead
        // of failing quietly forever; while NATS is away, failures are just retried.
        if fetch_failures >= 5 {
            let connected =
                bus.client.connection_state() == async_nats::connection::State::Connected;
            match bind().await {
                Err(gone) if connected => {
                    tracker.close();
                    tracker.wait().await;
                    return Err(gone);
                }
                _ => fetch_failures = 0,
            }
        }
        // Fail closed: unknown flags read as paused.
        if !flags.may_take_work() {
            if idle(Duration::from_millis(250)).await {
                continue 'fetching;
            }
            break 'fetching;
        }
        if uses_github(step)
            && let Some(wait) = flags
                .snapshot()
                .github_wait(time::OffsetDateTime::now_utc())
        {
            // Nobody calls GitHub before its budget is back; look again at least every few
            // seconds so an operator clearing the key takes effect quickly.
            tracing::debug!(step = %step, ?wait, "GitHub budget exhausted; not fetching");
            if idle(wait.min(Duration::from_secs(5))).await {
                continue 'fetching;
            }
            break 'fetching;
        }
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break 'fetching,
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break 'fetching },
        };
        // Fetch as many messages as there are free slots, so nothing waits in a client-side
        // buffer where a drain could not hand it back.
        let extra = permits.available_permits();
        let mut slots = vec![permit];
        for _ in 0..extra {
            match permits.clone().try_acquire_owned() {
                Ok(p) => slots.push(p),
                Err(_) => break,
            }
        }
        let batch = consumer
            .fetch()
            .max_messages(slots.len())
            .expires(Duration::from_secs(2))
            .messages();
        let mut batch = tokio::select! {
            _ = shutdown.cancelled() => break 'fetching,
            b = batch => match b {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(step = %step, error.message = %e, "fetch failed; retrying");
                    telemetry::metrics().error("nats");
                    fetch_failures += 1;
                    drop(slots);
                    if idle(Duration::from_secs(1)).await {
                        continue 'fetching;
                    }
                    break 'fetching;
                }
            },
        };
        while let Some(next) = batch.next().await {
            let message = match next {
                Ok(m) => {
                    fetch_failures = 0;
                    m
                }
                Err(e) => {
                    // Not a plain expiry (that ends the batch quietly): counted like a
                    // failed fetch, so a consumer deleted under us is noticed.
                    tracing::debug!(step = %step, error.message = %e, "fetch ended");
                    fetch_failures += 1;
                    break;
                }
            };
            let Some(slot) = slots.pop() else { break };
            let ctx = MessageContext {
                bus: bus.clone(),
                options: options.clone(),
                handler: handler.clone(),
                abort: abort.clone(),
                flags: flags.clone(),
                deferrals: deferrals.clone(),
            };
            tracker.spawn(async move {
                ctx.process(message).await;
                drop(slot);
            });
        }
    }

    tracker.close();
    if tokio::time::timeout(options.drain_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(step = %step, in_flight = tracker.len(), "drain timeout; handing in-flight steps back");
        abort.cancel();
        tracker.wait().await;
    }
    Ok(())
}

struct MessageContext {
    bus: Bus,
    options: ConsumerOptions,
    handler: Arc<dyn StepHandler>,
    abort: CancellationToken,
    flags: Flags,
    deferrals: async_nats::jetstream::kv::Store,
}

impl MessageContext {
    async fn process(self, message: jetstream::Message) {
        let step = self.options.step;
        let (delivered, stream_seq) = message
            .info()
            .map(|i| (i.delivered, i.stream_sequence))
            .unwrap_or((1, 0));
        let parent = telemetry::extract(message.headers.as_ref());
        let decoded = Envelope::decode(&message.payload, step);
        let run_id = match &decoded {
            Ok(env) => Some(env.run_id.clone()),
            Err(_) => Envelope::peek_run_id(&message.payload),
        };
        let repo = match &decoded {
            Ok(env) => env.task.repo().cloned(),
            Err(_) => Envelope::peek_repo(&message.payload),
        }
        .map(|r| r.full_name());
        let span = telemetry::step_span(
            step.as_str(),
            run_id.as_deref().unwrap_or(""),
            repo.as_deref(),
            parent,
        );
        let metrics = telemetry::metrics();
        metrics
            .steps_inflight
            .with_label_values(&[step.as_str()])
            .inc();
        let started = std::time::Instant::now();

        async {
            let work = {
                let decoded = decoded.clone();
                let handler = self.handler.clone();
                async move {
                    match decoded {
                        Ok(env) => handler.handle(env).await,
                        Err(e) => Err(StepError::from(e)),
                    }
                }
            };
            let heartbeat = heartbeat(&message, self.options.nats.ack_wait / 3);
            let result = tokio::select! {
                r = work => r,
                _ = heartbeat => unreachable_heartbeat(),
                _ = self.abort.cancelled() => {
                    // Drain timeout: the step is abandoned like a crash would abandon it,
                    // and handed back at once so another worker picks it up.
                    let _ = message.ack_with(AckKind::Nak(None)).await;
                    tracing::warn!("step handed back unfinished at shutdown");
                    metrics.observe_step(step.as_str(), "retry", started.elapsed());
                    return;
                }
            };
            let deferral_key = format!("{}.{stream_seq}", step.consumer());
            let deferred = match &result {
                Err(StepError::Transient { .. }) if delivered > 1 => {
                    read_deferrals(&self.deferrals, &deferral_key).await
                }
                _ => 0,
            };
            let disposition = decide(
                &result,
                delivered,
                deferred,
                self.options.nats.max_deliver,
                &self.options.nats.backoff,
            );
            if let Err(e) = &result {
                metrics.error(e.kind().as_str());
                tracing::warn!(
                    error.message = %e,
                    error.cause_chain = ?e,
                    delivered,
                    deferred,
                    disposition = ?disposition,
                    "step failed"
                );
            }
            let outcome = match disposition {
                Disposition::Ack => {
                    if let Err(e) = message.ack().await {
                        tracing::warn!(error.message = %e, "ack failed; the step will be redelivered");
                    }
                    "ok"
                }
                Disposition::Nak(delay) => {
                    let _ = message.ack_with(AckKind::Nak(Some(delay))).await;
                    "retry"
                }
                Disposition::Defer(wait) => {
                    let fleet_wide = matches!(
                        result,
                        Err(StepError::BudgetExhausted {
                            fleet_wide: true,
                            ..
                        })
                    );
                    self.defer(&message, &deferral_key, wait, fleet_wide).await;
                    "retry"
                }
                Disposition::Terminate(reason) => {
                    self.terminate(&message, stream_seq, delivered, reason).await
                }
            };
            metrics.observe_step(step.as_str(), outcome, started.elapsed());
        }
        .instrument(span)
        .await;
        metrics
            .steps_inflight
            .with_label_values(&[step.as_str()])
            .dec();
    }

    /// Hands the message back until GitHub's budget returns, tells the fleet (when the
    /// whole budget is spent, not only the write budget), and notes the deferral so it does
    /// not count against the message's delivery budget.
    async fn defer(
        &self,
        message: &jetstream::Message,
        key: &str,
        wait: Duration,
        fleet_wide: bool,
    ) {
        if fleet_wide
            && let Err(e) = flags::record_budget_exhausted(&self.bus, &self.flags, wait).await
        {
            tracing::warn!(error.message = %e, "cannot record the GitHub budget fleet-wide");
        }
        if let Err(e) = add_deferral(&self.deferrals, key).await {
            tracing::warn!(error.message = %e, "cannot note the deferral; it counts as a failed delivery");
        }
        let _ = message.ack_with(AckKind::Nak(Some(wait))).await;
    }

    /// Dead-letters, records the failure on the run, then terminates. When the dead letter
    /// or its record on the run cannot be stored the message is nak'ed instead, so it is
    /// never lost; the redelivery dead-letters it again (deduplicated).
    async fn terminate(
        &self,
        message: &jetstream::Message,
        stream_seq: u64,
        delivered: i64,
        reason: String,
    ) -> &'static str {
        let step = self.options.step;
        let letter = dlq::DeadLetter::new(
            step,
            message.subject.as_str(),
            &message.payload,
            message.headers.as_ref(),
            stream_seq,
            delivered,
            &reason,
        );
        let retry_later = || async {
            let _ = message
                .ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
                .await;
            "retry"
        };
        if let Err(e) = dlq::publish(&self.bus, &letter).await {
            tracing::error!(error.message = %e, error.cause_chain = ?e, "cannot store dead letter; retrying the step later");
            return retry_later().await;
        }
        tracing::error!(reason = %reason, dlq_subject = %step.dlq_subject(), "step dead-lettered");
        let record = DeadLettered::from_payload(step, &message.payload, reason);
        if let Err(e) = self.handler.dead_lettered(record).await {
            tracing::error!(error.message = %e, error.cause_chain = ?e, "dead letter stored but not recorded on its run; retrying later");
            return retry_later().await;
        }
        let _ = message.ack_with(AckKind::Term).await;
        "failed"
    }
}

async fn read_deferrals(store: &async_nats::jetstream::kv::Store, key: &str) -> i64 {
    match store.get(key).await {
        Ok(Some(v)) => String::from_utf8_lossy(&v).trim().parse().unwrap_or(0),
        Ok(None) => 0,
        Err(e) => {
            tracing::warn!(error.message = %e, "cannot read deferrals; counting every delivery");
            0
        }
    }
}

async fn add_deferral(store: &async_nats::jetstream::kv::Store, key: &str) -> Result<(), BusError> {
    for attempt in 0..8u32 {
        let entry = store
            .entry(key)
            .await
            .map_err(|e| BusError::nats("reading deferrals", e))?;
        let (count, revision) = match &entry {
            Some(e) if e.operation == async_nats::jetstream::kv::Operation::Put => (
                String::from_utf8_lossy(&e.value)
                    .trim()
                    .parse::<i64>()
                    .unwrap_or(0),
                Some(e.revision),
            ),
            Some(e) => (0, Some(e.revision)),
            None => (0, None),
        };
        let value = (count + 1).to_string().into();
        let written = match revision {
            Some(rev) => match store.update(key, value, rev).await {
                Ok(_) => true,
                Err(e)
                    if e.kind()
                        == async_nats::jetstream::kv::UpdateErrorKind::WrongLastRevision =>
                {
                    false
                }
                Err(e) => return Err(BusError::nats("noting a deferral", e)),
            },
            None => match store.create(key, value).await {
                Ok(_) => true,
                Err(e) if e.kind() == async_nats::jetstream::kv::CreateErrorKind::AlreadyExists => {
                    false
                }
                Err(e) => return Err(BusError::nats("noting a deferral", e)),
            },
        };
        if written {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
    }
    Err(BusError::nats(
        "noting a deferral",
        "the counter kept changing",
    ))
}

/// Dead-letters messages the server gave up on: when a message exhausts the server's
/// MaxDeliver without an outcome (its last delivery crashed or was handed back), JetStream
/// publishes a max-deliveries advisory and never delivers it again. One worker (queue
/// group) stores its dead letter with the reason, records it on its run and removes it from
/// `GUARDIAN_WORK`. Runs until `shutdown`.
pub async fn watch_max_deliveries(
    bus: Bus,
    handler: Arc<dyn StepHandler>,
    shutdown: CancellationToken,
) -> Result<(), BusError> {
    let subject = format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{WORK_STREAM}.*");
    let mut advisories = bus
        .client
        .queue_subscribe(subject.clone(), "guardian-advisories".into())
        .await
        .map_err(|e| BusError::nats(format!("subscribing to {subject}"), e))?;
    loop {
        let advisory = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            a = advisories.next() => match a {
                Some(a) => a,
                None => return Err(BusError::nats(format!("subscription to {subject}"), "ended")),
            },
        };
        if let Err(e) = stranded(&bus, handler.as_ref(), &advisory.payload).await {
            tracing::error!(error.message = %e, error.cause_chain = ?e, "stranded message not dead-lettered; the sweeper ends its run");
        }
    }
}

#[derive(serde::Deserialize)]
struct MaxDeliveriesAdvisory {
    consumer: String,
    stream_seq: u64,
    deliveries: i64,
}

async fn stranded(bus: &Bus, handler: &dyn StepHandler, payload: &[u8]) -> Result<(), BusError> {
    let advisory: MaxDeliveriesAdvisory = serde_json::from_slice(payload)
        .map_err(|e| BusError::nats("reading a max-deliveries advisory", e))?;
    let Some(step) = Step::ALL
        .into_iter()
        .find(|s| s.consumer() == advisory.consumer)
    else {
        return Ok(());
    };
    let stream = bus
        .js
        .get_stream(WORK_STREAM)
        .await
        .map_err(|e| BusError::nats("binding GUARDIAN_WORK", e))?;
    let message = match stream.get_raw_message(advisory.stream_seq).await {
        Ok(m) => m,
        // Gone already: another worker handled the same advisory, or it was acked late.
        Err(e) => {
            tracing::debug!(error.message = %e, seq = advisory.stream_seq, "stranded message already gone");
            return Ok(());
        }
    };
    let reason = format!(
        "delivered {} times (the server's limit) without an outcome: every delivery crashed, timed out or was handed back",
        advisory.deliveries
    );
    let letter = dlq::DeadLetter::new(
        step,
        message.subject.as_str(),
        &message.payload,
        Some(&message.headers),
        advisory.stream_seq,
        advisory.deliveries,
        &reason,
    );
    dlq::publish(bus, &letter).await?;
    tracing::error!(reason = %reason, dlq_subject = %step.dlq_subject(), "stranded step dead-lettered");
    handler
        .dead_lettered(DeadLettered::from_payload(step, &message.payload, reason))
        .await
        .map_err(|e| BusError::nats("recording a stranded step on its run", e))?;
    stream
        .delete_message(advisory.stream_seq)
        .await
        .map_err(|e| BusError::nats("removing a dead-lettered message", e))?;
    Ok(())
}

/// Tells the server the step is still being worked on, so AckWait does not expire.
async fn heartbeat(message: &jetstream::Message, every: Duration) {
    let every = every.max(Duration::from_millis(200));
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = message.ack_with(AckKind::Progress).await {
            tracing::debug!(error.message = %e, "progress heartbeat failed");
        }
    }
}

fn unreachable_heartbeat() -> Result<(), StepError> {
    // `heartbeat` loops forever; this arm exists only to satisfy `select!`.
    Err(StepError::transient(
        ErrorKind::Nats,
        "heartbeat loop ended",
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: [Duration; 3] = [
        Duration::from_secs(1),
        Duration::from_secs(5),
        Duration::from_secs(30),
    ];

    fn check(result: Result<(), StepError>, delivered: i64, expect: Disposition) {
        assert_eq!(decide(&result, delivered, 0, 5, &BACKOFF), expect);
    }

    #[test]
    fn success_acks() {
        check(Ok(()), 1, Disposition::Ack);
    }

    #[test]
    fn permanent_failures_terminate_at_once_with_their_reason() {
        check(
            Err(StepError::permanent(
                ErrorKind::Decode,
                "payload is not JSON",
            )),
            1,
            Disposition::Terminate("payload is not JSON".into()),
        );
    }

    #[test]
    fn transient_failures_follow_the_backoff_then_retry_after() {
        let t = || Err(StepError::transient(ErrorKind::Github, "502", None));
        check(t(), 1, Disposition::Nak(Duration::from_secs(1)));
        check(t(), 2, Disposition::Nak(Duration::from_secs(5)));
        check(t(), 4, Disposition::Nak(Duration::from_secs(30)));
        check(
            Err(StepError::transient(
                ErrorKind::Github,
                "secondary limit",
                Some(Duration::from_secs(42)),
            )),
            1,
            Disposition::Nak(Duration::from_secs(42)),
        );
        check(
            Err(StepError::transient(
                ErrorKind::Github,
                "secondary limit",
                Some(Duration::from_secs(86_400)),
            )),
            1,
            Disposition::Nak(MAX_NAK_DELAY),
        );
    }

    #[test]
    fn transient_failures_terminate_when_the_application_budget_is_used_up() {
        let d = decide(
            &Err(StepError::transient(ErrorKind::Nats, "timeout", None)),
            5,
            0,
            5,
            &BACKOFF,
        );
        assert!(
            matches!(d, Disposition::Terminate(r) if r.contains("gave up after 5 failed deliveries"))
        );
    }

    #[test]
    fn budget_waits_defer_and_never_use_up_the_budget() {
        let exhausted = || {
            Err(StepError::BudgetExhausted {
                message: "rate limited".into(),
                wait: Duration::from_secs(600),
                fleet_wide: true,
                source: None,
            })
        };
        // Far past the application budget, a budget wait still only defers.
        assert_eq!(
            decide(&exhausted(), 50, 0, 5, &BACKOFF),
            Disposition::Defer(Duration::from_secs(600))
        );
        // Deliveries that were deferrals do not count: 7 deliveries, 4 deferred = 3 failures.
        let t = Err(StepError::transient(ErrorKind::Github, "502", None));
        assert_eq!(
            decide(&t, 7, 4, 5, &BACKOFF),
            Disposition::Nak(Duration::from_secs(30))
        );
        assert!(matches!(
            decide(&t, 9, 4, 5, &BACKOFF),
            Disposition::Terminate(_)
        ));
    }
}
