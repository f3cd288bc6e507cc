//! Policies: pure functions from a repository [`Snapshot`] to [`Finding`]s.
//!
//! Nothing in this module performs I/O. The workers build a snapshot from the GitHub API
//! (`crate::github::snapshot`), `guardian check` builds one from a local checkout
//! (`crate::check`); both evaluate the very same functions through [`evaluate`].
//! A finding's [`Finding::fingerprint`] is stable across runs, so each open finding maps to
//! exactly one GitHub issue.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::DeserializeOwned;

use crate::domain::{Finding, Input, Location, Severity, Snapshot};
#[cfg(test)]
use crate::domain::{Protection, RepoRef};

mod binary_artifacts;
mod branch_protection;
mod codeowners;
mod dangerous_workflow;
mod default_branch_ci;
mod dependency_updates;
mod files;
mod license;
pub mod owner_config;
mod pinned_actions;
mod readme;
mod security_policy;
mod stale_pull_requests;
mod workflow_permissions;
pub(crate) mod workflows;

/// Options of one policy, from configuration (`[policies.<id>.options]`).
pub type PolicyOptions = BTreeMap<String, serde_json::Value>;

/// One policy's switch and options, as the fleet's configuration (`[policies.<id>]`) and
/// the owners' `.github/repo-guardian.yml` (`policies: {<id>: …}`) both write them.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    /// Overrides the policy's default on/off.
    pub enabled: Option<bool>,
    /// Policy-specific options, documented with each policy.
    #[serde(default)]
    pub options: PolicyOptions,
}

/// An option a policy rejects: which one (a path below `options`), and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{option}: {problem}")]
pub struct OptionError {
    /// The offending option, e.g. `min_approving_reviews` or `allow[0]`.
    pub option: String,
    pub problem: String,
}

/// Decodes raw options into a policy's typed option struct (which denies unknown fields),
/// naming the offending option on failure.
pub(crate) fn parse_options<T: DeserializeOwned>(
    options: &PolicyOptions,
) -> Result<T, OptionError> {
    let value = serde_json::Value::Object(options.clone().into_iter().collect());
    serde_path_to_error::deserialize(value).map_err(|e| {
        let problem = e.inner().to_string();
        let path = e.path().to_string();
        // An unknown field is reported at the level of its parent; name the field itself.
        let option = match (path.as_str(), problem.strip_prefix("unknown field `")) {
            (".", Some(rest)) => rest.split('`').next().unwrap_or_default().to_owned(),
            _ => path,
        };
        OptionError { option, problem }
    })
}

/// The glob set of a list option (`allow = ["bin/*"]`); a bad pattern is an error naming
/// its index (`allow[2]`).
pub(crate) fn glob_option(
    option: &str,
    patterns: &[String],
) -> Result<globset::GlobSet, OptionError> {
    let mut set = globset::GlobSetBuilder::new();
    for (n, pattern) in patterns.iter().enumerate() {
        set.add(globset::Glob::new(pattern).map_err(|e| OptionError {
            option: format!("{option}[{n}]"),
            problem: format!("bad pattern {pattern:?}: {e}"),
        })?);
    }
    set.build().map_err(|e| OptionError {
        option: option.to_owned(),
        problem: e.to_string(),
    })
}

/// A policy: an id, a severity, a default, and a pure evaluation.
pub trait Policy: Send + Sync {
    /// Stable id, used in configuration, fingerprints and issue labels.
    fn id(&self) -> &'static str;
    /// One-line description for `docs/policies.md` and `guardian check`.
    fn description(&self) -> &'static str;
    fn severity(&self) -> Severity;
    fn default_enabled(&self) -> bool {
        true
    }
    /// `true` when the policy can be evaluated on a local checkout (files only).
    fn file_based(&self) -> bool;
    /// The parts of a snapshot the policy reads: when one is unavailable, the policy is
    /// not evaluated (its outcome is [`Outcome::Unknown`]).
    fn needs(&self) -> &'static [Input] {
        &[Input::Tree]
    }
    /// Why the policy cannot decide on this snapshot although its inputs were read (checks
    /// still running, say): the outcome is then [`Outcome::Unknown`], so its issues are
    /// neither opened nor closed.
    fn undecided(&self, _snapshot: &Snapshot, _options: &PolicyOptions) -> Option<String> {
        None
    }
    /// Checks options before any evaluation; the error names the option and the problem.
    fn validate_options(&self, options: &PolicyOptions) -> Result<(), OptionError> {
        parse_options::<NoOptions>(options).map(drop)
    }
    fn evaluate(&self, snapshot: &Snapshot, options: &PolicyOptions) -> Vec<Finding>;
}

