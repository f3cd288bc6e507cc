//! The GitHub REST client: every request the fleet sends goes through [`GithubClient`].
//!
//! Transport is octocrab (rustls, the configured base URL for github.com, GitHub Enterprise
//! Server or the test double). On top of it this module adds what makes the fleet frugal:
//! conditional requests against a shared ETag cache in `guardian_http` (a 304 costs no rate
//! limit), immutable resources (trees by commit SHA) served from the cache without a
//! request at all, the fleet-wide API budget of each token ([`budget`]: every request
//! waits for its share of it), and one classification of failures into
//! "retry later" and "never" ([`GithubError::retry`]). Which credential a request carries
//! (a personal access token, or a GitHub App's installation token for the account the
//! request is about) is decided per request by [`auth::Auth`]; tokens live in
//! `SecretString`s and sensitive header values and never appear in errors or logs.

pub mod app;
pub mod auth;
pub mod budget;
pub mod cache;
pub mod issues;
pub mod listing;
pub mod models;
pub mod snapshot;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, StatusCode};

use crate::config::GithubSettings;
use crate::telemetry::{self, CacheOutcome};
use auth::{Auth, Credential};
pub use budget::Budget;
use budget::{BudgetError, WaitKind};
pub use cache::EtagCache;

/// Whether a failed request is worth trying again, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Transient: retry, after the given delay when GitHub said how long.
    After(Option<Duration>),
    Never,
}

/// Which of GitHub's limits an answer says was hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The hourly request budget of the token (`x-ratelimit-remaining: 0`).
    Primary,
    /// A secondary limit: concurrency, points per minute, content creation, or "abuse".
    Secondary,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    #[error("GitHub {method} {path}: request failed: {cause}")]
    Transport {
        method: Method,
        path: String,
        /// The innermost cause, for messages that have no room for the whole chain.
        cause: String,
        #[source]
        source: BoxError,
    },
    #[error("GitHub {method} {path}: {status}: {message}")]
    Status {
        method: Method,
        path: String,
        status: StatusCode,
        message: String,
        /// How long GitHub asked to wait (`Retry-After`, the primary reset, or the growing
        /// wait after a secondary limit without `Retry-After`).
        retry_after: Option<Duration>,
        /// The limit this answer reports, when it is a rate-limit answer.
        limit: Option<Limit>,
    },
    #[error("GitHub {method} {path}: unexpected response: {message}")]
    Decode {
        method: Method,
        path: String,
        message: String,
    },
    #[error(
        "GitHub {path}: refusing to follow a link to {origin}: only the configured API \
         {base} receives the token"
    )]
    ForeignLink {
        path: String,
        origin: String,
        base: String,
    },
    #[error("GitHub client configuration: {0}")]
    Config(String),
    /// A GitHub App cannot act for a request: not installed on the account, an
    /// installation left out by `github.app.installation_ids`, or a path without account.
    #[error("GitHub App: {0}")]
    App(String),
    /// The fleet's budget for the token returns only after longer than
    /// `github.budget.max_wait`: the request was not sent.
    #[error(
        "GitHub {method} {path}: not sent, the fleet's {} budget returns in {}s",
        kind.as_str(),
        wait.as_secs_f64().ceil()
    )]
    BudgetWait {
        method: Method,
        path: String,
        kind: WaitKind,
        wait: Duration,
    },
    /// The shared budget could not be read or claimed (NATS).
    #[error("GitHub {method} {path}: not sent: {source}")]
    Budget {
        method: Method,
        path: String,
        #[source]
        source: BudgetError,
    },
}

impl GithubError {
    /// The one classification of GitHub failures into "retry later" and "never".
    pub fn retry(&self) -> Retry {
        match self {
            GithubError::Transport { .. } => Retry::After(None),
            GithubError::Status {
                status,
                retry_after,
                limit,
                ..
            } => {
                if limit.is_some()
                    || status.is_server_error()
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || *status == StatusCode::REQUEST_TIMEOUT
                {
                    Retry::After(*retry_after)
                } else {
                    Retry::Never
                }
            }
            GithubError::BudgetWait { wait, .. } => Retry::After(Some(*wait)),
            GithubError::Budget { .. } => Retry::After(None),
            GithubError::Decode { .. }
            | GithubError::ForeignLink { .. }
            | GithubError::Config(_)
            | GithubError::App(_) => Retry::Never,
        }
    }

