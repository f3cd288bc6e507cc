//! The workflow: step handlers for `plan`, `scan` and `reconcile`, and the bookkeeping that
//! completes each run exactly once.
//!
//! ```text
//! guardian.run ─► plan ─► scan (per repo) ─► [review] ─► reconcile (per repo) ─► run final status
//! ```
//! Every handler is idempotent because JetStream delivers at least once: fan-out publishes
//! carry deterministic `Nats-Msg-Id`s, issue writes happen under a fenced per-repository
//! lease after re-reading GitHub, and each repository settles once on its run by
//! compare-and-set on its own progress key. Every run ends: a repository whose step is
//! dead-lettered settles as failed, a failed plan fails the run, and the sweeper
//! finalises runs that stopped moving as `stalled`.

pub mod error;
pub mod issue_plan;
pub mod plan;
pub mod reconcile;
pub mod review;
pub mod scan;
pub mod sweep;

use std::sync::Arc;

use futures::FutureExt as _;
use futures::future::BoxFuture;

use crate::bus::consumer::{DeadLettered, StepHandler};
use crate::bus::envelope::{Envelope, Task};
use crate::bus::events::{self, Event};
use crate::bus::flags::Flags;
use crate::bus::{
    BUDGET_BUCKET, Bus, HTTP_BUCKET, LEASES_BUCKET, REPOS_BUCKET, RUNS_BUCKET, Step, TOKENS_BUCKET,
};
use crate::config::Settings;
use crate::domain::RepoRef;
use crate::github::{Budget, EtagCache, GithubClient};
use crate::policy::Selection;
use crate::store::leases::LeaseStore;
use crate::store::repos::RepoStore;
use crate::store::runs::{RepoOutcome, RepoStatus, RunError, RunRecord, RunStatus, RunStore};
use crate::telemetry;
use error::StepError;

/// Everything a step needs; shared by all consumers of one worker.
pub struct Workflow {
    pub bus: Bus,
    pub github: GithubClient,
    pub runs: RunStore,
    pub repos: RepoStore,
    pub leases: LeaseStore,
    pub settings: Arc<Settings>,
    pub flags: Flags,
    /// The review step's model, cache and budgets; `None` when no model is configured.
    pub llm: Option<Arc<crate::llm::Llm>>,
    /// Identifies this worker in leases and logs.
    pub worker_id: String,
}

/// Attempts at publishing a run's `done` event before leaving it to the sweeper.
const DONE_ATTEMPTS: u32 = 4;

impl Workflow {
    pub async fn new(
        bus: Bus,
        settings: Arc<Settings>,
        flags: Flags,
    ) -> anyhow::Result<Arc<Workflow>> {
        let cache = match settings.github.etag_cache {
            true => Some(EtagCache::new(bus.kv(HTTP_BUCKET).await?)),
            false => None,
        };
        let worker_id = format!(
            "{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into()),
            uuid::Uuid::now_v7().simple()
        );
        let budget = Budget::shared(
            bus.kv(BUDGET_BUCKET).await?,
            &settings.github.budget,
            settings.github.write_interval,
            &worker_id,
        );
        let mut github = GithubClient::new(&settings.github, cache)?.with_budget(budget);
        if settings.github.app().is_some() {
            github = github.share_tokens(bus.kv(TOKENS_BUCKET).await?);
        }
        Ok(Arc::new(Workflow {
            runs: RunStore::new(bus.kv(RUNS_BUCKET).await?),
            repos: RepoStore::new(bus.kv(REPOS_BUCKET).await?),
            leases: LeaseStore::new(bus.kv(LEASES_BUCKET).await?),
            github,
            llm: crate::llm::Llm::connect(&bus, &settings.llm).await?,
            bus,
            settings,
            flags,
            worker_id,
        }))
    }

    /// Policies to run: configuration, minus those switched off fleet-wide right now.
    pub fn selection(&self) -> Selection {
        self.selection_for(None)
    }

    /// [`Workflow::selection`] with the overrides of `owner`'s `[targets.orgs.<owner>]`.
    pub fn selection_for(&self, owner: Option<&str>) -> Selection {
        let mut selection = self.settings.policy_selection_for(owner);
        selection.disabled = self.flags.snapshot().disabled_policies;
        selection
    }

    /// Records one repository's outcome on its run, and finishes the run when it was the
    /// last one. Safe to call twice for the same repository.
    pub async fn complete_repo(
        &self,
        run_id: &str,
        repo: &RepoRef,
        outcome: RepoOutcome,
    ) -> Result<(), StepError> {
        if let Some(record) = self
            .runs
            .complete_repo(run_id, &repo.full_name(), &outcome)
            .await?
        {
            self.finished(&record).await;
        }
        Ok(())
    }

