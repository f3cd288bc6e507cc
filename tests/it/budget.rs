//! The fleet-wide GitHub API budget: several worker processes together keep to limits
//! the double enforces (and answers with secondary-limit 403s when exceeded), use most of
//! them, and show writes waiting for budget on the run record.
//!
//! Utilisation, as measured here: the points the double admitted (a GET 1, a write 5)
//! between the first and the last request it admitted (the busy period), divided by the
//! points the enforced rate allows over that period, `cap × period ÷ window`. A sliding
//! window lets a full window's points go out at once at the start, so a short period can
//! come out above 1. `benches/fleet.rs` measures the same over the whole run instead.

use std::time::{Duration, Instant};

use github_double::{RepoOptions, SecondaryLimits};
use repo_guardian::store::runs::RunStore;

use crate::helpers::{Harness, open_and_duplicates};

/// Points admitted ÷ points the rate allows between the first and last admitted request.
fn utilisation(admitted: &[(Instant, u32)], cap: u32, window: Duration) -> f64 {
    let (Some(first), Some(last)) = (
        admitted.iter().map(|(t, _)| *t).min(),
        admitted.iter().map(|(t, _)| *t).max(),
    ) else {
        return 0.0;
    };
    let points: u32 = admitted.iter().map(|(_, p)| p).sum();
    let allowed = f64::from(cap) * (last - first).as_secs_f64() / window.as_secs_f64();
    f64::from(points) / allowed
}

fn refused(h: &Harness) -> usize {
    h.double
        .requests()
        .iter()
        .filter(|r| r.status == 403 || r.status == 429)
        .count()
}

