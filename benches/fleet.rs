//! The fleet benchmark: real `guardian worker` processes, a real `nats-server` and the
//! GitHub double (with GitHub-like latency), every figure measured in this run.
//!
//! `cargo bench --bench fleet` (add `-- --quick` for a smaller organisation and fewer
//! samples) writes `$CARGO_TARGET_DIR/bench/fleet.json` and prints a table. Scenarios:
//!
//! - **org scale**: an organisation of 1,000 repositories (200 with `--quick`), three
//!   workflows each, 50 ms per GitHub request, scanned cold by 1 and by 2 workers (a fresh
//!   NATS each time, so no ETag cache), then once more warm by the 2 workers;
//! - **webhook latency**: one repository, 100 ms per GitHub request, a signed `push`
//!   after each change of its licence, timed until the issue on the double has changed;
//! - **budget**: three workers scan an organisation (100 repositories, 40 with `--quick`)
//!   against a double enforcing 150 points per 10 s (GitHub's 900 a minute, scaled; a GET
//!   costs 1, a write 5), the fleet's shared budget set to the same; utilisation is the
//!   share of that allowance used over the run, violations every 403/429 the fleet
//!   received in all scenarios;
//! - **process**: resident memory of a worker idle and under load, and start-up to ready.
//!
//! Never part of the test suite: timings depend on the machine, and nothing here fails on
//! a number.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use github_double::{GithubDouble, ProtectionRules, RepoOptions, SecondaryLimits};
use repo_guardian::bus::Bus;
use repo_guardian::config::Settings;
use repo_guardian::local::NatsServer;
use repo_guardian::webhook::signature::sign;

const ORG: &str = "bench-org";
const SECRET: &str = "bench-webhook-secret";
/// GitHub's 900 points a minute, scaled to a 10 s window so the scenario takes a minute
/// or two instead of many.
const BUDGET_PER_WINDOW: u32 = 150;
const BUDGET_WINDOW: Duration = Duration::from_secs(10);

struct Options {
    repos: usize,
    webhook_samples: usize,
    budget_repos: usize,
}

/// A worker process; killed when dropped.
struct Worker {
    child: Child,
    port: u16,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Worker {
    fn rss_mb(&self) -> f64 {
        rss_mb(self.child.id())
    }
}

/// A fresh fleet: its own `nats-server` (empty store: no cache, no state) and workers.
struct Fleet {
    dir: tempfile::TempDir,
    nats: NatsServer,
    bus: Bus,
    workers: Vec<Worker>,
    env: Vec<(String, String)>,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// CPU time (user + system) a process has used so far, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields 14 and 15 (utime, stime) in clock ticks, counted after the `(comm)` field,
    // which may hold spaces.
    let after_comm = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let ticks: f64 = after_comm
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse::<f64>().ok())
        .sum();
    ticks / clock_ticks_per_second()
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// The pid of the `nats-server` keeping its store in `store` (started by this benchmark).
fn nats_pid(store: &std::path::Path) -> Option<u32> {
    let wanted = store.to_str()?;
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read_to_string(entry.path().join("cmdline")).ok()?;
            (cmdline.contains("nats-server") && cmdline.split('\0').any(|arg| arg == wanted))
                .then_some(pid)
        })
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// CPU used by each part of a fleet, in seconds, at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct CpuUse {
    workers: f64,
    nats: f64,
    /// This process: the GitHub double, and the benchmark following the run.
    bench: f64,
}

impl CpuUse {
    fn since(self, before: CpuUse) -> CpuUse {
        CpuUse {
            workers: self.workers - before.workers,
            nats: self.nats - before.nats,
            bench: self.bench - before.bench,
        }
    }
}

