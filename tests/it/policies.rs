//! Policies against the GitHub double: what a scan may conclude when GitHub answers
//! partially (unknown is never absent), and what a scan costs in requests.
//!
//! The snapshot tests drive `github::snapshot::build` in process against the double (no
//! NATS needed); the fleet tests run real workers and look at the issues they leave.

use github_double::{Fault, GithubDouble, ProtectionRules, RepoOptions};
use repo_guardian::domain::{Input, Protection, RepoRef, Snapshot};
use repo_guardian::github::{GithubClient, snapshot};
use repo_guardian::policy::{self, Evaluation, Selection};

use crate::helpers::{Harness, TOKEN};

fn client(double: &GithubDouble) -> GithubClient {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut settings = crate::helpers::settings_for("nats://127.0.0.1:1").github;
    settings.api_url = double.url();
    settings.token = Some(TOKEN.to_owned().into());
    GithubClient::new(&settings, None).expect("client")
}

fn octo() -> RepoRef {
    RepoRef {
        owner: "octo".into(),
        name: "app".into(),
    }
}

/// A double holding `octo/app` with a README and a protected default branch.
async fn double() -> GithubDouble {
    let double = GithubDouble::start().await.expect("double");
    double.set_token(Some(TOKEN));
    double.add_repo("octo", "app", RepoOptions::default());
    double.put_file("octo", "app", "README.md", "# app\n");
    double.set_protection(
        "octo",
        "app",
        Some(ProtectionRules {
            required_approving_reviews: Some(1),
            ..Default::default()
        }),
    );
    double
}

/// Scans `octo/app` after injecting `faults`, and evaluates every policy on the snapshot.
async fn scan_with(faults: &[Fault]) -> (Snapshot, Evaluation) {
    let double = double().await;
    for f in faults {
        double.inject_fault(f.clone());
    }
    let (snap, _) = snapshot::build(&client(&double), &octo(), None)
        .await
        .expect("the scan itself succeeds");
    let evaluation = policy::evaluate(&snap, &Selection::default(), false);
    (snap, evaluation)
}

fn fault(path_prefix: &str, status: u16, retry_after: Option<u64>, times: usize) -> Fault {
    Fault {
        method: Some("GET".into()),
        path_prefix: path_prefix.into(),
        status,
        retry_after,
        times,
    }
}

#[tokio::test]
async fn unreadable_protection_is_unknown_with_the_reason() {
    let protection = "/repos/octo/app/branches/main/protection";
    // 403 for a token without admin read, a secondary limit, and a 5xx that persists.
    for (status, retry_after) in [(403, None), (403, Some(60)), (502, None)] {
        let (snap, evaluation) = scan_with(&[fault(protection, status, retry_after, 5)]).await;
        assert_eq!(snap.protection, Protection::Unknown);
        let reason = evaluation
            .unknown
            .get("branch-protection")
            .unwrap_or_else(|| {
                panic!("{status}: branch-protection must be unknown, got {evaluation:?}")
            });
        assert!(reason.contains(&status.to_string()), "{reason}");
        assert!(
            !evaluation
                .evaluated
                .contains(&"branch-protection".to_owned())
        );
        // The file policies were still evaluated.
        assert!(evaluation.evaluated.contains(&"readme".to_owned()));
    }
}

#[tokio::test]
async fn a_single_server_error_on_protection_is_absorbed() {
    let (snap, _) = scan_with(&[fault(
        "/repos/octo/app/branches/main/protection",
        502,
        None,
        1,
    )])
    .await;
    assert!(matches!(snap.protection, Protection::Protected(_)));
    assert!(snap.unavailable.is_empty(), "{:?}", snap.unavailable);
}

