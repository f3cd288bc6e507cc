//! Hygiene policies and the owners' and operators' say over what is filed where: stale
//! pull requests, failing checks on the default branch (pending never reads as fixed),
//! opt-in / opt-out, owners' labels and assignees, and a central issue repository for
//! repositories with issues disabled, reconciled by two workers at once.

use github_double::{CheckRunSpec, Fault, IssueView, PullSpec, RepoOptions};
use repo_guardian::domain::{Input, RepoRef};
use repo_guardian::github::{GithubClient, snapshot};
use repo_guardian::policy::{self, Selection};

use crate::helpers::{DEPENDABOT, Harness, TOKEN};

/// Files that satisfy every file policy but `branch-protection`.
const TIDY: &[(&str, &str)] = &[
    ("README.md", "# app\n"),
    ("LICENSE", "MIT License\n"),
    ("SECURITY.md", "mail us\n"),
    (".github/CODEOWNERS", "* @octo/team\n"),
    (".github/dependabot.yml", DEPENDABOT),
];

fn tidy_repo(h: &Harness, owner: &str, name: &str, options: RepoOptions) {
    h.double.add_repo(owner, name, options);
    for (path, text) in TIDY {
        h.double.put_file(owner, name, path, text);
    }
    h.double.set_protection(
        owner,
        name,
        Some(github_double::ProtectionRules {
            required_approving_reviews: Some(1),
            ..Default::default()
        }),
    );
}

fn titled<'i>(issues: &'i [IssueView], needle: &str) -> Vec<&'i IssueView> {
    issues.iter().filter(|i| i.title.contains(needle)).collect()
}

fn pull(title: &str, idle_days: u64, draft: bool) -> PullSpec {
    PullSpec {
        title: title.into(),
        author: "contributor".into(),
        draft,
        idle_days,
    }
}

/// Fleet: idle pull requests (switched on for one organisation) and failing checks become
/// one issue each, with links; a check that is running again neither closes nor changes
/// the issue; passing closes it.
#[tokio::test]
async fn stale_pull_requests_and_failing_checks_are_filed_and_pending_is_not_fixed() {
    let mut h = Harness::start().await;
    h.double.add_org("octo");
    tidy_repo(&h, "octo", "app", RepoOptions::default());
    // Switched on for this organisation only, with its own threshold.
    std::fs::write(
        h.dir.path().join("guardian.toml"),
        "[targets.orgs.octo.policies.stale-pull-requests]\nenabled = true\noptions = { days = 40 }\n",
    )
    .expect("write guardian.toml");
    h.spawn_worker().await;
    let idle = h
        .double
        .add_pull("octo", "app", pull("Bump the parser", 45, false));
    let parked = h
        .double
        .add_pull("octo", "app", pull("Rewrite everything", 90, true));
    h.double
        .add_pull("octo", "app", pull("Fresh work", 2, false));
    h.double
        .add_check_run("octo", "app", CheckRunSpec::completed("build", "success"));
    h.double
        .add_check_run("octo", "app", CheckRunSpec::completed("test", "failure"));
    h.run("octo/app", false).await;

    let issues = h.double.issues("octo", "app");
    let stale = titled(&issues, "had no activity for 40 days");
    assert_eq!(stale.len(), 1, "{issues:#?}");
    let body = &stale[0].body;
    assert!(
        stale[0].title.contains("2 open pull requests"),
        "{}",
        stale[0].title
    );
    assert!(
        body.contains(&format!("/octo/app/pull/{idle})"))
            && body.contains(&format!("#{parked} Rewrite everything")),
        "{body}"
    );
    assert!(!body.contains("Fresh work"), "{body}");
    let ci = titled(&issues, "check fails on the default branch");
    assert_eq!(ci.len(), 1, "{issues:#?}");
    assert!(
        ci[0].body.contains("[`test`](") && ci[0].body.contains("failure"),
        "{}",
        ci[0].body
    );
    assert!(!ci[0].body.contains("`build`"), "{}", ci[0].body);

    // The failing check runs again: not failing, not passing. The issue stays as it is.
    h.double.add_check_run(
        "octo",
        "app",
        CheckRunSpec {
            name: "test".into(),
            status: "in_progress".into(),
            conclusion: None,
        },
    );
    let writes = h.double.write_count();
    let record = h.run("octo/app", false).await;
    assert_eq!(record.repos_unknown, 1, "{record:?}");
    assert_eq!(
        h.double.write_count(),
        writes,
        "nothing written while checks run"
    );
    let issues = h.double.issues("octo", "app");
    assert_eq!(titled(&issues, "check fails")[0].state, "open");

    // It passes now, and the idle pull requests were dealt with: both issues close.
    h.double
        .add_check_run("octo", "app", CheckRunSpec::completed("test", "success"));
    h.double.close_pull("octo", "app", idle);
    h.double.close_pull("octo", "app", parked);
    h.run("octo/app", false).await;
    let issues = h.double.issues("octo", "app");
    for needle in ["check fails", "had no activity"] {
        let issue = titled(&issues, needle)[0];
        assert_eq!(issue.state, "closed", "{needle}: {issue:?}");
        assert!(
            issue
                .comments
                .last()
                .is_some_and(|c| c.contains("no longer finds"))
        );
    }
}