fn budget_env(h: &mut Harness, pairs: &[(&str, &str)]) {
    for (k, v) in pairs {
        h.worker_env
            .insert(format!("GUARDIAN__GITHUB__BUDGET__{k}"), v.to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_keep_to_a_request_rate_and_use_most_of_it() {
    const CAP: u32 = 400;
    let window = Duration::from_secs(5);
    let mut h = Harness::start().await;
    let repos = h.seed_org("budget-org", 300, 0);
    h.double.set_rate_limit(1_000_000, 1_000_000);
    budget_env(
        &mut h,
        &[("WINDOW", "5s"), ("REQUESTS_PER_MINUTE", &CAP.to_string())],
    );
    for _ in 0..3 {
        h.spawn_worker().await;
    }
    h.double.set_secondary_limits(SecondaryLimits {
        points: Some(CAP),
        window,
        ..Default::default()
    });
    let started = Instant::now();
    let accepted = repo_guardian::client::request_run(&h.bus, "org:budget-org", false)
        .await
        .expect("run accepted");
    let record = repo_guardian::client::follow(&h.bus, &accepted.run_id, Duration::from_secs(300))
        .await
        .unwrap_or_else(|e| panic!("run: {e}; logs:\n{}", h.logs()));
    let took = started.elapsed();
    assert_eq!(record.status.as_str(), "succeeded", "{:?}", record.summary);
    assert_eq!(record.repos_done, 300);

    let admitted = h.double.secondary_admitted();
    let used = utilisation(&admitted, CAP, window);
    let points: u32 = admitted.iter().map(|(_, p)| p).sum();
    eprintln!(
        "budget: {} requests, {points} points in {took:?}, utilisation {used:.3}, {} in flight at most",
        admitted.len(),
        h.double.max_requests_in_flight()
    );
    assert_eq!(
        h.double.secondary_limit_violations(),
        0,
        "the double refused requests"
    );
    assert_eq!(refused(&h), 0, "the fleet received 403/429 answers");
    assert!(
        used >= 0.9,
        "the fleet used {used:.3} of the allowed rate ({points} points in {took:?})"
    );
    // The waits show on the dashboard's metric.
    let waits = h
        .metric_sum(
            "guardian_github_budget_wait_seconds_count",
            &[("kind", "request")],
        )
        .await;
    assert!(waits > 0.0, "no request waited for budget");
    let (open, duplicates) = open_and_duplicates(&h.issues("budget-org", &repos));
    assert_eq!((open, duplicates), (0, 0));
}

/// Issues a repository without any file, protection or CI gets from the default
/// policies: readme, license, security-policy, codeowners, branch-protection,
/// dependency-updates.
const FINDINGS_PER_BARE_REPO: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_run_files_its_issues_at_the_content_creation_pace_and_shows_them_deferred() {
    const CREATIONS: u32 = 20;
    let window = Duration::from_secs(5);
    let mut h = Harness::start().await;
    let repos: Vec<String> = (0..150usize.div_ceil(FINDINGS_PER_BARE_REPO))
        .map(|i| {
            let name = format!("bare-{i:02}");
            h.double.add_repo("pace-org", &name, RepoOptions::default());
            name
        })
        .collect();
    h.double.set_rate_limit(1_000_000, 1_000_000);
    budget_env(
        &mut h,
        &[
            ("WINDOW", "5s"),
            ("WRITES_PER_MINUTE", &CREATIONS.to_string()),
        ],
    );
    // Writes wait for budget while their repository's lease is held: keep it longer than
    // the harness's 3 s, as in production (60 s).
    h.worker_env
        .insert("GUARDIAN__WORKER__LEASE_TTL".into(), "30s".into());
    for _ in 0..3 {
        h.spawn_worker().await;
    }
    h.double.set_secondary_limits(SecondaryLimits {
        content_creation: Some(CREATIONS),
        window,
        ..Default::default()
    });
    let run_id = h.start_run("org:pace-org").await;
    let runs = RunStore::new(h.bus.kv(repo_guardian::bus::RUNS_BUCKET).await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut most_deferred = 0;
    let mut shown = String::new();
    let record = loop {
        let view = runs.view(&run_id).await.unwrap().expect("run record");
        if view.status.is_final() {
            break view;
        }
        if view.deferred_writes > most_deferred {
            most_deferred = view.deferred_writes;
            assert!(view.writes_resume_at.is_some(), "{view:?}");
            if shown.is_empty() {
                shown = runs_show(&h, &run_id);
            }
        }
        assert!(
            Instant::now() < deadline,
            "run not done in 120s: {view:?}; logs:\n{}",
            h.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(record.status.as_str(), "succeeded", "{:?}", record.summary);
    let issues = h.issues("pace-org", &repos);
    let (open, duplicates) = open_and_duplicates(&issues);
    assert!(open >= 150, "{open} issues filed");
    assert_eq!(duplicates, 0);
    let failed: Vec<String> = h
        .logs()
        .lines()
        .filter(|l| l.contains("step failed"))
        .map(str::to_string)
        .collect();
    // A step retried after filing some of its issues finds them again by their markers and
    // counts them unchanged: every issue is accounted for either way.
    assert_eq!(
        (record.issues.created + record.issues.unchanged) as usize,
        open,
        "{:?}",
        record.issues
    );
    if !failed.is_empty() {
        eprintln!("pace: steps retried:\n{}", failed.join("\n"));
    }
    assert_eq!(
        h.double.secondary_limit_violations(),
        0,
        "the double refused requests"
    );
    assert_eq!(refused(&h), 0, "the fleet received 403/429 answers");
    assert!(most_deferred > 0, "no deferred writes were ever shown");
    assert!(
        shown.contains("issue writes waiting for the GitHub write budget"),
        "runs show did not tell the deferred writes:\n{shown}"
    );
    // Done: nothing waits any more.
    assert_eq!(runs.deferred_writes(&run_id).await.unwrap(), (0, None));
    let creations = h
        .double
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    eprintln!("pace: {creations} creations, at most {most_deferred} writes deferred at once");
}

/// `guardian runs show RUN_ID` as a person would type it.
fn runs_show(h: &Harness, run_id: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_guardian"))
        .args(["runs", "show", run_id])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GUARDIAN__NATS__URL", &h.nats.url)
        .output()
        .expect("guardian runs show");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