#[tokio::test]
async fn a_renamed_default_branch_is_followed_not_taken_for_an_empty_repository() {
    let double = double().await;
    let client = client(&double);
    let (_, meta) = snapshot::build(&client, &octo(), None).await.expect("scan");
    assert_eq!(meta.default_branch, "main");
    // Renamed between plan and scan: the plan's metadata still says `main`.
    double.rename_default_branch("octo", "app", "trunk");
    let (snap, meta) = snapshot::build(&client, &octo(), Some(meta))
        .await
        .expect("scan");
    assert_eq!(meta.default_branch, "trunk");
    assert_eq!(snap.default_branch, "trunk");
    assert!(snap.files.contains("README.md"));
    let evaluation = policy::evaluate(&snap, &Selection::default(), false);
    assert!(
        !evaluation.findings.iter().any(|f| f.policy == "readme"),
        "no false `No README`: {:?}",
        evaluation.findings
    );
    assert!(evaluation.unknown.is_empty(), "{:?}", evaluation.unknown);
}

#[tokio::test]
async fn a_branch_that_answers_404_once_is_retried() {
    let (snap, evaluation) =
        scan_with(&[fault("/repos/octo/app/branches/main", 404, None, 1)]).await;
    assert_eq!(evaluation.unknown.len(), 0, "{:?}", evaluation.unknown);
    assert!(snap.files.contains("README.md"));
    assert!(snap.unavailable.is_empty(), "{:?}", snap.unavailable);
}

#[tokio::test]
async fn a_branch_that_stays_missing_makes_file_policies_unknown() {
    let (_, evaluation) = scan_with(&[fault("/repos/octo/app/branches/main", 404, None, 10)]).await;
    assert!(evaluation.findings.is_empty(), "{:?}", evaluation.findings);
    assert!(
        evaluation.evaluated.is_empty(),
        "{:?}",
        evaluation.evaluated
    );
    assert!(evaluation.unknown["readme"].contains("`main` was not found"));
}

#[tokio::test]
async fn an_empty_repository_is_complete_and_empty() {
    let (snap, evaluation) =
        scan_with(&[fault("/repos/octo/app/branches/main", 409, None, 1)]).await;
    assert!(snap.files.is_empty());
    assert!(!snap.unavailable.contains_key(&Input::Tree));
    assert!(
        evaluation
            .findings
            .iter()
            .any(|f| f.fingerprint() == "readme/missing")
    );
    assert!(evaluation.unknown.contains_key("branch-protection"));
}

#[tokio::test]
async fn a_truncated_tree_makes_file_presence_unknown_never_missing() {
    let double = double().await;
    double.set_tree_truncated("octo", "app", true);
    let (snap, _) = snapshot::build(&client(&double), &octo(), None)
        .await
        .expect("scan");
    let evaluation = policy::evaluate(&snap, &Selection::default(), false);
    assert!(
        !evaluation.findings.iter().any(|f| f.key == "missing"),
        "{:?}",
        evaluation.findings
    );
    for id in ["license", "readme", "security-policy", "codeowners"] {
        assert!(evaluation.unknown[id].contains("truncated"), "{id}");
    }
    assert!(
        evaluation
            .evaluated
            .contains(&"branch-protection".to_owned())
    );
}

/// A fleet with one worker and `octo/app` holding a README, a security policy, code
/// owners, a Dependabot file and `extra` files.
async fn fleet_app(extra: &[(&str, &str)]) -> Harness {
    let mut h = Harness::start().await;
    h.double.add_org("octo");
    h.double.add_repo("octo", "app", RepoOptions::default());
    let base = [
        ("README.md", "# app\n"),
        ("SECURITY.md", "mail us\n"),
        (".github/CODEOWNERS", "* @octo/team\n"),
        (".github/dependabot.yml", crate::helpers::DEPENDABOT),
    ];
    for (path, text) in base.iter().chain(extra) {
        h.double.put_file("octo", "app", path, text);
    }
    h.spawn_worker().await;
    h
}

/// Fleet: an issue of a policy that cannot be evaluated stays open.
#[tokio::test]
async fn forbidden_protection_never_closes_its_issue() {
    let h = fleet_app(&[("LICENSE", "MIT\n")]).await;
    h.run("octo/app", false).await;
    let open = |h: &Harness| -> Vec<String> {
        h.double
            .issues("octo", "app")
            .into_iter()
            .filter(|i| i.state == "open")
            .map(|i| i.title)
            .collect()
    };
    assert_eq!(
        open(&h),
        ["[repo-guardian] Default branch is not protected"]
    );
    // Protected now, but the rules are unreadable for this token: the issue stays.
    h.double
        .set_protection("octo", "app", Some(ProtectionRules::default()));
    h.double.inject_fault(fault(
        "/repos/octo/app/branches/main/protection",
        403,
        None,
        100,
    ));
    h.run("octo/app", false).await;
    assert_eq!(
        open(&h),
        ["[repo-guardian] Default branch is not protected"]
    );
}

