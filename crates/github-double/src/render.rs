//! JSON renderings of the model, shaped after the schemas of GitHub's OpenAPI
//! description (`simple-user`, `minimal-repository`, `full-repository`,
//! `branch-with-protection`, `branch-protection`, `git-tree`, `content-file`, `issue`,
//! `issue-comment`, `label`, `rate-limit-overview`, `basic-error`).
//!
//! Every schema-required property is present. API URLs point back at the base URL the
//! client used, so a client following `url` fields stays on the double; `html_url`s use
//! the same host with GitHub's web paths.

use base64::Engine;
use serde_json::{Value, json};

use crate::ProtectionRules;
use crate::state::{ACTOR_ID, ACTOR_LOGIN, Account, Commit, Issue, Label, RateWindow, Repo};

const DOCS: &str = "https://docs.github.com/rest";

/// GitHub's error body (`basic-error`).
pub fn error(message: &str, status: u16) -> Value {
    json!({
        "message": message,
        "documentation_url": DOCS,
        "status": status.to_string(),
    })
}

/// GitHub's `validation-error` body for a single failing field.
pub fn validation_error(resource: &str, field: &str, code: &str) -> Value {
    json!({
        "message": "Validation Failed",
        "errors": [{"resource": resource, "code": code, "field": field}],
        "documentation_url": DOCS,
        "status": "422",
    })
}

pub(crate) fn node_id(prefix: &str, id: u64) -> String {
    let raw = format!("0:{prefix}{id}");
    format!(
        "{prefix}_{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(raw)
    )
}

/// `simple-user` for an account.
pub fn simple_user(base: &str, login: &str, id: u64, kind: &str) -> Value {
    // Bot logins contain brackets, which GitHub percent-encodes in URLs.
    let seg = encode_segment(login);
    let u = format!("{base}/users/{seg}");
    json!({
        "login": login,
        "id": id,
        "node_id": node_id("U", id),
        "avatar_url": format!("{base}/avatars/u/{id}?v=4"),
        "gravatar_id": "",
        "url": u,
        "html_url": format!("{base}/{seg}"),
        "followers_url": format!("{u}/followers"),
        "following_url": format!("{u}/following{{/other_user}}"),
        "gists_url": format!("{u}/gists{{/gist_id}}"),
        "starred_url": format!("{u}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{u}/subscriptions"),
        "organizations_url": format!("{u}/orgs"),
        "repos_url": format!("{u}/repos"),
        "events_url": format!("{u}/events{{/privacy}}"),
        "received_events_url": format!("{u}/received_events"),
        "type": kind,
        "user_view_type": "public",
        "site_admin": false,
    })
}

fn account_kind(a: &Account) -> &'static str {
    if a.is_org { "Organization" } else { "User" }
}

/// The actor that creates issues and comments through the API.
pub fn actor(base: &str) -> Value {
    simple_user(base, ACTOR_LOGIN, ACTOR_ID, "Bot")
}

/// `public-user` for `GET /users/{username}` (organizations answer with type
/// "Organization", which is how clients tell the two apart on GitHub).
pub fn public_user(base: &str, a: &Account, public_repos: usize) -> Value {
    let mut v = simple_user(base, &a.login, a.id, account_kind(a));
    let extra = json!({
        "name": a.login,
        "company": null,
        "blog": "",
        "location": null,
        "email": null,
        "hireable": null,
        "bio": null,
        "twitter_username": null,
        "public_repos": public_repos,
        "public_gists": 0,
        "followers": 0,
        "following": 0,
        "created_at": a.created_at,
        "updated_at": a.created_at,
    });
    merge(&mut v, extra);
    v
}

