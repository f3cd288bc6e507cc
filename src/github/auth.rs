//! Which credential a request carries: nothing, the personal access token, the App's JWT,
//! or the installation token of the account the request is about.
//!
//! With a GitHub App the account is read from the API path (`/repos/{owner}/…`,
//! `/orgs/{org}/…`, `/users/{user}/…`); `/app/…` is the App itself; a client pinned to an
//! installation ([`super::GithubClient::for_installation`]) uses that one (for
//! `/installation/repositories`). Every credential names a stable, non-secret
//! [`Identity`] — `pat`, `app`, `installation:<id>` — that keys per-token bookkeeping
//! such as the API budget. The header value is marked sensitive and never formatted.

use std::sync::Arc;

use http::HeaderValue;
use secrecy::{ExposeSecret as _, SecretString};

use super::app::{AppAuth, AppKey};
use super::{GithubClient, GithubError};
use crate::config::GithubSettings;

/// Whose budget and permissions a request uses. Never secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Identity {
    /// No credential configured (public data only, 60 requests an hour).
    Anonymous,
    /// The personal access token of `github.token`.
    Pat,
    /// The App itself (JWT): `/app/…` only.
    App,
    /// An installation token of the App.
    Installation(u64),
}

impl Identity {
    /// The key per-token bookkeeping (the fleet's API budget) is kept under:
    /// `anonymous`, `pat`, `app` or `installation:<id>`.
    pub fn budget_key(&self) -> String {
        match self {
            Identity::Anonymous => "anonymous".into(),
            Identity::Pat => "pat".into(),
            Identity::App => "app".into(),
            Identity::Installation(id) => format!("installation:{id}"),
        }
    }
}

/// The `Authorization` header of one request and whose it is.
pub struct Credential {
    header: Option<HeaderValue>,
    identity: Identity,
    /// The installation token itself, to drop exactly this one when GitHub rejects it.
    token: Option<SecretString>,
}

impl Credential {
    pub fn anonymous() -> Credential {
        Credential {
            header: None,
            identity: Identity::Anonymous,
            token: None,
        }
    }

    /// `Authorization: Bearer <token>`, marked sensitive.
    pub fn bearer(token: &SecretString, identity: Identity) -> Result<Credential, GithubError> {
        let mut header = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
            .map_err(|_| {
                GithubError::Config(format!(
                    "the {} credential holds characters not allowed in an HTTP header",
                    identity.budget_key()
                ))
            })?;
        header.set_sensitive(true);
        Ok(Credential {
            header: Some(header),
            identity,
            token: None,
        })
    }

    pub fn identity(&self) -> Identity {
        self.identity
    }

    /// Stable, non-secret key of the token this request spends (see [`Identity::budget_key`]).
    pub fn budget_key(&self) -> String {
        self.identity.budget_key()
    }

    pub fn header(&self) -> Option<&HeaderValue> {
        self.header.as_ref()
    }

    /// A rejection of this credential (401) is worth one retry with a new one.
    pub fn renewable(&self) -> bool {
        matches!(self.identity, Identity::Installation(_))
    }
}

/// How this process authenticates, chosen once from the configuration.
#[derive(Clone)]
pub enum Auth {
    Anonymous,
    Token(SecretString),
    App(Arc<AppAuth>),
}

impl Auth {
    pub fn from_settings(settings: &GithubSettings) -> Result<Auth, GithubError> {
        if let Some((app_id, app)) = settings.app() {
            let pem = app
                .private_key_pem()
                .map_err(|e| GithubError::Config(e.to_string()))?;
            let key = AppKey::parse(&pem)
                .map_err(|problem| GithubError::Config(format!("github.app: {problem}")))?;
            return Ok(Auth::App(Arc::new(AppAuth::new(
                app_id,
                key,
                &app.installation_ids,
                app.token_refresh_margin,
            ))));
        }
        Ok(match &settings.token {
            Some(token) => Auth::Token(token.clone()),
            None => Auth::Anonymous,
        })
    }

