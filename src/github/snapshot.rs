//! Builds a repository [`Snapshot`] from the REST API in as few requests as possible:
//! the branch (head SHA and whether it is protected), one recursive tree by commit SHA and
//! the blobs of the few files the policies read (both immutable, so served from the shared
//! cache without a request while the head is unchanged), and the protection rules only for
//! protected branches. Metadata comes from the listing when the plan step had it.
//!
//! What cannot be observed is recorded in [`Snapshot::unavailable`] with the reason, never
//! guessed: unreadable protection (403, secondary limit, 5xx), a truncated tree, a default
//! branch that vanished during the scan. A truly empty repository (GitHub answers 409, or
//! reports size 0 and no branch) is a complete snapshot with no files.

use super::models::{self, decode};
use super::{CachePolicy, GithubClient, GithubError};
use crate::domain::{Input, Protection, RepoMeta, RepoRef, Snapshot};
use crate::policy::{self, Selection};

mod activity;

/// Blobs larger than this are not fetched: no workflow or configuration file is that big,
/// and the policies treat an unfetched file as unreadable rather than absent.
const MAX_BLOB_BYTES: u64 = 512 * 1024;

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

/// Whether GitHub's answer means "this repository has no commits yet".
fn is_empty_repository(e: &GithubError) -> bool {
    e.status() == Some(http::StatusCode::CONFLICT)
}

/// What the default branch turned out to be.
enum Head {
    Found(models::Branch),
    /// No commit at all: GitHub answered 409, or size 0 and no branch.
    EmptyRepository,
    /// The branch is gone although the repository has commits (renamed or deleted while
    /// the scan ran, even after re-reading the metadata).
    Missing(String),
}

/// Metadata and size of the repository, always asked of GitHub (conditionally).
async fn read_meta(
    client: &GithubClient,
    repo: &RepoRef,
) -> Result<(RepoMeta, Option<u64>), GithubError> {
    let path = format!("/repos/{}/{}", repo.owner, repo.name);
    let page = client
        .get(&path, CachePolicy::Revalidate)
        .await?
        .ok_or_else(|| missing_repo(repo))?;
    let full: models::Repository = decode(&page, &path)?;
    Ok((full.meta().1, full.size))
}

/// Finds the head of the default branch. A 404 re-reads the metadata once, because the
/// branch may have been renamed between plan and scan, and tries again; a repository of
/// size 0 without any branch is empty, not broken.
async fn head(
    client: &GithubClient,
    repo: &RepoRef,
    meta: &mut RepoMeta,
) -> Result<Head, GithubError> {
    for attempt in 0..2 {
        let path = format!(
            "/repos/{}/{}/branches/{}",
            repo.owner,
            repo.name,
            segment(&meta.default_branch)
        );
        match client.get(&path, CachePolicy::Revalidate).await {
            Ok(Some(page)) => return Ok(Head::Found(decode(&page, &path)?)),
            Err(e) if is_empty_repository(&e) => return Ok(Head::EmptyRepository),
            Err(e) => return Err(e),
            Ok(None) if attempt == 0 => {
                let (fresh, size) = read_meta(client, repo).await?;
                *meta = fresh;
                if size == Some(0) && !has_branches(client, repo).await? {
                    return Ok(Head::EmptyRepository);
                }
            }
            Ok(None) => {}
        }
    }
    Ok(Head::Missing(format!(
        "the default branch `{}` was not found (renamed or deleted during the scan)",
        meta.default_branch
    )))
}

