//! Run records in `guardian_runs` (key = run id): target, status, counts, timings, errors.
//!
//! A run completes exactly once: each repository is removed from `pending` by a
//! compare-and-set, and the writer that removes the last one also sets the final status.
//! Removing a repository that is no longer pending changes nothing, which makes redelivered
//! steps harmless.

use std::collections::BTreeSet;

use async_nats::jetstream::kv;
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use super::{Record, StoreError};
use crate::bus::BusError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Partial,
    Failed,
}

impl RunStatus {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Partial | RunStatus::Failed
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Partial => "partial",
            RunStatus::Failed => "failed",
        }
    }
}

/// Issue actions, taken (or planned in a dry run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// LLM tokens as the provider reported them (`usage.prompt_tokens`, `.completion_tokens`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    pub step: String,
    pub message: String,
}

/// How many errors a record keeps verbatim (the count is always exact).
const MAX_ERRORS_KEPT: usize = 50;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub v: u32,
    pub run_id: String,
    pub target: String,
    pub dry_run: bool,
    pub status: RunStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub started_at: Option<time::OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub finished_at: Option<time::OffsetDateTime>,
    pub repos_total: u32,
    pub repos_done: u32,
    pub repos_failed: u32,
    /// Repositories not yet reconciled (nor failed for good).
    pub pending: BTreeSet<String>,
    pub findings: u32,
    /// Issue actions taken.
    pub issues: IssueCounts,
    /// Issue actions a dry run would have taken.
    pub planned: IssueCounts,
    pub error_count: u32,
    pub errors: Vec<RunError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Tokens the review step spent on this run (absent when none).
    #[serde(default, skip_serializing_if = "LlmTokens::is_zero")]
    pub llm_tokens: LlmTokens,
}

impl Record for RunRecord {
    const BUCKET: &'static str = crate::bus::RUNS_BUCKET;
    const VERSION: u32 = 1;
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
    },
    Failed {
        step: String,
        reason: String,
    },
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
            repos_total: 0,
            repos_done: 0,
            repos_failed: 0,
            pending: BTreeSet::new(),
            findings: 0,
            issues: IssueCounts::default(),
            planned: IssueCounts::default(),
            error_count: 0,
            errors: vec![],
            summary: None,
            llm_tokens: LlmTokens::default(),
        }
    }

    pub fn push_error(&mut self, error: RunError) {
        self.error_count += 1;
        if self.errors.len() < MAX_ERRORS_KEPT {
            self.errors.push(error);
        }
    }

    /// Sets the final status from the counts, once.
    pub fn finish(&mut self) {
        self.status = if self.repos_total > 0 && self.repos_failed == self.repos_total {
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
        let verb = if self.dry_run { "would be" } else { "" };
        self.summary = Some(format!(
            "{} of {} repositories reconciled, {} failed; {} findings; issues {verb} created {}, updated {}, reopened {}, closed {}",
            self.repos_done, self.repos_total, self.repos_failed, self.findings,
            counts.created, counts.updated, counts.reopened, counts.closed
        ).replace("  ", " "));
    }

    /// Applies one repository's outcome; `true` when it changed the record.
    pub fn apply(&mut self, repo: &str, outcome: &RepoOutcome) -> bool {
        if self.status.is_final() || !self.pending.remove(repo) {
            return false;
        }
        match outcome {
            RepoOutcome::Reconciled {
                findings,
                applied,
                planned,
            } => {
                self.repos_done += 1;
                self.findings += findings;
                self.issues.add(applied);
                self.planned.add(planned);
            }
            RepoOutcome::Failed { step, reason } => {
                self.repos_failed += 1;
                self.push_error(RunError {
                    repo: Some(repo.to_string()),
                    step: step.clone(),
                    message: reason.clone(),
                });
            }
        }
        if self.pending.is_empty() && self.status == RunStatus::Running {
            self.finish();
        }
        true
    }

    pub fn duration(&self) -> Option<std::time::Duration> {
        let end = self.finished_at?;
        (end - self.created_at).try_into().ok()
    }
}

#[derive(Clone)]
pub struct RunStore {
    pub kv: kv::Store,
}

impl RunStore {
    pub fn new(kv: kv::Store) -> Self {
        RunStore { kv }
    }

    pub async fn create(&self, record: &RunRecord) -> Result<bool, StoreError> {
        super::create(&self.kv, &record.run_id, record).await
    }

    pub async fn get(&self, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
        Ok(super::read::<RunRecord>(&self.kv, run_id)
            .await?
            .map(|(r, _)| r))
    }

    /// Changes an existing run with compare-and-set; `None` when the run does not exist.
    /// Returns the record and whether this call made the run final.
    pub async fn update(
        &self,
        run_id: &str,
        mut change: impl FnMut(&mut RunRecord) -> bool,
    ) -> Result<Option<(RunRecord, bool)>, StoreError> {
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
        Ok(result.map(|(r, _)| (r, became_final)))
    }

    /// All runs, newest first.
    pub async fn list(&self) -> Result<Vec<RunRecord>, StoreError> {
        let mut keys = self
            .kv
            .keys()
            .await
            .map_err(|e| BusError::nats("listing guardian_runs", e))?;
        let mut out = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| BusError::nats("listing guardian_runs", e))?;
            if let Some(r) = self.get(&key).await? {
                out.push(r);
            }
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(repos: &[&str]) -> RunRecord {
        let mut r = RunRecord::new("run", "org:o", false);
        r.status = RunStatus::Running;
        r.repos_total = repos.len() as u32;
        r.pending = repos.iter().map(|s| s.to_string()).collect();
        r
    }

    fn ok(created: u32) -> RepoOutcome {
        RepoOutcome::Reconciled {
            findings: created,
            applied: IssueCounts {
                created,
                ..Default::default()
            },
            planned: IssueCounts::default(),
        }
    }

    #[test]
    fn completes_once_and_ignores_repeats() {
        let mut r = running(&["o/a", "o/b"]);
        assert!(r.apply("o/a", &ok(1)));
        assert!(
            !r.apply("o/a", &ok(1)),
            "a redelivered step must not count twice"
        );
        assert_eq!(r.status, RunStatus::Running);
        assert!(r.apply("o/b", &ok(2)));
        assert_eq!(r.status, RunStatus::Succeeded);
        assert_eq!(r.issues.created, 3);
        assert!(!r.apply("o/b", &ok(2)));
    }

    #[test]
    fn failures_make_a_run_partial_or_failed() {
        let failed = || RepoOutcome::Failed {
            step: "scan".into(),
            reason: "404".into(),
        };
        let mut r = running(&["o/a", "o/b"]);
        r.apply("o/a", &failed());
        r.apply("o/b", &ok(0));
        assert_eq!(r.status, RunStatus::Partial);
        let mut r = running(&["o/a"]);
        r.apply("o/a", &failed());
        assert_eq!(r.status, RunStatus::Failed);
        assert_eq!(r.errors[0].message, "404");
    }

    #[test]
    fn decodes_and_refuses_newer_versions() {
        let r = running(&["o/a"]);
        let bytes = serde_json::to_vec(&r).unwrap();
        assert_eq!(super::super::decode::<RunRecord>("run", &bytes).unwrap(), r);
        let mut v = serde_json::to_value(&r).unwrap();
        v["v"] = 2.into();
        let err =
            super::super::decode::<RunRecord>("run", &serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");
    }
}
