//! `guardian run`: starts a run through the `guardian.run` service and, with `--wait`,
//! follows its record in `guardian_runs` with a progress bar until it ends.

use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt as _;

use super::Format;
use crate::bus::{Bus, RUN_ENDPOINT, RUNS_BUCKET};
use crate::service::RunAccepted;
use crate::store::runs::{RunRecord, RunStatus};

/// Exit code of a finished run: 0 only for `succeeded`.
pub fn exit_code(status: RunStatus) -> ExitCode {
    match status {
        RunStatus::Succeeded => ExitCode::SUCCESS,
        RunStatus::Partial => ExitCode::from(2),
        RunStatus::Failed => ExitCode::from(3),
        RunStatus::Queued | RunStatus::Running => ExitCode::from(4),
    }
}

/// Sends a `guardian.run` request; a service error reply becomes an error naming the problem.
pub async fn request_run(bus: &Bus, target: &str, dry_run: bool) -> anyhow::Result<RunAccepted> {
    let payload = serde_json::json!({ "target": target, "dry_run": dry_run }).to_string();
    let reply = tokio::time::timeout(
        Duration::from_secs(15),
        bus.client.request(RUN_ENDPOINT, payload.into()),
    )
    .await
    .map_err(|_| anyhow::anyhow!("no answer from {RUN_ENDPOINT} within 15s: is a worker running?"))?
    .map_err(|e| anyhow::anyhow!("{RUN_ENDPOINT}: {e} (is a worker running?)"))?;
    if let Some(headers) = &reply.headers
        && let Some(error) = headers.get("Nats-Service-Error")
    {
        let code = headers
            .get("Nats-Service-Error-Code")
            .map(|c| c.as_str().to_string())
            .unwrap_or_default();
        anyhow::bail!("run refused ({code}): {}", error.as_str());
    }
    Ok(serde_json::from_slice(&reply.payload)?)
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

/// Watches the run record until it is final, drawing progress on a terminal.
pub async fn follow(bus: &Bus, run_id: &str, timeout: Duration) -> anyhow::Result<RunRecord> {
    let kv = bus.kv(RUNS_BUCKET).await?;
    let mut watch = kv
        .watch_with_history(run_id)
        .await
        .map_err(|e| anyhow::anyhow!("watching run {run_id}: {e}"))?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {pos}/{len} repositories",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(format!("run {run_id}"));
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let next = tokio::time::timeout_at(deadline, watch.next())
            .await
            .map_err(|_| anyhow::anyhow!("run {run_id} did not finish within {timeout:?}"))?;
        let Some(entry) = next else {
            anyhow::bail!("watch on run {run_id} ended");
        };
        let entry = entry.map_err(|e| anyhow::anyhow!("watching run {run_id}: {e}"))?;
        let Ok(record) = crate::store::decode::<RunRecord>(run_id, &entry.value) else {
            continue;
        };
        bar.set_length(u64::from(record.repos_total));
        bar.set_position(u64::from(record.repos_done + record.repos_failed));
        bar.set_message(format!("run {run_id} {}", record.status.as_str()));
        if record.status.is_final() {
            bar.finish_and_clear();
            return Ok(record);
        }
    }
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
