//! `reconcile`: makes a repository's GitHub issues match its findings, under the
//! repository's fenced lease.
//!
//! Order of work, chosen so a crash at any point is repaired by the redelivery: take the
//! lease → skip when a newer run already reconciled the repository (stale) → read the
//! issues GitHub has (by label, plus any mapped issue missing from that list) → plan →
//! write, renewing the lease by compare-and-set before each write → remember the finding
//! → issue map with a write fenced by the lease → release → settle on the run.
//! A redelivered step re-reads GitHub and finds the issues the crashed attempt already
//! filed by their fingerprint markers, so nothing is filed twice.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;

use super::Workflow;
use super::error::{ErrorKind, StepError};
use super::issue_plan::{self, Action};
use crate::bus::envelope::ReconcileTask;
use crate::bus::events::{self, Event};
use crate::github::issues::{self, Issue};
use crate::store::leases::Lease;
use crate::store::repos::lease_key;
use crate::store::runs::{IssueAction, IssueActionKind, IssueCounts, RepoOutcome};
use crate::telemetry;

/// What reconciling one repository did.
struct Reconciled {
    applied: IssueCounts,
    planned: IssueCounts,
    actions: Vec<IssueAction>,
}

#[tracing::instrument(skip_all, fields(run_id, repo = %task.repo))]
pub async fn run(wf: &Workflow, run_id: &str, task: ReconcileTask) -> Result<(), StepError> {
    let Some(run) = wf.runs.get(run_id).await? else {
        return Err(StepError::permanent(
            ErrorKind::Decode,
            format!("run {run_id} has no record in guardian_runs"),
        ));
    };
    if run.status.is_final() {
        // The run ended without this repository (the sweeper gave up on it): its outcome
        // is recorded, and writing issues now would act on a finished run.
        tracing::info!("run already final; reconcile skipped");
        return Ok(());
    }
    if !task.has_issues {
        return Err(StepError::permanent(
            ErrorKind::Github,
            format!(
                "issues are disabled on {}; its findings cannot be filed",
                task.repo
            ),
        ));
    }
    let mut lease = acquire(wf, &task).await?;
    let result = reconcile_locked(wf, run_id, run.seq, &task, &mut lease).await;
    wf.leases.release(lease).await;
    let outcome = match result? {
        None => {
            tracing::info!("a newer run already reconciled this repository; skipped as stale");
            RepoOutcome::Stale
        }
        Some(done) => RepoOutcome::Reconciled {
            findings: u32::try_from(task.findings.len()).unwrap_or(u32::MAX),
            applied: done.applied,
            planned: done.planned,
            actions: done.actions,
            unknown: task.unknown.clone(),
        },
    };
    wf.complete_repo(run_id, &task.repo, outcome).await
}

