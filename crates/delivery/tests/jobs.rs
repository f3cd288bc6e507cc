//! The rendered Nomad jobs, decoded strictly into Nomad's job API and checked.
//!
//! Every environment's worker job (`deploy/nomad`) and NATS cluster job (`deploy/nats`) is
//! rendered with `nix-instantiate` and decoded into `nomad_api::JobFile`, whose structs
//! mirror Nomad's `api` package and refuse unknown fields: a field Nomad would silently
//! drop fails here. The checks that follow read the typed model, not raw JSON.

use std::collections::BTreeSet;
use std::time::Duration;

use delivery::{
    ENVS, NATS_IMAGE, WORKER_IMAGE, decode, eval_file, logging_job_json, nats_job_json, repo_root,
    worker_job_json,
};
use nomad_api::job::{Job, Task, TaskGroup};
use serde_json::Value;

fn worker(env: &str) -> Job {
    decode(&format!("the {env} worker job"), &worker_job_json(env)).Job
}

fn nats(env: &str) -> Job {
    decode(&format!("the {env} NATS job"), &nats_job_json(env)).Job
}

fn logging(env: &str) -> Job {
    decode(&format!("the {env} logging job"), &logging_job_json(env)).Job
}

fn only_group(job: &Job) -> &TaskGroup {
    let groups = job.TaskGroups.as_deref().expect("task groups");
    assert_eq!(groups.len(), 1, "one task group");
    &groups[0]
}

fn only_task(group: &TaskGroup) -> &Task {
    assert_eq!(group.Tasks.len(), 1, "one task");
    &group.Tasks[0]
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn every_rendered_job_decodes_into_nomads_job_api() {
    for env in ENVS {
        let worker = worker(env);
        let nats = nats(env);
        for job in [&worker, &nats, &logging(env)] {
            assert_eq!(job.Namespace.as_deref(), Some("repo-guardian"), "{env}");
            assert_eq!(
                job.Region.as_deref(),
                Some(env),
                "{env}: one region per environment"
            );
        }
        for job in [&worker, &nats] {
            let spreads = job.Spreads.as_deref().unwrap_or_default();
            assert!(
                spreads.iter().any(|s| s.Attribute == "${node.datacenter}"),
                "{env}: {:?} spreads over datacenters",
                job.ID
            );
        }
        let group = only_group(&worker);
        assert!(
            group
                .Spreads
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|s| s.Attribute == "${node.unique.id}"),
            "{env}: workers spread over nodes"
        );
    }
}

/// A change made to a rendered job before decoding it.
type Change = Box<dyn Fn(&mut Value)>;

/// Renders prod, applies `change` to the JSON, and returns the decode error.
fn decode_error_after(change: impl Fn(&mut Value)) -> String {
    let mut job: Value = serde_json::from_str(&worker_job_json("prod")).unwrap();
    change(&mut job);
    nomad_api::decode_job(&job.to_string())
        .map(|_| ())
        .expect_err("the changed job must not decode")
        .to_string()
}

fn rename(object: &mut Value, from: &str, to: &str) {
    let map = object.as_object_mut().expect("an object");
    let value = map
        .remove(from)
        .unwrap_or_else(|| panic!("no field {from}"));
    map.insert(to.to_owned(), value);
}

#[test]
fn a_misspelt_field_or_a_duration_string_fails_the_decode() {
    let cases: [(&str, Change, &str); 6] = [
        (
            "Spreads misspelt as Spread",
            Box::new(|j| rename(&mut j["Job"], "Spreads", "Spread")),
            "unknown field `Spread`",
        ),
        (
            "group Count misspelt",
            Box::new(|j| rename(&mut j["Job"]["TaskGroups"][0], "Count", "Cuont")),
            "unknown field `Cuont`",
        ),
        (
            "MinHealthyTime as a string",
            Box::new(|j| j["Job"]["Update"]["MinHealthyTime"] = "30s".into()),
            "invalid type: string \"30s\", expected i64",
        ),
        (
            "KillTimeout as a string",
            Box::new(|j| j["Job"]["TaskGroups"][0]["Tasks"][0]["KillTimeout"] = "30s".into()),
            "invalid type: string \"30s\", expected i64",
        ),
        (
            "autoscaler cooldown as nanoseconds",
            Box::new(|j| {
                j["Job"]["TaskGroups"][0]["Scaling"]["Policy"]["cooldown"] =
                    120_000_000_000u64.into()
            }),
            "expected a Go duration string",
        ),
        (
            "docker option misspelt",
            Box::new(|j| {
                rename(
                    &mut j["Job"]["TaskGroups"][0]["Tasks"][0]["Config"],
                    "readonly_rootfs",
                    "read_only_rootfs",
                )
            }),
            "unknown field `read_only_rootfs`",
        ),
    ];
    for (what, change, expected) in cases {
        let err = decode_error_after(change);
        eprintln!("{what}: {err}");
        assert!(err.contains(expected), "{what}: got {err}");
    }
}

