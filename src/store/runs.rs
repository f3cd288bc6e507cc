//! Runs in `guardian_runs`: the run record (key = run id) holds counts only; each
//! repository's progress has its own small key (`<run_id>.repo.<owner/name>`), and the
//! index key `target.<target>` names the one active run of a target.
//!
//! A repository completes exactly once: its progress key leaves `pending` by a
//! compare-and-set on that key alone, so workers never contend on a key per repository.
//! The run's counters follow by *group commit*: each worker counts the repositories it
//! settled with one compare-and-set of the run record per batch (a batch is whatever
//! settled while the previous commit was in flight), and a step is acknowledged only once
//! its count is committed. A repeat (a redelivery after a crash between settling and
//! acknowledging) is counted again; a count too many only brings forward the moment the
//! progress keys are read back. When the counters say every repository settled, the
//! progress keys are read back once, the counters are recomputed from them, and the final
//! status is set from them — exactly once, by the compare-and-set that makes the record
//! final. Every value stays small, whatever the size of the organisation.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use async_nats::jetstream::kv;
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use super::{Record, StoreError, key_token};
use crate::bus::BusError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Partial,
    Failed,
    /// Finalised by the sweeper: no progress for `worker.stall_timeout`.
    Stalled,
}

impl RunStatus {
    pub fn is_final(self) -> bool {
        !matches!(self, RunStatus::Queued | RunStatus::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Partial => "partial",
            RunStatus::Failed => "failed",
            RunStatus::Stalled => "stalled",
        }
    }
}

/// Issue actions, taken (or planned in a dry run).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct IssueCounts {
    pub created: u32,
    pub updated: u32,
    pub reopened: u32,
    pub closed: u32,
    pub unchanged: u32,
}

impl IssueCounts {
    pub fn add(&mut self, other: &IssueCounts) {
        self.created += other.created;
        self.updated += other.updated;
        self.reopened += other.reopened;
        self.closed += other.closed;
        self.unchanged += other.unchanged;
    }

    pub fn writes(&self) -> u32 {
        self.created + self.updated + self.reopened + self.closed
    }

    /// Counts one action.
    pub fn count(&mut self, kind: IssueActionKind) {
        match kind {
            IssueActionKind::Created => self.created += 1,
            IssueActionKind::Updated => self.updated += 1,
            IssueActionKind::Reopened => self.reopened += 1,
            IssueActionKind::Closed => self.closed += 1,
        }
    }
}

/// LLM tokens as the provider reported them (`usage.prompt_tokens`, `.completion_tokens`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct LlmTokens {
    pub prompt: u64,
    pub completion: u64,
}

impl LlmTokens {
    pub fn total(&self) -> u64 {
        self.prompt + self.completion
    }

    pub fn add(&mut self, other: LlmTokens) {
        self.prompt += other.prompt;
        self.completion += other.completion;
    }

