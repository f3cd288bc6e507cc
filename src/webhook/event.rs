//! What a GitHub event means for the fleet: which repositories to scan, or why it is
//! ignored. Pure: a verified payload in, a [`Decision`] out, so every event kind is tested
//! without a server. Payloads decode into the few fields that matter; the rest of GitHub's
//! (large, growing) payloads is ignored.

use serde::Deserialize;

use crate::domain::{RepoRef, Target};

/// The events the receiver acts on, as named in `X-GitHub-Event`; every other event is
/// acknowledged, ignored and counted as `other`.
pub const HANDLED_EVENTS: [&str; 8] = [
    "push",
    "repository",
    "branch_protection_rule",
    "installation",
    "installation_repositories",
    "pull_request",
    "check_suite",
    "ping",
];

/// `repository` actions that change what the policies see.
const REPOSITORY_ACTIONS: [&str; 5] = [
    "created",
    "publicized",
    "renamed",
    "transferred",
    "archived",
];
/// `pull_request` actions that change how stale a repository's pull requests are.
const PULL_REQUEST_ACTIONS: [&str; 6] = [
    "opened",
    "closed",
    "reopened",
    "synchronize",
    "ready_for_review",
    "converted_to_draft",
];

/// The `event` label of `guardian_webhooks_total` for an `X-GitHub-Event` value; unknown
/// names fold into `other` so a caller cannot grow the series count.
pub fn event_label(event: &str) -> &'static str {
    HANDLED_EVENTS
        .into_iter()
        .find(|known| *known == event)
        .unwrap_or("other")
}

/// What to do with one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Scan these repositories (each coalesced with other events for it).
    Scan(Vec<RepoRef>),
    /// Acknowledge and do nothing, for this reason.
    Ignore(&'static str),
}

/// A signed payload that does not have the shape its event promises.
#[derive(Debug, thiserror::Error)]
#[error("`{event}` payload unreadable: {source}")]
pub struct PayloadError {
    event: &'static str,
    #[source]
    source: serde_json::Error,
}

#[derive(Deserialize)]
struct Repository {
    full_name: String,
    #[serde(default)]
    default_branch: Option<String>,
}

#[derive(Deserialize)]
struct Push {
    #[serde(rename = "ref")]
    git_ref: String,
    #[serde(default)]
    deleted: bool,
    repository: Repository,
}

#[derive(Deserialize)]
struct WithAction {
    action: String,
    repository: Repository,
}

#[derive(Deserialize)]
struct CheckSuiteEvent {
    action: String,
    check_suite: CheckSuite,
    repository: Repository,
}

#[derive(Deserialize)]
struct CheckSuite {
    head_branch: Option<String>,
}

#[derive(Deserialize)]
struct Named {
    full_name: String,
}

#[derive(Deserialize)]
struct Installation {
    action: String,
    #[serde(default)]
    repositories: Vec<Named>,
}

#[derive(Deserialize)]
struct InstallationRepositories {
    action: String,
    #[serde(default)]
    repositories_added: Vec<Named>,
}

fn repo(full_name: &str) -> Option<RepoRef> {
    match Target::parse(full_name) {
        Ok(Target::Repo(r)) => Some(r),
        _ => None,
    }
}

fn scan_one(repository: &Repository) -> Decision {
    match repo(&repository.full_name) {
        Some(r) => Decision::Scan(vec![r]),
        None => Decision::Ignore("repository name not understood"),
    }
}

fn scan_all(named: &[Named]) -> Decision {
    let repos: Vec<RepoRef> = named.iter().filter_map(|n| repo(&n.full_name)).collect();
    if repos.is_empty() {
        Decision::Ignore("no repositories in the event")
    } else {
        Decision::Scan(repos)
    }
}

fn on_default_branch(branch: Option<&str>, repository: &Repository) -> bool {
    matches!((branch, repository.default_branch.as_deref()), (Some(b), Some(d)) if b == d)
}

