//! The workflow: step handlers for `plan`, `scan` and `reconcile`, and the bookkeeping that
//! completes each run exactly once.
//!
//! ```text
//! guardian.run ─► plan ─► scan (per repo) ─► [review] ─► reconcile (per repo) ─► run final status
//! ```
//! Every handler is idempotent because JetStream delivers at least once: fan-out publishes
//! carry deterministic `Nats-Msg-Id`s, issue writes happen under a per-repository lease
//! after re-reading GitHub, and run counters change by compare-and-set on a `pending` set.

pub mod error;
pub mod issue_plan;
pub mod plan;
pub mod reconcile;
pub mod review;
pub mod scan;

use std::sync::Arc;

use futures::FutureExt as _;
use futures::future::BoxFuture;

use crate::bus::consumer::StepHandler;
use crate::bus::envelope::{Envelope, Task};
use crate::bus::events::{self, Event};
use crate::bus::flags::Flags;
use crate::bus::{Bus, HTTP_BUCKET, REPOS_BUCKET, RUNS_BUCKET};
use crate::config::Settings;
use crate::domain::RepoRef;
use crate::github::{EtagCache, GithubClient};
use crate::policy::Selection;
use crate::store::StoreError;
use crate::store::repos::RepoStore;
use crate::store::runs::{RepoOutcome, RunStatus, RunStore};
use crate::telemetry;
use error::{ErrorKind, StepError};

impl From<StoreError> for StepError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Bus(_) | StoreError::Contended { .. } => {
                StepError::transient(ErrorKind::Nats, e.to_string(), None)
            }
            StoreError::Corrupt { .. } | StoreError::NewerVersion { .. } => {
                StepError::permanent(ErrorKind::Decode, e.to_string())
            }
        }
    }
}

/// Everything a step needs; shared by all consumers of one worker.
pub struct Workflow {
    pub bus: Bus,
    pub github: GithubClient,
    pub runs: RunStore,
    pub repos: RepoStore,
    pub settings: Arc<Settings>,
    pub flags: Flags,
    /// The review step's model, cache and budgets; `None` when no model is configured.
    pub llm: Option<Arc<crate::llm::Llm>>,
    /// Identifies this worker in leases and logs.
    pub worker_id: String,
}

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
        let github = GithubClient::new(&settings.github, cache)?;
        Ok(Arc::new(Workflow {
            runs: RunStore::new(bus.kv(RUNS_BUCKET).await?),
            repos: RepoStore::new(bus.kv(REPOS_BUCKET).await?),
            github,
            llm: crate::llm::Llm::connect(&bus, &settings.llm).await?,
            bus,
            settings,
            flags,
            worker_id: format!(
                "{}-{}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into()),
                uuid::Uuid::now_v7().simple()
            ),
        }))
    }

    /// Policies to run: configuration, minus those switched off fleet-wide right now.
    pub fn selection(&self) -> Selection {
        let mut selection = Selection::default();
        for (id, p) in &self.settings.policies {
            if let Some(enabled) = p.enabled {
                selection.enabled.insert(id.clone(), enabled);
            }
            selection.options.insert(id.clone(), p.options.clone());
        }
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
        let key = repo.full_name();
        let updated = self
            .runs
            .update(run_id, |r| r.apply(&key, &outcome))
            .await?;
        if let Some((record, true)) = updated {
            self.finished(&record).await;
        }
        Ok(())
    }

    /// Announces a run that just became final (called by the one writer that made it so).
    pub async fn finished(&self, record: &crate::store::runs::RunRecord) {
        let outcome = record.status.as_str();
        if let Some(d) = record.duration() {
            telemetry::metrics().observe_run(outcome, d);
        }
        tracing::info!(run_id = %record.run_id, status = outcome, summary = ?record.summary, "run finished");
        let data = serde_json::json!({ "status": outcome, "summary": record.summary });
        if let Err(e) = events::emit(&self.bus, &record.run_id, Event::Done, None, "", data).await {
            tracing::warn!(error.message = %e, "run finished but its done event was not published");
        }
    }

    async fn dead_lettered(
        &self,
        run_id: Option<String>,
        envelope: Option<Envelope>,
        reason: String,
    ) -> Result<(), StepError> {
        let Some(run_id) = run_id else { return Ok(()) };
        let step = envelope
            .as_ref()
            .map(|e| e.task.step().to_string())
            .unwrap_or_else(|| "unknown".into());
        let repo = envelope.as_ref().and_then(|e| e.task.repo().cloned());
        let _ = events::emit(
            &self.bus,
            &run_id,
            Event::Failed,
            repo.as_ref(),
            &step,
            serde_json::json!({ "step": step, "reason": reason }),
        )
        .await;
        match (&envelope, repo) {
            (Some(_), Some(repo)) => {
                self.complete_repo(&run_id, &repo, RepoOutcome::Failed { step, reason })
                    .await
            }
            (
                Some(Envelope {
                    task: Task::Plan(_),
                    ..
                }),
                None,
            ) => {
                let updated = self
                    .runs
                    .update(&run_id, |r| {
                        if r.status.is_final() {
                            return false;
                        }
                        r.push_error(crate::store::runs::RunError {
                            repo: None,
                            step: step.clone(),
                            message: reason.clone(),
                        });
                        r.pending.clear();
                        r.finish();
                        r.status = RunStatus::Failed;
                        true
                    })
                    .await?;
                if let Some((record, true)) = updated {
                    self.finished(&record).await;
                }
                Ok(())
            }
            _ => {
                // Undecodable payload that still names a run: note it on the run.
                self.runs
                    .update(&run_id, |r| {
                        r.push_error(crate::store::runs::RunError {
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

    fn dead_lettered(
        &self,
        run_id: Option<String>,
        envelope: Option<Envelope>,
        reason: String,
    ) -> BoxFuture<'static, Result<(), StepError>> {
        let wf = self.0.clone();
        async move { wf.dead_lettered(run_id, envelope, reason).await }.boxed()
    }
}
