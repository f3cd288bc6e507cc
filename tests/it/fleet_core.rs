//! The fleet core under partial failure: every run ends (the sweeper, the server's
//! max-deliveries advisory, dead-lettered steps that still name their repository), kill
//! switches fail closed, leases are fences, a stale reconcile is skipped and counted, a
//! huge organisation plans within the default max payload, and a dead consumer makes the
//! worker not ready.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use github_double::RepoOptions;
use repo_guardian::bus::envelope::{PlanTask, ReconcileTask};
use repo_guardian::bus::flags::{FlagState, Flags};
use repo_guardian::bus::{Bus, dlq};
use repo_guardian::config::Settings;
use repo_guardian::domain::{Finding, RepoRef, Severity};
use repo_guardian::store::StoreError;
use repo_guardian::store::leases::LeaseStore;
use repo_guardian::store::repos::RepoStore;
use repo_guardian::store::runs::{RepoStatus, RunRecord, RunStatus, RunStore};
use repo_guardian::workflow::{Workflow, plan, reconcile};

use crate::helpers::{Harness, TOKEN};

/// Waits for `check` to hold, polling; panics naming `what` after `limit`.
async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Settings of an in-process fleet part pointed at the harness.
fn settings(h: &Harness, extra: &[(&str, &str)]) -> Settings {
    let mut env: Vec<(String, String)> = vec![
        ("GUARDIAN__NATS__URL".into(), h.nats.url.clone()),
        ("GUARDIAN__GITHUB__API_URL".into(), h.double.url()),
        ("GUARDIAN__GITHUB__TOKEN".into(), TOKEN.into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Settings::load_from(None, env).expect("settings")
}

async fn provisioned(h: &Harness, extra: &[(&str, &str)]) -> Arc<Settings> {
    let s = Arc::new(settings(h, extra));
    repo_guardian::bus::provision::provision(&h.bus, &s)
        .await
        .expect("provision");
    s
}

async fn workflow(h: &Harness, settings: Arc<Settings>) -> Arc<Workflow> {
    Workflow::new(h.bus.clone(), settings, Flags::known(FlagState::default()))
        .await
        .expect("workflow")
}

/// Runs the plan step of `run_id` in this process, as a worker would.
async fn plan_now(wf: &Workflow, run_id: &str, target: &str) {
    plan::run(
        wf,
        run_id,
        PlanTask {
            target: target.into(),
            dry_run: false,
        },
    )
    .await
    .expect("plan accepted");
}

async fn runs(bus: &Bus) -> RunStore {
    RunStore::new(bus.kv("guardian_runs").await.unwrap())
}

/// A run that planned `repos` and then lost every message (nothing will ever move it).
async fn orphaned_run(runs: &RunStore, target: &str, repos: &[&str]) -> String {
    let run_id = uuid::Uuid::now_v7().to_string();
    runs.create(&RunRecord::new(&run_id, target, false))
        .await
        .unwrap();
    let names: Vec<String> = repos.iter().map(|r| r.to_string()).collect();
    runs.add_repos(&run_id, &names).await.unwrap();
    runs.update(&run_id, |r| {
        r.status = RunStatus::Running;
        r.repos_total = names.len() as u32;
        true
    })
    .await
    .unwrap();
    run_id
}

async fn set_flag(bus: &Bus, key: &str, value: &str) {
    bus.kv("guardian_flags")
        .await
        .unwrap()
        .put(key, value.to_string().into())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_without_progress_end_stalled_with_a_reason_per_repository() {
    let mut h = Harness::start().await;
    provisioned(&h, &[]).await;
    let runs = runs(&h.bus).await;
    let lost = orphaned_run(&runs, "org:lost-org", &["lost-org/a", "lost-org/b"]).await;
    let never_planned = uuid::Uuid::now_v7().to_string();
    runs.create(&RunRecord::new(&never_planned, "org:other", false))
        .await
        .unwrap();

    h.worker_env
        .insert("GUARDIAN__WORKER__STALL_TIMEOUT".into(), "2s".into());
    h.worker_env
        .insert("GUARDIAN__WORKER__SWEEP_INTERVAL".into(), "200ms".into());
    h.spawn_worker().await;

    let record = h.follow(&lost).await;
    assert_eq!(record.status, RunStatus::Stalled, "{record:?}");
    assert_eq!((record.repos_stalled, record.repos_total), (2, 2));
    for p in runs.repo_progress(&lost).await.unwrap() {
        assert_eq!(p.status, RepoStatus::Stalled, "{p:?}");
        assert!(
            p.error
                .as_deref()
                .unwrap_or("")
                .contains("no progress for 2s"),
            "{p:?}"
        );
    }
    let queued = h.follow(&never_planned).await;
    assert_eq!(queued.status, RunStatus::Stalled, "{queued:?}");
    assert!(
        queued.errors[0]
            .message
            .contains("the plan never completed")
    );
    // The sweeper announced both runs.
    let done = wait_for(Duration::from_secs(10), "done events", || async {
        let r = runs.get(&lost).await.unwrap()?;
        r.done_published.then_some(r)
    })
    .await;
    assert!(done.status.is_final());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_deliveries_run_out_without_an_outcome_is_dead_lettered_and_its_run_ends() {
    let mut h = Harness::start().await;
    h.seed_org("strand-org", 1, 1);
    // The server gives up after one delivery; the test takes that delivery and never
    // answers it, as a worker crashing on its last delivery would. The worker is paused
    // from its start (it loads the switches before it consumes), so only the test pulls.
    let limits = [
        ("GUARDIAN__NATS__SERVER_MAX_DELIVER", "1"),
        ("GUARDIAN__NATS__MAX_DELIVER", "1"),
        ("GUARDIAN__NATS__ACK_WAIT", "1s"),
    ];
    provisioned(&h, &limits).await;
    set_flag(&h.bus, "pause_runs", "true").await;
    for (k, v) in limits {
        h.worker_env.insert(k.into(), v.into());
    }
    h.spawn_worker().await;
    let run_id = h.start_run("org:strand-org").await;

    let stream = h.bus.js.get_stream("GUARDIAN_WORK").await.unwrap();
    let consumer: async_nats::jetstream::consumer::PullConsumer =
        stream.get_consumer("guardian-plan").await.unwrap();
    let mut batch = consumer
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .unwrap();
    let taken = batch.next().await.expect("the plan").unwrap();
    assert_eq!(taken.info().unwrap().delivered, 1);
    drop(taken); // never acked
    // The server acts on an exhausted message when a consumer asks for more, as the
    // fleet's workers always do; here the test asks (the worker is paused).
    let runs = runs(&h.bus).await;
    wait_for(
        Duration::from_secs(30),
        "the stranded plan ends its run",
        || async {
            let mut more = consumer
                .fetch()
                .max_messages(1)
                .expires(Duration::from_millis(500))
                .messages()
                .await
                .unwrap();
            assert!(
                !matches!(more.next().await, Some(Ok(_))),
                "never delivered again"
            );
            let record = runs.get(&run_id).await.unwrap()?;
            record.status.is_final().then_some(())
        },
    )
    .await;
    let record = h.follow(&run_id).await;
    assert_eq!(record.status, RunStatus::Failed, "{record:?}");
    assert!(
        record.errors[0].message.contains("without an outcome"),
        "{record:?}"
    );
    let letters = dlq::list(&h.bus).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].letter.subject, "guardian.work.plan");
    assert_eq!(letters[0].letter.run_id.as_deref(), Some(run_id.as_str()));
    let mut info = stream.clone();
    assert_eq!(
        info.info().await.unwrap().state.messages,
        0,
        "removed from GUARDIAN_WORK"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_steps_that_name_their_repository_settle_it_as_failed() {
    let mut h = Harness::start().await;
    provisioned(&h, &[]).await;
    let runs = runs(&h.bus).await;
    let run_id = orphaned_run(&runs, "org:bad-org", &["bad-org/a", "bad-org/b"]).await;
    h.spawn_worker().await;
    for (step, repo) in [("scan", "a"), ("reconcile", "b")] {
        let payload = format!(
            r#"{{"v":1,"run_id":"{run_id}","step":"{step}","data":{{"repo":{{"owner":"bad-org","name":"{repo}"}},"findings":"not a list","meta":7}}}}"#
        );
        h.bus
            .js
            .publish(format!("guardian.work.{step}"), payload.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let record = h.follow(&run_id).await;
    assert_eq!(record.status, RunStatus::Failed, "{record:?}");
    assert_eq!(record.repos_failed, 2);
    let progress = runs.repo_progress(&run_id).await.unwrap();
    assert!(
        progress.iter().all(|p| p.status == RepoStatus::Failed),
        "{progress:?}"
    );
}

/// How many plan messages the plan consumer has delivered so far.
async fn plan_deliveries(bus: &Bus) -> u64 {
    let stream = bus.js.get_stream("GUARDIAN_WORK").await.unwrap();
    let mut consumer: async_nats::jetstream::consumer::PullConsumer =
        stream.get_consumer("guardian-plan").await.unwrap();
    consumer.info().await.unwrap().delivered.stream_sequence
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_pause_runs_set_a_worker_restarted_ten_times_processes_zero_steps() {
    let mut h = Harness::start().await;
    let repos = h.seed_org("paused-org", 2, 0);
    provisioned(&h, &[]).await;
    set_flag(&h.bus, "pause_runs", "true").await;
    let runs = runs(&h.bus).await;
    let request =
        repo_guardian::service::parse_run_request(br#"{"target":"org:paused-org"}"#).unwrap();
    let accepted = repo_guardian::service::start_run(&h.bus, &runs, &request)
        .await
        .unwrap();

    for round in 0..10 {
        let index = h.spawn_worker().await;
        h.kill_worker(index);
        assert_eq!(
            plan_deliveries(&h.bus).await,
            0,
            "round {round}: a paused worker took a step"
        );
    }
    let record = runs.get(&accepted.run_id).await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Queued);
    assert_eq!(h.double.write_count(), 0);

    // The same setup runs once the switch is off: the test could have failed.
    h.spawn_worker().await;
    h.bus
        .kv("guardian_flags")
        .await
        .unwrap()
        .delete("pause_runs")
        .await
        .unwrap();
    let done = h.follow(&accepted.run_id).await;
    assert_eq!(done.status, RunStatus::Succeeded, "{done:?}");
    assert_eq!(done.repos_total, repos.len() as u32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_for_50000_repositories_is_recorded_under_the_default_max_payload() {
    let h = Harness::start().await;
    const COUNT: usize = 50_000;
    h.double.add_org("huge-org");
    for i in 0..COUNT {
        h.double
            .add_repo("huge-org", &format!("r{i:05}"), RepoOptions::default());
    }
    let settings = provisioned(&h, &[]).await;
    let wf = workflow(&h, settings).await;
    let runs = runs(&h.bus).await;
    let run_id = uuid::Uuid::now_v7().to_string();
    runs.create(&RunRecord::new(&run_id, "org:huge-org", false))
        .await
        .unwrap();
    // No worker runs: the plan step alone, as a worker would run it.
    plan_now(&wf, &run_id, "org:huge-org").await;

    let record = runs.get(&run_id).await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Running);
    assert_eq!(record.repos_total, COUNT as u32);
    assert!(record.seq.is_some());
    let bytes = serde_json::to_vec(&record).unwrap().len();
    assert!(
        bytes < 4096,
        "the run record holds counts only: {bytes} bytes"
    );
    let progress = runs.repo_progress(&run_id).await.unwrap();
    assert_eq!(progress.len(), COUNT);
    assert!(progress.iter().all(|p| p.status == RepoStatus::Pending));
    let stream = h.bus.js.get_stream("GUARDIAN_WORK").await.unwrap();
    let mut info = stream.clone();
    assert_eq!(
        info.info().await.unwrap().state.messages,
        COUNT as u64,
        "one scan each"
    );

    // A redelivered plan republishes every pending repository; the ids deduplicate them.
    plan_now(&wf, &run_id, "org:huge-org").await;
    assert_eq!(info.info().await.unwrap().state.messages, COUNT as u64);
}

fn license_finding() -> Finding {
    Finding {
        policy: "license".into(),
        key: "missing".into(),
        severity: Severity::Medium,
        title: "No license".into(),
        details: "No LICENSE file.".into(),
        remediation: "Add one.".into(),
        location: None,
        suppressed: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconcile_older_than_the_stored_state_is_skipped_and_counted() {
    let h = Harness::start().await;
    h.seed_org("stale-org", 1, 1);
    let settings = provisioned(&h, &[]).await;
    let wf = workflow(&h, settings).await;
    let runs = runs(&h.bus).await;
    let repo = RepoRef {
        owner: "stale-org".into(),
        name: "repo-00".into(),
    };
    // Two runs planned one after the other: `older`, then `newer`.
    let mut ids = vec![];
    for target in ["org:stale-org", "stale-org/repo-00"] {
        let run_id = uuid::Uuid::now_v7().to_string();
        runs.create(&RunRecord::new(&run_id, target, false))
            .await
            .unwrap();
        plan_now(&wf, &run_id, target).await;
        ids.push(run_id);
    }
    let task = |findings: Vec<Finding>| ReconcileTask {
        repo: repo.clone(),
        dry_run: false,
        findings,
        evaluated: vec!["license".into()],
        unknown: BTreeMap::new(),
        has_issues: true,
        head_sha: None,
        labels: vec![],
        assignees: vec![],
        opted_out: false,
        issue_repo: None,
    };
    // The newer run finds the problem and files its issue ...
    reconcile::run(&wf, &ids[1], task(vec![license_finding()]))
        .await
        .unwrap();
    assert_eq!(h.double.issues("stale-org", "repo-00").len(), 1);
    // ... then the older run's reconcile arrives late, with an older (clean) finding set.
    reconcile::run(&wf, &ids[0], task(vec![])).await.unwrap();
    let issues = h.double.issues("stale-org", "repo-00");
    assert_eq!(
        issues[0].state, "open",
        "a stale reconcile must not close it"
    );
    let older = runs.get(&ids[0]).await.unwrap().unwrap();
    assert_eq!(older.stale_skipped, 1, "{older:?}");
    assert_eq!(older.status, RunStatus::Succeeded);
    let progress = runs.repo_progress(&ids[0]).await.unwrap();
    assert!(progress[0].stale);
    let newer = runs.repo_progress(&ids[1]).await.unwrap();
    assert_eq!(newer[0].actions.len(), 1, "{newer:?}");
    assert_eq!(newer[0].actions[0].fingerprint, "license/missing");
    assert_eq!(newer[0].actions[0].number, Some(issues[0].number));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_stalled_past_its_lease_can_neither_renew_nor_overwrite_the_newer_map() {
    let h = Harness::start().await;
    provisioned(&h, &[("GUARDIAN__WORKER__LEASE_TTL", "1s")]).await;
    let leases = LeaseStore::new(h.bus.kv("guardian_leases").await.unwrap());
    let repos = RepoStore::new(h.bus.kv("guardian_repos").await.unwrap());
    let repo = RepoRef {
        owner: "o".into(),
        name: "r".into(),
    };
    let key = repo_guardian::store::repos::lease_key(&repo);
    let mut stalled = leases
        .try_acquire(&key, "a")
        .await
        .unwrap()
        .expect("a holds it");
    assert!(
        leases.try_acquire(&key, "b").await.unwrap().is_none(),
        "held"
    );
    // `a` stalls; the server expires its lease and `b` takes it.
    let fresh = wait_for(Duration::from_secs(15), "the lease expires", || async {
        leases.try_acquire(&key, "b").await.unwrap()
    })
    .await;
    assert!(fresh.revision > stalled.revision);
    // The stalled holder's map write is refused while `b` holds the lease ...
    let refused = repos
        .update_fenced(&repo, &leases, &stalled, |s| {
            s.issues.insert("license/missing".into(), 1);
            true
        })
        .await;
    assert!(
        matches!(refused, Err(StoreError::LeaseLost { .. })),
        "{refused:?}"
    );
    repos
        .update_fenced(&repo, &leases, &fresh, |s| {
            s.issues.insert("license/missing".into(), 2);
            true
        })
        .await
        .unwrap();
    // ... it cannot renew, and even after `b` released, its older token cannot overwrite.
    assert!(matches!(
        leases.renew(&mut stalled).await,
        Err(StoreError::LeaseLost { .. })
    ));
    leases.release(fresh).await;
    let late = leases.try_acquire(&key, "c").await.unwrap().expect("free");
    let stale = repo_guardian::store::leases::Lease {
        key: late.key.clone(),
        revision: stalled.revision,
        holder: "a".into(),
    };
    assert!(
        repos
            .update_fenced(&repo, &leases, &stale, |_| true)
            .await
            .is_err()
    );
    assert_eq!(
        repos.get(&repo).await.unwrap().unwrap().issues["license/missing"],
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_consumer_makes_the_worker_not_ready_and_exit_non_zero() {
    let mut h = Harness::start().await;
    let index = h.spawn_worker().await;
    let stream = h.bus.js.get_stream("GUARDIAN_WORK").await.unwrap();
    stream.delete_consumer("guardian-scan").await.unwrap();
    let url = format!("http://127.0.0.1:{}/readyz", h.workers[index].ops_port);
    let status = wait_for(Duration::from_secs(30), "exit after /readyz 503", || {
        let url = url.clone();
        let exited = h.workers[index].child.try_wait().ok().flatten();
        async move {
            if let Some(status) = exited {
                return Some(status);
            }
            let _ = reqwest::get(&url).await;
            None
        }
    })
    .await;
    assert!(
        !status.success(),
        "a worker with a dead consumer exits non-zero"
    );
    let logs = h.logs();
    assert!(logs.contains("guardian-scan consumer stopped"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_password_never_appears_in_connection_errors() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("nats://guardian:s3cretPASS@127.0.0.1:{port}");
    let settings = Settings::load_from(None, [("GUARDIAN__NATS__URL".to_string(), url)]).unwrap();
    let err = match Bus::connect(&settings.nats, "test").await {
        Ok(_) => panic!("nothing listens there"),
        Err(e) => e,
    };
    let mut text = format!("{err} / {err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(&format!(" / {cause} / {cause:?}"));
        source = cause.source();
    }
    assert!(!text.contains("s3cretPASS"), "{text}");
    assert!(text.contains("127.0.0.1"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_wrong_last_sequence_is_a_conflict() {
    let h = Harness::start().await;
    provisioned(&h, &[]).await;
    let kv = h.bus.kv("guardian_runs").await.unwrap();
    let record = RunRecord::new("r", "org:o", false);
    let first = repo_guardian::store::create(&kv, "r", &record)
        .await
        .unwrap()
        .expect("created");
    // A revision that moved on is a conflict: `None`, for the caller to re-read.
    assert!(
        repo_guardian::store::write_at(&kv, "r", &record, first + 100)
            .await
            .unwrap()
            .is_none()
    );
    // Anything else is a NATS error, not a conflict to retry.
    let invalid = repo_guardian::store::write_at(&kv, "not a key!", &record, first).await;
    assert!(matches!(invalid, Err(StoreError::Bus(_))), "{invalid:?}");
    let leases = LeaseStore::new(h.bus.kv("guardian_leases").await.unwrap());
    let held = leases.try_acquire("not a key!", "a").await;
    assert!(
        matches!(held, Err(StoreError::Bus(_))),
        "not 'lease held': {held:?}"
    );
}
