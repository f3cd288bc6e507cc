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
use crate::domain::RepoRef;
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
    let target = match (&task.issue_repo, task.has_issues) {
        (_, true) => task.repo.clone(),
        (Some(central), false) => central.clone(),
        // Nothing filed and nowhere to close anything: the repository is settled.
        (None, false) if task.opted_out => {
            let outcome = RepoOutcome::Reconciled {
                findings: 0,
                applied: IssueCounts::default(),
                planned: IssueCounts::default(),
                actions: Vec::new(),
                unknown: task.unknown.clone(),
            };
            return wf.complete_repo(run_id, &task.repo, outcome).await;
        }
        (None, false) => {
            return Err(StepError::permanent(
                ErrorKind::Github,
                format!(
                    "issues are disabled on {}; its findings cannot be filed (set \
                     `targets.issue_repo` to file them in a central repository)",
                    task.repo
                ),
            ));
        }
    };
    // The lease and the state are the source repository's, also when its issues live in
    // a central repository: one repository's reconciles never overlap, and two
    // repositories' never touch each other's issues (markers are scoped by source).
    let mut lease = acquire(wf, &task).await?;
    let result = reconcile_locked(wf, run_id, run.seq, &task, &target, &mut lease).await;
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

/// The label naming the source repository on issues filed in a central repository.
/// GitHub caps label names at 50 characters; a cut name can be shared by two
/// repositories, which the scoped markers still tell apart.
pub fn source_label(source: &RepoRef) -> String {
    format!("repo:{}", source.full_name().to_lowercase())
        .chars()
        .take(50)
        .collect()
}

/// Actions on the issues of one repository.
struct Batch<'a> {
    filed: Filed<'a>,
    existing: &'a [Issue],
    actions: &'a [Action],
    /// Whether the issue numbers go into the repository's map (not for a central
    /// repository it left).
    remember: bool,
}

/// The open issues `repo` left in the central repository its state names, when it files
/// elsewhere now (its issues were enabled, or another central repository took over),
/// with the actions that close them. `None` when there are none, or when they cannot be
/// listed: that must not fail the repository, and they stay open as before.
async fn left_behind(
    wf: &Workflow,
    repo: &RepoRef,
    stored: &Option<String>,
    now: &Option<String>,
) -> Option<(RepoRef, Vec<Issue>, Vec<Action>)> {
    let previous = stored.as_deref().filter(|p| Some(*p) != now.as_deref())?;
    let (owner, name) = previous.split_once('/')?;
    let central = RepoRef {
        owner: owner.to_owned(),
        name: name.to_owned(),
    };
    let labels = [wf.settings.github.label.as_str(), &source_label(repo)];
    let existing = match issues::list_labelled(&wf.github, &central, &labels).await {
        Ok(existing) => existing,
        Err(e) => {
            tracing::warn!(central = %central, error.message = %e, "issues left in the former central repository could not be listed");
            return None;
        }
    };
    let filing = issue_plan::Filing {
        central: Some(repo),
        ..Default::default()
    };
    let actions = issue_plan::close_all(&existing, &filing, issue_plan::MOVED_COMMENT);
    (!actions.is_empty()).then_some((central, existing, actions))
}

/// Where one reconcile files, and how.
struct Filed<'a> {
    /// The repository holding the issues (the source itself, or the central one).
    target: &'a RepoRef,
    filing: issue_plan::Filing<'a>,
    /// Every label an issue is created with: the fleet's, the source repository's (in a
    /// central repository) and the owners'.
    labels: Vec<String>,
}