/// `organization-full` for `GET /orgs/{org}`.
pub fn org_full(base: &str, a: &Account, public_repos: usize, private_repos: usize) -> Value {
    let u = format!("{base}/orgs/{}", a.login);
    json!({
        "login": a.login,
        "id": a.id,
        "node_id": node_id("O", a.id),
        "url": u,
        "repos_url": format!("{u}/repos"),
        "events_url": format!("{u}/events"),
        "hooks_url": format!("{u}/hooks"),
        "issues_url": format!("{u}/issues"),
        "members_url": format!("{u}/members{{/member}}"),
        "public_members_url": format!("{u}/public_members{{/member}}"),
        "avatar_url": format!("{base}/avatars/u/{}?v=4", a.id),
        "description": null,
        // `company`, `blog`, `location` and `email` are optional and non-nullable in
        // `organization-full`, so an organization without them leaves them out.
        "name": a.login,
        "is_verified": false,
        "has_organization_projects": true,
        "has_repository_projects": true,
        "public_repos": public_repos,
        "public_gists": 0,
        "followers": 0,
        "following": 0,
        "html_url": format!("{base}/{}", a.login),
        "type": "Organization",
        "total_private_repos": private_repos,
        "owned_private_repos": private_repos,
        "created_at": a.created_at,
        "updated_at": a.created_at,
        "archived_at": null,
    })
}

pub(crate) fn merge(target: &mut Value, extra: Value) {
    if let (Some(t), Value::Object(e)) = (target.as_object_mut(), extra) {
        t.extend(e);
    }
}

fn owner_value(base: &str, owner: Option<&Account>, login: &str) -> Value {
    match owner {
        Some(a) => simple_user(base, &a.login, a.id, account_kind(a)),
        None => simple_user(base, login, 0, "User"),
    }
}

/// `minimal-repository`, as returned by the repository listings.
pub fn repo_minimal(base: &str, repo: &Repo, owner: Option<&Account>) -> Value {
    let full = repo.full_name();
    let u = format!("{base}/repos/{full}");
    json!({
        "id": repo.id,
        "node_id": node_id("R", repo.id),
        "name": repo.name,
        "full_name": full,
        "owner": owner_value(base, owner, &repo.owner),
        "private": repo.private,
        "html_url": format!("{base}/{full}"),
        "description": repo.description,
        "fork": repo.fork,
        "url": u,
        "archive_url": format!("{u}/{{archive_format}}{{/ref}}"),
        "assignees_url": format!("{u}/assignees{{/user}}"),
        "blobs_url": format!("{u}/git/blobs{{/sha}}"),
        "branches_url": format!("{u}/branches{{/branch}}"),
        "collaborators_url": format!("{u}/collaborators{{/collaborator}}"),
        "comments_url": format!("{u}/comments{{/number}}"),
        "commits_url": format!("{u}/commits{{/sha}}"),
        "compare_url": format!("{u}/compare/{{base}}...{{head}}"),
        "contents_url": format!("{u}/contents/{{+path}}"),
        "contributors_url": format!("{u}/contributors"),
        "deployments_url": format!("{u}/deployments"),
        "downloads_url": format!("{u}/downloads"),
        "events_url": format!("{u}/events"),
        "forks_url": format!("{u}/forks"),
        "git_commits_url": format!("{u}/git/commits{{/sha}}"),
        "git_refs_url": format!("{u}/git/refs{{/sha}}"),
        "git_tags_url": format!("{u}/git/tags{{/sha}}"),
        "git_url": format!("git://{}/{full}.git", host_of(base)),
        "issue_comment_url": format!("{u}/issues/comments{{/number}}"),
        "issue_events_url": format!("{u}/issues/events{{/number}}"),
        "issues_url": format!("{u}/issues{{/number}}"),
        "keys_url": format!("{u}/keys{{/key_id}}"),
        "labels_url": format!("{u}/labels{{/name}}"),
        "languages_url": format!("{u}/languages"),
        "merges_url": format!("{u}/merges"),
        "milestones_url": format!("{u}/milestones{{/number}}"),
        "notifications_url": format!("{u}/notifications{{?since,all,participating}}"),
        "pulls_url": format!("{u}/pulls{{/number}}"),
        "releases_url": format!("{u}/releases{{/id}}"),
        "ssh_url": format!("git@{}:{full}.git", host_of(base)),
        "stargazers_url": format!("{u}/stargazers"),
        "statuses_url": format!("{u}/statuses/{{sha}}"),
        "subscribers_url": format!("{u}/subscribers"),
        "subscription_url": format!("{u}/subscription"),
        "tags_url": format!("{u}/tags"),
        "teams_url": format!("{u}/teams"),
        "trees_url": format!("{u}/git/trees{{/sha}}"),
        "clone_url": format!("{base}/{full}.git"),
        "hooks_url": format!("{u}/hooks"),
        "homepage": null,
        "language": null,
        "forks_count": 0,
        "stargazers_count": 0,
        "watchers_count": 0,
        "size": repo.head().files.values().map(|b| b.content.len()).sum::<usize>() / 1024,
        "default_branch": repo.default_branch,
        "open_issues_count": repo.open_issue_count(),
        "is_template": false,
        "topics": [],
        "has_issues": repo.has_issues,
        "has_projects": true,
        "has_wiki": false,
        "has_pages": false,
        "has_discussions": false,
        "archived": repo.archived,
        "disabled": false,
        "visibility": if repo.private { "private" } else { "public" },
        "pushed_at": repo.pushed_at,
        "created_at": repo.created_at,
        "updated_at": repo.pushed_at,
        "permissions": {"admin": false, "maintain": false, "push": false, "triage": true, "pull": true},
        "license": license(base, repo),
        "forks": 0,
        "open_issues": repo.open_issue_count(),
        "watchers": 0,
    })
}

