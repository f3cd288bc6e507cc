//! Issues and labels of one repository, as the reconcile step needs them.
//!
//! Reads are conditional (an unchanged issue list costs a free 304); writes are plain.
//! Answers are decoded into typed structs; an issue that was deleted (410) or transferred
//! to another repository (301) is reported as such, never as an error that would fail
//! its repository on every run.

use http::{Method, StatusCode};
use serde::Deserialize;
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
    /// Label names.
    pub labels: Vec<String>,
    /// Assigned logins.
    pub assignees: Vec<String>,
    /// How many comments it has.
    pub comments: u64,
}

#[derive(Debug, Deserialize)]
struct NameJson {
    name: String,
}

#[derive(Debug, Deserialize)]
struct LoginJson {
    login: String,
}

/// An issue as the REST API returns it (the fields used here).
#[derive(Debug, Deserialize)]
struct IssueJson {
    number: u64,
    title: String,
    #[serde(default)]
    body: Option<String>,
    state: String,
    /// Present (and not null) when the "issue" is a pull request.
    #[serde(default)]
    pull_request: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    labels: Vec<NameJson>,
    #[serde(default)]
    assignees: Vec<LoginJson>,
    #[serde(default)]
    comments: u64,
}

impl IssueJson {
    /// The issues endpoints also return pull requests; those are never ours.
    fn into_issue(self) -> Option<Issue> {
        if self.pull_request.is_some() {
            return None;
        }
        Some(Issue {
            number: self.number,
            title: self.title,
            body: self.body.unwrap_or_default(),
            open: self.state == "open",
            labels: self.labels.into_iter().map(|l| l.name).collect(),
            assignees: self.assignees.into_iter().map(|a| a.login).collect(),
            comments: self.comments,
        })
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    path: &str,
    value: serde_json::Value,
) -> Result<T, GithubError> {
    serde_json::from_value(value).map_err(|e| unexpected(path.to_string(), &e.to_string()))
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

/// Every issue (open and closed) carrying all of `labels`, all pages.
pub async fn list_labelled(
    client: &GithubClient,
    repo: &RepoRef,
    labels: &[&str],
) -> Result<Vec<Issue>, GithubError> {
    let labels: Vec<String> = labels.iter().map(|l| segment(l)).collect();
    let first = format!(
        "{}/issues?labels={}&state=all&per_page=100",
        base(repo),
        labels.join(",")
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
        let items: Vec<IssueJson> = decode(&first, page.body)?;
        out.extend(items.into_iter().filter_map(IssueJson::into_issue));
        next = page.next;
    }
    Ok(out)
}

/// What became of an issue looked up by number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(Issue),
    /// Not there (404), or a pull request.
    Missing,
    /// Deleted by an administrator (410).
    Deleted,
    /// Transferred to another repository (301): no longer this repository's issue.
    Transferred,
}

pub async fn get(
    client: &GithubClient,
    repo: &RepoRef,
    number: u64,
) -> Result<Lookup, GithubError> {
    let path = format!("{}/issues/{number}", base(repo));
    match client.get(&path, CachePolicy::Revalidate).await {
        Ok(Some(page)) => Ok(decode::<IssueJson>(&path, page.body)?
            .into_issue()
            .map_or(Lookup::Missing, Lookup::Found)),
        Ok(None) => Ok(Lookup::Missing),
        Err(e) if e.status() == Some(StatusCode::GONE) => Ok(Lookup::Deleted),
        Err(e) if e.status() == Some(StatusCode::MOVED_PERMANENTLY) => Ok(Lookup::Transferred),
        Err(e) => Err(e),
    }
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

/// Files an issue. Labels that do not exist yet are created by GitHub.
pub async fn create(
    client: &GithubClient,
    repo: &RepoRef,
    title: &str,
    body: &str,
    labels: &[String],
    assignees: &[String],
) -> Result<Issue, GithubError> {
    let path = format!("{}/issues", base(repo));
    let mut request = json!({ "title": title, "body": body, "labels": labels });
    if !assignees.is_empty() {
        request["assignees"] = json!(assignees);
    }
    let json = client.write(Method::POST, &path, &request).await?;
    decode::<IssueJson>(&path, json)?
        .into_issue()
        .ok_or_else(|| unexpected(path, "the created issue is a pull request"))
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

/// Whether the newest comment of `issue` contains `marker`: how a step that comments and
/// then changes the issue's state knows, when it runs again after a crash between the two,
/// that its comment is already there. Costs nothing for an issue without comments.
pub async fn last_comment_has(
    client: &GithubClient,
    repo: &RepoRef,
    issue: &Issue,
    marker: &str,
) -> Result<bool, GithubError> {
    #[derive(Deserialize)]
    struct CommentJson {
        #[serde(default)]
        body: Option<String>,
    }
    if issue.comments == 0 {
        return Ok(false);
    }
    let first = format!(
        "{}/issues/{}/comments?per_page=100",
        base(repo),
        issue.number
    );
    let mut last = None;
    let mut next = Some(first.clone());
    while let Some(url) = next.take() {
        let Some(page) = client.get(&url, CachePolicy::Revalidate).await? else {
            return Ok(false);
        };
        let items: Vec<CommentJson> = decode(&first, page.body)?;
        if let Some(item) = items.into_iter().last() {
            last = item.body;
        }
        next = page.next;
    }
    Ok(last.is_some_and(|body| body.contains(marker)))
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
