//! `default-branch-ci` (hygiene): the checks on the default branch's head pass.
//!
//! Reads the check runs (newest per name) and the commit statuses (newest per context) of
//! the head commit. A completed check run that concluded `failure`, `timed_out`,
//! `cancelled`, `action_required` or `startup_failure`, or a status in `failure` or
//! `error`, is failing; one finding lists every failing check with its link. A check
//! still queued or running is neither failing nor passing: with nothing failing and
//! something pending, the policy is *undecided* (not evaluated), so an issue is neither
//! opened nor closed on a half-finished run. No CI at all is fine unless the
//! `require_checks` option asks for it.
//!
//! On by default, like Scorecard's CI checks: a red default branch means every branch
//! cut from it starts broken, and it costs two conditional requests per repository.

use super::{OptionError, Policy, PolicyOptions, finding, parse_options};
use crate::domain::{CiCheck, CiOutcome, Finding, Input, Severity, Snapshot};

pub(crate) const ID: &str = "default-branch-ci";

pub(crate) const REMEDIATION: &str = "\
A failing default branch means every branch cut from it starts broken, and real \
regressions hide among the known failures.

1. Open each failing check listed above, fix the cause on the default branch (or revert \
the change that broke it), and re-run it.
2. Make the checks required in the branch protection rules, so a failing change cannot \
be merged again.
3. For a check that fails for reasons outside the repository (an expired secret, a \
retired runner image), fix or remove the workflow rather than ignoring it.