/// The options of a policy that takes none.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoOptions {}

/// Every policy this build knows, in a stable order.
pub fn all() -> Vec<Box<dyn Policy>> {
    vec![
        Box::new(license::License),
        Box::new(readme::Readme),
        Box::new(security_policy::SecurityPolicy),
        Box::new(codeowners::Codeowners),
        Box::new(branch_protection::BranchProtection),
        Box::new(workflows::Workflows(dangerous_workflow::DangerousWorkflow)),
        Box::new(workflows::Workflows(
            workflow_permissions::WorkflowPermissions,
        )),
        Box::new(workflows::Workflows(pinned_actions::PinnedActions)),
        Box::new(binary_artifacts::BinaryArtifacts),
        Box::new(dependency_updates::DependencyUpdates),
        Box::new(stale_pull_requests::StalePullRequests),
        Box::new(default_branch_ci::DefaultBranchCi),
        Box::new(owner_config::OwnerConfigPolicy),
    ]
}

/// Whether the policies read the text of the file at `path` (workflows, composite
/// actions, configuration files). Snapshot builders fetch exactly these.
pub fn reads_contents(path: &str) -> bool {
    workflows::is_workflow(path)
        || workflows::is_action(path)
        || dependency_updates::DEPENDABOT.contains(&path)
        || owner_config::PATHS.contains(&path)
}

/// What kind of executable `head` (a file's first bytes) is, by its magic number.
pub fn executable_kind(head: &[u8]) -> Option<&'static str> {
    binary_artifacts::MAGIC
        .iter()
        .find(|(magic, _)| head.starts_with(magic))
        .map(|(_, kind)| *kind)
}

/// The moment before which an open pull request read at `read_at` is idle after `days`.
pub fn idle_cutoff(read_at: time::OffsetDateTime, days: u32) -> time::OffsetDateTime {
    stale_pull_requests::cutoff(read_at, days)
}

/// The key under which a snapshot records the commit SHA of `owner/repo@tag`.
pub fn action_sha_key(slug: &str, tag: &str) -> String {
    pinned_actions::sha_key(slug, tag)
}

/// The policy with id `id`.
pub fn by_id(id: &str) -> Option<Box<dyn Policy>> {
    all().into_iter().find(|p| p.id() == id)
}

/// Which policies run and with which options.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Policy id → enabled override.
    pub enabled: BTreeMap<String, bool>,
    /// Policy id → options.
    pub options: BTreeMap<String, PolicyOptions>,
    /// Policy ids switched off fleet-wide at run time (kill switch).
    pub disabled: BTreeSet<String>,
    /// The day suppressions are judged against (`until`); `None`: every one holds.
    pub today: Option<time::Date>,
    /// The repository is checked only when its owners' file says `enabled: true`
    /// (`targets.mode = "opt-in"` and no `opt_in` pattern matches it).
    pub opt_in_required: bool,
}

impl Selection {
    /// Whether `policy` runs under this selection.
    pub fn runs(&self, policy: &dyn Policy) -> bool {
        !self.disabled.contains(policy.id())
            && *self
                .enabled
                .get(policy.id())
                .unwrap_or(&policy.default_enabled())
    }
}

/// What became of one policy on one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The policy ran; these are all its findings (none means it passed).
    Evaluated(Vec<Finding>),
    /// The policy could not run: a part of the snapshot it needs was not observable.
    Unknown(String),
}

/// The outcome of every selected policy on one snapshot. Unknown is never absent: a policy
/// is either in `evaluated` (and its findings are complete) or in `unknown` with a reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evaluation {
    /// Findings of the evaluated policies, sorted by fingerprint.
    pub findings: Vec<Finding>,
    /// Ids of the policies that were evaluated: only their issues may be closed as fixed.
    pub evaluated: Vec<String>,
    /// Policy id → why it could not be evaluated.
    pub unknown: BTreeMap<String, String>,
    /// Extra labels the repository's owners ask for on its issues.
    pub labels: Vec<String>,
    /// Logins the repository's owners want assigned to its issues.
    pub assignees: Vec<String>,
}

