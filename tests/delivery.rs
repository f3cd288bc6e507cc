//! The delivery contract, checked on the rendered Nomad jobs.
//!
//! Renders `deploy/nomad/default.nix` (the worker job) and `deploy/nats/default.nix` (the
//! NATS cluster) for every environment with `nix-instantiate --eval --strict --json` and
//! checks what operators rely on: canary + auto-revert updates, no auto-promotion in
//! production, images by digest, health checks on the worker's real routes, a kill timeout
//! longer than the drain, secrets only through templates, integer nanosecond durations, the
//! autoscaling signal, and a 3-node cluster with routes.
//!
//! `nix-instantiate` must be on PATH; without it the test fails, unless
//! `GUARDIAN_SKIP_NIX=1` says explicitly that this machine cannot run it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

const ENVS: [&str; 3] = ["dev", "staging", "prod"];
const WORKER_IMAGE: &str = "ghcr.io/example/repo-guardian@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const NATS_IMAGE: &str = "docker.io/library/nats@sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

/// Fields of the Nomad API that hold durations (nanoseconds).
const DURATION_FIELDS: [&str; 14] = [
    "Interval",
    "Timeout",
    "Delay",
    "MaxDelay",
    "Grace",
    "KillTimeout",
    "ShutdownDelay",
    "MinHealthyTime",
    "HealthyDeadline",
    "ProgressDeadline",
    "Stagger",
    "Splay",
    "Wait",
    "MaxKillTimeout",
];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `None` when the machine has no Nix and `GUARDIAN_SKIP_NIX=1` allows skipping.
fn nix_available() -> Option<()> {
    let found = Command::new("nix-instantiate")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if found {
        return Some(());
    }
    if std::env::var("GUARDIAN_SKIP_NIX").as_deref() == Ok("1") {
        eprintln!("SKIPPED: nix-instantiate is not on PATH and GUARDIAN_SKIP_NIX=1");
        return None;
    }
    panic!(
        "nix-instantiate is not on PATH: install Nix (Debian: apt-get install -y nix-bin) \
         to check the Nomad jobs, or set GUARDIAN_SKIP_NIX=1 to skip these tests on purpose"
    );
}

/// Evaluates a job function; `Err` carries nix-instantiate's message.
fn eval(file: &Path, args: &[(&str, &str)]) -> Result<Value, String> {
    let mut cmd = Command::new("nix-instantiate");
    cmd.args(["--eval", "--strict", "--json"]).arg(file);
    for (name, value) in args {
        cmd.args(["--argstr", name, value]);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run nix-instantiate: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("not JSON: {e}"))
}

fn worker_job(env: &str) -> Value {
    let file = repo_root().join("deploy/nomad/default.nix");
    eval(&file, &[("env", env), ("image", WORKER_IMAGE)])
        .unwrap_or_else(|e| panic!("rendering the {env} worker job failed: {e}"))
}

fn nats_job(env: &str) -> Value {
    let file = repo_root().join("deploy/nats/default.nix");
    eval(&file, &[("env", env), ("image", NATS_IMAGE)])
        .unwrap_or_else(|e| panic!("rendering the {env} NATS job failed: {e}"))
}

fn groups(job: &Value) -> &Vec<Value> {
    job["Job"]["TaskGroups"]
        .as_array()
        .expect("Job.TaskGroups is a list")
}

fn tasks(group: &Value) -> &Vec<Value> {
    group["Tasks"]
        .as_array()
        .expect("TaskGroup.Tasks is a list")
}

/// Calls `check(env, group, task)` for every task of the worker job of every environment.
fn for_each_worker_task(check: impl Fn(&str, &Value, &Value)) {
    for env in ENVS {
        let job = worker_job(env);
        for group in groups(&job) {
            for task in tasks(group) {
                check(env, group, task);
            }
        }
    }
}