/// `full-repository` for `GET /repos/{owner}/{repo}`.
pub fn repo_full(base: &str, repo: &Repo, owner: Option<&Account>) -> Value {
    let mut v = repo_minimal(base, repo, owner);
    merge(
        &mut v,
        json!({
            "mirror_url": null,
            "svn_url": format!("{base}/{}", repo.full_name()),
            "subscribers_count": 0,
            "network_count": 0,
            "allow_forking": true,
            "web_commit_signoff_required": false,
        }),
    );
    if let Some(owner) = owner.filter(|a| a.is_org) {
        merge(
            &mut v,
            json!({"organization": simple_user(base, &owner.login, owner.id, "Organization")}),
        );
    }
    v
}

fn host_of(base: &str) -> &str {
    base.split("://").nth(1).unwrap_or(base)
}

/// License detection from a root LICENSE/LICENSE.md/COPYING file, like GitHub's
/// licensee but with just the two licenses the policies care about.
pub fn license(base: &str, repo: &Repo) -> Value {
    let head = repo.head();
    let file = ["LICENSE", "LICENSE.md", "LICENSE.txt", "COPYING"]
        .iter()
        .find_map(|n| head.files.get(*n));
    let Some(file) = file else {
        return Value::Null;
    };
    let (key, name, spdx) = if file.content.contains("MIT License") {
        ("mit", "MIT License", "MIT")
    } else if file.content.contains("Apache License") {
        ("apache-2.0", "Apache License 2.0", "Apache-2.0")
    } else {
        ("other", "Other", "NOASSERTION")
    };
    let url = if spdx == "NOASSERTION" {
        Value::Null
    } else {
        Value::String(format!("{base}/licenses/{key}"))
    };
    json!({
        "key": key,
        "name": name,
        "spdx_id": spdx,
        "url": url,
        "node_id": format!("MDc6TGljZW5zZ{key}"),
    })
}

fn commit_value(base: &str, repo: &Repo, c: &Commit) -> Value {
    let u = format!("{base}/repos/{}", repo.full_name());
    let person = json!({"name": "Repo Owner", "email": "owner@example.com", "date": c.date});
    let parents: Vec<Value> = c
        .parent
        .iter()
        .map(|p| {
            json!({
                "sha": p,
                "url": format!("{u}/commits/{p}"),
                "html_url": format!("{base}/{}/commit/{p}", repo.full_name()),
            })
        })
        .collect();
    json!({
        "sha": c.sha,
        "node_id": format!("C_{}", &c.sha[..20]),
        "commit": {
            "author": person,
            "committer": person,
            "message": c.message,
            "tree": {"sha": c.tree_sha, "url": format!("{u}/git/trees/{}", c.tree_sha)},
            "url": format!("{u}/git/commits/{}", c.sha),
            "comment_count": 0,
        },
        "url": format!("{u}/commits/{}", c.sha),
        "html_url": format!("{base}/{}/commit/{}", repo.full_name(), c.sha),
        "comments_url": format!("{u}/commits/{}/comments", c.sha),
        // GitHub answers null when the commit e-mail maps to no account; a user object
        // would also be valid but null keeps the `oneOf` unambiguous.
        "author": null,
        "committer": null,
        "parents": parents,
    })
}