    /// The credential for a request to `path` (the API path, without the base URL).
    pub async fn credential(
        &self,
        client: &GithubClient,
        path: &str,
        pinned: Option<u64>,
    ) -> Result<Credential, GithubError> {
        let app = match self {
            Auth::Anonymous => return Ok(Credential::anonymous()),
            Auth::Token(token) => return Credential::bearer(token, Identity::Pat),
            Auth::App(app) => app,
        };
        let token = match (pinned, Route::of(path)) {
            (_, Route::App) => return app.jwt_credential(),
            (Some(id), _) => app.token(client, id).await?,
            (None, Route::Owner { owner, lookup }) => {
                app.token_for_owner(client, &owner, &lookup).await?
            }
            (None, Route::Unscoped) => {
                return Err(GithubError::App(format!(
                    "{} names no account, so no installation token fits it",
                    path_only(path)
                )));
            }
        };
        let installation = token.installation;
        let mut credential =
            Credential::bearer(&token.token, Identity::Installation(installation))?;
        credential.token = Some(token.token);
        Ok(credential)
    }

    /// GitHub answered 401 to `credential`: forget that token so the next one is new.
    pub async fn rejected(&self, credential: &Credential) {
        if let (Auth::App(app), Identity::Installation(id), Some(token)) =
            (self, credential.identity, &credential.token)
        {
            tracing::info!(
                installation = id,
                "GitHub rejected an installation token; minting a new one"
            );
            app.invalidate(id, token).await;
        }
    }

    /// The App side, when authenticating as an App.
    pub fn app(&self) -> Option<&Arc<AppAuth>> {
        match self {
            Auth::App(app) => Some(app),
            _ => None,
        }
    }
}

/// What a path says about the account it concerns.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// `/app/…`: the App itself.
    App,
    /// About an account's resources; `lookup` finds the installation on it.
    Owner { owner: String, lookup: String },
    /// Neither (`/rate_limit`, `/installation/repositories` without a pinned installation).
    Unscoped,
}

impl Route {
    fn of(path: &str) -> Route {
        let segments: Vec<&str> = path_only(path)
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        match segments.as_slice() {
            ["app", ..] => Route::App,
            ["repos", owner, repo, ..] => Route::Owner {
                owner: owner.to_string(),
                lookup: format!("/repos/{owner}/{repo}/installation"),
            },
            ["orgs", org, ..] => Route::Owner {
                owner: org.to_string(),
                lookup: format!("/orgs/{org}/installation"),
            },
            ["users", user, ..] => Route::Owner {
                owner: user.to_string(),
                lookup: format!("/users/{user}/installation"),
            },
            _ => Route::Unscoped,
        }
    }
}

fn path_only(path: &str) -> &str {
    path.split_once('?').map_or(path, |(p, _)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_account() {
        assert_eq!(Route::of("/app/installations?per_page=100"), Route::App);
        assert_eq!(
            Route::of("/repos/Octo/hello/contents/README.md?ref=main"),
            Route::Owner {
                owner: "Octo".into(),
                lookup: "/repos/Octo/hello/installation".into()
            }
        );
        assert_eq!(
            Route::of("/orgs/acme/repos?per_page=100"),
            Route::Owner {
                owner: "acme".into(),
                lookup: "/orgs/acme/installation".into()
            }
        );
        assert_eq!(
            Route::of("/users/octocat/repos"),
            Route::Owner {
                owner: "octocat".into(),
                lookup: "/users/octocat/installation".into()
            }
        );
        assert_eq!(Route::of("/rate_limit"), Route::Unscoped);
        assert_eq!(
            Route::of("/installation/repositories?per_page=100"),
            Route::Unscoped
        );
    }

    #[test]
    fn budget_keys_are_stable_and_name_no_secret() {
        assert_eq!(Identity::Pat.budget_key(), "pat");
        assert_eq!(Identity::App.budget_key(), "app");
        assert_eq!(Identity::Installation(7).budget_key(), "installation:7");
        let c = Credential::bearer(&SecretString::from("ghp_secret"), Identity::Pat).unwrap();
        assert!(c.header().unwrap().is_sensitive());
        assert_eq!(c.budget_key(), "pat");
        assert!(!c.renewable());
    }
}