fn client(double: &github_double::GithubDouble) -> GithubClient {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut settings = crate::helpers::settings_for("nats://127.0.0.1:1").github;
    settings.api_url = double.url();
    settings.token = Some(TOKEN.to_owned().into());
    GithubClient::new(&settings, None).expect("client")
}

/// Unreadable checks or pull requests make their policy unknown, never passing; and
/// nothing of the sort is asked of GitHub while the policies are off.
#[tokio::test]
async fn unreadable_checks_and_pulls_are_unknown_and_off_means_not_asked() {
    let double = github_double::GithubDouble::start().await.expect("double");
    double.set_token(Some(TOKEN));
    double.add_repo("octo", "app", RepoOptions::default());
    double.put_file("octo", "app", "README.md", "# app\n");
    let repo = RepoRef {
        owner: "octo".into(),
        name: "app".into(),
    };
    let client = client(&double);
    let mut selection = Selection::default();
    selection.enabled.insert("stale-pull-requests".into(), true);
    for prefix in ["/repos/octo/app/commits/", "/repos/octo/app/pulls"] {
        double.inject_fault(Fault {
            method: Some("GET".into()),
            path_prefix: prefix.into(),
            status: 403,
            retry_after: None,
            times: 10,
        });
    }
    let (snap, _) = snapshot::build_for(&client, &repo, None, &selection)
        .await
        .expect("the scan itself succeeds");
    assert!(
        snap.unavailable[&Input::Checks].contains("403"),
        "{:?}",
        snap.unavailable
    );
    assert!(snap.unavailable[&Input::PullRequests].contains("403"));
    let evaluation = policy::evaluate(&snap, &selection, false);
    assert!(evaluation.unknown.contains_key("default-branch-ci"));
    assert!(evaluation.unknown.contains_key("stale-pull-requests"));
    assert!(evaluation.evaluated.contains(&"readme".to_owned()));

    // Both off: neither pull requests nor checks are requested.
    let mut off = Selection::default();
    off.enabled.insert("default-branch-ci".into(), false);
    double.clear_requests();
    snapshot::build_for(&client, &repo, None, &off)
        .await
        .expect("scan");
    let asked: Vec<String> = double
        .requests()
        .into_iter()
        .map(|r| r.path)
        .filter(|p| p.contains("/pulls") || p.contains("/commits/"))
        .collect();
    assert!(asked.is_empty(), "{asked:?}");
}