/// `branch-with-protection` for `GET /repos/{owner}/{repo}/branches/{branch}`.
/// An item of `GET /repos/{owner}/{repo}/branches` (GitHub's `short-branch`).
pub fn short_branch(base: &str, repo: &Repo, name: &str, sha: &str) -> Value {
    json!({
        "name": name,
        "commit": {"sha": sha, "url": format!("{base}/repos/{}/commits/{sha}", repo.full_name())},
        "protected": protection_of(repo, name).is_some(),
    })
}

pub fn branch(base: &str, repo: &Repo, name: &str, c: &Commit) -> Value {
    let u = format!("{base}/repos/{}/branches/{name}", repo.full_name());
    let rules = protection_of(repo, name);
    let protection = match rules {
        Some(r) => json!({
            "enabled": true,
            "required_status_checks": {
                "enforcement_level": if r.required_status_checks.is_empty() { "off" } else { "non_admins" },
                "contexts": r.required_status_checks,
                "checks": checks(&r.required_status_checks),
            },
        }),
        None => json!({
            "enabled": false,
            "required_status_checks": {"enforcement_level": "off", "contexts": [], "checks": []},
        }),
    };
    json!({
        "name": name,
        "commit": commit_value(base, repo, c),
        "_links": {"self": u, "html": format!("{base}/{}/tree/{name}", repo.full_name())},
        "protected": rules.is_some(),
        "protection": protection,
        "protection_url": format!("{u}/protection"),
    })
}

fn checks(contexts: &[String]) -> Vec<Value> {
    contexts
        .iter()
        .map(|c| json!({"context": c, "app_id": null}))
        .collect()
}

/// Protection only applies to the default branch in this double.
pub fn protection_of<'a>(repo: &'a Repo, branch: &str) -> Option<&'a ProtectionRules> {
    if branch == repo.default_branch {
        repo.protection.as_ref()
    } else {
        None
    }
}

/// `branch-protection` for `GET .../branches/{branch}/protection`.
pub fn protection(base: &str, repo: &Repo, name: &str, r: &ProtectionRules) -> Value {
    let u = format!(
        "{base}/repos/{}/branches/{name}/protection",
        repo.full_name()
    );
    let mut v = json!({
        "url": u,
        "enforce_admins": {"url": format!("{u}/enforce_admins"), "enabled": r.enforce_admins},
        "required_signatures": {"url": format!("{u}/required_signatures"), "enabled": false},
        "required_linear_history": {"enabled": false},
        "allow_force_pushes": {"enabled": r.allow_force_pushes},
        "allow_deletions": {"enabled": r.allow_deletions},
        "block_creations": {"enabled": false},
        "required_conversation_resolution": {"enabled": false},
        "lock_branch": {"enabled": false},
        "allow_fork_syncing": {"enabled": false},
    });
    if let Some(n) = r.required_approving_reviews {
        merge(
            &mut v,
            json!({"required_pull_request_reviews": {
                "url": format!("{u}/required_pull_request_reviews"),
                "dismiss_stale_reviews": r.dismiss_stale_reviews,
                "require_code_owner_reviews": r.require_code_owner_reviews,
                "required_approving_review_count": n,
                "require_last_push_approval": false,
            }}),
        );
    }
    if !r.required_status_checks.is_empty() {
        merge(
            &mut v,
            json!({"required_status_checks": {
                "url": format!("{u}/required_status_checks"),
                "strict": true,
                "contexts": r.required_status_checks,
                "contexts_url": format!("{u}/required_status_checks/contexts"),
                "checks": checks(&r.required_status_checks),
            }}),
        );
    }
    v
}