/// The outcome of `policy` on `snapshot`.
pub fn outcome(policy: &dyn Policy, snapshot: &Snapshot, options: &PolicyOptions) -> Outcome {
    match policy
        .needs()
        .iter()
        .find_map(|input| snapshot.unavailable.get(input))
    {
        Some(reason) => Outcome::Unknown(reason.clone()),
        None => match policy.undecided(snapshot, options) {
            Some(reason) => Outcome::Unknown(reason),
            None => Outcome::Evaluated(policy.evaluate(snapshot, options)),
        },
    }
}

/// The owners' configuration of `snapshot` when it is present and valid; an invalid one
/// is ignored (and reported by `owner-config`).
fn owner_of(snapshot: &Snapshot) -> Option<owner_config::OwnerConfig> {
    match owner_config::read(snapshot) {
        Some(Ok(config)) => Some(config),
        _ => None,
    }
}

/// The policies that run on `snapshot` with their options: the fleet's selection,
/// adjusted by the owners' file. With `files_only`, only file-based policies.
fn selected<'a>(
    owner: Option<&'a owner_config::OwnerConfig>,
    selection: &'a Selection,
    files_only: bool,
) -> Vec<(Box<dyn Policy>, &'a PolicyOptions)> {
    static EMPTY: std::sync::LazyLock<PolicyOptions> = std::sync::LazyLock::new(PolicyOptions::new);
    all()
        .into_iter()
        .filter_map(|policy| {
            let id = policy.id();
            let enabled = owner
                .and_then(|o| o.enabled(id))
                .unwrap_or_else(|| selection.runs(policy.as_ref()));
            if (files_only && !policy.file_based()) || selection.disabled.contains(id) || !enabled {
                return None;
            }
            let options = owner
                .and_then(|o| o.options(id))
                .or_else(|| selection.options.get(id))
                .unwrap_or(&EMPTY);
            Some((policy, options))
        })
        .collect()
}

/// What a snapshot builder must read beyond the tree and the files, because a policy
/// that runs needs it. Computed after the files are read, since the owners' file may
/// switch policies on or off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fetch {
    /// Read the open pull requests idle for at least this many days (oldest first).
    pub pulls_idle_days: Option<u32>,
    /// Read the check runs and statuses of the default branch's head.
    pub checks: bool,
    /// Tags of actions to resolve to commit SHAs (`owner/repo`, tag), at most as many as
    /// the `pinned-actions` option `resolve_shas` allows.
    pub action_tags: Vec<(String, String)>,
}

/// What the policies that run on `snapshot` under `selection` need read from GitHub;
/// nothing for a repository that is not [`checked`].
pub fn fetch_plan(snapshot: &Snapshot, selection: &Selection) -> Fetch {
    let owner = owner_of(snapshot);
    let mut fetch = Fetch::default();
    if !checked(snapshot, selection) {
        return fetch;
    }
    for (policy, options) in selected(owner.as_ref(), selection, false) {
        match policy.id() {
            stale_pull_requests::ID => {
                let days = stale_pull_requests::Options::parse(options)
                    .unwrap_or_default()
                    .days;
                fetch.pulls_idle_days = Some(days);
            }
            default_branch_ci::ID => fetch.checks = true,
            pinned_actions::ID => {
                fetch.action_tags = pinned_actions::tags_to_resolve(snapshot, options);
            }
            _ => {}
        }
    }
    fetch
}

/// Whether the repository is checked at all: its owners' `enabled: true|false` in
/// `.github/repo-guardian.yml` decides; without one (or with an invalid file), opt-out
/// mode checks it and opt-in mode does not.
pub fn checked(snapshot: &Snapshot, selection: &Selection) -> bool {
    owner_of(snapshot)
        .and_then(|o| o.enabled)
        .unwrap_or(!selection.opt_in_required)
}

