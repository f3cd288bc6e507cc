//! `guardian runs …` and `guardian dlq …`: read runs and dead letters, replay dead letters.

use std::process::ExitCode;

use super::{DlqCommand, Format, RunsCommand};
use crate::bus::{Bus, RUNS_BUCKET, dlq};
use crate::store::runs::RunStore;

pub async fn runs(bus: &Bus, command: RunsCommand) -> anyhow::Result<ExitCode> {
    let store = RunStore::new(bus.kv(RUNS_BUCKET).await?);
    match command {
        RunsCommand::List { limit, format } => {
            let mut runs = store.list().await?;
            runs.truncate(limit);
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&runs)?),
                Format::Table => {
                    println!(
                        "{:<36}  {:<9}  {:>5}  {:>8}  {:<25}  TARGET",
                        "RUN", "STATUS", "REPOS", "FINDINGS", "CREATED"
                    );
                    for r in runs {
                        let created = r
                            .created_at
                            .format(&time::format_description::well_known::Rfc3339)
                            .unwrap_or_default();
                        println!(
                            "{:<36}  {:<9}  {:>5}  {:>8}  {:<25}  {}{}",
                            r.run_id,
                            r.status.as_str(),
                            r.repos_total,
                            r.findings,
                            created,
                            r.target,
                            if r.dry_run { " (dry run)" } else { "" }
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Show { run_id, format } => match store.get(&run_id).await? {
            Some(record) => {
                super::run::print_record(&record, format)?;
                Ok(ExitCode::SUCCESS)
            }
            None => anyhow::bail!("run {run_id} not found in {RUNS_BUCKET}"),
        },
    }
}

pub async fn dlq(bus: &Bus, command: DlqCommand) -> anyhow::Result<ExitCode> {
    match command {
        DlqCommand::List { format } => {
            let letters = dlq::list(bus).await?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&letters)?),
                Format::Table => {
                    if letters.is_empty() {
                        println!("no dead letters");
                    }
                    for l in letters {
                        println!(
                            "{:>6}  {:<9}  delivered {:>2}  run {:<36}  {}",
                            l.id,
                            l.letter.step.as_str(),
                            l.letter.delivered,
                            l.letter.run_id.as_deref().unwrap_or("-"),
                            l.letter.error
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Replay { id } => {
            let replayed = dlq::replay(bus, id).await?;
            println!("replayed {} dead letter(s)", replayed.len());
            Ok(ExitCode::SUCCESS)
        }
    }
}