    pub fn status(&self) -> Option<StatusCode> {
        match self {
            GithubError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// When the token's budget is spent (a primary or secondary limit): which limit, and how
    /// long until requests may be sent again. The fleet waits that long instead of retrying.
    pub fn rate_limited(&self) -> Option<(Limit, Duration)> {
        match self {
            GithubError::Status {
                limit: Some(limit),
                retry_after,
                ..
            } => Some((*limit, retry_after.unwrap_or(Duration::from_secs(60)))),
            GithubError::BudgetWait { kind, wait, .. } => Some((
                match kind {
                    WaitKind::Primary => Limit::Primary,
                    _ => Limit::Secondary,
                },
                *wait,
            )),
            _ => None,
        }
    }

    /// Whether a wait for budget concerns every request of the token (so the whole fleet
    /// pauses its GitHub steps) or only writes (reads go on meanwhile).
    pub fn pauses_fleet(&self) -> bool {
        !matches!(
            self,
            GithubError::BudgetWait {
                kind: WaitKind::Write,
                ..
            }
        )
    }

    /// GitHub answered "not accessible": the token lacks a permission (403 without a rate
    /// limit). The resource exists; what it holds is unknown, not absent.
    pub fn is_forbidden(&self) -> bool {
        self.status() == Some(StatusCode::FORBIDDEN) && self.rate_limited().is_none()
    }
}

/// How a GET may use the ETag cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachePolicy {
    /// Always ask GitHub, conditionally when an ETag is cached.
    Revalidate,
    /// The URL names immutable content (a tree by commit SHA): a cached copy is served
    /// without any request.
    Immutable,
}

/// A successful GET.
#[derive(Debug, Clone)]
pub struct Page {
    pub body: serde_json::Value,
    /// `rel="next"` of the `Link` header, for paged listings.
    pub next: Option<String>,
}

#[derive(Clone)]
pub struct GithubClient {
    octo: octocrab::Octocrab,
    base: String,
    /// `scheme://host:port` of `base`: absolute URLs GitHub hands out (pagination links)
    /// are followed only to this origin, so the token never reaches another host.
    origin: String,
    user_agent: String,
    cache: Option<EtagCache>,
    pacing: Arc<Pacing>,
    /// Chooses each request's credential.
    auth: Auth,
    /// Requests of this client use this installation's token, whatever the path (set by
    /// [`GithubClient::for_installation`]).
    installation: Option<u64>,
    /// The token's budget: shared by the fleet once [`GithubClient::with_budget`] gave it
    /// the bucket, else kept by this process alone.
    budget: Budget,
}

/// What this worker remembers of GitHub's secondary limits.
struct Pacing {
    secondary_backoff: Duration,
    /// Secondary limits answered without `Retry-After` since the last success.
    secondary_strikes: std::sync::atomic::AtomicU32,
}

impl Pacing {
    /// The wait after a secondary limit without `Retry-After`: at least a minute (by
    /// default), doubling with each further one, up to 16 times the first.
    fn secondary_wait(&self) -> Duration {
        let strikes = self
            .secondary_strikes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.secondary_backoff * 2u32.pow(strikes.min(4))
    }

