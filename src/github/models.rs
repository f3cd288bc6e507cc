//! Typed models of the GitHub REST responses the scan decodes, after GitHub's OpenAPI
//! description (`full-repository`, `branch-with-protection`, `git-tree`, `blob`,
//! `branch-protection`). Only the fields Repo Guardian reads are declared; serde ignores
//! the rest, so GitHub adding fields never breaks a scan, while a missing required field or
//! a wrong type is a decode error naming the field instead of a silent default.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{GithubError, Page};
use crate::domain::{BranchRules, RepoMeta, RepoRef};

/// Decodes a page's body into `T`; the error names the request and the offending field.
pub fn decode<T: DeserializeOwned>(page: &Page, path: &str) -> Result<T, GithubError> {
    serde_path_to_error::deserialize(&page.body).map_err(|e| GithubError::Decode {
        method: http::Method::GET,
        path: path.to_owned(),
        message: format!("at `{}`: {}", e.path(), e.inner()),
    })
}

/// `GET /repos/{owner}/{repo}` and the items of repository listings.
#[derive(Debug, Clone, Deserialize)]
pub struct Repository {
    pub name: String,
    pub owner: Account,
    /// Absent for an empty repository on some GitHub versions.
    #[serde(default)]
    pub default_branch: Option<String>,
    #[serde(default)]
    pub archived: bool,
    #[serde(default)]
    pub fork: bool,
    #[serde(default)]
    pub private: bool,
    #[serde(default = "yes")]
    pub has_issues: bool,
    #[serde(default)]
    pub license: Option<License>,
    /// Repository size in KiB; 0 for a repository without any commit.
    #[serde(default)]
    pub size: Option<u64>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
pub struct Account {
    pub login: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct License {
    #[serde(default)]
    pub spdx_id: Option<String>,
}

impl Repository {
    /// The repository's name and the metadata a scan needs.
    pub fn meta(&self) -> (RepoRef, RepoMeta) {
        (
            RepoRef {
                owner: self.owner.login.clone(),
                name: self.name.clone(),
            },
            RepoMeta {
                default_branch: self
                    .default_branch
                    .clone()
                    .unwrap_or_else(|| "main".to_owned()),
                archived: self.archived,
                fork: self.fork,
                private: self.private,
                has_issues: self.has_issues,
                license_spdx: self.license.as_ref().and_then(|l| l.spdx_id.clone()),
            },
        )
    }
}

/// `GET /repos/{owner}/{repo}/branches/{branch}`.
#[derive(Debug, Clone, Deserialize)]
pub struct Branch {
    pub commit: CommitRef,
    #[serde(default)]
    pub protected: bool,
}

/// An item of `GET /repos/{owner}/{repo}/branches`.
#[derive(Debug, Clone, Deserialize)]
pub struct ShortBranch {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CommitRef {
    pub sha: String,
}

/// `GET /repos/{owner}/{repo}/git/trees/{sha}?recursive=1`.
#[derive(Debug, Clone, Deserialize)]
pub struct Tree {
    pub tree: Vec<TreeEntry>,
    /// GitHub cuts recursive trees off beyond 100,000 entries or 7 MB and says so here.
    #[serde(default)]
    pub truncated: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TreeEntry {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub sha: String,
    /// Blob size in bytes (absent for trees and submodules).
    #[serde(default)]
    pub size: Option<u64>,
}

/// `GET /repos/{owner}/{repo}/git/blobs/{sha}`.
#[derive(Debug, Clone, Deserialize)]
pub struct Blob {
    pub content: String,
    pub encoding: String,
}

impl Blob {
    /// The blob's bytes as text; `None` when it is not valid UTF-8 or not decodable.
    pub fn text(&self) -> Option<String> {
        use base64::Engine as _;
        let bytes = match self.encoding.as_str() {
            "base64" => {
                let compact: String = self.content.split_whitespace().collect();
                base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .ok()?
            }
            "utf-8" | "utf8" => self.content.clone().into_bytes(),
            _ => return None,
        };
        String::from_utf8(bytes).ok()
    }
}

/// `GET /repos/{owner}/{repo}/branches/{branch}/protection`.
#[derive(Debug, Clone, Deserialize)]
pub struct Protection {
    #[serde(default)]
    pub required_pull_request_reviews: Option<Reviews>,
    #[serde(default)]
    pub enforce_admins: Option<Enabled>,
    #[serde(default)]
    pub allow_force_pushes: Option<Enabled>,
    #[serde(default)]
    pub allow_deletions: Option<Enabled>,
    #[serde(default)]
    pub required_status_checks: Option<StatusChecks>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Reviews {
    #[serde(default)]
    pub required_approving_review_count: u32,
    #[serde(default)]
    pub dismiss_stale_reviews: bool,
    #[serde(default)]
    pub require_code_owner_reviews: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Enabled {
    pub enabled: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StatusChecks {
    #[serde(default)]
    pub contexts: Vec<String>,
}

impl Protection {
    pub fn rules(&self) -> BranchRules {
        let on = |e: &Option<Enabled>| e.as_ref().is_some_and(|e| e.enabled);
        let reviews = self.required_pull_request_reviews.as_ref();
        BranchRules {
            required_approving_reviews: reviews.map(|r| r.required_approving_review_count),
            dismiss_stale_reviews: reviews.is_some_and(|r| r.dismiss_stale_reviews),
            require_code_owner_reviews: reviews.is_some_and(|r| r.require_code_owner_reviews),
            enforce_admins: on(&self.enforce_admins),
            allow_force_pushes: on(&self.allow_force_pushes),
            allow_deletions: on(&self.allow_deletions),
            required_status_checks: self
                .required_status_checks
                .as_ref()
                .map(|c| c.contexts.clone())
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn page(body: serde_json::Value) -> Page {
        Page { body, next: None }
    }

    #[test]
    fn a_wrong_type_is_an_error_naming_the_field() {
        let err = decode::<Branch>(&page(json!({"commit": {"sha": 7}})), "/b").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("commit.sha") && text.contains("/b"), "{text}");
    }

    #[test]
    fn protection_rules_from_githubs_shape() {
        let body = json!({
            "required_pull_request_reviews": {"required_approving_review_count": 2, "dismiss_stale_reviews": true},
            "enforce_admins": {"enabled": true, "url": "x"},
            "allow_force_pushes": {"enabled": false},
            "required_status_checks": {"strict": true, "contexts": ["ci"]},
        });
        let rules = decode::<Protection>(&page(body), "/p").unwrap().rules();
        assert_eq!(rules.required_approving_reviews, Some(2));
        assert!(rules.dismiss_stale_reviews && rules.enforce_admins);
        assert!(!rules.allow_force_pushes && !rules.require_code_owner_reviews);
        assert_eq!(rules.required_status_checks, ["ci"]);
    }

    #[test]
    fn blobs_decode_from_wrapped_base64() {
        let blob = Blob {
            content: "b246IHB1\nc2gK\n".into(),
            encoding: "base64".into(),
        };
        assert_eq!(blob.text().as_deref(), Some("on: push\n"));
    }
}
