//! The shared vocabulary of Repo Guardian: repositories, targets, repository metadata,
//! snapshots and findings. Everything else builds on these types; this module imports no
//! other module of the crate, so every arrow points down to it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

mod target;

pub use target::{Target, TargetError};

/// How bad a finding is; ordered from least to most severe.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

/// `owner/name` of a repository, as GitHub spells it.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct RepoRef {
    pub owner: String,
    pub name: String,
}

impl RepoRef {
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
}

impl std::fmt::Display for RepoRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// Branch protection of the default branch as far as it could be observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Protection {
    /// Not observable: a local checkout, or a token without admin rights on the repository.
    Unknown,
    /// The default branch has no protection at all.
    Unprotected,
    /// The default branch is protected with these rules.
    Protected(BranchRules),
}

/// The subset of GitHub's branch protection rules the policies look at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchRules {
    /// Approving reviews required before merge; `None` when pull request reviews are not required.
    pub required_approving_reviews: Option<u32>,
    pub dismiss_stale_reviews: bool,
    pub require_code_owner_reviews: bool,
    /// Rules also apply to administrators.
    pub enforce_admins: bool,
    pub allow_force_pushes: bool,
    pub allow_deletions: bool,
    /// Status check contexts required to pass.
    pub required_status_checks: Vec<String>,
}

/// A part of a snapshot that may be unobservable; a policy names the parts it needs
/// ([`Snapshot::unavailable`] says which could not be read, and why).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Input {
    /// The complete list of files of the default branch.
    Tree,
    /// The contents of the files the policies read (workflows, configuration files).
    Contents,
    /// The branch protection of the default branch.
    Protection,
    /// The open pull requests (`stale-pull-requests`).
    PullRequests,
    /// Check runs and commit statuses of the default branch's head (`default-branch-ci`).
    Checks,
}

/// An open pull request, as the hygiene policies see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    pub number: u64,
    pub title: String,
    pub html_url: String,
    pub draft: bool,
    /// Last activity, GitHub's `updated_at` (RFC 3339).
    pub updated_at: String,
}

/// The open pull requests that were last active before `cutoff`, read at `read_at`
/// (RFC 3339). Pull requests active after the cutoff are not listed: the listing, sorted
/// by activity, stops where they begin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenPulls {
    pub read_at: String,
    pub cutoff: String,
    pub idle: Vec<PullRequest>,
}

/// What one check run or commit status of the default branch's head says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CiCheck {
    /// The check run's name or the status' context.
    pub name: String,
    pub outcome: CiOutcome,
    /// Where to read the details, when GitHub gives a link.
    pub url: Option<String>,
}

/// A check's outcome: only a completed failure counts as failing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "detail", rename_all = "snake_case")]
pub enum CiOutcome {
    Passed,
    /// Completed without success; the detail is GitHub's word (`failure`, `timed_out`…).
    Failed(String),
    /// Queued, in progress or pending: neither failing nor passing yet.
    Pending,
}

/// Everything the policies may look at. Built once per scan; cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub repo: RepoRef,
    pub default_branch: String,
    /// Commit the snapshot was taken at, when known.
    pub head_sha: Option<String>,
    pub archived: bool,
    pub fork: bool,
    pub private: bool,
    /// SPDX id GitHub detected (`license.spdx_id`), when known; `NOASSERTION` is kept as is.
    pub license_spdx: Option<String>,
    /// Paths of all files (blobs) on the default branch, `/`-separated, relative to the root.
    pub files: BTreeSet<String>,
    pub protection: Protection,
    /// `true` when the snapshot comes from GitHub (metadata and protection are known).
    pub from_github: bool,
    /// Text of the files the policies read (workflows, composite actions, configuration
    /// files), by path. Only files listed in `files` appear here.
    #[serde(default)]
    pub contents: BTreeMap<String, String>,
    /// Files recognised as executables by their first bytes (path → kind), where those
    /// bytes were read: local checkouts, for files without an extension.
    #[serde(default)]
    pub magic: BTreeMap<String, String>,
    /// Parts that could not be observed, with the reason (a 403, a truncated tree…). A
    /// policy that needs one of them is reported as not evaluated instead of guessing.
    #[serde(default)]
    pub unavailable: BTreeMap<Input, String>,
    /// Open pull requests idle since before a cutoff; `None` when not read (the policy that
    /// needs them is off, or the snapshot is a local checkout).
    #[serde(default)]
    pub pulls: Option<OpenPulls>,
    /// Check runs and commit statuses of `head_sha`; `None` when not read.
    #[serde(default)]
    pub checks: Option<Vec<CiCheck>>,
    /// Commit SHAs of the tags actions are used at (`owner/repo@tag` → SHA), looked up so
    /// a finding can show the exact pin; only some are looked up, the rest are absent.
    #[serde(default)]
    pub action_shas: BTreeMap<String, String>,
}

