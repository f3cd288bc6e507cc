//! `pinned-actions`: every action and reusable workflow a workflow uses is pinned to a full
//! commit SHA, so that a moved tag or a compromised upstream cannot change what runs.
//!
//! As zizmor does since 1.20, every action counts, first-party `actions/*` included,
//! unless the `allow_ref_pins` option lists its owner (`actions/*`) or repository. Local
//! actions (`./…`) are part of the repository and fine; Docker actions are fine when
//! pinned by digest (`docker://image@sha256:…`). One finding per file and action, listing
//! every place it is used.

use std::collections::BTreeMap;

use github_actions_models::common::Uses;
use github_actions_models::workflow::Job;
use globset::GlobSet;

use super::workflows::{self, Document, Report, Source, StepKind, WorkflowCheck};
use super::{OptionError, PolicyOptions, glob_option, parse_options};
use crate::domain::{Finding, Severity, Snapshot};

pub(crate) const ID: &str = "pinned-actions";

pub(crate) const REMEDIATION: &str = "\
A tag or branch can be moved to other code at any time — by the action's owner, or by \
whoever compromises them — and the next run executes it with this repository's secrets. \
A full commit SHA cannot be moved.

1. Replace each `uses: owner/repo@v4` with the commit the tag points at today, keeping \
the tag as a comment: `uses: owner/repo@<40-hex-sha> # v4`. `git ls-remote \
https://github.com/owner/repo refs/tags/v4` prints it (for annotated tags use the `^{}` line).
2. Pin Docker actions by digest: `docker://image@sha256:<digest>`.
3. Let Dependabot or Renovate keep the pins current (`package-ecosystem: github-actions`).
4. To trust an owner's tags instead, list it in the policy's `allow_ref_pins` option.

See [Using third-party actions](https://docs.github.com/en/actions/security-for-github-actions/security-guides/security-hardening-for-github-actions#using-third-party-actions) \
and [Keeping your actions up to date with Dependabot](https://docs.github.com/en/code-security/dependabot/working-with-dependabot/keeping-your-actions-up-to-date-with-dependabot).";

/// The policy's options.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Options {
    /// `owner/*` or `owner/repo` glob patterns whose tag or branch pins are accepted.
    allow_ref_pins: Vec<String>,
    /// Tags a fleet scan resolves to their commit SHA per repository, so the issue shows
    /// the exact pin; 0 switches the lookups off.
    resolve_shas: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            allow_ref_pins: Vec::new(),
            resolve_shas: 5,
        }
    }
}

/// Most tag lookups one scan may spend, whatever the option says.
const MAX_RESOLVE: usize = 50;

impl Options {
    fn parse(options: &PolicyOptions) -> Result<(Self, GlobSet), OptionError> {
        let parsed: Options = parse_options(options)?;
        // Owners and repositories are case-insensitive on GitHub.
        let lower: Vec<String> = parsed
            .allow_ref_pins
            .iter()
            .map(|p| p.to_ascii_lowercase())
            .collect();
        let set = glob_option("allow_ref_pins", &lower)?;
        if parsed.resolve_shas > MAX_RESOLVE {
            return Err(OptionError {
                option: "resolve_shas".into(),
                problem: format!("must be at most {MAX_RESOLVE}, got {}", parsed.resolve_shas),
            });
        }
        Ok((parsed, set))
    }
}

fn full_sha(reference: &str) -> bool {
    reference.len() == 40 && reference.chars().all(|c| c.is_ascii_hexdigit())
}

/// The key of [`crate::domain::Snapshot::action_shas`]: `owner/repo@ref`, lower-cased
/// repository (GitHub names are case-insensitive), the ref as written.
pub(crate) fn sha_key(slug: &str, git_ref: &str) -> String {
    format!("{}@{git_ref}", slug.to_ascii_lowercase())
}

/// The distinct `(owner/repo, ref)` of the unpinned repository actions of `snapshot`,
/// in file order, at most `resolve_shas` of them: what a fleet scan looks up.
pub(crate) fn tags_to_resolve(
    snapshot: &Snapshot,
    options: &PolicyOptions,
) -> Vec<(String, String)> {
    let Ok((parsed, allowed)) = Options::parse(options) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = Vec::new();
    for source in workflows::sources(snapshot) {
        for (uses, _) in PinnedActions::uses(&source) {
            if let Uses::Repository(r) = uses
                && !pinned_or_allowed(r, &allowed)
            {
                let wanted = (r.slug().to_ascii_lowercase(), r.git_ref().to_owned());
                if !out.contains(&wanted) {
                    out.push(wanted);
                }
            }
        }
    }
    out.truncate(parsed.resolve_shas);
    out
}

