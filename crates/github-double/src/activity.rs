//! Pull requests, check runs, commit statuses and git tags: the repository activity the
//! hygiene policies read (`stale-pull-requests`, `default-branch-ci`) and the tag lookups
//! that resolve an action's tag to its commit SHA (`pinned-actions`).
//!
//! State, seeding methods, rendering and routes of these endpoints live together here,
//! apart from the issue and content endpoints of `api.rs`, which only forwards the paths
//! it does not know to [`route`]. Shapes follow GitHub's OpenAPI description
//! (`pull-request-simple`, `check-run`, `combined-commit-status`, `git-ref`, `git-tag`).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::GithubDouble;
use crate::api::{Out, Req, paginate};
use crate::render::{self, merge, node_id};
use crate::state::{Repo, State, object_id};

/// What a repository has besides files and issues.
#[derive(Debug, Clone, Default)]
pub struct Activity {
    pub pulls: Vec<Pull>,
    /// Every check run ever reported, on any commit; re-runs add a newer one of the same name.
    pub check_runs: Vec<CheckRun>,
    /// Every commit status ever set; the newest per context counts.
    pub statuses: Vec<Status>,
    /// Tags by name.
    pub tags: BTreeMap<String, Tag>,
}

#[derive(Debug, Clone)]
pub struct Pull {
    pub id: u64,
    pub number: u64,
    pub title: String,
    pub author: String,
    pub draft: bool,
    pub head_ref: String,
    pub head_sha: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone)]