impl Snapshot {
    /// A snapshot of `repo` at `default_branch` with nothing observed yet: no files, no
    /// metadata flags, protection unknown. Builders fill in what they see.
    pub fn new(repo: RepoRef, default_branch: impl Into<String>) -> Self {
        Snapshot {
            repo,
            default_branch: default_branch.into(),
            head_sha: None,
            archived: false,
            fork: false,
            private: false,
            license_spdx: None,
            files: BTreeSet::new(),
            protection: Protection::Unknown,
            from_github: false,
            contents: BTreeMap::new(),
            magic: BTreeMap::new(),
            unavailable: BTreeMap::new(),
            pulls: None,
            checks: None,
            action_shas: BTreeMap::new(),
        }
    }
}

/// One problem found by one policy in one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Finding {
    /// Id of the policy that found it, e.g. `license`.
    pub policy: String,
    /// Stable key within the policy (e.g. `missing`, or a workflow path); never a line number
    /// of unrelated text, so the fingerprint survives unrelated edits.
    pub key: String,
    pub severity: Severity,
    /// Issue title, without the repository name.
    pub title: String,
    /// Markdown: what is wrong, with evidence.
    pub details: String,
    /// Markdown: how to fix it.
    pub remediation: String,
    /// Where in the repository the problem is, when it is in one file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// Set when the repository's owners suppressed this finding (`.github/repo-guardian.yml`):
    /// its issue is closed with their reason instead of being kept open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<Suppression>,
}

/// Why the owners accept a finding, as they wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Suppression {
    pub reason: SuppressionReason,
    #[serde(default)]
    pub note: Option<String>,
    /// Last day the suppression holds (`YYYY-MM-DD`); the finding counts again after it.
    #[serde(default)]
    pub until: Option<String>,
}

/// The reasons an owner may give for suppressing a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SuppressionReason {
    /// The finding is in test data, not in what ships.
    TestData,
    /// Fixed in a way the policy cannot see.
    Remediated,
    /// The policy does not apply to this repository.
    NotApplicable,
    /// The risk is known and accepted.
    AcceptedRisk,
}

impl std::fmt::Display for SuppressionReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SuppressionReason::TestData => "test-data",
            SuppressionReason::Remediated => "remediated",
            SuppressionReason::NotApplicable => "not-applicable",
            SuppressionReason::AcceptedRisk => "accepted-risk",
        })
    }
}

/// A position in a file of the repository: 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Location {
    /// `/`-separated path relative to the repository root.
    pub path: String,
    pub line: u32,
    pub column: u32,
}

impl Finding {
    /// `policy/key`: stable across runs, the identity of the finding and of its issue.
    pub fn fingerprint(&self) -> String {
        format!("{}/{}", self.policy, self.key)
    }
}

/// Repository metadata the scan needs, as listed by GitHub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RepoMeta {
    pub default_branch: String,
    pub archived: bool,
    pub fork: bool,
    pub private: bool,
    pub has_issues: bool,
    #[serde(default)]
    pub license_spdx: Option<String>,
}
