//! What the workflow policies share: which files are GitHub Actions workflows or
//! composite actions, parsing them with `github-actions-models` (the typed model zizmor
//! uses), walking their jobs and steps with the region of text each came from, and
//! quoting the offending lines in a finding.
//!
//! The policies themselves live beside this module (`dangerous_workflow`,
//! `workflow_permissions`, `pinned_actions`); this module decides nothing about security.

pub(crate) mod expr;
pub(crate) mod locate;

use github_actions_models::action::{Action, Runs, StepBody};
use github_actions_models::common::expr::LoE;
use github_actions_models::common::{Env, EnvValue, Uses};
use github_actions_models::workflow::event::WorkflowDispatchInputType;
use github_actions_models::workflow::event::{OptionalBody, WorkflowCallInputType};
use github_actions_models::workflow::job::Step;
use github_actions_models::workflow::{Job, Workflow};

use super::{NoOptions, OptionError, Policy, PolicyOptions, finding, located, parse_options};
use crate::domain::{Finding, Input, Location, Severity, Snapshot};
use locate::{Locator, Region};

/// A workflow policy: its constants and a check of one parsed file. [`Policy`] follows
/// through [`Workflows`], so every workflow policy reads the same files the same way.
pub(crate) trait WorkflowCheck: Send + Sync {
    const ID: &'static str;
    const DESCRIPTION: &'static str;
    const SEVERITY: Severity;

    fn validate(&self, options: &PolicyOptions) -> Result<(), OptionError> {
        parse_options::<NoOptions>(options).map(drop)
    }

    /// The findings of one workflow or action file.
    fn check(&self, report: &Report<'_>, options: &PolicyOptions) -> Vec<Finding>;
}

/// The [`Policy`] of a [`WorkflowCheck`].
pub struct Workflows<C>(pub C);

impl<C: WorkflowCheck> Policy for Workflows<C> {
    fn id(&self) -> &'static str {
        C::ID
    }

    fn description(&self) -> &'static str {
        C::DESCRIPTION
    }

    fn severity(&self) -> Severity {
        C::SEVERITY
    }

    fn file_based(&self) -> bool {
        true
    }

    fn needs(&self) -> &'static [Input] {
        &[Input::Tree, Input::Contents]
    }

    fn validate_options(&self, options: &PolicyOptions) -> Result<(), OptionError> {
        self.0.validate(options)
    }

    fn evaluate(&self, snapshot: &Snapshot, options: &PolicyOptions) -> Vec<Finding> {
        sources(snapshot)
            .iter()
            .flat_map(|source| {
                let report = Report {
                    policy: self,
                    source,
                    snapshot,
                };
                self.0.check(&report, options)
            })
            .collect()
    }
}

/// Builds the findings of one policy on one file, each located and quoting its lines.
pub(crate) struct Report<'a> {
    policy: &'a dyn Policy,
    pub(crate) source: &'a Source<'a>,
    /// The whole snapshot, for what a fleet scan looked up besides the files (the commit
    /// SHAs of action tags).
    pub(crate) snapshot: &'a Snapshot,
}

impl Report<'_> {
    /// A finding at `at` (1-based line and column) of the file.
    pub(crate) fn finding(
        &self,
        key: &str,
        title: String,
        details: String,
        remediation: String,
        at: (u32, u32),
    ) -> Finding {
        located(
            finding(self.policy, key, title, details, remediation),
            self.source.location(at),
        )
    }
}

