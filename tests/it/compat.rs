//! Rollback safety: a worker reads every released payload version, and refuses (with a
//! reason, never a crash) payloads written by a newer version.

use std::path::Path;

use repo_guardian::bus::Step;
use repo_guardian::bus::dlq::DeadLetter;
use repo_guardian::bus::envelope::{DecodeError, Envelope, Task};
use repo_guardian::store::repos::RepoState;
use repo_guardian::store::runs::{RunRecord, RunStatus};
use repo_guardian::store::{StoreError, decode};

fn fixture(path: &str) -> Vec<u8> {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/payloads")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

#[test]
fn every_released_step_envelope_decodes() {
    for (file, step) in [
        ("v1/plan.json", Step::Plan),
        ("v1/scan.json", Step::Scan),
        ("v1/review.json", Step::Review),
        ("v1/reconcile.json", Step::Reconcile),
    ] {
        let envelope =
            Envelope::decode(&fixture(file), step).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(envelope.task.step(), step);
        if let Task::Reconcile(t) = &envelope.task {
            assert_eq!(t.findings[0].fingerprint(), "license/missing");
        }
    }
}

#[test]
fn every_released_record_decodes() {
    let run: RunRecord = decode("run", &fixture("v1/run_record.json")).unwrap();
    assert_eq!(run.status, RunStatus::Partial);
    assert_eq!(run.errors.len(), 1);
    let state: RepoState = decode("octo-org/hello-world", &fixture("v1/repo_state.json")).unwrap();
    assert_eq!(state.issues["license/missing"], 7);
    let letter: DeadLetter = serde_json::from_slice(&fixture("v1/dead_letter.json")).unwrap();
    assert_eq!(letter.payload_bytes(), b"not json");
}

#[test]
fn newer_payloads_are_refused_with_a_reason() {
    let err = Envelope::decode(&fixture("future/scan_v2.json"), Step::Scan).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::NewerVersion {
            found: 2,
            supported: 1
        }
    ));
    assert!(
        err.to_string()
            .contains("newer than this worker understands"),
        "{err}"
    );
    let err = decode::<RunRecord>("run", &fixture("future/run_record_v2.json")).unwrap_err();
    assert!(
        matches!(err, StoreError::NewerVersion { found: 2, .. }),
        "{err}"
    );
}

#[test]
fn what_this_build_writes_is_what_the_fixtures_hold() {
    // The current encoder produces the v1 shape, so today's payloads are tomorrow's fixtures.
    let envelope = Envelope::decode(&fixture("v1/scan.json"), Step::Scan).unwrap();
    let reencoded: serde_json::Value = serde_json::from_slice(&envelope.encode()).unwrap();
    let original: serde_json::Value = serde_json::from_slice(&fixture("v1/scan.json")).unwrap();
    assert_eq!(reencoded, original);
}