/// Fleet: an owner who opts out gets their open issues closed with a comment saying so
/// (not as fixed); in opt-in mode only repositories that opt in are filed for.
#[tokio::test]
async fn opting_out_closes_issues_saying_so_and_opt_in_mode_files_only_for_the_willing() {
    let mut h = Harness::start().await;
    h.double.add_org("octo");
    h.double.add_repo("octo", "app", RepoOptions::default());
    h.double.put_file("octo", "app", "README.md", "# app\n");
    h.double.put_file(
        "octo",
        "app",
        ".github/workflows/ci.yml",
        "on: push\npermissions: {}\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: actions/checkout@v4\n",
    );
    h.double.set_protection(
        "octo",
        "app",
        Some(github_double::ProtectionRules::default()),
    );
    h.spawn_worker().await;
    h.run("octo/app", false).await;
    let open = |h: &Harness, repo: &str| {
        h.double
            .issues("octo", repo)
            .into_iter()
            .filter(|i| i.state == "open")
            .count()
    };
    assert!(open(&h, "app") >= 3);
    h.double.put_file(
        "octo",
        "app",
        ".github/repo-guardian.yml",
        "enabled: false\n",
    );
    h.run("octo/app", false).await;
    assert_eq!(open(&h, "app"), 0);
    for issue in h.double.issues("octo", "app") {
        let last = issue.comments.last().expect("a closing comment");
        assert!(
            last.contains("opted out") && !last.contains("no longer finds"),
            "{last}"
        );
    }
    // Opted out stays quiet: nothing written on the next run, and nothing read beyond
    // the owners' file (no protection, pull requests, checks or tags).
    h.double.clear_requests();
    h.run("octo/app", false).await;
    assert_eq!(h.double.write_count(), 0);
    let extra: Vec<String> = h
        .double
        .requests()
        .into_iter()
        .map(|r| r.path)
        .filter(|p| {
            ["/protection", "/commits/", "/pulls", "/git/ref/"]
                .iter()
                .any(|x| p.contains(x))
        })
        .collect();
    assert!(extra.is_empty(), "{extra:?}");

    // Opt-in mode: a repository without a word files nothing; one that opts in does.
    for (name, config) in [("quiet", None), ("willing", Some("enabled: true\n"))] {
        h.double.add_repo("octo", name, RepoOptions::default());
        if let Some(text) = config {
            h.double
                .put_file("octo", name, ".github/repo-guardian.yml", text);
        }
    }
    h.worker_env
        .insert("GUARDIAN__TARGETS__MODE".into(), "opt-in".into());
    h.kill_worker(0);
    h.spawn_worker().await;
    h.run("octo/quiet", false).await;
    h.run("octo/willing", false).await;
    assert!(h.double.issues("octo", "quiet").is_empty());
    assert!(open(&h, "willing") >= 3);
}

/// Fleet: the owners' labels and assignees are set on new issues, and added to existing
/// ones when the owners change them (labels and people added by hand stay).
#[tokio::test]
async fn owners_labels_and_assignees_are_applied_on_create_and_when_changed() {
    let mut h = Harness::start().await;
    h.double.add_org("octo");
    tidy_repo(&h, "octo", "app", RepoOptions::default());
    h.double.delete_file("octo", "app", "LICENSE");
    h.double.put_file(
        "octo",
        "app",
        ".github/repo-guardian.yml",
        "labels: [hygiene]\nassignees: [octocat]\n",
    );
    h.spawn_worker().await;
    h.run("octo/app", false).await;
    let license = |h: &Harness| {
        h.double
            .issues("octo", "app")
            .into_iter()
            .find(|i| i.title.contains("No license"))
            .expect("license issue")
    };
    let issue = license(&h);
    assert_eq!(issue.labels, ["repo-guardian", "hygiene"]);
    assert_eq!(issue.assignees, ["octocat"]);
    h.double.put_file(
        "octo",
        "app",
        ".github/repo-guardian.yml",
        "labels: [hygiene, legal]\nassignees: [octocat, hubot]\n",
    );
    h.run("octo/app", false).await;
    let issue = license(&h);
    assert_eq!(issue.labels, ["repo-guardian", "hygiene", "legal"]);
    assert_eq!(issue.assignees, ["octocat", "hubot"]);
    assert_eq!(h.double.issues("octo", "app").len(), 1);
}