    fn success(&self) {
        self.secondary_strikes
            .store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

impl GithubClient {
    pub fn new(settings: &GithubSettings, cache: Option<EtagCache>) -> Result<Self, GithubError> {
        // No credential inside octocrab: `send` sets the header of each request.
        let octo = octocrab::Octocrab::builder()
            .base_uri(settings.api_url.as_str())
            .map_err(|e| GithubError::Config(format!("github.api_url: {e}")))?
            .set_connect_timeout(Some(settings.timeout))
            .set_read_timeout(Some(settings.timeout))
            .build()
            .map_err(|e| GithubError::Config(e.to_string()))?;
        let base = settings.api_url.trim_end_matches('/').to_string();
        let origin = origin_of(&base)
            .ok_or_else(|| GithubError::Config(format!("github.api_url: {base} is not a URL")))?;
        Ok(GithubClient {
            octo,
            base,
            origin,
            user_agent: settings.user_agent.clone(),
            cache,
            pacing: Arc::new(Pacing {
                secondary_backoff: settings.secondary_limit_backoff,
                secondary_strikes: std::sync::atomic::AtomicU32::new(0),
            }),
            auth: Auth::from_settings(settings)?,
            installation: None,
            budget: Budget::local(&settings.budget, settings.write_interval),
        })
    }

    /// Shares the GitHub App's installation tokens with the fleet through this bucket
    /// (`guardian_tokens`); without it each worker mints its own.
    pub fn share_tokens(self, store: async_nats::jetstream::kv::Store) -> Self {
        if let Some(app) = self.auth.app() {
            app.set_store(store);
        }
        self
    }

    /// How this client authenticates.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The stable, non-secret name of the token a request to `path` spends: `pat`, `app`
    /// or `installation:<id>` ([`auth::Identity::budget_key`]); per-token bookkeeping (the
    /// API budget) keys on it. With a GitHub App this may look the installation up (and
    /// mint its token) the first time an account is seen.
    pub async fn budget_key_for(&self, path: &str) -> Result<String, GithubError> {
        let credential = self
            .auth
            .credential(self, self.api_path(path), self.installation)
            .await?;
        Ok(credential.budget_key())
    }

    /// A client whose requests carry the token of `installation` (GitHub App only), for
    /// the routes that name no account (`/installation/repositories`).
    pub fn for_installation(&self, installation: u64) -> GithubClient {
        GithubClient {
            installation: Some(installation),
            ..self.clone()
        }
    }

    /// The key of `url` in the ETag cache: a pinned installation sees its own answers of
    /// routes that are the same URL for every installation.
    fn cache_key(&self, url: &str) -> String {
        match self.installation {
            Some(id) => format!("{url}#installation:{id}"),
            None => url.to_string(),
        }
    }

    /// Uses `budget` (the fleet's shared one) for every request from now on.
    pub fn with_budget(mut self, budget: Budget) -> Self {
        self.budget = budget;
        self
    }

    /// Waits for the budget of a request of `method` (a POST creates content).
    async fn admit(&self, key: &str, method: &Method) -> Result<budget::InFlight, BudgetError> {
        self.budget
            .enter(key, method, *method == Method::POST)
            .await
    }

    /// Runs `work` with its first write admitted by the budget beforehand: `work` starts
    /// once the write may go out, so a fence checked at its start (a lease renewed) is not
    /// followed by a wait for budget before the write. `creating` for a POST.
    /// `path` is the API path the write goes to: it names the token, hence the budget.
    pub async fn with_write_admitted<T>(
        &self,
        path: &str,
        creating: bool,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, GithubError> {
        let method = if creating {
            Method::POST
        } else {
            Method::PATCH
        };
        let in_flight = self
            .admit(&self.budget_key_for(path).await?, &method)
            .await
            .map_err(|e| e.for_request(&method, path))?;
        Ok(ADMITTED
            .scope(std::sync::Mutex::new(Some((method, in_flight))), work)
            .await)
    }

    /// How long a write to `path` would wait for the fleet's write budget of its token
    /// now (an estimate); `creating` for content-creating requests (a new issue, comment or
    /// label).
    pub async fn write_budget_wait(
        &self,
        path: &str,
        creating: bool,
    ) -> Result<Duration, GithubError> {
        let key = self.budget_key_for(path).await?;
        Ok(self.budget.write_wait(&key, creating).await)
    }

    /// Absolute URL for an API path (`/repos/o/r`) or a full URL GitHub handed out, which
    /// must point at the configured API: a `Link` to another host never gets the token.
    fn url(&self, path: &str) -> Result<String, GithubError> {
        if path.starts_with("http://") || path.starts_with("https://") {
            match origin_of(path) {
                Some(origin) if origin == self.origin => Ok(path.to_string()),
                origin => Err(GithubError::ForeignLink {
                    path: url_path(path),
                    origin: origin.unwrap_or_else(|| "an unparsable URL".into()),
                    base: self.base.clone(),
                }),
            }
        } else {
            Ok(format!("{}{}", self.base, path))
        }
    }

    /// The API path of a URL under the configured base (`/repos/o/r` of
    /// `https://HOST/api/v3/repos/o/r` on GitHub Enterprise Server), which names the
    /// account whose credential a request needs.
    fn api_path<'u>(&self, url: &'u str) -> &'u str {
        url.strip_prefix(&self.base).unwrap_or(url)
    }

    /// GET with the ETag cache. `Ok(None)` is a 404 (absent is an answer, not an error).
    pub async fn get(&self, path: &str, policy: CachePolicy) -> Result<Option<Page>, GithubError> {
        let url = self.url(path)?;
        let cache_key = self.cache_key(&url);
        let cached = match &self.cache {
            Some(cache) => cache.get(&cache_key).await,
            None => None,
        };
        if let (CachePolicy::Immutable, Some(hit)) = (policy, &cached) {
            telemetry::metrics().record_github_request(200, CacheOutcome::Hit);
            return Ok(Some(hit.page()));
        }
        let mut headers = HeaderMap::new();
        if let Some(entry) = &cached
            && let Ok(v) = HeaderValue::from_str(&entry.etag)
        {
            headers.insert(http::header::IF_NONE_MATCH, v);
        }
        let response = self.send(Method::GET, &url, headers, None).await?;
        let status = response.status;
        match status {
            StatusCode::NOT_MODIFIED => {
                telemetry::metrics().record_github_request(304, CacheOutcome::Revalidated);
                match cached {
                    Some(entry) => Ok(Some(entry.page())),
                    None => Err(self.decode_error(&Method::GET, &url, "304 without a cached copy")),
                }
            }
            StatusCode::NOT_FOUND => {
                telemetry::metrics().record_github_request(404, CacheOutcome::Miss);
                Ok(None)
            }
            s if s.is_success() => {
                telemetry::metrics().record_github_request(s.as_u16(), CacheOutcome::Miss);
                let body: serde_json::Value = serde_json::from_str(&response.body)
                    .map_err(|e| self.decode_error(&Method::GET, &url, &e.to_string()))?;
                let page = Page {
                    body,
                    next: next_link(&response.headers),
                };
                if let (Some(cache), Some(etag)) =
                    (&self.cache, response.headers.get(http::header::ETAG))
                    && let Ok(etag) = etag.to_str()
                {
                    cache.put(&cache_key, etag, &page).await;
                }
                Ok(Some(page))
            }
            s => {
                telemetry::metrics().record_github_request(s.as_u16(), CacheOutcome::Miss);
                Err(self.status_error(Method::GET, &url, &response))
            }
        }
    }

    /// A write (POST/PATCH/PUT/DELETE) with a JSON body; returns the JSON answer.
    pub async fn write(
        &self,
        method: Method,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, GithubError> {
        let url = self.url(path)?;
        // The budget serialises the worker's writes, spaces them `write_interval` apart
        // across the fleet and keeps the content-creation caps (see `budget`).
        let response = self
            .send(method.clone(), &url, HeaderMap::new(), Some(body))
            .await?;
        telemetry::metrics().record_github_request(response.status.as_u16(), CacheOutcome::Miss);
        if !response.status.is_success() {
            return Err(self.status_error(method, &url, &response));
        }
        if response.body.trim().is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_str(&response.body)
            .map_err(|e| self.decode_error(&method, &url, &e.to_string()))
    }

    /// Sends with the credential the request needs; an installation token GitHub rejects
    /// (expired early, revoked) is replaced and the request sent once more.
    async fn send(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<&serde_json::Value>,
    ) -> Result<RawResponse, GithubError> {
        let api_path = self.api_path(url);
        let credential = self
            .auth
            .credential(self, api_path, self.installation)
            .await?;
        let response = self
            .send_as(&credential, method.clone(), url, headers.clone(), body)
            .await?;
        if response.status != StatusCode::UNAUTHORIZED || !credential.renewable() {
            return Ok(response);
        }
        // Counted although retried: a rising rate of refused tokens is worth seeing.
        telemetry::metrics().record_github_request(401, CacheOutcome::Miss);
        self.auth.rejected(&credential).await;
        let credential = self
            .auth
            .credential(self, api_path, self.installation)
            .await?;
        self.send_as(&credential, method, url, headers, body).await
    }

    async fn send_as(
        &self,
        credential: &Credential,
        method: Method,
        url: &str,
        mut headers: HeaderMap,
        body: Option<&serde_json::Value>,
    ) -> Result<RawResponse, GithubError> {
        let path = url_path(url);
        let span = tracing::info_span!(
            "github.request",
            otel.kind = "client",
            http.request.method = %method,
            url.path = %path,
            http.response.status_code = tracing::field::Empty,
        );
        let _enter = span.enter();
        headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/vnd.github+json"),
        );
        headers.insert(
            "x-github-api-version",
            HeaderValue::from_static("2022-11-28"),
        );
        if let Ok(ua) = HeaderValue::from_str(&self.user_agent) {
            headers.insert(http::header::USER_AGENT, ua);
        }
        if let Some(authorization) = credential.header() {
            headers.insert(http::header::AUTHORIZATION, authorization.clone());
        }
        let mut builder = http::Request::builder().method(method.clone()).uri(url);
        for (k, v) in &headers {
            builder = builder.header(k, v);
        }
        let transport = |source: octocrab::Error| GithubError::Transport {
            method: method.clone(),
            path: path.clone(),
            cause: root_cause(&source),
            source: Box::new(source),
        };
        let request = self.octo.build_request(builder, body).map_err(transport)?;
        drop(_enter);
        let key = credential.budget_key();
        // A write admitted ahead (see `with_write_admitted`) uses its admission when it is
        // the kind admitted; another kind frees it (and the worker's write turn) first.
        let admitted = match method {
            Method::GET => None,
            _ => ADMITTED.try_with(|a| a.lock().ok()?.take()).ok().flatten(),
        };
        let in_flight = match admitted {
            Some((admitted_for, in_flight)) if admitted_for == method => in_flight,
            other => {
                drop(other);
                self.admit(&key, &method)
                    .await
                    .map_err(|e| e.for_request(&method, &path))?
            }
        };
        let response = tracing::Instrument::instrument(self.octo.execute(request), span.clone())
            .await
            .map_err(transport)?;
        let status = response.status();
        span.record("http.response.status_code", status.as_u16());
        let headers = response.headers().clone();
        record_rate_limit(&headers);
        self.budget.observe(&key, &headers);
        let body = self
            .octo
            .body_to_string(response)
            .await
            .map_err(transport)?;
        // In flight (and, for a write, its turn) until the whole answer has arrived.
        drop(in_flight);
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            self.pacing.success();
        }
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }

    fn status_error(&self, method: Method, url: &str, response: &RawResponse) -> GithubError {
        #[derive(serde::Deserialize)]
        struct ErrorBody {
            message: String,
        }
        let message = serde_json::from_str::<ErrorBody>(&response.body)
            .map(|b| b.message)
            .unwrap_or_else(|_| response.body.chars().take(200).collect());
        let (limit, retry_after) = classify_limit(response.status, &response.headers, &message);
        let retry_after = match (limit, retry_after) {
            (Some(Limit::Secondary), None) => Some(self.pacing.secondary_wait()),
            (_, wait) => wait,
        };
        GithubError::Status {
            method,
            path: url_path(url),
            status: response.status,
            message,
            retry_after,
            limit,
        }
    }

    /// The JSON body of a successful answer, or the error the answer means.
    fn decode_ok<T: serde::de::DeserializeOwned>(
        &self,
        method: &Method,
        url: &str,
        response: &RawResponse,
    ) -> Result<T, GithubError> {
        if !response.status.is_success() {
            return Err(self.status_error(method.clone(), url, response));
        }
        serde_json::from_str(&response.body)
            .map_err(|e| self.decode_error(method, url, &e.to_string()))
    }

    fn decode_error(&self, method: &Method, url: &str, message: &str) -> GithubError {
        GithubError::Decode {
            method: method.clone(),
            path: url_path(url),
            message: message.to_string(),
        }
    }
}

tokio::task_local! {
    /// A write's budget admission taken ahead by [`GithubClient::with_write_admitted`],
    /// used by the first write of the task.
    static ADMITTED: std::sync::Mutex<Option<(Method, budget::InFlight)>>;
}

impl BudgetError {
    fn for_request(self, method: &Method, path: &str) -> GithubError {
        match self {
            BudgetError::Wait { kind, wait } => GithubError::BudgetWait {
                method: method.clone(),
                path: path.to_string(),
                kind,
                wait,
            },
            source => GithubError::Budget {
                method: method.clone(),
                path: path.to_string(),
                source,
            },
        }
    }
}

struct RawResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

/// The innermost cause of an error: the part of a chain that says what actually happened
/// ("connection refused"), where the outer layers only say "error sending request".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = e;
    while let Some(next) = innermost.source() {
        innermost = next;
    }
    innermost.to_string()
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    Some(u.origin().ascii_serialization()).filter(|o| o != "null")
}

