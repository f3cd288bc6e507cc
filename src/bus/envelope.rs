//! The versioned JSON envelope every step message carries.
//!
//! `{"v": 1, "run_id": "…", "step": "scan", "data": {…}}`. The version is checked before
//! anything else: a payload from a newer release is refused with a reason naming both
//! versions (and dead-lettered by the consumer), so rolling back to an older worker never
//! crashes it and never loses the message — a newer worker can replay it.

use serde::{Deserialize, Serialize};

pub use crate::domain::RepoMeta;
use crate::domain::{Finding, RepoRef};

/// Newest envelope version this build writes and reads.
pub const ENVELOPE_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Envelope {
    pub v: u32,
    pub run_id: String,
    #[serde(flatten)]
    pub task: Task,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "step", content = "data", rename_all = "lowercase")]
pub enum Task {
    Plan(PlanTask),
    Scan(ScanTask),
    Review(ReconcileTask),
    Reconcile(ReconcileTask),
}

impl Task {
    pub fn step(&self) -> super::Step {
        match self {
            Task::Plan(_) => super::Step::Plan,
            Task::Scan(_) => super::Step::Scan,
            Task::Review(_) => super::Step::Review,
            Task::Reconcile(_) => super::Step::Reconcile,
        }
    }

    pub fn repo(&self) -> Option<&RepoRef> {
        match self {
            Task::Plan(_) => None,
            Task::Scan(t) => Some(&t.repo),
            Task::Review(t) | Task::Reconcile(t) => Some(&t.repo),
        }
    }
}

/// Expand a target into repositories and fan out scans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PlanTask {
    pub target: String,
    #[serde(default)]
    pub dry_run: bool,
}

/// Build one repository's snapshot and evaluate the policies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ScanTask {
    pub repo: RepoRef,
    #[serde(default)]
    pub dry_run: bool,
    /// Repository metadata from the listing, which saves one request per repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<RepoMeta>,
}

/// Make the repository's issues match its findings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReconcileTask {
    pub repo: RepoRef,
    #[serde(default)]
    pub dry_run: bool,
    pub findings: Vec<Finding>,
    /// Policies that were evaluated: only their issues may be closed as fixed.
    pub evaluated: Vec<String>,
    /// Policies that could not be evaluated, with the reason (a 403, a 5xx, a truncated
    /// tree, an unparsable file). Unknown is never absent: their issues stay as they are.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub unknown: std::collections::BTreeMap<String, String>,
    pub has_issues: bool,
    #[serde(default)]
    pub head_sha: Option<String>,
    /// Labels the owners want on every issue (`.github/repo-guardian.yml`), besides the
    /// fleet's label.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Logins the owners want assigned to every issue.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assignees: Vec<String>,
    /// The repository is not checked (its owners opted out, or it is not opted in): no
    /// finding is filed and its open issues are closed, saying so, never as fixed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub opted_out: bool,
    /// Where the findings are filed when the repository has issues disabled
    /// (`targets.issue_repo`); `None` files them in the repository itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue_repo: Option<RepoRef>,
}

/// Why a payload could not be decoded; always permanent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("payload is not JSON: {0}")]
    NotJson(String),
    #[error("payload has no version field `v`")]
    MissingVersion,
    #[error(
        "payload version {found} is newer than this worker understands (up to {supported}); \
         dead-lettered so a newer worker can replay it"
    )]
    NewerVersion { found: u64, supported: u32 },
    #[error("payload version {0} is not supported")]
    UnsupportedVersion(u64),
    #[error("payload does not match envelope version {version}: {message}")]
    Shape { version: u64, message: String },
    #[error("payload is a {found} step but arrived on the {expected} subject")]
    WrongStep {
        found: super::Step,
        expected: super::Step,
    },
}