    /// Announces a run that just became final (called by the one writer that made it so):
    /// metrics, the target's active-run index cleared, and the `done` event.
    pub async fn finished(&self, record: &RunRecord) {
        let outcome = record.status.as_str();
        if let Some(d) = record.duration() {
            telemetry::metrics().observe_run(outcome, d);
        }
        tracing::info!(run_id = %record.run_id, status = outcome, summary = ?record.summary, "run finished");
        if let Err(e) = self
            .runs
            .release_target(&record.target, &record.run_id)
            .await
        {
            tracing::warn!(error.message = %e, "run finished but its target index was not cleared; the next trigger clears it");
        }
        self.announce_done(record).await;
    }

    /// Publishes the `done` event of a final run, retrying; its `Nats-Msg-Id` makes a
    /// repeat harmless. Marks the run `done_published`; when every attempt failed, the
    /// sweeper publishes it later.
    pub async fn announce_done(&self, record: &RunRecord) {
        let data =
            serde_json::json!({ "status": record.status.as_str(), "summary": record.summary });
        for attempt in 0..DONE_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
            }
            match events::emit(
                &self.bus,
                &record.run_id,
                Event::Done,
                None,
                "",
                data.clone(),
            )
            .await
            {
                Ok(()) => {
                    if let Err(e) = self
                        .runs
                        .update(&record.run_id, |r| {
                            !std::mem::replace(&mut r.done_published, true)
                        })
                        .await
                    {
                        tracing::warn!(error.message = %e, "done event published but not marked; it may be published again (deduplicated)");
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(attempt, error.message = %e, error.cause_chain = ?e, "done event not published yet")
                }
            }
        }
        tracing::error!(run_id = %record.run_id, "done event not published; the sweeper retries it");
    }

    /// Ends a run whose plan failed for good: nothing pending stays pending.
    pub async fn fail_run(&self, run_id: &str, step: &str, reason: &str) -> Result<(), StepError> {
        if let Some(record) = self
            .runs
            .end_unplanned(run_id, RunStatus::Failed, step, reason)
            .await?
        {
            self.finished(&record).await;
            return Ok(());
        }
        // The plan failed after fanning out: every repository not yet settled fails with
        // the plan's reason (scans already running may still finish first; the first
        // outcome stays).
        for p in self.runs.repo_progress(run_id).await? {
            if p.status == RepoStatus::Pending
                && let Some(record) = self
                    .runs
                    .complete_repo(
                        run_id,
                        &p.repo,
                        &RepoOutcome::Failed {
                            step: step.to_string(),
                            reason: format!("the plan failed: {reason}"),
                        },
                    )
                    .await?
            {
                self.finished(&record).await;
            }
        }
        Ok(())
    }

    async fn dead_lettered(&self, letter: DeadLettered) -> Result<(), StepError> {
        let Some(run_id) = letter.run_id else {
            return Ok(());
        };
        let step = letter.step.as_str().to_string();
        let reason = letter.reason;
        events::emit(
            &self.bus,
            &run_id,
            Event::Failed,
            letter.repo.as_ref(),
            &step,
            serde_json::json!({ "step": step, "reason": reason }),
        )
        .await?;
        match (letter.step, letter.repo) {
            (Step::Plan, _) => self.fail_run(&run_id, &step, &reason).await,
            (_, Some(repo)) => {
                self.complete_repo(&run_id, &repo, RepoOutcome::Failed { step, reason })
                    .await
            }
            (_, None) => {
                // Names a run but no repository: noted on the run; the sweeper ends the
                // run if this leaves a repository pending for good.
                self.runs
                    .update(&run_id, |r| {
                        r.push_error(RunError {
                            repo: None,
                            step: step.clone(),
                            message: reason.clone(),
                        });
                        true
                    })
                    .await?;
                Ok(())
            }
        }
    }
}

/// The workflow as the bus sees it.
pub struct Handler(pub Arc<Workflow>);

impl StepHandler for Handler {
    fn handle(&self, envelope: Envelope) -> BoxFuture<'static, Result<(), StepError>> {
        let wf = self.0.clone();
        async move {
            let run_id = envelope.run_id.clone();
            match envelope.task {
                Task::Plan(t) => plan::run(&wf, &run_id, t).await,
                Task::Scan(t) => scan::run(&wf, &run_id, t).await,
                Task::Review(t) => review::run(&wf, &run_id, t).await,
                Task::Reconcile(t) => reconcile::run(&wf, &run_id, t).await,
            }
        }
        .boxed()
    }

    fn dead_lettered(&self, letter: DeadLettered) -> BoxFuture<'static, Result<(), StepError>> {
        let wf = self.0.clone();
        async move { wf.dead_lettered(letter).await }.boxed()
    }
}
