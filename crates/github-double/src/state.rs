//! The double's in-memory model: accounts, repositories with a commit history,
//! issues, labels, the rate-limit window, faults and the request log.
//!
//! Git objects are modelled just enough for the API: each commit carries a full
//! snapshot of the repository's files, and commit, tree and blob SHAs are derived from
//! content hashes so that an unchanged file keeps its SHA across commits while every
//! change produces a new head and a new root tree, as in git.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::{Fault, IssueView, ProtectionRules, RecordedRequest, RepoOptions};

/// Login of the account that authors issues and comments created through the API.
pub const ACTOR_LOGIN: &str = "repo-guardian[bot]";
/// Account id of [`ACTOR_LOGIN`].
pub const ACTOR_ID: u64 = 41_898_282;

/// 40 hex characters derived from the input, shaped like a git object id.
pub fn object_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        // A separator keeps ("ab","c") and ("a","bc") apart.
        h.update([0u8]);
    }
    let mut s = hex::encode(h.finalize());
    s.truncate(40);
    s
}

/// Current time as GitHub's ISO-8601 UTC timestamp (second precision, `Z`).
pub fn now_iso() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// Seconds since the Unix epoch.
pub fn epoch_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[derive(Debug, Clone)]
pub struct Account {
    pub login: String,
    pub id: u64,
    pub is_org: bool,
    pub created_at: String,
}

#[derive(Debug, Clone)]
pub struct Blob {
    pub sha: String,
    pub content: String,
}

#[derive(Debug, Clone)]
pub struct Commit {
    pub sha: String,
    pub tree_sha: String,
    pub parent: Option<String>,
    pub message: String,
    pub date: String,
    pub files: BTreeMap<String, Blob>,
}

impl Commit {
    /// SHA of the tree object for directory `dir` ("" is the root).
    pub fn dir_sha(&self, dir: &str) -> String {
        if dir.is_empty() {
            self.tree_sha.clone()
        } else {
            let prefix = format!("{dir}/");
            let mut parts = vec!["tree", dir];
            let entries: Vec<String> = self
                .files
                .iter()
                .filter(|(p, _)| p.starts_with(&prefix))
                .map(|(p, b)| format!("{p}:{}", b.sha))
                .collect();
            parts.extend(entries.iter().map(String::as_str));
            object_id(&parts)
        }
    }

    /// Every directory path implied by the file paths.
    pub fn dirs(&self) -> Vec<String> {
        let mut dirs: Vec<String> = Vec::new();
        for path in self.files.keys() {
            let mut acc = String::new();
            let segs: Vec<&str> = path.split('/').collect();
            for seg in &segs[..segs.len() - 1] {
                if !acc.is_empty() {
                    acc.push('/');
                }
                acc.push_str(seg);
                if !dirs.contains(&acc) {
                    dirs.push(acc.clone());
                }
            }
        }
        dirs.sort();
        dirs
    }
}

#[derive(Debug, Clone)]
pub struct Comment {
    pub id: u64,
    pub body: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone)]
pub struct Issue {
    pub id: u64,
    pub number: u64,
    pub title: String,
    pub body: Option<String>,
    pub state: String,
    pub state_reason: Option<String>,
    pub labels: Vec<String>,
    /// Logins assigned to the issue.
    pub assignees: Vec<String>,
    pub comments: Vec<Comment>,
    pub created_at: String,
    pub updated_at: String,
    pub closed_at: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Label {
    pub id: u64,
    pub name: String,
    pub color: String,
    pub description: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Repo {
    pub id: u64,
    pub owner: String,
    pub name: String,
    pub private: bool,
    pub fork: bool,
    pub archived: bool,
    pub has_issues: bool,
    pub default_branch: String,
    pub description: Option<String>,
    pub created_at: String,
    pub pushed_at: String,
    /// Every commit ever made, keyed by SHA.
    pub commits: BTreeMap<String, Commit>,
    /// Branch name to head commit SHA.
    pub branches: BTreeMap<String, String>,
    pub protection: Option<ProtectionRules>,
    pub issues: Vec<Issue>,
    /// Issues that no longer live here: deleted (GitHub answers 410) or transferred to
    /// another repository (GitHub answers 301 with the new location).
    pub gone_issues: BTreeMap<u64, GoneIssue>,
    /// Labels keyed by lower-cased name: GitHub label names are case-insensitive.
    pub labels: BTreeMap<String, Label>,
    /// Recursive trees answer `truncated: true`, as GitHub does beyond its size limits.
    pub truncate_trees: bool,
    /// Pull requests, check runs, commit statuses and tags (`crate::activity`).
    pub activity: crate::activity::Activity,
}

/// What became of an issue that left its repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoneIssue {
    Deleted,
    /// Transferred to `repo` (`owner/name`), where it has `number`.
    Transferred {
        repo: String,
        number: u64,
    },
}

impl Repo {
    /// Issue numbers are never reused, not even those of deleted or transferred issues.
    pub fn next_issue_number(&self) -> u64 {
        (self.issues.len() + self.gone_issues.len() + self.activity.pulls.len()) as u64 + 1
    }

    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    /// Resolves a branch name, commit SHA or root tree SHA to a commit.
    pub fn resolve(&self, reference: &str) -> Option<&Commit> {
        if let Some(sha) = self.branches.get(reference) {
            return self.commits.get(sha);
        }
        if let Some(c) = self.commits.get(reference) {
            return Some(c);
        }
        self.commits.values().find(|c| c.tree_sha == reference)
    }