impl Envelope {
    pub fn new(run_id: &str, task: Task) -> Self {
        Envelope {
            v: ENVELOPE_VERSION,
            run_id: run_id.to_string(),
            task,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain data structures cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes and checks the version and the step the subject promises.
    pub fn decode(payload: &[u8], expected: super::Step) -> Result<Envelope, DecodeError> {
        let value: serde_json::Value =
            serde_json::from_slice(payload).map_err(|e| DecodeError::NotJson(e.to_string()))?;
        let version = value
            .get("v")
            .and_then(serde_json::Value::as_u64)
            .ok_or(DecodeError::MissingVersion)?;
        if version > u64::from(ENVELOPE_VERSION) {
            return Err(DecodeError::NewerVersion {
                found: version,
                supported: ENVELOPE_VERSION,
            });
        }
        if version == 0 {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let envelope: Envelope = serde_json::from_value(value).map_err(|e| DecodeError::Shape {
            version,
            message: e.to_string(),
        })?;
        if envelope.task.step() != expected {
            return Err(DecodeError::WrongStep {
                found: envelope.task.step(),
                expected,
            });
        }
        Ok(envelope)
    }

    /// Reads the run id out of any JSON payload, even one that fails to decode fully, so a
    /// dead letter can still be recorded against its run.
    pub fn peek_run_id(payload: &[u8]) -> Option<String> {
        let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
        value.get("run_id")?.as_str().map(str::to_string)
    }

    /// Reads the repository (`data.repo`) out of any JSON payload, even one that fails to
    /// decode fully, so a dead-lettered scan or reconcile still settles its repository.
    pub fn peek_repo(payload: &[u8]) -> Option<RepoRef> {
        let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
        serde_json::from_value(value.get("data")?.get("repo")?.clone()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Step;

    #[test]
    fn round_trips_every_task() {
        let repo = RepoRef {
            owner: "o".into(),
            name: "r".into(),
        };
        let tasks = [
            Task::Plan(PlanTask {
                target: "org:o".into(),
                dry_run: true,
            }),
            Task::Scan(ScanTask {
                repo: repo.clone(),
                dry_run: false,
                meta: None,
            }),
            Task::Reconcile(ReconcileTask {
                repo,
                dry_run: false,
                findings: vec![],
                evaluated: vec!["license".into()],
                unknown: Default::default(),
                has_issues: true,
                head_sha: None,
                labels: vec!["security".into()],
                assignees: vec!["octocat".into()],
                opted_out: false,
                issue_repo: None,
            }),
        ];
        for task in tasks {
            let step = task.step();
            let env = Envelope::new("run-1", task);
            assert_eq!(Envelope::decode(&env.encode(), step).unwrap(), env);
        }
    }

    #[test]
    fn peeks_run_and_repository_of_payloads_that_do_not_decode() {
        let payload =
            br#"{"v":1,"run_id":"r1","step":"scan","data":{"repo":{"owner":"o","name":"n"},"meta":7}}"#;
        assert!(Envelope::decode(payload, Step::Scan).is_err());
        assert_eq!(Envelope::peek_run_id(payload).as_deref(), Some("r1"));
        assert_eq!(Envelope::peek_repo(payload).unwrap().full_name(), "o/n");
        assert_eq!(Envelope::peek_repo(b"not json"), None);
    }

    #[test]
    fn refuses_garbage_newer_versions_and_wrong_steps_with_reasons() {
        let err = Envelope::decode(b"\x00garbage", Step::Scan).unwrap_err();
        assert!(err.to_string().contains("not JSON"), "{err}");
        let err = Envelope::decode(br#"{"run_id":"x"}"#, Step::Scan).unwrap_err();
        assert_eq!(err, DecodeError::MissingVersion);
        let err = Envelope::decode(
            br#"{"v":7,"run_id":"x","step":"scan","data":{}}"#,
            Step::Scan,
        )
        .unwrap_err();
        assert!(err.to_string().contains("version 7 is newer"), "{err}");
        let err = Envelope::decode(
            br#"{"v":1,"run_id":"x","step":"plan","data":{"target":"o/r"}}"#,
            Step::Scan,
        )
        .unwrap_err();
        assert!(matches!(err, DecodeError::WrongStep { .. }));
        let err = Envelope::decode(
            br#"{"v":1,"run_id":"x","step":"scan","data":{}}"#,
            Step::Scan,
        )
        .unwrap_err();
        assert!(err.to_string().contains("missing field `repo`"), "{err}");
    }
}