/// Evaluates every selected policy on `snapshot`. With `files_only`, only file-based
/// policies run (local checkouts).
pub fn evaluate(snapshot: &Snapshot, selection: &Selection, files_only: bool) -> Evaluation {
    let owner = owner_of(snapshot);
    let mut evaluation = Evaluation::default();
    for (policy, options) in selected(owner.as_ref(), selection, files_only) {
        let id = policy.id();
        match outcome(policy.as_ref(), snapshot, options) {
            Outcome::Evaluated(findings) => {
                evaluation.evaluated.push(id.to_owned());
                evaluation.findings.extend(findings);
            }
            Outcome::Unknown(reason) => {
                evaluation.unknown.insert(id.to_owned(), reason);
            }
        }
    }
    if let Some(owner) = &owner {
        owner.suppress(&mut evaluation.findings, selection.today);
        evaluation.labels = owner.labels.clone();
        evaluation.assignees = owner.assignees.clone();
    }
    evaluation.findings.sort_by_key(Finding::fingerprint);
    evaluation
}

/// Checks every `[policies.<id>]` entry: the id must be known and its options valid.
/// The error is the configuration key at fault and the problem.
pub fn validate_selection(selection: &Selection) -> Result<(), (String, String)> {
    let known = || {
        all()
            .iter()
            .map(|p| format!("`{}`", p.id()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for id in selection.enabled.keys().chain(selection.options.keys()) {
        if by_id(id).is_none() {
            return Err((
                format!("policies.{id}"),
                format!("unknown policy; known policies are {}", known()),
            ));
        }
    }
    for (id, options) in &selection.options {
        if let Some(policy) = by_id(id) {
            policy
                .validate_options(options)
                .map_err(|e| (format!("policies.{id}.options.{}", e.option), e.problem))?;
        }
    }
    Ok(())
}

/// Remediation text (markdown) of the policy `id`, the same text its findings carry; for
/// places that describe a policy without a finding at hand, such as the rules of a SARIF log.
pub fn remediation(id: &str) -> Option<&'static str> {
    // One row per policy of [`all`]; a unit test keeps the two lists in step.
    use files::RequiredFile;
    const REMEDIATIONS: &[(&str, &str)] = &[
        (license::License::ID, license::License::REMEDIATION),
        (readme::Readme::ID, readme::Readme::REMEDIATION),
        (
            security_policy::SecurityPolicy::ID,
            security_policy::SecurityPolicy::REMEDIATION,
        ),
        (
            codeowners::Codeowners::ID,
            codeowners::Codeowners::REMEDIATION,
        ),
        (branch_protection::ID, branch_protection::REMEDIATION),
        (dangerous_workflow::ID, dangerous_workflow::REMEDIATION),
        (workflow_permissions::ID, workflow_permissions::REMEDIATION),
        (pinned_actions::ID, pinned_actions::REMEDIATION),
        (binary_artifacts::ID, binary_artifacts::REMEDIATION),
        (dependency_updates::ID, dependency_updates::REMEDIATION),
        (stale_pull_requests::ID, stale_pull_requests::REMEDIATION),
        (default_branch_ci::ID, default_branch_ci::REMEDIATION),
        (owner_config::ID, owner_config::REMEDIATION),
    ];
    REMEDIATIONS
        .iter()
        .find(|(policy, _)| *policy == id)
        .map(|(_, text)| *text)
}

/// A finding of `policy`, carrying the policy's id and severity so that no policy can
/// report under another's name or a severity its documentation does not state.
fn finding(
    policy: &dyn Policy,
    key: &str,
    title: String,
    details: String,
    remediation: String,
) -> Finding {
    Finding {
        policy: policy.id().to_owned(),
        key: key.to_owned(),
        severity: policy.severity(),
        title,
        details,
        remediation,
        location: None,
        suppressed: None,
    }
}

/// [`finding`] at a place in a file.
pub(crate) fn located(mut finding: Finding, location: Location) -> Finding {
    finding.location = Some(location);
    finding
}

/// Helpers shared by the unit tests of every policy, so each test states only what differs.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// Builds a [`Snapshot`]: by default a local checkout of `octo/demo` with no files.
    pub(crate) struct SnapshotBuilder(Snapshot);

    pub(crate) fn snapshot() -> SnapshotBuilder {
        SnapshotBuilder(Snapshot::new(
            RepoRef {
                owner: "octo".into(),
                name: "demo".into(),
            },
            "main",
        ))
    }

    impl SnapshotBuilder {
        pub(crate) fn files(mut self, paths: &[&str]) -> Self {
            self.0.files.extend(paths.iter().map(|p| (*p).to_owned()));
            self
        }

        /// Marks the snapshot as taken from GitHub, where metadata and protection are known.
        pub(crate) fn github(mut self) -> Self {
            self.0.from_github = true;
            self
        }

        pub(crate) fn license_spdx(mut self, spdx: &str) -> Self {
            self.0.license_spdx = Some(spdx.to_owned());
            self
        }

        pub(crate) fn protection(mut self, protection: Protection) -> Self {
            self.0.protection = protection;
            self
        }

        /// Adds a file with its text, as the snapshot builder fetches it.
        pub(crate) fn file(mut self, path: &str, text: &str) -> Self {
            self.0.files.insert(path.to_owned());
            self.0.contents.insert(path.to_owned(), text.to_owned());
            self
        }

        pub(crate) fn archived(mut self) -> Self {
            self.0.archived = true;
            self
        }

        pub(crate) fn build(self) -> Snapshot {
            self.0
        }
    }

    /// Options from a JSON object literal, as configuration would deliver them.
    pub(crate) fn options(value: serde_json::Value) -> PolicyOptions {
        serde_json::from_value(value).expect("options are a JSON object")
    }

    /// Evaluates `policy` with default options and returns the keys of its findings,
    /// after checking that every finding is complete and attributed to `policy`.
    pub(crate) fn keys(policy: &dyn Policy, snapshot: &Snapshot) -> Vec<String> {
        keys_with(policy, snapshot, &PolicyOptions::new())
    }

    /// [`keys`] with explicit options.
    pub(crate) fn keys_with(
        policy: &dyn Policy,
        snapshot: &Snapshot,
        options: &PolicyOptions,
    ) -> Vec<String> {
        policy
            .evaluate(snapshot, options)
            .into_iter()
            .map(|f| {
                assert_eq!(f.policy, policy.id());
                // A policy's severity is that of its worst finding.
                assert!(f.severity <= policy.severity());
                assert!(!f.title.is_empty() && !f.title.contains("octo/demo"));
                assert!(!f.details.is_empty());
                assert!(f.remediation.contains("https://docs.github.com/"));
                f.key
            })
            .collect()
    }

    /// Checks a file-based policy against lists of layouts: each of `satisfied` yields no
    /// finding, each of `missing` yields exactly `missing`.
    pub(crate) fn check_file_policy(policy: &dyn Policy, satisfied: &[&str], missing: &[&[&str]]) {
        assert!(policy.file_based());
        for path in satisfied {
            let snap = snapshot().files(&["src/main.rs", path]).build();
            assert_eq!(
                keys(policy, &snap),
                Vec::<String>::new(),
                "{path} should satisfy"
            );
        }
        for layout in missing {
            let snap = snapshot().files(layout).build();
            assert_eq!(
                keys(policy, &snap),
                ["missing"],
                "{layout:?} should not satisfy"
            );
        }
        // Archived repositories are filtered elsewhere; the policy itself still reports.
        let archived = snapshot().archived().build();
        assert_eq!(keys(policy, &archived), ["missing"]);
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::snapshot;
    use super::*;

    #[test]
    fn every_policy_has_a_remediation_and_a_unique_id() {
        let policies = all();
        let ids: BTreeSet<_> = policies.iter().map(|p| p.id()).collect();
        assert_eq!(ids.len(), policies.len());
        for p in &policies {
            assert!(
                remediation(p.id()).is_some(),
                "{} has no remediation",
                p.id()
            );
            assert!(!p.description().is_empty());
        }
        assert_eq!(remediation("no-such-policy"), None);
    }

    #[test]
    fn files_only_skips_policies_that_need_github() {
        let snap = snapshot().build();
        let selection = Selection::default();
        let local: Vec<_> = evaluate(&snap, &selection, true)
            .findings
            .iter()
            .map(Finding::fingerprint)
            .collect();
        assert_eq!(
            local,
            [
                "codeowners/missing",
                "dependency-updates/missing",
                "license/missing",
                "readme/missing",
                "security-policy/missing"
            ]
        );
    }

    #[test]
    fn selection_disables_and_kill_switch_win() {
        let snap = snapshot().build();
        let mut selection = Selection::default();
        selection.enabled.insert("readme".into(), false);
        selection.disabled.insert("license".into());
        let evaluation = evaluate(&snap, &selection, true);
        let ids: Vec<_> = evaluation.findings.into_iter().map(|f| f.policy).collect();
        assert_eq!(ids, ["codeowners", "dependency-updates", "security-policy"]);
        assert_eq!(
            evaluation.evaluated,
            [
                "security-policy",
                "codeowners",
                "dangerous-workflow",
                "workflow-permissions",
                "pinned-actions",
                "binary-artifacts",
                "dependency-updates",
                "owner-config"
            ]
        );
    }

    #[test]
    fn a_policy_whose_input_is_unavailable_is_unknown_never_evaluated() {
        let mut snap = snapshot().github().build();
        snap.unavailable.insert(
            Input::Protection,
            "branch protection: 403 Resource not accessible by integration".into(),
        );
        snap.unavailable
            .insert(Input::Tree, "the tree is truncated".into());
        snap.unavailable
            .insert(Input::Checks, "check runs: 502".into());
        let evaluation = evaluate(&snap, &Selection::default(), false);
        assert!(evaluation.findings.is_empty(), "{:?}", evaluation.findings);
        assert!(
            evaluation.evaluated.is_empty(),
            "{:?}",
            evaluation.evaluated
        );
        assert_eq!(
            evaluation
                .unknown
                .get("branch-protection")
                .map(String::as_str),
            Some("branch protection: 403 Resource not accessible by integration")
        );
        assert_eq!(
            evaluation.unknown.get("readme").map(String::as_str),
            Some("the tree is truncated")
        );
        for p in all().iter().filter(|p| p.default_enabled()) {
            assert!(evaluation.unknown.contains_key(p.id()), "{}", p.id());
        }
    }

    #[test]
    fn only_what_the_running_policies_need_is_fetched() {
        let workflow = "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: actions/checkout@v4\n";
        let snap = snapshot()
            .github()
            .file(".github/workflows/ci.yml", workflow)
            .build();
        let fetch = fetch_plan(&snap, &Selection::default());
        assert_eq!(
            fetch.pulls_idle_days, None,
            "stale-pull-requests is off by default"
        );
        assert!(fetch.checks);
        assert_eq!(
            fetch.action_tags,
            [("actions/checkout".to_owned(), "v4".to_owned())]
        );
        // The owners switch one on, with options, and one off.
        let owners = snapshot()
            .github()
            .file(".github/workflows/ci.yml", workflow)
            .file(
                ".github/repo-guardian.yml",
                "disable: [default-branch-ci]\npolicies:\n  stale-pull-requests:\n    enabled: true\n    options: {days: 9}\n",
            )
            .build();
        let fetch = fetch_plan(&owners, &Selection::default());
        assert_eq!(fetch.pulls_idle_days, Some(9));
        assert!(!fetch.checks);
        // A repository that is not checked costs nothing more.
        let opt_in = Selection {
            opt_in_required: true,
            ..Default::default()
        };
        assert!(!checked(&snap, &opt_in));
        assert_eq!(fetch_plan(&snap, &opt_in), Fetch::default());
        let willing = snapshot()
            .github()
            .file(".github/repo-guardian.yml", "enabled: true\n")
            .build();
        assert!(checked(&willing, &opt_in));
        let unwilling = snapshot()
            .github()
            .file(".github/repo-guardian.yml", "enabled: false\n")
            .build();
        assert!(!checked(&unwilling, &Selection::default()));
    }

    #[test]
    fn configuration_names_unknown_policies_and_bad_options() {
        let mut selection = Selection::default();
        assert_eq!(validate_selection(&selection), Ok(()));
        selection.enabled.insert("licence".into(), true);
        let (key, problem) = validate_selection(&selection).unwrap_err();
        assert_eq!(key, "policies.licence");
        assert!(problem.contains("unknown policy") && problem.contains("`license`"));

        let mut selection = Selection::default();
        selection.options.insert(
            "branch-protection".into(),
            test_support::options(serde_json::json!({"min_approving_reviews": "two"})),
        );
        let (key, problem) = validate_selection(&selection).unwrap_err();
        assert_eq!(
            key,
            "policies.branch-protection.options.min_approving_reviews"
        );
        assert!(problem.contains("expected an integer"), "{problem}");

        let mut selection = Selection::default();
        selection.options.insert(
            "readme".into(),
            test_support::options(serde_json::json!({"bogus": true})),
        );
        let (key, problem) = validate_selection(&selection).unwrap_err();
        assert_eq!(key, "policies.readme.options.bogus");
        assert!(problem.contains("unknown field"), "{problem}");
    }
}
