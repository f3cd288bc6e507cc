//! `guardian run` (and the run half of `guardian scan`): start a run through the
//! `guardian.run` service, print its id at once, and with `--wait` follow its record with
//! a progress bar on a terminal (progress lines otherwise) until it ends.

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::Duration;

use super::exit::{self, CliError, Exit};
use super::{Format, Ui, render};
use crate::bus::{Bus, RUNS_BUCKET};
use crate::client::{ClientError, follow_with, open_bucket, request_run};
use crate::store::runs::{RunRecord, RunStore};

/// Progress of a followed run on stderr: a bar on a terminal, a line per change elsewhere
/// (so a log file or CI output shows the run id and where the run got to).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last: String,
    quiet: bool,
}

impl Progress {
    fn start(run_id: &str, quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {msg} [{bar:30}] {pos}/{len} repositories {elapsed}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            crate::telemetry::logs::begin_progress(&bar);
            bar
        });
        let progress = Progress {
            bar,
            last: String::new(),
            quiet,
        };
        if let Some(bar) = &progress.bar {
            bar.set_message(format!("run {run_id}"));
        }
        progress
    }

    fn update(&mut self, record: &RunRecord) {
        let done = record.repos_done + record.repos_failed + record.repos_stalled;
        if let Some(bar) = &self.bar {
            bar.set_length(u64::from(record.repos_total));
            bar.set_position(u64::from(done));
            bar.set_message(record.status.as_str().to_string());
            return;
        }
        let line = format!(
            "run {}: {}, {done}/{} repositories",
            record.run_id,
            record.status.as_str(),
            record.repos_total
        );
        if !self.quiet && line != self.last {
            eprintln!("{line}");
            self.last = line;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            crate::telemetry::logs::end_progress();
            bar.finish_and_clear();
        }
    }
}

pub async fn run(
    bus: &Bus,
    target: &str,
    dry_run: bool,
    wait: bool,
    format: Format,
    timeout: Duration,
    ui: &Ui,
) -> anyhow::Result<ExitCode> {
    if wait {
        return start_and_follow(bus, target, dry_run, format, timeout, ui).await;
    }
    let accepted = request_run(bus, target, dry_run).await?;
    match format {
        Format::Json => super::emit(&format!("{}\n", serde_json::to_string(&accepted)?)),
        Format::Table => super::emit(&format!("run {} {}\n", accepted.run_id, accepted.status)),
    }
    Ok(ExitCode::SUCCESS)
}

/// Starts a run, says its id on stderr at once, follows it and prints the result on stdout.
pub async fn start_and_follow(
    bus: &Bus,
    target: &str,
    dry_run: bool,
    format: Format,
    timeout: Duration,
    ui: &Ui,
) -> anyhow::Result<ExitCode> {
    let accepted = request_run(bus, target, dry_run).await?;
    if !ui.quiet {
        eprintln!(
            "run {} {}: {target}{}",
            accepted.run_id,
            accepted.status,
            if dry_run { " (dry run)" } else { "" }
        );
    }
    let mut progress = Progress::start(&accepted.run_id, ui.quiet);
    let followed = follow_with(bus, &accepted.run_id, timeout, |r| progress.update(r)).await;
    drop(progress);
    match followed {
        Ok(record) => {
            print_record(bus, &record, format).await?;
            Ok(exit::for_status(record.status).into())
        }
        Err(ClientError::Timeout {
            run_id,
            timeout,
            last,
        }) => {
            if let Some(record) = last {
                print_record(bus, &record, format).await?;
            }
            Err(CliError::new(
                Exit::Timeout,
                format!(
                    "run {run_id} did not finish within {}",
                    humantime::format_duration(timeout)
                ),
            )
            .hint(format!(
                "it keeps going without this command: `guardian runs show {run_id}`"
            ))
            .into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Prints a run: JSON (the record, with `repos`: each repository's progress), or the
/// summary block followed by what happened (or would happen) in each repository.
pub async fn print_record(bus: &Bus, record: &RunRecord, format: Format) -> anyhow::Result<()> {
    let store = RunStore::new(open_bucket(bus, RUNS_BUCKET).await?);
    let progress = store.repo_progress(&record.run_id).await?;
    match format {
        Format::Json => {
            let mut value = serde_json::to_value(record)?;
            if let Some(map) = value.as_object_mut() {
                map.insert("repos".into(), serde_json::to_value(&progress)?);
            }
            super::emit(&format!("{}\n", serde_json::to_string_pretty(&value)?));
        }
        Format::Table => {
            super::emit(&render::record(record));
            let repos = render::repos(&render::repo_lines(record, &progress));
            if !repos.is_empty() {
                super::emit(&format!("\n{repos}"));
            }
        }
    }
    Ok(())
}
