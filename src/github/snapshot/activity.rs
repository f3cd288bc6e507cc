//! What a snapshot reads besides files, and only when a policy that runs needs it
//! ([`crate::policy::Fetch`]): the open pull requests idle since before a cutoff, the
//! check runs and commit statuses of the default branch's head, and the commit SHAs of
//! the tags actions are used at.
//!
//! Every read is conditional (a 304 costs no rate limit). A rate-limited answer is
//! returned as an error, so the scan waits with the fleet; any other failure makes the
//! part unavailable with the reason (its policy is then not evaluated), because a
//! hygiene check never decides from half an answer. Tag lookups only improve an issue's
//! text: a failure there leaves the tag unresolved and nothing else.

use std::collections::{BTreeMap, HashMap};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::super::models::decode;
use super::super::{CachePolicy, GithubClient, GithubError, Page};
use super::segment;
use crate::domain::{CiCheck, CiOutcome, OpenPulls, PullRequest};

/// Pages of a listing read at most (100 items each).
const MAX_PAGES: usize = 10;

/// A failure that must reach the step (the fleet waits for GitHub's limit), or the
/// reason the part stays unavailable.
pub(super) enum Unread {
    Wait(GithubError),
    Unavailable(String),
}

fn unread(what: &str, e: GithubError) -> Unread {
    if e.rate_limited().is_some() {
        Unread::Wait(e)
    } else {
        Unread::Unavailable(format!("{what} could not be read: {e}"))
    }
}

/// Every page of a listing, starting at `first`, while `more` says the last page calls
/// for the next one. A missing repository or commit (404) is an error like any other.
async fn pages(
    client: &GithubClient,
    first: &str,
    what: &str,
    mut more: impl FnMut(&Page) -> bool,
) -> Result<Vec<Page>, Unread> {
    let mut out = Vec::new();
    let mut next = Some(first.to_owned());
    while let Some(url) = next.take() {
        let page = client
            .get(&url, CachePolicy::Revalidate)
            .await
            .map_err(|e| unread(what, e))?
            .ok_or_else(|| Unread::Unavailable(format!("{what}: GitHub answered 404")))?;
        if out.len() + 1 < MAX_PAGES && more(&page) {
            next = page.next.clone();
        }
        out.push(page);
    }
    Ok(out)
}

#[derive(Deserialize)]
struct PullJson {
    number: u64,
    title: String,
    html_url: String,
    #[serde(default)]
    draft: bool,
    updated_at: String,
}

/// The open pull requests last active more than `days` days ago, oldest first; paging
/// stops at the first page that reaches pull requests active since.
pub(super) async fn idle_pulls(
    client: &GithubClient,
    base: &str,
    days: u32,
) -> Result<OpenPulls, Unread> {
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(OffsetDateTime::now_utc());
    let cutoff = crate::policy::idle_cutoff(now, days);
    let text = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
    let cutoff_text = text(cutoff);
    let first = format!("{base}/pulls?state=open&sort=updated&direction=asc&per_page=100");
    let what = "the open pull requests";
    let mut idle = Vec::new();
    let mut failure = None;
    let pages = pages(client, &first, what, |page| {
        match decode::<Vec<PullJson>>(page, &first) {
            // Sorted by activity: once a page ends after the cutoff, the rest is recent.
            Ok(items) => items.last().is_some_and(|p| p.updated_at < cutoff_text),
            Err(e) => {
                failure = Some(e.to_string());
                false
            }
        }
    })
    .await?;
    if let Some(reason) = failure {
        return Err(Unread::Unavailable(reason));
    }
    for page in &pages {
        let items: Vec<PullJson> =
            decode(page, &first).map_err(|e| Unread::Unavailable(e.to_string()))?;
        idle.extend(
            items
                .into_iter()
                .filter(|p| p.updated_at < cutoff_text)
                .map(|p| PullRequest {
                    number: p.number,
                    title: p.title,
                    html_url: p.html_url,
                    draft: p.draft,
                    updated_at: p.updated_at,
                }),
        );
    }
    Ok(OpenPulls {
        read_at: text(now),
        cutoff: cutoff_text,
        idle,
    })
}

#[derive(Deserialize)]
struct CheckRunsJson {
    check_runs: Vec<CheckRunJson>,
}

#[derive(Deserialize)]
struct CheckRunJson {
    name: String,
    status: String,
    conclusion: Option<String>,
    html_url: Option<String>,
}

#[derive(Deserialize)]
struct CombinedJson {
    statuses: Vec<StatusJson>,
}

#[derive(Deserialize)]
struct StatusJson {
    context: String,
    state: String,
    target_url: Option<String>,
}

/// A completed check run's conclusion as an outcome: only these fail.
fn run_outcome(status: &str, conclusion: Option<&str>) -> CiOutcome {
    match (status, conclusion) {
        (
            "completed",
            Some(
                c @ ("failure" | "timed_out" | "cancelled" | "action_required" | "startup_failure"),
            ),
        ) => CiOutcome::Failed(c.to_owned()),
        ("completed", _) => CiOutcome::Passed,
        _ => CiOutcome::Pending,
    }
}

fn status_outcome(state: &str) -> CiOutcome {
    match state {
        "success" => CiOutcome::Passed,
        "pending" => CiOutcome::Pending,
        other => CiOutcome::Failed(other.to_owned()),
    }
}

