//! `review` (optional): asks the configured model for repository-specific remediation of
//! each finding and, for the `llm-audit` policy, for workflow problems the rules missed;
//! then hands the findings to `reconcile`.
//!
//! The model only adds: text under a finding's rule-based remediation, and `llm-audit`
//! findings whose quoted lines exist in the workflow file. It never removes a finding and
//! never touches an issue. Each prompt is looked up in the answer cache first, so an
//! unchanged finding (same fingerprint, same content) never reaches the model again, on
//! any worker. Before every call the per-run and the daily token budgets are checked.
//! Any failure — provider down, slow, rate limiting, garbage, an answer off the schema —
//! degrades to the rule-based text: the step still succeeds, the error is counted under
//! `guardian_errors_total{kind="llm"}`, and it is logged once per run, not per finding.

use super::Workflow;
use super::error::StepError;
use super::scan::forward_to_reconcile;
use crate::bus::Step;
use crate::bus::envelope::{Envelope, ReconcileTask, Task};
use crate::domain::RepoRef;
use crate::github::snapshot::segment;
use crate::github::{CachePolicy, GithubError, models};
use crate::llm::answer::{self, AUDIT_POLICY};
use crate::llm::prompt::{self, Prompt};
use crate::llm::store::Counter;
use crate::llm::{Llm, LlmError, LlmTokens};
use crate::store::runs::RunError;
use crate::telemetry;

/// Workflow files read for the audit at most.
const MAX_WORKFLOW_FILES: usize = 20;

/// Sends a scanned repository on: to `review` when a model is configured and the
/// `disable_llm` switch is off, straight to `reconcile` otherwise.
pub async fn forward(wf: &Workflow, run_id: &str, task: ReconcileTask) -> Result<(), StepError> {
    if wf.llm.is_none() || wf.flags.snapshot().disable_llm {
        return forward_to_reconcile(wf, run_id, task).await;
    }
    let msg_id = format!("{run_id}.review.{}", task.repo.full_name());
    let envelope = Envelope::new(run_id, Task::Review(task));
    wf.bus
        .publish(Step::Review.subject(), &msg_id, envelope.encode())
        .await?;
    Ok(())
}

#[tracing::instrument(skip_all, fields(run_id, repo = %task.repo))]
pub async fn run(wf: &Workflow, run_id: &str, mut task: ReconcileTask) -> Result<(), StepError> {
    // The switch is read again here: it takes effect for steps already queued. A
    // repository without issues cannot receive the text, so it costs no tokens.
    let wanted = task.has_issues && !wf.flags.snapshot().disable_llm;
    if let Some(llm) = wf.llm.as_deref().filter(|_| wanted) {
        let mut review = Review {
            wf,
            llm,
            run_id,
            spent: LlmTokens::default(),
            stopped: None,
        };
        if audit_enabled(wf) {
            review.audit(&mut task).await;
        }
        review.remediations(&mut task).await;
        review.finish(&task.repo).await?;
    }
    forward_to_reconcile(wf, run_id, task).await
}

fn audit_enabled(wf: &Workflow) -> bool {
    let selection = wf.selection();
    !selection.disabled.contains(AUDIT_POLICY)
        && selection.enabled.get(AUDIT_POLICY).copied().unwrap_or(true)
}

/// Why the review of one repository stopped asking the model.
enum Stop {
    Failed(LlmError),
    Budget(String),
}

struct Review<'a> {
    wf: &'a Workflow,
    llm: &'a Llm,
    run_id: &'a str,
    /// Tokens this step spent, added to the run record at the end.
    spent: LlmTokens,
    /// Set at the first failure or exhausted budget: no further calls in this step.
    stopped: Option<Stop>,
}

