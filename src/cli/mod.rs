//! The `guardian` command line: argument parsing and dispatch. Each command is a thin
//! shell around library code. Exit codes are defined once in [`exit::EXIT_CODES`],
//! printed by `--help` and documented in `docs/cli.md` (a test keeps them equal).

mod config_cmd;
mod connect;
pub mod exit;
mod inspect;
mod local;
mod render;
mod run;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

pub use exit::{EXIT_CODES, Exit};
pub use inspect::parse_run_id;

use crate::bus::Bus;
use crate::config::{LogFormat, Settings};
use crate::telemetry::{Console, logs};
use crate::{check, telemetry, worker};

/// `0.1.0 (3f2c1a9b7d4e)`: the crate version and the source revision it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("GUARDIAN_REVISION"),
    ")"
);

const EXAMPLES: &str = "\
Examples:
  guardian scan org:demo-org --demo          # try it: a local fleet checks a demo organisation
  guardian scan octo-org/hello-world         # dry run against GitHub (needs GITHUB_TOKEN)
  guardian dev --demo                        # a local fleet to send runs to
  guardian run org:octo-org --dry-run --wait # a run on the fleet at NATS_URL
  guardian runs show RUN_ID                  # what a run did, repository by repository
  guardian check .                           # file-based policies on a checkout, offline";

#[derive(Debug, Parser)]
#[command(
    name = "guardian",
    version = VERSION,
    about = "Keeps GitHub repositories healthy and safe",
    long_about = "Keeps GitHub repositories healthy and safe: checks repositories against \
                  security and hygiene policies and keeps one GitHub issue per finding, run \
                  by a fleet of workers over NATS JetStream.",
    after_help = EXAMPLES,
)]
pub struct Cli {
    /// Configuration file (default: ./guardian.toml when present).
    #[arg(long, global = true, env = "GUARDIAN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// More log lines (-v: progress of every step, -vv: debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Errors only: no progress, no warnings.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Colours on the terminal (`auto` honours NO_COLOR).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "auto",
        value_name = "WHEN"
    )]
    pub color: ColorChoice,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// Output format of inspection commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// How the command talks to the person running it.
#[derive(Debug, Clone, Copy)]
pub struct Ui {
    /// `-q`: nothing but the result and errors.
    pub quiet: bool,
    /// ANSI colours on stderr.
    pub color: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a fleet worker: provision, consume every step, serve /healthz /readyz /metrics.
    #[command(
        after_help = "Examples:\n  guardian worker\n  NATS_URL=nats://nats:4222 GITHUB_TOKEN=… guardian worker"
    )]
    Worker,
    /// Start a run through the `guardian.run` service.
    #[command(
        after_help = "Examples:\n  guardian run org:octo-org --wait\n  guardian run octo-org/hello-world --dry-run --wait --format json\n  guardian run user:octocat --wait --timeout 10m"
    )]
    Run {
        /// OWNER/REPO, org:NAME, user:NAME, or `installations` (every repository of every
        /// installation of the configured GitHub App).
        target: String,
        /// Plan issue changes without writing anything to GitHub.
        #[arg(long)]
        dry_run: bool,
        /// Follow the run until it ends; the exit code tells how it ended.
        #[arg(long)]
        wait: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// With --wait: give up waiting after this long (exit 4; the run goes on).
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
    #[command(
        after_help = "Examples:\n  guardian check .\n  guardian check ../service --format sarif > guardian.sarif"
    )]
    Check {
        /// The checkout to check.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: check::CheckFormat,
    },
    /// Create or update the streams, consumers and buckets.
    Provision,
    /// Local fleet: a worker in-process, on the NATS server at nats.url (started if none).
    #[command(
        after_help = "Examples:\n  guardian dev --demo\n  guardian dev                 # joins or starts nats-server at nats.url"
    )]
    Dev {
        /// Built-in GitHub double with the organisation demo-org, on a NATS server of its own.
        #[arg(long)]
        demo: bool,
        /// With --demo: also serve a built-in deterministic OpenAI-compatible model double
        /// and review findings with it (see docs/llm.md).
        #[arg(long, requires = "demo")]
        demo_llm: bool,
    },
    /// One-shot run on an embedded fleet of its own (dry run unless --apply).
    #[command(
        after_help = "Examples:\n  guardian scan org:demo-org --demo\n  guardian scan octo-org/hello-world\n  guardian scan org:octo-org --apply --timeout 30m"
    )]
    Scan {
        /// OWNER/REPO, org:NAME, user:NAME, or `installations` (every repository of every
        /// installation of the configured GitHub App).
        target: String,
        /// Write issues (default: dry run).
        #[arg(long)]
        apply: bool,
        /// Use the built-in GitHub double with its demo organisation (`org:demo-org`).
        #[arg(long)]
        demo: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Give up after this long (exit 4).
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  guardian completions bash > ~/.local/share/bash-completion/completions/guardian\n  guardian completions zsh > \"${fpath[1]}/_guardian\"\n  guardian completions fish > ~/.config/fish/completions/guardian.fish"
    )]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Recent runs, newest first.
    List {
        /// How many runs.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// One run: status, counts, errors, and what happened in each repository.
    Show {
        /// The run id `guardian run` printed.
        run_id: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Dead letters, oldest first.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Put dead letters back on their work subject (all, or the one with this id).
    Replay {
        /// The dead letter's id from `guardian dlq list`.
        id: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// The complete built-in configuration (secrets left empty).
    Defaults {
        /// Output format.
        #[arg(long, value_enum, default_value = "toml")]
        format: config_cmd::ConfigFormat,
    },
}

/// The command tree with the exit-code table in the help (completions and docs tests
/// use it too).
pub fn command() -> clap::Command {
    let codes: String = EXIT_CODES
        .iter()
        .map(|(code, meaning)| format!("\n  {code}  {meaning}"))
        .collect();
    Cli::command().after_help(format!("{EXAMPLES}\n\nExit codes:{codes}"))
}

/// Parses arguments, loads configuration, starts telemetry and runs the command.
pub async fn main() -> ExitCode {
    let matches = match command().try_get_matches() {
        Ok(m) => m,
        Err(e) => return clap_exit(e),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => return clap_exit(e),
    };
    let ui = Ui {
        quiet: cli.quiet,
        color: use_color(cli.color),
    };
    match dispatch(cli, ui).await {
        Ok(code) => code,
        Err(e) => {
            let (exit, text) = exit::report(&e);
            if ui.color {
                eprintln!("\x1b[1;31merror\x1b[0m: {text}");
            } else {
                eprintln!("error: {text}");
            }
            exit.into()
        }
    }
}

/// Help and version exit 0; every usage error exits with [`Exit::Usage`].
fn clap_exit(e: clap::Error) -> ExitCode {
    let _ = e.print();
    if e.use_stderr() {
        Exit::Usage.into()
    } else {
        ExitCode::SUCCESS
    }
}

fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::io::stderr().is_terminal()
        }
    }
}

