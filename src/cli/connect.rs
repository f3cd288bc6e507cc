//! Reaching NATS and GitHub from the command line, with a diagnosis when it fails.
//!
//! Before connecting, each server of `nats.url` is probed the way a NATS client sees it:
//! name resolution, TCP connection, then the `INFO` line every NATS server sends first.
//! That tells "the name does not resolve", "nothing listens there" and "something that
//! is not NATS listens there" apart within seconds, each with what to do next. The
//! GitHub probe (`GET /rate_limit`, free of charge) tells a missing token from a rejected
//! one before a one-shot scan spends minutes retrying.

use std::time::Duration;

use tokio::io::AsyncReadExt as _;

use super::exit::{CliError, Exit};
use crate::bus::Bus;
use crate::config::{GithubSettings, NatsSettings};

/// How long each probe stage may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

const NATS_HINT: &str =
    "start a local fleet with `guardian dev`, or point NATS_URL (or nats.url) at your NATS server";

/// Probes `nats.url`, then connects.
pub async fn nats(settings: &NatsSettings, name: &str) -> Result<Bus, CliError> {
    probe_nats(&settings.url).await?;
    Bus::connect(settings, name).await.map_err(|e| {
        CliError::error(format!(
            "cannot connect to NATS at {}",
            crate::bus::redact_url(&settings.url)
        ))
        .source(e)
        .hint("check nats.creds / nats.user and the server's accounts")
    })
}

/// Succeeds when at least one server of the comma-separated `urls` answers like NATS;
/// otherwise returns the diagnosis of the first one.
pub async fn probe_nats(urls: &str) -> Result<(), CliError> {
    let mut first_failure = None;
    for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        match probe_one(url).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                first_failure.get_or_insert(e);
            }
        }
    }
    Err(first_failure.unwrap_or_else(|| CliError::usage("nats.url is empty")))
}

async fn probe_one(url: &str) -> Result<(), CliError> {
    let shown = crate::bus::redact_url(url);
    let with_scheme = if url.contains("://") {
        url.to_string()
    } else {
        format!("nats://{url}")
    };
    let parsed = url::Url::parse(&with_scheme).map_err(|e| {
        CliError::usage(format!("nats.url `{shown}` is not a URL: {e}"))
            .hint("it looks like nats://HOST:4222 (several separated by commas)")
    })?;
    if matches!(parsed.scheme(), "ws" | "wss") {
        // WebSocket servers speak HTTP first; let the client diagnose them.
        return Ok(());
    }
    let host = parsed
        .host_str()
        .unwrap_or("127.0.0.1")
        .trim_matches(['[', ']'])
        .to_string();
    let port = parsed.port().unwrap_or(4222);
    let addrs = match tokio::time::timeout(
        PROBE_TIMEOUT,
        tokio::net::lookup_host((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(addrs)) => addrs.collect::<Vec<_>>(),
        Ok(Err(e)) => {
            return Err(CliError::error(format!(
                "cannot resolve the NATS host `{host}` (nats.url = {shown})"
            ))
            .source(e)
            .hint(format!("check the host name; {NATS_HINT}")));
        }
        Err(_) => {
            return Err(CliError::error(format!(
                "resolving the NATS host `{host}` took longer than {}s (nats.url = {shown})",
                PROBE_TIMEOUT.as_secs()
            ))
            .hint("check the network and DNS"));
        }
    };
    let mut refused = None;
    for addr in addrs {
        match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(mut stream)) => return expect_info(&mut stream, &shown).await,
            Ok(Err(e)) => refused = Some(e),
            Err(_) => {
                return Err(CliError::error(format!(
                    "no answer from {host}:{port} within {}s (nats.url = {shown})",
                    PROBE_TIMEOUT.as_secs()
                ))
                .hint("a firewall may drop the connection; check the address and port"));
            }
        }
    }
    let mut err = CliError::error(format!(
        "no NATS server at {host}:{port}: connection refused (nats.url = {shown})"
    ))
    .hint(NATS_HINT);
    if let Some(e) = refused {
        err = err.source(e);
    }
    Err(err)
}

/// A NATS server greets every client with `INFO {…}` at once.
async fn expect_info(stream: &mut tokio::net::TcpStream, shown: &str) -> Result<(), CliError> {
    let mut greeting = [0u8; 5];
    let read = tokio::time::timeout(PROBE_TIMEOUT, stream.read(&mut greeting)).await;
    match read {
        Ok(Ok(n)) if n >= 4 && greeting[..4].eq_ignore_ascii_case(b"INFO") => Ok(()),
        Ok(Ok(n)) => {
            let seen = String::from_utf8_lossy(&greeting[..n]).escape_debug().to_string();
            Err(CliError::error(format!(
                "{shown} answers, but not as a NATS server (it sent {seen:?}…)"
            ))
            .hint("is the port right? NATS clients use 4222, the monitoring port is 8222"))
        }
        Ok(Err(e)) => Err(CliError::error(format!(
            "{shown} closed the connection before greeting like a NATS server"
        ))
        .source(e)
        .hint("is the port right? NATS clients use 4222")),
        Err(_) => Err(CliError::error(format!(
            "{shown} accepts connections but sent no NATS greeting within {}s: it is not a NATS server",
            PROBE_TIMEOUT.as_secs()
        ))
        .hint("is the port right? NATS clients use 4222")),
    }
}

/// Checks that a token is configured and that GitHub accepts it, with one free request
/// (`GET /rate_limit` is not charged against the budget); for a GitHub App, that GitHub
/// accepts the App's JWT (`GET /app`).
pub async fn probe_github(settings: &GithubSettings) -> Result<(), CliError> {
    if settings.token.is_none() && settings.app().is_none() {
        return Err(CliError::usage("no GitHub token configured")
            .hint("export GITHUB_TOKEN=… (or set github.token / GUARDIAN__GITHUB__TOKEN); `--demo` needs none"));
    }
    let mut quick = settings.clone();
    quick.timeout = quick.timeout.min(Duration::from_secs(10));
    quick.etag_cache = false;
    let client = crate::github::GithubClient::new(&quick, None)
        .map_err(|e| CliError::usage(format!("github settings: {e}")))?;
    let (probe, hint) = match settings.app() {
        Some(_) => (
            "/app",
            "GitHub rejected the App's JWT: check github.app.app_id, that the private key is the App's current one, and this machine's clock",
        ),
        None => (
            "/rate_limit",
            "the token in GITHUB_TOKEN (or github.token) is wrong, expired or revoked: create a new one",
        ),
    };
    match client
        .get(probe, crate::github::CachePolicy::Revalidate)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.status() == Some(http::StatusCode::UNAUTHORIZED) => Err(CliError::new(
            Exit::Error,
            format!(
                "GitHub rejected the {} (401 Bad credentials) at {}",
                if settings.app().is_some() {
                    "App's JWT"
                } else {
                    "token"
                },
                settings.api_url
            ),
        )
        .hint(hint)),
        Err(e) if e.status().is_some() => Err(CliError::error(format!(
            "GitHub at {} answered the token check with an error",
            settings.api_url
        ))
        .source(e)),
        Err(e) => Err(
            CliError::error(format!("cannot reach GitHub at {}", settings.api_url))
                .source(e)
                .hint("check the network (and a proxy), or github.api_url; `--demo` works offline"),
        ),
    }
}