/// Whether a 403/429 answer is a rate limit, which one, and the wait GitHub named.
/// GitHub's documented signals: `x-ratelimit-remaining: 0` (primary, wait until
/// `x-ratelimit-reset`), `Retry-After` (either), and the message of a secondary limit;
/// a 429 is always a limit. A plain 403 ("Resource not accessible by integration") is not.
fn classify_limit(
    status: StatusCode,
    headers: &HeaderMap,
    message: &str,
) -> (Option<Limit>, Option<Duration>) {
    if status != StatusCode::FORBIDDEN && status != StatusCode::TOO_MANY_REQUESTS {
        return (None, None);
    }
    let wait = retry_after(headers);
    let exhausted = headers
        .get("x-ratelimit-remaining")
        .and_then(|v| v.to_str().ok())
        == Some("0");
    let lower = message.to_lowercase();
    let secondary = lower.contains("secondary rate limit") || lower.contains("abuse");
    let limit = if exhausted && !secondary {
        Some(Limit::Primary)
    } else if secondary || wait.is_some() || status == StatusCode::TOO_MANY_REQUESTS {
        Some(Limit::Secondary)
    } else if lower.contains("rate limit") {
        Some(Limit::Primary)
    } else {
        None
    };
    (limit, wait)
}

/// Path and query of a URL, for errors and spans (never credentials: tokens travel in
/// headers only).
fn url_path(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        },
        Err(_) => url.to_string(),
    }
}