    pub fn is_zero(&self) -> bool {
        self.total() == 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    pub step: String,
    pub message: String,
}

/// How many errors a record keeps verbatim (the count is always exact).
const MAX_ERRORS_KEPT: usize = 50;
/// Longest error text kept in a record; longer ones are cut with an ellipsis.
const MAX_TEXT: usize = 1000;
/// Most issue actions kept verbatim per repository (the counts are always exact).
const MAX_ACTIONS_KEPT: usize = 100;

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes cut)", &text[..end], text.len() - end)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunRecord {
    pub v: u32,
    pub run_id: String,
    pub target: String,
    pub dry_run: bool,
    pub status: RunStatus,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub created_at: time::OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schemars(with = "Option<String>")]
    pub started_at: Option<time::OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schemars(with = "Option<String>")]
    pub finished_at: Option<time::OffsetDateTime>,
    /// Order of the run among all runs: the `guardian_runs` revision at which it started
    /// running (assigned by the server, so no worker's clock is involved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    pub repos_total: u32,
    pub repos_done: u32,
    pub repos_failed: u32,
    /// Repositories the sweeper gave up on (no progress for `worker.stall_timeout`).
    #[serde(default)]
    pub repos_stalled: u32,
    /// Repositories where at least one policy could not be evaluated (named per repository
    /// in its progress).
    #[serde(default)]
    pub repos_unknown: u32,
    /// Reconciles skipped because a newer run had already reconciled the repository.
    #[serde(default)]
    pub stale_skipped: u32,
    pub findings: u32,
    /// Issue actions taken.
    pub issues: IssueCounts,
    /// Issue actions a dry run would have taken.
    pub planned: IssueCounts,
    pub error_count: u32,
    pub errors: Vec<RunError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The `done` event of a final run is stored in `GUARDIAN_EVENTS`.
    #[serde(default)]
    pub done_published: bool,
    /// Tokens the review step spent on this run (absent when none).
    #[serde(default, skip_serializing_if = "LlmTokens::is_zero")]
    pub llm_tokens: LlmTokens,
    /// Issue writes waiting for the fleet's GitHub write budget right now (absent when
    /// none). Not stored: added up when the record is read for people (`runs show`,
    /// `guardian.status`) from the run's `<run_id>.deferred.<repo>` keys.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub deferred_writes: u32,
    /// When the next deferred write may go out.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub writes_resume_at: Option<time::OffsetDateTime>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Record for RunRecord {
    const BUCKET: &'static str = crate::bus::RUNS_BUCKET;
    const VERSION: u32 = 1;
}

/// Where one repository of a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RepoStatus {
    Pending,
    /// Reconciled (or skipped as stale: see `RepoProgress::stale`).
    Done,
    Failed,
    Stalled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IssueActionKind {
    Created,
    Updated,
    Reopened,
    Closed,
}

impl IssueActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IssueActionKind::Created => "created",
            IssueActionKind::Updated => "updated",
            IssueActionKind::Reopened => "reopened",
            IssueActionKind::Closed => "closed",
        }
    }
}

/// One issue action taken (or, with `planned`, only planned) on a repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IssueAction {
    pub action: IssueActionKind,
    pub fingerprint: String,
    pub title: String,
    /// The issue's number; `None` for an issue a dry run would create.
    #[serde(default)]
    pub number: Option<u64>,
    /// Not written: a dry run, or held back by the `force_dry_run` switch.
    #[serde(default)]
    pub planned: bool,
}

/// One repository's progress within a run (`guardian_runs` key
/// `<run_id>.repo.<owner/name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RepoProgress {
    pub v: u32,
    /// `owner/name` as listed.
    pub repo: String,
    pub status: RepoStatus,
    #[serde(default)]
    pub findings: u32,
    /// Policies that could not be evaluated, with the reason; their issues were left alone.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unknown: BTreeMap<String, String>,
    /// Issue actions taken or planned (the first `MAX_ACTIONS_KEPT`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<IssueAction>,
    #[serde(default)]
    pub applied: IssueCounts,
    #[serde(default)]
    pub planned: IssueCounts,
    /// The step that failed, for a failed repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Skipped: a newer run had already reconciled this repository.
    #[serde(default)]
    pub stale: bool,
}

impl Record for RepoProgress {
    const BUCKET: &'static str = crate::bus::RUNS_BUCKET;
    const VERSION: u32 = 1;
}

impl RepoProgress {
    pub fn pending(repo: &str) -> Self {
        RepoProgress {
            v: Self::VERSION,
            repo: repo.to_string(),
            status: RepoStatus::Pending,
            findings: 0,
            unknown: BTreeMap::new(),
            actions: vec![],
            applied: IssueCounts::default(),
            planned: IssueCounts::default(),
            step: None,
            error: None,
            stale: false,
        }
    }

