//! A fleet worker: provisions, serves the trigger API and the ops endpoints, consumes every
//! step, watches the kill switches and reports queue depth — until its shutdown token is
//! cancelled, then drains and returns.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::bus::consumer::{self, ConsumerOptions};
use crate::bus::flags::Flags;
use crate::bus::{Bus, Step, WORK_STREAM, provision};
use crate::config::Settings;
use crate::ops::{self, Readiness};
use crate::workflow::{Handler, Workflow};
use crate::{service, telemetry};

/// Runs a worker on an existing connection until `shutdown`.
pub async fn run(
    bus: Bus,
    settings: Arc<Settings>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let readiness = Readiness::new(Some(bus.client.clone()));
    let ops_shutdown = CancellationToken::new();
    let webhooks = crate::webhook::router(bus.clone(), &settings.webhook, settings.nats.replicas);
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
    let handler: Arc<dyn consumer::StepHandler> = Arc::new(Handler(workflow.clone()));

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(flags.clone().watch(bus.clone(), shutdown.clone()));
    {
        let (bus, runs, shutdown) = (bus.clone(), workflow.runs.clone(), shutdown.clone());
        tasks.spawn(async move {
            if let Err(e) = service::serve(bus, runs, shutdown).await {
                tracing::error!(error.message = %e, "trigger service stopped");
            }
        });
    }
    tasks.spawn(poll_queue_depth(
        bus.clone(),
        settings.worker.queue_poll_interval,
        shutdown.clone(),
    ));
    let concurrency = settings.worker.concurrency;
    for step in [Step::Plan, Step::Scan, Step::Review, Step::Reconcile] {
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
        let (bus, handler, flags, shutdown) = (
            bus.clone(),
            handler.clone(),
            flags.clone(),
            shutdown.clone(),
        );
        tasks.spawn(async move {
            if let Err(e) =
                consumer::run_step_consumer(bus, options, handler, flags, shutdown).await
            {
                tracing::error!(step = %step, error.message = %e, "consumer stopped");
            }
        });
    }
    tasks.spawn(crate::schedule::run(
        bus.clone(),
        settings.schedules.clone(),
        workflow.worker_id.clone(),
        shutdown.clone(),
    ));
    readiness.set_ready(true);
    tracing::info!(worker = %workflow.worker_id, "worker ready");

    shutdown.cancelled().await;
    readiness.set_ready(false);
    tracing::info!(drain_timeout = ?settings.worker.drain_timeout, "draining");
    // Consumers hand unfinished steps back within the drain timeout; the grace on top
    // covers their last acks. When NATS itself is gone nothing can be handed back, and the
    // worker must still exit: JetStream redelivers whatever was not acknowledged.
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
    Ok(())
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
