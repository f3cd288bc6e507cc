//! `deploy/prometheus/scrape.yml` against the services the rendered worker jobs register.
//!
//! No Prometheus build with Nomad service discovery can be installed here (Debian's 2.42
//! lacks it), so this test does what that discovery would: for each environment it builds
//! the labels Prometheus' Nomad discovery (`discovery/nomad/nomad.go`) gives an instance
//! of the job's service, checks that a discovery entry looks in the job's namespace and
//! region, and applies the scrape config's relabelling with Prometheus' semantics (labels
//! joined with `;`, fully anchored RE2 regexes, `$1` expansion). The rest of the file is
//! checked by the real `promtool check config`, with the Nomad entries swapped for static
//! ones.

use std::collections::BTreeMap;
use std::process::Command;

use delivery::{ENVS, decode, nats_job_json, repo_root, worker_job_json};
use serde::Deserialize;

/// The labels Prometheus' Nomad discovery sets (discovery/nomad/nomad.go).
const NOMAD_SD_LABELS: [&str; 9] = [
    "__meta_nomad_address",
    "__meta_nomad_service",
    "__meta_nomad_namespace",
    "__meta_nomad_node_id",
    "__meta_nomad_dc",
    "__meta_nomad_service_address",
    "__meta_nomad_service_port",
    "__meta_nomad_service_id",
    "__meta_nomad_tags",
];

#[derive(Debug, Deserialize)]
struct PrometheusConfig {
    scrape_configs: Vec<ScrapeConfig>,
}

#[derive(Debug, Deserialize)]
struct ScrapeConfig {
    job_name: String,
    #[serde(default)]
    nomad_sd_configs: Vec<NomadSdConfig>,
    #[serde(default)]
    relabel_configs: Vec<RelabelConfig>,
}

/// Prometheus' `nomad_sd_configs` entry (SDConfig), the fields this project may set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NomadSdConfig {
    server: String,
    namespace: Option<String>,
    region: Option<String>,
    refresh_interval: Option<String>,
    allow_stale: Option<bool>,
    tag_separator: Option<String>,
    authorization: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RelabelConfig {
    #[serde(default)]
    source_labels: Vec<String>,
    separator: Option<String>,
    regex: Option<String>,
    target_label: Option<String>,
    replacement: Option<String>,
    action: Option<String>,
}

fn scrape_file() -> String {
    std::fs::read_to_string(repo_root().join("deploy/prometheus/scrape.yml")).unwrap()
}

fn guardian_scrape() -> ScrapeConfig {
    let config: PrometheusConfig = serde_yaml_ng::from_str(&scrape_file()).unwrap();
    config
        .scrape_configs
        .into_iter()
        .find(|c| c.job_name == "repo-guardian")
        .expect(
            "a repo-guardian scrape config (GuardianNoWorkerReady expects job=\"repo-guardian\")",
        )
}

/// Applies relabel rules as Prometheus does; `None` when the target is dropped.
fn relabel(
    rules: &[RelabelConfig],
    mut labels: BTreeMap<String, String>,
) -> Option<BTreeMap<String, String>> {
    for rule in rules {
        let separator = rule.separator.as_deref().unwrap_or(";");
        let value = rule
            .source_labels
            .iter()
            .map(|l| labels.get(l).cloned().unwrap_or_default())
            .collect::<Vec<_>>()
            .join(separator);
        let pattern = rule.regex.as_deref().unwrap_or("(.*)");
        let regex = regex::Regex::new(&format!("^(?:{pattern})$")).unwrap();
        match rule.action.as_deref().unwrap_or("replace") {
            "keep" if !regex.is_match(&value) => return None,
            "drop" if regex.is_match(&value) => return None,
            "keep" | "drop" => {}
            "replace" => {
                if let Some(captures) = regex.captures(&value) {
                    let mut out = String::new();
                    captures.expand(rule.replacement.as_deref().unwrap_or("$1"), &mut out);
                    let target = rule
                        .target_label
                        .clone()
                        .expect("replace needs target_label");
                    if out.is_empty() {
                        labels.remove(&target);
                    } else {
                        labels.insert(target, out);
                    }
                }
            }
            other => panic!("relabel action {other} not modelled here"),
        }
    }
    Some(labels)
}