/// "25s", "2m", "1m30s", "500ms" → Duration (the humantime forms the worker accepts here).
fn parse_duration(text: &str) -> Duration {
    let mut total = Duration::ZERO;
    let mut number = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&next) = chars.peek() {
            if next.is_ascii_digit() {
                break;
            }
            unit.push(next);
            chars.next();
        }
        let n: u64 = number
            .parse()
            .unwrap_or_else(|_| panic!("bad duration {text:?}"));
        number.clear();
        total += match unit.as_str() {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            other => panic!("unknown unit {other:?} in {text:?}"),
        };
    }
    assert!(number.is_empty(), "duration {text:?} lacks a unit");
    total
}

/// Every update stanza of the job: the job's own and each group's.
fn update_stanzas(job: &Value) -> Vec<&Value> {
    let mut found = vec![&job["Job"]["Update"]];
    found.extend(
        groups(job)
            .iter()
            .map(|g| &g["Update"])
            .filter(|u| !u.is_null()),
    );
    found
}

#[test]
fn worker_updates_use_canaries_and_auto_revert_and_prod_waits_for_a_human() {
    if nix_available().is_none() {
        return;
    }
    for env in ENVS {
        let job = worker_job(env);
        for update in update_stanzas(&job) {
            assert!(
                update["Canary"].as_u64().unwrap_or(0) >= 1,
                "{env}: Canary >= 1: {update}"
            );
            assert_eq!(
                update["AutoRevert"],
                Value::Bool(true),
                "{env}: AutoRevert: {update}"
            );
            assert_eq!(update["HealthCheck"], "checks", "{env}: health from checks");
            let promote = update["AutoPromote"].as_bool().unwrap_or(false);
            assert_eq!(
                promote,
                env != "prod",
                "{env}: AutoPromote only outside prod"
            );
        }
    }
}

#[test]
fn worker_image_is_pinned_by_digest_and_other_images_are_refused() {
    if nix_available().is_none() {
        return;
    }
    for_each_worker_task(|env, _group, task| {
        let image = task["Config"]["image"].as_str().expect("task image");
        assert_eq!(
            image, WORKER_IMAGE,
            "{env}: the image given is the image run"
        );
        assert!(image.contains("@sha256:"), "{env}: image by digest");
    });
    let file = repo_root().join("deploy/nomad/default.nix");
    for env in ENVS {
        for bad in [
            "ghcr.io/example/repo-guardian:latest",
            "ghcr.io/example/repo-guardian@sha256:abc",
        ] {
            let err = eval(&file, &[("env", env), ("image", bad)])
                .expect_err("an image without a full digest must be refused");
            assert!(
                err.contains("not pinned by digest"),
                "{env}: clear refusal, got: {err}"
            );
        }
    }
    let err = eval(&file, &[("env", "qa"), ("image", WORKER_IMAGE)])
        .expect_err("an unknown environment must be refused");
    assert!(
        err.contains("unknown env 'qa'"),
        "clear refusal, got: {err}"
    );
}

#[test]
fn worker_checks_hit_the_real_routes_on_the_port_the_worker_listens_on() {
    if nix_available().is_none() {
        return;
    }
    for env in ENVS {
        let job = worker_job(env);
        for group in groups(&job) {
            let task = &tasks(group)[0];
            let listen = task["Env"]["GUARDIAN__HTTP__LISTEN"]
                .as_str()
                .expect("listen address set");
            let listen_port: u64 = listen
                .rsplit(':')
                .next()
                .unwrap()
                .parse()
                .expect("listen port");

            let services = group["Services"].as_array().expect("services");
            assert!(
                !services.is_empty(),
                "{env}: the worker registers a service"
            );
            let mut paths = Vec::new();
            for service in services {
                for check in service["Checks"].as_array().expect("checks") {
                    assert_eq!(check["Type"], "http", "{env}: HTTP checks");
                    let label = check["PortLabel"]
                        .as_str()
                        .or(service["PortLabel"].as_str())
                        .expect("check port label");
                    assert_eq!(label, "http", "{env}: checks use the ops port label");
                    let port = group["Networks"][0]["DynamicPorts"]
                        .as_array()
                        .into_iter()
                        .chain(group["Networks"][0]["ReservedPorts"].as_array())
                        .flatten()
                        .find(|p| p["Label"] == label)
                        .unwrap_or_else(|| panic!("{env}: no port labelled {label}"));
                    let container_port = port["To"].as_u64().or(port["Value"].as_u64()).unwrap();
                    assert_eq!(
                        container_port, listen_port,
                        "{env}: check reaches GUARDIAN__HTTP__LISTEN"
                    );
                    paths.push(check["Path"].as_str().expect("check path").to_owned());
                }
            }
            paths.sort();
            assert_eq!(
                paths,
                ["/healthz", "/readyz"],
                "{env}: liveness and readiness routes"
            );
        }
    }
}

