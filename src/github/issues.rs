//! Issues and labels of one repository, as the reconcile step needs them.
//!
//! Reads are conditional (an unchanged issue list costs a free 304); writes are plain.

use http::Method;
use serde_json::json;

use super::snapshot::segment;
use super::{CachePolicy, GithubClient, GithubError};
use crate::domain::RepoRef;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub open: bool,
}

fn parse_issue(json: &serde_json::Value) -> Option<Issue> {
    // The issues endpoints also return pull requests; those are never ours.
    if json.get("pull_request").is_some_and(|p| !p.is_null()) {
        return None;
    }
    Some(Issue {
        number: json.get("number")?.as_u64()?,
        title: json.get("title")?.as_str()?.to_string(),
        body: json
            .get("body")
            .and_then(|b| b.as_str())
            .unwrap_or_default()
            .to_string(),
        open: json.get("state")?.as_str()? == "open",
    })
}

fn base(repo: &RepoRef) -> String {
    format!("/repos/{}/{}", repo.owner, repo.name)
}

fn unexpected(path: String, message: &str) -> GithubError {
    GithubError::Decode {
        method: Method::GET,
        path,
        message: message.into(),
    }
}

/// Every issue (open and closed) carrying `label`, all pages.
pub async fn list_labelled(
    client: &GithubClient,
    repo: &RepoRef,
    label: &str,
) -> Result<Vec<Issue>, GithubError> {
    let first = format!(
        "{}/issues?labels={}&state=all&per_page=100",
        base(repo),
        segment(label)
    );
    let mut out = Vec::new();
    let mut next = Some(first.clone());
    while let Some(url) = next.take() {
        let Some(page) = client.get(&url, CachePolicy::Revalidate).await? else {
            return Err(unexpected(
                first,
                "repository not found while listing issues",
            ));
        };
        let items = page
            .body
            .as_array()
            .ok_or_else(|| unexpected(first.clone(), "issue list is not an array"))?;
        out.extend(items.iter().filter_map(parse_issue));
        next = page.next;
    }
    Ok(out)
}

pub async fn get(
    client: &GithubClient,
    repo: &RepoRef,
    number: u64,
) -> Result<Option<Issue>, GithubError> {
    let page = client
        .get(
            &format!("{}/issues/{number}", base(repo)),
            CachePolicy::Revalidate,
        )
        .await?;
    Ok(page.and_then(|p| parse_issue(&p.body)))
}

/// Makes sure the label exists (GET, conditional; create on 404). With `write` false
/// (dry run), only looks.
pub async fn ensure_label(
    client: &GithubClient,
    repo: &RepoRef,
    label: &str,
    write: bool,
) -> Result<(), GithubError> {
    let path = format!("{}/labels/{}", base(repo), segment(label));
    if client.get(&path, CachePolicy::Revalidate).await?.is_some() || !write {
        return Ok(());
    }
    let created = client
        .write(
            Method::POST,
            &format!("{}/labels", base(repo)),
            &json!({
                "name": label,
                "color": "5319e7",
                "description": "Filed and kept up to date by Repo Guardian"
            }),
        )
        .await;
    match created {
        // Another worker created it first: that is what we wanted.
        Err(e) if e.status() == Some(http::StatusCode::UNPROCESSABLE_ENTITY) => Ok(()),
        other => other.map(|_| ()),
    }
}

pub async fn create(
    client: &GithubClient,
    repo: &RepoRef,
    title: &str,
    body: &str,
    label: &str,
) -> Result<Issue, GithubError> {
    let path = format!("{}/issues", base(repo));
    let json = client
        .write(
            Method::POST,
            &path,
            &json!({ "title": title, "body": body, "labels": [label] }),
        )
        .await?;
    parse_issue(&json).ok_or_else(|| unexpected(path, "created issue has no number"))
}

/// Changes title/body and/or state of an issue.
pub async fn update(
    client: &GithubClient,
    repo: &RepoRef,
    number: u64,
    patch: serde_json::Value,
) -> Result<(), GithubError> {
    client
        .write(
            Method::PATCH,
            &format!("{}/issues/{number}", base(repo)),
            &patch,
        )
        .await
        .map(|_| ())
}

pub async fn comment(
    client: &GithubClient,
    repo: &RepoRef,
    number: u64,
    body: &str,
) -> Result<(), GithubError> {
    client
        .write(
            Method::POST,
            &format!("{}/issues/{number}/comments", base(repo)),
            &json!({ "body": body }),
        )
        .await
        .map(|_| ())
}