/// `a`, `b` as inline code, comma-separated.
pub(crate) fn code_list<'s>(items: impl IntoIterator<Item = &'s str>) -> String {
    items
        .into_iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `path` is a workflow GitHub runs: `.github/workflows/*.yml|yaml`.
pub(crate) fn is_workflow(path: &str) -> bool {
    path.strip_prefix(".github/workflows/")
        .is_some_and(|rest| !rest.contains('/') && is_yaml(rest))
}

/// Whether `path` may be an action definition: `action.yml|yaml` anywhere.
pub(crate) fn is_action(path: &str) -> bool {
    matches!(
        path.rsplit('/').next().unwrap_or(path),
        "action.yml" | "action.yaml"
    )
}

fn is_yaml(name: &str) -> bool {
    name.ends_with(".yml") || name.ends_with(".yaml")
}

/// A parsed workflow or action file.
pub(crate) enum Document {
    Workflow(Box<Workflow>),
    Action(Box<Action>),
    /// The file does not parse: the parser's message and where it stopped.
    Invalid {
        message: String,
        line: u32,
        column: u32,
    },
}

/// One workflow or action of a snapshot, with its text for positions.
pub(crate) struct Source<'a> {
    pub(crate) path: &'a str,
    pub(crate) document: Document,
    pub(crate) locator: Locator<'a>,
}

/// Every workflow and composite action of the snapshot whose text was read, parsed, in
/// path order. A file named `action.yml` that does not look like an action at all (no
/// top-level `runs:`) is not one and is left out.
pub(crate) fn sources(snapshot: &Snapshot) -> Vec<Source<'_>> {
    snapshot
        .contents
        .iter()
        .filter(|(path, _)| snapshot.files.contains(*path))
        .filter_map(|(path, text)| {
            let document = if is_workflow(path) {
                parse::<Workflow>(text, |w| Document::Workflow(Box::new(w)))
            } else if is_action(path) {
                let looks_like_action = text.lines().any(|l| l.starts_with("runs:"));
                if !looks_like_action {
                    return None;
                }
                parse::<Action>(text, |a| Document::Action(Box::new(a)))
            } else {
                return None;
            };
            Some(Source {
                path,
                document,
                locator: Locator::new(text),
            })
        })
        .collect()
}

fn parse<T: serde::de::DeserializeOwned>(text: &str, wrap: fn(T) -> Document) -> Document {
    match yaml_serde::from_str::<T>(text) {
        Ok(value) => wrap(value),
        Err(e) => {
            let (line, column) = e
                .location()
                .map(|l| (l.line() as u32, l.column() as u32))
                .unwrap_or((1, 1));
            Document::Invalid {
                message: e.to_string(),
                line: line.max(1),
                column: column.max(1),
            }
        }
    }
}

/// What a step does, borrowed from the typed model.
pub(crate) enum StepKind<'s> {
    Run(&'s str),
    Uses {
        uses: &'s Uses,
        with: Option<&'s Env>,
    },
}

/// One step of a job or of a composite action, with its region of text.
pub(crate) struct StepView<'s> {
    /// The job id; `None` in a composite action.
    pub(crate) job: Option<&'s str>,
    pub(crate) kind: StepKind<'s>,
    pub(crate) region: Region,
}

impl<'a> Source<'a> {
    pub(crate) fn location(&self, (line, column): (u32, u32)) -> Location {
        Location {
            path: self.path.to_owned(),
            line,
            column,
        }
    }

    /// Region of the job `id` (the whole file when it cannot be narrowed).
    pub(crate) fn job_region(&self, id: &str) -> Region {
        let loc = &self.locator;
        loc.child(&loc.whole(), "jobs")
            .and_then(|jobs| loc.child(&jobs, id))
            .unwrap_or_else(|| loc.whole())
    }

