//! A fleet worker: provisions, serves the trigger API and the ops endpoints, consumes every
//! step, dead-letters what the server gave up on, sweeps stalled runs, watches the kill
//! switches and reports queue depth — until its shutdown token is cancelled (then it drains
//! and returns) or one of those parts stops (then it drains and returns an error).

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::bus::consumer::{self, ConsumerOptions};
use crate::bus::flags::Flags;
use crate::bus::{Bus, Step, WORK_STREAM, provision};
use crate::config::Settings;
use crate::ops::{self, Readiness};
use crate::workflow::{Handler, Workflow, sweep};
use crate::{service, telemetry};

/// Runs a worker on an existing connection until `shutdown`.
///
/// Fails closed: consumers start only once the kill switches are loaded. Every part runs
/// as a task of its own; when one of them stops before `shutdown` (a consumer that can no
/// longer bind, the trigger service, the advisory watch), `/readyz` turns not-ready with
/// the reason, the rest drains, and this returns an error so the process exits non-zero
/// and the platform restarts it.
pub async fn run(
    bus: Bus,
    settings: Arc<Settings>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let readiness = Readiness::new(Some(bus.client.clone()));
    let ops_shutdown = CancellationToken::new();
    let webhooks = crate::webhook::router(bus.clone(), &settings.webhook, &settings.nats);
    let (addr, ops_task) = ops::serve_with(
        settings.http.listen,
        readiness.clone(),
        webhooks.unwrap_or_default(),
        ops_shutdown.clone(),
    )
    .await?;
    tracing::info!(%addr, "ops server listening (/healthz, /readyz, /metrics)");

    provision::provision(&bus, &settings).await?;
    crate::schedule::provision(&bus, settings.nats.replicas).await?;
    // Every metric family is on the first scrape; without an LLM the token series carry
    // `model="none"` and stay at zero.
    telemetry::metrics().register_llm_model(settings.llm.model.as_deref().unwrap_or("none"));
    let flags = Flags::default();
    let workflow = Workflow::new(bus.clone(), settings.clone(), flags.clone()).await?;

    // Stopping every part: the caller's shutdown, or one part failing.
    let stop = shutdown.child_token();
    let mut tasks: JoinSet<Part> = JoinSet::new();
    {
        let (flags, bus, stop) = (flags.clone(), bus.clone(), stop.clone());
        tasks.spawn(async move {
            flags.watch(bus, stop).await;
            Part::ended("the kill-switch watch", Ok(()))
        });
    }
    // Fail closed: nothing is consumed before the first snapshot of the flags.
    let failure = if flags.wait_known(&stop).await {
        let subscribed = start_parts(&mut tasks, &bus, &settings, &workflow, &flags, &stop);
        // Ready only once `guardian.run` answers: a trigger sent right after `/readyz` said
        // 200 must find the service, not "no responders".
        tokio::select! {
            _ = subscribed => {}
            _ = stop.cancelled() => {}
        }
        readiness.set_ready(true);
        tracing::info!(worker = %workflow.worker_id, "worker ready");
        let failure = tokio::select! {
            // A part that ends because shutdown was asked for has not failed: parts stop
            // with `stop`, a child of `shutdown`, and may be seen ending first.
            biased;
            _ = shutdown.cancelled() => None,
            Some(joined) = tasks.join_next() => (!shutdown.is_cancelled()).then(|| match joined {
                Ok(part) => part.describe(),
                Err(e) => format!("a worker task panicked: {e}"),
            }),
        };
        if let Some(what) = &failure {
            tracing::error!(stopped = %what, "a part of the worker stopped; not ready, draining and exiting");
            readiness.set_failed(what.clone());
        }
        failure
    } else {
        None
    };
    stop.cancel();
    drain(
        tasks,
        &settings,
        &bus,
        readiness,
        ops_shutdown,
        ops_task,
        failure,
    )
    .await
}