See [About status checks](https://docs.github.com/en/pull-requests/collaborating-with-pull-requests/collaborating-on-repositories-with-code-quality-features/about-status-checks) \
and [Re-running workflows and jobs](https://docs.github.com/en/actions/managing-workflow-runs-and-deployments/managing-workflow-runs/re-running-workflows-and-jobs).";

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Options {
    /// A default branch head without any check run or status is a finding.
    require_checks: bool,
}

pub struct DefaultBranchCi;

impl Policy for DefaultBranchCi {
    fn id(&self) -> &'static str {
        ID
    }

    fn description(&self) -> &'static str {
        "No check run or commit status fails on the head of the default branch."
    }

    fn severity(&self) -> Severity {
        Severity::Medium
    }

    fn file_based(&self) -> bool {
        false
    }

    fn needs(&self) -> &'static [Input] {
        &[Input::Checks]
    }

    fn validate_options(&self, options: &PolicyOptions) -> Result<(), OptionError> {
        parse_options::<Options>(options).map(drop)
    }

    fn undecided(&self, snapshot: &Snapshot, _: &PolicyOptions) -> Option<String> {
        let Some(checks) = &snapshot.checks else {
            return Some("the default branch's checks were not read".into());
        };
        let failing = checks
            .iter()
            .any(|c| matches!(c.outcome, CiOutcome::Failed(_)));
        let pending: Vec<&str> = checks
            .iter()
            .filter(|c| c.outcome == CiOutcome::Pending)
            .map(|c| c.name.as_str())
            .collect();
        (!failing && !pending.is_empty()).then(|| {
            format!(
                "checks still running on the default branch's head: {}",
                pending.join(", ")
            )
        })
    }

    fn evaluate(&self, snapshot: &Snapshot, options: &PolicyOptions) -> Vec<Finding> {
        let Some(checks) = &snapshot.checks else {
            return Vec::new();
        };
        let options: Options = parse_options(options).unwrap_or_default();
        let branch = &snapshot.default_branch;
        if checks.is_empty() {
            if !options.require_checks {
                return Vec::new();
            }
            return vec![finding(
                self,
                "missing",
                format!("No checks run on the default branch `{branch}`"),
                format!(
                    "The head of `{branch}` has no check run and no commit status: nothing \
                     tells whether the default branch builds and passes its tests."
                ),
                REMEDIATION.to_owned(),
            )];
        }
        let mut failing: Vec<&CiCheck> = checks
            .iter()
            .filter(|c| matches!(c.outcome, CiOutcome::Failed(_)))
            .collect();
        if failing.is_empty() {
            return Vec::new();
        }
        failing.sort_by(|a, b| a.name.cmp(&b.name));
        let list: Vec<String> = failing
            .iter()
            .map(|c| {
                let word = match &c.outcome {
                    CiOutcome::Failed(w) => w.as_str(),
                    _ => "",
                };
                match &c.url {
                    Some(url) => format!("- [`{}`]({url}): {word}", c.name),
                    None => format!("- `{}`: {word}", c.name),
                }
            })
            .collect();
        let count = failing.len();
        let what = if count == 1 {
            "check fails"
        } else {
            "checks fail"
        };
        vec![finding(
            self,
            "failing",
            format!("{count} {what} on the default branch `{branch}`"),
            format!(
                "On the head of `{branch}`, these checks did not succeed:\n\n{}",
                list.join("\n")
            ),
            REMEDIATION.to_owned(),
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{keys_with, options, snapshot};
    use super::super::{Outcome, outcome};
    use super::*;
    use serde_json::json;

    fn check(name: &str, outcome: CiOutcome) -> CiCheck {
        CiCheck {
            name: name.into(),
            outcome,
            url: Some(format!("https://github.com/octo/demo/runs/{name}")),
        }
    }

    fn with_checks(checks: Vec<CiCheck>) -> Snapshot {
        let mut snap = snapshot().github().build();
        snap.checks = Some(checks);
        snap
    }

    fn failed(word: &str) -> CiOutcome {
        CiOutcome::Failed(word.into())
    }

    #[test]
    fn failing_checks_are_one_finding_naming_each_with_its_link() {
        let snap = with_checks(vec![
            check("test", failed("failure")),
            check("build", CiOutcome::Passed),
            check("lint", failed("timed_out")),
            check("deploy", CiOutcome::Pending),
        ]);
        let Outcome::Evaluated(findings) = outcome(&DefaultBranchCi, &snap, &PolicyOptions::new())
        else {
            panic!("a failure decides, whatever is still pending");
        };
        assert_eq!(findings.len(), 1);
        let f = &findings[0];
        assert_eq!(f.fingerprint(), "default-branch-ci/failing");
        assert_eq!(f.title, "2 checks fail on the default branch `main`");
        assert!(
            f.details
                .contains("- [`lint`](https://github.com/octo/demo/runs/lint): timed_out"),
            "{}",
            f.details
        );
        assert!(!f.details.contains("build") && !f.details.contains("deploy"));
        assert_eq!(
            keys_with(&DefaultBranchCi, &snap, &PolicyOptions::new()),
            ["failing"]
        );
    }

    #[test]
    fn passing_checks_pass_and_pending_ones_decide_nothing() {
        let green = with_checks(vec![check("test", CiOutcome::Passed)]);
        assert_eq!(
            outcome(&DefaultBranchCi, &green, &PolicyOptions::new()),
            Outcome::Evaluated(vec![])
        );
        let running = with_checks(vec![
            check("test", CiOutcome::Passed),
            check("e2e", CiOutcome::Pending),
        ]);
        match outcome(&DefaultBranchCi, &running, &PolicyOptions::new()) {
            Outcome::Unknown(reason) => assert!(reason.contains("e2e"), "{reason}"),
            other => panic!("pending is not fixed: {other:?}"),
        }
    }

    #[test]
    fn no_ci_at_all_is_a_finding_only_when_required() {
        let none = with_checks(vec![]);
        assert!(keys_with(&DefaultBranchCi, &none, &PolicyOptions::new()).is_empty());
        assert_eq!(
            keys_with(
                &DefaultBranchCi,
                &none,
                &options(json!({"require_checks": true}))
            ),
            ["missing"]
        );
        let err = DefaultBranchCi
            .validate_options(&options(json!({"require": true})))
            .unwrap_err();
        assert_eq!(err.option, "require");
    }
}