/// Mean duration in milliseconds of each step, over every worker of a fleet, from the
/// `guardian_step_duration_seconds` histograms on their `/metrics` pages.
async fn step_means(ports: &[u16]) -> BTreeMap<String, f64> {
    let mut sums: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for port in ports {
        let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await else {
            continue;
        };
        let page = response.text().await.unwrap_or_default();
        for line in page.lines() {
            let (series, value) = match line.rsplit_once(' ') {
                Some((series, value)) => (series, value.parse::<f64>().unwrap_or(0.0)),
                None => continue,
            };
            let (is_sum, rest) = if let Some(rest) =
                series.strip_prefix("guardian_step_duration_seconds_sum{")
            {
                (true, rest)
            } else if let Some(rest) = series.strip_prefix("guardian_step_duration_seconds_count{")
            {
                (false, rest)
            } else {
                continue;
            };
            let Some(step) = rest
                .split(',')
                .find_map(|label| label.strip_prefix("step=\""))
                .map(|s| s.trim_end_matches(['"', '}']).to_string())
            else {
                continue;
            };
            let entry = sums.entry(step).or_default();
            if is_sum {
                entry.0 += value;
            } else {
                entry.1 += value;
            }
        }
    }
    sums.into_iter()
        .filter(|(_, (_, count))| *count > 0.0)
        .map(|(step, (sum, count))| (step, sum / count * 1000.0))
        .collect()
}

impl Fleet {
    async fn start(double: &GithubDouble, extra: &[(&str, &str)]) -> anyhow::Result<Fleet> {
        let dir = tempfile::tempdir()?;
        let nats = NatsServer::start(&dir.path().join("nats"), None)?;
        let settings = Settings::load_from(
            None,
            [("GUARDIAN__NATS__URL".to_string(), nats.url.clone())],
        )?;
        let bus = Bus::connect(&settings.nats, "bench").await?;
        let mut env: Vec<(String, String)> = vec![
            ("GUARDIAN__NATS__URL".into(), nats.url.clone()),
            ("GUARDIAN__GITHUB__API_URL".into(), double.url()),
            ("GUARDIAN__GITHUB__TOKEN".into(), "bench-token".into()),
            ("GUARDIAN__TELEMETRY__LOG_FORMAT".into(), "json".into()),
        ];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Ok(Fleet {
            dir,
            nats,
            bus,
            workers: vec![],
            env,
        })
    }