/// The newest check run of each name and the newest status of each context on `sha`.
pub(super) async fn checks(
    client: &GithubClient,
    base: &str,
    sha: &str,
) -> Result<Vec<CiCheck>, Unread> {
    let runs_url = format!("{base}/commits/{sha}/check-runs?filter=latest&per_page=100");
    let mut out = Vec::new();
    for page in pages(client, &runs_url, "the check runs", |_| true).await? {
        let runs: CheckRunsJson =
            decode(&page, &runs_url).map_err(|e| Unread::Unavailable(e.to_string()))?;
        out.extend(runs.check_runs.into_iter().map(|r| CiCheck {
            outcome: run_outcome(&r.status, r.conclusion.as_deref()),
            name: r.name,
            url: r.html_url,
        }));
    }
    let status_url = format!("{base}/commits/{sha}/status?per_page=100");
    for page in pages(client, &status_url, "the commit statuses", |_| true).await? {
        // The combined `state` is `pending` when there is no status at all; only the
        // individual statuses say something.
        let combined: CombinedJson =
            decode(&page, &status_url).map_err(|e| Unread::Unavailable(e.to_string()))?;
        out.extend(combined.statuses.into_iter().map(|s| CiCheck {
            outcome: status_outcome(&s.state),
            name: s.context,
            url: s.target_url,
        }));
    }
    Ok(out)
}

#[derive(Deserialize)]
struct GitObject {
    #[serde(rename = "type")]
    kind: String,
    sha: String,
}

#[derive(Deserialize)]
struct RefJson {
    object: GitObject,
}

/// How long a tag's commit is remembered in this process. Tags rarely move, and the
/// answer only feeds an issue's text; within the window, many repositories using the
/// same action cost one lookup per worker (and other workers revalidate it for free
/// through the shared ETag cache).
const TAG_TTL: Duration = Duration::from_secs(15 * 60);
/// Entries remembered at most; the cache starts over when full.
const TAG_CACHE_SIZE: usize = 4096;

/// When a tag was looked up, and its commit SHA (`None`: there is no such tag).
type Looked = (Instant, Option<String>);

/// `owner/repo@tag` → what its lookup found.
static TAGS: LazyLock<Mutex<HashMap<String, Looked>>> = LazyLock::new(Default::default);

fn remembered(key: &str) -> Option<Option<String>> {
    let tags = TAGS.lock().unwrap_or_else(|e| e.into_inner());
    tags.get(key)
        .filter(|(at, _)| at.elapsed() < TAG_TTL)
        .map(|(_, sha)| sha.clone())
}

fn remember(key: String, sha: Option<String>) {
    let mut tags = TAGS.lock().unwrap_or_else(|e| e.into_inner());
    if tags.len() >= TAG_CACHE_SIZE {
        tags.clear();
    }
    tags.insert(key, (Instant::now(), sha));
}

/// The commit SHA each `(owner/repo, tag)` points at, peeling annotated tags; tags that
/// do not exist (a branch, a deleted tag) or cannot be read are left out.
pub(super) async fn tag_shas(
    client: &GithubClient,
    tags: &[(String, String)],
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (slug, tag) in tags {
        let key = crate::policy::action_sha_key(slug, tag);
        let sha = match remembered(&key) {
            Some(sha) => sha,
            None => match resolve(client, slug, tag).await {
                Ok(sha) => {
                    remember(key.clone(), sha.clone());
                    sha
                }
                Err(e) => {
                    tracing::debug!(action = %key, error.message = %e, "tag not resolved");
                    None
                }
            },
        };
        if let Some(sha) = sha {
            out.insert(key, sha);
        }
    }
    out
}

/// `git/ref/tags/{tag}`, then `git/tags/{sha}` while the object is an annotated tag.
async fn resolve(
    client: &GithubClient,
    slug: &str,
    tag: &str,
) -> Result<Option<String>, GithubError> {
    let base = format!("/repos/{slug}");
    let ref_url = format!("{base}/git/ref/tags/{}", segment(tag));
    let Some(page) = client.get(&ref_url, CachePolicy::Revalidate).await? else {
        return Ok(None);
    };
    let mut object = decode::<RefJson>(&page, &ref_url)?.object;
    // A tag of a tag is possible; three levels is more than anyone uses.
    for _ in 0..3 {
        match object.kind.as_str() {
            "commit" => return Ok(Some(object.sha)),
            "tag" => {
                // A tag object is named by its content: immutable.
                let tag_url = format!("{base}/git/tags/{}", object.sha);
                let Some(page) = client.get(&tag_url, CachePolicy::Immutable).await? else {
                    return Ok(None);
                };
                object = decode::<RefJson>(&page, &tag_url)?.object;
            }
            _ => return Ok(None),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_completed_failures_fail() {
        assert_eq!(
            run_outcome("completed", Some("failure")),
            CiOutcome::Failed("failure".into())
        );
        assert_eq!(
            run_outcome("completed", Some("cancelled")),
            CiOutcome::Failed("cancelled".into())
        );
        for ok in ["success", "neutral", "skipped", "stale"] {
            assert_eq!(
                run_outcome("completed", Some(ok)),
                CiOutcome::Passed,
                "{ok}"
            );
        }
        assert_eq!(run_outcome("in_progress", None), CiOutcome::Pending);
        assert_eq!(run_outcome("queued", None), CiOutcome::Pending);
        assert_eq!(status_outcome("error"), CiOutcome::Failed("error".into()));
        assert_eq!(status_outcome("pending"), CiOutcome::Pending);
    }
}
