//! GitHub App behaviour of the double: JWTs, installations and installation tokens.
//!
//! Configured with an App id and the App's public key ([`GithubDouble::configure_app`]),
//! the double verifies the JWT of every `/app/…` and installation-lookup request (RS256
//! signature, `iss`, `exp` in the future and at most ten minutes ahead; 401 otherwise, as
//! GitHub), issues installation tokens with a configurable lifetime, answers 401 for an
//! unknown or expired token on every other route, and scopes each installation to its
//! repositories: a token of one installation reading another's repository gets 404, like
//! on GitHub. Without [`GithubDouble::configure_app`] none of this applies.
//!
//! Not modelled: installation permissions (every token may do everything on its
//! repositories), and listings of an account's repositories are not narrowed to an
//! installation's selection.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::GithubDouble;
use crate::api::{Out, Req, paginate_with};
use crate::render;
use crate::state::{State, epoch_secs, now_iso, object_id};

/// The App side of the double's state.
#[derive(Debug, Default)]
pub struct AppState {
    config: Option<AppConfig>,
    installations: BTreeMap<u64, Installation>,
    /// Issued installation tokens: token → (installation, expiry in Unix seconds).
    tokens: BTreeMap<String, (u64, u64)>,
    issued: u64,
    /// Lifetime of new installation tokens; GitHub's hour when unset.
    token_lifetime: Option<Duration>,
}

#[derive(Debug)]
struct AppConfig {
    id: u64,
    /// DER `RSAPublicKey`.
    public_key: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Installation {
    id: u64,
    /// Login of the account the App is installed on.
    account: String,
    /// Lower-cased `owner/name` of the selected repositories; `None` is all of them.
    repos: Option<BTreeSet<String>>,
    created_at: String,
}

impl Installation {
    fn covers(&self, owner: &str, name: &str) -> bool {
        self.account.eq_ignore_ascii_case(owner)
            && self
                .repos
                .as_ref()
                .is_none_or(|r| r.contains(&format!("{owner}/{name}").to_lowercase()))
    }
}

impl GithubDouble {
    /// Turns the GitHub App flow on: JWTs must be signed by the key whose public half is
    /// `public_key_pem` (`-----BEGIN RSA PUBLIC KEY-----`) and name `app_id`. Installation
    /// tokens live an hour unless [`GithubDouble::set_installation_token_lifetime`] says
    /// otherwise.
    pub fn configure_app(&self, app_id: u64, public_key_pem: &str) -> Result<(), String> {
        let parsed = pem::parse(public_key_pem.trim()).map_err(|e| e.to_string())?;
        if parsed.tag() != "RSA PUBLIC KEY" {
            return Err(format!(
                "expected an RSA PUBLIC KEY PEM, got {:?}",
                parsed.tag()
            ));
        }
        self.lock().app.config = Some(AppConfig {
            id: app_id,
            public_key: parsed.contents().to_vec(),
        });
        Ok(())
    }

    /// How long installation tokens issued from now on live (GitHub: one hour).
    pub fn set_installation_token_lifetime(&self, lifetime: Duration) {
        self.lock().app.token_lifetime = Some(lifetime);
    }

    /// Installs the App on `account` (created as an organization when missing) for the
    /// named repositories, or all of the account's repositories with `None`. Returns the
    /// installation id.
    pub fn add_installation(&self, account: &str, repos: Option<&[&str]>) -> u64 {
        let mut st = self.lock();
        if st.account(account).is_none() {
            st.add_account(account, true);
        }
        let login = st
            .account(account)
            .map(|a| a.login.clone())
            .unwrap_or_default();
        let id = st.fresh_id();
        let repos = repos.map(|names| {
            names
                .iter()
                .map(|n| format!("{login}/{n}").to_lowercase())
                .collect()
        });
        st.app.installations.insert(
            id,
            Installation {
                id,
                account: login,
                repos,
                created_at: now_iso(),
            },
        );
        id
    }

