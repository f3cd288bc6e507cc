//! `plan`: expands the run's target into repositories, records them as the run's pending
//! set, and fans out one `scan` per repository.
//!
//! A redelivered plan re-lists (cheap: conditional requests) and republishes scans only for
//! repositories still pending; `Nats-Msg-Id` `<run>.scan.<repo>` deduplicates the rest.

use super::Workflow;
use super::error::{ErrorKind, StepError};
use crate::bus::Step;
use crate::bus::envelope::{Envelope, PlanTask, ScanTask, Task};
use crate::bus::events::{self, Event};
use crate::domain::Target;
use crate::github::listing;
use crate::store::runs::RunStatus;

#[tracing::instrument(skip_all, fields(run_id, target = %task.target))]
pub async fn run(wf: &Workflow, run_id: &str, task: PlanTask) -> Result<(), StepError> {
    let Some(record) = wf.runs.get(run_id).await? else {
        return Err(StepError::permanent(
            ErrorKind::Decode,
            format!("run {run_id} has no record in guardian_runs"),
        ));
    };
    if record.status.is_final() {
        return Ok(());
    }
    let target = Target::parse(&task.target)
        .map_err(|e| StepError::permanent(ErrorKind::Config, e.to_string()))?;
    let listed = listing::list_target(&wf.github, &target, &wf.settings.targets).await?;
    let names: Vec<String> = listed.iter().map(|l| l.repo.full_name()).collect();

    let (record, became_final) = wf
        .runs
        .update(run_id, |r| {
            if r.status != RunStatus::Queued {
                return false;
            }
            r.status = RunStatus::Running;
            r.started_at = Some(time::OffsetDateTime::now_utc());
            r.repos_total = names.len() as u32;
            r.pending = names.iter().cloned().collect();
            if r.pending.is_empty() {
                r.finish();
                r.summary = Some("no repositories matched the target and filters".into());
            }
            true
        })
        .await?
        .ok_or_else(|| StepError::permanent(ErrorKind::Decode, format!("run {run_id} vanished")))?;
    if became_final {
        wf.finished(&record).await;
        return Ok(());
    }
    events::emit(
        &wf.bus,
        run_id,
        Event::Planned,
        None,
        "",
        serde_json::json!({ "target": task.target, "repositories": record.repos_total }),
    )
    .await?;

    for item in listed {
        let name = item.repo.full_name();
        if !record.pending.contains(&name) {
            continue;
        }
        let envelope = Envelope::new(
            run_id,
            Task::Scan(ScanTask {
                repo: item.repo,
                dry_run: task.dry_run,
                meta: item.meta,
            }),
        );
        wf.bus
            .publish(
                Step::Scan.subject(),
                &format!("{run_id}.scan.{name}"),
                envelope.encode(),
            )
            .await?;
    }
    Ok(())
}