    /// Every step, with the job it belongs to.
    pub(crate) fn steps(&self) -> Vec<StepView<'_>> {
        let loc = &self.locator;
        let mut out = Vec::new();
        match &self.document {
            Document::Workflow(w) => {
                for (id, job) in &w.jobs {
                    let Job::NormalJob(job) = job else { continue };
                    let job_region = self.job_region(id);
                    let regions = loc.items(&job_region, "steps");
                    for (n, step) in job.steps.iter().enumerate() {
                        let region = regions.get(n).cloned().unwrap_or(job_region.clone());
                        let kind = match step {
                            Step::Run(run) => StepKind::Run(&run.run),
                            Step::Uses(u) => StepKind::Uses {
                                uses: &u.uses,
                                with: literal(&u.with),
                            },
                            _ => continue,
                        };
                        out.push(StepView {
                            job: Some(id),
                            kind,
                            region,
                        });
                    }
                }
            }
            Document::Action(a) => {
                let Runs::Composite(composite) = &a.runs else {
                    return out;
                };
                let runs = loc.child(&loc.whole(), "runs").unwrap_or(loc.whole());
                let regions = loc.items(&runs, "steps");
                for (n, step) in composite.steps.iter().enumerate() {
                    let kind = match &step.body {
                        StepBody::Run { run, .. } => StepKind::Run(run),
                        StepBody::Uses { uses, with } => StepKind::Uses {
                            uses,
                            with: literal(with),
                        },
                    };
                    out.push(StepView {
                        job: None,
                        kind,
                        region: regions.get(n).cloned().unwrap_or(runs.clone()),
                    });
                }
            }
            Document::Invalid { .. } => {}
        }
        out
    }

    /// Names of the inputs declared with a type that cannot carry text (see
    /// [`expr::FixedInputs`]); empty for an action, whose inputs are all text. A name
    /// declared as a string by one trigger and otherwise by another is text.
    pub(crate) fn fixed_inputs(&self) -> Vec<String> {
        let Document::Workflow(w) = &self.document else {
            return Vec::new();
        };
        let mut fixed = Vec::new();
        let mut text = Vec::new();
        if let OptionalBody::Body(dispatch) = &w.on.events.workflow_dispatch {
            for (name, input) in &dispatch.inputs {
                match input.r#type {
                    WorkflowDispatchInputType::String => text.push(name.clone()),
                    _ => fixed.push(name.clone()),
                }
            }
        }
        if let OptionalBody::Body(call) = &w.on.events.workflow_call {
            for (name, input) in &call.inputs {
                match input.r#type {
                    WorkflowCallInputType::String => text.push(name.clone()),
                    _ => fixed.push(name.clone()),
                }
            }
        }
        fixed.retain(|name| !text.iter().any(|t| t.eq_ignore_ascii_case(name)));
        fixed
    }

    /// Markdown: the 1-based `lines` of this file, quoted with their numbers.
    pub(crate) fn quote(&self, lines: &[u32]) -> String {
        let mut out = format!("`{}`:\n\n```yaml\n", self.path);
        let mut seen = Vec::new();
        for &line in lines {
            if seen.contains(&line) {
                continue;
            }
            seen.push(line);
            out.push_str(&format!(
                "{line:>4} | {}\n",
                self.locator.line_text(line).trim_end()
            ));
        }
        out.push_str("```");
        out
    }
}

/// A `with:`/`env:` mapping written out literally (not computed by an expression).
fn literal(value: &LoE<Env>) -> Option<&Env> {
    match value {
        LoE::Literal(env) => Some(env),
        LoE::Expr(_) => None,
    }
}

/// The string value of `key` in a `with:` mapping.
pub(crate) fn with_str<'e>(with: Option<&'e Env>, key: &str) -> Option<&'e str> {
    match with?.get(key)? {
        EnvValue::String(s) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::test_support::snapshot;

    #[test]
    fn workflow_and_action_paths() {
        assert!(is_workflow(".github/workflows/ci.yml"));
        assert!(is_workflow(".github/workflows/release.yaml"));
        assert!(!is_workflow(".github/workflows/sub/ci.yml"));
        assert!(!is_workflow(".github/workflows/README.md"));
        assert!(is_action("action.yml"));
        assert!(is_action("tools/setup/action.yaml"));
        assert!(!is_action("tools/my-action.yml"));
    }

    #[test]
    fn invalid_files_carry_the_parsers_line() {
        let snap = snapshot()
            .file(".github/workflows/bad.yml", "on: push\njobs:\n  a: [\n")
            .file("docs/action.yml", "title: not an action\n")
            .build();
        let sources = sources(&snap);
        assert_eq!(sources.len(), 1);
        let Document::Invalid { message, line, .. } = &sources[0].document else {
            panic!("expected an invalid document");
        };
        assert!(*line >= 3, "{line}: {message}");
        assert!(!message.is_empty());
    }
}
