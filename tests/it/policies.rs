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

/// Fleet: an issue of a policy that cannot be evaluated stays open.
#[tokio::test]
async fn forbidden_protection_never_closes_its_issue() {
    let mut h = Harness::start().await;
    h.double.add_org("octo");
    h.double.add_repo("octo", "app", RepoOptions::default());
    for (path, text) in [
        ("README.md", "# app\n"),
        ("LICENSE", "MIT\n"),
        ("SECURITY.md", "mail us\n"),
        (".github/CODEOWNERS", "* @octo/team\n"),
    ] {
        h.double.put_file("octo", "app", path, text);
    }
    h.spawn_worker().await;
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