/// Fleet, two workers: two repositories with issues disabled file into one central
/// repository, each finding once, named by its source; fixing one repository's finding
/// closes only its issue; an unchanged rerun writes nothing.
#[tokio::test]
async fn a_central_issue_repository_keeps_one_issue_per_finding_and_source() {
    let mut h = Harness::start().await;
    h.double.add_org("octo");
    let no_issues = RepoOptions {
        has_issues: false,
        ..Default::default()
    };
    for name in ["alpha", "beta"] {
        tidy_repo(&h, "octo", name, no_issues.clone());
        h.double.delete_file("octo", name, "LICENSE");
    }
    tidy_repo(&h, "octo", "guardian-issues", RepoOptions::default());
    std::fs::write(
        h.dir.path().join("guardian.toml"),
        "[targets]\nissue_repo = \"octo/guardian-issues\"\ndeny = [\"octo/guardian-issues\"]\n",
    )
    .expect("write guardian.toml");
    h.spawn_worker().await;
    h.spawn_worker().await;
    let record = h.run("org:octo", false).await;
    assert_eq!(record.repos_failed, 0, "{record:?}");
    let central = |h: &Harness| h.double.issues("octo", "guardian-issues");
    let issues = central(&h);
    let titles: Vec<&str> = issues.iter().map(|i| i.title.as_str()).collect();
    assert_eq!(
        titles.len(),
        2,
        "one license issue per source repository: {titles:?}"
    );
    for name in ["alpha", "beta"] {
        let mine = titled(&issues, &format!("octo/{name}: No license"));
        assert_eq!(mine.len(), 1, "{titles:?}");
        assert!(
            mine[0].labels.contains(&format!("repo:octo/{name}")),
            "{:?}",
            mine[0].labels
        );
        assert!(mine[0].body.contains("fingerprint=license/missing hash="));
        assert!(mine[0].body.contains(&format!(" repo=octo/{name} -->")));
    }

    // Fixed in alpha only.
    h.double
        .put_file("octo", "alpha", "LICENSE", "MIT License\n");
    h.run("org:octo", false).await;
    let issues = central(&h);
    assert_eq!(issues.len(), 2);
    assert_eq!(titled(&issues, "octo/alpha:")[0].state, "closed");
    assert_eq!(titled(&issues, "octo/beta:")[0].state, "open");
    h.double.clear_requests();
    h.run("org:octo", false).await;
    assert_eq!(
        h.double.write_count(),
        0,
        "an unchanged rerun writes nothing"
    );
    let labels: Vec<String> = h
        .double
        .requests()
        .into_iter()
        .map(|r| r.path)
        .filter(|p| p.contains("/labels"))
        .collect();
    assert!(
        labels.is_empty(),
        "no label is looked at when nothing is filed: {labels:?}"
    );

    // beta gets a license, but its file list is truncated: `license` is unknown there, so
    // beta's central issue stays open — unknown never reads as fixed.
    h.double
        .put_file("octo", "beta", "LICENSE", "MIT License\n");
    h.double.set_tree_truncated("octo", "beta", true);
    let record = h.run("org:octo", false).await;
    assert_eq!(record.repos_unknown, 1, "{record:?}");
    assert_eq!(h.double.write_count(), 0, "nothing written");
    assert_eq!(titled(&central(&h), "octo/beta:")[0].state, "open");

    // beta enables issues (and lost its license again): its finding is filed in beta
    // itself, and the issue it left in the central repository is closed, saying why.
    h.double.set_tree_truncated("octo", "beta", false);
    h.double.delete_file("octo", "beta", "LICENSE");
    h.double.set_has_issues("octo", "beta", true);
    h.run("org:octo", false).await;
    let left = titled(&central(&h), "octo/beta:")[0].clone();
    assert_eq!(left.state, "closed");
    assert!(
        left.comments
            .last()
            .is_some_and(|c| c.contains("has issues enabled again")),
        "{left:?}"
    );
    let own = h.double.issues("octo", "beta");
    assert_eq!(own.len(), 1, "{own:#?}");
    assert_eq!(
        (own[0].title.as_str(), own[0].state.as_str()),
        ("[repo-guardian] No license file", "open")
    );
    // Settled: the next run writes nothing anywhere.
    h.double.clear_requests();
    h.run("org:octo", false).await;
    assert_eq!(h.double.write_count(), 0);
}