fn record_rate_limit(headers: &HeaderMap) {
    let remaining = headers
        .get("x-ratelimit-remaining")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    if let Some(remaining) = remaining {
        let resource = headers
            .get("x-ratelimit-resource")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("core");
        telemetry::metrics().set_github_rate_limit_remaining(resource, remaining);
    }
}

/// `Retry-After` seconds, or the time until `x-ratelimit-reset` when the budget is spent.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(secs) = header("retry-after").and_then(|v| v.trim().parse::<u64>().ok()) {
        return Some(Duration::from_secs(secs));
    }
    if header("x-ratelimit-remaining") == Some("0")
        && let Some(reset) = header("x-ratelimit-reset").and_then(|v| v.parse::<i64>().ok())
    {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        return Some(Duration::from_secs(
            u64::try_from(reset - now).unwrap_or(0) + 1,
        ));
    }
    None
}

/// The `rel="next"` target of a `Link` header.
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    let link = headers.get(http::header::LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let mut pieces = part.split(';');
        let target = pieces.next()?.trim();
        let is_next = pieces.any(|p| p.trim() == r#"rel="next""#);
        is_next.then(|| {
            target
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_next_link() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::LINK,
            HeaderValue::from_static(
                r#"<https://api.github.com/orgs/o/repos?page=2>; rel="next", <https://api.github.com/orgs/o/repos?page=5>; rel="last""#,
            ),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://api.github.com/orgs/o/repos?page=2")
        );
        assert_eq!(next_link(&HeaderMap::new()), None);
    }

    #[test]
    fn classifies_failures_once() {
        let status = |status: u16, retry_after, limit| GithubError::Status {
            method: Method::GET,
            path: "/x".into(),
            status: StatusCode::from_u16(status).unwrap(),
            message: String::new(),
            retry_after,
            limit,
        };
        assert_eq!(status(502, None, None).retry(), Retry::After(None));
        assert_eq!(status(404, None, None).retry(), Retry::Never);
        assert_eq!(status(401, None, None).retry(), Retry::Never);
        assert_eq!(status(422, None, None).retry(), Retry::Never);
        let wait = Some(Duration::from_secs(60));
        let limited = status(403, wait, Some(Limit::Secondary));
        assert_eq!(limited.retry(), Retry::After(wait));
        assert!(!limited.is_forbidden());
        let forbidden = status(403, None, None);
        assert_eq!(forbidden.retry(), Retry::Never);
        assert!(forbidden.is_forbidden());
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn tells_rate_limits_from_missing_permissions() {
        let forbidden = StatusCode::FORBIDDEN;
        let secondary = "You have exceeded a secondary rate limit. Please wait a few minutes.";
        // A secondary limit without Retry-After is still a limit (the wait is added later).
        assert_eq!(
            classify_limit(forbidden, &HeaderMap::new(), secondary),
            (Some(Limit::Secondary), None)
        );
        assert_eq!(
            classify_limit(forbidden, &headers(&[("retry-after", "30")]), "x"),
            (Some(Limit::Secondary), Some(Duration::from_secs(30)))
        );
        let reset = (time::OffsetDateTime::now_utc().unix_timestamp() + 600).to_string();
        let spent = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", reset.as_str()),
        ]);
        let (limit, wait) = classify_limit(forbidden, &spent, "API rate limit exceeded");
        assert_eq!(limit, Some(Limit::Primary));
        assert!(wait.unwrap() >= Duration::from_secs(599));
        // Permissions are not limits: unknown, never retried as if the budget were spent.
        assert_eq!(
            classify_limit(
                forbidden,
                &headers(&[("x-ratelimit-remaining", "4999")]),
                "Resource not accessible by integration"
            ),
            (None, None)
        );
        assert_eq!(
            classify_limit(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), ""),
            (Some(Limit::Secondary), None)
        );
        assert_eq!(
            classify_limit(StatusCode::BAD_GATEWAY, &HeaderMap::new(), secondary),
            (None, None)
        );
    }

    fn client(api_url: &str) -> GithubClient {
        let settings: crate::config::Settings = crate::config::Settings::load_from(
            None,
            [("GUARDIAN__GITHUB__API_URL".to_string(), api_url.to_string())],
        )
        .expect("settings");
        GithubClient::new(&settings.github, None).expect("client")
    }

    #[tokio::test]
    async fn secondary_limits_without_retry_after_wait_a_minute_growing() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let c = client("https://api.github.com");
        let waits: Vec<u64> = (0..6)
            .map(|_| c.pacing.secondary_wait().as_secs())
            .collect();
        assert_eq!(waits, [60, 120, 240, 480, 960, 960]);
        c.pacing.success();
        assert_eq!(c.pacing.secondary_wait().as_secs(), 60);
    }

    #[tokio::test]
    async fn links_to_another_host_never_get_the_token() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let c = client("https://ghe.example.com/api/v3");
        assert_eq!(
            c.url("https://ghe.example.com/api/v3/orgs/o/repos?page=2")
                .unwrap(),
            "https://ghe.example.com/api/v3/orgs/o/repos?page=2"
        );
        assert_eq!(
            c.url("/orgs/o/repos").unwrap(),
            "https://ghe.example.com/api/v3/orgs/o/repos"
        );
        assert_eq!(
            c.api_path("https://ghe.example.com/api/v3/repos/o/r/issues?page=2"),
            "/repos/o/r/issues?page=2"
        );
        for foreign in [
            "https://evil.example.net/orgs/o/repos?page=2",
            "http://ghe.example.com/api/v3/orgs/o/repos?page=2",
            "https://ghe.example.com:8443/api/v3/orgs/o/repos?page=2",
        ] {
            let err = c.url(foreign).unwrap_err();
            assert!(matches!(err, GithubError::ForeignLink { .. }), "{foreign}");
            assert!(err.to_string().contains("refusing to follow"), "{err}");
        }
    }

    #[test]
    fn retry_after_prefers_the_header_then_the_reset() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("17"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(17)));
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        let reset = time::OffsetDateTime::now_utc().unix_timestamp() + 100;
        h.insert(
            "x-ratelimit-reset",
            HeaderValue::from_str(&reset.to_string()).unwrap(),
        );
        let d = retry_after(&h).unwrap();
        assert!(
            d >= Duration::from_secs(99) && d <= Duration::from_secs(102),
            "{d:?}"
        );
    }
}
