//! The GitHub REST client: every request the fleet sends goes through [`GithubClient`].
//!
//! Transport is octocrab (rustls, the configured base URL for github.com, GitHub Enterprise
//! Server or the test double). On top of it this module adds what makes the fleet frugal:
//! conditional requests against a shared ETag cache in `guardian_http` (a 304 costs no rate
//! limit), immutable resources (trees by commit SHA) served from the cache without a
//! request at all, rate-limit bookkeeping, and one classification of failures into
//! "retry later" and "never" ([`GithubError::retry`]). The token lives in a
//! `SecretString` inside octocrab and never appears in errors or logs.

pub mod cache;
pub mod issues;
pub mod listing;
pub mod models;
pub mod snapshot;

use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use secrecy::ExposeSecret as _;

use crate::config::GithubSettings;
use crate::telemetry::{self, CacheOutcome};
pub use cache::EtagCache;

/// Whether a failed request is worth trying again, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Transient: retry, after the given delay when GitHub said how long.
    After(Option<Duration>),
    Never,
}

#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    #[error("GitHub {method} {path}: request failed: {message}")]
    Transport {
        method: Method,
        path: String,
        message: String,
    },
    #[error("GitHub {method} {path}: {status}: {message}")]
    Status {
        method: Method,
        path: String,
        status: StatusCode,
        message: String,
        retry_after: Option<Duration>,
        rate_limited: bool,
    },
    #[error("GitHub {method} {path}: unexpected response: {message}")]
    Decode {
        method: Method,
        path: String,
        message: String,
    },
    #[error("GitHub client configuration: {0}")]
    Config(String),
}

impl GithubError {
    pub fn retry(&self) -> Retry {
        match self {
            GithubError::Transport { .. } => Retry::After(None),
            GithubError::Status {
                status,
                retry_after,
                rate_limited,
                ..
            } => {
                if *rate_limited
                    || status.is_server_error()
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || *status == StatusCode::REQUEST_TIMEOUT
                {
                    Retry::After(*retry_after)
                } else {
                    Retry::Never
                }
            }
            GithubError::Decode { .. } | GithubError::Config(_) => Retry::Never,
        }
    }

    pub fn status(&self) -> Option<StatusCode> {
        match self {
            GithubError::Status { status, .. } => Some(*status),
            _ => None,
        }
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
    user_agent: String,
    cache: Option<EtagCache>,
}

impl GithubClient {
    pub fn new(settings: &GithubSettings, cache: Option<EtagCache>) -> Result<Self, GithubError> {
        let mut builder = octocrab::Octocrab::builder()
            .base_uri(settings.api_url.as_str())
            .map_err(|e| GithubError::Config(format!("github.api_url: {e}")))?
            .set_connect_timeout(Some(settings.timeout))
            .set_read_timeout(Some(settings.timeout));
        if let Some(token) = &settings.token {
            builder = builder.personal_token(token.expose_secret().to_string());
        }
        let octo = builder
            .build()
            .map_err(|e| GithubError::Config(e.to_string()))?;
        Ok(GithubClient {
            octo,
            base: settings.api_url.trim_end_matches('/').to_string(),
            user_agent: settings.user_agent.clone(),
            cache,
        })
    }

    /// Absolute URL for an API path (`/repos/o/r`) or a full URL GitHub handed out.
    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{}", self.base, path)
        }
    }

    /// GET with the ETag cache. `Ok(None)` is a 404 (absent is an answer, not an error).
    pub async fn get(&self, path: &str, policy: CachePolicy) -> Result<Option<Page>, GithubError> {
        let url = self.url(path);
        let cached = match &self.cache {
            Some(cache) => cache.get(&url).await,
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
                    cache.put(&url, etag, &page).await;
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
        let url = self.url(path);
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

    async fn send(
        &self,
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
        let mut builder = http::Request::builder().method(method.clone()).uri(url);
        for (k, v) in &headers {
            builder = builder.header(k, v);
        }
        let transport = |message: String| GithubError::Transport {
            method: method.clone(),
            path: path.clone(),
            message,
        };
        let request = self
            .octo
            .build_request(builder, body)
            .map_err(|e| transport(e.to_string()))?;
        drop(_enter);
        let response = tracing::Instrument::instrument(self.octo.execute(request), span.clone())
            .await
            .map_err(|e| transport(error_chain(&e)))?;
        let status = response.status();
        span.record("http.response.status_code", status.as_u16());
        let headers = response.headers().clone();
        record_rate_limit(&headers);
        let body = self
            .octo
            .body_to_string(response)
            .await
            .map_err(|e| transport(e.to_string()))?;
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }

    fn status_error(&self, method: Method, url: &str, response: &RawResponse) -> GithubError {
        let message = serde_json::from_str::<serde_json::Value>(&response.body)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| response.body.chars().take(200).collect());
        let remaining_zero = response
            .headers
            .get("x-ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            == Some("0");
        let retry_after = retry_after(&response.headers);
        let rate_limited = (response.status == StatusCode::FORBIDDEN
            || response.status == StatusCode::TOO_MANY_REQUESTS)
            && (remaining_zero
                || retry_after.is_some()
                || message.to_lowercase().contains("rate limit"));
        GithubError::Status {
            method,
            path: url_path(url),
            status: response.status,
            message,
            retry_after,
            rate_limited,
        }
    }

    fn decode_error(&self, method: &Method, url: &str, message: &str) -> GithubError {
        GithubError::Decode {
            method: method.clone(),
            path: url_path(url),
            message: message.to_string(),
        }
    }
}

struct RawResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
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
        let status = |status: u16, retry_after, rate_limited| GithubError::Status {
            method: Method::GET,
            path: "/x".into(),
            status: StatusCode::from_u16(status).unwrap(),
            message: String::new(),
            retry_after,
            rate_limited,
        };
        assert_eq!(status(502, None, false).retry(), Retry::After(None));
        assert_eq!(status(404, None, false).retry(), Retry::Never);
        assert_eq!(status(401, None, false).retry(), Retry::Never);
        assert_eq!(status(422, None, false).retry(), Retry::Never);
        let wait = Some(Duration::from_secs(60));
        assert_eq!(status(403, wait, true).retry(), Retry::After(wait));
        assert_eq!(status(403, None, false).retry(), Retry::Never);
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
