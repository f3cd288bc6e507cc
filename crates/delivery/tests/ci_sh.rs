//! `deploy/nomad/ci.sh` against a fake `nomad` (tests/fake-nomad/nomad) that replays
//! answers in the shape Nomad prints them: deployments and job versions are held to the
//! strict `nomad_api` model before they are handed to the script.
//!
//! Each test writes the answers of one scenario (a successful, failed, auto-reverted or
//! promoted deployment, a rollback), runs the real script with the fake first on PATH, and
//! asserts the exit status and the commands issued.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use delivery::{nix_lock, repo_root};
use serde_json::{Value, json};

const JOB: &str = "repo-guardian";
const OLD: &str = "ghcr.io/example/repo-guardian@sha256:1111111111111111111111111111111111111111111111111111111111111111";
const NEW: &str = "ghcr.io/example/repo-guardian@sha256:2222222222222222222222222222222222222222222222222222222222222222";

/// One scenario: a temporary directory of answers and the calls the script made.
struct Fake {
    dir: tempfile::TempDir,
}

/// A finished run of ci.sh.
struct Run {
    output: Output,
    calls: Vec<String>,
}

impl Run {
    fn ok(&self) -> bool {
        self.output.status.success()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    fn called(&self, prefix: &str) -> bool {
        self.calls.iter().any(|c| c.starts_with(prefix))
    }
    fn position(&self, prefix: &str) -> usize {
        self.calls
            .iter()
            .position(|c| c.starts_with(prefix))
            .unwrap_or_else(|| panic!("`nomad {prefix}` was not called: {:#?}", self.calls))
    }
    fn explain(&self) -> String {
        format!("calls: {:#?}\nstderr:\n{}", self.calls, self.stderr())
    }
}

impl Fake {
    fn new() -> Fake {
        let fake = Fake {
            dir: tempfile::tempdir().unwrap(),
        };
        fs::create_dir(fake.dir.path().join("answers")).unwrap();
        fake
    }

    /// Answer `key` (`<region>.<command>-<subcommand>[.p<phase>][.n<call>]`).
    fn answer(&self, key: &str, out: impl Into<String>, rc: i32) -> &Fake {
        let base = self.dir.path().join("answers").join(key);
        fs::write(base.with_extension_added("out"), out.into()).unwrap();
        fs::write(base.with_extension_added("rc"), rc.to_string()).unwrap();
        self
    }

    fn json(&self, key: &str, value: Value) -> &Fake {
        self.answer(key, value.to_string(), 0)
    }