    /// The blob with this SHA in any commit.
    pub fn blob(&self, sha: &str) -> Option<&Blob> {
        self.commits
            .values()
            .flat_map(|c| c.files.values())
            .find(|b| b.sha == sha)
    }

    pub fn head(&self) -> &Commit {
        self.resolve(&self.default_branch)
            .expect("default branch always points at a commit")
    }

    pub fn open_issue_count(&self) -> usize {
        self.issues.iter().filter(|i| i.state == "open").count()
    }
}

/// The primary rate-limit window.
#[derive(Debug, Clone)]
pub struct RateWindow {
    pub limit: u64,
    pub remaining: u64,
    pub reset: u64,
}

impl RateWindow {
    pub fn set(&mut self, limit: u64, remaining: u64) {
        self.limit = limit;
        self.remaining = remaining.min(limit);
        self.reset = epoch_secs() + 3600;
    }

    /// Starts a fresh window once the reset time has passed, as GitHub does.
    pub fn refresh(&mut self) {
        if epoch_secs() >= self.reset {
            self.remaining = self.limit;
            self.reset = epoch_secs() + 3600;
        }
    }

    pub fn used(&self) -> u64 {
        self.limit - self.remaining
    }
}

pub struct State {
    /// URL used when a request carries no `Host` header.
    pub default_base: String,
    pub token: Option<String>,
    pub accounts: BTreeMap<String, Account>,
    /// Repositories keyed by lower-cased "owner/name": GitHub names are case-insensitive.
    pub repos: BTreeMap<String, Repo>,
    pub next_id: u64,
    pub rate: RateWindow,
    /// Injected faults with an optional message overriding the status' default one.
    pub faults: Vec<(Fault, Option<String>)>,
    pub latency: Duration,
    pub log: Vec<RecordedRequest>,
    /// Opt-in secondary limits (off by default).
    pub secondary: crate::limits::Enforcer,
}

impl State {
    pub fn new(default_base: String) -> Self {
        State {
            default_base,
            token: None,
            accounts: BTreeMap::new(),
            repos: BTreeMap::new(),
            next_id: 1_000,
            rate: RateWindow {
                limit: 5000,
                remaining: 5000,
                reset: epoch_secs() + 3600,
            },
            faults: Vec::new(),
            latency: Duration::ZERO,
            log: Vec::new(),
            secondary: Default::default(),
        }
    }

    pub fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn add_account(&mut self, login: &str, is_org: bool) {
        let key = login.to_lowercase();
        if self.accounts.contains_key(&key) {
            return;
        }
        let id = self.fresh_id();
        self.accounts.insert(
            key,
            Account {
                login: login.to_string(),
                id,
                is_org,
                created_at: now_iso(),
            },
        );
    }

    pub fn account(&self, login: &str) -> Option<&Account> {
        self.accounts.get(&login.to_lowercase())
    }

