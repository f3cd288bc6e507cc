//! Pull consumers: bounded concurrency per step, progress heartbeats, and the one place that
//! decides what happens to a message after its step ran ([`decide`]).
//!
//! A message is acked when its step succeeded, nak'ed with a delay when it failed
//! transiently, and terminated — after its dead letter is safely stored and the failure
//! recorded on its run — when it failed permanently or ran out of deliveries. Undecodable
//! payloads are permanent failures. On shutdown the loop stops fetching, lets in-flight
//! steps finish within the drain timeout and hands the rest back with a nak.

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
use super::flags::Flags;
use super::{Bus, BusError, Step, WORK_STREAM, dlq};
use crate::config::NatsSettings;
use crate::telemetry;
use crate::workflow::error::StepError;

/// What becomes of a message once its step returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    Ack,
    Nak(Duration),
    Terminate(String),
}

/// Longest delay a nak may ask for; a rate-limit reset further away is retried then.
const MAX_NAK_DELAY: Duration = Duration::from_secs(3600);

/// The single decision: ack, nak with delay, or terminate (dead-letter). Never both, never
/// neither.
pub fn decide(
    result: &Result<(), StepError>,
    delivered: i64,
    max_deliver: i64,
    backoff: &[Duration],
) -> Disposition {
    match result {
        Ok(()) => Disposition::Ack,
        Err(StepError::Permanent { message, .. }) => Disposition::Terminate(message.clone()),
        Err(StepError::Transient { message, .. }) if delivered >= max_deliver => {
            Disposition::Terminate(format!(
                "gave up after {delivered} deliveries, last error: {message}"
            ))
        }
        Err(StepError::Transient { retry_after, .. }) => {
            let index = usize::try_from(delivered.saturating_sub(1)).unwrap_or(0);
            let scheduled = backoff
                .get(index)
                .or(backoff.last())
                .copied()
                .unwrap_or(Duration::from_secs(5));
            Disposition::Nak(retry_after.unwrap_or(scheduled).min(MAX_NAK_DELAY))
        }
    }
}

/// The workflow side of a consumer.
pub trait StepHandler: Send + Sync + 'static {
    /// Runs one step. Must be idempotent: JetStream delivers at least once.
    fn handle(&self, envelope: Envelope) -> BoxFuture<'static, Result<(), StepError>>;
    /// Records on the run that a step was dead-lettered (the dead letter is already stored).
    fn dead_lettered(
        &self,
        run_id: Option<String>,
        envelope: Option<Envelope>,
        reason: String,
    ) -> BoxFuture<'static, Result<(), StepError>>;
}

/// Consumer settings a loop needs.
#[derive(Clone)]
pub struct ConsumerOptions {
    pub step: Step,
    pub concurrency: usize,
    pub nats: NatsSettings,
    pub drain_timeout: Duration,
}

/// Consumes `step` until `shutdown`, then drains. Returns when every in-flight step ended.
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
    let consumer: jetstream::consumer::PullConsumer =
        stream
            .get_consumer(&step.consumer())
            .await
            .map_err(|e| BusError::nats(format!("binding consumer {}", step.consumer()), e))?;
    let permits = Arc::new(Semaphore::new(options.concurrency));
    let tracker = TaskTracker::new();
    let abort = CancellationToken::new();

    'fetching: loop {
        if shutdown.is_cancelled() {
            break;
        }
        if flags.snapshot().pause_runs {
            tokio::select! {
                _ = shutdown.cancelled() => break 'fetching,
                _ = tokio::time::sleep(Duration::from_millis(500)) => continue 'fetching,
            }
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
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue 'fetching;
                }
            },
        };
        while let Some(next) = batch.next().await {
            let message = match next {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(step = %step, error.message = %e, "fetch ended");
                    break;
                }
            };
            let Some(slot) = slots.pop() else { break };
            let ctx = MessageContext {
                bus: bus.clone(),
                options: options.clone(),
                handler: handler.clone(),
                abort: abort.clone(),
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
        let repo = decoded
            .as_ref()
            .ok()
            .and_then(|e| e.task.repo())
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
            let disposition = decide(
                &result,
                delivered,
                self.options.nats.max_deliver,
                &self.options.nats.backoff,
            );
            if let Err(e) = &result {
                metrics.error(e.kind().as_str());
                tracing::warn!(
                    error.message = %e,
                    error.cause_chain = ?e,
                    delivered,
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
                Disposition::Terminate(reason) => {
                    self.terminate(&message, stream_seq, delivered, run_id, decoded.ok(), reason)
                        .await
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

    /// Dead-letters, records the failure on the run, then terminates. When the dead letter
    /// cannot be stored the message is nak'ed instead, so it is never lost.
    async fn terminate(
        &self,
        message: &jetstream::Message,
        stream_seq: u64,
        delivered: i64,
        run_id: Option<String>,
        envelope: Option<Envelope>,
        reason: String,
    ) -> &'static str {
        let step = self.options.step;
        let letter = dlq::DeadLetter::from_message(step, message, stream_seq, delivered, &reason);
        if let Err(e) = dlq::publish(&self.bus, &letter).await {
            tracing::error!(error.message = %e, "cannot store dead letter; retrying the step later");
            let _ = message
                .ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
                .await;
            return "retry";
        }
        tracing::error!(reason = %reason, dlq_subject = %format!("guardian.dlq.{step}"), "step dead-lettered");
        if let Err(e) = self.handler.dead_lettered(run_id, envelope, reason).await {
            tracing::error!(error.message = %e, "dead letter stored but not recorded on its run");
        }
        let _ = message.ack_with(AckKind::Term).await;
        "failed"
    }
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
        crate::workflow::error::ErrorKind::Nats,
        "heartbeat loop ended",
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::error::ErrorKind;

    const BACKOFF: [Duration; 3] = [
        Duration::from_secs(1),
        Duration::from_secs(5),
        Duration::from_secs(30),
    ];

    fn check(result: Result<(), StepError>, delivered: i64, expect: Disposition) {
        assert_eq!(decide(&result, delivered, 5, &BACKOFF), expect);
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
                "rate limited",
                Some(Duration::from_secs(42)),
            )),
            1,
            Disposition::Nak(Duration::from_secs(42)),
        );
        check(
            Err(StepError::transient(
                ErrorKind::Github,
                "rate limited",
                Some(Duration::from_secs(86_400)),
            )),
            1,
            Disposition::Nak(MAX_NAK_DELAY),
        );
    }

    #[test]
    fn transient_failures_terminate_on_the_last_delivery() {
        let d = decide(
            &Err(StepError::transient(ErrorKind::Nats, "timeout", None)),
            5,
            5,
            &BACKOFF,
        );
        assert!(matches!(d, Disposition::Terminate(r) if r.contains("gave up after 5 deliveries")));
    }
}