    /// Records the outcome on a pending repository; `false` when it had one already.
    fn settle(&mut self, outcome: &RepoOutcome) -> bool {
        if self.status != RepoStatus::Pending {
            return false;
        }
        match outcome {
            RepoOutcome::Reconciled {
                findings,
                applied,
                planned,
                actions,
                unknown,
            } => {
                self.status = RepoStatus::Done;
                self.findings = *findings;
                self.applied = *applied;
                self.planned = *planned;
                self.actions = actions
                    .iter()
                    .take(MAX_ACTIONS_KEPT)
                    .map(|a| IssueAction {
                        title: truncate(&a.title, 200),
                        fingerprint: truncate(&a.fingerprint, 200),
                        ..a.clone()
                    })
                    .collect();
                self.unknown = unknown
                    .iter()
                    .map(|(k, v)| (truncate(k, 100), truncate(v, 300)))
                    .collect();
            }
            RepoOutcome::Stale => {
                self.status = RepoStatus::Done;
                self.stale = true;
            }
            RepoOutcome::Failed { step, reason } => {
                self.status = RepoStatus::Failed;
                self.step = Some(step.clone());
                self.error = Some(truncate(reason, MAX_TEXT));
            }
            RepoOutcome::Stalled { reason } => {
                self.status = RepoStatus::Stalled;
                self.error = Some(truncate(reason, MAX_TEXT));
            }
        }
        true
    }
}

/// What one repository contributed to its run.
#[derive(Debug, Clone)]
pub enum RepoOutcome {
    Reconciled {
        findings: u32,
        /// Actions written to GitHub.
        applied: IssueCounts,
        /// Actions only planned: a dry run, or writes held back by the `force_dry_run` switch.
        planned: IssueCounts,
        actions: Vec<IssueAction>,
        /// Policies that could not be evaluated, with the reason.
        unknown: BTreeMap<String, String>,
    },
    /// Skipped: a newer run had already reconciled the repository.
    Stale,
    Failed {
        step: String,
        reason: String,
    },
    /// Given up by the sweeper.
    Stalled {
        reason: String,
    },
}

/// The index of a target's active run (`guardian_runs` key `target.<target>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ActiveRun {
    v: u32,
    run_id: String,
}

impl Record for ActiveRun {
    const BUCKET: &'static str = crate::bus::RUNS_BUCKET;
    const VERSION: u32 = 1;
}

impl RunRecord {
    pub fn new(run_id: &str, target: &str, dry_run: bool) -> Self {
        RunRecord {
            v: Self::VERSION,
            run_id: run_id.to_string(),
            target: target.to_string(),
            dry_run,
            status: RunStatus::Queued,
            created_at: time::OffsetDateTime::now_utc(),
            started_at: None,
            finished_at: None,
            seq: None,
            repos_total: 0,
            repos_done: 0,
            repos_failed: 0,
            repos_stalled: 0,
            repos_unknown: 0,
            stale_skipped: 0,
            findings: 0,
            issues: IssueCounts::default(),
            planned: IssueCounts::default(),
            error_count: 0,
            errors: vec![],
            summary: None,
            done_published: false,
            llm_tokens: LlmTokens::default(),
            deferred_writes: 0,
            writes_resume_at: None,
        }
    }

    pub fn push_error(&mut self, error: RunError) {
        self.error_count += 1;
        if self.errors.len() < MAX_ERRORS_KEPT {
            self.errors.push(RunError {
                message: truncate(&error.message, MAX_TEXT),
                ..error
            });
        }
    }

    /// Repositories with an outcome.
    pub fn repos_settled(&self) -> u32 {
        self.repos_done + self.repos_failed + self.repos_stalled
    }