/// What Nomad discovery reports for one instance of `service` of `job`.
fn discovered(
    job: &nomad_api::job::Job,
    group: &str,
    service: &nomad_api::job::Service,
) -> BTreeMap<String, String> {
    let alloc = "5b9c7c1e-3f0a-4d7e-9a55-0d4c2f6b8e21";
    let tags = service.Tags.clone().unwrap_or_default();
    let port_label = service.PortLabel.clone().unwrap_or_default();
    BTreeMap::from([
        ("__address__".into(), "10.0.0.7:27134".into()),
        ("__meta_nomad_address".into(), "10.0.0.7".into()),
        ("__meta_nomad_service".into(), service.Name.clone()),
        (
            "__meta_nomad_namespace".into(),
            job.Namespace.clone().unwrap(),
        ),
        (
            "__meta_nomad_node_id".into(),
            "0b0e2f4c-aaaa-bbbb-cccc-123456789abc".into(),
        ),
        (
            "__meta_nomad_dc".into(),
            job.Datacenters.clone().unwrap()[0].clone(),
        ),
        ("__meta_nomad_service_address".into(), "10.0.0.7".into()),
        ("__meta_nomad_service_port".into(), "27134".into()),
        (
            "__meta_nomad_service_id".into(),
            format!("_nomad-task-{alloc}-{group}-{}-{port_label}", service.Name),
        ),
        ("__meta_nomad_tags".into(), format!(",{},", tags.join(","))),
    ])
}

#[test]
fn discovery_looks_in_the_namespace_and_region_of_every_environment() {
    let scrape = guardian_scrape();
    for env in ENVS {
        let job = decode(env, &worker_job_json(env)).Job;
        let found = scrape.nomad_sd_configs.iter().any(|sd| {
            // Prometheus' defaults are namespace "default" and region "global".
            sd.namespace.as_deref().unwrap_or("default") == job.Namespace.as_deref().unwrap()
                && sd.region.as_deref().unwrap_or("global") == job.Region.as_deref().unwrap()
                && sd.tag_separator.as_deref().unwrap_or(",") == ","
                && sd.allow_stale.unwrap_or(true)
                && sd.refresh_interval.is_some()
                && sd.authorization.is_some()
                && !sd.server.is_empty()
        });
        assert!(
            found,
            "{env}: no nomad_sd_configs entry for namespace {:?}, region {:?}",
            job.Namespace, job.Region
        );
    }
}

#[test]
fn relabelling_keeps_each_worker_with_its_environment_and_drops_other_services() {
    let scrape = guardian_scrape();
    for rule in &scrape.relabel_configs {
        for label in &rule.source_labels {
            assert!(
                !label.starts_with("__meta_nomad") || NOMAD_SD_LABELS.contains(&label.as_str()),
                "{label} is not a label of Prometheus' Nomad discovery"
            );
        }
    }
    for env in ENVS {
        let job = decode(env, &worker_job_json(env)).Job;
        for group in job.TaskGroups.iter().flatten() {
            for service in group.Services.iter().flatten() {
                let kept = relabel(
                    &scrape.relabel_configs,
                    discovered(&job, &group.Name, service),
                )
                .unwrap_or_else(|| panic!("{env}: the worker service {} is dropped", service.Name));
                assert_eq!(kept["env"], env, "{env}: env label from the job's tag");
                assert_eq!(kept["namespace"], "repo-guardian");
                assert_eq!(kept["alloc_id"], "5b9c7c1e-3f0a-4d7e-9a55-0d4c2f6b8e21");
                assert_eq!(
                    kept["__address__"], "10.0.0.7:27134",
                    "the registered http port"
                );
            }
        }
        // The NATS cluster registers its own service in the same namespace: not scraped.
        let nats = decode(env, &nats_job_json(env)).Job;
        for group in nats.TaskGroups.iter().flatten() {
            for service in group.Services.iter().flatten() {
                assert!(
                    relabel(
                        &scrape.relabel_configs,
                        discovered(&nats, &group.Name, service)
                    )
                    .is_none()
                );
            }
        }
    }
}

#[test]
fn promtool_accepts_the_rest_of_the_file() {
    // Debian's promtool has no Nomad discovery: swap it for an equivalent static target.
    let text = scrape_file();
    let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    for scrape in doc["scrape_configs"].as_sequence_mut().unwrap() {
        let map = scrape.as_mapping_mut().unwrap();
        if map.remove("nomad_sd_configs").is_some() {
            let statics: serde_yaml_ng::Value =
                serde_yaml_ng::from_str("[{targets: ['127.0.0.1:9090']}]").unwrap();
            map.insert("static_configs".into(), statics);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo_root().join("deploy/prometheus/rules.yml"),
        dir.path().join("rules.yml"),
    )
    .unwrap();
    let file = dir.path().join("scrape.yml");
    std::fs::write(&file, serde_yaml_ng::to_string(&doc).unwrap()).unwrap();
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(&file)
        .output()
        .expect("promtool on PATH (Debian: apt-get install prometheus)");
    assert!(
        out.status.success(),
        "promtool check config: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
