//! What operators and users rely on: the CLI's dry run, valid GitHub API usage, secrets
//! that never leak, the force-dry-run kill switch, and graceful drain on SIGTERM.

use std::process::Command;
use std::time::Duration;

use async_nats::jetstream::consumer;
use futures::StreamExt as _;
use repo_guardian::store::runs::RunStatus;

use crate::helpers::{Harness, TOKEN, open_and_duplicates};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_dry_run_prints_the_record_files_nothing_and_speaks_valid_github_api() {
    let mut h = Harness::start().await;
    h.seed_org("solo-org", 1, 1);
    h.double.set_protection("solo-org", "repo-00", None);
    h.spawn_worker().await;
    h.double.clear_requests();

    let out = Command::new(env!("CARGO_BIN_EXE_guardian"))
        .args([
            "run",
            "solo-org/repo-00",
            "--dry-run",
            "--wait",
            "--format",
            "json",
        ])
        .current_dir(h.dir.path())
        .env("GUARDIAN__NATS__URL", &h.nats.url)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let record: serde_json::Value = serde_json::from_str(&stdout).expect("JSON run record");
    assert_eq!(record["status"], "succeeded");
    assert!(record["run_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(record["dry_run"], true);
    assert_eq!(
        record["planned"]["created"], 2,
        "license and branch-protection: {record}"
    );
    assert_eq!(h.double.write_count(), 0, "a dry run writes nothing");

    let requests = h.double.requests();
    assert!(requests.len() >= 4, "{requests:?}");
    let spec = github_double::openapi::default_spec_path();
    if std::env::var("GUARDIAN_SKIP_OPENAPI").as_deref() == Ok("1") {
        eprintln!("GUARDIAN_SKIP_OPENAPI=1: OpenAPI request check skipped");
    } else {
        let problems = github_double::openapi::check_requests(&spec, &requests);
        assert!(
            problems.is_empty(),
            "requests outside GitHub's API: {problems:#?}"
        );
    }
    // And the token was really sent, on every request.
    assert!(requests.iter().all(|r| {
        r.authorization
            .as_deref()
            .is_some_and(|a| a.ends_with(TOKEN))
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_never_appears_in_logs_events_records_or_issues() {
    let mut h = Harness::start().await;
    let repos = h.seed_org("leak-org", 3, 3);
    // A failing request too, so error paths are logged.
    h.double.inject_fault(github_double::Fault {
        method: Some("GET".into()),
        path_prefix: "/repos/leak-org/repo-01/branches".into(),
        status: 502,
        retry_after: None,
        times: 1,
    });
    h.spawn_worker().await;
    let record = h.run("org:leak-org", false).await;
    assert_eq!(record.status, RunStatus::Succeeded, "{record:?}");
    assert_eq!(open_and_duplicates(&h.issues("leak-org", &repos)), (3, 0));

    let logs = h.logs();
    assert!(
        logs.contains("step failed"),
        "the injected fault was logged"
    );
    assert!(!logs.contains(TOKEN), "token in worker logs");
    let records = serde_json::to_string(&h.run("org:leak-org", true).await).unwrap()
        + &serde_json::to_string(&record).unwrap();
    assert!(!records.contains(TOKEN), "token in a run record");
    for (_, issue) in h.issues("leak-org", &repos) {
        assert!(!format!("{}{}{:?}", issue.title, issue.body, issue.comments).contains(TOKEN));
    }
    let stream = h.bus.js.get_stream("GUARDIAN_EVENTS").await.unwrap();
    let total = stream.get_info().await.unwrap().state.messages;
    let events = stream
        .create_consumer(consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut messages = events.messages().await.unwrap().take(total as usize);
    let mut seen = 0;
    while let Some(m) = messages.next().await {
        let m = m.unwrap();
        assert!(
            !String::from_utf8_lossy(&m.payload).contains(TOKEN),
            "token in an event"
        );
        seen += 1;
    }
    assert!(seen > 10, "events of both runs were read: {seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_dry_run_stops_github_writes_while_a_run_is_in_flight() {
    let mut h = Harness::start().await;
    let repos = h.seed_org("switch-org", 20, 20);
    h.double.set_latency(Duration::from_millis(60));
    h.spawn_worker().await;
    let run_id = h.start_run("org:switch-org").await;
    h.wait_for_open_issues("switch-org", &repos, 2).await;
    let flags = h.bus.kv("guardian_flags").await.unwrap();
    flags.put("force_dry_run", "true".into()).await.unwrap();
    // Writes already on the wire may land; none may start afterwards.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let writes = h.double.write_count();
    let record = h.follow(&run_id).await;
    assert_eq!(
        h.double.write_count(),
        writes,
        "a GitHub write after force_dry_run"
    );
    assert_eq!(record.status, RunStatus::Succeeded);
    let filed = open_and_duplicates(&h.issues("switch-org", &repos)).0 as u32;
    assert!(filed < 20, "the switch came too late to matter: {filed}");
    assert_eq!(record.issues.created, filed, "{record:?}");
    assert_eq!(
        record.issues.created + record.planned.created,
        20,
        "the rest is reported as planned"
    );

    // Switched off again, the next run files the rest.
    flags.delete("force_dry_run").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.double.set_latency(Duration::ZERO);
    let rest = h.run("org:switch-org", false).await;
    assert_eq!(rest.issues.created, 20 - filed);
    assert_eq!(
        open_and_duplicates(&h.issues("switch-org", &repos)),
        (20, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_steps_and_exits_zero() {
    let mut h = Harness::start().await;
    let repos = h.seed_org("drain-org", 6, 6);
    h.double.set_latency(Duration::from_millis(300));
    h.spawn_worker().await;
    let run_id = h.start_run("org:drain-org").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pid = h.workers[0].child.id();
    let started = std::time::Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = h.workers[0].child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}\n{}", h.logs());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "drain took {:?}",
        started.elapsed()
    );
    assert!(h.logs().contains("draining"));

    // Whatever was handed back is finished by the next worker, without duplicates.
    h.double.set_latency(Duration::ZERO);
    h.spawn_worker().await;
    let record = h.follow(&run_id).await;
    assert_eq!(record.status, RunStatus::Succeeded);
    assert_eq!(open_and_duplicates(&h.issues("drain-org", &repos)), (6, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_even_when_nats_is_gone() {
    let mut h = Harness::start().await;
    h.spawn_worker().await;
    h.nats.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = h.workers[0].child.id();
    let started = std::time::Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let deadline = started + Duration::from_secs(30);
    loop {
        if let Some(status) = h.workers[0].child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status:?}\n{}", h.logs());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "worker hangs without NATS:\n{}",
            h.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every metric of the observability contract, by name.
const CONTRACT_METRICS: [&str; 10] = [
    "guardian_run_duration_seconds",
    "guardian_step_duration_seconds",
    "guardian_llm_tokens_total",
    "guardian_issues_total",
    "guardian_errors_total",
    "guardian_github_requests_total",
    "guardian_github_rate_limit_remaining",
    "guardian_queue_pending",
    "guardian_steps_inflight",
    "guardian_build_info",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_worker_exposes_every_contract_metric_and_passes_promtool() {
    let mut h = Harness::start().await;
    h.spawn_worker().await;
    let url = format!("http://127.0.0.1:{}/metrics", h.workers[0].ops_port);
    let page = reqwest::get(&url).await.unwrap().text().await.unwrap();
    for name in CONTRACT_METRICS {
        assert!(
            page.lines().any(|l| l.starts_with(name)),
            "{name} missing before any run:\n{page}"
        );
    }
    assert!(page.contains(r#"guardian_queue_pending{step="scan"}"#));
    assert!(page.contains(r#"guardian_issues_total{action="created"} 0"#));
    if std::env::var("GUARDIAN_SKIP_PROMTOOL").as_deref() == Ok("1") {
        eprintln!("GUARDIAN_SKIP_PROMTOOL=1: promtool check skipped");
        return;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/setup.sh installs it)");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