    /// Sets the final status from the counts.
    pub fn finish(&mut self) {
        self.status = if self.repos_stalled > 0 {
            RunStatus::Stalled
        } else if self.repos_total > 0 && self.repos_failed == self.repos_total {
            RunStatus::Failed
        } else if self.repos_failed > 0 {
            RunStatus::Partial
        } else {
            RunStatus::Succeeded
        };
        self.finished_at = Some(time::OffsetDateTime::now_utc());
        let counts = if self.dry_run {
            &self.planned
        } else {
            &self.issues
        };
        let verb = if self.dry_run { "would be " } else { "" };
        let mut summary = format!(
            "{} of {} repositories reconciled, {} failed",
            self.repos_done, self.repos_total, self.repos_failed
        );
        if self.repos_stalled > 0 {
            summary.push_str(&format!(", {} stalled", self.repos_stalled));
        }
        if self.repos_unknown > 0 {
            summary.push_str(&format!(
                ", {} with policies not evaluated",
                self.repos_unknown
            ));
        }
        summary.push_str(&format!(
            "; {} findings; issues {verb}created {}, updated {}, reopened {}, closed {}",
            self.findings, counts.created, counts.updated, counts.reopened, counts.closed
        ));
        self.summary = Some(summary);
    }

    /// Counts one settled repository; `false` when the run is already final.
    fn count(&mut self, progress: &RepoProgress) -> bool {
        if self.status.is_final() || progress.status == RepoStatus::Pending {
            return false;
        }
        match progress.status {
            RepoStatus::Done => {
                self.repos_done += 1;
                self.findings += progress.findings;
                self.issues.add(&progress.applied);
                self.planned.add(&progress.planned);
                if progress.stale {
                    self.stale_skipped += 1;
                }
            }
            RepoStatus::Failed | RepoStatus::Stalled => {
                if progress.status == RepoStatus::Failed {
                    self.repos_failed += 1;
                } else {
                    self.repos_stalled += 1;
                }
                self.push_error(RunError {
                    repo: Some(progress.repo.clone()),
                    step: progress.step.clone().unwrap_or_else(|| "sweeper".into()),
                    message: progress.error.clone().unwrap_or_default(),
                });
            }
            RepoStatus::Pending => {}
        }
        if !progress.unknown.is_empty() {
            self.repos_unknown += 1;
        }
        true
    }

    /// Replaces the counters with a recount from every repository's progress.
    fn recount(&mut self, progress: &[RepoProgress]) {
        let errors = std::mem::take(&mut self.errors);
        let error_count = self.error_count;
        self.repos_done = 0;
        self.repos_failed = 0;
        self.repos_stalled = 0;
        self.repos_unknown = 0;
        self.stale_skipped = 0;
        self.findings = 0;
        self.issues = IssueCounts::default();
        self.planned = IssueCounts::default();
        for p in progress {
            self.count(p);
        }
        // Errors were recorded as repositories settled; the recount only fixes counters.
        self.errors = errors;
        self.error_count = error_count.max(self.repos_failed + self.repos_stalled);
    }

    pub fn duration(&self) -> Option<std::time::Duration> {
        let end = self.finished_at?;
        (end - self.created_at).try_into().ok()
    }
}

/// Key of one repository's progress within a run.
pub fn progress_key(run_id: &str, repo: &str) -> String {
    format!("{run_id}.repo.{}", key_token(repo))
}

fn target_key(target: &str) -> String {
    format!("target.{}", key_token(target))
}

/// A run id is a UUID (what `guardian.run` hands out); anything else is refused early.
pub fn parse_run_id(text: &str) -> Option<String> {
    uuid::Uuid::parse_str(text)
        .ok()
        .map(|u| u.hyphenated().to_string())
}

#[derive(Clone)]
pub struct RunStore {
    pub kv: kv::Store,
    /// Counts of settled repositories waiting for their run record's next commit.
    tally: Arc<Tally>,
}

/// What a commit of counts answers each repository in it: the run record when this commit
/// made the run final (given to one repository of the batch only), or the failure.
type Committed = Result<Option<RunRecord>, Arc<StoreError>>;

/// One settled repository waiting for its count to be committed.
struct Waiting {
    progress: RepoProgress,
    reply: tokio::sync::oneshot::Sender<Committed>,
}

/// The group commit of one worker: per run, the counts waiting for the next commit. A run
/// has an entry exactly while a committer task works on it; counts that arrive meanwhile
/// join its next batch, so at most one compare-and-set per run and worker is in flight.
#[derive(Default)]
struct Tally {
    waiting: Mutex<HashMap<String, Vec<Waiting>>>,
}