#[test]
fn worker_kill_timeout_outlasts_the_drain_and_uses_sigterm() {
    if nix_available().is_none() {
        return;
    }
    for_each_worker_task(|env, _group, task| {
        let drain = task["Env"]["GUARDIAN__WORKER__DRAIN_TIMEOUT"]
            .as_str()
            .expect("drain timeout set explicitly in the job");
        let drain = parse_duration(drain);
        let kill = Duration::from_nanos(task["KillTimeout"].as_u64().expect("KillTimeout in ns"));
        assert!(
            kill > drain,
            "{env}: KillTimeout {kill:?} must exceed the drain {drain:?}"
        );
        assert_eq!(
            task["KillSignal"], "SIGTERM",
            "{env}: the worker drains on SIGTERM"
        );
    });
}

#[test]
fn worker_secrets_arrive_only_through_templates() {
    if nix_available().is_none() {
        return;
    }
    for_each_worker_task(|env, _group, task| {
        let plain = task["Env"].as_object().expect("Env");
        for name in plain.keys() {
            let upper = name.to_ascii_uppercase();
            for word in ["TOKEN", "KEY", "CREDS", "PASSWORD", "SECRET"] {
                assert!(
                    !upper.contains(word),
                    "{env}: {name} must not be in plain Env"
                );
            }
        }
        for value in plain.values() {
            let value = value.as_str().unwrap_or_default();
            assert!(
                !value.contains('@'),
                "{env}: no credentials inside a plain URL: {value}"
            );
        }
        let templates = task["Templates"].as_array().expect("templates");
        let secret_env = templates
            .iter()
            .find(|t| t["Envvars"] == Value::Bool(true))
            .expect("an env template");
        let text = secret_env["EmbeddedTmpl"].as_str().unwrap();
        assert!(
            secret_env["DestPath"]
                .as_str()
                .unwrap()
                .starts_with("secrets/")
        );
        assert!(
            text.contains("nomadVar"),
            "{env}: secrets come from Nomad Variables"
        );
        for var in [
            "GUARDIAN__GITHUB__TOKEN=",
            "GUARDIAN__LLM__API_KEY=",
            "GUARDIAN__NATS__USER=",
            "GUARDIAN__NATS__PASSWORD=",
        ] {
            assert!(text.contains(var), "{env}: {var} rendered by the template");
        }
        assert!(
            text.contains("{{ .nats_password }}"),
            "{env}: the NATS password comes from Nomad Variables"
        );
    });
}

fn check_durations(path: &str, value: &Value, env: &str) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                // The autoscaler policy is the Nomad Autoscaler's own format (strings like "2m").
                if key == "Policy" && path.ends_with("Scaling") {
                    continue;
                }
                let here = format!("{path}.{key}");
                if DURATION_FIELDS.contains(&key.as_str()) {
                    assert!(
                        child.is_u64() || child.is_i64(),
                        "{env}: {here} must be an integer number of nanoseconds, got {child}"
                    );
                    let ns = child.as_i64().unwrap();
                    assert!(
                        ns == 0 || ns >= 1_000_000,
                        "{env}: {here} = {ns} looks like seconds, not ns"
                    );
                }
                check_durations(&here, child, env);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                check_durations(&format!("{path}[{i}]"), child, env);
            }
        }
        _ => {}
    }
}