/// Decides what a verified delivery of `event` with `body` asks for.
pub fn decide(event: &str, body: &[u8]) -> Result<Decision, PayloadError> {
    let label = event_label(event);
    let parse = |body| PayloadError {
        event: label,
        source: body,
    };
    Ok(match label {
        "push" => {
            let push: Push = serde_json::from_slice(body).map_err(parse)?;
            let branch = push.git_ref.strip_prefix("refs/heads/");
            if push.deleted {
                Decision::Ignore("branch deleted")
            } else if !on_default_branch(branch, &push.repository) {
                Decision::Ignore("push to another branch than the default")
            } else {
                scan_one(&push.repository)
            }
        }
        "repository" => {
            let e: WithAction = serde_json::from_slice(body).map_err(parse)?;
            if REPOSITORY_ACTIONS.contains(&e.action.as_str()) {
                scan_one(&e.repository)
            } else {
                Decision::Ignore("repository action without effect on policies")
            }
        }
        "branch_protection_rule" => {
            let e: WithAction = serde_json::from_slice(body).map_err(parse)?;
            scan_one(&e.repository)
        }
        "pull_request" => {
            let e: WithAction = serde_json::from_slice(body).map_err(parse)?;
            if PULL_REQUEST_ACTIONS.contains(&e.action.as_str()) {
                scan_one(&e.repository)
            } else {
                Decision::Ignore("pull request action without effect on staleness")
            }
        }
        "check_suite" => {
            let e: CheckSuiteEvent = serde_json::from_slice(body).map_err(parse)?;
            if e.action != "completed" {
                Decision::Ignore("check suite not completed")
            } else if !on_default_branch(e.check_suite.head_branch.as_deref(), &e.repository) {
                Decision::Ignore("check suite on another branch than the default")
            } else {
                scan_one(&e.repository)
            }
        }
        "installation" => {
            let e: Installation = serde_json::from_slice(body).map_err(parse)?;
            if e.action == "created" || e.action == "new_permissions_accepted" {
                scan_all(&e.repositories)
            } else {
                Decision::Ignore("installation action without new repositories")
            }
        }
        "installation_repositories" => {
            let e: InstallationRepositories = serde_json::from_slice(body).map_err(parse)?;
            if e.action == "added" {
                scan_all(&e.repositories_added)
            } else {
                Decision::Ignore("repositories removed from the installation")
            }
        }
        "ping" => Decision::Ignore("ping"),
        _ => Decision::Ignore("event not handled"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn octo() -> Decision {
        Decision::Scan(vec![RepoRef {
            owner: "octo".into(),
            name: "hello".into(),
        }])
    }

    const REPO: &str = r#""repository":{"full_name":"octo/hello","default_branch":"main","id":1}"#;

    fn check(event: &str, body: &str, expect: Decision) {
        assert_eq!(
            decide(event, body.as_bytes()).unwrap(),
            expect,
            "{event}: {body}"
        );
    }

    #[test]
    fn pushes_to_the_default_branch_scan_the_repository() {
        check(
            "push",
            &format!(r#"{{"ref":"refs/heads/main",{REPO}}}"#),
            octo(),
        );
        check(
            "push",
            &format!(r#"{{"ref":"refs/heads/feature",{REPO}}}"#),
            Decision::Ignore("push to another branch than the default"),
        );
        check(
            "push",
            &format!(r#"{{"ref":"refs/tags/main",{REPO}}}"#),
            Decision::Ignore("push to another branch than the default"),
        );
        check(
            "push",
            &format!(r#"{{"ref":"refs/heads/main","deleted":true,{REPO}}}"#),
            Decision::Ignore("branch deleted"),
        );
    }

    #[test]
    fn repository_and_pull_request_actions() {
        for action in REPOSITORY_ACTIONS {
            check(
                "repository",
                &format!(r#"{{"action":"{action}",{REPO}}}"#),
                octo(),
            );
        }
        check(
            "repository",
            &format!(r#"{{"action":"edited",{REPO}}}"#),
            Decision::Ignore("repository action without effect on policies"),
        );
        check(
            "branch_protection_rule",
            &format!(r#"{{"action":"deleted",{REPO}}}"#),
            octo(),
        );
        check(
            "pull_request",
            &format!(r#"{{"action":"opened",{REPO}}}"#),
            octo(),
        );
        check(
            "pull_request",
            &format!(r#"{{"action":"labeled",{REPO}}}"#),
            Decision::Ignore("pull request action without effect on staleness"),
        );
    }

    #[test]
    fn completed_check_suites_on_the_default_branch() {
        let suite = |action: &str, branch: &str| {
            format!(r#"{{"action":"{action}","check_suite":{{"head_branch":"{branch}"}},{REPO}}}"#)
        };
        check("check_suite", &suite("completed", "main"), octo());
        check(
            "check_suite",
            &suite("completed", "dev"),
            Decision::Ignore("check suite on another branch than the default"),
        );
        check(
            "check_suite",
            &suite("requested", "main"),
            Decision::Ignore("check suite not completed"),
        );
    }

    #[test]
    fn installations_scan_their_new_repositories() {
        let two = Decision::Scan(vec![
            RepoRef {
                owner: "acme".into(),
                name: "a".into(),
            },
            RepoRef {
                owner: "acme".into(),
                name: "b".into(),
            },
        ]);
        check(
            "installation",
            r#"{"action":"created","repositories":[{"full_name":"acme/a"},{"full_name":"acme/b"}]}"#,
            two.clone(),
        );
        check(
            "installation",
            r#"{"action":"deleted","repositories":[{"full_name":"acme/a"}]}"#,
            Decision::Ignore("installation action without new repositories"),
        );
        check(
            "installation_repositories",
            r#"{"action":"added","repositories_added":[{"full_name":"acme/a"},{"full_name":"acme/b"}],"repositories_removed":[]}"#,
            two,
        );
        check(
            "installation_repositories",
            r#"{"action":"removed","repositories_added":[]}"#,
            Decision::Ignore("repositories removed from the installation"),
        );
    }

    #[test]
    fn other_events_are_ignored_and_bad_payloads_named() {
        check("ping", r#"{"zen":"hi"}"#, Decision::Ignore("ping"));
        check("star", r#"{}"#, Decision::Ignore("event not handled"));
        assert_eq!(event_label("star"), "other");
        assert_eq!(event_label("push"), "push");
        let err = decide("push", br#"{"ref":1}"#).unwrap_err().to_string();
        assert!(err.contains("`push` payload unreadable"), "{err}");
    }
}