    fn run(&self, env: &[(&str, &str)], args: &[&str]) -> Run {
        let fake_bin = repo_root().join("crates/delivery/tests/fake-nomad");
        let path = format!("{}:{}", fake_bin.display(), std::env::var("PATH").unwrap());
        // ci.sh renders the job with nix-instantiate: keep Nix calls of this process serial.
        let _nix = nix_lock();
        let mut cmd = Command::new("bash");
        cmd.arg(repo_root().join("deploy/nomad/ci.sh"))
            .args(args)
            .env("PATH", path)
            .env("FAKE_NOMAD_DIR", self.dir.path())
            .env("NOMAD_ADDR", "http://nomad.invalid:4646")
            .env("NOMAD_TOKEN", "fake-token")
            .env("POLL_SECONDS", "0")
            .env("DEPLOY_TIMEOUT_SECONDS", "20")
            .env_remove("NOMAD_REGION")
            .env_remove("GITHUB_ACTIONS")
            .env_remove("GITHUB_REF")
            .env_remove("CANARY_SOAK_SECONDS");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let output = cmd.output().expect("bash runs ci.sh");
        let calls = fs::read_to_string(self.dir.path().join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        Run { output, calls }
    }
}

trait WithExtensionAdded {
    fn with_extension_added(&self, ext: &str) -> PathBuf;
}

impl WithExtensionAdded for Path {
    fn with_extension_added(&self, ext: &str) -> PathBuf {
        let mut name = self.as_os_str().to_owned();
        name.push(".");
        name.push(ext);
        PathBuf::from(name)
    }
}

/// A deployment as `nomad deployment status -json` prints it, checked against the model.
fn deployment(version: u64, status: &str, description: &str, group: Value) -> Value {
    let mut state = json!({
        "PlacedCanaries": null, "AutoRevert": true, "ProgressDeadline": 600000000000i64,
        "RequireProgressBy": "2026-12-01T12:10:00Z", "Promoted": false, "DesiredCanaries": 1,
        "DesiredTotal": 3, "PlacedAllocs": 1, "HealthyAllocs": 0, "UnhealthyAllocs": 0,
        "AutoPromote": false
    });
    for (k, v) in group.as_object().unwrap() {
        state[k] = v.clone();
    }
    let d = json!({
        "ID": format!("d{version}000000-0000-0000-0000-000000000000"),
        "Namespace": "repo-guardian", "JobID": JOB, "JobVersion": version,
        "JobModifyIndex": 100 + version, "JobSpecModifyIndex": 100 + version,
        "JobCreateIndex": 10, "IsMultiregion": false,
        "TaskGroups": { "worker": state },
        "Status": status, "StatusDescription": description,
        "CreateIndex": 200 + version, "ModifyIndex": 300 + version
    });
    serde_json::from_value::<nomad_api::deployment::Deployment>(d.clone())
        .expect("fixture has Nomad's deployment shape");
    d
}

fn deployment_id(version: u64) -> String {
    format!("d{version}000000-0000-0000-0000-000000000000")
}

/// A job version as `nomad job history -json` / `job inspect` print it (checked).
fn job_version(version: u64, stable: bool, image: &str) -> Value {
    let j = json!({
        "ID": JOB, "Name": JOB, "Namespace": "repo-guardian", "Type": "service",
        "Version": version, "Stable": stable, "Status": "running",
        "Meta": { "environment": "prod", "image": image }
    });
    serde_json::from_value::<nomad_api::job::Job>(j.clone())
        .expect("fixture has Nomad's job shape");
    j
}

fn allocs(version: u64, count: usize) -> Value {
    let running: Vec<Value> = (0..count)
        .map(|i| json!({"ID": format!("a{i}"), "JobVersion": version, "DesiredStatus": "run", "ClientStatus": "running"}))
        .collect();
    let mut all = running;
    all.push(json!({"ID": "old", "JobVersion": version - 1, "DesiredStatus": "stop", "ClientStatus": "complete"}));
    Value::Array(all)
}

const PLAN_CHANGES: &str = "+/- Job: \"repo-guardian\"\n+/- Task Group: \"worker\" (1 canary, 3 ignore)\n\nScheduler dry-run:\n- All tasks successfully allocated.\n\nJob Modify Index: 41\nTo submit the job with version verification run:\n\nnomad job run -check-index 41 job.json\n";

/// The answers every deploy of `env` needs up to the deployment: plan with changes, the
/// job before (version 6, OLD) and after the run (version 7, `image`), its deployment.
fn deploy_base(env: &str, image: &str) -> Fake {
    let fake = Fake::new();
    fake.answer(&format!("{env}.job-plan"), PLAN_CHANGES, 1)
        .answer(
            &format!("{env}.job-run"),
            "Job registration successful\nEvaluation ID: e1\n",
            0,
        )
        .json(
            &format!("{env}.job-inspect.p0"),
            json!({ "Job": job_version(6, true, OLD) }),
        )
        .json(
            &format!("{env}.job-inspect.p1"),
            json!({ "Job": job_version(7, false, image) }),
        )
        .json(
            &format!("{env}.job-inspect.p2"),
            json!({ "Job": job_version(7, true, image) }),
        )
        .json(
            &format!("{env}.job-deployments"),
            json!([deployment(7, "running", "Deployment is running", json!({}))]),
        )
        .json(&format!("{env}.job-allocs"), allocs(7, 3))
        .answer(
            &format!("{env}.deployment-promote"),
            "Deployment promoted\n",
            0,
        )
        .answer(&format!("{env}.deployment-fail"), "Deployment failed\n", 0);
    fake
}

#[test]
fn dev_deploy_runs_with_preserve_counts_and_succeeds_on_a_successful_deployment() {
    let fake = deploy_base("dev", NEW);
    fake.json(
        "dev.deployment-status.p1.n1",
        deployment(
            7,
            "running",
            "Deployment is running",
            json!({"AutoPromote": true}),
        ),
    )
    .json(
        "dev.deployment-status.p1.n2",
        deployment(
            7,
            "successful",
            "Deployment completed successfully",
            json!({"AutoPromote": true, "Promoted": true, "HealthyAllocs": 3}),
        ),
    );
    let run = fake.run(&[], &["deploy", "dev", NEW]);
    assert!(run.ok(), "{}", run.explain());
    let submit = &run.calls[run.position("job run")];
    assert!(
        submit.starts_with("job run -json -detach -preserve-counts -check-index=41 "),
        "{submit}"
    );
    assert!(run.position("job plan") < run.position("job run"));
    assert!(
        !run.called("deployment promote"),
        "dev auto-promotes: {}",
        run.explain()
    );
    assert!(
        !run.calls.iter().any(|c| c.contains("-monitor")),
        "the outcome is read from the Status"
    );
    assert!(
        run.stderr().contains("running: repo-guardian version 7"),
        "{}",
        run.explain()
    );
}

#[test]
fn a_failed_rollout_exits_non_zero() {
    let fake = deploy_base("staging", NEW);
    fake.json(
        "staging.deployment-status.p1.n1",
        deployment(
            7,
            "running",
            "Deployment is running",
            json!({"AutoPromote": true}),
        ),
    )
    .json(
        "staging.deployment-status.p1.n2",
        deployment(
            7,
            "failed",
            "Failed due to progress deadline - rolling back to job version 6",
            json!({"AutoPromote": true}),
        ),
    );
    let run = fake.run(&[], &["deploy", "staging", NEW]);
    assert!(!run.ok(), "{}", run.explain());
    assert!(
        run.stderr().contains("rolling back to job version 6"),
        "{}",
        run.explain()
    );
    assert!(
        !run.called("job allocs"),
        "a failed deployment is never reported as running"
    );
}

#[test]
fn an_unhealthy_canary_fails_the_deployment_and_the_script() {
    let fake = deploy_base("staging", NEW);
    fake.json(
        "staging.deployment-status.p1",
        deployment(
            7,
            "running",
            "Deployment is running",
            json!({"UnhealthyAllocs": 1, "AutoPromote": true}),
        ),
    )
    .json(
        "staging.deployment-status.p2",
        deployment(
            7,
            "failed",
            "Deployment marked as failed - rolling back to job version 6",
            json!({"UnhealthyAllocs": 1, "AutoPromote": true}),
        ),
    );
    let run = fake.run(&[], &["deploy", "staging", NEW]);
    assert!(!run.ok(), "{}", run.explain());
    assert!(
        run.called(&format!("deployment fail {}", deployment_id(7))),
        "{}",
        run.explain()
    );
    assert!(!run.called("deployment promote"));
}

#[test]
fn an_auto_reverted_prod_deployment_exits_non_zero_without_promoting() {
    let fake = deploy_base("prod", NEW);
    fake.json("staging.job-history", json!([job_version(3, true, NEW)]))
        .json(
            "prod.deployment-status.p1.n1",
            deployment(
                7,
                "running",
                "Deployment is running but requires manual promotion",
                json!({}),
            ),
        )
        .json(
            "prod.deployment-status.p1.n2",
            deployment(
                7,
                "failed",
                "Failed due to unhealthy allocations - rolling back to job version 6",
                json!({"UnhealthyAllocs": 0}),
            ),
        );
    let run = fake.run(&[], &["deploy", "prod", NEW]);
    assert!(!run.ok(), "{}", run.explain());
    assert!(
        !run.called("deployment promote"),
        "unhealthy canaries are never promoted"
    );
}

#[test]
fn prod_promotes_healthy_canaries_after_the_soak_and_waits_for_success() {
    let fake = deploy_base("prod", NEW);
    fake.json(
        "staging.job-history",
        json!([job_version(2, false, OLD), job_version(3, true, NEW)]),
    )
    .json(
        "prod.deployment-status.p1",
        deployment(
            7,
            "running",
            "Deployment is running but requires manual promotion",
            json!({"HealthyAllocs": 1}),
        ),
    )
    .json(
        "prod.deployment-status.p2.n1",
        deployment(
            7,
            "running",
            "Deployment is running",
            json!({"HealthyAllocs": 2, "Promoted": true}),
        ),
    )
    .json(
        "prod.deployment-status.p2.n2",
        deployment(
            7,
            "successful",
            "Deployment completed successfully",
            json!({"HealthyAllocs": 3, "Promoted": true}),
        ),
    );
    let run = fake.run(&[("CANARY_SOAK_SECONDS", "1")], &["deploy", "prod", NEW]);
    assert!(run.ok(), "{}", run.explain());
    assert!(run.position("job history -json -region=staging") < run.position("job plan"));
    assert!(run.called(&format!("deployment promote {}", deployment_id(7))));
    assert!(
        run.stderr().contains("soaking"),
        "healthy canaries soak before promotion: {}",
        run.explain()
    );
    assert!(
        run.stderr().contains("running: repo-guardian version 7"),
        "{}",
        run.explain()
    );
}

#[test]
fn prod_refuses_a_digest_staging_never_ran_healthy() {
    let fake = deploy_base("prod", NEW);
    // Staging had it, but its deployment never succeeded (the version is not stable).
    fake.json(
        "staging.job-history",
        json!([job_version(3, true, OLD), job_version(4, false, NEW)]),
    );
    let run = fake.run(&[], &["deploy", "prod", NEW]);
    assert!(!run.ok(), "{}", run.explain());
    assert!(
        run.stderr().contains("never ran healthy in staging"),
        "{}",
        run.explain()
    );
    assert!(
        !run.called("job plan") && !run.called("job run"),
        "{}",
        run.explain()
    );
}

#[test]
fn prod_refuses_to_deploy_from_a_branch_other_than_main() {
    let fake = deploy_base("prod", NEW);
    fake.json("staging.job-history", json!([job_version(3, true, NEW)]));
    let run = fake.run(
        &[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_REF", "refs/heads/feature"),
        ],
        &["deploy", "prod", NEW],
    );
    assert!(!run.ok(), "{}", run.explain());
    assert!(
        run.stderr().contains("only from refs/heads/main"),
        "{}",
        run.explain()
    );
    assert!(
        run.calls.is_empty(),
        "nothing reaches Nomad: {}",
        run.explain()
    );
}

#[test]
fn an_unchanged_job_is_not_resubmitted() {
    let fake = Fake::new();
    fake.answer(
        "dev.job-plan",
        "Job: \"repo-guardian\"\nJob Modify Index: 41\n",
        0,
    )
    .json(
        "dev.job-inspect",
        json!({ "Job": job_version(7, true, NEW) }),
    )
    .json("dev.job-allocs", allocs(7, 1));
    let run = fake.run(&[], &["deploy", "dev", NEW]);
    assert!(run.ok(), "{}", run.explain());
    assert!(!run.called("job run"), "{}", run.explain());
}

#[test]
fn a_prod_rollback_ends_with_the_reverted_version_promoted_and_running() {
    let fake = Fake::new();
    // Version 9 (NEW) is bad and was promoted; 8 (OLD) is the last good one.
    fake.json(
        "prod.job-history",
        json!([
            job_version(9, true, NEW),
            job_version(8, true, OLD),
            job_version(7, true, OLD)
        ]),
    )
    .answer("prod.job-revert", "Evaluation ID: e2\n", 0)
    .json(
        "prod.job-inspect.p1",
        json!({ "Job": job_version(10, false, OLD) }),
    )
    .json(
        "prod.job-inspect.p2",
        json!({ "Job": job_version(10, true, OLD) }),
    )
    .json(
        "prod.job-deployments",
        json!([
            deployment(
                9,
                "successful",
                "Deployment completed successfully",
                json!({"Promoted": true})
            ),
            deployment(
                10,
                "running",
                "Deployment is running but requires manual promotion",
                json!({})
            )
        ]),
    )
    // The revert's canary comes up healthy; without a promotion it would wait, then
    // fail on the progress deadline and auto-revert to the bad version 9.
    .json(
        "prod.deployment-status.p1",
        deployment(
            10,
            "running",
            "Deployment is running but requires manual promotion",
            json!({"HealthyAllocs": 1}),
        ),
    )
    .json(
        "prod.deployment-status.p2.n1",
        deployment(
            10,
            "running",
            "Deployment is running",
            json!({"HealthyAllocs": 2, "Promoted": true}),
        ),
    )
    .json(
        "prod.deployment-status.p2.n2",
        deployment(
            10,
            "successful",
            "Deployment completed successfully",
            json!({"HealthyAllocs": 3, "Promoted": true}),
        ),
    )
    .answer("prod.deployment-promote", "Deployment promoted\n", 0)
    .json("prod.job-allocs", allocs(10, 3));
    let run = fake.run(&[], &["rollback", "prod"]);
    assert!(run.ok(), "{}", run.explain());
    assert!(
        run.called("job revert -detach repo-guardian 8"),
        "{}",
        run.explain()
    );
    assert!(
        run.position("job revert")
            < run.position(&format!("deployment promote {}", deployment_id(10)))
    );
    let running = format!("running: repo-guardian version 10, {OLD}");
    assert!(run.stderr().contains(&running), "{}", run.explain());
}

#[test]
fn a_rollback_to_an_unstable_version_is_refused() {
    let fake = Fake::new();
    fake.json(
        "dev.job-history",
        json!([job_version(9, true, NEW), job_version(8, false, OLD)]),
    );
    let run = fake.run(&[], &["rollback", "dev", "8"]);
    assert!(!run.ok(), "{}", run.explain());
    assert!(
        run.stderr().contains("not a stable version"),
        "{}",
        run.explain()
    );
    assert!(!run.called("job revert"));
}