#[test]
fn durations_are_integer_nanoseconds() {
    if nix_available().is_none() {
        return;
    }
    for env in ENVS {
        check_durations("", &worker_job(env), env);
        check_durations("", &nats_job(env), env);
    }
}

#[test]
fn worker_scales_on_the_queue_backlog() {
    if nix_available().is_none() {
        return;
    }
    for env in ENVS {
        let job = worker_job(env);
        for group in groups(&job) {
            let scaling = &group["Scaling"];
            let (min, max) = (
                scaling["Min"].as_u64().unwrap(),
                scaling["Max"].as_u64().unwrap(),
            );
            let count = group["Count"].as_u64().unwrap();
            assert!(
                min >= 1 && min <= count && count <= max,
                "{env}: {min} <= {count} <= {max}"
            );
            assert_eq!(scaling["Enabled"], Value::Bool(true));
            let policy = serde_json::to_string(&scaling["Policy"]).unwrap();
            assert!(
                policy.contains("guardian_queue_pending"),
                "{env}: scales on guardian_queue_pending"
            );
            assert!(
                policy.contains("prometheus"),
                "{env}: the metric comes from Prometheus"
            );
        }
    }
}

#[test]
fn worker_telemetry_is_configured_per_environment() {
    if nix_available().is_none() {
        return;
    }
    for env in ENVS {
        let job = worker_job(env);
        let task_env = &tasks(&groups(&job)[0])[0]["Env"];
        assert_eq!(task_env["GUARDIAN__TELEMETRY__LOG_FORMAT"], "json");
        assert_eq!(task_env["OTEL_SERVICE_NAME"], "repo-guardian");
        assert!(
            task_env["OTEL_EXPORTER_OTLP_ENDPOINT"]
                .as_str()
                .unwrap()
                .starts_with("http")
        );
        assert!(
            task_env["GUARDIAN__NATS__URL"]
                .as_str()
                .unwrap()
                .starts_with("nats://")
        );
    }
}

#[test]
fn nats_cluster_has_three_nodes_with_routes() {
    if nix_available().is_none() {
        return;
    }
    for env in ENVS {
        let job = nats_job(env);
        let group = &groups(&job)[0];
        assert_eq!(group["Count"], 3, "{env}: a 3-node JetStream cluster");
        let ports: Vec<u64> = group["Networks"][0]["ReservedPorts"]
            .as_array()
            .expect("static ports")
            .iter()
            .map(|p| p["Value"].as_u64().unwrap())
            .collect();
        assert_eq!(
            ports,
            [4222, 6222, 8222],
            "{env}: client, cluster and monitoring ports"
        );
        let task = &tasks(group)[0];
        assert!(
            task["Config"]["image"]
                .as_str()
                .unwrap()
                .contains("@sha256:")
        );
        let conf = task["Templates"][0]["EmbeddedTmpl"]
            .as_str()
            .expect("config template");
        let routes = conf.matches("nats-route://").count();
        assert_eq!(routes, 3, "{env}: one route per peer");
        assert!(conf.contains("jetstream"), "{env}: JetStream on");
        assert!(
            conf.contains("nomadVar"),
            "{env}: passwords from Nomad Variables"
        );
        assert!(
            !conf.contains("dummy-"),
            "{env}: no test passwords in the job"
        );
        let volume = &group["Volumes"]["jetstream"];
        assert_eq!(
            volume["Type"], "host",
            "{env}: the store lives on a host volume"
        );
    }
    let config = eval(
        &repo_root().join("deploy/nats/default.nix"),
        &[("env", "prod"), ("image", NATS_IMAGE), ("output", "config")],
    )
    .expect("test configuration renders");
    let text = config.as_str().expect("config text");
    assert!(text.contains("user: \"worker\"") && text.contains("user: \"trigger\""));
}

#[test]
fn duration_parser_reads_the_forms_used_in_jobs() {
    assert_eq!(parse_duration("25s"), Duration::from_secs(25));
    assert_eq!(parse_duration("1m30s"), Duration::from_secs(90));
    assert_eq!(parse_duration("500ms"), Duration::from_millis(500));
}
