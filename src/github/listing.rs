//! Expands a target into repositories: paged, conditional listing of an organisation's or
//! a user's repositories, or of every installation of the GitHub App (one request per 100
//! repositories, free when unchanged), filtered by the fleet's configuration.

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
    let filter = Filter::new(filters);
    let mut out = Vec::new();
    match target {
        Target::Repo(repo) => {
            // A single repository is scanned even when the filters would skip it: the user
            // asked for it by name.
            return Ok(vec![Listed {
                repo: repo.clone(),
                meta: None,
            }]);
        }
        // A GitHub App acts on what its installation on the account may access: the
        // installation's repositories, not every repository the account shows.
        Target::Org(owner) | Target::User(owner) if client.auth().app().is_some() => {
            let kind = if matches!(target, Target::Org(_)) {
                "orgs"
            } else {
                "users"
            };
            let lookup = format!("/{kind}/{owner}/installation");
            let app = client
                .auth()
                .app()
                .ok_or_else(|| needs_app("this listing"))?;
            let id = app.installation_of(client, owner, &lookup).await?;
            let scoped = client.for_installation(id);
            let first = "/installation/repositories?per_page=100";
            list_pages::<InstallationRepositories>(&scoped, target, first, &filter, &mut out)
                .await?;
        }
        Target::Org(org) => {
            let first = format!("/orgs/{org}/repos?type=all&per_page=100");
            list_pages::<Vec<Repository>>(client, target, &first, &filter, &mut out).await?;
        }
        Target::User(user) => {
            let first = format!("/users/{user}/repos?type=owner&per_page=100");
            list_pages::<Vec<Repository>>(client, target, &first, &filter, &mut out).await?;
        }
        Target::Installations => {
            for id in installations(client).await? {
                let scoped = client.for_installation(id);
                let first = "/installation/repositories?per_page=100";
                list_pages::<InstallationRepositories>(&scoped, target, first, &filter, &mut out)
                    .await?;
            }
        }
    }
    out.sort_by(|a, b| a.repo.cmp(&b.repo));
    out.dedup_by(|a, b| a.repo == b.repo);
    Ok(out)
}

/// A page of repositories, however the route wraps them.
trait RepositoryPage: serde::de::DeserializeOwned {
    fn repositories(self) -> Vec<Repository>;
}

impl RepositoryPage for Vec<Repository> {
    fn repositories(self) -> Vec<Repository> {
        self
    }
}

/// `GET /installation/repositories`: the repositories one installation may access.
#[derive(serde::Deserialize)]
struct InstallationRepositories {
    repositories: Vec<Repository>,
}

impl RepositoryPage for InstallationRepositories {
    fn repositories(self) -> Vec<Repository> {
        self.repositories
    }
}

/// Follows `first` and its `next` links, keeping the repositories the filter keeps.
async fn list_pages<P: RepositoryPage>(
    client: &GithubClient,
    target: &Target,
    first: &str,
    filter: &Filter<'_>,
    out: &mut Vec<Listed>,
) -> Result<(), GithubError> {
    let mut next = Some(first.to_string());
    while let Some(url) = next.take() {
        let page = client
            .get(&url, CachePolicy::Revalidate)
            .await?
            .ok_or_else(|| not_found(target.to_string()))?;
        let repos: P = decode(&page, &url)?;
        for listed in repos.repositories() {
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
    Ok(())
}

fn needs_app(what: &str) -> GithubError {
    GithubError::App(format!(
        "{what} needs a GitHub App: configure [github.app] (app_id and private_key) \
         instead of a token"
    ))
}

/// The installations of the configured GitHub App the fleet may act for
/// (`GET /app/installations`, paged, minus those `github.app.installation_ids` leaves out).
/// Each account's installation is remembered, which saves a lookup per account.
pub async fn installations(client: &GithubClient) -> Result<Vec<u64>, GithubError> {
    let Some(app) = client.auth().app() else {
        return Err(needs_app("the target `installations`"));
    };
    let mut ids = Vec::new();
    let mut next = Some("/app/installations?per_page=100".to_string());
    while let Some(url) = next.take() {
        let page = client
            .get(&url, CachePolicy::Revalidate)
            .await?
            .ok_or_else(|| not_found("the App's installations".into()))?;
        let listed: Vec<super::app::Installation> = decode(&page, &url)?;
        for installation in listed {
            if let Some(account) = &installation.account {
                app.remember_owner(&account.login, installation.id);
            }
            if app.allows(installation.id) {
                ids.push(installation.id);
            }
        }
        next = page.next;
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
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
