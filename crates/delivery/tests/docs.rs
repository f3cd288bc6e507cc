//! The operations docs agree with the jobs and the scripts.
//!
//! `docs/operations/secrets.md` must list exactly the Nomad Variable keys the rendered
//! templates read; `deployment.md` must state each environment's counts, scaling bounds and
//! promotion mode as the jobs set them; the docs' `ci.sh` commands must be ones the script
//! accepts.

use std::collections::BTreeSet;

use delivery::{ENVS, decode, nats_job_json, repo_root, worker_job_json};
use regex::Regex;

fn doc(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("docs/operations").join(name)).unwrap()
}

/// Every variable key a template of `json`'s job reads.
fn template_keys(json: &str) -> BTreeSet<String> {
    let job = decode("job", json).Job;
    let dot_key = Regex::new(r"\{\{ \.([a-z_]+) \}\}").unwrap();
    let eq_key = Regex::new(r#"eq \$key "([a-z_]+)""#).unwrap();
    let mut keys = BTreeSet::new();
    for group in job.TaskGroups.iter().flatten() {
        for task in &group.Tasks {
            for template in task.Templates.iter().flatten() {
                let text = template.EmbeddedTmpl.clone().unwrap_or_default();
                for re in [&dot_key, &eq_key] {
                    keys.extend(re.captures_iter(&text).map(|c| c[1].to_owned()));
                }
            }
        }
    }
    keys
}

#[test]
fn secrets_doc_lists_exactly_the_keys_the_templates_read() {
    let secrets = doc("secrets.md");
    let row_keys = Regex::new(r"`([a-z_]+)`").unwrap();
    let documented: BTreeSet<String> = secrets
        .lines()
        .filter(|l| l.starts_with("| `"))
        .flat_map(|l| {
            let first_cell = l.split('|').nth(1).unwrap_or_default().to_owned();
            row_keys
                .captures_iter(&first_cell)
                .map(|c| c[1].to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut read = template_keys(&worker_job_json("prod"));
    read.extend(template_keys(&nats_job_json("prod")));
    // Read only by the operator/JWT variant (natsAuth = "creds"), documented as such.
    read.insert("nats_creds".to_owned());
    assert_eq!(documented, read, "secrets.md tables vs the templates' keys");
    for env_doc in ["deployment.md", "secrets.md"] {
        assert!(
            !doc(env_doc).contains("nats_creds=@"),
            "{env_doc}: the default auth reads nats_user/nats_password, not creds"
        );
    }
}

#[test]
fn deployment_doc_states_the_jobs_counts_bounds_and_promotion() {
    let deployment = doc("deployment.md");
    for env in ENVS {
        let job = decode(env, &worker_job_json(env)).Job;
        let group = &job.TaskGroups.as_ref().unwrap()[0];
        let scaling = group.Scaling.as_ref().unwrap();
        let row = deployment
            .lines()
            .find(|l| l.starts_with(&format!("| {env} |")))
            .unwrap_or_else(|| panic!("deployment.md has no row for {env}"));
        let expected = format!(
            "| {}, {}–{} |",
            group.Count.unwrap(),
            scaling.Min.unwrap(),
            scaling.Max.unwrap()
        );
        assert!(
            row.contains(&expected),
            "{env}: {row} should say {expected}"
        );
        let auto = job.Update.as_ref().unwrap().AutoPromote.unwrap();
        let said = row.split('|').nth(4).unwrap().trim();
        assert_eq!(
            said.starts_with("yes"),
            auto,
            "{env}: auto-promote column: {said}"
        );
        assert!(
            row.contains(&format!("`{}`", job.Region.unwrap())),
            "{env}: region"
        );
    }
}

#[test]
fn docs_use_only_commands_the_deploy_script_accepts() {
    let script = std::fs::read_to_string(repo_root().join("deploy/nomad/ci.sh")).unwrap();
    assert!(script.contains("  deploy) ") && script.contains("  rollback) "));
    let command = Regex::new(r"ci\.sh (\w+) (\w+)").unwrap();
    for name in ["deployment.md", "rollback.md"] {
        let text = doc(name);
        let mut seen = 0;
        for c in command.captures_iter(&text) {
            seen += 1;
            assert!(
                ["deploy", "rollback"].contains(&&c[1]),
                "{name}: ci.sh {}",
                &c[1]
            );
            assert!(
                ENVS.contains(&&c[2]) || &c[2] == "ENV",
                "{name}: unknown env {}",
                &c[2]
            );
        }
        assert!(seen > 0, "{name} shows the ci.sh command");
    }
}