impl Tally {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Waiting>>> {
        // The map stays consistent even if a holder panicked: every change is one call.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Removes a run's entry if its committer ends without finishing (a panic): the counts
/// still waiting are answered with an error instead of never.
struct CommitterGuard<'a> {
    tally: &'a Tally,
    run_id: &'a str,
    finished: bool,
}

impl Drop for CommitterGuard<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.tally.lock().remove(self.run_id);
        }
    }
}

impl RunStore {
    pub fn new(kv: kv::Store) -> Self {
        RunStore {
            kv,
            tally: Arc::default(),
        }
    }

    /// Creates a run record; `Ok(false)` when the id exists.
    pub async fn create(&self, record: &RunRecord) -> Result<bool, StoreError> {
        Ok(super::create(&self.kv, &record.run_id, record)
            .await?
            .is_some())
    }

    pub async fn get(&self, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
        Ok(super::read::<RunRecord>(&self.kv, run_id)
            .await?
            .map(|(r, _)| r))
    }

    /// Removes a run record that never got going (its trigger lost a race).
    pub async fn discard(&self, run_id: &str) -> Result<(), StoreError> {
        self.kv
            .purge(run_id)
            .await
            .map_err(|e| BusError::nats(format!("discarding run {run_id}"), e))?;
        Ok(())
    }

    /// Changes an existing run with compare-and-set; `None` when the run does not exist.
    /// Returns the record and whether this call made the run final.
    pub async fn update(
        &self,
        run_id: &str,
        change: impl FnMut(&mut RunRecord) -> bool,
    ) -> Result<Option<(RunRecord, bool)>, StoreError> {
        Ok(self
            .update_at(run_id, change)
            .await?
            .map(|(r, became_final, _)| (r, became_final)))
    }

    /// Like [`RunStore::update`], also returning the revision stored.
    pub async fn update_at(
        &self,
        run_id: &str,
        mut change: impl FnMut(&mut RunRecord) -> bool,
    ) -> Result<Option<(RunRecord, bool, u64)>, StoreError> {
        let mut became_final = false;
        let result = super::update::<RunRecord>(
            &self.kv,
            run_id,
            || None,
            |r| {
                let was_final = r.status.is_final();
                let changed = change(r);
                became_final = changed && !was_final && r.status.is_final();
                changed
            },
        )
        .await?;
        Ok(result.map(|u| (u.record, became_final, u.revision)))
    }

    /// All runs, newest first, with the server's time of their last change.
    pub async fn list_with_times(
        &self,
    ) -> Result<Vec<(RunRecord, time::OffsetDateTime)>, StoreError> {
        // Run ids are single tokens; progress and index keys have more.
        let mut out = Vec::new();
        for listed in super::list(&self.kv, "*").await? {
            match super::decode::<RunRecord>(&listed.key, &listed.value) {
                Ok(r) => out.push((r, listed.stored_at)),
                Err(e) => {
                    tracing::warn!(key = %listed.key, error.message = %e, "unreadable run record skipped")
                }
            }
        }
        out.sort_by_key(|(r, _)| std::cmp::Reverse(r.created_at));
        Ok(out)
    }

    /// All runs, newest first.
    pub async fn list(&self) -> Result<Vec<RunRecord>, StoreError> {
        Ok(self
            .list_with_times()
            .await?
            .into_iter()
            .map(|(r, _)| r)
            .collect())
    }

    /// Records every repository of a run as pending (idempotent: existing keys are kept).
    pub async fn add_repos(&self, run_id: &str, repos: &[String]) -> Result<(), StoreError> {
        let writes: Vec<_> = repos
            .iter()
            .map(|repo| {
                let kv = self.kv.clone();
                let key = progress_key(run_id, repo);
                let record = RepoProgress::pending(repo);
                async move { super::create(&kv, &key, &record).await }
            })
            .collect();
        let mut writes = futures::stream::iter(writes).buffer_unordered(256);
        while let Some(result) = writes.next().await {
            result?;
        }
        Ok(())
    }

