//! `guardian run`: starts a run through the `guardian.run` service and, with `--wait`,
//! follows its record in `guardian_runs` with a progress bar until it ends.

use std::process::ExitCode;
use std::time::Duration;

use super::Format;
use crate::bus::Bus;
use crate::client::{follow, request_run};
use crate::store::runs::{RunRecord, RunStatus};

/// Exit code of a finished run: 0 only for `succeeded`.
pub fn exit_code(status: RunStatus) -> ExitCode {
    match status {
        RunStatus::Succeeded => ExitCode::SUCCESS,
        RunStatus::Partial => ExitCode::from(2),
        RunStatus::Failed | RunStatus::Stalled => ExitCode::from(3),
        RunStatus::Queued | RunStatus::Running => ExitCode::from(4),
    }
}

pub async fn run(
    bus: &Bus,
    target: &str,
    dry_run: bool,
    wait: bool,
    format: Format,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let accepted = request_run(bus, target, dry_run).await?;
    if !wait {
        match format {
            Format::Json => println!("{}", serde_json::to_string(&accepted)?),
            Format::Table => println!("run {} {}", accepted.run_id, accepted.status),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let record = follow(bus, &accepted.run_id, timeout).await?;
    print_record(&record, format)?;
    Ok(exit_code(record.status))
}

pub fn print_record(record: &RunRecord, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(record)?),
        Format::Table => {
            println!("run       {}", record.run_id);
            println!(
                "target    {}{}",
                record.target,
                if record.dry_run { " (dry run)" } else { "" }
            );
            println!("status    {}", record.status.as_str());
            println!(
                "repos     {} total, {} reconciled, {} failed",
                record.repos_total, record.repos_done, record.repos_failed
            );
            println!("findings  {}", record.findings);
            let (label, c) = if record.dry_run {
                ("planned", &record.planned)
            } else {
                ("issues", &record.issues)
            };
            println!(
                "{label:<9} {} created, {} updated, {} reopened, {} closed, {} unchanged",
                c.created, c.updated, c.reopened, c.closed, c.unchanged
            );
            if !record.llm_tokens.is_zero() {
                let t = &record.llm_tokens;
                println!(
                    "llm       {} prompt + {} completion tokens",
                    t.prompt, t.completion
                );
            }
            for e in &record.errors {
                println!(
                    "error     [{}] {}: {}",
                    e.step,
                    e.repo.as_deref().unwrap_or("-"),
                    e.message
                );
            }
            if let Some(s) = &record.summary {
                println!("summary   {s}");
            }
        }
    }
    Ok(())
}
