//! The `guardian` command line: argument parsing and dispatch. Each command is a thin
//! shell around library code; exit codes are documented in `docs/cli.md`.

mod inspect;
mod local;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::bus::Bus;
use crate::config::{LogFormat, Settings, TelemetrySettings};
use crate::{check, telemetry, worker};

#[derive(Debug, Parser)]
#[command(
    name = "guardian",
    version,
    about = "Keeps GitHub repositories healthy and safe"
)]
pub struct Cli {
    /// Configuration file (default: ./guardian.toml when present).
    #[arg(long, global = true, env = "GUARDIAN_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// Output format of inspection commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a fleet worker: provision, consume every step, serve /healthz /readyz /metrics.
    Worker,
    /// Start a run through the `guardian.run` service.
    Run {
        /// OWNER/REPO, org:NAME or user:NAME.
        target: String,
        /// Plan issue changes without writing anything to GitHub.
        #[arg(long)]
        dry_run: bool,
        /// Follow the run until it ends; the exit code tells how it ended.
        #[arg(long)]
        wait: bool,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Give up waiting after this long (e.g. 30m).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Inspect runs.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
    },
    /// Inspect and replay dead letters.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Evaluate the file-based policies on a local checkout, offline.
    Check {
        #[arg(default_value = ".")]
        path: PathBuf,
        #[arg(long, value_enum, default_value = "table")]
        format: check::CheckFormat,
    },
    /// Create or update the streams, consumers and buckets.
    Provision,
    /// Local all-in-one fleet: starts nats-server if none answers, runs a worker in-process.
    Dev {
        /// Serve a built-in GitHub double with a demo organisation instead of GitHub.
        #[arg(long)]
        demo: bool,
        /// With --demo: also serve a built-in deterministic OpenAI-compatible model double
        /// and review findings with it (see docs/llm.md).
        #[arg(long, requires = "demo")]
        demo_llm: bool,
    },
    /// One-shot run on an embedded local fleet (dry run unless --apply).
    Scan {
        target: String,
        /// Write issues (default: dry run).
        #[arg(long)]
        apply: bool,
        /// Use the built-in GitHub double with its demo organisation (`org:demo-org`).
        #[arg(long)]
        demo: bool,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Recent runs, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// One run record.
    Show {
        run_id: String,
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Dead letters, oldest first.
    List {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Put dead letters back on their work subject (all, or the one with this id).
    Replay { id: Option<u64> },
}

/// Parses arguments, loads configuration, starts telemetry and runs the command.
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(cli.config.as_deref())?;
    // Workers log as configured (JSON in production); interactive commands log for humans.
    let is_fleet = matches!(cli.command, Command::Worker);
    let telemetry_settings = if is_fleet {
        settings.telemetry.clone()
    } else {
        TelemetrySettings {
            log_format: LogFormat::Human,
            ..settings.telemetry.clone()
        }
    };
    let _telemetry = telemetry::init(&telemetry_settings)?;
    let settings = Arc::new(settings);
    match cli.command {
        Command::Worker => {
            let bus = Bus::connect(&settings.nats, "guardian-worker").await?;
            let shutdown = shutdown_on_signal();
            worker::run(bus, settings, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            target,
            dry_run,
            wait,
            format,
            timeout,
        } => {
            // A typo is reported at once, not after connecting.
            crate::domain::Target::parse(&target)?;
            let bus = Bus::connect(&settings.nats, "guardian-cli").await?;
            run::run(&bus, &target, dry_run, wait, format, timeout).await
        }
        Command::Runs { command } => {
            let bus = Bus::connect(&settings.nats, "guardian-cli").await?;
            inspect::runs(&bus, command).await
        }
        Command::Dlq { command } => {
            let bus = Bus::connect(&settings.nats, "guardian-cli").await?;
            inspect::dlq(&bus, command).await
        }
        Command::Check { path, format } => {
            let selection = settings.policy_selection();
            let report = check::run(&path, &selection)?;
            print!("{}", report.render(format));
            Ok(ExitCode::from(report.exit_code() as u8))
        }
        Command::Provision => {
            let bus = Bus::connect(&settings.nats, "guardian-cli").await?;
            let done = crate::bus::provision::provision(&bus, &settings).await?;
            println!(
                "provisioned streams {}; consumers {}; buckets {}",
                done.streams.join(", "),
                done.consumers.join(", "),
                done.buckets.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Dev { demo, demo_llm } => local::dev(settings, demo, demo_llm).await,
        Command::Scan {
            target,
            apply,
            demo,
            format,
        } => {
            crate::domain::Target::parse(&target)?;
            local::scan(settings, &target, apply, demo, format).await
        }
    }
}

/// A token cancelled by SIGTERM or Ctrl-C.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = term.recv() => tracing::info!("SIGTERM received"),
                        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        cancel.cancel();
    });
    token
}