/// The three overlapping audit groups: our policy, and the zizmor audits it answers for.
const ZIZMOR_GROUPS: &[(&str, &[&str])] = &[
    (
        "dangerous-workflow",
        &["dangerous-triggers", "template-injection"],
    ),
    ("workflow-permissions", &["excessive-permissions"]),
    ("pinned-actions", &["unpinned-uses"]),
];

#[derive(serde::Deserialize)]
struct ZizmorFinding {
    ident: String,
    determinations: ZizmorDeterminations,
    locations: Vec<ZizmorLocation>,
}

#[derive(serde::Deserialize)]
struct ZizmorDeterminations {
    severity: String,
}

#[derive(serde::Deserialize)]
struct ZizmorLocation {
    symbolic: ZizmorSymbolic,
}

#[derive(serde::Deserialize)]
struct ZizmorSymbolic {
    key: ZizmorKey,
}

#[derive(serde::Deserialize)]
struct ZizmorKey {
    #[serde(rename = "Local")]
    local: ZizmorLocal,
}

#[derive(serde::Deserialize)]
struct ZizmorLocal {
    verbatim_path: String,
}

/// Corpus files relative to `root`, sorted.
fn corpus(root: &std::path::Path) -> Vec<String> {
    fn walk(dir: &std::path::Path, prefix: &str, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("corpus directory") {
            let entry = entry.expect("entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() {
                walk(&entry.path(), &format!("{prefix}{name}/"), out);
            } else if name.ends_with(".yml") || name.ends_with(".yaml") {
                out.push(format!("{prefix}{name}"));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, "", &mut out);
    out.sort();
    out
}

/// Our policy ids that report something on one corpus file.
fn ours(root: &std::path::Path, file: &str) -> std::collections::BTreeSet<String> {
    let text = std::fs::read_to_string(root.join(file)).expect("read corpus file");
    // Workflows live in `.github/workflows/`; composite actions keep their own path.
    let path = if file.ends_with("/action.yml") {
        file.to_owned()
    } else {
        format!(".github/workflows/{file}")
    };
    let mut snap = Snapshot::new(octo(), "main");
    snap.files.insert(path.clone());
    snap.contents.insert(path, text);
    ZIZMOR_GROUPS
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| {
            let policy = policy::by_id(id).expect("known policy");
            !policy.evaluate(&snap, &Default::default()).is_empty()
        })
        .map(str::to_owned)
        .collect()
}

/// Our workflow policies agree with zizmor on at least 90 % of the corpus, and every file
/// where they disagree is explained in docs/policies.md.
#[test]
fn corpus_agrees_with_zizmor() {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.join("tests/fixtures/workflows");
    let files = corpus(&root);
    assert!(files.len() >= 40, "the corpus has {} files", files.len());
    if std::process::Command::new("zizmor")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("GUARDIAN_SKIP_ZIZMOR").as_deref() == Ok("1"),
            "zizmor is not installed (`pip install zizmor==1.32.0`); set GUARDIAN_SKIP_ZIZMOR=1 to skip deliberately"
        );
        eprintln!("SKIPPED: zizmor agreement — zizmor missing and GUARDIAN_SKIP_ZIZMOR=1");
        return;
    }
    let output = std::process::Command::new("zizmor")
        .args(["--offline", "--format", "json", "--no-config"])
        .args(&files)
        .current_dir(&root)
        .output()
        .expect("zizmor runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let findings: Vec<ZizmorFinding> =
        serde_json::from_slice(&output.stdout).expect("zizmor JSON output");
    // zizmor names each input it audited; files it cannot parse are left out of the
    // comparison (ours reports them as `invalid:` findings).
    let audited: Vec<&String> = files
        .iter()
        .filter(|f| {
            stderr
                .lines()
                .any(|l| l.trim_end().ends_with(&format!("completed {f}")))
        })
        .collect();
    assert!(
        audited.len() >= 40,
        "zizmor audited {}:\n{stderr}",
        audited.len()
    );
    let docs = std::fs::read_to_string(manifest.join("docs/policies.md")).expect("docs");
    let mut agree = 0;
    let mut unexplained = Vec::new();
    for file in &audited {
        let theirs: std::collections::BTreeSet<String> = ZIZMOR_GROUPS
            .iter()
            .filter(|(_, audits)| {
                findings.iter().any(|f| {
                    audits.contains(&f.ident.as_str())
                        && matches!(f.determinations.severity.as_str(), "Medium" | "High")
                        && f.locations.iter().any(|l| {
                            l.symbolic.key.local.verbatim_path.trim_start_matches("./")
                                == file.as_str()
                        })
                })
            })
            .map(|(id, _)| (*id).to_owned())
            .collect();
        let ours = ours(&root, file);
        if ours == theirs {
            agree += 1;
        } else {
            eprintln!("disagreement on {file}: ours {ours:?}, zizmor {theirs:?}");
            if !docs.contains(&format!("`{file}`")) {
                unexplained.push(file.to_string());
            }
        }
    }
    let share = agree as f64 / audited.len() as f64;
    eprintln!(
        "zizmor agreement: {agree}/{} files ({:.1} %)",
        audited.len(),
        share * 100.0
    );
    assert!(share >= 0.9, "agreement {:.1} % < 90 %", share * 100.0);
    assert!(
        unexplained.is_empty(),
        "disagreements not explained in docs/policies.md: {unexplained:?}"
    );
}

