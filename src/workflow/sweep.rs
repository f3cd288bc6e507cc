//! The sweeper: makes sure every run ends. Any worker may run it; a lease in
//! `guardian_leases` (key `sweeper`) makes exactly one act at a time.
//!
//! Each sweep, with the server's clock (the time stamped on the sweeper's own lease write)
//! rather than a worker's:
//! - a run that is not final and whose record has not changed for `worker.stall_timeout`
//!   is finalised as `stalled`; every repository still pending settles as stalled with
//!   the reason, and a run whose plan never ran fails with that reason;
//! - a final run whose `done` event was never stored gets it published (deduplicated by
//!   its `Nats-Msg-Id`), and its target's active-run index is cleared.
//!
//! The sweeper takes no action while the kill switches are unknown or `pause_runs` is on:
//! a paused fleet makes no progress on purpose.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Workflow;
use super::error::StepError;
use crate::store::runs::{RepoOutcome, RepoStatus, RunRecord, RunStatus};

/// The lease key of the sweeper.
const SWEEPER_LEASE: &str = "sweeper";

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    /// Runs finalised as stalled (or failed, when their plan never ran).
    pub stalled: Vec<String>,
    /// Final runs whose `done` event was published now.
    pub announced: Vec<String>,
    /// Another worker held the sweeper lease; nothing was looked at.
    pub skipped: bool,
}

/// Sweeps every `worker.sweep_interval` until `shutdown`.
pub async fn run(wf: Arc<Workflow>, shutdown: CancellationToken) {
    let every = wf.settings.worker.sweep_interval;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if !wf.flags.may_take_work() {
            continue;
        }
        match sweep_once(&wf).await {
            Ok(swept) if !swept.stalled.is_empty() || !swept.announced.is_empty() => {
                tracing::warn!(stalled = ?swept.stalled, announced = ?swept.announced, "sweeper ended runs");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error.message = %e, error.cause_chain = ?e, "sweep failed; trying again next interval")
            }
        }
    }
}

/// One sweep, under the sweeper lease.
pub async fn sweep_once(wf: &Workflow) -> Result<Swept, StepError> {
    let Some(mut lease) = wf.leases.try_acquire(SWEEPER_LEASE, &wf.worker_id).await? else {
        return Ok(Swept {
            skipped: true,
            ..Default::default()
        });
    };
    let result = sweep_locked(wf, &mut lease).await;
    wf.leases.release(lease).await;
    result
}

async fn sweep_locked(
    wf: &Workflow,
    lease: &mut crate::store::leases::Lease,
) -> Result<Swept, StepError> {
    let now = wf.leases.server_time(lease).await?;
    let timeout = wf.settings.worker.stall_timeout;
    let mut swept = Swept::default();
    for (record, changed_at) in wf.runs.list_with_times().await? {
        if record.status.is_final() {
            if !record.done_published {
                let _ = wf.runs.release_target(&record.target, &record.run_id).await;
                wf.announce_done(&record).await;
                swept.announced.push(record.run_id.clone());
            }
            continue;
        }
        let idle: Duration = (now - changed_at).try_into().unwrap_or(Duration::ZERO);
        if idle < timeout {
            continue;
        }
        // Still ours? A sweep that outlived its lease stops before acting twice.
        wf.leases.renew(lease).await?;
        stall(wf, &record, timeout).await?;
        swept.stalled.push(record.run_id.clone());
    }
    Ok(swept)
}

/// Ends one run that stopped moving.
async fn stall(wf: &Workflow, record: &RunRecord, timeout: Duration) -> Result<(), StepError> {
    let run_id = &record.run_id;
    let idle = humantime::format_duration(timeout);
    if record.status == RunStatus::Queued {
        let reason = format!("no progress for {idle}: the plan never completed");
        if let Some(record) = wf
            .runs
            .end_unplanned(run_id, RunStatus::Stalled, "plan", &reason)
            .await?
        {
            wf.finished(&record).await;
        }
        return Ok(());
    }
    for progress in wf.runs.repo_progress(run_id).await? {
        if progress.status != RepoStatus::Pending {
            continue;
        }
        let reason = format!(
            "no progress for {idle}: its scan or reconcile never finished (lost, stuck or dead-lettered without a record)"
        );
        if let Some(record) = wf
            .runs
            .complete_repo(run_id, &progress.repo, &RepoOutcome::Stalled { reason })
            .await?
        {
            wf.finished(&record).await;
        }
    }
    // Counters a crash left out are recounted; a run with nothing pending ends now.
    if let Some(record) = wf.runs.finish_if_complete(run_id).await? {
        wf.finished(&record).await;
    }
    Ok(())
}