impl Review<'_> {
    /// The validated answer to `prompt`: from the cache, else from the model (budgets
    /// permitting). `None` when there is none; the reason is kept in `self.stopped`.
    async fn ask<T>(
        &mut self,
        prompt: &Prompt,
        validate: impl Fn(&str) -> Result<T, LlmError>,
    ) -> Option<T> {
        let model = self.llm.client.model();
        let key = prompt.cache_key(model);
        if let Some(content) = self.llm.store.cached(&key).await
            && let Ok(value) = validate(&content)
        {
            return Some(value);
        }
        if self.stopped.is_some() {
            return None;
        }
        if let Some(reason) = self.over_budget().await {
            self.stopped = Some(Stop::Budget(reason));
            return None;
        }
        let result = match self.llm.client.complete(prompt).await {
            Ok(completion) => {
                self.account(completion.usage).await;
                validate(&completion.content).map(|v| (v, completion.content))
            }
            Err(e) => Err(e),
        };
        match result {
            Ok((value, content)) => {
                self.llm.store.remember(&key, model, &content).await;
                Some(value)
            }
            Err(e) => {
                telemetry::metrics().error("llm");
                self.stopped = Some(Stop::Failed(e));
                None
            }
        }
    }

    /// The budget that is used up, if any. A counter that cannot be read counts as used
    /// up: without it, spending could not be bounded.
    async fn over_budget(&self) -> Option<String> {
        let settings = self.llm.client.settings();
        for (limit, counter, name) in [
            (
                settings.max_tokens_per_run,
                Counter::Run(self.run_id.to_string()),
                "llm.max_tokens_per_run",
            ),
            (
                settings.max_tokens_per_day,
                Counter::today(),
                "llm.max_tokens_per_day",
            ),
        ] {
            if limit == 0 {
                continue;
            }
            match self.llm.store.spent(&counter).await {
                Ok(spent) if spent < limit => {}
                Ok(spent) => return Some(format!("{name} = {limit} reached ({spent} spent)")),
                Err(e) => return Some(format!("{name} cannot be checked: {e}")),
            }
        }
        None
    }

    async fn account(&mut self, usage: LlmTokens) {
        self.spent.add(usage);
        for counter in [Counter::Run(self.run_id.to_string()), Counter::today()] {
            if let Err(e) = self.llm.store.add(&counter, usage).await {
                tracing::warn!(error.message = %e, "LLM tokens not counted towards the budget");
            }
        }
    }

    /// `llm-audit`: findings in the workflow files, or the policy marked unknown (its
    /// issues then stay as they are).
    async fn audit(&mut self, task: &mut ReconcileTask) {
        let settings = self.llm.client.settings();
        let outcome = match workflow_files(self.wf, &task.repo, task.head_sha.as_deref()).await {
            Err(reason) => Err(reason),
            Ok(files) if files.is_empty() => Ok(answer::Audit::default()),
            Ok(files) => {
                let (prompt, sent) = prompt::audit(&task.repo, &files, settings.max_input_chars);
                let (max_chars, max_findings) =
                    (settings.max_output_chars, settings.max_audit_findings);
                self.ask(&prompt, |content| {
                    answer::audit(content, &sent, max_chars, max_findings)
                })
                .await
                .ok_or_else(|| match &self.stopped {
                    Some(Stop::Budget(reason)) => format!("review skipped: {reason}"),
                    Some(Stop::Failed(e)) => format!("model unavailable: {e}"),
                    None => "no answer".to_string(),
                })
            }
        };
        match outcome {
            Ok(audit) => {
                if audit.dropped > 0 {
                    tracing::info!(
                        dropped = audit.dropped,
                        "llm-audit items dropped: unknown file or quoted lines not in the file"
                    );
                }
                task.findings.extend(audit.findings);
                task.findings.sort_by_key(|f| f.fingerprint());
                if !task.evaluated.iter().any(|p| p == AUDIT_POLICY) {
                    task.evaluated.push(AUDIT_POLICY.to_string());
                }
            }
            Err(reason) => {
                task.evaluated.retain(|p| p != AUDIT_POLICY);
                task.unknown.insert(AUDIT_POLICY.to_string(), reason);
            }
        }
    }

    /// Repository-specific remediation under each rule-based finding's own.
    async fn remediations(&mut self, task: &mut ReconcileTask) {
        let settings = self.llm.client.settings();
        let (max_in, max_out) = (settings.max_input_chars, settings.max_output_chars);
        for finding in task
            .findings
            .iter_mut()
            .filter(|f| f.policy != AUDIT_POLICY)
        {
            let prompt = prompt::remediation(&task.repo, finding, max_in);
            if let Some(text) = self
                .ask(&prompt, |content| answer::remediation(content, max_out))
                .await
            {
                finding.remediation = format!(
                    "{}\n\n#### Suggested for this repository\n\n{text}\n\n_Written by a \
                     language model from the finding above; review before applying._",
                    finding.remediation.trim_end()
                );
            }
        }
    }

    /// Adds the step's tokens to the run record and reports trouble once per run.
    async fn finish(self, repo: &RepoRef) -> Result<(), StepError> {
        if !self.spent.is_zero() {
            let spent = self.spent;
            self.wf
                .runs
                .update(self.run_id, |r| {
                    r.llm_tokens.add(spent);
                    true
                })
                .await?;
        }
        let Some(stop) = self.stopped else {
            return Ok(());
        };
        let (what, message) = match &stop {
            Stop::Failed(e) => (
                "failure",
                format!("LLM review unavailable, rule-based text kept: {e}"),
            ),
            Stop::Budget(reason) => (
                "budget",
                format!("LLM review skipped, rule-based text kept: {reason}"),
            ),
        };
        if !self.llm.store.first_notice(self.run_id, what).await {
            tracing::debug!(%repo, "LLM review degraded again; already reported for this run");
            return Ok(());
        }
        match &stop {
            Stop::Failed(e) => {
                tracing::warn!(error.message = %e, error.cause_chain = ?e, %repo, "{message}")
            }
            Stop::Budget(_) => tracing::info!(%repo, "{message}"),
        }
        self.wf
            .runs
            .update(self.run_id, |r| {
                r.push_error(RunError {
                    repo: Some(repo.full_name()),
                    step: Step::Review.to_string(),
                    message: message.clone(),
                });
                true
            })
            .await?;
        Ok(())
    }
}

