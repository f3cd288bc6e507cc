//! `plan`: expands the run's target into repositories, records each as pending on the run
//! (one small key per repository), and fans out one `scan` per repository.
//!
//! A redelivered plan republishes a scan for *every* repository still pending on the run —
//! not only those listed again — and `Nats-Msg-Id` `<run>.scan.<repo>` deduplicates what
//! was already published. Publishes and KV writes are pipelined, so an organisation of
//! tens of thousands of repositories plans in one step.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt as _;

use super::Workflow;
use super::error::{ErrorKind, StepError};
use crate::bus::Step;
use crate::bus::envelope::{Envelope, PlanTask, RepoMeta, ScanTask, Task};
use crate::bus::events::{self, Event};
use crate::domain::{RepoRef, Target};
use crate::github::listing;
use crate::store::runs::{RepoStatus, RunStatus};

/// Scans published at once while fanning out.
const PUBLISH_CONCURRENCY: usize = 256;

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
        .map_err(|e| StepError::permanent(ErrorKind::Config, e.to_string()).with_source(e))?;
    let listed = listing::list_target(&wf.github, &target, &wf.settings.targets).await?;
    let mut metas: BTreeMap<String, (RepoRef, Option<RepoMeta>)> = BTreeMap::new();
    for item in listed {
        metas.insert(item.repo.full_name(), (item.repo, item.meta));
    }
    let names: Vec<String> = metas.keys().cloned().collect();

    let mut planned_now = false;
    if record.status == RunStatus::Queued {
        // A crashed earlier attempt may have recorded repositories that are gone since.
        wf.runs.retain_repos(run_id, &names).await?;
        wf.runs.add_repos(run_id, &names).await?;
        let (record, became_final, revision) = wf
            .runs
            .update_at(run_id, |r| {
                if r.status != RunStatus::Queued {
                    return false;
                }
                r.status = RunStatus::Running;
                r.started_at = Some(time::OffsetDateTime::now_utc());
                r.repos_total = u32::try_from(names.len()).unwrap_or(u32::MAX);
                if names.is_empty() {
                    r.finish();
                    r.summary = Some("no repositories matched the target and filters".into());
                }
                true
            })
            .await?
            .ok_or_else(|| {
                StepError::permanent(ErrorKind::Decode, format!("run {run_id} vanished"))
            })?;
        if became_final {
            wf.finished(&record).await;
            return Ok(());
        }
        planned_now = record.status == RunStatus::Running && record.seq.is_none();
        if planned_now {
            // The run's place in the order of runs: the server-assigned revision at which
            // it started running.
            wf.runs
                .update(run_id, |r| {
                    r.seq.is_none() && {
                        r.seq = Some(revision);
                        true
                    }
                })
                .await?;
        }
    }
    if planned_now {
        events::emit(
            &wf.bus,
            run_id,
            Event::Planned,
            None,
            "",
            serde_json::json!({ "target": task.target, "repositories": names.len() }),
        )
        .await?;
    }

    // Every repository still pending on the run: all of them on the first delivery, the
    // stored set on a redelivery (whatever the listing says now).
    let pending: BTreeSet<String> = if planned_now {
        names.into_iter().collect()
    } else {
        wf.runs
            .repo_progress(run_id)
            .await?
            .into_iter()
            .filter(|p| p.status == RepoStatus::Pending)
            .map(|p| p.repo)
            .collect()
    };
    let mut messages = Vec::with_capacity(pending.len());
    for name in pending {
        let (repo, meta) = match metas.remove(&name) {
            Some(found) => found,
            None => {
                let Some((owner, repo_name)) = name.split_once('/') else {
                    continue;
                };
                let repo = RepoRef {
                    owner: owner.to_string(),
                    name: repo_name.to_string(),
                };
                (repo, None)
            }
        };
        let envelope = Envelope::new(
            run_id,
            Task::Scan(ScanTask {
                repo,
                dry_run: task.dry_run,
                meta,
            }),
        );
        messages.push((format!("{run_id}.scan.{name}"), envelope.encode()));
    }
    let publishes = messages.into_iter().map(|(msg_id, payload)| {
        let bus = wf.bus.clone();
        async move { bus.publish(Step::Scan.subject(), &msg_id, payload).await }
    });
    let mut publishes = futures::stream::iter(publishes).buffer_unordered(PUBLISH_CONCURRENCY);
    while let Some(result) = publishes.next().await {
        result?;
    }
    Ok(())
}
