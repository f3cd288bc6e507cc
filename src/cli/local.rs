//! `guardian dev` and `guardian scan`: the embedded local fleet. A worker runs in-process;
//! with `--demo` a built-in GitHub double serves a demo organisation, so everything works
//! without GitHub access; `dev --demo --demo-llm` adds the deterministic model double, so
//! the review step runs offline too.
//!
//! Isolation is the rule: `scan` and `dev --demo` start their **own** `nats-server` with
//! a temporary store (a `scan` on a free port), so they never take work from, or hand
//! work to, a fleet that happens to answer at `nats.url`. Only plain `dev` joins a server
//! already running at `nats.url`, which is how `nix run` and a hand-started server work.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use super::exit::CliError;
use super::{Format, Ui};
use crate::bus::Bus;
use crate::config::Settings;
use crate::{local, worker};

/// Which NATS server the local fleet uses.
enum Server {
    /// A server of its own with a temporary store, on this port (or a free one).
    Own { port: Option<u16> },
    /// The server at `nats.url` when one answers, else one started there.
    JoinOrStart,
}

/// A worker running in this process, with what it depends on kept alive.
struct LocalFleet {
    bus: Bus,
    url: String,
    shutdown: CancellationToken,
    worker: tokio::task::JoinHandle<anyhow::Result<()>>,
    nats: Option<local::NatsServer>,
    _double: Option<github_double::GithubDouble>,
    /// Removed when the fleet goes away: a scan leaves nothing behind.
    _store: Option<tempfile::TempDir>,
}

async fn start(mut settings: Settings, demo: bool, server: Server) -> anyhow::Result<LocalFleet> {
    let double = if demo {
        let double = github_double::GithubDouble::start().await?;
        github_double::seed_demo(&double);
        settings.github.api_url = double.url();
        settings.github.token = Some(SecretString::from("demo-token"));
        // The double has no write limits: no need to pace writes as for GitHub.
        settings.github.write_interval = Duration::ZERO;
        tracing::info!(url = %double.url(), "demo: GitHub double with organisation demo-org");
        Some(double)
    } else {
        None
    };
    let (url, nats, store) = match server {
        Server::Own { port } => {
            let store = tempfile::Builder::new()
                .prefix("guardian-nats-")
                .tempdir()?;
            let nats = local::NatsServer::start(store.path(), port)?;
            // A fresh single server: no credentials of a production fleet, one replica.
            settings.nats.creds = None;
            settings.nats.user = None;
            settings.nats.password = None;
            settings.nats.replicas = 1;
            (nats.url.clone(), Some(nats), Some(store))
        }
        Server::JoinOrStart => {
            if local::reachable(&settings.nats.url).await {
                super::connect::probe_nats(&settings.nats.url).await?;
                (settings.nats.url.clone(), None, None)
            } else {
                let (url, nats) = local::ensure_nats(&settings.nats.url).await?;
                (url, nats, None)
            }
        }
    };
    settings.nats.url = url.clone();
    let bus = Bus::connect(&settings.nats, "guardian-local").await?;
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(worker::run(
        bus.clone(),
        Arc::new(settings),
        shutdown.clone(),
    ));
    // Wait until the trigger service answers (the worker provisions first).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let probe = bus.client.request("$SRV.PING.repo-guardian", "".into());
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), probe).await {
            break;
        }
        if worker.is_finished() {
            worker.await??;
            anyhow::bail!("the in-process worker stopped before it was ready");
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("the in-process worker was not ready within 30s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(LocalFleet {
        bus,
        url,
        shutdown,
        worker,
        nats,
        _double: double,
        _store: store,
    })
}

impl LocalFleet {
    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.worker.await??;
        Ok(())
    }
}

/// Serves the deterministic model double and points the review step at it.
async fn start_llm_double(settings: &mut Settings) -> anyhow::Result<llm_double::LlmDouble> {
    let llm = llm_double::LlmDouble::start().await?;
    settings.llm.api_url = Some(llm.url());
    settings.llm.model = Some("demo-model".into());
    settings.llm.api_key = None;
    tracing::info!(url = %llm.url(), "demo: model double demo-model");
    Ok(llm)
}

/// Fails fast, naming the setting, when `addr` cannot be listened on.
fn require_free(addr: SocketAddr, what: &str, fix: &str) -> Result<(), CliError> {
    std::net::TcpListener::bind(addr).map(drop).map_err(|e| {
        CliError::error(format!("{what} {addr} is not free"))
            .source(e)
            .hint(fix.to_string())
    })
}