    /// Starts a worker and returns the time from spawn to `/readyz` answering 200.
    async fn spawn_worker(&mut self) -> anyhow::Result<Duration> {
        let port = free_port()?;
        let index = self.workers.len();
        let log = std::fs::File::create(self.dir.path().join(format!("worker-{index}.log")))?;
        let started = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_guardian"))
            .arg("worker")
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOSTNAME", format!("bench-worker-{index}"))
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().cloned())
            .env("GUARDIAN__HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()?;
        self.workers.push(Worker { child, port });
        let url = format!("http://127.0.0.1:{port}/readyz");
        let deadline = started + Duration::from_secs(60);
        loop {
            if let Ok(r) = reqwest::get(&url).await
                && r.status() == 200
            {
                return Ok(started.elapsed());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "worker {index} not ready in 60s (nats {})",
                self.nats.url
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Starts a run of `target` and waits for its final record; returns the wall time.
    async fn run(&self, target: &str) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let accepted = repo_guardian::client::request_run(&self.bus, target, false).await?;
        let record =
            repo_guardian::client::follow(&self.bus, &accepted.run_id, Duration::from_secs(1800))
                .await?;
        anyhow::ensure!(
            record.status.as_str() == "succeeded",
            "run of {target} ended {}: {:?}",
            record.status.as_str(),
            record.summary
        );
        Ok(started.elapsed())
    }

    fn pids(&self) -> Vec<u32> {
        self.workers.iter().map(|w| w.child.id()).collect()
    }

    fn ports(&self) -> Vec<u16> {
        self.workers.iter().map(|w| w.port).collect()
    }

    fn cpu(&self) -> CpuUse {
        CpuUse {
            workers: self.pids().into_iter().map(cpu_seconds).sum(),
            nats: nats_pid(&self.nats.store).map(cpu_seconds).unwrap_or(0.0),
            bench: cpu_seconds(std::process::id()),
        }
    }

    /// Runs `target` cold and measures it: wall time, CPU of each part, mean step times,
    /// and the warnings the workers logged (each a retry that cost time).
    async fn measured_run(&self, target: &str) -> anyhow::Result<Measured> {
        let before = self.cpu();
        let seconds = self.run(target).await?.as_secs_f64();
        let warnings = self.warnings();
        for line in warnings.iter().take(3) {
            eprintln!(
                "  worker warning: {}",
                line.chars().take(300).collect::<String>()
            );
        }
        Ok(Measured {
            seconds,
            cpu: self.cpu().since(before),
            steps: step_means(&self.ports()).await,
            load: load_average(),
            warnings: warnings.len(),
        })
    }

    /// Lines the workers logged so far (they log warnings and errors only).
    fn warnings(&self) -> Vec<String> {
        (0..self.workers.len())
            .flat_map(|i| {
                std::fs::read_to_string(self.dir.path().join(format!("worker-{i}.log")))
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// One measured organisation run.
struct Measured {
    seconds: f64,
    cpu: CpuUse,
    steps: BTreeMap<String, f64>,
    load: String,
    warnings: usize,
}

impl Measured {
    /// Figures named `<what>_<suffix>`: CPU per repository of each part and mean step times.
    fn figures(&self, repos: usize, suffix: &str) -> serde_json::Map<String, serde_json::Value> {
        let per_repo = |cpu: f64| cpu * 1000.0 / repos as f64;
        let mut out = serde_json::Map::new();
        out.insert(
            format!("cpu_ms_per_repo_workers_{suffix}"),
            per_repo(self.cpu.workers).into(),
        );
        out.insert(
            format!("cpu_ms_per_repo_nats_{suffix}"),
            per_repo(self.cpu.nats).into(),
        );
        out.insert(
            format!("cpu_ms_per_repo_bench_{suffix}"),
            per_repo(self.cpu.bench).into(),
        );
        for (step, ms) in &self.steps {
            out.insert(format!("step_ms_{step}_{suffix}"), (*ms).into());
        }
        out.insert(
            format!("load_average_after_{suffix}"),
            self.load.clone().into(),
        );
        out.insert(format!("worker_warnings_{suffix}"), self.warnings.into());
        out
    }
}

/// A valid Dependabot configuration: `updates: []` is not one, and would file an issue in
/// every repository (one paced write each), which is not what this scenario measures.
const DEPENDABOT: &str = "version: 2\nupdates:\n  - package-ecosystem: cargo\n    directory: /\n    schedule:\n      interval: weekly\n";

const WORKFLOW: &str = "name: ci\non: [push]\npermissions:\n  contents: read\njobs:\n  test:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683\n";

/// An organisation of `repos` repositories that satisfy every policy, with three workflows
/// each, so a cold run reads everything and files nothing. The fleet's label already
/// exists (an organisation seen before): on a never-seen organisation every repository
/// costs one label write, paced `github.write_interval` apart per worker, which dominates
/// everything else (see docs/performance.md). The primary budget is lifted: a cold
/// organisation of 1,000 needs more than GitHub's 5,000 an hour, which the budget scenario
/// measures on its own.
async fn seed_org(double: &GithubDouble, repos: usize) -> anyhow::Result<()> {
    double.set_rate_limit(10_000_000, 10_000_000);
    double.add_org(ORG);
    let client = reqwest::Client::new();
    for i in 0..repos {
        let name = format!("repo-{i:04}");
        seed_repo(double, &name);
        let created = client
            .post(format!("{}/repos/{ORG}/{name}/labels", double.url()))
            .json(&serde_json::json!({ "name": "repo-guardian", "color": "5319e7" }))
            .send()
            .await?;
        anyhow::ensure!(created.status().is_success(), "label: {}", created.status());
    }
    double.clear_requests();
    Ok(())
}

fn seed_repo(double: &GithubDouble, name: &str) {
    double.add_repo(ORG, name, RepoOptions::default());
    for (path, text) in [
        ("README.md", "# bench\n"),
        ("SECURITY.md", "Report to security@example.com\n"),
        (".github/CODEOWNERS", "* @bench-org/team\n"),
        ("LICENSE", "MIT License\n"),
        (".github/dependabot.yml", DEPENDABOT),
        (".github/workflows/ci.yml", WORKFLOW),
        (".github/workflows/release.yml", WORKFLOW),
        (".github/workflows/lint.yml", WORKFLOW),
    ] {
        double.put_file(ORG, name, path, text);
    }
    double.set_protection(
        ORG,
        name,
        Some(ProtectionRules {
            required_approving_reviews: Some(1),
            ..Default::default()
        }),
    );
}

/// Samples the resident memory of `pids` until `stop`; the peak in MB.
fn sample_peak_rss(pids: Vec<u32>, stop: Arc<AtomicU64>) -> tokio::task::JoinHandle<f64> {
    tokio::spawn(async move {
        let mut peak: f64 = 0.0;
        while stop.load(Ordering::SeqCst) == 0 {
            for pid in &pids {
                peak = peak.max(rss_mb(*pid));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        peak
    })
}

#[derive(Default)]
struct Budget {
    requests: usize,
    limited: usize,
    utilisation: f64,
}

impl Budget {
    fn add(&mut self, double: &GithubDouble) {
        let requests = double.requests();
        self.requests += requests.len();
        self.limited += requests
            .iter()
            .filter(|r| r.status == 403 || r.status == 429)
            .count();
    }
}

/// Three workers scan an organisation against a double that enforces a request rate
/// (secondary limit); utilisation is the share of the allowed requests the fleet used
/// while it ran.
async fn budget_scenario(opts: &Options, budget: &mut Budget) -> anyhow::Result<()> {
    let double = GithubDouble::start().await?;
    seed_org(&double, opts.budget_repos).await?;
    double.set_latency(Duration::from_millis(20));
    // The fleet's shared budget, scaled like the double's limit: the same points per
    // (10 s) window.
    let window = format!("{}s", BUDGET_WINDOW.as_secs());
    let points = BUDGET_PER_WINDOW.to_string();
    let mut fleet = Fleet::start(
        &double,
        &[
            ("GUARDIAN__GITHUB__BUDGET__WINDOW", window.as_str()),
            (
                "GUARDIAN__GITHUB__BUDGET__REQUESTS_PER_MINUTE",
                points.as_str(),
            ),
        ],
    )
    .await?;
    for _ in 0..3 {
        fleet.spawn_worker().await?;
    }
    double.clear_requests();
    double.set_secondary_limits(SecondaryLimits {
        points: Some(BUDGET_PER_WINDOW),
        window: BUDGET_WINDOW,
        ..Default::default()
    });
    let elapsed = fleet.run(&format!("org:{ORG}")).await?;
    let admitted: u32 = double.secondary_admitted().iter().map(|(_, p)| p).sum();
    let allowed =
        f64::from(BUDGET_PER_WINDOW) * elapsed.as_secs_f64() / BUDGET_WINDOW.as_secs_f64();
    budget.utilisation = (f64::from(admitted) / allowed).min(1.0);
    budget.add(&double);
    Ok(())
}

struct OrgScale {
    one: Measured,
    two: Measured,
    calls_cold: f64,
    charged_warm: f64,
    rss_idle: f64,
    rss_load: f64,
    startup_ms: f64,
    warm_seconds: f64,
}

/// The fleet's budget lifted, like the double's primary limit in [`seed_org`]: the org
/// scenarios measure how fast the fleet works, which at 1,000 repositories is far more than
/// GitHub's 900 points a minute allow one token; the budget scenario measures keeping to it.
const UNLIMITED_BUDGET: &[(&str, &str)] = &[
    ("GUARDIAN__GITHUB__BUDGET__REQUESTS_PER_MINUTE", "100000000"),
    ("GUARDIAN__GITHUB__BUDGET__WRITES_PER_MINUTE", "100000000"),
    ("GUARDIAN__GITHUB__BUDGET__WRITES_PER_HOUR", "100000000"),
];

async fn org_scale(opts: &Options, budget: &mut Budget) -> anyhow::Result<OrgScale> {
    let target = format!("org:{ORG}");
    let latency = Duration::from_millis(50);

    // One worker, cold.
    let double = GithubDouble::start().await?;
    seed_org(&double, opts.repos).await?;
    double.set_latency(latency);
    let mut one = Fleet::start(&double, UNLIMITED_BUDGET).await?;
    one.spawn_worker().await?;
    let measured_1 = one.measured_run(&target).await?;
    budget.add(&double);
    drop(one);

    // Two workers, cold, then warm.
    let double = GithubDouble::start().await?;
    seed_org(&double, opts.repos).await?;
    double.set_latency(latency);
    let mut two = Fleet::start(&double, UNLIMITED_BUDGET).await?;
    let startup = two.spawn_worker().await?;
    two.spawn_worker().await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = two.workers[0].rss_mb();
    let stop = Arc::new(AtomicU64::new(0));
    let sampler = sample_peak_rss(two.pids(), stop.clone());
    let measured_2 = two.measured_run(&target).await?;
    stop.store(1, Ordering::SeqCst);
    let rss_load = sampler.await?;
    let cold = double.requests();
    budget.add(&double);
    double.clear_requests();
    let warm_seconds = two.run(&target).await?.as_secs_f64();
    let warm = double.requests();
    budget.add(&double);
    let repos = opts.repos as f64;
    Ok(OrgScale {
        one: measured_1,
        two: measured_2,
        calls_cold: cold.len() as f64 / repos,
        charged_warm: warm.iter().filter(|r| r.status != 304).count() as f64 / repos,
        rss_idle,
        rss_load,
        startup_ms: startup.as_secs_f64() * 1000.0,
        warm_seconds,
    })
}

fn push_body(delivery: usize) -> Vec<u8> {
    serde_json::json!({
        "ref": "refs/heads/main",
        "after": format!("{delivery:040x}"),
        "repository": { "full_name": format!("{ORG}/hook"), "default_branch": "main" },
    })
    .to_string()
    .into_bytes()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Times signed pushes until the issue they should change has changed on the double.
/// `extra` adds worker settings (the unpaced variant sets `github.write_interval` to 0).
async fn webhook_latency(
    opts: &Options,
    budget: &mut Budget,
    extra: &[(&str, &str)],
) -> anyhow::Result<(Vec<f64>, BTreeMap<String, f64>)> {
    let double = GithubDouble::start().await?;
    double.add_org(ORG);
    seed_repo(&double, "hook");
    double.set_latency(Duration::from_millis(100));
    let mut settings = vec![
        ("GUARDIAN__WEBHOOK__SECRET", SECRET),
        ("GUARDIAN__WEBHOOK__COALESCE_WINDOW", "0s"),
    ];
    settings.extend_from_slice(extra);
    let mut fleet = Fleet::start(&double, &settings).await?;
    fleet.spawn_worker().await?;
    // Warm: the repository is known and its label exists, as for any watched repository.
    fleet.run(&format!("{ORG}/hook")).await?;
    let url = format!("http://127.0.0.1:{}/webhooks/github", fleet.workers[0].port);
    let client = reqwest::Client::new();
    let mut samples = Vec::new();
    for i in 0..opts.webhook_samples {
        // Even samples remove the licence (an issue opens), odd ones restore it (it closes).
        let want_open = i % 2 == 0;
        if want_open {
            double.delete_file(ORG, "hook", "LICENSE");
        } else {
            double.put_file(ORG, "hook", "LICENSE", "MIT License\n");
        }
        let body = push_body(i);
        let started = Instant::now();
        let response = client
            .post(&url)
            .header("X-GitHub-Event", "push")
            .header("X-GitHub-Delivery", format!("bench-{i}"))
            .header("X-Hub-Signature-256", sign(SECRET.as_bytes(), &body))
            .body(body)
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == 202,
            "webhook answered {}",
            response.status()
        );
        let deadline = started + Duration::from_secs(60);
        loop {
            let open = double
                .issues(ORG, "hook")
                .iter()
                .filter(|i| i.state == "open")
                .count();
            if (open > 0) == want_open {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "issue unchanged 60s after push {i}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    budget.add(&double);
    samples.sort_by(f64::total_cmp);
    // Where a sample's time goes: the mean of each step (the warm-up run included).
    let steps = step_means(&fleet.ports()).await;
    Ok((samples, steps))
}

fn machine() -> BTreeMap<&'static str, String> {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let memory = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_default();
    let nats = Command::new(repo_guardian::local::server_binary())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    BTreeMap::from([
        ("cpu", cpu),
        (
            "cores",
            std::thread::available_parallelism()
                .map(|n| n.get().to_string())
                .unwrap_or_default(),
        ),
        ("memory", memory),
        (
            "kernel",
            read("/proc/sys/kernel/osrelease").trim().to_string(),
        ),
        ("nats_server", nats),
        (
            "load_average_at_start",
            read("/proc/loadavg")
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
        ),
    ])
}

fn out_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("bench")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let quick = std::env::args().any(|a| a == "--quick");
    let opts = if quick {
        Options {
            repos: 200,
            webhook_samples: 6,
            budget_repos: 40,
        }
    } else {
        Options {
            repos: 1000,
            webhook_samples: 30,
            budget_repos: 100,
        }
    };
    let machine = machine();
    let started = Instant::now();
    let mut budget = Budget::default();
    eprintln!("fleet bench: org of {} repositories…", opts.repos);
    let org = org_scale(&opts, &mut budget).await?;
    eprintln!("fleet bench: webhook latency…");
    let (hooks, hook_steps) = webhook_latency(&opts, &mut budget, &[]).await?;
    eprintln!("fleet bench: webhook latency without write pacing…");
    let (unpaced, unpaced_steps) = webhook_latency(
        &opts,
        &mut budget,
        &[("GUARDIAN__GITHUB__WRITE_INTERVAL", "0s")],
    )
    .await?;
    eprintln!("fleet bench: budget…");
    budget_scenario(&opts, &mut budget).await?;
    let results = serde_json::json!({
        "quick": quick,
        "org_repos": opts.repos,
        "org1000_seconds_1_worker": org.one.seconds,
        "org1000_seconds_2_workers": org.two.seconds,
        "scaling_2_vs_1": org.one.seconds / org.two.seconds,
        "org1000_seconds_2_workers_warm": org.warm_seconds,
        "webhook_to_issue_ms_p50": percentile(&hooks, 50.0),
        "webhook_to_issue_ms_p99": percentile(&hooks, 99.0),
        "webhook_samples": hooks.len(),
        "webhook_to_issue_ms_p50_unpaced": percentile(&unpaced, 50.0),
        "webhook_to_issue_ms_p99_unpaced": percentile(&unpaced, 99.0),
        "github_calls_per_repo_cold": org.calls_cold,
        "github_rate_limited_calls_per_repo_warm": org.charged_warm,
        "budget_utilisation": budget.utilisation,
        "budget_repos": opts.budget_repos,
        "budget_allowed_requests_per_minute": f64::from(BUDGET_PER_WINDOW) * 60.0 / BUDGET_WINDOW.as_secs_f64(),
        "bench_seconds": started.elapsed().as_secs_f64(),
        "budget_violations": budget.limited,
        "github_requests_total": budget.requests,
        "worker_rss_idle_mb": org.rss_idle,
        "worker_rss_load_mb": org.rss_load,
        "startup_to_ready_ms": org.startup_ms,
        "machine": machine,
    });
    let mut results = results;
    if let Some(map) = results.as_object_mut() {
        map.extend(org.one.figures(opts.repos, "1_worker"));
        map.extend(org.two.figures(opts.repos, "2_workers"));
        for (suffix, steps) in [("paced", &hook_steps), ("unpaced", &unpaced_steps)] {
            for (step, ms) in steps {
                map.insert(format!("webhook_step_ms_{step}_{suffix}"), (*ms).into());
            }
        }
    }
    let dir = out_dir();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("fleet.json");
    std::fs::write(&path, serde_json::to_string_pretty(&results)?)?;

    let goals: [(&str, &str); 19] = [
        ("org_repos", ""),
        ("org1000_seconds_1_worker", ""),
        ("org1000_seconds_2_workers", "≤ 30"),
        ("scaling_2_vs_1", "≥ 1.8"),
        ("org1000_seconds_2_workers_warm", ""),
        ("webhook_to_issue_ms_p50", "≤ 1000"),
        ("webhook_to_issue_ms_p99", ""),
        ("webhook_samples", ""),
        ("github_calls_per_repo_cold", "≤ 11"),
        ("github_rate_limited_calls_per_repo_warm", "0"),
        ("budget_utilisation", "≥ 0.9"),
        ("budget_violations", "0"),
        ("budget_repos", ""),
        ("bench_seconds", ""),
        ("github_requests_total", ""),
        ("worker_rss_idle_mb", ""),
        ("worker_rss_load_mb", ""),
        ("startup_to_ready_ms", ""),
        ("quick", ""),
    ];
    println!("| figure | value | goal |\n|---|---|---|");
    for (key, goal) in goals {
        let value = &results[key];
        let shown = match value.as_f64() {
            Some(v) if value.is_f64() => format!("{v:.2}"),
            _ => value.to_string(),
        };
        println!("| `{key}` | {shown} | {goal} |");
    }
    // Where the time went: CPU per repository of each part, mean step times, load.
    let listed: Vec<&str> = goals.iter().map(|(key, _)| *key).collect();
    if let Some(map) = results.as_object() {
        for (key, value) in map {
            if listed.contains(&key.as_str()) || key == "machine" {
                continue;
            }
            let shown = match value.as_f64() {
                Some(v) => format!("{v:.2}"),
                None => value
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| value.to_string()),
            };
            println!("| `{key}` | {shown} | |");
        }
    }
    for (key, value) in &machine {
        println!("| machine `{key}` | {value} | |");
    }
    println!("\nwritten to {}", path.display());
    Ok(())
}