/// `None` when the repository's state was written by a newer run (this one is stale).
async fn reconcile_locked(
    wf: &Workflow,
    run_id: &str,
    run_seq: Option<u64>,
    task: &ReconcileTask,
    target: &RepoRef,
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
    let central = (target != repo).then_some(repo);
    let mut labels = vec![label.clone()];
    labels.extend(central.map(source_label));
    let listing: Vec<&str> = labels.iter().map(String::as_str).collect();
    let mut existing = issues::list_labelled(&wf.github, target, &listing).await?;
    for extra in &task.labels {
        if !labels.iter().any(|l| l.eq_ignore_ascii_case(extra)) {
            labels.push(extra.clone());
        }
    }
    let filed = Filed {
        target,
        filing: issue_plan::Filing {
            central,
            labels: &task.labels,
            assignees: &task.assignees,
        },
        labels,
    };
    let target_key = central.map(|_| target.full_name().to_lowercase());
    // A map kept for another repository (issues re-enabled, or another central one)
    // names numbers that mean nothing here.
    let mapped = if state.issue_repo == target_key {
        state.issues.clone()
    } else {
        Default::default()
    };
    // Issues we filed whose label was removed by hand are still ours: fetch them by number.
    let listed: BTreeSet<u64> = existing.iter().map(|i| i.number).collect();
    // A mapped issue that was deleted or transferred is no longer ours: forget it, and an
    // open finding gets a new issue here.
    let mut gone = BTreeSet::new();
    for number in mapped.values().filter(|n| !listed.contains(n)) {
        match issues::get(&wf.github, target, *number).await? {
            issues::Lookup::Found(issue) => existing.push(issue),
            issues::Lookup::Missing => {}
            lookup @ (issues::Lookup::Deleted | issues::Lookup::Transferred) => {
                tracing::info!(repo = %repo, issue = number, ?lookup, "mapped issue left the repository; forgetting it");
                gone.insert(*number);
            }
        }
    }

    let evaluated: BTreeSet<String> = task.evaluated.iter().cloned().collect();
    let (actions, unchanged) = if task.opted_out {
        let comment = issue_plan::OPTED_OUT_COMMENT;
        (issue_plan::close_all(&existing, &filed.filing, comment), 0)
    } else {
        issue_plan::plan(repo, &task.findings, &evaluated, &existing, &filed.filing)
    };
    let mut applied = IssueCounts {
        unchanged,
        ..Default::default()
    };
    let mut planned = IssueCounts::default();
    let mut taken = Vec::new();
    let mut map = mapped;
    map.retain(|_, number| !gone.contains(number));
    for issue in &existing {
        if let Some((fp, _)) = filed.filing.fingerprint_in(&issue.body) {
            map.entry(fp).or_insert(issue.number);
        }
    }
    // The fleet's label is made sure of once, before the first issue this reconcile
    // files; a reconcile that files nothing spends no request on it.
    let mut label_ready = false;

    // Issues left in a central repository this repository no longer files in are closed
    // there first (a redelivery after a crash finds them closed and does nothing).
    let left = left_behind(wf, repo, &state.issue_repo, &target_key).await;
    let mut batches = Vec::new();
    if let Some((central, existing, actions)) = &left {
        batches.push(Batch {
            filed: Filed {
                target: central,
                filing: issue_plan::Filing {
                    central: Some(repo),
                    ..Default::default()
                },
                labels: Vec::new(),
            },
            existing,
            actions,
            remember: false,
        });
    }
    batches.push(Batch {
        filed,
        existing: &existing,
        actions: &actions,
        remember: true,
    });
    // Whether every issue left behind was closed (not so in a dry run): only then does
    // the state stop naming the former central repository, so a later run closes them.
    let mut left_closed = true;
    let mut remaining: usize = batches.iter().map(|b| b.actions.len()).sum();
    let mut deferred = false;
    for batch in &batches {
        let Batch {
            filed,
            existing,
            actions,
            remember,
        } = batch;
        for action in actions.iter() {
            // The kill switch is read before every write, so it takes effect mid-repository.
            let writing = write(wf);
            left_closed &= writing || *remember;
            let (event, kind, number) = if writing {
                // A create posts the issue, a close or reopen its comment first.
                let creating = !matches!(action, Action::Update { .. });
                deferred |=
                    wait_for_write_budget(wf, run_id, repo, filed.target, creating, remaining)
                        .await?;
                // The first write's budget is taken before the lease is renewed, so that
                // nothing waits between the fence and the write. Renewing is a
                // compare-and-set at the held revision: a lease that expired while this
                // worker stalled cannot be renewed, so nothing more is written.
                // The label is made before the fence: creating it twice is harmless, and
                // no request may wait for budget between the renewal and the issue write
                // (a stall there would outlive the lease and let another worker file too).
                if matches!(action, Action::Create(_)) && !label_ready {
                    issues::ensure_label(&wf.github, filed.target, label, true).await?;
                    label_ready = true;
                }
                let path = format!("/repos/{}/{}/issues", filed.target.owner, filed.target.name);
                wf.github
                    .with_write_admitted(&path, creating, async {
                        wf.leases.renew(lease).await?;
                        apply(wf, filed, existing, action, writing).await
                    })
                    .await??
            } else {
                apply(wf, filed, existing, action, writing).await?
            };
            remaining -= 1;
            let action_name = kind.as_str();
            let counts = if writing { &mut applied } else { &mut planned };
            counts.count(kind);
            taken.push(IssueAction {
                action: kind,
                fingerprint: action.fingerprint().to_string(),
                title: title_of(action, existing),
                number,
                planned: !writing,
            });
            if let Some(number) = number.filter(|_| *remember) {
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
            if left_closed {
                s.issue_repo = target_key.clone();
            }
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
    target: &crate::domain::RepoRef,
    creating: bool,
    remaining: usize,
) -> Result<bool, StepError> {
    // The repository the issues are filed in names the token, hence the budget.
    let path = format!("/repos/{}/{}/issues", target.owner, target.name);
    let wait = wf.github.write_budget_wait(&path, creating).await?;
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

/// `ours` plus every item of `wanted` it lacks (case-insensitively): labels and assignees
/// someone added by hand are kept.
fn union(ours: &[String], wanted: &[String]) -> Vec<String> {
    let mut out = ours.to_vec();
    for w in wanted {
        if !out.iter().any(|o| o.eq_ignore_ascii_case(w)) {
            out.push(w.clone());
        }
    }
    out
}

/// The change of an issue's title and body to `issue`, with the owners' labels and
/// assignees added when they asked for any.
fn content_patch(
    filed: &Filed<'_>,
    existing: &[Issue],
    number: u64,
    issue: &issue_plan::Rendered,
) -> serde_json::Value {
    let mut patch = json!({ "title": issue.title, "body": issue.body });
    let current = existing.iter().find(|i| i.number == number);
    if !filed.filing.labels.is_empty() {
        let have = current.map(|i| i.labels.as_slice()).unwrap_or_default();
        patch["labels"] = json!(union(have, &filed.labels));
    }
    if !filed.filing.assignees.is_empty() {
        let have = current.map(|i| i.assignees.as_slice()).unwrap_or_default();
        patch["assignees"] = json!(union(have, filed.filing.assignees));
    }
    patch
}

/// Hidden in the comments that go with a state change, so a step that runs again knows its
/// comment is already there.
const CLOSE_MARKER: &str = "<!-- repo-guardian:closing -->";
const REOPEN_MARKER: &str = "<!-- repo-guardian:reopening -->";

/// Posts `text` (with `marker`) unless the issue's newest comment already carries the
/// marker: the same step ran before and stopped after commenting.
async fn comment_once(
    gh: &crate::github::GithubClient,
    repo: &RepoRef,
    existing: &[Issue],
    number: u64,
    text: &str,
    marker: &str,
) -> Result<(), StepError> {
    if let Some(issue) = existing.iter().find(|i| i.number == number)
        && issues::last_comment_has(gh, repo, issue, marker).await?
    {
        tracing::info!(
            issue = number,
            "comment already posted by an earlier attempt"
        );
        return Ok(());
    }
    issues::comment(gh, repo, number, &format!("{text}\n\n{marker}")).await?;
    Ok(())
}

/// Performs one action (or only names it when not writing). Returns the event, the
/// metric label and the issue number.
async fn apply(
    wf: &Workflow,
    filed: &Filed<'_>,
    existing: &[Issue],
    action: &Action,
    writing: bool,
) -> Result<(Event, IssueActionKind, Option<u64>), StepError> {
    let repo = filed.target;
    let gh = &wf.github;
    Ok(match action {
        Action::Create(issue) => {
            let number = if writing {
                let created: Issue = issues::create(
                    gh,
                    repo,
                    &issue.title,
                    &issue.body,
                    &filed.labels,
                    filed.filing.assignees,
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
                let patch = content_patch(filed, existing, *number, issue);
                issues::update(gh, repo, *number, patch).await?;
            }
            (Event::IssueUpdated, IssueActionKind::Updated, Some(*number))
        }
        Action::Reopen {
            number,
            issue,
            changed,
        } => {
            if writing {
                let mut patch = if *changed {
                    content_patch(filed, existing, *number, issue)
                } else {
                    json!({})
                };
                patch["state"] = json!("open");
                // Comment, then change the state: run again after a crash between the two,
                // the step finds its comment newest and only changes the state.
                comment_once(
                    gh,
                    repo,
                    existing,
                    *number,
                    "Repo Guardian found this problem again, so the issue is reopened.",
                    REOPEN_MARKER,
                )
                .await?;
                issues::update(gh, repo, *number, patch).await?;
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
                // Comment, then close: run again after a crash between the two, the step
                // finds its comment newest and only closes; closed first, the issue would
                // look done and never get its comment.
                comment_once(gh, repo, existing, *number, comment, CLOSE_MARKER).await?;
                issues::update(
                    gh,
                    repo,
                    *number,
                    json!({ "state": "closed", "state_reason": state_reason }),
                )
                .await?;
            }
            (Event::IssueClosed, IssueActionKind::Closed, Some(*number))
        }
    })
}
