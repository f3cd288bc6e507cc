//! Policies: pure functions from a repository [`Snapshot`] to [`Finding`]s.
//!
//! Nothing in this module performs I/O. The workers build a snapshot from the GitHub API
//! (`crate::github::snapshot`), `guardian check` builds one from a local checkout
//! (`crate::check`); both evaluate the very same functions through [`evaluate`].
//! A finding's [`Finding::fingerprint`] is stable across runs, so each open finding maps to
//! exactly one GitHub issue.

use std::collections::{BTreeMap, BTreeSet};

use crate::domain::{Finding, Severity, Snapshot};
#[cfg(test)]
use crate::domain::{Protection, RepoRef};

mod branch_protection;
mod codeowners;
mod files;
mod license;
mod readme;
mod security_policy;

/// Options of one policy, from configuration (`[policies.<id>.options]`).
pub type PolicyOptions = BTreeMap<String, serde_json::Value>;

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
    /// Checks options before any evaluation; the error names the option and the problem.
    fn validate_options(&self, options: &PolicyOptions) -> Result<(), String> {
        match options.keys().next() {
            Some(k) => Err(format!("unknown option `{k}`")),
            None => Ok(()),
        }
    }
    fn evaluate(&self, snapshot: &Snapshot, options: &PolicyOptions) -> Vec<Finding>;
}

/// Every policy this build knows, in a stable order.
pub fn all() -> Vec<Box<dyn Policy>> {
    vec![
        Box::new(license::License),
        Box::new(readme::Readme),
        Box::new(security_policy::SecurityPolicy),
        Box::new(codeowners::Codeowners),
        Box::new(branch_protection::BranchProtection),
    ]
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
}

/// Evaluates every enabled policy on `snapshot`. With `files_only`, only file-based policies
/// run (local checkouts). Findings come out sorted by fingerprint.
pub fn evaluate(snapshot: &Snapshot, selection: &Selection, files_only: bool) -> Vec<Finding> {
    let mut findings: Vec<Finding> = all()
        .iter()
        .filter(|p| !files_only || p.file_based())
        .filter(|p| !selection.disabled.contains(p.id()))
        .filter(|p| {
            *selection
                .enabled
                .get(p.id())
                .unwrap_or(&p.default_enabled())
        })
        .flat_map(|p| {
            let empty = PolicyOptions::new();
            let opts = selection.options.get(p.id()).unwrap_or(&empty);
            p.evaluate(snapshot, opts)
        })
        .collect();
    findings.sort_by_key(Finding::fingerprint);
    findings
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
    }
}

/// Helpers shared by the unit tests of every policy, so each test states only what differs.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// Builds a [`Snapshot`]: by default a local checkout of `octo/demo` with no files.
    pub(crate) struct SnapshotBuilder(Snapshot);

    pub(crate) fn snapshot() -> SnapshotBuilder {
        SnapshotBuilder(Snapshot {
            repo: RepoRef {
                owner: "octo".into(),
                name: "demo".into(),
            },
            default_branch: "main".into(),
            head_sha: None,
            archived: false,
            fork: false,
            private: false,
            license_spdx: None,
            files: BTreeSet::new(),
            protection: Protection::Unknown,
            from_github: false,
        })
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
                assert_eq!(f.severity, policy.severity());
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
            .iter()
            .map(Finding::fingerprint)
            .collect();
        assert_eq!(
            local,
            [
                "codeowners/missing",
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
        let ids: Vec<_> = evaluate(&snap, &selection, true)
            .into_iter()
            .map(|f| f.policy)
            .collect();
        assert_eq!(ids, ["codeowners", "security-policy"]);
    }
}
