//! Webhook scans waiting for their coalescing window to end, kept as messages in the
//! work-queue stream `GUARDIAN_WEBHOOK_SCANS` (subject `guardian.webhook.scan`), so a scan
//! does not depend on the worker that received its delivery staying alive.
//!
//! The delivery that opens a repository's window publishes one [`PendingScan`] (deduplicated
//! by its `Nats-Msg-Id`) before it is answered. Every worker with webhooks configured pulls
//! from the durable consumer `guardian-webhook-scan`: a scan whose window is still open is
//! handed back with a nak delayed until the window's end — held by no worker meanwhile, so
//! a worker dying inside the window loses nothing — and a due scan is started through
//! `guardian.run` like any other run, then acknowledged. When a run of the repository is
//! still active (it may have read the repository before this delivery), the scan waits for
//! it to end and then starts its own: a push is never folded into a run that began before
//! it. A worker dying while it starts one leaves the message unacknowledged; the server
//! redelivers it after AckWait.
//!
//! The message carries the delivery's `traceparent`, and the run request carries the
//! consumer's, so the run's trace starts at the webhook delivery.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer, stream};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::bus::{Bus, BusError};
use crate::config::NatsSettings;
use crate::domain::RepoRef;

/// The stream of pending webhook scans.
pub const STREAM: &str = "GUARDIAN_WEBHOOK_SCANS";
/// The subject pending scans are published on.
pub const SUBJECT: &str = "guardian.webhook.scan";
/// The durable pull consumer shared by every worker that receives webhooks.
pub const CONSUMER: &str = "guardian-webhook-scan";
/// Version of the [`PendingScan`] payload.
const VERSION: u32 = 1;
/// Longest time a due scan waits, holding its message, for an active run of its
/// repository to end before it is handed back and tried again.
const MAX_WAIT_FOR_ACTIVE: Duration = Duration::from_secs(10);
/// Scans started at once by one worker.
const CONCURRENCY: usize = 8;
/// How long a pending scan may stay in the stream (undeliverable ones are collected).
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// A scan of one repository, due when its coalescing window ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingScan {
    pub v: u32,
    pub repo: RepoRef,
    /// End of the coalescing window, milliseconds since the epoch.
    pub due_ms: u64,
    /// The delivery (`X-GitHub-Delivery`) that opened the window.
    pub delivery: String,
}

impl PendingScan {
    pub fn new(repo: RepoRef, due_ms: u64, delivery: &str) -> Self {
        PendingScan {
            v: VERSION,
            repo,
            due_ms,
            delivery: delivery.to_string(),
        }
    }
}

