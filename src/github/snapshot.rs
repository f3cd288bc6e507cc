//! Builds a repository [`Snapshot`] from the REST API in as few requests as possible:
//! the branch (head SHA and whether it is protected), one recursive tree by commit SHA
//! (immutable, so served from the shared cache without a request while the head is
//! unchanged), and the protection rules only for protected branches. Metadata comes from
//! the listing when the plan step had it.

use std::collections::BTreeSet;

use super::listing::repo_meta;
use super::{CachePolicy, GithubClient, GithubError};
use crate::domain::RepoMeta;
use crate::domain::{BranchRules, Protection, RepoRef, Snapshot};

/// Percent-encodes a path segment (branch names may hold `/`, `#`, `%`…).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn missing_repo(repo: &RepoRef) -> GithubError {
    GithubError::Status {
        method: http::Method::GET,
        path: format!("/repos/{repo}"),
        status: http::StatusCode::NOT_FOUND,
        message: "repository not found, or not visible to the configured token".into(),
        retry_after: None,
        limit: None,
    }
}

pub async fn build(
    client: &GithubClient,
    repo: &RepoRef,
    meta: Option<RepoMeta>,
) -> Result<(Snapshot, RepoMeta), GithubError> {
    let base = format!("/repos/{}/{}", repo.owner, repo.name);
    let meta = match meta {
        Some(m) => m,
        None => {
            let page = client
                .get(&base, CachePolicy::Revalidate)
                .await?
                .ok_or_else(|| missing_repo(repo))?;
            repo_meta(&page.body).ok_or_else(|| missing_repo(repo))?.1
        }
    };
    let branch = client
        .get(
            &format!("{base}/branches/{}", segment(&meta.default_branch)),
            CachePolicy::Revalidate,
        )
        .await?;
    let mut snapshot = Snapshot {
        repo: repo.clone(),
        default_branch: meta.default_branch.clone(),
        head_sha: None,
        archived: meta.archived,
        fork: meta.fork,
        private: meta.private,
        license_spdx: meta.license_spdx.clone(),
        files: BTreeSet::new(),
        protection: Protection::Unknown,
        from_github: true,
    };
    // An empty repository has no branch yet: nothing to look at but the metadata.
    let Some(branch) = branch else {
        return Ok((snapshot, meta));
    };
    let sha = branch
        .body
        .pointer("/commit/sha")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    if let Some(sha) = &sha {
        let tree = client
            .get(
                &format!("{base}/git/trees/{sha}?recursive=1"),
                CachePolicy::Immutable,
            )
            .await?;
        if let Some(tree) = tree {
            snapshot.files = tree
                .body
                .get("tree")
                .and_then(|t| t.as_array())
                .map(|entries| {
                    entries
                        .iter()
                        .filter(|e| e.get("type").and_then(|t| t.as_str()) == Some("blob"))
                        .filter_map(|e| e.get("path").and_then(|p| p.as_str()).map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
        }
    }
    snapshot.head_sha = sha;
    let protected = branch.body.get("protected").and_then(|v| v.as_bool()) == Some(true);
    snapshot.protection = if protected {
        protection(client, &base, &meta.default_branch).await?
    } else {
        Protection::Unprotected
    };
    Ok((snapshot, meta))
}

/// Rules of a protected branch. Reading them needs admin rights: without, they are Unknown.
async fn protection(
    client: &GithubClient,
    base: &str,
    branch: &str,
) -> Result<Protection, GithubError> {
    let url = format!("{base}/branches/{}/protection", segment(branch));
    let page = match client.get(&url, CachePolicy::Revalidate).await {
        Ok(Some(page)) => page,
        Ok(None) => return Ok(Protection::Unprotected),
        Err(e)
            if e.status() == Some(http::StatusCode::FORBIDDEN)
                && e.retry() == super::Retry::Never =>
        {
            return Ok(Protection::Unknown);
        }
        Err(e) => return Err(e),
    };
    let b = &page.body;
    let enabled = |p: &str| b.pointer(p).and_then(|v| v.as_bool()).unwrap_or(false);
    let reviews = b.get("required_pull_request_reviews");
    Ok(Protection::Protected(BranchRules {
        required_approving_reviews: reviews.map(|r| {
            r.get("required_approving_review_count")
                .and_then(|v| v.as_u64())
                .unwrap_or(0) as u32
        }),
        dismiss_stale_reviews: enabled("/required_pull_request_reviews/dismiss_stale_reviews"),
        require_code_owner_reviews: enabled(
            "/required_pull_request_reviews/require_code_owner_reviews",
        ),
        enforce_admins: enabled("/enforce_admins/enabled"),
        allow_force_pushes: enabled("/allow_force_pushes/enabled"),
        allow_deletions: enabled("/allow_deletions/enabled"),
        required_status_checks: b
            .pointer("/required_status_checks/contexts")
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_branch_names() {
        assert_eq!(super::segment("main"), "main");
        assert_eq!(super::segment("release/1.0"), "release%2F1.0");
    }
}
