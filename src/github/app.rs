//! GitHub App authentication: the App's key, its JWTs, and installation tokens cached
//! fleet-wide.
//!
//! The App signs a short JWT (RS256, `iss` = the App id) with its private key; with it the
//! fleet asks GitHub for an *installation token* per installation (one hour of life), and
//! every request about an account's repositories carries the token of the installation on
//! that account. Tokens are kept in memory per worker and shared with the fleet through
//! the `guardian_tokens` bucket, **encrypted** (AES-256-GCM) with a key derived from the
//! App's private key: a process that can read the bucket but does not hold the private key
//! cannot use what it reads, and rotating the App key makes old entries unreadable (they
//! are then simply minted again). A token is replaced when less than
//! `github.app.token_refresh_margin` of its life is left, and a token GitHub rejects
//! (401) is dropped from both caches so the request is retried once with a new one.
//!
//! What is not here: choosing which credential a request needs (`super::auth`), and the
//! HTTP transport (`super::GithubClient`). Neither the key nor a token is ever logged, put
//! in an error, or recorded; the bucket and in-memory keys hold installation ids only.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::kv;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{HeaderMap, Method, StatusCode};
use ring::rand::SecureRandom as _;
use ring::{aead, hkdf, rand, signature};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

use super::auth::{Credential, Identity};
use super::{GithubClient, GithubError};

/// How long a JWT is valid after its `iat`: GitHub accepts at most ten minutes.
const JWT_LIFETIME_SECS: i64 = 600;
/// `iat` is set this far in the past, against clock drift between us and GitHub.
const JWT_BACKDATE_SECS: i64 = 60;

/// The App's private key: signs JWTs and seals installation tokens for the shared bucket.
pub struct AppKey {
    pair: signature::RsaKeyPair,
    sealing: aead::LessSafeKey,
}

impl std::fmt::Debug for AppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppKey([REDACTED])")
    }
}

/// `info` of the key derivation: a new meaning of the bucket's entries gets a new label.
const SEALING_LABEL: &[u8] = b"repo-guardian installation tokens v1";

impl AppKey {
    /// Parses the PEM GitHub hands out (`BEGIN RSA PRIVATE KEY`, PKCS#1) or its PKCS#8
    /// form (`BEGIN PRIVATE KEY`). The error says what is wrong, never what the key holds.
    pub fn parse(pem_text: &SecretString) -> Result<AppKey, String> {
        let parsed = pem::parse(pem_text.expose_secret().trim()).map_err(|e| {
            format!(
                "not a PEM private key ({e}); expected the .pem file GitHub generated for \
                 the App, starting with -----BEGIN RSA PRIVATE KEY-----"
            )
        })?;
        let pair = match parsed.tag() {
            "RSA PRIVATE KEY" => signature::RsaKeyPair::from_der(parsed.contents()),
            "PRIVATE KEY" => signature::RsaKeyPair::from_pkcs8(parsed.contents()),
            other => {
                return Err(format!(
                    "the PEM holds a {other:?} block; expected the App's RSA private key \
                     (-----BEGIN RSA PRIVATE KEY----- or -----BEGIN PRIVATE KEY-----)"
                ));
            }
        }
        .map_err(|e| format!("not a usable RSA private key: {e}"))?;
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"repo-guardian");
        let prk = salt.extract(parsed.contents());
        let okm = prk
            .expand(&[SEALING_LABEL], &aead::AES_256_GCM)
            .map_err(|_| "cannot derive the token-sealing key".to_string())?;
        let sealing = aead::LessSafeKey::new(aead::UnboundKey::from(okm));
        Ok(AppKey { pair, sealing })
    }

    /// A JWT for the App: `iat` a minute in the past, `exp` ten minutes after `iat`.
    pub fn jwt(&self, app_id: u64, now: i64) -> Result<SecretString, GithubError> {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = JwtClaims::new(app_id, now);
        let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let message = format!("{header}.{claims}");
        let mut sig = vec![0; self.pair.public().modulus_len()];
        self.pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &rand::SystemRandom::new(),
                message.as_bytes(),
                &mut sig,
            )
            .map_err(|_| GithubError::App("signing the App's JWT failed".into()))?;
        Ok(SecretString::from(format!(
            "{message}.{}",
            URL_SAFE_NO_PAD.encode(sig)
        )))
    }

    /// The public half, DER `RSAPublicKey` (what a verifier needs).
    pub fn public_key_der(&self) -> Vec<u8> {
        self.pair.public().as_ref().to_vec()
    }

    /// Encrypts `plain` bound to `context` (the bucket key): `nonce ‖ ciphertext ‖ tag`.
    fn seal(&self, context: &str, plain: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; aead::NONCE_LEN];
        rand::SystemRandom::new().fill(&mut nonce).ok()?;
        let mut data = plain.to_vec();
        self.sealing
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(context.as_bytes()),
                &mut data,
            )
            .ok()?;
        let mut out = nonce.to_vec();
        out.extend(data);
        Some(out)
    }

    /// Decrypts what [`AppKey::seal`] made for the same `context` with the same key;
    /// `None` for anything else (another App key, another key's entry, tampering).
    fn open(&self, context: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < aead::NONCE_LEN {
            return None;
        }
        let (nonce, data) = sealed.split_at(aead::NONCE_LEN);
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut data = data.to_vec();
        let plain = self
            .sealing
            .open_in_place(nonce, aead::Aad::from(context.as_bytes()), &mut data)
            .ok()?;
        Some(plain.to_vec())
    }
}