    /// Removes progress keys of repositories that are not part of the run after all (an
    /// earlier attempt of the plan listed a repository that is gone now).
    pub async fn retain_repos(&self, run_id: &str, repos: &[String]) -> Result<(), StoreError> {
        let keep: std::collections::BTreeSet<String> =
            repos.iter().map(|r| progress_key(run_id, r)).collect();
        for listed in super::list(&self.kv, &format!("{run_id}.repo.>")).await? {
            if !keep.contains(&listed.key) {
                self.kv
                    .purge(&listed.key)
                    .await
                    .map_err(|e| BusError::nats(format!("removing {}", listed.key), e))?;
            }
        }
        Ok(())
    }

    /// Per-repository progress of a run, in repository order.
    pub async fn repo_progress(&self, run_id: &str) -> Result<Vec<RepoProgress>, StoreError> {
        let mut out = Vec::new();
        for listed in super::list(&self.kv, &format!("{run_id}.repo.>")).await? {
            out.push(super::decode::<RepoProgress>(&listed.key, &listed.value)?);
        }
        out.sort_by(|a, b| a.repo.cmp(&b.repo));
        Ok(out)
    }

    /// Settles one repository and counts it on its run. Safe to call again (a redelivered
    /// step): the first outcome stays, and the repeat is counted again, which the recount
    /// at the end corrects. Returns once the count is committed, with the run record when
    /// this call made the run final.
    pub async fn complete_repo(
        &self,
        run_id: &str,
        repo: &str,
        outcome: &RepoOutcome,
    ) -> Result<Option<RunRecord>, StoreError> {
        let key = progress_key(run_id, repo);
        let Some(settled) =
            super::update::<RepoProgress>(&self.kv, &key, || None, |p| p.settle(outcome)).await?
        else {
            tracing::warn!(
                run_id,
                repo,
                "repository is not part of the run; outcome ignored"
            );
            return Ok(None);
        };
        self.count(run_id, settled.record).await
    }