#[test]
fn worker_updates_use_canaries_and_auto_revert_and_prod_waits_for_a_human() {
    for env in ENVS {
        let job = worker(env);
        let update = job.Update.as_ref().expect("job update");
        let group = only_group(&job).Update.as_ref().expect("group update");
        for u in [update, group] {
            assert!(u.Canary.unwrap_or(0) >= 1, "{env}: canary");
            assert_eq!(u.AutoRevert, Some(true), "{env}: auto-revert");
            assert_eq!(u.HealthCheck.as_deref(), Some("checks"), "{env}");
            assert_eq!(
                u.AutoPromote,
                Some(env != "prod"),
                "{env}: auto-promote outside prod"
            );
            let healthy = u.MinHealthyTime.and_then(|d| d.duration()).unwrap();
            let deadline = u.HealthyDeadline.and_then(|d| d.duration()).unwrap();
            let progress = u.ProgressDeadline.and_then(|d| d.duration()).unwrap();
            assert!(
                healthy < deadline && deadline < progress,
                "{env}: deadlines in order"
            );
        }
    }
}

#[test]
fn images_are_pinned_by_digest_and_other_images_or_envs_are_refused() {
    for env in ENVS {
        let task_image = only_task(only_group(&worker(env))).Config.image.clone();
        assert_eq!(
            task_image, WORKER_IMAGE,
            "{env}: the image given is the image run"
        );
        let job = worker(env);
        let meta = job.Meta.as_ref().expect("meta");
        assert_eq!(
            meta["image"], WORKER_IMAGE,
            "{env}: Meta.image records the digest"
        );
        assert_eq!(only_task(only_group(&nats(env))).Config.image, NATS_IMAGE);
    }
    for bad in [
        "ghcr.io/example/repo-guardian:latest",
        "ghcr.io/example/repo-guardian@sha256:abc",
    ] {
        let err = eval_file(
            "deploy/nomad/default.nix",
            &[("env", "prod"), ("image", bad)],
        )
        .expect_err("an image without a full digest must be refused");
        assert!(
            err.contains("not pinned by digest"),
            "clear refusal, got: {err}"
        );
    }
    let err = eval_file(
        "deploy/nomad/default.nix",
        &[("env", "qa"), ("image", WORKER_IMAGE)],
    )
    .expect_err("an unknown environment must be refused");
    assert!(
        err.contains("unknown env 'qa'"),
        "clear refusal, got: {err}"
    );
}

#[test]
fn worker_checks_hit_the_real_routes_on_the_port_the_worker_listens_on() {
    for env in ENVS {
        let job = worker(env);
        let group = only_group(&job);
        let task = only_task(group);
        let env_vars = task.Env.as_ref().expect("env");
        let listen_port: i32 = env_vars["GUARDIAN__HTTP__LISTEN"]
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("listen port");
        let ports: Vec<_> = group
            .Networks
            .iter()
            .flatten()
            .flat_map(|n| n.DynamicPorts.iter().flatten())
            .collect();
        let mut paths = BTreeSet::new();
        for service in group.Services.iter().flatten() {
            assert_eq!(service.Provider.as_deref(), Some("nomad"), "{env}");
            for check in service.Checks.iter().flatten() {
                assert_eq!(check.Type, "http", "{env}");
                let label = check
                    .PortLabel
                    .as_ref()
                    .or(service.PortLabel.as_ref())
                    .unwrap();
                let port = ports
                    .iter()
                    .find(|p| &p.Label == label)
                    .unwrap_or_else(|| panic!("{env}: no port labelled {label}"));
                assert_eq!(
                    port.To,
                    Some(listen_port),
                    "{env}: the check reaches the ops port"
                );
                paths.insert(check.Path.clone().unwrap());
            }
        }
        assert_eq!(
            paths,
            BTreeSet::from(["/healthz".to_owned(), "/readyz".to_owned()]),
            "{env}"
        );
    }
}