    pub fn add_repo(&mut self, owner: &str, name: &str, opts: RepoOptions) {
        if self.account(owner).is_none() {
            self.add_account(owner, true);
        }
        let owner = self
            .account(owner)
            .map(|a| a.login.clone())
            .unwrap_or_default();
        let id = self.fresh_id();
        let now = now_iso();
        let files = BTreeMap::new();
        let tree_sha = object_id(&["tree", ""]);
        let sha = object_id(&["commit", &owner, name, "initial", &id.to_string()]);
        let commit = Commit {
            sha: sha.clone(),
            tree_sha,
            parent: None,
            message: "Initial commit".into(),
            date: now.clone(),
            files,
        };
        let repo = Repo {
            id,
            owner: owner.clone(),
            name: name.to_string(),
            private: opts.private,
            fork: opts.fork,
            archived: opts.archived,
            has_issues: opts.has_issues,
            default_branch: opts.default_branch.clone(),
            description: opts.description,
            created_at: now.clone(),
            pushed_at: now,
            commits: BTreeMap::from([(sha.clone(), commit)]),
            branches: BTreeMap::from([(opts.default_branch, sha)]),
            protection: None,
            issues: Vec::new(),
            gone_issues: BTreeMap::new(),
            labels: BTreeMap::new(),
            truncate_trees: false,
            activity: Default::default(),
        };
        self.repos
            .insert(format!("{owner}/{name}").to_lowercase(), repo);
    }

    pub fn repo(&self, owner: &str, name: &str) -> Option<&Repo> {
        self.repos.get(&format!("{owner}/{name}").to_lowercase())
    }

    pub fn repo_mut(&mut self, owner: &str, name: &str) -> Option<&mut Repo> {
        self.repos
            .get_mut(&format!("{owner}/{name}").to_lowercase())
    }

    /// Writes (`Some`) or deletes (`None`) a file with a new commit on the default branch.
    pub fn put_file(&mut self, owner: &str, name: &str, path: &str, content: Option<&str>) {
        let Some(repo) = self.repo_mut(owner, name) else {
            return;
        };
        let path = path.trim_matches('/').to_string();
        let head = repo.head().clone();
        let mut files = head.files.clone();
        let message = match content {
            Some(text) => {
                let sha = object_id(&["blob", text]);
                files.insert(
                    path.clone(),
                    Blob {
                        sha,
                        content: text.to_string(),
                    },
                );
                format!("Update {path}")
            }
            None => {
                if files.remove(&path).is_none() {
                    return;
                }
                format!("Delete {path}")
            }
        };
        let listing: Vec<String> = files
            .iter()
            .map(|(p, b)| format!("{p}:{}", b.sha))
            .collect();
        let mut parts = vec!["tree", ""];
        parts.extend(listing.iter().map(String::as_str));
        let tree_sha = object_id(&parts);
        let now = now_iso();
        let sha = object_id(&["commit", &head.sha, &tree_sha, &message, &now]);
        let commit = Commit {
            sha: sha.clone(),
            tree_sha,
            parent: Some(head.sha.clone()),
            message,
            date: now.clone(),
            files,
        };
        repo.commits.insert(sha.clone(), commit);
        repo.branches.insert(repo.default_branch.clone(), sha);
        repo.pushed_at = now;
    }

    /// Deletes issue `number` (later reads answer 410). `false` when there is no such issue.
    pub fn delete_issue(&mut self, owner: &str, name: &str, number: u64) -> bool {
        let Some(repo) = self.repo_mut(owner, name) else {
            return false;
        };
        let Some(idx) = repo.issues.iter().position(|i| i.number == number) else {
            return false;
        };
        repo.issues.remove(idx);
        repo.gone_issues.insert(number, GoneIssue::Deleted);
        true
    }

    /// Moves issue `number` to `to_owner/to_name` (later reads of the old number answer 301).
    /// Returns the issue's number in the new repository.
    pub fn transfer_issue(
        &mut self,
        owner: &str,
        name: &str,
        number: u64,
        to_owner: &str,
        to_name: &str,
    ) -> Option<u64> {
        self.repo(to_owner, to_name)?;
        let repo = self.repo_mut(owner, name)?;
        let idx = repo.issues.iter().position(|i| i.number == number)?;
        let mut issue = repo.issues.remove(idx);
        let target = self.repo_mut(to_owner, to_name)?;
        let new_number = target.next_issue_number();
        let full_name = target.full_name();
        issue.number = new_number;
        target.issues.push(issue);
        self.repo_mut(owner, name)?.gone_issues.insert(
            number,
            GoneIssue::Transferred {
                repo: full_name,
                number: new_number,
            },
        );
        Some(new_number)
    }

    pub fn issue_views(&self, owner: &str, name: &str) -> Vec<IssueView> {
        let Some(repo) = self.repo(owner, name) else {
            return Vec::new();
        };
        repo.issues
            .iter()
            .map(|i| IssueView {
                number: i.number,
                title: i.title.clone(),
                body: i.body.clone().unwrap_or_default(),
                state: i.state.clone(),
                labels: i.labels.clone(),
                assignees: i.assignees.clone(),
                comments: i.comments.iter().map(|c| c.body.clone()).collect(),
            })
            .collect()
    }
}
