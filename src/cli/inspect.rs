//! `guardian runs …` and `guardian dlq …`: read runs and dead letters, replay dead letters.

use std::process::ExitCode;

use super::exit::CliError;
use super::render::{self, Table};
use super::{DlqCommand, Format, RunsCommand};
use crate::bus::{Bus, DLQ_STREAM, RUNS_BUCKET, dlq};
use crate::client::{open_bucket, require_stream};
use crate::store::runs::RunStore;

/// A run id as the service hands them out (a UUID); anything else is a typo, said before
/// asking the server.
pub fn parse_run_id(raw: &str) -> Result<String, CliError> {
    let trimmed = raw.trim();
    uuid::Uuid::parse_str(trimmed)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| {
            CliError::usage(format!(
                "invalid run id `{raw}`: run ids look like 01a2318c-8631-73fa-813e-108d1493fe58"
            ))
            .hint("`guardian runs list` shows the recent ones")
        })
}

pub async fn runs(bus: &Bus, command: RunsCommand) -> anyhow::Result<ExitCode> {
    let store = RunStore::new(open_bucket(bus, RUNS_BUCKET).await?);
    match command {
        RunsCommand::List { limit, format } => {
            let mut runs = store.list().await?;
            runs.truncate(limit);
            match format {
                Format::Json => super::emit(&format!("{}\n", serde_json::to_string_pretty(&runs)?)),
                Format::Table if runs.is_empty() => {
                    super::emit("no runs yet (start one with `guardian run TARGET`)\n")
                }
                Format::Table => {
                    let mut table = Table::new(&[
                        "RUN",
                        "STATUS",
                        ">REPOS",
                        ">FINDINGS",
                        "CREATED (UTC)",
                        "TARGET",
                    ]);
                    for r in runs {
                        table.row(vec![
                            r.run_id.clone(),
                            r.status.as_str().to_string(),
                            r.repos_total.to_string(),
                            r.findings.to_string(),
                            render::short_time(r.created_at),
                            format!("{}{}", r.target, if r.dry_run { " (dry run)" } else { "" }),
                        ]);
                    }
                    super::emit(&table.render());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Show { run_id, format } => {
            let run_id = parse_run_id(&run_id)?;
            match store.view(&run_id).await? {
                Some(record) => {
                    super::run::print_record(bus, &record, format).await?;
                    Ok(ExitCode::SUCCESS)
                }
                None => Err(CliError::error(format!("run {run_id} not found"))
                    .hint(format!(
                        "`guardian runs list` shows the recent runs; records live in {RUNS_BUCKET}"
                    ))
                    .into()),
            }
        }
    }
}

pub async fn dlq(bus: &Bus, command: DlqCommand) -> anyhow::Result<ExitCode> {
    require_stream(bus, DLQ_STREAM).await?;
    match command {
        DlqCommand::List { format } => {
            let letters = dlq::list(bus).await?;
            match format {
                Format::Json => {
                    super::emit(&format!("{}\n", serde_json::to_string_pretty(&letters)?))
                }
                Format::Table if letters.is_empty() => super::emit("no dead letters\n"),
                Format::Table => {
                    let mut table =
                        Table::new(&[">ID", "STEP", ">DELIVERED", "RUN", "WHEN (UTC)", "ERROR"]);
                    for l in letters {
                        table.row(vec![
                            l.id.to_string(),
                            l.letter.step.as_str().to_string(),
                            l.letter.delivered.to_string(),
                            l.letter.run_id.clone().unwrap_or_else(|| "-".into()),
                            render::short_time(l.letter.dead_lettered_at),
                            l.letter.error.clone(),
                        ]);
                    }
                    super::emit(&table.render());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Replay { id } => {
            let replayed = dlq::replay(bus, id).await?;
            super::emit(&format!("replayed {} dead letter(s)\n", replayed.len()));
            Ok(ExitCode::SUCCESS)
        }
    }
}
