//! Never wrong about a finding: a run over an organisation whose GitHub misbehaves in every
//! way the fleet meets in production — permissions it lacks, a branch that vanishes for a
//! moment, issues deleted or transferred by hand, a burst of secondary rate limits without
//! `Retry-After`, and a worker killed mid-reconcile — closes exactly the issues of what was
//! fixed, files nothing false, duplicates nothing, and ends.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use github_double::{Fault, RepoOptions};

use crate::helpers::{Harness, open_and_duplicates};

const ORG: &str = "fault-org";
const REPOS: usize = 100;
/// Repositories `0..MISSING_LICENSE` have no LICENSE at first.
const MISSING_LICENSE: usize = 40;
/// Repositories `0..WEAK_PROTECTION` require no review on their default branch.
const WEAK_PROTECTION: usize = 60;
/// Repositories whose LICENSE is added before the faulty run: their issues must close.
const FIXED: std::ops::Range<usize> = 30..40;

fn name(i: usize) -> String {
    format!("repo-{i:02}")
}

fn seed(h: &Harness) -> Vec<String> {
    h.double.add_org(ORG);
    h.double.add_org("archive-org");
    h.double
        .add_repo("archive-org", "sink", RepoOptions::default());
    (0..REPOS)
        .map(|i| {
            let repo = name(i);
            let reviews = if i < WEAK_PROTECTION { None } else { Some(1) };
            h.seed_repo(ORG, &repo, i >= MISSING_LICENSE, reviews);
            repo
        })
        .collect()
}

/// Open issues by repository, as fingerprints.
fn open_fingerprints(h: &Harness, repos: &[String]) -> BTreeMap<String, BTreeSet<String>> {
    let mut open: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (repo, issue) in h.issues(ORG, repos) {
        if issue.state != "open" {
            continue;
        }
        let fp = repo_guardian::workflow::issue_plan::parse_marker(&issue.body)
            .map(|(fp, _)| fp)
            .unwrap_or_else(|| format!("no marker on #{}", issue.number));
        open.entry(repo).or_default().insert(fp);
    }
    open
}

/// What must be open after the faulty run: the findings that still exist, each once.
fn expected_open(repos: &[String]) -> BTreeMap<String, BTreeSet<String>> {
    let mut want: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (i, repo) in repos.iter().enumerate() {
        if i < MISSING_LICENSE && !FIXED.contains(&i) {
            want.entry(repo.clone())
                .or_default()
                .insert("license/missing".into());
        }
        if i < WEAK_PROTECTION {
            want.entry(repo.clone())
                .or_default()
                .insert("branch-protection/reviews".into());
        }
    }
    want
}

