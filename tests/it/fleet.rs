//! A run travels from trigger to GitHub issues: exactly one issue per open finding across
//! runs, fixes and regressions, with two workers side by side and a worker killed mid-run;
//! the run's counters, committed in batches by each worker, end every run exactly once.

use std::collections::BTreeMap;
use std::time::Duration;

use repo_guardian::store::runs::{IssueCounts, RepoOutcome, RunRecord, RunStatus, RunStore};

use crate::helpers::{Harness, open_and_duplicates};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_issue_per_finding_across_runs_fixes_and_regressions() {
    let mut h = Harness::start().await;
    let repos = h.seed_org("fleet-org", 50, 30);
    h.spawn_worker().await;
    h.spawn_worker().await;

    // Two triggers of the same organisation at once: one active run per target, so the
    // second answers with the first run; both workers race on its repositories.
    let a = repo_guardian::client::request_run(&h.bus, "org:fleet-org", false)
        .await
        .unwrap();
    let b = repo_guardian::client::request_run(&h.bus, "org:fleet-org", false)
        .await
        .unwrap();
    assert_eq!(
        b.run_id, a.run_id,
        "the second trigger names the active run"
    );
    assert!(b.existing && !a.existing);
    let ra = h.follow(&a.run_id).await;
    assert_eq!(ra.status, RunStatus::Succeeded);
    assert_eq!(ra.repos_total, 50);
    assert_eq!(ra.issues.created, 30, "{ra:?}");
    let (open, dups) = open_and_duplicates(&h.issues("fleet-org", &repos));
    assert_eq!((open, dups), (30, 0));
    for (_, issue) in h.issues("fleet-org", &repos) {
        assert!(issue.labels.contains(&"repo-guardian".to_string()));
        assert!(
            issue
                .body
                .contains("repo-guardian:fingerprint=license/missing")
        );
    }

    // Nothing changed: the next run writes nothing at all.
    assert!(h.double.write_count() >= 30, "the first runs wrote");
    h.double.clear_requests();
    let again = h.run("org:fleet-org", false).await;
    assert_eq!(again.status, RunStatus::Succeeded);
    assert_eq!(h.double.write_count(), 0, "an unchanged run must not write");
    assert_eq!(again.issues.unchanged, 30);

    // Once the caches hold what the previous runs changed themselves (issue lists, the
    // listing's open-issue counts), an unchanged run spends no rate limit at all: every
    // request is conditional and answered 304, or served from the shared cache.
    h.double.clear_requests();
    let steady = h.run("org:fleet-org", false).await;
    assert_eq!(steady.issues.writes(), 0);
    let requests = h.double.requests();
    let charged: Vec<_> = requests.iter().filter(|r| r.status != 304).collect();
    assert!(
        charged.is_empty(),
        "requests that cost budget: {charged:#?}"
    );
    assert!(
        requests.len() <= 50 * 5 + 1,
        "{} requests for 50 repositories",
        requests.len()
    );

    // Ten repositories get a LICENSE: exactly their ten issues close.
    for name in &repos[..10] {
        h.double
            .put_file("fleet-org", name, "LICENSE", "MIT License\n");
    }
    let fixed = h.run("org:fleet-org", false).await;
    assert_eq!(fixed.issues.closed, 10, "{fixed:?}");
    let issues = h.issues("fleet-org", &repos);
    assert_eq!(open_and_duplicates(&issues), (20, 0));
    for (repo, issue) in &issues {
        let fixed_repo = repos[..10].contains(repo);
        assert_eq!(
            issue.state == "closed",
            fixed_repo,
            "{repo}: {}",
            issue.state
        );
        if fixed_repo {
            assert_eq!(issue.comments.len(), 1, "a closing comment explains why");
        }
    }

    // The LICENSE disappears again from one: its own issue is reopened, nothing new filed.
    let before = h.double.issues("fleet-org", &repos[0]);
    h.double.delete_file("fleet-org", &repos[0], "LICENSE");
    let regressed = h.run("org:fleet-org", false).await;
    assert_eq!(
        (regressed.issues.reopened, regressed.issues.created),
        (1, 0)
    );
    let after = h.double.issues("fleet-org", &repos[0]);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].number, before[0].number);
    assert_eq!(after[0].state, "open");
    assert_eq!(open_and_duplicates(&h.issues("fleet-org", &repos)), (21, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_loses_nothing_and_duplicates_nothing() {
    let mut h = Harness::start().await;
    let repos = h.seed_org("crash-org", 50, 30);
    // Slow GitHub down so the kill lands in the middle of the run.
    h.double.set_latency(Duration::from_millis(40));
    h.spawn_worker().await;
    h.spawn_worker().await;
    let run_id = h.start_run("org:crash-org").await;
    h.wait_for_open_issues("crash-org", &repos, 5).await;
    h.kill_worker(0);
    let runs = repo_guardian::store::runs::RunStore::new(h.bus.kv("guardian_runs").await.unwrap());
    let at_kill = runs.get(&run_id).await.unwrap().unwrap();
    assert!(
        at_kill.repos_settled() < at_kill.repos_total,
        "the kill must land mid-run: {at_kill:?}"
    );
    assert!(
        std::fs::read_to_string(&h.workers[0].log)
            .unwrap()
            .contains("\"step\":\"reconcile\""),
        "the killed worker was reconciling"
    );
    let record = h.follow(&run_id).await;
    assert_eq!(record.status, RunStatus::Succeeded, "{record:?}");
    assert_eq!(record.repos_done, 50);
    assert_eq!(open_and_duplicates(&h.issues("crash-org", &repos)), (30, 0));

    // A later run agrees: nothing to create, nothing to close.
    let again = h.run("org:crash-org", false).await;
    assert_eq!(again.issues.writes(), 0, "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_mid_run_loses_nothing_and_duplicates_nothing() {
    let mut h = Harness::start().await;
    let repos = h.seed_org("restart-org", 30, 20);
    h.double.set_latency(Duration::from_millis(40));
    h.spawn_worker().await;
    h.spawn_worker().await;
    let run_id = h.start_run("org:restart-org").await;
    h.wait_for_open_issues("restart-org", &repos, 3).await;

    // The server dies and comes back on the same port with the same store.
    let (port, store) = (h.nats.port, h.nats.store.clone());
    h.nats.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    h.nats =
        repo_guardian::local::NatsServer::start(&store, Some(port)).expect("restart nats-server");

    let record = h.follow(&run_id).await;
    assert_eq!(record.status, RunStatus::Succeeded, "{record:?}");
    assert_eq!(record.repos_done, 30);
    assert_eq!(
        open_and_duplicates(&h.issues("restart-org", &repos)),
        (20, 0)
    );
    let again = h.run("org:restart-org", false).await;
    assert_eq!(again.issues.writes(), 0, "{again:?}");
}

/// A run of `repos` planned in `guardian_runs` (no worker involved), as `plan` records it.
async fn planned_run(h: &Harness, target: &str, repos: &[String]) -> (RunStore, String) {
    let settings = crate::helpers::settings_for(&h.nats.url);
    repo_guardian::bus::provision::provision(&h.bus, &settings)
        .await
        .expect("provision");
    let runs = RunStore::new(h.bus.kv("guardian_runs").await.unwrap());
    let run_id = uuid::Uuid::now_v7().to_string();
    runs.create(&RunRecord::new(&run_id, target, false))
        .await
        .unwrap();
    runs.add_repos(&run_id, repos).await.unwrap();
    runs.update(&run_id, |r| {
        r.status = RunStatus::Running;
        r.repos_total = repos.len() as u32;
        true
    })
    .await
    .unwrap();
    (runs, run_id)
}

fn reconciled_with_one_issue() -> RepoOutcome {
    RepoOutcome::Reconciled {
        findings: 1,
        applied: IssueCounts {
            created: 1,
            ..Default::default()
        },
        planned: IssueCounts::default(),
        actions: vec![],
        unknown: BTreeMap::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_counted_twice_neither_ends_its_run_early_nor_skews_its_counts() {
    let h = Harness::start().await;
    let repos = vec!["twice/a".to_string(), "twice/b".to_string()];
    let (runs, run_id) = planned_run(&h, "org:twice", &repos).await;
    let done = reconciled_with_one_issue();

    // A redelivery after a crash completes `a` twice: its count is made twice, so the
    // counters say 2 of 2 while `b` is still pending.
    assert!(
        runs.complete_repo(&run_id, "twice/a", &done)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        runs.complete_repo(&run_id, "twice/a", &done)
            .await
            .unwrap()
            .is_none()
    );
    let mid = runs.get(&run_id).await.unwrap().unwrap();
    assert_eq!(mid.status, RunStatus::Running, "{mid:?}");
    assert_eq!(
        (mid.repos_done, mid.issues.created),
        (1, 1),
        "recounted: {mid:?}"
    );

    let last = runs
        .complete_repo(&run_id, "twice/b", &done)
        .await
        .unwrap()
        .expect("the last repository ends the run");
    assert_eq!(last.status, RunStatus::Succeeded);
    assert_eq!(
        (last.repos_done, last.findings, last.issues.created),
        (2, 2, 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repositories_settling_at_once_on_two_workers_end_their_run_exactly_once() {
    let h = Harness::start().await;
    let repos: Vec<String> = (0..300).map(|i| format!("busy/r{i:03}")).collect();
    let (runs, run_id) = planned_run(&h, "org:busy", &repos).await;
    // Two stores, as two workers have: each commits its own batches of counts.
    let other = RunStore::new(h.bus.kv("guardian_runs").await.unwrap());
    let done = reconciled_with_one_issue();
    let settled = futures::future::join_all(repos.iter().enumerate().map(|(i, repo)| {
        let store = if i % 2 == 0 { &runs } else { &other };
        let (run_id, done) = (&run_id, &done);
        async move { store.complete_repo(run_id, repo, done).await.unwrap() }
    }))
    .await;
    let finals: Vec<&RunRecord> = settled.iter().flatten().collect();
    assert_eq!(finals.len(), 1, "exactly one completion ends the run");
    let record = runs.get(&run_id).await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Succeeded);
    assert_eq!((record.repos_done, record.issues.created), (300, 300));
}