/// Creates (or updates) the stream and its consumer; idempotent.
pub async fn provision(bus: &Bus, nats: &NatsSettings) -> Result<(), BusError> {
    bus.js
        .create_or_update_stream(stream::Config {
            name: STREAM.into(),
            description: Some(
                "Repo Guardian webhook scans waiting for their coalescing window".into(),
            ),
            subjects: vec![SUBJECT.into()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            num_replicas: nats.replicas,
            duplicate_window: nats.duplicate_window,
            max_age: MAX_AGE,
            ..Default::default()
        })
        .await
        .map_err(|e| BusError::nats(format!("provisioning stream {STREAM}"), e))?;
    bus.js
        .get_stream(STREAM)
        .await
        .map_err(|e| BusError::nats(format!("binding {STREAM}"), e))?
        .get_or_create_consumer(
            CONSUMER,
            consumer::pull::Config {
                durable_name: Some(CONSUMER.into()),
                description: Some("Repo Guardian webhook scans, shared by all workers".into()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: nats.ack_wait,
                num_replicas: nats.replicas,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| BusError::nats(format!("provisioning consumer {CONSUMER}"), e))?;
    Ok(())
}

/// Stores a pending scan (with the current trace context); returns once it is durable.
pub async fn publish(bus: &Bus, scan: &PendingScan) -> Result<(), BusError> {
    let payload = serde_json::to_vec(scan)
        .map_err(|e| BusError::nats("encoding a pending webhook scan", e))?;
    let msg_id = format!(
        "webhook-scan.{}.{}",
        scan.delivery,
        scan.repo.full_name().to_ascii_lowercase()
    );
    bus.publish(SUBJECT.to_string(), &msg_id, payload).await
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Starts pending scans as their windows end, until `shutdown`. An error when the
/// consumer cannot be bound or its messages stop for good.
pub async fn run(
    bus: Bus,
    nats: NatsSettings,
    shutdown: CancellationToken,
) -> Result<(), BusError> {
    provision(&bus, &nats).await?;
    let consumer: consumer::PullConsumer = bus
        .js
        .get_stream(STREAM)
        .await
        .map_err(|e| BusError::nats(format!("binding {STREAM}"), e))?
        .get_consumer(CONSUMER)
        .await
        .map_err(|e| BusError::nats(format!("binding consumer {CONSUMER}"), e))?;
    let messages = consumer
        .stream()
        .max_messages_per_batch(CONCURRENCY)
        .messages()
        .await
        .map_err(|e| BusError::nats(format!("pulling from {CONSUMER}"), e))?;
    let ack_wait = nats.ack_wait;
    let handled = messages
        .take_until(shutdown.clone().cancelled_owned())
        .for_each_concurrent(CONCURRENCY, |message| {
            let bus = bus.clone();
            async move {
                match message {
                    Ok(message) => handle(&bus, message, ack_wait).await,
                    Err(e) => {
                        tracing::warn!(error.message = %e, "pulling pending webhook scans failed; retrying")
                    }
                }
            }
        });
    handled.await;
    if shutdown.is_cancelled() {
        Ok(())
    } else {
        Err(BusError::nats(
            format!("pulling from {CONSUMER}"),
            "the message stream ended",
        ))
    }
}

/// What to do with one pending scan.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Next {
    /// The window is still open: hand it back until it ends.
    Wait(Duration),
    /// Due: start the run.
    Start,
}

fn next(scan: &PendingScan, now_ms: u64) -> Next {
    match scan.due_ms.checked_sub(now_ms) {
        Some(left) if left > 0 => Next::Wait(Duration::from_millis(left)),
        _ => Next::Start,
    }
}

async fn handle(bus: &Bus, message: jetstream::Message, ack_wait: Duration) {
    let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
    let span = tracing::info_span!(
        "webhook.scan",
        otel.kind = "consumer",
        messaging.system = "nats",
        messaging.operation.type = "process",
        messaging.destination.name = SUBJECT,
        repo = tracing::field::Empty,
        delivery = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    let span =
        crate::telemetry::continue_trace(span, crate::telemetry::extract(message.headers.as_ref()));
    async {
        let scan = match serde_json::from_slice::<PendingScan>(&message.payload) {
            Ok(scan) if scan.v <= VERSION => scan,
            Ok(scan) => {
                tracing::error!(version = scan.v, "pending webhook scan of a newer version dropped");
                let _ = message.ack_with(AckKind::Term).await;
                return;
            }
            Err(e) => {
                tracing::error!(error.message = %e, "unreadable pending webhook scan dropped");
                let _ = message.ack_with(AckKind::Term).await;
                return;
            }
        };
        let target = scan.repo.full_name();
        tracing::Span::current().record("repo", target.as_str());
        tracing::Span::current().record("delivery", scan.delivery.as_str());
        if let Next::Wait(left) = next(&scan, now_ms()) {
            let _ = message.ack_with(AckKind::Nak(Some(left))).await;
            return;
        }
        let mut answer = crate::client::request_run(bus, &target, false).await;
        if let Ok(active) = &answer
            && active.existing
        {
            // A run of this repository is active and may have read it before this
            // delivery: this scan starts its own run once that one has ended.
            let _ = message.ack_with(AckKind::Progress).await;
            let wait = (ack_wait / 2).min(MAX_WAIT_FOR_ACTIVE);
            if crate::client::follow(bus, &active.run_id, wait).await.is_err() {
                let _ = message.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
                return;
            }
            answer = crate::client::request_run(bus, &target, false).await;
        }
        match answer {
            Ok(accepted) if !accepted.existing => {
                tracing::info!(run_id = %accepted.run_id, "webhook run started");
                if let Err(e) = message.ack().await {
                    tracing::warn!(error.message = %e, "webhook run started but not acknowledged; a repeat waits for it and scans again");
                }
            }
            Ok(_) => {
                // Another run of the repository started in between: wait for it too.
                let _ = message.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
            }
            Err(e) => {
                // Never dropped: the stream's max age collects what can never start.
                tracing::warn!(error.message = %e, error.cause_chain = ?e, delivered, "webhook run not accepted yet; retrying");
                let delay = Duration::from_secs(u64::try_from(delivered).unwrap_or(1).clamp(1, 30));
                let _ = message.ack_with(AckKind::Nak(Some(delay))).await;
            }
        }
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(due_ms: u64) -> PendingScan {
        PendingScan::new(
            RepoRef {
                owner: "octo".into(),
                name: "hello".into(),
            },
            due_ms,
            "d-1",
        )
    }

    #[test]
    fn a_scan_waits_for_the_end_of_its_window() {
        assert_eq!(
            next(&scan(10_500), 10_000),
            Next::Wait(Duration::from_millis(500))
        );
        assert_eq!(next(&scan(10_000), 10_000), Next::Start);
        assert_eq!(next(&scan(9_000), 10_000), Next::Start);
    }

    #[test]
    fn payloads_are_strict() {
        let text = serde_json::to_string(&scan(1)).unwrap();
        assert_eq!(serde_json::from_str::<PendingScan>(&text).unwrap(), scan(1));
        let extra = text.replacen('{', r#"{"extra":1,"#, 1);
        assert!(serde_json::from_str::<PendingScan>(&extra).is_err());
    }
}