    /// Uninstalls the App from an installation: it and its tokens are gone (404 and 401).
    pub fn remove_installation(&self, installation: u64) {
        let mut st = self.lock();
        st.app.installations.remove(&installation);
        st.app.tokens.retain(|_, (id, _)| *id != installation);
    }

    /// Installation tokens issued so far.
    pub fn installation_tokens_issued(&self) -> u64 {
        self.lock().app.issued
    }

    /// Revokes every installation token issued so far (as GitHub does when an App's
    /// installation is suspended or a token is revoked): they answer 401 from now on.
    pub fn revoke_installation_tokens(&self) {
        self.lock().app.tokens.clear();
    }
}

/// Signs `claims` as an RS256 JWT with a PEM RSA private key (`BEGIN RSA PRIVATE KEY`), for
/// tests that speak to the double as an App without the client under test.
pub fn sign_jwt(private_key_pem: &str, claims: &Value) -> Result<String, String> {
    let key = pem::parse(private_key_pem.trim()).map_err(|e| e.to_string())?;
    let pair = ring::signature::RsaKeyPair::from_der(key.contents()).map_err(|e| e.to_string())?;
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut sig = vec![0; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        message.as_bytes(),
        &mut sig,
    )
    .map_err(|e| e.to_string())?;
    Ok(format!("{message}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

/// What a request may do, decided before routing.
pub enum Verdict {
    /// Not an App double: the plain token check applies.
    NotApp,
    Allowed,
    Refused(Out),
}

/// Authenticates a request when the App flow is on: a valid JWT on the App's routes, a
/// live installation token (or the configured personal token) elsewhere, and an
/// installation token only on its own repositories.
pub fn authenticate(st: &State, req: &Req) -> Verdict {
    let Some(config) = &st.app.config else {
        return Verdict::NotApp;
    };
    let bearer = req
        .authorization
        .as_deref()
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
                .or_else(|| h.strip_prefix("token "))
        })
        .map(str::trim);
    let segs = segments(&req.path);
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    if needs_jwt(&s) {
        return match bearer.map(|jwt| verify_jwt(config, jwt)) {
            Some(Ok(())) => Verdict::Allowed,
            Some(Err(message)) => Verdict::Refused(Out::error(401, &message)),
            None => Verdict::Refused(Out::error(401, "A JSON web token could not be decoded")),
        };
    }
    let Some(token) = bearer else {
        return Verdict::Refused(Out::error(401, "Requires authentication"));
    };
    if st.token.as_deref() == Some(token) {
        return Verdict::Allowed;
    }
    let Some(&(installation, expires)) = st.app.tokens.get(token) else {
        return Verdict::Refused(Out::error(401, "Bad credentials"));
    };
    if epoch_secs() >= expires {
        return Verdict::Refused(Out::error(401, "Bad credentials"));
    }
    let Some(inst) = st.app.installations.get(&installation) else {
        return Verdict::Refused(Out::error(401, "Bad credentials"));
    };
    match s.as_slice() {
        ["repos", owner, name, ..] if !inst.covers(owner, name) => {
            Verdict::Refused(Out::not_found())
        }
        _ => Verdict::Allowed,
    }
}

fn segments(path: &str) -> Vec<String> {
    path.trim_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

/// The routes GitHub serves to the App itself (JWT), not to an installation.
fn needs_jwt(s: &[&str]) -> bool {
    matches!(
        s,
        ["app", ..]
            | ["repos", _, _, "installation"]
            | ["orgs", _, "installation"]
            | ["users", _, "installation"]
    )
}

/// Whether the double serves this path as an App route (see [`route`]).
pub fn is_app_route(s: &[&str]) -> bool {
    needs_jwt(s) || matches!(s, ["installation", "repositories"])
}

fn verify_jwt(config: &AppConfig, jwt: &str) -> Result<(), String> {
    let undecodable = || "A JSON web token could not be decoded".to_string();
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, sig] = parts.as_slice() else {
        return Err(undecodable());
    };
    let decode = |p: &str| URL_SAFE_NO_PAD.decode(p).map_err(|_| undecodable());
    let header: Value = serde_json::from_slice(&decode(header)?).map_err(|_| undecodable())?;
    if header["alg"] != "RS256" {
        return Err(undecodable());
    }
    let public = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        &config.public_key,
    );
    let signed = format!("{}.{}", parts[0], parts[1]);
    public
        .verify(signed.as_bytes(), &decode(sig)?)
        .map_err(|_| {
            "A JSON web token could not be decoded: signature verification failed".to_string()
        })?;
    let claims: Value = serde_json::from_slice(&decode(claims)?).map_err(|_| undecodable())?;
    let iss = match &claims["iss"] {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    if iss != Some(config.id) {
        return Err("'Issuer' claim ('iss') must be the App's id".into());
    }
    let now = epoch_secs() as i64;
    let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
        return Err(undecodable());
    };
    if exp <= now {
        return Err("'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires".into());
    }
    if exp > now + 600 + 30 || exp - iat > 600 {
        return Err("'Expiration time' claim ('exp') is too far in the future".into());
    }
    if iat > now + 30 {
        return Err("'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued".into());
    }
    Ok(())
}

/// Serves the App routes; `s` are the decoded path segments.
pub fn route(st: &mut State, req: &Req, m: &str, s: &[&str]) -> Out {
    match (m, s) {
        ("GET", ["app"]) => Out::json(200, app_json(st, &req.base)),
        ("GET", ["app", "installations"]) => {
            let items: Vec<Installation> = st.app.installations.values().cloned().collect();
            paginate_with(req, items, |i| installation_json(st, &req.base, &i))
        }
        ("GET", ["app", "installations", id]) => match installation(st, id) {
            Some(i) => Out::json(200, installation_json(st, &req.base, &i)),
            None => Out::not_found(),
        },
        ("POST", ["app", "installations", id, "access_tokens"]) => match installation(st, id) {
            Some(i) => issue_token(st, &i),
            None => Out::not_found(),
        },
        ("GET", ["repos", owner, name, "installation"]) => {
            let found = st.repo(owner, name).and_then(|_| {
                st.app
                    .installations
                    .values()
                    .find(|i| i.covers(owner, name))
                    .cloned()
            });
            match found {
                Some(i) => Out::json(200, installation_json(st, &req.base, &i)),
                None => Out::not_found(),
            }
        }
        ("GET", ["orgs" | "users", account, "installation"]) => {
            let found = st
                .app
                .installations
                .values()
                .find(|i| i.account.eq_ignore_ascii_case(account))
                .cloned();
            match found {
                Some(i) => Out::json(200, installation_json(st, &req.base, &i)),
                None => Out::not_found(),
            }
        }
        ("GET", ["installation", "repositories"]) => installation_repositories(st, req),
        _ => Out::not_found(),
    }
}

fn installation(st: &State, id: &str) -> Option<Installation> {
    let id: u64 = id.parse().ok()?;
    st.app.installations.get(&id).cloned()
}

fn issue_token(st: &mut State, i: &Installation) -> Out {
    let lifetime = st.app.token_lifetime.unwrap_or(Duration::from_secs(3600));
    st.app.issued += 1;
    let token = format!(
        "ghs_{}",
        &object_id(&[
            "installation-token",
            &i.id.to_string(),
            &st.app.issued.to_string(),
            &now_iso()
        ])[..36]
    );
    let expires = epoch_secs() + lifetime.as_secs().max(1);
    st.app.tokens.insert(token.clone(), (i.id, expires));
    let expires_at = time::OffsetDateTime::from_unix_timestamp(expires as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    Out::json(
        201,
        json!({
            "token": token,
            "expires_at": expires_at,
            "permissions": permissions(),
            "repository_selection": selection(i),
        }),
    )
}

/// The installation of the token the request carries.
fn installation_repositories(st: &State, req: &Req) -> Out {
    let token = req
        .authorization
        .as_deref()
        .and_then(|h| h.split_whitespace().nth(1))
        .unwrap_or_default();
    let Some(inst) = st
        .app
        .tokens
        .get(token)
        .and_then(|(id, _)| st.app.installations.get(id))
    else {
        return Out::error(
            403,
            "You must authenticate with an installation access token in order to list repositories for an installation.",
        );
    };
    let repos: Vec<_> = st
        .repos
        .values()
        .filter(|r| inst.covers(&r.owner, &r.name))
        .collect();
    let total = repos.len();
    // The listing's items are `repository`, which (unlike `full-repository`) requires
    // `has_downloads`.
    let mut out = paginate_with(req, repos, |r| {
        let mut v = render::repo_full(&req.base, r, st.account(&r.owner));
        v["has_downloads"] = json!(true);
        v
    });
    if let Some(items) = out.body.take() {
        out.body = Some(json!({
            "total_count": total,
            "repository_selection": selection(inst),
            "repositories": items,
        }));
    }
    out
}

fn selection(i: &Installation) -> &'static str {
    if i.repos.is_some() { "selected" } else { "all" }
}

fn permissions() -> Value {
    json!({
        "metadata": "read",
        "contents": "read",
        "administration": "read",
        "issues": "write",
        "checks": "read",
        "statuses": "read",
        "pull_requests": "read",
    })
}

fn app_id(st: &State) -> u64 {
    st.app.config.as_ref().map_or(0, |c| c.id)
}

fn app_json(st: &State, base: &str) -> Value {
    let id = app_id(st);
    json!({
        "id": id,
        "slug": "repo-guardian",
        "node_id": format!("A_{id}"),
        "client_id": format!("Iv1.{id:016x}"),
        "owner": render::simple_user(base, "repo-guardian-owner", 1, "Organization"),
        "name": "Repo Guardian",
        "description": "The GitHub double's App",
        "external_url": base,
        "html_url": format!("{base}/apps/repo-guardian"),
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "permissions": permissions(),
        "events": ["push", "repository", "branch_protection_rule", "installation", "installation_repositories", "pull_request", "check_suite"],
        "installations_count": st.app.installations.len(),
    })
}

fn installation_json(st: &State, base: &str, i: &Installation) -> Value {
    let (account_id, kind) = st.account(&i.account).map_or((0, "Organization"), |a| {
        (a.id, if a.is_org { "Organization" } else { "User" })
    });
    // GitHub's description types the account of listed installations as *all of* a user
    // and an enterprise, so the account carries the enterprise's required fields too.
    let mut account = render::simple_user(base, &i.account, account_id, kind);
    account["name"] = json!(i.account);
    account["slug"] = json!(i.account.to_lowercase());
    account["created_at"] = json!(i.created_at);
    account["updated_at"] = json!(i.created_at);
    json!({
        "id": i.id,
        "account": account,
        "repository_selection": selection(i),
        "access_tokens_url": format!("{base}/app/installations/{}/access_tokens", i.id),
        "repositories_url": format!("{base}/installation/repositories"),
        "html_url": format!("{base}/organizations/{}/settings/installations/{}", i.account, i.id),
        "app_id": app_id(st),
        "app_slug": "repo-guardian",
        "target_id": account_id,
        "target_type": kind,
        "permissions": permissions(),
        "events": ["push", "repository", "branch_protection_rule", "installation", "installation_repositories", "pull_request", "check_suite"],
        "created_at": i.created_at,
        "updated_at": i.created_at,
        "single_file_name": null,
        "has_multiple_single_files": false,
        "single_file_paths": [],
        "suspended_by": null,
        "suspended_at": null,
    })
}
