//! A stateful GitHub REST double.
//!
//! The double serves the subset of GitHub's REST API that Repo Guardian's workers use
//! (repository listing, repository metadata, branches and their protection, git trees,
//! contents, issues, comments, labels, open pull requests, check runs, combined commit
//! status, tag refs and annotated tags, and the rate-limit overview) with response bodies
//! shaped after GitHub's OpenAPI description. Tests seed it through [`GithubDouble`],
//! drive real workers against [`GithubDouble::url`], and then inspect what happened
//! ([`GithubDouble::issues`], [`GithubDouble::requests`]). Cross-cutting GitHub behaviour
//! that workers must cope with is reproduced too: strong ETags with `If-None-Match`/304,
//! rate-limit headers and exhaustion, token checks, `Link` pagination, injected faults and
//! latency.
//!
//! All state lives behind one `std::sync::Mutex` that is never held across an `.await`,
//! so several worker processes may hit the same double concurrently.

// `json!` bodies as large as `full-repository` need a deeper macro recursion limit.
#![recursion_limit = "256"]

mod activity;
mod api;
mod app;
mod demo;
mod limits;
pub mod openapi;
mod render;
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use activity::{CheckRunSpec, PullSpec};
pub use app::sign_jwt;
pub use demo::seed_demo;
pub use limits::SecondaryLimits;
use state::State;

/// Settings for a repository created with [`GithubDouble::add_repo`].
#[derive(Debug, Clone)]
pub struct RepoOptions {
    /// Private repositories report `private: true` and `visibility: "private"`.
    pub private: bool,
    /// Marks the repository as a fork of another one.
    pub fork: bool,
    /// Archived repositories are read-only: issue writes answer 403.
    pub archived: bool,
    /// When false, issue creation answers 410 Gone as on GitHub.
    pub has_issues: bool,
    /// Name of the default branch (created with an initial empty commit).
    pub default_branch: String,
    /// Optional repository description.
    pub description: Option<String>,
}

impl Default for RepoOptions {
    fn default() -> Self {
        RepoOptions {
            private: false,
            fork: false,
            archived: false,
            has_issues: true,
            default_branch: "main".to_string(),
            description: None,
        }
    }
}

/// Branch-protection rules of a repository's default branch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProtectionRules {
    /// `Some(n)` requires pull-request reviews with `n` approvals; `None` leaves
    /// `required_pull_request_reviews` out of the protection, as GitHub does.
    pub required_approving_reviews: Option<u32>,
    /// Whether new pushes dismiss existing approvals.
    pub dismiss_stale_reviews: bool,
    /// Whether code owners must review.
    pub require_code_owner_reviews: bool,
    /// Whether administrators are bound by the rules.
    pub enforce_admins: bool,
    /// Whether force pushes are allowed.
    pub allow_force_pushes: bool,
    /// Whether the branch may be deleted.
    pub allow_deletions: bool,
    /// Required status-check contexts; empty leaves `required_status_checks` out.
    pub required_status_checks: Vec<String>,
}

/// A test-friendly snapshot of one issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueView {
    /// Per-repository issue number, starting at 1.
    pub number: u64,
    /// Current title.
    pub title: String,
    /// Current body (empty when none was sent).
    pub body: String,
    /// `"open"` or `"closed"`.
    pub state: String,
    /// Label names, in the order they were set.
    pub labels: Vec<String>,
    /// Assigned logins, in the order they were set.
    pub assignees: Vec<String>,
    /// Comment bodies, oldest first.
    pub comments: Vec<String>,
}

/// One request the double answered, for assertions in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// HTTP method, upper case.
    pub method: String,
    /// Request path without the query string.
    pub path: String,
    /// Raw query string (without `?`), empty when absent.
    pub query: String,
    /// Status code the double answered with.
    pub status: u16,
    /// Whether the request carried `If-None-Match`.
    pub if_none_match: bool,
    /// The raw `Authorization` header value, so tests can assert what was sent.
    pub authorization: Option<String>,
}

/// A fault to inject into the next `times` matching requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Method to match (case-insensitive); `None` matches every method.
    pub method: Option<String>,
    /// Path prefix to match, e.g. `/repos/demo-org/`.
    pub path_prefix: String,
    /// Status code to answer with.
    pub status: u16,
    /// Optional `Retry-After` header value in seconds.
    pub retry_after: Option<u64>,
    /// How many matching requests fail before the fault is used up.
    pub times: usize,
}

/// Handle to a running double; cheap to clone, all clones share one state.
#[derive(Clone)]
pub struct GithubDouble {
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
}

