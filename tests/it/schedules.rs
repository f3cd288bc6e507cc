//! Schedules across a fleet: three workers fire each window once, and a fleet that was down
//! for several windows fires one catch-up run, not one per missed window.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::helpers::Harness;

const PERIOD: Duration = Duration::from_secs(10);

fn runs_between(
    runs: &[repo_guardian::store::runs::RunRecord],
    from: SystemTime,
    to: SystemTime,
) -> usize {
    runs.iter()
        .filter(|r| {
            let at = SystemTime::from(r.created_at);
            at >= from && at < to
        })
        .count()
}

/// The start of the next epoch-aligned window after `t`.
fn next_window(t: SystemTime) -> SystemTime {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .expect("after epoch")
        .as_millis() as u64;
    let period = PERIOD.as_millis() as u64;
    UNIX_EPOCH + Duration::from_millis(ms - ms % period + period)
}

async fn sleep_until(t: SystemTime) {
    if let Ok(d) = t.duration_since(SystemTime::now()) {
        tokio::time::sleep(d).await;
    }
}

#[tokio::test]
async fn three_workers_fire_each_window_once_and_catch_up_once_after_an_outage() {
    let mut h = Harness::start().await;
    h.double.add_org("octo");
    h.seed_repo("octo", "hello", true, Some(1));
    std::fs::write(
        h.dir.path().join("guardian.toml"),
        "[[schedules]]\nname = \"every-10s\"\ntarget = \"octo/hello\"\nevery = \"10s\"\n",
    )
    .expect("guardian.toml");
    for _ in 0..3 {
        h.spawn_worker().await;
    }

    // One minute with three workers: six window starts, six runs (not eighteen).
    let from = SystemTime::now();
    let to = from + 6 * PERIOD;
    sleep_until(to + Duration::from_secs(1)).await;
    let runs = h.runs_of("octo/hello").await;
    let fired = runs_between(&runs, from, to);
    assert!(
        (5..=7).contains(&fired),
        "{fired} runs in 60s with three workers; logs:\n{}",
        h.logs()
    );

    // All workers down for three windows.
    for i in 0..3 {
        h.kill_worker(i);
    }
    let stopped = SystemTime::now();
    sleep_until(stopped + 3 * PERIOD).await;
    // Restart just after a window starts, so the catch-up and the next window's run are
    // told apart by the clock alone.
    sleep_until(next_window(SystemTime::now()) + Duration::from_millis(300)).await;
    for _ in 0..3 {
        h.spawn_worker().await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let first = loop {
        let runs = h.runs_of("octo/hello").await;
        if let Some(first) = runs
            .iter()
            .find(|r| SystemTime::from(r.created_at) >= stopped)
        {
            break SystemTime::from(first.created_at);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no catch-up run after the restart; logs:\n{}",
            h.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let window_end = next_window(first);
    sleep_until(window_end).await;
    let runs = h.runs_of("octo/hello").await;
    assert_eq!(
        runs_between(&runs, stopped, window_end),
        1,
        "one catch-up run for three missed windows"
    );
}
