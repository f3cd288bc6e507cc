//! `scan`: builds one repository's snapshot from GitHub and evaluates the policies, then
//! hands the findings to `reconcile`. Reads only; nothing here writes to GitHub.

use super::Workflow;
use super::error::StepError;
use crate::bus::Step;
use crate::bus::envelope::{Envelope, ReconcileTask, ScanTask, Task};
use crate::bus::events::{self, Event};
use crate::config::TargetMode;
use crate::github::snapshot;
use crate::policy;

#[tracing::instrument(skip_all, fields(run_id, repo = %task.repo))]
pub async fn run(wf: &Workflow, run_id: &str, task: ScanTask) -> Result<(), StepError> {
    let targeting = wf.settings.targets.for_repo(&task.repo);
    let mut selection = wf.selection_for(Some(&task.repo.owner));
    // Owners' suppressions expire at the end of their `until` day (UTC).
    selection.today = Some(time::OffsetDateTime::now_utc().date());
    selection.opt_in_required = targeting.mode == TargetMode::OptIn && !targeting.opted_in;
    let (snap, meta) =
        snapshot::build_for(&wf.github, &task.repo, task.meta.clone(), &selection).await?;
    let opted_out = !policy::checked(&snap, &selection);
    let evaluation = if opted_out {
        tracing::info!("repository not checked: opted out, or not opted in");
        policy::Evaluation::default()
    } else {
        policy::evaluate(&snap, &selection, false)
    };
    for (policy, reason) in &evaluation.unknown {
        tracing::warn!(
            policy,
            reason,
            "policy not evaluated; its issues stay as they are"
        );
    }
    let policy::Evaluation {
        findings,
        evaluated,
        unknown,
        labels,
        assignees,
    } = evaluation;
    tracing::info!(findings = findings.len(), head = ?snap.head_sha, "repository scanned");
    events::emit(
        &wf.bus,
        run_id,
        Event::RepoScanned,
        Some(&task.repo),
        "",
        serde_json::json!({ "head_sha": snap.head_sha, "findings": findings.len(), "unknown": unknown, "opted_out": opted_out }),
    )
    .await?;
    for f in &findings {
        events::emit(
            &wf.bus,
            run_id,
            Event::Finding,
            Some(&task.repo),
            &f.fingerprint(),
            serde_json::json!({ "fingerprint": f.fingerprint(), "severity": f.severity, "title": f.title }),
        )
        .await?;
    }
    let next = ReconcileTask {
        repo: task.repo,
        dry_run: task.dry_run,
        findings,
        evaluated,
        unknown,
        has_issues: meta.has_issues,
        head_sha: snap.head_sha,
        labels,
        assignees,
        opted_out,
        // Only a repository without issues files elsewhere.
        issue_repo: targeting.issue_repo.filter(|_| !meta.has_issues),
    };
    if next.opted_out {
        // Nothing to review in a repository that is not checked: no model is asked.
        return forward_to_reconcile(wf, run_id, next).await;
    }
    super::review::forward(wf, run_id, next).await
}

/// Publishes the reconcile step for a repository (also the pass-through of `review`).
pub async fn forward_to_reconcile(
    wf: &Workflow,
    run_id: &str,
    task: ReconcileTask,
) -> Result<(), StepError> {
    let msg_id = format!("{run_id}.reconcile.{}", task.repo.full_name());
    let envelope = Envelope::new(run_id, Task::Reconcile(task));
    wf.bus
        .publish(Step::Reconcile.subject(), &msg_id, envelope.encode())
        .await?;
    Ok(())
}