/// The claims GitHub reads from an App JWT.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct JwtClaims {
    pub iat: i64,
    pub exp: i64,
    pub iss: u64,
}

impl JwtClaims {
    pub fn new(app_id: u64, now: i64) -> JwtClaims {
        let iat = now - JWT_BACKDATE_SECS;
        JwtClaims {
            iat,
            exp: iat + JWT_LIFETIME_SECS,
            iss: app_id,
        }
    }
}

/// An installation token and when GitHub said it expires (Unix seconds).
#[derive(Clone)]
pub struct InstallationToken {
    pub installation: u64,
    pub token: SecretString,
    pub expires_at: i64,
}

impl InstallationToken {
    /// Good for a new request: more than `margin` of its life is left.
    pub fn fresh(&self, now: i64, margin: Duration) -> bool {
        self.expires_at - now > i64::try_from(margin.as_secs()).unwrap_or(i64::MAX)
    }

    fn same(&self, other: &InstallationToken) -> bool {
        self.installation == other.installation
            && self.token.expose_secret() == other.token.expose_secret()
    }
}

/// An entry of the `guardian_tokens` bucket: the expiry in the clear, the token sealed.
#[derive(Serialize, Deserialize)]
struct StoredToken {
    v: u32,
    expires_at: i64,
    /// base64 of `nonce ‖ AES-256-GCM(token) ‖ tag`, bound to the entry's key.
    sealed: String,
}

/// `POST /app/installations/{id}/access_tokens` and the installation lookups.
#[derive(Deserialize)]
struct AccessToken {
    token: String,
    expires_at: String,
}

/// An installation as `GET /app/installations` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct Installation {
    pub id: u64,
    pub account: Option<Account>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Account {
    pub login: String,
}