/// A repository with three workflows costs at most 11 requests cold (Scorecard spends
/// about 70), and an unchanged rescan spends no rate limit: every request is a 304.
///
/// The 11: repository, branch, tree, three workflow blobs, protection, check runs and
/// combined status of the head (`default-branch-ci`), and the tag `actions/checkout@v4`
/// resolved to its commit (its ref, then the annotated tag object) so the issue shows the
/// exact pin. Issues and labels are the reconcile's and not counted here.
#[tokio::test]
async fn three_workflows_cost_at_most_eleven_requests_and_nothing_when_unchanged() {
    let mut h = Harness::start().await;
    h.double.add_org("octo");
    h.double
        .add_repo("actions", "checkout", RepoOptions::default());
    h.double.put_file(
        "actions",
        "checkout",
        "action.yml",
        "name: checkout
runs:
  using: node20
  main: dist/index.js
",
    );
    let checkout_sha = h.double.add_tag("actions", "checkout", "v4", true);
    h.double.add_repo("octo", "app", RepoOptions::default());
    for (path, text) in [
        ("README.md", "# app\n"),
        ("src/main.rs", "fn main() {}\n"),
        (
            ".github/workflows/ci.yml",
            "on: push\npermissions: {}\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: make\n",
        ),
        (
            ".github/workflows/release.yml",
            "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: actions/checkout@v4\n",
        ),
        (
            ".github/workflows/triage.yml",
            "on: issues\npermissions: {}\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo \"${{ github.event.issue.title }}\"\n",
        ),
    ] {
        h.double.put_file("octo", "app", path, text);
    }
    h.double
        .set_protection("octo", "app", Some(ProtectionRules::default()));
    h.spawn_worker().await;
    let scan_requests = |h: &Harness| -> Vec<github_double::RecordedRequest> {
        h.double
            .requests()
            .into_iter()
            .filter(|r| {
                r.method == "GET" && !r.path.contains("/issues") && !r.path.contains("/labels")
            })
            .collect()
    };
    h.double.clear_requests();
    h.run("octo/app", false).await;
    let cold = scan_requests(&h);
    let paths: Vec<_> = cold
        .iter()
        .map(|r| format!("{} {}", r.status, r.path))
        .collect();
    eprintln!("cold scan: {} requests\n{}", cold.len(), paths.join("\n"));
    assert!(cold.len() <= 11, "{} requests: {paths:#?}", cold.len());
    assert_eq!(
        cold.iter()
            .filter(|r| r.path.contains("/git/blobs/"))
            .count(),
        3,
        "exactly the three workflow blobs are fetched"
    );
    let pinned = h
        .double
        .issues("octo", "app")
        .into_iter()
        .find(|i| i.title.contains("actions/checkout"))
        .expect("pinned-actions issue");
    assert!(
        pinned
            .body
            .contains(&format!("uses: actions/checkout@{checkout_sha} # v4")),
        "{}",
        pinned.body
    );
    // The first run filed issues, which changes the repository's metadata and issue list;
    // from then on nothing changes.
    h.run("octo/app", false).await;
    h.double.clear_requests();
    h.run("octo/app", false).await;
    let warm = h.double.requests();
    let spent: Vec<_> = warm
        .iter()
        .filter(|r| r.status != 304)
        .map(|r| format!("{} {} {}", r.method, r.status, r.path))
        .collect();
    eprintln!("rescan: {} requests, {} not 304", warm.len(), spent.len());
    assert!(
        spent.is_empty(),
        "rate-limited requests on an unchanged rescan: {spent:#?}"
    );
}