#[test]
fn worker_kill_timeout_outlasts_the_drain_and_uses_sigterm() {
    for env in ENVS {
        let job = worker(env);
        let task = only_task(only_group(&job));
        let drain = task.Env.as_ref().unwrap()["GUARDIAN__WORKER__DRAIN_TIMEOUT"].clone();
        let drain = nomad_api::GoDuration::parse(&drain)
            .expect("drain timeout")
            .0;
        let kill = task
            .KillTimeout
            .and_then(|d| d.duration())
            .expect("kill timeout");
        assert!(kill > drain, "{env}: kill {kill:?} > drain {drain:?}");
        assert!(
            kill <= secs(30),
            "{env}: within the client's default max_kill_timeout"
        );
        assert_eq!(task.KillSignal.as_deref(), Some("SIGTERM"), "{env}");
    }
}

#[test]
fn secrets_come_only_from_templates_that_fail_on_a_missing_key() {
    for env in ENVS {
        for job in [worker(env), nats(env)] {
            let task = only_task(only_group(&job));
            for (name, value) in task.Env.iter().flatten() {
                let upper = name.to_ascii_uppercase();
                for word in ["TOKEN", "KEY", "CREDS", "PASSWORD", "SECRET"] {
                    assert!(
                        !upper.contains(word),
                        "{env}: {name} must not be in plain Env"
                    );
                }
                assert!(
                    !value.contains('@'),
                    "{env}: no credentials in a URL: {value}"
                );
            }
            let templates = task.Templates.as_deref().expect("templates");
            for template in templates {
                let text = template.EmbeddedTmpl.as_deref().unwrap_or_default();
                assert!(
                    template.DestPath.starts_with("secrets/"),
                    "{env}: {}",
                    template.DestPath
                );
                assert_eq!(template.Perms.as_deref(), Some("0400"), "{env}");
                assert_eq!(
                    template.ErrMissingKey,
                    Some(true),
                    "{env}: {} must fail on a missing key, not render <no value>",
                    template.DestPath
                );
                // `index . "key"` returns the zero value even with missingkey=error.
                assert!(!text.contains("index "), "{env}: use .key, not index");
                let var = format!("nomadVar \"nomad/jobs/{}\"", job.ID.as_deref().unwrap());
                assert!(
                    text.contains(&var),
                    "{env}: only the job's own variable: {text}"
                );
            }
        }
        let job = worker(env);
        let env_file = only_task(only_group(&job))
            .Templates
            .iter()
            .flatten()
            .find(|t| t.Envvars == Some(true))
            .expect("the env template")
            .EmbeddedTmpl
            .clone()
            .unwrap();
        for line in [
            "GUARDIAN__GITHUB__TOKEN={{ .github_token }}",
            "GUARDIAN__NATS__USER={{ .nats_user }}",
            "GUARDIAN__NATS__PASSWORD={{ .nats_password }}",
            "GUARDIAN__LLM__API_KEY={{ $value }}",
        ] {
            assert!(env_file.contains(line), "{env}: {line} in the env template");
        }
    }
}

#[test]
fn worker_scales_on_the_queue_backlog_with_a_valid_autoscaler_policy() {
    for env in ENVS {
        let job = worker(env);
        let group = only_group(&job);
        let scaling = group.Scaling.as_ref().expect("scaling");
        let (min, max) = (scaling.Min.unwrap(), scaling.Max.unwrap());
        let count = i64::from(group.Count.unwrap());
        assert!(
            1 <= min && min <= count && count <= max,
            "{env}: {min} <= {count} <= {max}"
        );
        assert_eq!(scaling.Enabled, Some(true));
        assert_eq!(scaling.Type.as_deref(), Some("horizontal"));
        let policy = scaling.Policy.as_ref().expect("policy");
        let checks: Vec<_> = policy.checks().collect();
        assert_eq!(checks.len(), 1, "{env}: one check");
        let (name, check) = checks[0];
        assert_eq!(name, "queue_pending");
        assert_eq!(check.source.as_deref(), Some("prometheus"));
        assert!(check.query.contains("guardian_queue_pending"), "{env}");
        assert_eq!(check.strategies().collect::<Vec<_>>(), ["pass-through"]);
        assert!(policy.cooldown.unwrap().0 >= secs(60), "{env}: cooldown");
    }
}