/// Starts every part that takes work: the trigger service, the advisory watch, the
/// sweeper, the queue-depth poller and one consumer per step.
fn start_parts(
    tasks: &mut JoinSet<Part>,
    bus: &Bus,
    settings: &Arc<Settings>,
    workflow: &Arc<Workflow>,
    flags: &Flags,
    stop: &CancellationToken,
) -> tokio::sync::oneshot::Receiver<()> {
    let handler: Arc<dyn consumer::StepHandler> = Arc::new(Handler(workflow.clone()));
    let (subscribed, service_ready) = tokio::sync::oneshot::channel();
    {
        let (bus, runs, stop) = (bus.clone(), workflow.runs.clone(), stop.clone());
        tasks.spawn(async move {
            let result = service::serve(bus, runs, stop, subscribed).await;
            Part::ended("the trigger service", result.map_err(|e| format!("{e:#}")))
        });
    }
    {
        let (bus, handler, stop) = (bus.clone(), handler.clone(), stop.clone());
        tasks.spawn(async move {
            let result = consumer::watch_max_deliveries(bus, handler, stop).await;
            Part::ended(
                "the max-deliveries advisory watch",
                result.map_err(|e| e.to_string()),
            )
        });
    }
    {
        let (wf, stop) = (workflow.clone(), stop.clone());
        tasks.spawn(async move {
            sweep::run(wf, stop).await;
            Part::ended("the sweeper", Ok(()))
        });
    }
    {
        let (bus, every, stop) = (
            bus.clone(),
            settings.worker.queue_poll_interval,
            stop.clone(),
        );
        tasks.spawn(async move {
            poll_queue_depth(bus, every, stop).await;
            Part::ended("the queue-depth poller", Ok(()))
        });
    }
    let concurrency = settings.worker.concurrency;
    for step in Step::ALL {
        let options = ConsumerOptions {
            step,
            concurrency: match step {
                Step::Plan => concurrency.plan,
                Step::Scan => concurrency.scan,
                Step::Review => concurrency.review,
                Step::Reconcile => concurrency.reconcile,
            },
            nats: settings.nats.clone(),
            drain_timeout: settings.worker.drain_timeout,
        };
        let (bus, handler, flags, stop) =
            (bus.clone(), handler.clone(), flags.clone(), stop.clone());
        tasks.spawn(async move {
            let result = consumer::run_step_consumer(bus, options, handler, flags, stop).await;
            Part::ended(step.consumer_task(), result.map_err(|e| e.to_string()))
        });
    }
    if settings.webhook.secret.is_some() {
        let (bus, nats, stop) = (bus.clone(), settings.nats.clone(), stop.clone());
        tasks.spawn(async move {
            let result = crate::webhook::pending::run(bus, nats, stop).await;
            Part::ended(
                "the webhook scan starter",
                result.map_err(|e| e.to_string()),
            )
        });
    }
    if !settings.schedules.is_empty() {
        let (bus, schedules, worker, stop) = (
            bus.clone(),
            settings.schedules.clone(),
            workflow.worker_id.clone(),
            stop.clone(),
        );
        tasks.spawn(async move {
            crate::schedule::run(bus, schedules, worker, stop).await;
            Part::ended("the scheduler", Ok(()))
        });
    }
    service_ready
}

/// A part of the worker that ended, and how.
struct Part {
    name: String,
    result: Result<(), String>,
}

impl Part {
    fn ended(name: impl Into<String>, result: Result<(), String>) -> Part {
        Part {
            name: name.into(),
            result,
        }
    }

    fn describe(&self) -> String {
        match &self.result {
            Ok(()) => format!("{} stopped", self.name),
            Err(e) => format!("{} stopped: {e}", self.name),
        }
    }
}

/// Stops every part, lets in-flight steps drain, and reports `failure` as the error.
async fn drain(
    mut tasks: JoinSet<Part>,
    settings: &Settings,
    bus: &Bus,
    readiness: Readiness,
    ops_shutdown: CancellationToken,
    ops_task: tokio::task::JoinHandle<()>,
    failure: Option<String>,
) -> anyhow::Result<()> {
    readiness.set_ready(false);
    tracing::info!(drain_timeout = ?settings.worker.drain_timeout, "draining");
    // Every part watches a child of the shutdown token; cancelling them all is done by
    // aborting what does not finish in time. Consumers hand unfinished steps back within
    // the drain timeout; the grace on top covers their last acks. When NATS itself is
    // gone nothing can be handed back, and the worker must still exit: JetStream
    // redelivers whatever was not acknowledged.
    let grace = settings.worker.drain_timeout + Duration::from_secs(5);
    let drained =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!("drain did not finish in time; leaving the rest to redelivery");
        tasks.abort_all();
    }
    // Publishes acknowledged by the server are durable; flush anything still buffered, but
    // never wait for a server that is not there.
    let _ = tokio::time::timeout(Duration::from_secs(2), bus.client.flush()).await;
    ops_shutdown.cancel();
    let _ = ops_task.await;
    tracing::info!("worker stopped");
    match failure {
        Some(what) => Err(anyhow::anyhow!("worker stopped because {what}")),
        None => Ok(()),
    }
}

/// Reads the backlog of each step's consumer into `guardian_queue_pending`.
async fn poll_queue_depth(bus: Bus, every: Duration, shutdown: CancellationToken) {
    loop {
        if let Ok(stream) = bus.js.get_stream(WORK_STREAM).await {
            for step in Step::ALL {
                let consumer: Result<async_nats::jetstream::consumer::PullConsumer, _> =
                    stream.get_consumer(&step.consumer()).await;
                if let Ok(mut c) = consumer
                    && let Ok(info) = c.info().await
                {
                    telemetry::metrics().set_queue_pending(step.as_str(), info.num_pending);
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