/// Owners' configuration in the fleet: a malformed `.github/repo-guardian.yml` and a
/// malformed workflow are one finding each and the run succeeds; a suppression closes the
/// issue with a comment quoting its reason, and its expiry reopens it.
#[tokio::test]
async fn owner_configuration_suppresses_and_malformed_files_are_findings() {
    let h = fleet_app(&[
        (".github/repo-guardian.yml", "disable: [branch-protection\n"),
        (".github/workflows/broken.yml", "on: push\njobs:\n  a: [\n"),
    ])
    .await;
    let record = h.run("octo/app", false).await;
    assert!(record.status.is_final(), "{record:?}");
    let issue = |h: &Harness, title: &str| {
        h.double
            .issues("octo", "app")
            .into_iter()
            .find(|i| i.title.contains(title))
    };
    let open_titles = |h: &Harness| -> Vec<String> {
        let mut t: Vec<String> = h
            .double
            .issues("octo", "app")
            .into_iter()
            .filter(|i| i.state == "open")
            .map(|i| i.title)
            .collect();
        t.sort();
        t
    };
    assert_eq!(
        open_titles(&h),
        [
            "[repo-guardian] Default branch is not protected",
            "[repo-guardian] No license file",
            "[repo-guardian] Workflow `.github/workflows/broken.yml` does not parse",
            "[repo-guardian] `.github/repo-guardian.yml` is invalid and ignored",
        ]
    );
    let config = issue(&h, "is invalid and ignored").expect("config issue");
    assert!(config.body.contains("Parser: "), "{}", config.body);

    // Valid now, suppressing the license finding until a day far ahead.
    h.double.put_file(
        "octo",
        "app",
        ".github/repo-guardian.yml",
        "suppressions:\n  - fingerprint: license/missing\n    reason: accepted-risk\n    note: internal tool, never distributed\n    until: 2999-12-31\n",
    );
    h.run("octo/app", false).await;
    let license = issue(&h, "No license file").expect("license issue");
    assert_eq!(license.state, "closed");
    let last = license.comments.last().expect("closing comment");
    assert!(
        last.contains("reason: **accepted-risk**")
            && last.contains("internal tool, never distributed"),
        "{last}"
    );
    assert_eq!(
        issue(&h, "is invalid and ignored")
            .map(|i| i.state)
            .as_deref(),
        Some("closed")
    );

    // The suppression expired: the finding counts again and its issue reopens.
    h.double.put_file(
        "octo",
        "app",
        ".github/repo-guardian.yml",
        "suppressions:\n  - fingerprint: license/missing\n    reason: accepted-risk\n    until: 2020-01-31\n",
    );
    h.run("octo/app", false).await;
    assert_eq!(
        issue(&h, "No license file").map(|i| i.state).as_deref(),
        Some("open")
    );
}