/// `git-tree` for the commit's root tree, optionally recursive.
/// A git blob (`GET /repos/{owner}/{repo}/git/blobs/{sha}`), base64 in 60-column lines.
pub fn blob(base: &str, repo: &Repo, sha: &str, content: &str) -> Value {
    json!({
        "sha": sha,
        "node_id": format!("B_{sha}"),
        "size": content.len(),
        "url": format!("{base}/repos/{}/git/blobs/{sha}", repo.full_name()),
        "content": wrapped_base64(content),
        "encoding": "base64",
    })
}

fn wrapped_base64(content: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(content.as_bytes());
    let mut wrapped = String::with_capacity(encoded.len() + encoded.len() / 60 + 1);
    for chunk in encoded.as_bytes().chunks(60) {
        wrapped.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        wrapped.push('\n');
    }
    wrapped
}

pub fn tree(base: &str, repo: &Repo, c: &Commit, recursive: bool) -> Value {
    let u = format!("{base}/repos/{}/git", repo.full_name());
    let mut entries: Vec<(String, Value)> = Vec::new();
    for dir in c.dirs() {
        if !recursive && dir.contains('/') {
            continue;
        }
        let sha = c.dir_sha(&dir);
        entries.push((
            dir.clone(),
            json!({"path": dir, "mode": "040000", "type": "tree", "sha": sha, "url": format!("{u}/trees/{sha}")}),
        ));
    }
    for (path, blob) in &c.files {
        if !recursive && path.contains('/') {
            continue;
        }
        entries.push((
            path.clone(),
            json!({
                "path": path, "mode": "100644", "type": "blob", "sha": blob.sha,
                "size": blob.content.len(), "url": format!("{u}/blobs/{}", blob.sha),
            }),
        ));
    }
    // Git lists a tree's entries in path order, directories interleaved with files.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    json!({
        "sha": c.tree_sha,
        "url": format!("{u}/trees/{}", c.tree_sha),
        "tree": entries.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        "truncated": recursive && repo.truncate_trees,
    })
}

fn content_links(
    base: &str,
    repo: &Repo,
    path: &str,
    reference: &str,
    kind: &str,
    sha: &str,
) -> Value {
    let full = repo.full_name();
    let self_url = format!("{base}/repos/{full}/contents/{path}?ref={reference}");
    let git_url = if kind == "dir" {
        format!("{base}/repos/{full}/git/trees/{sha}")
    } else {
        format!("{base}/repos/{full}/git/blobs/{sha}")
    };
    let web = if kind == "dir" { "tree" } else { "blob" };
    let html_url = format!("{base}/{full}/{web}/{reference}/{path}");
    json!({
        "url": self_url,
        "git_url": git_url,
        "html_url": html_url,
        "_links": {"self": self_url, "git": git_url, "html": html_url},
    })
}

/// `content-file` with base64 content wrapped at 60 columns like GitHub's.
pub fn content_file(
    base: &str,
    repo: &Repo,
    path: &str,
    reference: &str,
    c: &Commit,
) -> Option<Value> {
    let blob = c.files.get(path)?;
    let wrapped = wrapped_base64(&blob.content);
    let mut v = json!({
        "type": "file",
        "encoding": "base64",
        "size": blob.content.len(),
        "name": path.rsplit('/').next().unwrap_or(path),
        "path": path,
        "content": wrapped,
        "sha": blob.sha,
        "download_url": format!("{base}/{}/raw/{reference}/{path}", repo.full_name()),
    });
    merge(
        &mut v,
        content_links(base, repo, path, reference, "file", &blob.sha),
    );
    Some(v)
}

/// `content-directory` (array of entries) when `path` is a directory ("" is the root).
pub fn content_dir(
    base: &str,
    repo: &Repo,
    path: &str,
    reference: &str,
    c: &Commit,
) -> Option<Value> {
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}/")
    };
    let dirs = c.dirs();
    if !path.is_empty() && !dirs.iter().any(|d| d == path) {
        return None;
    }
    let mut entries: Vec<(String, Value)> = Vec::new();
    for d in dirs
        .iter()
        .filter(|d| d.starts_with(&prefix) && !d[prefix.len()..].contains('/'))
    {
        let sha = c.dir_sha(d);
        let mut v = json!({
            "type": "dir", "size": 0, "name": &d[prefix.len()..], "path": d, "sha": sha,
            "download_url": null,
        });
        merge(&mut v, content_links(base, repo, d, reference, "dir", &sha));
        entries.push((d.clone(), v));
    }
    for (p, blob) in c
        .files
        .iter()
        .filter(|(p, _)| p.starts_with(&prefix) && !p[prefix.len()..].contains('/'))
    {
        let mut v = json!({
            "type": "file", "size": blob.content.len(), "name": &p[prefix.len()..], "path": p,
            "sha": blob.sha, "download_url": format!("{base}/{}/raw/{reference}/{p}", repo.full_name()),
        });
        merge(
            &mut v,
            content_links(base, repo, p, reference, "file", &blob.sha),
        );
        entries.push((p.clone(), v));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Some(Value::Array(entries.into_iter().map(|(_, v)| v).collect()))
}