/// Whether the repository has any branch at all (one small request, only asked when the
/// default branch is missing from a repository GitHub says is of size 0).
async fn has_branches(client: &GithubClient, repo: &RepoRef) -> Result<bool, GithubError> {
    let path = format!("/repos/{}/{}/branches?per_page=1", repo.owner, repo.name);
    match client.get(&path, CachePolicy::Revalidate).await {
        Ok(Some(page)) => Ok(!decode::<Vec<models::ShortBranch>>(&page, &path)?.is_empty()),
        Ok(None) => Ok(false),
        Err(e) if is_empty_repository(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// [`build_for`] under the default selection of policies.
pub async fn build(
    client: &GithubClient,
    repo: &RepoRef,
    meta: Option<RepoMeta>,
) -> Result<(Snapshot, RepoMeta), GithubError> {
    build_for(client, repo, meta, &Selection::default()).await
}

/// The snapshot of `repo`, reading beyond the tree and the files only what the policies
/// `selection` runs (as adjusted by the owners' file) need.
pub async fn build_for(
    client: &GithubClient,
    repo: &RepoRef,
    meta: Option<RepoMeta>,
    selection: &Selection,
) -> Result<(Snapshot, RepoMeta), GithubError> {
    let base = format!("/repos/{}/{}", repo.owner, repo.name);
    let mut meta = match meta {
        Some(m) => m,
        None => read_meta(client, repo).await?.0,
    };
    let head = head(client, repo, &mut meta).await?;
    let mut snapshot = Snapshot::new(repo.clone(), meta.default_branch.clone());
    snapshot.archived = meta.archived;
    snapshot.fork = meta.fork;
    snapshot.private = meta.private;
    snapshot.license_spdx = meta.license_spdx.clone();
    snapshot.from_github = true;
    let branch = match head {
        Head::Found(branch) => branch,
        Head::EmptyRepository => {
            // Nothing to look at but the metadata; the file list is complete and empty.
            snapshot.unavailable.insert(
                Input::Protection,
                "the repository is empty: it has no branch to protect yet".into(),
            );
            snapshot.unavailable.insert(
                Input::Checks,
                "the repository is empty: it has no commit to check yet".into(),
            );
            snapshot.pulls = Some(crate::domain::OpenPulls {
                read_at: String::new(),
                cutoff: String::new(),
                idle: Vec::new(),
            });
            return Ok((snapshot, meta));
        }
        Head::Missing(reason) => {
            for input in [
                Input::Tree,
                Input::Contents,
                Input::Protection,
                Input::PullRequests,
                Input::Checks,
            ] {
                snapshot.unavailable.insert(input, reason.clone());
            }
            return Ok((snapshot, meta));
        }
    };
    let sha = branch.commit.sha.clone();
    files(client, &base, &sha, &mut snapshot).await?;
    snapshot.head_sha = Some(sha);
    if !policy::checked(&snapshot, selection) {
        // Opted out, or not opted in: the owners' file was all there was to read.
        snapshot.unavailable.insert(
            Input::Protection,
            "not read: the repository is not checked".into(),
        );
        return Ok((snapshot, meta));
    }
    snapshot.protection = if branch.protected {
        match protection(client, &base, &meta.default_branch).await {
            Ok(p) => p,
            Err(reason) => {
                snapshot.unavailable.insert(Input::Protection, reason);
                Protection::Unknown
            }
        }
    } else {
        Protection::Unprotected
    };
    let fetch = policy::fetch_plan(&snapshot, selection);
    extras(client, &base, &fetch, &mut snapshot).await?;
    Ok((snapshot, meta))
}

/// Reads what [`policy::fetch_plan`] asked for; see [`activity`].
async fn extras(
    client: &GithubClient,
    base: &str,
    fetch: &policy::Fetch,
    snapshot: &mut Snapshot,
) -> Result<(), GithubError> {
    if let Some(days) = fetch.pulls_idle_days {
        match activity::idle_pulls(client, base, days).await {
            Ok(pulls) => snapshot.pulls = Some(pulls),
            Err(unread) => unavailable(snapshot, Input::PullRequests, unread)?,
        }
    }
    if fetch.checks
        && let Some(sha) = snapshot.head_sha.clone()
    {
        match activity::checks(client, base, &sha).await {
            Ok(checks) => snapshot.checks = Some(checks),
            Err(unread) => unavailable(snapshot, Input::Checks, unread)?,
        }
    }
    if !fetch.action_tags.is_empty() {
        snapshot.action_shas = activity::tag_shas(client, &fetch.action_tags).await;
    }
    Ok(())
}

/// Records why `input` could not be read, or hands a rate limit on to the step.
fn unavailable(
    snapshot: &mut Snapshot,
    input: Input,
    unread: activity::Unread,
) -> Result<(), GithubError> {
    match unread {
        activity::Unread::Wait(e) => Err(e),
        activity::Unread::Unavailable(reason) => {
            snapshot.unavailable.insert(input, reason);
            Ok(())
        }
    }
}

/// The file list from the recursive tree of `sha`, and the text of the files the policies
/// read. An incomplete tree or an unreadable blob is recorded as unavailable.
async fn files(
    client: &GithubClient,
    base: &str,
    sha: &str,
    snapshot: &mut Snapshot,
) -> Result<(), GithubError> {
    let path = format!("{base}/git/trees/{sha}?recursive=1");
    let tree: models::Tree = match client.get(&path, CachePolicy::Immutable).await {
        Ok(Some(page)) => decode(&page, &path)?,
        // A commit without a tree cannot be; an empty repository answers 409.
        Err(e) if is_empty_repository(&e) => return Ok(()),
        Ok(None) => {
            let reason = format!("the tree of commit {sha} was not found");
            snapshot.unavailable.insert(Input::Tree, reason.clone());
            snapshot.unavailable.insert(Input::Contents, reason);
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    if tree.truncated {
        let reason = format!(
            "GitHub truncated the file list of commit {sha} (too many files): whether a file \
             exists cannot be decided"
        );
        snapshot.unavailable.insert(Input::Tree, reason.clone());
        snapshot.unavailable.insert(Input::Contents, reason);
    }
    let blobs: Vec<&models::TreeEntry> = tree.tree.iter().filter(|e| e.kind == "blob").collect();
    snapshot.files = blobs.iter().map(|e| e.path.clone()).collect();
    for entry in blobs
        .into_iter()
        .filter(|e| crate::policy::reads_contents(&e.path))
    {
        if entry.size.is_some_and(|s| s > MAX_BLOB_BYTES) {
            snapshot.unavailable.insert(
                Input::Contents,
                format!("`{}` is too large to read", entry.path),
            );
            continue;
        }
        let blob_path = format!("{base}/git/blobs/{}", entry.sha);
        let text = match client.get(&blob_path, CachePolicy::Immutable).await {
            Ok(Some(page)) => decode::<models::Blob>(&page, &blob_path)?.text(),
            Ok(None) => None,
            // Transient failures retry the whole scan; others make the contents unknown.
            Err(e) if e.retry() != super::Retry::Never => return Err(e),
            Err(e) => {
                snapshot
                    .unavailable
                    .insert(Input::Contents, format!("`{}`: {e}", entry.path));
                continue;
            }
        };
        match text {
            Some(text) => {
                snapshot.contents.insert(entry.path.clone(), text);
            }
            None => {
                snapshot.unavailable.insert(
                    Input::Contents,
                    format!("`{}` could not be read as UTF-8 text", entry.path),
                );
            }
        }
    }
    Ok(())
}

/// Rules of a protected branch, or why they could not be read. Reading them needs admin
/// rights; any failure (403 "Resource not accessible", a secondary rate limit, a 5xx that
/// persists) leaves protection unknown with the reason, never "unprotected".
async fn protection(client: &GithubClient, base: &str, branch: &str) -> Result<Protection, String> {
    let url = format!("{base}/branches/{}/protection", segment(branch));
    let mut last = String::new();
    // One immediate second try absorbs a single 5xx blip; anything else is final.
    for _ in 0..2 {
        match client.get(&url, CachePolicy::Revalidate).await {
            Ok(Some(page)) => {
                let decoded: models::Protection = decode(&page, &url).map_err(|e| e.to_string())?;
                return Ok(Protection::Protected(decoded.rules()));
            }
            Ok(None) => return Ok(Protection::Unprotected),
            Err(e) => {
                let server = e.status().is_some_and(|s| s.is_server_error());
                last = format!("branch protection could not be read: {e}");
                if !server {
                    break;
                }
            }
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_branch_names() {
        assert_eq!(super::segment("main"), "main");
        assert_eq!(super::segment("release/1.0"), "release%2F1.0");
    }
}
