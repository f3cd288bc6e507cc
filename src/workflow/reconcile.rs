//! `reconcile`: makes a repository's GitHub issues match its findings, under the
//! repository's lease.
//!
//! Order of work, chosen so a crash at any point is repaired by the redelivery: take the
//! lease → read the issues GitHub has (by label, plus any mapped issue missing from that
//! list) → plan → write → remember the finding → issue map → release → count on the run.
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
use crate::store::repos::Lease;
use crate::store::runs::{IssueCounts, RepoOutcome};
use crate::telemetry;

#[tracing::instrument(skip_all, fields(run_id, repo = %task.repo))]
pub async fn run(wf: &Workflow, run_id: &str, task: ReconcileTask) -> Result<(), StepError> {
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
    let result = reconcile_locked(wf, run_id, &task, &mut lease).await;
    wf.repos.release(lease).await;
    let (findings, applied, planned) = result?;
    wf.complete_repo(
        run_id,
        &task.repo,
        RepoOutcome::Reconciled {
            findings,
            applied,
            planned,
        },
    )
    .await
}

/// Waits (with the step's heartbeats running) for the repository's lease, up to its TTL.
async fn acquire(wf: &Workflow, task: &ReconcileTask) -> Result<Lease, StepError> {
    let ttl = wf.settings.worker.lease_ttl;
    // One token per reconcile, so two reconciles of one repository inside the same worker
    // exclude each other too.
    let holder = format!("{}/{}", wf.worker_id, uuid::Uuid::now_v7().simple());
    let deadline = tokio::time::Instant::now() + ttl;
    loop {
        if let Some(lease) = wf.repos.try_lease(&task.repo, &holder, ttl).await? {
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

async fn reconcile_locked(
    wf: &Workflow,
    run_id: &str,
    task: &ReconcileTask,
    lease: &mut Lease,
) -> Result<(u32, IssueCounts, IssueCounts), StepError> {
    let repo = &task.repo;
    let label = &wf.settings.github.label;
    let write = |wf: &Workflow| !task.dry_run && !wf.flags.snapshot().force_dry_run;
    issues::ensure_label(&wf.github, repo, label, write(wf)).await?;

    let mut existing = issues::list_labelled(&wf.github, repo, label).await?;
    // Issues we filed whose label was removed by hand are still ours: fetch them by number.
    let state = wf.repos.get(repo).await?.unwrap_or_default();
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
    let mut map = state.issues.clone();
    map.retain(|_, number| !gone.contains(number));
    for issue in &existing {
        if let Some((fp, _)) = issue_plan::parse_marker(&issue.body) {
            map.entry(fp).or_insert(issue.number);
        }
    }

    for action in actions {
        // The kill switch is read before every write, so it takes effect mid-repository.
        let writing = write(wf);
        if writing && !wf.repos.renew(lease, wf.settings.worker.lease_ttl).await? {
            return Err(StepError::transient(
                ErrorKind::Nats,
                format!("lost the lease on {repo}; another worker took over"),
                Some(Duration::from_secs(1)),
            ));
        }
        let (event, action_name, number) = apply(wf, task, &action, writing).await?;
        let counts = if writing { &mut applied } else { &mut planned };
        match action_name {
            "created" => counts.created += 1,
            "updated" => counts.updated += 1,
            "reopened" => counts.reopened += 1,
            _ => counts.closed += 1,
        }
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

    let open: Vec<String> = task.findings.iter().map(|f| f.fingerprint()).collect();
    wf.repos
        .update(repo, |s| {
            s.head_sha = task.head_sha.clone();
            s.reconciled_at = Some(time::OffsetDateTime::now_utc());
            s.issues = map.clone();
            s.open_findings = open.clone();
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
    Ok((task.findings.len() as u32, applied, planned))
}

/// Performs one action (or only names it when not writing). Returns the event, the
/// metric label and the issue number.
async fn apply(
    wf: &Workflow,
    task: &ReconcileTask,
    action: &Action,
    writing: bool,
) -> Result<(Event, &'static str, Option<u64>), StepError> {
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
            (Event::IssueCreated, "created", number)
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
            (Event::IssueUpdated, "updated", Some(*number))
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
            (Event::IssueReopened, "reopened", Some(*number))
        }
        Action::Close { number, .. } => {
            if writing {
                // Close first: a redelivery after a crash then sees a closed issue and does
                // nothing, rather than commenting twice.
                issues::update(
                    gh,
                    repo,
                    *number,
                    json!({ "state": "closed", "state_reason": "completed" }),
                )
                .await?;
                issues::comment(
                    gh,
                    repo,
                    *number,
                    "Repo Guardian no longer finds this problem on the default branch, so the issue is closed. It is reopened if the problem comes back.",
                )
                .await?;
            }
            (Event::IssueClosed, "closed", Some(*number))
        }
    })
}