#[test]
fn workers_connect_over_tls_to_the_peers_of_their_environments_cluster() {
    let route_host = regex::Regex::new(r"@([a-z0-9.-]+):\d+").unwrap();
    for env in ENVS {
        let urls = only_task(only_group(&worker(env))).Env.as_ref().unwrap()["GUARDIAN__NATS__URL"]
            .clone();
        let nats = nats(env);
        let group = only_group(&nats);
        let client_port = group
            .Networks
            .iter()
            .flatten()
            .flat_map(|n| n.ReservedPorts.iter().flatten())
            .find(|p| p.Label == "client")
            .and_then(|p| p.Value)
            .unwrap();
        let config = only_task(group).Templates.as_ref().unwrap()[0]
            .EmbeddedTmpl
            .clone()
            .unwrap();
        let peers: BTreeSet<String> = route_host
            .captures_iter(&config)
            .map(|c| format!("tls://{}:{client_port}", &c[1]))
            .collect();
        assert_eq!(peers.len(), 3, "{env}: three peers");
        let urls: BTreeSet<String> = urls.split(',').map(str::to_owned).collect();
        assert_eq!(
            urls, peers,
            "{env}: the worker connects to exactly the cluster's peers"
        );
        let env_vars = only_task(only_group(&worker(env))).Env.clone().unwrap();
        assert_eq!(
            env_vars["SSL_CERT_DIR"], "${NOMAD_SECRETS_DIR}/nats-ca",
            "{env}: cluster CA trusted"
        );
    }
}

#[test]
fn nats_cluster_is_three_tls_nodes_named_by_node_with_a_jetstream_health_check() {
    for env in ENVS {
        let job = nats(env);
        let group = only_group(&job);
        assert_eq!(group.Count, Some(3), "{env}");
        let ports: Vec<i32> = group
            .Networks
            .iter()
            .flatten()
            .flat_map(|n| n.ReservedPorts.iter().flatten())
            .filter_map(|p| p.Value)
            .collect();
        assert_eq!(ports, [4222, 6222, 8222], "{env}");
        let volume = &group.Volumes.as_ref().unwrap()["jetstream"];
        assert_eq!(volume.Type, "host", "{env}: the store is on a host volume");
        let task = only_task(group);
        let config = task.Templates.as_ref().unwrap()[0]
            .EmbeddedTmpl
            .clone()
            .unwrap();
        assert!(
            config.contains("server_name: \"{{ env \"node.unique.name\" }}\""),
            "{env}: the server name follows the host (and its volume), not the alloc index"
        );
        assert_eq!(
            config.matches("cert_file:").count(),
            2,
            "{env}: TLS on clients and routes"
        );
        assert!(
            config.contains("verify: true"),
            "{env}: routes verify their peer"
        );
        assert!(!config.contains("NOMAD_ALLOC_INDEX"), "{env}");
        let checks: Vec<_> = group
            .Services
            .iter()
            .flatten()
            .flat_map(|s| s.Checks.iter().flatten())
            .collect();
        assert_eq!(checks.len(), 1);
        assert_eq!(
            checks[0].Path.as_deref(),
            Some("/healthz"),
            "{env}: full health (JetStream current), not js-enabled-only"
        );
        assert_eq!(
            task.KillSignal.as_deref(),
            Some("SIGUSR2"),
            "{env}: lame duck"
        );
        let dests: BTreeSet<_> = task
            .Templates
            .iter()
            .flatten()
            .map(|t| t.DestPath.as_str())
            .collect();
        for file in [
            "secrets/nats.conf",
            "secrets/tls/cert.pem",
            "secrets/tls/key.pem",
            "secrets/tls/ca.pem",
        ] {
            assert!(dests.contains(file), "{env}: {file}");
        }
    }
}