/// Waits (with the step's heartbeats running) for the repository's lease, up to its TTL.
async fn acquire(wf: &Workflow, task: &ReconcileTask) -> Result<Lease, StepError> {
    let ttl = wf.settings.worker.lease_ttl;
    // One token per reconcile, so two reconciles of one repository inside the same worker
    // exclude each other too.
    let holder = format!("{}/{}", wf.worker_id, uuid::Uuid::now_v7().simple());
    let key = lease_key(&task.repo);
    let deadline = tokio::time::Instant::now() + ttl;
    loop {
        if let Some(lease) = wf.leases.try_acquire(&key, &holder).await? {
            return Ok(lease);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StepError::transient(
                ErrorKind::Nats,
                format!("{} is being reconciled by another worker", task.repo),
                Some(Duration::from_secs(2)),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `None` when the repository's state was written by a newer run (this one is stale).
async fn reconcile_locked(
    wf: &Workflow,
    run_id: &str,
    run_seq: Option<u64>,
    task: &ReconcileTask,
    lease: &mut Lease,
) -> Result<Option<Reconciled>, StepError> {
    let repo = &task.repo;
    let state = wf.repos.get(repo).await?.unwrap_or_default();
    if let (Some(stored), Some(mine)) = (state.run_seq, run_seq)
        && stored > mine
    {
        return Ok(None);
    }
    let label = &wf.settings.github.label;
    let write = |wf: &Workflow| !task.dry_run && !wf.flags.snapshot().force_dry_run;
    issues::ensure_label(&wf.github, repo, label, write(wf)).await?;

    let mut existing = issues::list_labelled(&wf.github, repo, label).await?;
    // Issues we filed whose label was removed by hand are still ours: fetch them by number.
    let listed: BTreeSet<u64> = existing.iter().map(|i| i.number).collect();
    // A mapped issue that was deleted or transferred is no longer ours: forget it, and an
    // open finding gets a new issue here.
    let mut gone = BTreeSet::new();
    for number in state.issues.values().filter(|n| !listed.contains(n)) {
        match issues::get(&wf.github, repo, *number).await? {
            issues::Lookup::Found(issue) => existing.push(issue),
            issues::Lookup::Missing => {}
            lookup @ (issues::Lookup::Deleted | issues::Lookup::Transferred) => {
                tracing::info!(repo = %repo, issue = number, ?lookup, "mapped issue left the repository; forgetting it");
                gone.insert(*number);
            }
        }
    }

    let evaluated: BTreeSet<String> = task.evaluated.iter().cloned().collect();
    let (actions, unchanged) = issue_plan::plan(repo, &task.findings, &evaluated, &existing);
    let mut applied = IssueCounts {
        unchanged,
        ..Default::default()
    };
    let mut planned = IssueCounts::default();
    let mut taken = Vec::new();
    let mut map = state.issues.clone();
    map.retain(|_, number| !gone.contains(number));
    for issue in &existing {
        if let Some((fp, _)) = issue_plan::parse_marker(&issue.body) {
            map.entry(fp).or_insert(issue.number);
        }
    }

    let total = actions.len();
    let mut deferred = false;
    for (done, action) in actions.into_iter().enumerate() {
        // The kill switch is read before every write, so it takes effect mid-repository.
        let writing = write(wf);
        let (event, kind, number) = if writing {
            let creating = matches!(action, Action::Create(_));
            deferred |= wait_for_write_budget(wf, run_id, repo, creating, total - done).await?;
            // The write's budget is taken first, so that nothing waits between renewing
            // the lease and the write. Renewing is a compare-and-set at the held revision:
            // a lease that expired while this worker stalled cannot be renewed, so nothing
            // more is written.
            wf.github
                .with_write_admitted(creating, async {
                    wf.leases.renew(lease).await?;
                    apply(wf, task, &action, writing).await
                })
                .await??
        } else {
            apply(wf, task, &action, writing).await?
        };
        let action_name = kind.as_str();
        let counts = if writing { &mut applied } else { &mut planned };
        counts.count(kind);
        taken.push(IssueAction {
            action: kind,
            fingerprint: action.fingerprint().to_string(),
            title: title_of(&action, &existing),
            number,
            planned: !writing,
        });
        if let Some(number) = number {
            map.insert(action.fingerprint().to_string(), number);
        }
        if writing {
            telemetry::metrics().issue(action_name);
            events::emit(
                &wf.bus,
                run_id,
                event,
                Some(repo),
                action.fingerprint(),
                json!({ "fingerprint": action.fingerprint(), "issue": number }),
            )
            .await?;
        }
    }

    if deferred {
        wf.runs.writes_done(run_id, &repo.full_name()).await?;
    }

    let open: Vec<String> = task.findings.iter().map(|f| f.fingerprint()).collect();
    // Fenced: refused when the lease moved on or a newer holder already wrote the map.
    wf.repos
        .update_fenced(repo, &wf.leases, lease, |s| {
            s.head_sha = task.head_sha.clone();
            s.reconciled_at = Some(time::OffsetDateTime::now_utc());
            s.issues = map.clone();
            s.open_findings = open.clone();
            s.run_seq = s.run_seq.max(run_seq);
            true
        })
        .await?;
    events::emit(
        &wf.bus,
        run_id,
        Event::RepoReconciled,
        Some(repo),
        "",
        json!({ "applied": applied, "planned": planned }),
    )
    .await?;
    Ok(Some(Reconciled {
        applied,
        planned,
        actions: taken,
    }))
}

/// A write waiting longer than this for the fleet's write budget is a deferred write;
/// shorter waits are the ordinary spacing of writes.
const DEFERRED_AFTER: Duration = Duration::from_secs(2);

/// Waits until the next write is likely to find budget (up to `github.budget.max_wait`;
/// a longer wait is left to the write, which hands the step back to the queue). When the
/// wait is longer than [`DEFERRED_AFTER`], notes on the run that the repository's
/// `remaining` writes are deferred and returns `true`; the note stays while they wait in
/// this worker or in the queue, and is removed once they are written.
async fn wait_for_write_budget(
    wf: &Workflow,
    run_id: &str,
    repo: &crate::domain::RepoRef,
    creating: bool,
    remaining: usize,
) -> Result<bool, StepError> {
    let wait = wf.github.write_budget_wait(creating).await;
    if wait < DEFERRED_AFTER {
        return Ok(false);
    }
    let resume_at = time::OffsetDateTime::now_utc() + wait;
    let remaining = u32::try_from(remaining).unwrap_or(u32::MAX);
    wf.runs
        .defer_writes(run_id, &repo.full_name(), remaining, resume_at)
        .await?;
    if wait <= wf.settings.github.budget.max_wait {
        tokio::time::sleep(wait).await;
    }
    Ok(true)
}

/// The title an action is about: the new content's, or the closed issue's.
fn title_of(action: &Action, existing: &[Issue]) -> String {
    match action {
        Action::Create(i) | Action::Update { issue: i, .. } | Action::Reopen { issue: i, .. } => {
            i.title.clone()
        }
        Action::Close { number, .. } => existing
            .iter()
            .find(|i| i.number == *number)
            .map(|i| i.title.clone())
            .unwrap_or_default(),
    }
}

/// Performs one action (or only names it when not writing). Returns the event, the
/// metric label and the issue number.
async fn apply(
    wf: &Workflow,
    task: &ReconcileTask,
    action: &Action,
    writing: bool,
) -> Result<(Event, IssueActionKind, Option<u64>), StepError> {
    let repo = &task.repo;
    let gh = &wf.github;
    Ok(match action {
        Action::Create(issue) => {
            let number = if writing {
                let created: Issue = issues::create(
                    gh,
                    repo,
                    &issue.title,
                    &issue.body,
                    &wf.settings.github.label,
                )
                .await?;
                tracing::info!(issue = created.number, fingerprint = %issue.fingerprint, "issue created");
                Some(created.number)
            } else {
                None
            };
            (Event::IssueCreated, IssueActionKind::Created, number)
        }
        Action::Update { number, issue } => {
            if writing {
                issues::update(
                    gh,
                    repo,
                    *number,
                    json!({ "title": issue.title, "body": issue.body }),
                )
                .await?;
            }
            (Event::IssueUpdated, IssueActionKind::Updated, Some(*number))
        }
        Action::Reopen {
            number,
            issue,
            changed,
        } => {
            if writing {
                let mut patch = json!({ "state": "open" });
                if *changed {
                    patch["title"] = json!(issue.title);
                    patch["body"] = json!(issue.body);
                }
                issues::update(gh, repo, *number, patch).await?;
                issues::comment(
                    gh,
                    repo,
                    *number,
                    "Repo Guardian found this problem again, so the issue is reopened.",
                )
                .await?;
            }
            (
                Event::IssueReopened,
                IssueActionKind::Reopened,
                Some(*number),
            )
        }
        Action::Close {
            number,
            state_reason,
            comment,
            ..
        } => {
            if writing {
                // Close first: a redelivery after a crash then sees a closed issue and does
                // nothing, rather than commenting twice.
                issues::update(
                    gh,
                    repo,
                    *number,
                    json!({ "state": "closed", "state_reason": state_reason }),
                )
                .await?;
                issues::comment(gh, repo, *number, comment).await?;
            }
            (Event::IssueClosed, IssueActionKind::Closed, Some(*number))
        }
    })
}
