//! A client of the fleet: start a run through `guardian.run` and follow its record in
//! `guardian_runs` until it is final. Used by the CLI and by anything embedding the fleet.

use std::time::Duration;

use futures::StreamExt as _;

use crate::bus::{Bus, RUN_ENDPOINT, RUNS_BUCKET};
use crate::service::RunAccepted;
use crate::store::runs::RunRecord;

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