/// Workers log as configured (JSON in production). Interactive commands log short human
/// lines on a terminal, WARN and above unless `-v` (`dev` shows INFO: it is a console),
/// and the configured format when stderr is not a terminal.
fn console(cli: &Cli, settings: &Settings, color: bool) -> Console {
    let verbosity = if cli.quiet { -1 } else { cli.verbose as i8 };
    if matches!(cli.command, Command::Worker) {
        let mut console = Console::fleet(&settings.telemetry);
        if verbosity != 0 {
            console.default_filter = logs::filter_for(verbosity, logs::DEFAULT_FILTER);
        }
        return console;
    }
    let default = match cli.command {
        Command::Dev { .. } => logs::DEFAULT_FILTER,
        _ => logs::QUIET_FILTER,
    };
    let format = if std::io::stderr().is_terminal() {
        LogFormat::Human
    } else {
        settings.telemetry.log_format
    };
    Console {
        format,
        default_filter: logs::filter_for(verbosity, default),
        color,
    }
}

async fn dispatch(cli: Cli, ui: Ui) -> anyhow::Result<ExitCode> {
    // Commands that need neither configuration nor telemetry.
    match &cli.command {
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut command(), "guardian", &mut script);
            emit(&String::from_utf8_lossy(&script));
            return Ok(ExitCode::SUCCESS);
        }
        Command::Config {
            command: ConfigCommand::Defaults { format },
        } => {
            emit(&config_cmd::defaults(*format)?);
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let settings = Settings::load(cli.config.as_deref())?;
    let _telemetry =
        telemetry::init_with(&settings.telemetry, &console(&cli, &settings, ui.color))?;
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
            let bus = connect::nats(&settings.nats, "guardian-cli").await?;
            run::run(&bus, &target, dry_run, wait, format, timeout, &ui).await
        }
        Command::Runs { command } => {
            if let RunsCommand::Show { run_id, .. } = &command {
                parse_run_id(run_id)?;
            }
            let bus = connect::nats(&settings.nats, "guardian-cli").await?;
            inspect::runs(&bus, command).await
        }
        Command::Dlq { command } => {
            let bus = connect::nats(&settings.nats, "guardian-cli").await?;
            inspect::dlq(&bus, command).await
        }
        Command::Check { path, format } => {
            let selection = settings.policy_selection();
            // A checkout that cannot be checked exits 2 (see `exit::report`).
            let report = check::run(&path, &selection)?;
            for note in report.notes() {
                eprintln!("{note}");
            }
            emit(&report.render(format));
            Ok(ExitCode::from(report.exit_code() as u8))
        }
        Command::Provision => {
            let bus = connect::nats(&settings.nats, "guardian-cli").await?;
            let done = crate::bus::provision::provision(&bus, &settings).await?;
            emit(&format!(
                "provisioned streams {}; consumers {}; buckets {}\n",
                done.streams.join(", "),
                done.consumers.join(", "),
                done.buckets.join(", ")
            ));
            Ok(ExitCode::SUCCESS)
        }
        Command::Dev { demo, demo_llm } => local::dev(settings, demo, demo_llm).await,
        Command::Scan {
            target,
            apply,
            demo,
            format,
            timeout,
        } => {
            crate::domain::Target::parse(&target)?;
            let args = local::ScanArgs {
                target: &target,
                apply,
                demo,
                format,
                timeout,
            };
            local::scan(settings, args, &ui).await
        }
        Command::Completions { .. } | Command::Config { .. } => Ok(ExitCode::SUCCESS),
    }
}

/// Writes a command's result to stdout. A reader that went away (`guardian … | head`)
/// is not an error worth a panic: the rest is dropped.
pub fn emit(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
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