/// The App side of authentication, shared by every request of one worker.
pub struct AppAuth {
    app_id: u64,
    key: AppKey,
    /// Installations the fleet may act for; empty means all.
    allowed: BTreeSet<u64>,
    margin: Duration,
    /// Tokens this worker holds, by installation id.
    tokens: Mutex<HashMap<u64, InstallationToken>>,
    /// One mint at a time per installation in this worker, so a burst of requests that all
    /// find the token stale asks GitHub once.
    minting: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>>,
    /// Installation id of each account (lower-cased login) looked up so far.
    owners: Mutex<HashMap<String, u64>>,
    /// The fleet's shared cache (`guardian_tokens`); `None` keeps tokens per worker.
    store: Mutex<Option<kv::Store>>,
    /// The last JWT signed and its `exp`, reused while more than a minute is left.
    jwt: Mutex<Option<(SecretString, i64)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl AppAuth {
    pub fn new(app_id: u64, key: AppKey, allowed: &[u64], margin: Duration) -> AppAuth {
        AppAuth {
            app_id,
            key,
            allowed: allowed.iter().copied().collect(),
            margin,
            tokens: Mutex::default(),
            minting: Mutex::default(),
            owners: Mutex::default(),
            store: Mutex::new(None),
            jwt: Mutex::new(None),
        }
    }

    /// Shares tokens with the fleet through this bucket from now on.
    pub fn set_store(&self, store: kv::Store) {
        *lock(&self.store) = Some(store);
    }

    /// The credential of requests to `/app/…`: a freshly signed JWT.
    pub fn jwt_credential(&self) -> Result<Credential, GithubError> {
        let now = now_secs();
        let mut held = lock(&self.jwt);
        let jwt = match held.as_ref() {
            Some((jwt, exp)) if exp - now > 60 => jwt.clone(),
            _ => {
                let jwt = self.key.jwt(self.app_id, now)?;
                *held = Some((jwt.clone(), JwtClaims::new(self.app_id, now).exp));
                jwt
            }
        };
        Credential::bearer(&jwt, Identity::App)
    }

    /// Whether the fleet may act for `installation` (`github.app.installation_ids`).
    pub fn allows(&self, installation: u64) -> bool {
        self.allowed.is_empty() || self.allowed.contains(&installation)
    }

    fn not_allowed(&self, installation: u64, what: &str) -> GithubError {
        GithubError::App(format!(
            "{what} belongs to installation {installation}, which is not in \
             github.app.installation_ids"
        ))
    }

    /// The installation on the account of `owner`, looked up once per worker with
    /// `lookup` (`/repos/{o}/{r}/installation`, `/orgs/{o}/installation` or
    /// `/users/{u}/installation`).
    pub async fn installation_of(
        &self,
        client: &GithubClient,
        owner: &str,
        lookup: &str,
    ) -> Result<u64, GithubError> {
        let login = owner.to_ascii_lowercase();
        let known = lock(&self.owners).get(&login).copied();
        let id = match known {
            Some(id) => id,
            None => {
                let response = self.call(client, Method::GET, lookup).await?;
                if response.status == StatusCode::NOT_FOUND {
                    return Err(GithubError::App(format!(
                        "the GitHub App is not installed on the account {owner} \
                         (GET {lookup} answered 404): install it there or leave {owner} out"
                    )));
                }
                let found: Installation = client.decode_ok(&Method::GET, lookup, &response)?;
                lock(&self.owners).insert(login, found.id);
                found.id
            }
        };
        if !self.allows(id) {
            return Err(self.not_allowed(id, &format!("the account {owner}")));
        }
        Ok(id)
    }

    /// A token of the installation on `owner`. An installation that no longer exists (the
    /// App was uninstalled and installed again: a new id) is looked up once more.
    pub async fn token_for_owner(
        &self,
        client: &GithubClient,
        owner: &str,
        lookup: &str,
    ) -> Result<InstallationToken, GithubError> {
        let installation = self.installation_of(client, owner, lookup).await?;
        match self.token(client, installation).await {
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {
                tracing::info!(
                    installation,
                    "installation gone; looking its account up again"
                );
                lock(&self.owners).retain(|_, id| *id != installation);
                let installation = self.installation_of(client, owner, lookup).await?;
                self.token(client, installation).await
            }
            other => other,
        }
    }

    /// Remembers the installation of an account (from the installations listing), which
    /// saves the lookup.
    pub fn remember_owner(&self, owner: &str, installation: u64) {
        lock(&self.owners).insert(owner.to_ascii_lowercase(), installation);
    }

    /// A token of `installation` with more than the margin left: this worker's, the
    /// fleet's, or a new one.
    pub async fn token(
        &self,
        client: &GithubClient,
        installation: u64,
    ) -> Result<InstallationToken, GithubError> {
        if !self.allows(installation) {
            return Err(self.not_allowed(installation, "the request"));
        }
        if let Some(t) = self.held(installation) {
            return Ok(t);
        }
        let gate = lock(&self.minting).entry(installation).or_default().clone();
        let _minting = gate.lock().await;
        if let Some(t) = self.held(installation) {
            return Ok(t);
        }
        if let Some(t) = self.shared(installation).await {
            lock(&self.tokens).insert(installation, t.clone());
            return Ok(t);
        }
        let t = self.mint(client, installation).await?;
        lock(&self.tokens).insert(installation, t.clone());
        self.share(&t).await;
        Ok(t)
    }

    fn held(&self, installation: u64) -> Option<InstallationToken> {
        lock(&self.tokens)
            .get(&installation)
            .filter(|t| t.fresh(now_secs(), self.margin))
            .cloned()
    }

    /// GitHub rejected `token`: forget it here and in the bucket (unless another worker
    /// already replaced it there), so the next request gets a new one.
    pub async fn invalidate(&self, installation: u64, token: &SecretString) {
        let rejected = InstallationToken {
            installation,
            token: token.clone(),
            expires_at: 0,
        };
        {
            let mut tokens = lock(&self.tokens);
            if tokens.get(&installation).is_some_and(|t| t.same(&rejected)) {
                tokens.remove(&installation);
            }
        }
        let Some(store) = lock(&self.store).clone() else {
            return;
        };
        let key = store_key(installation);
        if let Ok(Some(bytes)) = store.get(&key).await
            && self
                .unseal(installation, &bytes)
                .is_none_or(|t| t.same(&rejected))
            && let Err(e) = store.delete(&key).await
        {
            tracing::debug!(error.message = %e, installation, "dropping a rejected installation token from the bucket failed");
        }
    }

    async fn shared(&self, installation: u64) -> Option<InstallationToken> {
        let store = lock(&self.store).clone()?;
        let bytes = match store.get(store_key(installation)).await {
            Ok(found) => found?,
            Err(e) => {
                tracing::debug!(error.message = %e, installation, "reading the token bucket failed");
                return None;
            }
        };
        self.unseal(installation, &bytes)
            .filter(|t| t.fresh(now_secs(), self.margin))
    }

    fn unseal(&self, installation: u64, bytes: &[u8]) -> Option<InstallationToken> {
        let stored: StoredToken = serde_json::from_slice(bytes)
            .ok()
            .filter(|s: &StoredToken| s.v == 1)?;
        let sealed = STANDARD.decode(stored.sealed).ok()?;
        let context = sealing_context(installation, stored.expires_at);
        let plain = self.key.open(&context, &sealed)?;
        Some(InstallationToken {
            installation,
            token: SecretString::from(String::from_utf8(plain).ok()?),
            expires_at: stored.expires_at,
        })
    }

    async fn share(&self, t: &InstallationToken) {
        let Some(store) = lock(&self.store).clone() else {
            return;
        };
        let context = sealing_context(t.installation, t.expires_at);
        let Some(sealed) = self.key.seal(&context, t.token.expose_secret().as_bytes()) else {
            return;
        };
        let entry = StoredToken {
            v: 1,
            expires_at: t.expires_at,
            sealed: STANDARD.encode(sealed),
        };
        let Ok(bytes) = serde_json::to_vec(&entry) else {
            return;
        };
        if let Err(e) = store.put(store_key(t.installation), bytes.into()).await {
            tracing::debug!(error.message = %e, installation = t.installation, "sharing an installation token failed; other workers mint their own");
        }
    }

    async fn mint(
        &self,
        client: &GithubClient,
        installation: u64,
    ) -> Result<InstallationToken, GithubError> {
        let path = format!("/app/installations/{installation}/access_tokens");
        let response = self.call(client, Method::POST, &path).await?;
        if !response.status.is_success() {
            return Err(client.status_error(Method::POST, &path, &response));
        }
        // Not the decoder's message: it may quote a value, and this body holds the token.
        let minted: AccessToken = serde_json::from_str(&response.body).map_err(|_| {
            client.decode_error(
                &Method::POST,
                &path,
                "not an installation access token (`token`, `expires_at`)",
            )
        })?;
        let expires_at = time::OffsetDateTime::parse(
            &minted.expires_at,
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(|e| client.decode_error(&Method::POST, &path, &format!("expires_at: {e}")))?
        .unix_timestamp();
        tracing::info!(
            installation,
            expires_in_secs = expires_at - now_secs(),
            "minted an installation token"
        );
        Ok(InstallationToken {
            installation,
            token: SecretString::from(minted.token),
            expires_at,
        })
    }

    /// A request authenticated as the App itself.
    async fn call(
        &self,
        client: &GithubClient,
        method: Method,
        path: &str,
    ) -> Result<super::RawResponse, GithubError> {
        let url = client.url(path)?;
        let body = (method == Method::POST).then(|| serde_json::json!({}));
        let response = client
            .send_as(
                &self.jwt_credential()?,
                method,
                &url,
                HeaderMap::new(),
                body.as_ref(),
            )
            .await?;
        crate::telemetry::metrics().record_github_request(
            response.status.as_u16(),
            crate::telemetry::CacheOutcome::Miss,
        );
        Ok(response)
    }
}

fn store_key(installation: u64) -> String {
    format!("installation.{installation}")
}

/// What a sealed token is bound to: its entry and its expiry, so neither can be swapped.
fn sealing_context(installation: u64, expires_at: i64) -> String {
    format!("{}:{expires_at}", store_key(installation))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 2048-bit RSA key made for these tests only; it signs nothing real.
    pub const TEST_KEY: &str = include_str!("../../tests/fixtures/github-app-test-key.pem");

    pub fn test_key() -> AppKey {
        AppKey::parse(&SecretString::from(TEST_KEY)).expect("test key parses")
    }

    /// A client authenticating as the test App against `double`.
    fn app_client(double: &github_double::GithubDouble, extra: &[(&str, &str)]) -> GithubClient {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut env = vec![
            ("GUARDIAN__GITHUB__API_URL".to_string(), double.url()),
            (
                "GUARDIAN__GITHUB__APP__APP_ID".to_string(),
                "42".to_string(),
            ),
            (
                "GUARDIAN__GITHUB__APP__PRIVATE_KEY".to_string(),
                TEST_KEY.to_string(),
            ),
        ];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let settings = crate::config::Settings::load_from(None, env).expect("settings");
        GithubClient::new(&settings.github, None).expect("client")
    }

    /// Whether `client` reads `path` (200, not 404).
    async fn reads(client: &GithubClient, path: &str) -> bool {
        let policy = crate::github::CachePolicy::Revalidate;
        client.get(path, policy).await.unwrap().is_some()
    }

    async fn double_with_two_installations() -> (github_double::GithubDouble, u64, u64) {
        let double = github_double::GithubDouble::start().await.unwrap();
        double
            .configure_app(
                42,
                include_str!("../../tests/fixtures/github-app-test-key.pub.pem"),
            )
            .unwrap();
        for (owner, name) in [("acme", "one"), ("acme", "two"), ("octo", "three")] {
            double.add_repo(owner, name, Default::default());
        }
        let a = double.add_installation("acme", None);
        let b = double.add_installation("octo", Some(&["three"]));
        (double, a, b)
    }

    #[tokio::test]
    async fn each_account_is_read_with_its_installation_token() {
        let (double, a, b) = double_with_two_installations().await;
        let client = app_client(&double, &[]);
        for path in ["/repos/acme/one", "/repos/acme/two", "/repos/octo/three"] {
            assert!(reads(&client, path).await, "{path}");
        }
        let key = client
            .budget_key_for("/repos/octo/three/issues")
            .await
            .unwrap();
        assert_eq!(key, format!("installation:{b}"));
        assert_eq!(
            client.budget_key_for("/app/installations").await.unwrap(),
            "app"
        );
        assert_eq!(
            double.installation_tokens_issued(),
            2,
            "one per installation"
        );
        // A token of one installation does not reach the other's repositories.
        let pinned = client.for_installation(b);
        let hidden = pinned
            .get("/repos/acme/one", crate::github::CachePolicy::Revalidate)
            .await
            .unwrap();
        assert!(hidden.is_none());
        // Listing every installation finds every repository.
        let listed = crate::github::listing::list_target(
            &client,
            &crate::domain::Target::Installations,
            &crate::config::Settings::defaults().unwrap().targets,
        )
        .await
        .unwrap();
        let names: Vec<String> = listed.iter().map(|l| l.repo.full_name()).collect();
        assert_eq!(names, ["acme/one", "acme/two", "octo/three"]);
        // An organisation target lists what its installation may access.
        double.add_repo("octo", "not-selected", Default::default());
        let listed = crate::github::listing::list_target(
            &client,
            &crate::domain::Target::Org("octo".into()),
            &crate::config::Settings::defaults().unwrap().targets,
        )
        .await
        .unwrap();
        let names: Vec<String> = listed.iter().map(|l| l.repo.full_name()).collect();
        assert_eq!(names, ["octo/three"]);
        assert!(a != b);
        // No request carried anything but a bearer credential.
        assert!(double.requests().iter().all(|r| {
            r.authorization
                .as_deref()
                .is_some_and(|h| h.starts_with("Bearer "))
        }));
    }

    #[tokio::test]
    async fn a_rejected_token_is_replaced_and_the_request_retried_once() {
        let (double, _, _) = double_with_two_installations().await;
        let client = app_client(&double, &[]);
        let path = "/repos/acme/one";
        assert!(reads(&client, path).await);
        double.revoke_installation_tokens();
        assert!(reads(&client, path).await);
        assert_eq!(double.installation_tokens_issued(), 2);
        let statuses: Vec<u16> = double
            .requests()
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.status)
            .collect();
        assert_eq!(statuses, [200, 401, 200]);
    }

    #[tokio::test]
    async fn an_account_installed_again_is_found_under_its_new_installation() {
        let (double, a, _) = double_with_two_installations().await;
        let client = app_client(&double, &[]);
        assert!(reads(&client, "/repos/acme/one").await);
        double.remove_installation(a);
        let again = double.add_installation("acme", None);
        assert_ne!(again, a);
        assert!(reads(&client, "/repos/acme/one").await);
        assert_eq!(double.installation_tokens_issued(), 2);
    }

    #[tokio::test]
    async fn a_token_close_to_expiry_is_replaced_before_use() {
        let (double, _, _) = double_with_two_installations().await;
        double.set_installation_token_lifetime(Duration::from_secs(10));
        // Ten seconds of life are less than the margin: every request needs a new token.
        let client = app_client(
            &double,
            &[("GUARDIAN__GITHUB__APP__TOKEN_REFRESH_MARGIN", "30s")],
        );
        assert!(reads(&client, "/repos/acme/one").await);
        assert!(reads(&client, "/repos/acme/two").await);
        assert_eq!(double.installation_tokens_issued(), 2);
        let refused = double.requests().iter().filter(|r| r.status == 401).count();
        assert_eq!(refused, 0);
    }

    #[tokio::test]
    async fn an_account_without_the_app_is_named() {
        let (double, _, _) = double_with_two_installations().await;
        double.add_repo("elsewhere", "x", Default::default());
        let client = app_client(&double, &[("GUARDIAN__GITHUB__APP__INSTALLATION_IDS", "1")]);
        let err = client
            .get("/repos/elsewhere/x", crate::github::CachePolicy::Revalidate)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("not installed on the account elsewhere"),
            "{err}"
        );
        assert_eq!(err.retry(), crate::github::Retry::Never);
        let err = client
            .get("/repos/acme/one", crate::github::CachePolicy::Revalidate)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("not in github.app.installation_ids"),
            "{err}"
        );
    }

    #[test]
    fn the_apps_jwt_is_signed_once_and_reused_while_valid() {
        let app = AppAuth::new(42, test_key(), &[], Duration::from_secs(300));
        let first = app.jwt_credential().unwrap();
        let second = app.jwt_credential().unwrap();
        assert_eq!(first.header(), second.header());
        assert_eq!(first.budget_key(), "app");
        // Close to its `exp`, a new one is signed (with ten minutes ahead of it).
        lock(&app.jwt).as_mut().unwrap().1 = now_secs() + 30;
        app.jwt_credential().unwrap();
        let exp = lock(&app.jwt).as_ref().unwrap().1;
        assert!(exp > now_secs() + 500, "{exp}");
    }

    #[test]
    fn jwts_are_backdated_and_live_at_most_ten_minutes() {
        let claims = JwtClaims::new(42, 1_000_000);
        assert_eq!(claims.iat, 1_000_000 - 60);
        assert!(claims.exp - claims.iat <= 600);
        assert!(claims.exp > 1_000_000);
        assert_eq!(claims.iss, 42);
    }

    #[test]
    fn a_jwt_verifies_with_the_public_key_and_carries_the_claims() {
        let key = test_key();
        let jwt = key.jwt(42, now_secs()).unwrap();
        let parts: Vec<&str> = jwt.expose_secret().split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        let claims: JwtClaims =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims.iss, 42);
        let public = signature::UnparsedPublicKey::new(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            key.public_key_der(),
        );
        let signed = format!("{}.{}", parts[0], parts[1]);
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        public.verify(signed.as_bytes(), &sig).expect("signature");
    }

    #[test]
    fn bad_keys_are_named_without_their_content() {
        let err = |text: &str| AppKey::parse(&SecretString::from(text)).unwrap_err();
        assert!(err("ghp_notakey").contains("not a PEM private key"));
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(err(cert).contains("\"CERTIFICATE\" block"));
        let garbage =
            "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0Ynl0ZXM=\n-----END RSA PRIVATE KEY-----\n";
        let e = err(garbage);
        assert!(e.contains("not a usable RSA private key"), "{e}");
        assert!(!e.contains("c2VjcmV0Ynl0ZXM"), "{e}");
    }

    #[test]
    fn tokens_are_renewed_before_the_margin() {
        let t = InstallationToken {
            installation: 1,
            token: SecretString::from("ghs_x"),
            expires_at: 10_000,
        };
        let margin = Duration::from_secs(300);
        assert!(t.fresh(10_000 - 301, margin));
        assert!(!t.fresh(10_000 - 300, margin));
        assert!(!t.fresh(10_001, Duration::ZERO));
        assert!(t.fresh(9_999, Duration::ZERO));
    }

    #[test]
    fn sealed_tokens_open_only_with_the_same_key_and_entry() {
        let key = test_key();
        let sealed = key.seal("installation.7:100", b"ghs_secret").unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("ghs_secret"));
        assert_eq!(
            key.open("installation.7:100", &sealed).as_deref(),
            Some(&b"ghs_secret"[..])
        );
        assert_eq!(key.open("installation.8:100", &sealed), None);
        assert_eq!(key.open("installation.7:101", &sealed), None);
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(key.open("installation.7:100", &tampered), None);
    }
}