#[test]
fn the_deployer_acl_may_submit_every_job() {
    let acl = std::fs::read_to_string(repo_root().join("deploy/nomad/acl/deployer.hcl")).unwrap();
    assert!(acl.contains("\"submit-job\""));
    for env in ENVS {
        for job in [worker(env), nats(env), logging(env)] {
            let ns = job.Namespace.clone().unwrap();
            assert!(
                acl.contains(&format!("namespace \"{ns}\"")),
                "{env}: deployer rules for {ns}"
            );
            for group in job.TaskGroups.iter().flatten() {
                for volume in group.Volumes.iter().flat_map(|v| v.values()) {
                    let capability = if volume.ReadOnly == Some(true) {
                        "mount-readonly"
                    } else {
                        "mount-readwrite"
                    };
                    let rule = regex::Regex::new(&format!(
                        r#"host_volume "{}" \{{\s*capabilities = \["{capability}"\]"#,
                        regex::escape(&volume.Source)
                    ))
                    .unwrap();
                    assert!(
                        rule.is_match(&acl),
                        "{env}: the deployer may {capability} host volume {}",
                        volume.Source
                    );
                }
            }
        }
    }
}

#[test]
fn the_log_shipper_runs_vector_yaml_verbatim_on_every_client() {
    let config = std::fs::read_to_string(repo_root().join("deploy/logging/vector.yaml")).unwrap();
    for env in ENVS {
        let job = logging(env);
        assert_eq!(job.Type.as_deref(), Some("system"), "{env}: one per client");
        let group = only_group(&job);
        let task = only_task(group);
        let template = &task.Templates.as_ref().unwrap()[0];
        assert_eq!(template.EmbeddedTmpl.as_deref(), Some(config.as_str()));
        let left = template.LeftDelim.clone().unwrap();
        assert_ne!(
            left, "{{",
            "{env}: Vector's {{{{ }}}} must not be read by Nomad"
        );
        assert!(!config.contains(&left), "{env}: no {left} in vector.yaml");
        let mount = &task.VolumeMounts.as_ref().unwrap()[0];
        assert!(config.contains(&format!(
            "{}/*/alloc/logs/guardian.stderr.",
            mount.Destination
        )));
        assert_eq!(mount.ReadOnly, Some(true));
        let env_vars = task.Env.as_ref().unwrap();
        assert!(config.contains("${VECTOR_DATA_DIR"), "{env}");
        assert!(env_vars["VECTOR_DATA_DIR"].starts_with("/alloc/"), "{env}");
    }
}

#[test]
fn the_worker_may_use_every_stream_and_bucket_the_worker_defines() {
    let bus = std::fs::read_to_string(repo_root().join("src/bus/mod.rs")).unwrap();
    let constant =
        regex::Regex::new(r#"pub const [A-Z_]+_(STREAM|BUCKET): &str = "([^"]+)";"#).unwrap();
    for env in ENVS {
        let job = nats(env);
        let config = only_task(only_group(&job)).Templates.as_ref().unwrap()[0]
            .EmbeddedTmpl
            .clone()
            .unwrap();
        let worker = &config
            [config.find("user: \"worker\"").unwrap()..config.find("user: \"trigger\"").unwrap()];
        let mut seen = 0;
        for c in constant.captures_iter(&bus) {
            seen += 1;
            let stream = if &c[1] == "BUCKET" {
                format!("KV_{}", &c[2])
            } else {
                c[2].to_owned()
            };
            for subject in [
                format!("$JS.API.STREAM.CREATE.{stream}"),
                format!("$JS.API.CONSUMER.CREATE.{stream}.>"),
            ] {
                assert!(
                    worker.contains(&format!("\"{subject}\"")),
                    "{env}: worker may {subject}"
                );
            }
            if &c[1] == "BUCKET" {
                assert!(
                    worker.contains(&format!("\"$KV.{}.>\"", &c[2])),
                    "{env}: worker may use {}",
                    &c[2]
                );
            }
        }
        assert!(seen >= 7, "found the streams and buckets of src/bus/mod.rs");
    }
}