impl GithubDouble {
    /// Starts a double on a free port of 127.0.0.1, served by a tokio task.
    pub async fn start() -> std::io::Result<GithubDouble> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts a double on the given address (port 0 picks a free port).
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<GithubDouble> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::new(format!("http://{addr}"))));
        let router = api::router(state.clone());
        tokio::spawn(async move {
            // The server lives as long as the runtime; an error here means the listener
            // broke, which tests notice through failing requests.
            let _ = axum::serve(listener, router).await;
        });
        Ok(GithubDouble { state, addr })
    }

    /// Base URL of the double, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in another test thread must not hide this double's state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Requires `Authorization: Bearer <token>` (or `token <token>`) when `Some`.
    pub fn set_token(&self, token: Option<&str>) {
        self.lock().token = token.map(str::to_string);
    }

    /// Creates an organization account.
    pub fn add_org(&self, org: &str) {
        self.lock().add_account(org, true);
    }

    /// Creates a user account.
    pub fn add_user(&self, user: &str) {
        self.lock().add_account(user, false);
    }

    /// Creates a repository; the owner account is created as an organization if missing.
    pub fn add_repo(&self, owner: &str, name: &str, opts: RepoOptions) {
        self.lock().add_repo(owner, name, opts);
    }

    /// Writes a file with a new commit on the default branch.
    pub fn put_file(&self, owner: &str, repo: &str, path: &str, content: &str) {
        self.lock().put_file(owner, repo, path, Some(content));
    }

    /// Deletes a file with a new commit on the default branch.
    pub fn delete_file(&self, owner: &str, repo: &str, path: &str) {
        self.lock().put_file(owner, repo, path, None);
    }

    /// Sets (or with `None` removes) the default branch's protection.
    pub fn set_protection(&self, owner: &str, repo: &str, rules: Option<ProtectionRules>) {
        if let Some(r) = self.lock().repo_mut(owner, repo) {
            r.protection = rules;
        }
    }

    /// Archives or unarchives a repository.
    pub fn set_archived(&self, owner: &str, repo: &str, archived: bool) {
        if let Some(r) = self.lock().repo_mut(owner, repo) {
            r.archived = archived;
        }
    }

    /// Enables or disables issues on a repository (`has_issues`).
    pub fn set_has_issues(&self, owner: &str, repo: &str, has_issues: bool) {
        if let Some(r) = self.lock().repo_mut(owner, repo) {
            r.has_issues = has_issues;
        }
    }

    /// Makes recursive trees of a repository answer `truncated: true` (GitHub does so
    /// beyond 100,000 entries or 7 MB).
    pub fn set_tree_truncated(&self, owner: &str, repo: &str, truncated: bool) {
        if let Some(r) = self.lock().repo_mut(owner, repo) {
            r.truncate_trees = truncated;
        }
    }

    /// Renames the default branch, as GitHub's "rename branch" does: the old name is gone
    /// and the repository's `default_branch` is the new one.
    pub fn rename_default_branch(&self, owner: &str, repo: &str, new_name: &str) {
        if let Some(r) = self.lock().repo_mut(owner, repo)
            && let Some(sha) = r.branches.remove(&r.default_branch)
        {
            r.branches.insert(new_name.to_string(), sha);
            r.default_branch = new_name.to_string();
        }
    }

    /// Snapshot of a repository's issues, ordered by number.
    pub fn issues(&self, owner: &str, repo: &str) -> Vec<IssueView> {
        self.lock().issue_views(owner, repo)
    }

    /// Every request answered since start or the last [`GithubDouble::clear_requests`].
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().log.clone()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        self.lock().log.clear();
    }

    /// Number of recorded requests whose method is not GET or HEAD.
    pub fn write_count(&self) -> usize {
        self.lock()
            .log
            .iter()
            .filter(|r| r.method != "GET" && r.method != "HEAD")
            .count()
    }

    /// Adds a fault; faults are consulted in insertion order.
    pub fn inject_fault(&self, fault: Fault) {
        self.lock().faults.push((fault, None));
    }

    /// Adds a fault answering with `message` instead of the status' default text, e.g. a
    /// secondary-limit 403 without `Retry-After`, or "Resource not accessible by integration".
    pub fn inject_fault_with_message(&self, fault: Fault, message: &str) {
        self.lock().faults.push((fault, Some(message.to_string())));
    }

    /// Deletes an issue, as an administrator can: reading it later answers 410.
    pub fn delete_issue(&self, owner: &str, repo: &str, number: u64) -> bool {
        self.lock().delete_issue(owner, repo, number)
    }

    /// Transfers an issue to another repository: reading the old number answers 301 with
    /// the new location. Returns the number in the new repository.
    pub fn transfer_issue(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
        to_owner: &str,
        to_repo: &str,
    ) -> Option<u64> {
        self.lock()
            .transfer_issue(owner, repo, number, to_owner, to_repo)
    }

    /// Delay added before every response.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// Enforces secondary limits from now on (see [`SecondaryLimits`]); the default
    /// (all `None`) switches enforcement off.
    pub fn set_secondary_limits(&self, limits: SecondaryLimits) {
        self.lock().secondary.limits = limits;
    }

    /// Requests answered with a secondary-limit 403 so far.
    pub fn secondary_limit_violations(&self) -> u64 {
        self.lock().secondary.violations
    }

    /// Every request admitted while secondary limits were enforced: when it arrived and
    /// its points (a GET 1, any other method 5), for measuring how much of a limit a
    /// client used.
    pub fn secondary_admitted(&self) -> Vec<(std::time::Instant, u32)> {
        self.lock().secondary.admitted.clone()
    }

    /// Most requests in flight at once so far (counted whether or not a cap is set).
    pub fn max_requests_in_flight(&self) -> u32 {
        self.lock().secondary.max_in_flight
    }

    /// Resets the rate-limit window: `limit` in total, `remaining` left, reset in an hour.
    pub fn set_rate_limit(&self, limit: u64, remaining: u64) {
        self.lock().rate.set(limit, remaining);
    }
}