/// `label`.
pub fn label(base: &str, repo: &Repo, l: &Label) -> Value {
    json!({
        "id": l.id,
        "node_id": node_id("LA", l.id),
        "url": format!("{base}/repos/{}/labels/{}", repo.full_name(), encode_segment(&l.name)),
        "name": l.name,
        "description": l.description,
        "color": l.color,
        "default": false,
    })
}

/// Percent-encodes a label name for use as one path segment.
pub fn encode_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// `issue`.
pub fn issue(base: &str, repo: &Repo, i: &Issue) -> Value {
    let u = format!("{base}/repos/{}", repo.full_name());
    let labels: Vec<Value> = i
        .labels
        .iter()
        .filter_map(|n| repo.labels.get(&n.to_lowercase()))
        .map(|l| label(base, repo, l))
        .collect();
    let assignees: Vec<Value> = i
        .assignees
        .iter()
        .map(|login| simple_user(base, login, user_id(login), "User"))
        .collect();
    json!({
        "id": i.id,
        "node_id": node_id("I", i.id),
        "url": format!("{u}/issues/{}", i.number),
        "repository_url": u,
        "labels_url": format!("{u}/issues/{}/labels{{/name}}", i.number),
        "comments_url": format!("{u}/issues/{}/comments", i.number),
        "events_url": format!("{u}/issues/{}/events", i.number),
        "html_url": format!("{base}/{}/issues/{}", repo.full_name(), i.number),
        "number": i.number,
        "state": i.state,
        "state_reason": i.state_reason,
        "title": i.title,
        "body": i.body,
        "user": actor(base),
        "labels": labels,
        "assignee": assignees.first().cloned().unwrap_or(Value::Null),
        "assignees": assignees,
        "milestone": null,
        "locked": false,
        "active_lock_reason": null,
        "comments": i.comments.len(),
        "closed_at": i.closed_at,
        "created_at": i.created_at,
        "updated_at": i.updated_at,
        "closed_by": if i.state == "closed" { actor(base) } else { Value::Null },
        "author_association": "NONE",
        "timeline_url": format!("{u}/issues/{}/timeline", i.number),
    })
}

/// A stable account id for a login the double has no account for.
fn user_id(login: &str) -> u64 {
    login
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        % 1_000_000_000
}

/// `issue-comment`.
pub fn comment(base: &str, repo: &Repo, i: &Issue, c: &crate::state::Comment) -> Value {
    let u = format!("{base}/repos/{}", repo.full_name());
    json!({
        "id": c.id,
        "node_id": node_id("IC", c.id),
        "url": format!("{u}/issues/comments/{}", c.id),
        "html_url": format!("{base}/{}/issues/{}#issuecomment-{}", repo.full_name(), i.number, c.id),
        "body": c.body,
        "user": actor(base),
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        "issue_url": format!("{u}/issues/{}", i.number),
        "author_association": "NONE",
    })
}

fn rate_value(r: &RateWindow) -> Value {
    json!({"limit": r.limit, "remaining": r.remaining, "reset": r.reset, "used": r.used(), "resource": "core"})
}

/// `rate-limit-overview`.
pub fn rate_limit(r: &RateWindow) -> Value {
    let search =
        json!({"limit": 30, "remaining": 30, "reset": r.reset, "used": 0, "resource": "search"});
    json!({
        "resources": {"core": rate_value(r), "search": search},
        "rate": rate_value(r),
    })
}