pub struct CheckRun {
    pub id: u64,
    pub name: String,
    pub head_sha: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub started_at: String,
    pub completed_at: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Status {
    pub id: u64,
    pub sha: String,
    pub context: String,
    pub state: String,
    pub created_at: String,
}

#[derive(Debug, Clone)]
pub struct Tag {
    pub name: String,
    /// The commit the tag points at (after peeling).
    pub commit: String,
    /// SHA of the annotated tag object; `None` for a lightweight tag.
    pub object: Option<String>,
    pub created_at: String,
}

/// An open pull request to seed with [`GithubDouble::add_pull`].
#[derive(Debug, Clone)]
pub struct PullSpec {
    pub title: String,
    pub author: String,
    pub draft: bool,
    /// Days since the last activity (`updated_at`).
    pub idle_days: u64,
}

/// A check run on the default branch's head, for [`GithubDouble::add_check_run`].
#[derive(Debug, Clone)]
pub struct CheckRunSpec {
    pub name: String,
    /// `queued`, `in_progress` or `completed`.
    pub status: String,
    /// Set when completed: `success`, `failure`, `cancelled`, `timed_out`, `skipped`…
    pub conclusion: Option<String>,
}

impl CheckRunSpec {
    /// A completed check run with `conclusion`.
    pub fn completed(name: &str, conclusion: &str) -> Self {
        CheckRunSpec {
            name: name.into(),
            status: "completed".into(),
            conclusion: Some(conclusion.into()),
        }
    }
}

/// GitHub's timestamp `days` days ago.
fn days_ago(days: u64) -> String {
    let t = time::OffsetDateTime::now_utc() - time::Duration::days(days as i64);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

impl GithubDouble {
    /// Opens a pull request (from a branch `feature-N`) last active `spec.idle_days` ago.
    /// Pull requests share their numbers with issues, as on GitHub.
    pub fn add_pull(&self, owner: &str, repo: &str, spec: PullSpec) -> u64 {
        let mut st = self.lock();
        let id = st.fresh_id();
        let Some(r) = st.repo_mut(owner, repo) else {
            return 0;
        };
        let number = r.next_issue_number();
        let at = days_ago(spec.idle_days);
        r.activity.pulls.push(Pull {
            id,
            number,
            title: spec.title,
            author: spec.author,
            draft: spec.draft,
            head_ref: format!("feature-{number}"),
            head_sha: object_id(&["pull", &number.to_string()]),
            created_at: at.clone(),
            updated_at: at,
        });
        number
    }

    /// Closes a pull request (it no longer appears among the open ones).
    pub fn close_pull(&self, owner: &str, repo: &str, number: u64) {
        if let Some(r) = self.lock().repo_mut(owner, repo) {
            r.activity.pulls.retain(|p| p.number != number);
        }
    }

    /// Reports a check run on the current head of the default branch.
    pub fn add_check_run(&self, owner: &str, repo: &str, spec: CheckRunSpec) {
        let mut st = self.lock();
        let id = st.fresh_id();
        let Some(r) = st.repo_mut(owner, repo) else {
            return;
        };
        let now = crate::state::now_iso();
        let completed = spec.status == "completed";
        r.activity.check_runs.push(CheckRun {
            id,
            name: spec.name,
            head_sha: r.head().sha.clone(),
            status: spec.status,
            conclusion: spec.conclusion.filter(|_| completed),
            started_at: now.clone(),
            completed_at: completed.then_some(now),
        });
    }

    /// Sets a commit status (`error`, `failure`, `pending`, `success`) for `context` on the
    /// current head of the default branch.
    pub fn set_commit_status(&self, owner: &str, repo: &str, context: &str, state: &str) {
        let mut st = self.lock();
        let id = st.fresh_id();
        let Some(r) = st.repo_mut(owner, repo) else {
            return;
        };
        r.activity.statuses.push(Status {
            id,
            sha: r.head().sha.clone(),
            context: context.into(),
            state: state.into(),
            created_at: crate::state::now_iso(),
        });
    }

    /// Tags the current head of the default branch; an annotated tag gets its own tag
    /// object, which `git/ref` names instead of the commit. Returns the commit SHA.
    pub fn add_tag(&self, owner: &str, repo: &str, tag: &str, annotated: bool) -> String {
        let mut st = self.lock();
        let Some(r) = st.repo_mut(owner, repo) else {
            return String::new();
        };
        let commit = r.head().sha.clone();
        let object = annotated.then(|| object_id(&["tag", tag, &commit]));
        r.activity.tags.insert(
            tag.to_owned(),
            Tag {
                name: tag.to_owned(),
                commit: commit.clone(),
                object,
                created_at: crate::state::now_iso(),
            },
        );
        commit
    }
}

/// The endpoints of this module; `None` when the path is not one of them.
pub(crate) fn route(
    st: &mut State,
    req: &Req,
    method: &str,
    owner: &str,
    name: &str,
    rest: &[&str],
) -> Option<Out> {
    let repo = st.repo(owner, name)?;
    Some(match (method, rest) {
        ("GET", ["pulls"]) => list_pulls(req, repo),
        ("GET", ["commits", reference @ .., "check-runs"]) if !reference.is_empty() => {
            match repo.resolve(&reference.join("/")) {
                Some(c) => check_runs(req, repo, &c.sha.clone()),
                None => Out::error(
                    422,
                    &format!("No commit found for SHA: {}", reference.join("/")),
                ),
            }
        }
        ("GET", ["commits", reference @ .., "status"]) if !reference.is_empty() => {
            match repo.resolve(&reference.join("/")) {
                Some(c) => Out::json(200, combined_status(req, repo, &c.sha.clone())),
                None => Out::error(
                    404,
                    &format!("No commit found for SHA: {}", reference.join("/")),
                ),
            }
        }
        // `{ref}` may arrive with its slash encoded (`tags%2Fv1`): one segment.
        ("GET", ["git", "ref", one]) if one.starts_with("tags/") => {
            match repo.activity.tags.get(&one["tags/".len()..]) {
                Some(t) => Out::json(200, git_ref(req, repo, t)),
                None => Out::not_found(),
            }
        }
        ("GET", ["git", "ref", "tags", tag @ ..]) if !tag.is_empty() => {
            match repo.activity.tags.get(&tag.join("/")) {
                Some(t) => Out::json(200, git_ref(req, repo, t)),
                None => Out::not_found(),
            }
        }
        ("GET", ["git", "tags", sha]) => {
            match repo
                .activity
                .tags
                .values()
                .find(|t| t.object.as_deref() == Some(*sha))
            {
                Some(t) => Out::json(200, git_tag(req, repo, t)),
                None => Out::not_found(),
            }
        }
        _ => return None,
    })
}

fn list_pulls(req: &Req, repo: &Repo) -> Out {
    let state = req.param("state").unwrap_or("open");
    if !matches!(state, "open" | "closed" | "all") {
        return Out::json(
            422,
            render::validation_error("PullRequest", "state", "invalid"),
        );
    }
    // Only open pull requests are modelled; closed ones are removed.
    let mut pulls: Vec<&Pull> = repo
        .activity
        .pulls
        .iter()
        .filter(|_| state != "closed")
        .collect();
    let sort = req.param("sort").unwrap_or("created");
    match sort {
        "updated" => {
            pulls.sort_by(|a, b| (&a.updated_at, a.number).cmp(&(&b.updated_at, b.number)))
        }
        _ => pulls.sort_by(|a, b| (&a.created_at, a.number).cmp(&(&b.created_at, b.number))),
    }
    // GitHub's default direction: `desc` for `created` (the default sort), `asc` otherwise.
    let default_direction = if sort == "created" { "desc" } else { "asc" };
    if req.param("direction").unwrap_or(default_direction) != "asc" {
        pulls.reverse();
    }
    let items = pulls.into_iter().map(|p| pull(req, repo, p)).collect();
    paginate(req, items)
}

/// `repository`, as `head.repo` and `base.repo` of a pull request carry it.
fn repository(req: &Req, repo: &Repo) -> Value {
    let mut v = render::repo_full(&req.base, repo, None);
    merge(&mut v, json!({ "has_downloads": true }));
    v
}

/// `pull-request-simple`.
fn pull(req: &Req, repo: &Repo, p: &Pull) -> Value {
    let full = repo.full_name();
    let api = format!("{}/repos/{full}", req.base);
    let html = format!("{}/{full}/pull/{}", req.base, p.number);
    let user = render::simple_user(&req.base, &p.author, p.id + 7, "User");
    let side = |reference: &str, sha: &str| {
        json!({
            "label": format!("{}:{reference}", repo.owner),
            "ref": reference,
            "repo": repository(req, repo),
            "sha": sha,
            "user": user,
        })
    };
    let href = |h: String| json!({ "href": h });
    json!({
        "url": format!("{api}/pulls/{}", p.number),
        "id": p.id,
        "node_id": node_id("PR", p.id),
        "html_url": html,
        "diff_url": format!("{html}.diff"),
        "patch_url": format!("{html}.patch"),
        "issue_url": format!("{api}/issues/{}", p.number),
        "commits_url": format!("{api}/pulls/{}/commits", p.number),
        "review_comments_url": format!("{api}/pulls/{}/comments", p.number),
        "review_comment_url": format!("{api}/pulls/comments{{/number}}"),
        "comments_url": format!("{api}/issues/{}/comments", p.number),
        "statuses_url": format!("{api}/statuses/{}", p.head_sha),
        "number": p.number,
        "state": "open",
        "locked": false,
        "title": p.title,
        "user": user,
        "body": null,
        "labels": [],
        "milestone": null,
        "active_lock_reason": null,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
        "closed_at": null,
        "merged_at": null,
        "merge_commit_sha": null,
        "assignee": null,
        "assignees": [],
        "requested_reviewers": [],
        "requested_teams": [],
        "head": side(&p.head_ref, &p.head_sha),
        "base": side(&repo.default_branch, &repo.head().sha),
        "_links": {
            "comments": href(format!("{api}/issues/{}/comments", p.number)),
            "commits": href(format!("{api}/pulls/{}/commits", p.number)),
            "statuses": href(format!("{api}/statuses/{}", p.head_sha)),
            "html": href(html.clone()),
            "issue": href(format!("{api}/issues/{}", p.number)),
            "review_comments": href(format!("{api}/pulls/{}/comments", p.number)),
            "review_comment": href(format!("{api}/pulls/comments{{/number}}")),
            "self": href(format!("{api}/pulls/{}", p.number)),
        },
        "author_association": "CONTRIBUTOR",
        "auto_merge": null,
        "draft": p.draft,
    })
}

/// `GET /commits/{ref}/check-runs`: by default only the newest run of each name
/// (`filter=latest`), as GitHub answers.
fn check_runs(req: &Req, repo: &Repo, sha: &str) -> Out {
    let all = req.param("filter") == Some("all");
    let mut runs: Vec<&CheckRun> = repo
        .activity
        .check_runs
        .iter()
        .filter(|r| r.head_sha == sha)
        .collect();
    if !all {
        let mut latest: BTreeMap<&str, &CheckRun> = BTreeMap::new();
        for r in runs {
            latest.insert(&r.name, r);
        }
        runs = latest.into_values().collect();
    }
    runs.sort_by_key(|r| std::cmp::Reverse(r.id));
    let total = runs.len();
    let page = paginate(
        req,
        runs.into_iter().map(|r| check_run(req, repo, r)).collect(),
    );
    // GitHub wraps the page in an object with the total count.
    let body = json!({ "total_count": total, "check_runs": page.body.clone().unwrap_or_default() });
    Out {
        body: Some(body),
        ..page
    }
}

/// `check-run`.
fn check_run(req: &Req, repo: &Repo, r: &CheckRun) -> Value {
    let full = repo.full_name();
    let api = format!("{}/repos/{full}", req.base);
    let html = format!("{}/{full}/runs/{}", req.base, r.id);
    json!({
        "id": r.id,
        "head_sha": r.head_sha,
        "node_id": node_id("CR", r.id),
        "external_id": "",
        "url": format!("{api}/check-runs/{}", r.id),
        "html_url": html,
        "details_url": html,
        "status": r.status,
        "conclusion": r.conclusion,
        "started_at": r.started_at,
        "completed_at": r.completed_at,
        "output": {
            "title": null,
            "summary": null,
            "text": null,
            "annotations_count": 0,
            "annotations_url": format!("{api}/check-runs/{}/annotations", r.id),
        },
        "name": r.name,
        "check_suite": { "id": r.id + 1 },
        "app": null,
        "pull_requests": [],
    })
}

/// `combined-commit-status`: `failure` when any context's newest status is an error or a
/// failure, `pending` when any is pending or there is none, `success` otherwise.
fn combined_status(req: &Req, repo: &Repo, sha: &str) -> Value {
    let mut latest: BTreeMap<&str, &Status> = BTreeMap::new();
    for s in repo.activity.statuses.iter().filter(|s| s.sha == sha) {
        latest.insert(&s.context, s);
    }
    let states: Vec<&str> = latest.values().map(|s| s.state.as_str()).collect();
    let state = if states.iter().any(|s| matches!(*s, "error" | "failure")) {
        "failure"
    } else if states.is_empty() || states.contains(&"pending") {
        "pending"
    } else {
        "success"
    };
    let api = format!("{}/repos/{}", req.base, repo.full_name());
    let statuses: Vec<Value> = latest
        .values()
        .map(|s| {
            json!({
                "description": null,
                "id": s.id,
                "node_id": node_id("SC", s.id),
                "state": s.state,
                "context": s.context,
                "target_url": format!("{}/{}/actions", req.base, repo.full_name()),
                "avatar_url": null,
                "url": format!("{api}/statuses/{}", s.sha),
                "created_at": s.created_at,
                "updated_at": s.created_at,
            })
        })
        .collect();
    json!({
        "state": state,
        "statuses": statuses,
        "sha": sha,
        "total_count": latest.len(),
        "repository": render::repo_minimal(&req.base, repo, None),
        "commit_url": format!("{api}/commits/{sha}"),
        "url": format!("{api}/commits/{sha}/status"),
    })
}

/// `git-ref` of a tag: a lightweight tag names its commit, an annotated one its tag object.
fn git_ref(req: &Req, repo: &Repo, t: &Tag) -> Value {
    let api = format!("{}/repos/{}", req.base, repo.full_name());
    let (kind, sha, url) = match &t.object {
        Some(o) => ("tag", o.clone(), format!("{api}/git/tags/{o}")),
        None => (
            "commit",
            t.commit.clone(),
            format!("{api}/git/commits/{}", t.commit),
        ),
    };
    json!({
        "ref": format!("refs/tags/{}", t.name),
        "node_id": node_id("REF", t.name.len() as u64),
        "url": format!("{api}/git/refs/tags/{}", t.name),
        "object": { "type": kind, "sha": sha, "url": url },
    })
}

/// `git-tag` of an annotated tag.
fn git_tag(req: &Req, repo: &Repo, t: &Tag) -> Value {
    let api = format!("{}/repos/{}", req.base, repo.full_name());
    let sha = t.object.clone().unwrap_or_default();
    json!({
        "node_id": node_id("TAG", t.name.len() as u64),
        "tag": t.name,
        "sha": sha,
        "url": format!("{api}/git/tags/{sha}"),
        "message": format!("Release {}\n", t.name),
        "tagger": { "date": t.created_at, "email": "release@example.com", "name": "Release" },
        "object": { "sha": t.commit, "type": "commit", "url": format!("{api}/git/commits/{}", t.commit) },
        "verification": { "verified": false, "reason": "unsigned", "signature": null, "payload": null, "verified_at": null },
    })
}