/// Whether a repository action is pinned to a full SHA or its owner is trusted.
fn pinned_or_allowed(r: &github_actions_models::common::RepositoryUses, allowed: &GlobSet) -> bool {
    let slug = r.slug().to_ascii_lowercase();
    let owner = r.owner().to_ascii_lowercase();
    full_sha(r.git_ref()) || allowed.is_match(&slug) || allowed.is_match(format!("{owner}/"))
}

pub struct PinnedActions;

impl WorkflowCheck for PinnedActions {
    const ID: &'static str = ID;
    const DESCRIPTION: &'static str = "Every action and reusable workflow is pinned to a full commit SHA (Docker actions by digest).";
    const SEVERITY: Severity = Severity::Medium;

    fn validate(&self, options: &PolicyOptions) -> Result<(), OptionError> {
        Options::parse(options).map(drop)
    }

    fn check(&self, report: &Report<'_>, options: &PolicyOptions) -> Vec<Finding> {
        // Options are validated at start-up; should invalid ones slip through, no owner is
        // trusted, which is the strict reading.
        let allowed = Options::parse(options)
            .map(|(_, set)| set)
            .unwrap_or_else(|_| GlobSet::empty());
        Self::check_file(report, &allowed)
    }
}

impl PinnedActions {
    /// Every `uses:` of the file with the region it was found in.
    fn uses<'s>(source: &'s Source<'_>) -> Vec<(&'s Uses, workflows::locate::Region)> {
        let mut out: Vec<_> = source
            .steps()
            .into_iter()
            .filter_map(|step| match step.kind {
                StepKind::Uses { uses, .. } => Some((uses, step.region)),
                StepKind::Run(_) => None,
            })
            .collect();
        if let Document::Workflow(w) = &source.document {
            for (id, job) in &w.jobs {
                if let Job::ReusableWorkflowCallJob(call) = job {
                    out.push((&call.uses, source.job_region(id)));
                }
            }
        }
        out
    }

    fn check_file(report: &Report<'_>, allowed: &GlobSet) -> Vec<Finding> {
        let source = report.source;
        // What is used (without its ref) → (raw uses, the pin when a fleet scan looked the
        // tag up: (commit SHA, tag), positions).
        type Pin = Option<(String, String)>;
        type Used = (String, Pin, Vec<(u32, u32)>);
        let mut unpinned: BTreeMap<String, Used> = BTreeMap::new();
        for (uses, region) in Self::uses(source) {
            let (name, raw, pin) = match uses {
                Uses::Local(_) => continue,
                Uses::Docker(d) if d.hash().is_some() => continue,
                Uses::Docker(d) => (
                    format!("docker://{}", d.image()),
                    format!("docker://{}", d.raw()),
                    None,
                ),
                Uses::Repository(r) => {
                    if pinned_or_allowed(r, allowed) {
                        continue;
                    }
                    let name = match r.subpath() {
                        Some(sub) => format!("{}/{sub}", r.slug()),
                        None => r.slug().to_owned(),
                    };
                    let sha = report
                        .snapshot
                        .action_shas
                        .get(&sha_key(r.slug(), r.git_ref()))
                        .map(|sha| (sha.clone(), r.git_ref().to_owned()));
                    (name, r.raw().to_owned(), sha)
                }
            };
            let at = source
                .locator
                .find(&region, &raw)
                .unwrap_or_else(|| source.locator.start_of(&region));
            let entry = unpinned
                .entry(name)
                .or_insert_with(|| (raw, pin, Vec::new()));
            if !entry.2.contains(&at) {
                entry.2.push(at);
            }
        }
        unpinned
            .into_iter()
            .map(|(name, (raw, pin, mut places))| {
                places.sort();
                let lines: Vec<u32> = places.iter().map(|p| p.0).collect();
                let fix = match pin {
                    Some((sha, tag)) => format!(
                        "Fix: replace it with the commit `{tag}` points at today:\n\n\
                         ```yaml\nuses: {name}@{sha} # {tag}\n```"
                    ),
                    None => format!(
                        "Fix: `uses: {name}@<40-hex-sha> # <tag>`, the commit the reference \
                         points at today (look the SHA up yourself: see step 1 below)."
                    ),
                };
                let details = format!(
                    "`{}` uses `{raw}`, which is not pinned to a full commit SHA; whoever \
                     controls that reference decides what runs here.\n\n{}\n\n{fix}",
                    source.path,
                    source.quote(&lines)
                );
                report.finding(
                    &format!("unpinned:{}:{name}", source.path),
                    format!("`{}` uses `{name}` without a pinned SHA", source.path),
                    details,
                    REMEDIATION.to_owned(),
                    places[0],
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{keys_with, options, snapshot};
    use super::super::workflows::Workflows;
    use super::super::{Policy, PolicyOptions};
    use super::*;
    use serde_json::json;

    const SHA: &str = "8e5e7e5ab8b370d6c329ec480221332ada57f0ab";

    fn check(yaml: &str, opts: serde_json::Value) -> Vec<String> {
        let snap = snapshot().file(".github/workflows/w.yml", yaml).build();
        keys_with(&Workflows(PinnedActions), &snap, &options(opts))
    }

    fn steps(uses: &[&str]) -> String {
        let mut s = "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n".to_owned();
        for u in uses {
            s.push_str(&format!("      - uses: {u}\n"));
        }
        s
    }

    #[test]
    fn every_action_must_be_hash_pinned_by_default() {
        let yaml = steps(&[
            "actions/checkout@v4",
            &format!("actions/setup-node@{SHA}"),
            "./.github/actions/local",
            "docker://alpine:3.20",
            &format!("docker://ghcr.io/o/i@sha256:{}", "a".repeat(64)),
            "octo/tool/sub/dir@main",
            "octo/short@8e5e7e5",
        ]);
        assert_eq!(
            check(&yaml, json!({})),
            [
                "unpinned:.github/workflows/w.yml:actions/checkout",
                "unpinned:.github/workflows/w.yml:docker://alpine",
                "unpinned:.github/workflows/w.yml:octo/short",
                "unpinned:.github/workflows/w.yml:octo/tool/sub/dir",
            ]
        );
    }

    #[test]
    fn owner_patterns_allow_ref_pins() {
        let yaml = steps(&["actions/checkout@v4", "octo/tool@v1", "other/x@v2"]);
        assert_eq!(
            check(&yaml, json!({"allow_ref_pins": ["actions/*", "octo/tool"]})),
            ["unpinned:.github/workflows/w.yml:other/x"]
        );
    }

    #[test]
    fn reusable_workflows_count_and_repeats_are_one_finding() {
        let yaml = format!(
            "{}  b:\n    uses: octo/ci/.github/workflows/build.yml@v1\n",
            steps(&["actions/cache@v4", "actions/cache@v4"])
        );
        let snap = snapshot().file(".github/workflows/w.yml", &yaml).build();
        let findings = Workflows(PinnedActions).evaluate(&snap, &PolicyOptions::new());
        let keys: Vec<_> = findings.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "unpinned:.github/workflows/w.yml:actions/cache",
                "unpinned:.github/workflows/w.yml:octo/ci/.github/workflows/build.yml"
            ]
        );
        assert!(findings[0].details.contains("   6 | ") && findings[0].details.contains("   7 | "));
        let at = findings[1].location.as_ref().expect("located");
        assert_eq!((at.line, at.column), (9, 11));
    }

    #[test]
    fn a_resolved_tag_shows_the_exact_pin_and_lookups_are_bounded() {
        let yaml = steps(&[
            "actions/checkout@v4",
            "Octo/Tool@v1",
            "octo/tool@v1",
            "other/x@main",
        ]);
        let mut snap = snapshot().file(".github/workflows/w.yml", &yaml).build();
        let opts = options(json!({"resolve_shas": 2}));
        assert_eq!(
            tags_to_resolve(&snap, &opts),
            [
                ("actions/checkout".to_owned(), "v4".to_owned()),
                ("octo/tool".to_owned(), "v1".to_owned())
            ]
        );
        assert!(tags_to_resolve(&snap, &options(json!({"resolve_shas": 0}))).is_empty());
        snap.action_shas
            .insert(sha_key("actions/checkout", "v4"), SHA.to_owned());
        let findings = Workflows(PinnedActions).evaluate(&snap, &PolicyOptions::new());
        let checkout = findings
            .iter()
            .find(|f| f.key.ends_with(":actions/checkout"))
            .expect("checkout finding");
        assert!(
            checkout
                .details
                .contains(&format!("uses: actions/checkout@{SHA} # v4")),
            "{}",
            checkout.details
        );
        let other = findings
            .iter()
            .find(|f| f.key.ends_with(":other/x"))
            .expect("other");
        assert!(
            other.details.contains("look the SHA up yourself"),
            "{}",
            other.details
        );
        let err = Workflows(PinnedActions)
            .validate_options(&options(json!({"resolve_shas": 500})))
            .unwrap_err();
        assert_eq!(err.option, "resolve_shas");
    }

    #[test]
    fn bad_options_name_the_option() {
        let err = Workflows(PinnedActions)
            .validate_options(&options(json!({"allow_ref_pins": "actions/*"})))
            .unwrap_err();
        assert_eq!(err.option, "allow_ref_pins");
        let err = Workflows(PinnedActions)
            .validate_options(&options(json!({"allow_ref_pins": ["a/["]})))
            .unwrap_err();
        assert_eq!(err.option, "allow_ref_pins[0]");
    }
}
