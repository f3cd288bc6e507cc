//! Idempotent provisioning of the streams, consumers and buckets of DESIGN.md §3.
//!
//! Run by `guardian provision` and at every worker start. Creating what exists is a no-op;
//! changed settings (replicas, limits, AckWait…) are applied as updates.

use std::time::Duration;

use async_nats::jetstream::{consumer, kv, stream};

use super::{
    BUDGET_BUCKET, Bus, BusError, DEFERRALS_BUCKET, DLQ_STREAM, EVENTS_STREAM, FLAGS_BUCKET,
    HTTP_BUCKET, LEASES_BUCKET, LLM_BUCKET, REPOS_BUCKET, RUNS_BUCKET, Step, TOKENS_BUCKET,
    WORK_STREAM,
};
use crate::config::{NatsSettings, Settings};

/// What was provisioned, for `guardian provision` to print.
#[derive(Debug, Default, serde::Serialize)]
pub struct Provisioned {
    pub streams: Vec<String>,
    pub consumers: Vec<String>,
    pub buckets: Vec<String>,
}

pub async fn provision(bus: &Bus, all: &Settings) -> Result<Provisioned, BusError> {
    let settings = &all.nats;
    let mut done = Provisioned::default();
    let streams = [
        stream::Config {
            name: WORK_STREAM.into(),
            description: Some("Repo Guardian work queue: one message per step".into()),
            subjects: vec!["guardian.work.>".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            num_replicas: settings.replicas,
            duplicate_window: settings.duplicate_window,
            ..Default::default()
        },
        stream::Config {
            name: EVENTS_STREAM.into(),
            description: Some("Repo Guardian audit trail, guardian.events.<run_id>.<event>".into()),
            subjects: vec!["guardian.events.>".into()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            num_replicas: settings.replicas,
            max_age: settings.events_max_age,
            duplicate_window: settings.duplicate_window,
            ..Default::default()
        },
        stream::Config {
            name: DLQ_STREAM.into(),
            description: Some("Repo Guardian dead letters, guardian.dlq.<step>".into()),
            subjects: vec!["guardian.dlq.>".into()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            num_replicas: settings.replicas,
            max_age: settings.dlq_max_age,
            duplicate_window: settings.duplicate_window,
            ..Default::default()
        },
    ];
    for config in streams {
        let name = config.name.clone();
        bus.js
            .create_or_update_stream(config)
            .await
            .map_err(|e| BusError::nats(format!("provisioning stream {name}"), e))?;
        done.streams.push(name);
    }

    let work = bus
        .js
        .get_stream(WORK_STREAM)
        .await
        .map_err(|e| BusError::nats("binding GUARDIAN_WORK", e))?;
    for step in Step::ALL {
        let config = consumer_config(step, settings);
        let name = step.consumer();
        // Create first; when it exists with other settings, update it in place.
        if work.create_consumer(config.clone()).await.is_err() {
            bus.js
                .update_consumer_on_stream(config, WORK_STREAM)
                .await
                .map_err(|e| BusError::nats(format!("provisioning consumer {name}"), e))?;
        }
        done.consumers.push(name);
    }

    let day = Duration::from_secs(24 * 3600);
    let buckets = [
        (
            RUNS_BUCKET,
            "Run records, per-repository progress and active-run index",
            5,
            Duration::ZERO,
        ),
        (REPOS_BUCKET, "Per-repository state", 1, Duration::ZERO),
        // The bucket's max age *is* the lease TTL: the server expires a lease nobody renews.
        (
            LEASES_BUCKET,
            "Fenced leases (reconcile, sweeper); max age = lease TTL",
            1,
            all.worker.lease_ttl,
        ),
        (
            DEFERRALS_BUCKET,
            "Per-message count of GitHub budget deferrals",
            1,
            7 * day,
        ),
        (HTTP_BUCKET, "Shared GitHub ETag cache", 1, 7 * day),
        // Every key is rewritten while its token is in use; two hours outlive the longest
        // window (the hourly content-creation cap) and let a retired token's keys go.
        (
            BUDGET_BUCKET,
            "Shared GitHub API budget per token",
            1,
            Duration::from_secs(2 * 3600),
        ),
        (FLAGS_BUCKET, "Fleet-wide kill switches", 5, Duration::ZERO),
        // Installation tokens live one hour; an entry older than that is useless.
        (
            TOKENS_BUCKET,
            "GitHub App installation tokens, sealed with the App key",
            1,
            Duration::from_secs(3600),
        ),
        (
            LLM_BUCKET,
            "LLM answer cache and token budgets",
            1,
            30 * day,
        ),
    ];
    for (bucket, description, history, max_age) in buckets {
        let config = kv::Config {
            bucket: bucket.into(),
            description: description.into(),
            history,
            max_age,
            storage: stream::StorageType::File,
            num_replicas: settings.replicas,
            ..Default::default()
        };
        bus.js
            .create_or_update_key_value(config)
            .await
            .map_err(|e| BusError::nats(format!("provisioning bucket {bucket}"), e))?;
        done.buckets.push(bucket.into());
    }
    Ok(done)
}

fn consumer_config(step: Step, settings: &NatsSettings) -> consumer::pull::Config {
    // BackOff only governs redelivery after AckWait expiry (a worker that died or hung
    // mid-step); explicit transient failures nak with their own delay. The server uses
    // BackOff[n] as the ack deadline of delivery n, so no entry may be shorter than AckWait,
    // or a healthy step between two progress heartbeats would be redelivered. The server
    // also requires MaxDeliver to exceed the number of entries. MaxDeliver is the server's
    // limit, far above the application's budget that `consumer::decide` enforces.
    let keep = settings.server_max_deliver.saturating_sub(1).max(0) as usize;
    let backoff: Vec<_> = settings
        .backoff
        .iter()
        .take(keep)
        .map(|d| (*d).max(settings.ack_wait))
        .collect();
    consumer::pull::Config {
        durable_name: Some(step.consumer()),
        description: Some(format!("Repo Guardian {step} step, shared by all workers")),
        filter_subject: step.subject(),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: settings.ack_wait,
        max_deliver: settings.server_max_deliver,
        backoff,
        max_ack_pending: 10_000,
        num_replicas: settings.replicas,
        ..Default::default()
    }
}