fn issue_number(h: &Harness, repo: &str, fingerprint: &str) -> u64 {
    h.double
        .issues(ORG, repo)
        .into_iter()
        .find(|i| i.body.contains(&format!("fingerprint={fingerprint} ")) && i.state == "open")
        .unwrap_or_else(|| panic!("{repo} has no open issue for {fingerprint}"))
        .number
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_github_closes_only_what_was_fixed() {
    let mut h = Harness::start().await;
    h.worker_env.insert(
        "GUARDIAN__GITHUB__SECONDARY_LIMIT_BACKOFF".into(),
        "1s".into(),
    );
    let repos = seed(&h);
    h.spawn_worker().await;
    h.spawn_worker().await;

    let first = h.run(&format!("org:{ORG}"), false).await;
    assert!(first.status.is_final(), "{first:?}");
    assert_eq!(
        open_fingerprints(&h, &repos),
        {
            let mut all = expected_open(&repos);
            for i in FIXED {
                all.entry(name(i))
                    .or_default()
                    .insert("license/missing".into());
            }
            all
        },
        "the first run files one issue per finding"
    );

    // What really changes: ten repositories get their LICENSE.
    for i in FIXED {
        h.double.put_file(ORG, &name(i), "LICENSE", "MIT License\n");
    }
    // What only looks like change. A third of the repositories cannot have their branch
    // protection read (a token without admin read).
    let unreadable: Vec<usize> = (0..REPOS).filter(|i| i % 3 == 0).collect();
    for i in &unreadable {
        h.double.inject_fault_with_message(
            Fault {
                method: Some("GET".into()),
                path_prefix: format!("/repos/{ORG}/{}/branches/main/protection", name(*i)),
                status: 403,
                retry_after: None,
                times: usize::MAX,
            },
            "Resource not accessible by integration",
        );
    }
    // A default branch that is briefly not there (renamed between plan and scan).
    h.double.inject_fault(Fault {
        method: Some("GET".into()),
        path_prefix: format!("/repos/{ORG}/{}/branches/main", name(5)),
        status: 404,
        retry_after: None,
        times: 1,
    });
    // A mapped issue deleted by an administrator, another transferred away: their
    // findings still exist, so each gets a new issue here.
    let deleted = issue_number(&h, &name(10), "license/missing");
    assert!(h.double.delete_issue(ORG, &name(10), deleted));
    let moved = issue_number(&h, &name(11), "license/missing");
    h.double
        .transfer_issue(ORG, &name(11), moved, "archive-org", "sink")
        .expect("transferred");
    // A burst of secondary rate limits without Retry-After on reads.
    h.double.inject_fault_with_message(
        Fault {
            method: Some("GET".into()),
            path_prefix: format!("/repos/{ORG}/"),
            status: 403,
            retry_after: None,
            times: 5,
        },
        "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
    );

    let run_id = h.start_run(&format!("org:{ORG}")).await;
    // Kill a worker while it reconciles: once the first fixed issue is closed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let closed = FIXED
            .clone()
            .flat_map(|i| h.double.issues(ORG, &name(i)))
            .filter(|i| i.state == "closed")
            .count();
        if closed >= 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no fixed issue closed after 90s; logs:\n{}",
            h.logs()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    h.kill_worker(0);
    h.spawn_worker().await;
    let record = h.follow(&run_id).await;
    assert!(record.status.is_final(), "{record:?}");

    // Zero issues closed or filed wrongly, zero duplicates.
    let issues = h.issues(ORG, &repos);
    let (_, duplicates) = open_and_duplicates(&issues);
    assert_eq!(duplicates, 0, "duplicates: {issues:#?}");
    assert_eq!(
        open_fingerprints(&h, &repos),
        expected_open(&repos),
        "record: {record:?}"
    );
    for i in FIXED {
        let closed: Vec<_> = h
            .double
            .issues(ORG, &name(i))
            .into_iter()
            .filter(|i| i.state == "closed")
            .collect();
        assert_eq!(closed.len(), 1, "{}: {closed:#?}", name(i));
        // A worker killed between closing and commenting leaves the comment out; a
        // redelivery never comments twice.
        assert!(
            closed[0].comments.len() <= 1,
            "at most one closing comment on {}: {:#?}",
            name(i),
            closed[0].comments
        );
    }
    // The deleted and the transferred issue were replaced, not dead-lettered.
    assert_ne!(
        issue_number(&h, &name(10), "license/missing"),
        deleted,
        "a new issue replaces the deleted one"
    );
    assert_eq!(
        h.double.issues("archive-org", "sink").len(),
        1,
        "the transferred issue is left where it went"
    );
    assert!(
        repo_guardian::bus::dlq::list(&h.bus)
            .await
            .expect("dead letters")
            .is_empty(),
        "nothing is dead-lettered; logs:\n{}",
        h.logs()
    );

    // The run names what could not be evaluated: branch protection of a third, each with
    // GitHub's reason.
    assert_eq!(
        record.repos_unknown as usize,
        unreadable.len(),
        "{record:?}"
    );
    let runs = repo_guardian::store::runs::RunStore::new(h.bus.kv("guardian_runs").await.unwrap());
    let progress = runs.repo_progress(&run_id).await.expect("progress");
    assert_eq!(progress.len(), REPOS);
    let unknown: BTreeSet<String> = progress
        .iter()
        .filter(|p| !p.unknown.is_empty())
        .map(|p| p.repo.clone())
        .collect();
    let want: BTreeSet<String> = unreadable
        .iter()
        .map(|i| format!("{ORG}/{}", name(*i)))
        .collect();
    assert_eq!(unknown, want);
    for p in progress.iter().filter(|p| !p.unknown.is_empty()) {
        let reason = &p.unknown["branch-protection"];
        assert!(
            reason.contains("Resource not accessible"),
            "{}: {reason}",
            p.repo
        );
    }
}

/// A close or reopen is a comment and a state change. When GitHub fails either half (as a
/// crash between the two would leave it), the step is retried: the comment is never lost
/// (the issue is not closed before its comment) and never doubled (the retry finds its
/// comment newest and only changes the state).
#[tokio::test(flavor = "multi_thread")]
async fn a_state_change_failing_after_its_comment_is_retried_without_a_second_comment() {
    let mut h = Harness::start().await;
    h.seed_repo("solo-org", "app", false, Some(1));
    h.spawn_worker().await;
    let target = "solo-org/app";

    // A run of the repository, then its license issue's state and comments.
    async fn run_and_read(h: &Harness, target: &str) -> (String, Vec<String>) {
        let record = h.run(target, false).await;
        assert!(record.status.is_final(), "{record:?}");
        let issue = h
            .double
            .issues("solo-org", "app")
            .into_iter()
            .find(|i| i.body.contains("license/missing"))
            .expect("the license issue");
        (issue.state, issue.comments)
    }
    assert_eq!(run_and_read(&h, target).await.0, "open");

    let fails_once = |method: &str| Fault {
        method: Some(method.into()),
        path_prefix: "/repos/solo-org/app/issues/".into(),
        status: 502,
        retry_after: None,
        times: 1,
    };
    h.double
        .put_file("solo-org", "app", "LICENSE", "MIT License\n");
    h.double.inject_fault(fails_once("POST"));
    let (state, comments) = run_and_read(&h, target).await;
    assert_eq!(
        (state.as_str(), comments.len()),
        ("closed", 1),
        "{comments:?}"
    );

    h.double.delete_file("solo-org", "app", "LICENSE");
    h.double.inject_fault(fails_once("PATCH"));
    let (state, comments) = run_and_read(&h, target).await;
    assert_eq!(
        (state.as_str(), comments.len()),
        ("open", 2),
        "{comments:?}"
    );
    assert!(comments[1].contains("found this problem again"));
    assert_eq!(
        h.double
            .requests()
            .iter()
            .filter(|r| r.status == 502)
            .count(),
        2,
        "the closing comment and the reopening failed once each"
    );
}
