//! Expands a target into repositories: paged, conditional listing of an organisation's or
//! a user's repositories (one request per 100 repositories, free when unchanged), filtered
//! by the fleet's configuration.

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::models::{Repository, decode};
use super::{CachePolicy, GithubClient, GithubError};
use crate::config::TargetFilters;
use crate::domain::RepoMeta;
use crate::domain::RepoRef;
use crate::domain::Target;

/// A repository to scan, with the metadata the listing already carried.
#[derive(Debug, Clone)]
pub struct Listed {
    pub repo: RepoRef,
    pub meta: Option<RepoMeta>,
}

/// Why a target could not be listed when GitHub answered fine.
fn not_found(what: String) -> GithubError {
    GithubError::Status {
        method: http::Method::GET,
        path: what,
        status: http::StatusCode::NOT_FOUND,
        message: "not found, or not visible to the configured token".into(),
        retry_after: None,
        limit: None,
    }
}

pub async fn list_target(
    client: &GithubClient,
    target: &Target,
    filters: &TargetFilters,
) -> Result<Vec<Listed>, GithubError> {
    let first = match target {
        Target::Repo(repo) => {
            // A single repository is scanned even when the filters would skip it: the user
            // asked for it by name.
            return Ok(vec![Listed {
                repo: repo.clone(),
                meta: None,
            }]);
        }
        Target::Org(org) => format!("/orgs/{org}/repos?type=all&per_page=100"),
        Target::User(user) => format!("/users/{user}/repos?type=owner&per_page=100"),
    };
    let filter = Filter::new(filters);
    let mut out = Vec::new();
    let mut next = Some(first.clone());
    while let Some(url) = next.take() {
        let page = client
            .get(&url, CachePolicy::Revalidate)
            .await?
            .ok_or_else(|| not_found(target.to_string()))?;
        let repos: Vec<Repository> = decode(&page, &url)?;
        for listed in repos {
            let (repo, meta) = listed.meta();
            if filter.keeps(&repo, &meta) {
                out.push(Listed {
                    repo,
                    meta: Some(meta),
                });
            }
        }
        next = page.next;
    }
    out.sort_by(|a, b| a.repo.cmp(&b.repo));
    out.dedup_by(|a, b| a.repo == b.repo);
    Ok(out)
}

struct Filter<'a> {
    settings: &'a TargetFilters,
    allow: Option<GlobSet>,
    deny: Option<GlobSet>,
}

impl<'a> Filter<'a> {
    fn new(settings: &'a TargetFilters) -> Self {
        // Globs were validated with the configuration; a failure here leaves the set out.
        let build = |globs: &[String]| {
            if globs.is_empty() {
                return None;
            }
            let mut b = GlobSetBuilder::new();
            for g in globs {
                if let Ok(g) = Glob::new(&g.to_lowercase()) {
                    b.add(g);
                }
            }
            b.build().ok()
        };
        Filter {
            settings,
            allow: build(&settings.allow),
            deny: build(&settings.deny),
        }
    }

    fn keeps(&self, repo: &RepoRef, meta: &RepoMeta) -> bool {
        let name = repo.full_name().to_lowercase();
        (self.settings.include_archived || !meta.archived)
            && (self.settings.include_forks || !meta.fork)
            && (self.settings.include_private || !meta.private)
            && self.allow.as_ref().is_none_or(|a| a.is_match(&name))
            && self.deny.as_ref().is_none_or(|d| !d.is_match(&name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(archived: bool, fork: bool, private: bool) -> RepoMeta {
        RepoMeta {
            default_branch: "main".into(),
            archived,
            fork,
            private,
            has_issues: true,
            license_spdx: None,
        }
    }

    #[test]
    fn filters_by_flags_and_globs() {
        let settings = TargetFilters {
            include_archived: false,
            include_forks: false,
            include_private: true,
            allow: vec!["octo/*".into()],
            deny: vec!["octo/legacy-*".into()],
            ..Default::default()
        };
        let f = Filter::new(&settings);
        let r = |n: &str| RepoRef {
            owner: "Octo".into(),
            name: n.into(),
        };
        assert!(f.keeps(&r("app"), &meta(false, false, true)));
        assert!(!f.keeps(&r("app"), &meta(true, false, false)));
        assert!(!f.keeps(&r("app"), &meta(false, true, false)));
        assert!(!f.keeps(&r("legacy-x"), &meta(false, false, false)));
        let other = RepoRef {
            owner: "else".into(),
            name: "x".into(),
        };
        assert!(!f.keeps(&other, &meta(false, false, false)));
    }
}