    /// Queues a settled repository's count for its run's next commit and waits for it.
    async fn count(
        &self,
        run_id: &str,
        progress: RepoProgress,
    ) -> Result<Option<RunRecord>, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let waiting = Waiting { progress, reply };
        let start_committer = {
            let mut runs = self.tally.lock();
            match runs.get_mut(run_id) {
                Some(queue) => {
                    queue.push(waiting);
                    false
                }
                None => {
                    runs.insert(run_id.to_string(), vec![waiting]);
                    true
                }
            }
        };
        if start_committer {
            // A task of its own, so a step abandoned at shutdown cannot strand the counts
            // of the others waiting on the same commit.
            let store = self.clone();
            let run_id = run_id.to_string();
            tokio::spawn(async move { store.commit_counts(&run_id).await });
        }
        match answer.await {
            Ok(Ok(record)) => Ok(record),
            Ok(Err(e)) => Err(StoreError::Shared(e)),
            Err(_) => Err(StoreError::Bus(BusError::nats(
                format!("counting a repository on run {run_id}"),
                "the commit ended without an answer",
            ))),
        }
    }

    /// Commits the counts waiting for `run_id`, batch after batch, until none is left.
    async fn commit_counts(&self, run_id: &str) {
        let mut guard = CommitterGuard {
            tally: &self.tally,
            run_id,
            finished: false,
        };
        loop {
            let batch = {
                let mut runs = self.tally.lock();
                let Some(queue) = runs.get_mut(run_id) else {
                    guard.finished = true;
                    return;
                };
                if queue.is_empty() {
                    runs.remove(run_id);
                    guard.finished = true;
                    return;
                }
                std::mem::take(queue)
            };
            let mut result = self.commit_batch(run_id, &batch).await.map_err(Arc::new);
            for waiting in batch {
                // The record that became final goes to one repository of the batch only,
                // so the run is announced once.
                let answer = match &mut result {
                    Ok(became_final) => Ok(became_final.take()),
                    Err(e) => Err(e.clone()),
                };
                let _ = waiting.reply.send(answer);
            }
        }
    }

    /// One compare-and-set of the run record for a batch; when the counters then say every
    /// repository settled, the run is finished from its progress keys.
    async fn commit_batch(
        &self,
        run_id: &str,
        batch: &[Waiting],
    ) -> Result<Option<RunRecord>, StoreError> {
        let counted = self
            .update(run_id, |r| {
                // Every count of the batch is made, whatever the others did.
                let mut changed = false;
                for waiting in batch {
                    changed |= r.count(&waiting.progress);
                }
                changed
            })
            .await?;
        match counted {
            Some((record, _))
                if !record.status.is_final() && record.repos_settled() >= record.repos_total =>
            {
                self.finish_if_complete(run_id).await
            }
            _ => Ok(None),
        }
    }

    /// Makes a running run final when no repository is pending, with counters recounted
    /// from the progress keys. Returns the record when this call made it final.
    pub async fn finish_if_complete(&self, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
        let progress = self.repo_progress(run_id).await?;
        let complete = progress.iter().all(|p| p.status != RepoStatus::Pending);
        let updated = self
            .update(run_id, |r| {
                if r.status != RunStatus::Running {
                    return false;
                }
                r.recount(&progress);
                if complete {
                    r.finish();
                }
                true
            })
            .await?;
        Ok(updated.and_then(|(r, became_final)| became_final.then_some(r)))
    }

    /// Ends a run that never started running (its plan could not be queued, or never
    /// completed) with `status` and the reason. Returns the record when this call made it
    /// final.
    pub async fn end_unplanned(
        &self,
        run_id: &str,
        status: RunStatus,
        step: &str,
        reason: &str,
    ) -> Result<Option<RunRecord>, StoreError> {
        let updated = self
            .update(run_id, |r| {
                if r.status != RunStatus::Queued {
                    return false;
                }
                r.push_error(RunError {
                    repo: None,
                    step: step.to_string(),
                    message: reason.to_string(),
                });
                r.finish();
                r.status = status;
                true
            })
            .await?;
        Ok(updated.and_then(|(r, became_final)| became_final.then_some(r)))
    }

    /// Makes `run_id` the active run of `target`, unless another run of the target is still
    /// active: then that run's id. A stale index (its run is final or gone) is replaced.
    pub async fn claim_target(
        &self,
        target: &str,
        run_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let key = target_key(target);
        let mine = ActiveRun {
            v: ActiveRun::VERSION,
            run_id: run_id.to_string(),
        };
        for attempt in 0..8 {
            if attempt > 0 {
                tokio::time::sleep(super::cas_backoff(attempt)).await;
            }
            if super::create(&self.kv, &key, &mine).await?.is_some() {
                return Ok(None);
            }
            let Some((active, revision)) = super::read::<ActiveRun>(&self.kv, &key).await? else {
                continue;
            };
            if active.run_id == run_id {
                return Ok(None);
            }
            match self.get(&active.run_id).await? {
                Some(r) if !r.status.is_final() => return Ok(Some(active.run_id)),
                _ => {
                    // The indexed run ended (or never existed): clear the index at the
                    // revision read, so a concurrent trigger's fresh claim is never removed.
                    if let Err(e) = self.kv.delete_expect_revision(&key, Some(revision)).await {
                        tracing::debug!(error.message = %e, "target index changed while clearing it");
                    }
                }
            }
        }
        Err(StoreError::Contended {
            bucket: crate::bus::RUNS_BUCKET,
            key,
        })
    }

    /// Clears the target's index when it still names `run_id`.
    pub async fn release_target(&self, target: &str, run_id: &str) -> Result<(), StoreError> {
        let key = target_key(target);
        if let Some((active, revision)) = super::read::<ActiveRun>(&self.kv, &key).await?
            && active.run_id == run_id
            && let Err(e) = self.kv.delete_expect_revision(&key, Some(revision)).await
        {
            tracing::debug!(error.message = %e, "target index changed while releasing it");
        }
        Ok(())
    }

    /// The active run of a target, if any.
    pub async fn active_run(&self, target: &str) -> Result<Option<String>, StoreError> {
        Ok(super::read::<ActiveRun>(&self.kv, &target_key(target))
            .await?
            .map(|(a, _)| a.run_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(total: u32) -> RunRecord {
        let mut r = RunRecord::new("run", "org:o", false);
        r.status = RunStatus::Running;
        r.repos_total = total;
        r
    }

    fn settled(repo: &str, outcome: RepoOutcome) -> RepoProgress {
        let mut p = RepoProgress::pending(repo);
        assert!(p.settle(&outcome));
        p
    }

    fn ok(created: u32) -> RepoOutcome {
        RepoOutcome::Reconciled {
            findings: created,
            applied: IssueCounts {
                created,
                ..Default::default()
            },
            planned: IssueCounts::default(),
            actions: vec![],
            unknown: BTreeMap::new(),
        }
    }

    #[test]
    fn a_repository_settles_once_and_keeps_its_first_outcome() {
        let mut p = RepoProgress::pending("o/a");
        assert!(p.settle(&ok(1)));
        assert!(!p.settle(&RepoOutcome::Failed {
            step: "scan".into(),
            reason: "late".into()
        }));
        assert_eq!(p.status, RepoStatus::Done);
    }

    #[test]
    fn recount_fixes_counters_and_sets_the_final_status() {
        let progress = vec![
            settled("o/a", ok(2)),
            settled(
                "o/b",
                RepoOutcome::Failed {
                    step: "scan".into(),
                    reason: "404".into(),
                },
            ),
        ];
        let mut r = running(2);
        // A redelivery after a crash counted one repository twice.
        r.count(&progress[0]);
        r.count(&progress[0]);
        r.recount(&progress);
        r.finish();
        assert_eq!((r.repos_done, r.repos_failed), (1, 1));
        assert_eq!(r.issues.created, 2);
        assert_eq!(r.status, RunStatus::Partial);
    }

    #[test]
    fn stalled_repositories_make_the_run_stalled_and_failures_failed() {
        let mut r = running(2);
        r.recount(&[
            settled("o/a", ok(0)),
            settled(
                "o/b",
                RepoOutcome::Stalled {
                    reason: "no progress".into(),
                },
            ),
        ]);
        r.finish();
        assert_eq!(r.status, RunStatus::Stalled);
        assert!(r.summary.unwrap().contains("1 stalled"));
        let mut r = running(1);
        r.recount(&[settled(
            "o/a",
            RepoOutcome::Failed {
                step: "scan".into(),
                reason: "x".into(),
            },
        )]);
        r.finish();
        assert_eq!(r.status, RunStatus::Failed);
    }

    #[test]
    fn long_texts_are_cut_and_records_stay_small() {
        let mut p = RepoProgress::pending("o/a");
        p.settle(&RepoOutcome::Failed {
            step: "scan".into(),
            reason: "x".repeat(1_000_000),
        });
        assert!(serde_json::to_vec(&p).unwrap().len() < 2_000);
        assert_eq!(truncate("héllo", 2), "h… (5 bytes cut)");
    }

    #[test]
    fn decodes_and_refuses_newer_versions() {
        let r = running(1);
        let bytes = serde_json::to_vec(&r).unwrap();
        assert_eq!(super::super::decode::<RunRecord>("run", &bytes).unwrap(), r);
        let mut v = serde_json::to_value(&r).unwrap();
        v["v"] = 2.into();
        let err =
            super::super::decode::<RunRecord>("run", &serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");
    }

    #[test]
    fn run_ids_must_be_uuids() {
        assert!(parse_run_id("0190c1de-0000-7000-8000-000000000000").is_some());
        assert!(parse_run_id("../etc").is_none());
        assert!(parse_run_id("a.b").is_none());
    }
}