/// The port of `nats.url` when it names this machine (where `dev --demo` starts its server).
fn local_port(url: &str) -> Result<u16, CliError> {
    let first = url.split(',').next().unwrap_or(url).trim();
    let parsed = url::Url::parse(first)
        .map_err(|e| CliError::usage(format!("nats.url `{first}` is not a URL: {e}")))?;
    match parsed.host_str() {
        Some("127.0.0.1" | "localhost" | "[::1]" | "::1") => Ok(parsed.port().unwrap_or(4222)),
        _ => Err(CliError::usage(format!(
            "`dev --demo` starts its own NATS server on this machine, but nats.url is {first}"
        ))
        .hint("unset NATS_URL, or set it to nats://127.0.0.1:PORT")),
    }
}

pub async fn dev(settings: Arc<Settings>, demo: bool, demo_llm: bool) -> anyhow::Result<ExitCode> {
    let mut settings = (*settings).clone();
    // Kept alive for as long as the fleet runs.
    let _llm = match demo_llm {
        true => Some(start_llm_double(&mut settings).await?),
        false => None,
    };
    let listen = settings.http.listen;
    require_free(
        listen,
        "http.listen",
        "another `guardian dev` or worker may be running; stop it or set GUARDIAN__HTTP__LISTEN=127.0.0.1:9091",
    )?;
    let server = if demo {
        let port = local_port(&settings.nats.url)?;
        require_free(
            SocketAddr::from(([127, 0, 0, 1], port)),
            "NATS port",
            &format!(
                "another NATS server or fleet is listening there; stop it, or run \
                 NATS_URL=nats://127.0.0.1:{} guardian dev --demo",
                port.wrapping_add(1)
            ),
        )?;
        Server::Own { port: Some(port) }
    } else {
        Server::JoinOrStart
    };
    let mut fleet = start(settings, demo, server).await?;
    let example = if demo {
        "org:demo-org"
    } else {
        "octo-org/hello-world"
    };
    let env = if fleet.url == "nats://127.0.0.1:4222" {
        String::new()
    } else {
        format!("\n  export NATS_URL={}", fleet.url)
    };
    let store = match (&fleet.nats, demo) {
        (Some(_), true) => " (own server, temporary store)".to_string(),
        (Some(n), false) => format!(" (store {})", n.store.display()),
        (None, _) => " (joined a running server)".to_string(),
    };
    eprintln!(
        "Repo Guardian dev fleet: NATS {url}{store}, ops http://{listen}/metrics\n\
         Try:{env}\n  guardian run {example} --dry-run --wait\n  guardian runs list\n\n\
         Ctrl-C stops it.",
        url = fleet.url,
    );
    let signal = super::shutdown_on_signal();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let died = loop {
        tokio::select! {
            _ = signal.cancelled() => break None,
            _ = fleet.shutdown.cancelled() => break None,
            _ = tick.tick() => {
                if let Some(status) = fleet.nats.as_mut().and_then(|n| n.exited()) {
                    break Some(status);
                }
                if fleet.worker.is_finished() {
                    break None;
                }
            }
        }
    };
    // Whatever ended the wait — the worker giving up on a lost connection can be seen
    // first — a nats-server that is gone is the reason to report.
    let died = died.or_else(|| fleet.nats.as_mut().and_then(|n| n.exited()));
    let stopped = fleet.stop().await;
    if let Some(status) = died {
        return Err(CliError::error(format!(
            "the dev fleet's nats-server exited ({status}); the fleet stopped"
        ))
        .hint("its log went to this terminal above; start `guardian dev` again")
        .into());
    }
    stopped?;
    Ok(ExitCode::SUCCESS)
}

/// What `guardian scan` was asked to do.
pub struct ScanArgs<'a> {
    pub target: &'a str,
    pub apply: bool,
    pub demo: bool,
    pub format: Format,
    pub timeout: Duration,
}

pub async fn scan(
    settings: Arc<Settings>,
    args: ScanArgs<'_>,
    ui: &Ui,
) -> anyhow::Result<ExitCode> {
    let mut settings = (*settings).clone();
    if !args.demo {
        super::connect::probe_github(&settings.github).await?;
    }
    // The ops server of a one-shot scan is of no use to anyone; never collide with a fleet's.
    settings.http.listen = "127.0.0.1:0".parse()?;
    let fleet = start(settings, args.demo, Server::Own { port: None }).await?;
    let outcome = super::run::start_and_follow(
        &fleet.bus,
        args.target,
        !args.apply,
        args.format,
        args.timeout,
        ui,
    )
    .await;
    fleet.stop().await?;
    outcome
}