/// The workflow files at `head`, as text. Read exactly as the scan reads files (the tree
/// and the blobs by SHA, both immutable), so they come from the shared ETag cache without
/// a request when the scan already read them.
async fn workflow_files(
    wf: &Workflow,
    repo: &RepoRef,
    head: Option<&str>,
) -> Result<Vec<(String, String)>, String> {
    let Some(sha) = head else {
        return Ok(vec![]);
    };
    let base = format!("/repos/{}/{}", segment(&repo.owner), segment(&repo.name));
    let Some(tree) =
        immutable::<models::Tree>(wf, &format!("{base}/git/trees/{sha}?recursive=1")).await?
    else {
        return Ok(vec![]);
    };
    let mut files = Vec::new();
    for entry in tree
        .tree
        .into_iter()
        .filter(|e| e.kind == "blob" && is_workflow(&e.path))
        .take(MAX_WORKFLOW_FILES)
    {
        let path = format!("{base}/git/blobs/{}", entry.sha);
        let Some(blob) = immutable::<models::Blob>(wf, &path).await? else {
            continue;
        };
        let text = blob
            .text()
            .ok_or_else(|| format!("workflow file {} is not UTF-8 text", entry.path))?;
        files.push((entry.path, text));
    }
    Ok(files)
}

/// A GitHub resource that never changes (by SHA), typed; `None` when GitHub has none.
async fn immutable<T: serde::de::DeserializeOwned>(
    wf: &Workflow,
    path: &str,
) -> Result<Option<T>, String> {
    let unreadable = |e: GithubError| format!("workflow files unreadable: {e}");
    match wf.github.get(path, CachePolicy::Immutable).await {
        Ok(Some(page)) => models::decode(&page, path).map(Some).map_err(unreadable),
        Ok(None) => Ok(None),
        Err(e) => Err(unreadable(e)),
    }
}

fn is_workflow(path: &str) -> bool {
    path.strip_prefix(".github/workflows/").is_some_and(|name| {
        !name.contains('/') && (name.ends_with(".yml") || name.ends_with(".yaml"))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_top_level_workflow_yaml_files_are_audited() {
        assert!(super::is_workflow(".github/workflows/ci.yml"));
        assert!(super::is_workflow(".github/workflows/release.yaml"));
        assert!(!super::is_workflow(".github/workflows/scripts/x.yml"));
        assert!(!super::is_workflow(".github/dependabot.yml"));
        assert!(!super::is_workflow("workflows/ci.yml"));
    }
}
