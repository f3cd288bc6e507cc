//! `guardian dev` and `guardian scan`: the embedded local default. A local `nats-server`
//! is started when none answers, a worker runs in-process, and with `--demo` a built-in
//! GitHub double serves a demo organisation so everything works without GitHub access;
//! `--demo-llm` adds the deterministic model double, so the review step runs offline too.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use super::Format;
use crate::bus::Bus;
use crate::config::Settings;
use crate::{local, worker};

/// A worker running in this process, with what it depends on kept alive.
struct LocalFleet {
    bus: Bus,
    shutdown: CancellationToken,
    worker: tokio::task::JoinHandle<anyhow::Result<()>>,
    _nats: Option<local::NatsServer>,
    _double: Option<github_double::GithubDouble>,
    _llm: Option<llm_double::LlmDouble>,
}

async fn start(
    settings: Arc<Settings>,
    demo: bool,
    demo_llm: bool,
    ephemeral_ops_port: bool,
) -> anyhow::Result<LocalFleet> {
    let mut settings = (*settings).clone();
    let llm = if demo_llm {
        let llm = llm_double::LlmDouble::start().await?;
        settings.llm.api_url = Some(llm.url());
        settings.llm.model = Some("demo-model".into());
        settings.llm.api_key = None;
        eprintln!("demo: built-in model double `demo-model` at {}", llm.url());
        Some(llm)
    } else {
        None
    };
    let double = if demo {
        let double = github_double::GithubDouble::start().await?;
        github_double::seed_demo(&double);
        settings.github.api_url = double.url();
        settings.github.token = Some(SecretString::from("demo-token"));
        // The double has no write limits: no need to pace writes as for GitHub.
        settings.github.write_interval = std::time::Duration::ZERO;
        eprintln!(
            "demo: GitHub double with organisation `demo-org` at {}",
            double.url()
        );
        Some(double)
    } else {
        None
    };
    if ephemeral_ops_port {
        settings.http.listen = "127.0.0.1:0".parse()?;
    }
    let (url, nats) = local::ensure_nats(&settings.nats.url).await?;
    settings.nats.url = url;
    let bus = Bus::connect(&settings.nats, "guardian-dev").await?;
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
        if worker.is_finished() || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(LocalFleet {
        bus,
        shutdown,
        worker,
        _nats: nats,
        _double: double,
        _llm: llm,
    })
}

impl LocalFleet {
    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.worker.await??;
        Ok(())
    }
}

pub async fn dev(settings: Arc<Settings>, demo: bool, demo_llm: bool) -> anyhow::Result<ExitCode> {
    let listen = settings.http.listen;
    let fleet = start(settings.clone(), demo, demo_llm, false).await?;
    let example = if demo {
        "org:demo-org"
    } else {
        "octo-org/hello-world"
    };
    eprintln!(
        "\nRepo Guardian dev fleet is running (ops: http://{listen}/metrics). Try:\n\
         \n  guardian run {example} --dry-run --wait\
         \n  nats req guardian.run '{{\"target\":\"{example}\"}}'\
         \n  nats kv watch guardian_runs\
         \n\nCtrl-C stops it.\n"
    );
    let signal = super::shutdown_on_signal();
    tokio::select! {
        _ = signal.cancelled() => {}
        _ = fleet.shutdown.cancelled() => {}
    }
    fleet.stop().await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn scan(
    settings: Arc<Settings>,
    target: &str,
    apply: bool,
    demo: bool,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let fleet = start(settings, demo, false, true).await?;
    let outcome = async {
        let accepted = crate::client::request_run(&fleet.bus, target, !apply).await?;
        let record =
            crate::client::follow(&fleet.bus, &accepted.run_id, Duration::from_secs(3600)).await?;
        super::run::print_record(&record, format)?;
        anyhow::Ok(super::run::exit_code(record.status))
    }
    .await;
    fleet.stop().await?;
    outcome
}
