//! The command line as a user meets it: `scan` isolated from any other fleet, exit codes,
//! and a table of bad inputs (arguments, configuration, NATS, GitHub tokens, files), each
//! with the exit code and the message it must produce.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use repo_guardian::bus::{Bus, WORK_STREAM};
use repo_guardian::local::NatsServer;
use repo_guardian::store::runs::RunStore;

use crate::helpers::{Harness, settings_for};

/// What a `guardian` invocation left behind.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the `guardian` binary in `dir` with a clean environment plus `env`.
pub fn guardian(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = base_command(dir, args, env).output().expect("run guardian");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The binary under test: this build's, or `GUARDIAN_TEST_BINARY` (to hold another build,
/// an installed one or an older release, against the same expectations).
fn binary() -> std::path::PathBuf {
    std::env::var_os("GUARDIAN_TEST_BINARY")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_guardian").into())
}

fn base_command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    if let Some(server) = std::env::var_os("GUARDIAN_NATS_SERVER") {
        cmd.env("GUARDIAN_NATS_SERVER", server);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A `guardian dev --demo` process: another fleet on this machine.
pub struct DevFleet {
    child: Child,
    pub url: String,
}

impl Drop for DevFleet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl DevFleet {
    pub async fn start(dir: &Path) -> DevFleet {
        let url = format!("nats://127.0.0.1:{}", free_port());
        let listen = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.join("dev.log")).expect("log");
        let child = base_command(
            dir,
            &["dev", "--demo"],
            &[("NATS_URL", &url), ("GUARDIAN__HTTP__LISTEN", &listen)],
        )
        .stdout(Stdio::from(log.try_clone().expect("log")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("guardian dev --demo");
        let fleet = DevFleet { child, url };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(client) = async_nats::connect(&fleet.url).await
                && let Ok(Ok(_)) = tokio::time::timeout(
                    Duration::from_secs(1),
                    client.request("$SRV.PING.repo-guardian", "".into()),
                )
                .await
            {
                return fleet;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "dev fleet not ready; log:\n{}",
                std::fs::read_to_string(dir.join("dev.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl DevFleet {
    /// The pid of the `nats-server` this fleet started (a child of the dev process).
    fn nats_server_pid(&self) -> u32 {
        let pid = self.child.id();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .expect("children of the dev process");
        children
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok())
            .find(|c| {
                std::fs::read_to_string(format!("/proc/{c}/comm"))
                    .is_ok_and(|comm| comm.trim().starts_with("nats-server"))
            })
            .expect("a nats-server child")
    }

    /// Waits (bounded) for the dev process to exit on its own.
    fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

fn record(run: &Run) -> serde_json::Value {
    assert_eq!(run.code, 0, "{run:#?}");
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_gives_the_same_result_ten_times_while_another_fleet_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dev = DevFleet::start(dir.path()).await;
    // The other fleet files its issues first, so its double no longer looks like a fresh
    // one: a scan served by it would plan nothing where a fresh demo plans every finding.
    let applied = record(&guardian(
        dir.path(),
        &["run", "org:demo-org", "--wait", "--format", "json"],
        &[("NATS_URL", &dev.url)],
    ));
    assert_eq!(applied["status"], "succeeded", "{applied}");

    let mut results = vec![];
    for _ in 0..10 {
        let r = record(&guardian(
            dir.path(),
            &["scan", "org:demo-org", "--demo", "--format", "json"],
            &[("NATS_URL", &dev.url)],
        ));
        results.push((
            r["status"].clone(),
            r["repos_total"].clone(),
            r["findings"].clone(),
            r["planned"].clone(),
        ));
    }
    let first = &results[0];
    assert_eq!(first.0, "succeeded");
    assert_eq!(first.1, 6, "the demo organisation has six repositories");
    assert!(first.2.as_u64().unwrap_or(0) > 0);
    assert_eq!(
        first.3["created"], first.2,
        "a fresh demo plans one new issue per finding: {first:?}"
    );
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r, first, "scan {i} differs from scan 0");
    }
    // And the other fleet saw none of the scans.
    let bus = Bus::connect(&settings_for(&dev.url).nats, "test")
        .await
        .expect("connect");
    let runs = RunStore::new(bus.kv("guardian_runs").await.expect("bucket"))
        .list()
        .await
        .expect("runs");
    assert_eq!(runs.len(), 1, "only the dev fleet's own run: {runs:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_never_takes_work_queued_on_the_server_at_nats_url() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = NatsServer::start(&dir.path().join("nats"), None).expect("nats-server");
    let settings = settings_for(&nats.url);
    let bus = Bus::connect(&settings.nats, "test").await.expect("connect");
    repo_guardian::bus::provision::provision(&bus, &settings)
        .await
        .expect("provision");
    // Work of another fleet, waiting for its workers.
    bus.publish(
        "guardian.work.plan".into(),
        "other-fleet-plan-1",
        br#"{"v":1,"run_id":"other","task":{"target":"org:other","dry_run":true}}"#.to_vec(),
    )
    .await
    .expect("publish");

    let scan = guardian(
        dir.path(),
        &["scan", "org:demo-org", "--demo", "--format", "json"],
        &[("NATS_URL", &nats.url)],
    );
    assert_eq!(record(&scan)["status"], "succeeded");

    let stream = bus.js.get_stream(WORK_STREAM).await.expect("stream");
    let mut consumer = stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>("guardian-plan")
        .await
        .expect("consumer");
    let info = consumer.info().await.expect("info");
    assert_eq!(
        (
            info.num_pending,
            info.num_ack_pending,
            info.delivered.stream_sequence
        ),
        (1, 0, 0),
        "the other fleet's plan was never delivered"
    );
    let runs = RunStore::new(bus.kv("guardian_runs").await.expect("bucket"))
        .list()
        .await
        .expect("runs");
    assert!(runs.is_empty(), "the scan's run lives elsewhere: {runs:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_longer_than_timeout_exits_4_and_names_the_run() {
    let mut h = Harness::start().await;
    h.seed_org("slow-org", 1, 0);
    h.spawn_worker().await;
    // Every GitHub answer takes 5s: the run cannot end within the 1s the command waits.
    h.double.set_latency(Duration::from_secs(5));
    let run = guardian(
        h.dir.path(),
        &[
            "run",
            "slow-org/repo-00",
            "--dry-run",
            "--wait",
            "--timeout",
            "1s",
        ],
        &[("NATS_URL", &h.nats.url)],
    );
    h.double.set_latency(Duration::ZERO);
    assert_eq!(run.code, 4, "{run:#?}");
    assert!(run.stderr.contains("did not finish within 1s"), "{run:#?}");
    let run_id = run
        .stderr
        .split_whitespace()
        .nth(1)
        .expect("the run id is printed first");
    assert!(
        run.stderr.contains(&format!("guardian runs show {run_id}")),
        "{run:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_fails_fast_when_its_ports_are_taken() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let nats_url = format!("nats://127.0.0.1:{port}");
    let free_listen = format!("127.0.0.1:{}", free_port());
    let nats_taken = guardian(
        dir.path(),
        &["dev", "--demo"],
        &[
            ("NATS_URL", &nats_url),
            ("GUARDIAN__HTTP__LISTEN", &free_listen),
        ],
    );
    assert_eq!(nats_taken.code, 5, "{nats_taken:#?}");
    assert!(
        nats_taken
            .stderr
            .contains(&format!("NATS port 127.0.0.1:{port} is not free")),
        "{nats_taken:#?}"
    );
    let listen = format!("127.0.0.1:{port}");
    let ops_taken = guardian(
        dir.path(),
        &["dev", "--demo"],
        &[("GUARDIAN__HTTP__LISTEN", &listen)],
    );
    assert_eq!(ops_taken.code, 5, "{ops_taken:#?}");
    assert!(
        ops_taken
            .stderr
            .contains(&format!("http.listen {listen} is not free"))
            && ops_taken.stderr.contains("GUARDIAN__HTTP__LISTEN"),
        "{ops_taken:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_says_so_and_stops_when_its_nats_server_dies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut dev = DevFleet::start(dir.path()).await;
    let nats = dev.nats_server_pid();
    let killed = Command::new("kill")
        .args(["-KILL", &nats.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = dev
        .wait_exit(Duration::from_secs(30))
        .expect("dev stops within 30s of losing its nats-server");
    assert_eq!(status.code(), Some(5));
    let log = std::fs::read_to_string(dir.path().join("dev.log")).unwrap_or_default();
    assert!(log.contains("the dev fleet's nats-server exited"), "{log}");
}

/// Where a bad input is sent.
enum Input {
    /// The command line, with environment variables.
    Cli(
        &'static [&'static str],
        &'static [(&'static str, &'static str)],
    ),
    /// A `guardian.run` request payload, straight onto NATS.
    Request(&'static str),
}

/// Which server the environment's `NATS_URL` points at for a row.
#[derive(Clone, Copy, PartialEq)]
enum Server {
    /// The fleet: a worker, the double with `TOKEN`.
    Fleet,
    /// A NATS server nobody provisioned.
    Bare,
    /// Nothing at all (the variable is not set).
    None,
}

struct Case {
    name: &'static str,
    server: Server,
    input: Input,
    /// Exit code, or the micro-protocol error code of a request.
    code: i32,
    /// Every one of these must be in stderr (or the error reply).
    says: &'static [&'static str],
}

const fn cli(
    name: &'static str,
    server: Server,
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    code: i32,
    says: &'static [&'static str],
) -> Case {
    Case {
        name,
        server,
        input: Input::Cli(args, env),
        code,
        says,
    }
}

const fn request(name: &'static str, payload: &'static str, says: &'static [&'static str]) -> Case {
    Case {
        name,
        server: Server::Fleet,
        input: Input::Request(payload),
        code: 400,
        says,
    }
}

use Server::{Bare, Fleet, None as NoServer};

const CASES: &[Case] = &[
    // Arguments.
    cli("no command", NoServer, &[], &[], 2, &["Usage: guardian"]),
    cli(
        "unknown command",
        NoServer,
        &["bogus"],
        &[],
        2,
        &["unrecognized subcommand 'bogus'"],
    ),
    cli(
        "run without target",
        NoServer,
        &["run"],
        &[],
        2,
        &["<TARGET>"],
    ),
    cli(
        "unknown target form",
        NoServer,
        &["run", "team:x"],
        &[],
        2,
        &["unknown target form `team:x`", "OWNER/REPO"],
    ),
    cli(
        "bad repository name",
        NoServer,
        &["scan", "octo/bad name", "--demo"],
        &[],
        2,
        &["invalid repository name `bad name`"],
    ),
    cli(
        "bad timeout",
        NoServer,
        &["run", "o/r", "--wait", "--timeout", "soon"],
        &[],
        2,
        &["invalid value 'soon' for '--timeout"],
    ),
    cli(
        "bad format",
        NoServer,
        &["runs", "list", "--format", "xml"],
        &[],
        2,
        &["invalid value 'xml' for '--format"],
    ),
    cli(
        "run id with a space",
        NoServer,
        &["runs", "show", "a b"],
        &[],
        2,
        &["invalid run id `a b`", "guardian runs list"],
    ),
    cli(
        "negative limit",
        NoServer,
        &["runs", "list", "--limit", "-1"],
        &[],
        2,
        &["'-1'"],
    ),
    cli(
        "dead letter id not a number",
        NoServer,
        &["dlq", "replay", "abc"],
        &[],
        2,
        &["invalid value 'abc'"],
    ),
    cli(
        "unknown shell",
        NoServer,
        &["completions", "tcsh"],
        &[],
        2,
        &["invalid value 'tcsh'"],
    ),
    cli(
        "quiet and verbose",
        NoServer,
        &["-q", "-v", "runs", "list"],
        &[],
        2,
        &["cannot be used with"],
    ),
    cli(
        "bad colour choice",
        NoServer,
        &["--color", "sometimes", "runs", "list"],
        &[],
        2,
        &["invalid value 'sometimes' for '--color"],
    ),
    // Configuration.
    cli(
        "log format typo",
        NoServer,
        &["runs", "list"],
        &[("GUARDIAN__TELEMETRY__LOG_FORMAT", "xml")],
        2,
        &["telemetry.log_format: unknown value \"xml\", expected one of: json, human"],
    ),
    cli(
        "zero concurrency",
        NoServer,
        &["runs", "list"],
        &[("GUARDIAN__WORKER__CONCURRENCY__SCAN", "0")],
        2,
        &["worker.concurrency.scan: must be between 1 and 1024, got 0"],
    ),
    cli(
        "duration typo",
        NoServer,
        &["runs", "list"],
        &[("GUARDIAN__NATS__ACK_WAIT", "soon")],
        2,
        &["nats.ack_wait:", "expected a duration"],
    ),
    cli(
        "not a number",
        NoServer,
        &["runs", "list"],
        &[("GUARDIAN__NATS__REPLICAS", "three")],
        2,
        &["nats.replicas:"],
    ),
    cli(
        "unknown key in a file",
        NoServer,
        &["--config", "unknown-key.toml", "runs", "list"],
        &[],
        2,
        &["unknown field `urll`"],
    ),
    cli(
        "file that is not TOML",
        NoServer,
        &["--config", "broken.toml", "runs", "list"],
        &[],
        2,
        &["broken.toml", "TOML parse error"],
    ),
    cli(
        "missing configuration file",
        NoServer,
        &["--config", "nope.toml", "runs", "list"],
        &[],
        2,
        &["--config: file nope.toml does not exist"],
    ),
    cli(
        "ftp api url",
        NoServer,
        &["runs", "list"],
        &[("GUARDIAN__GITHUB__API_URL", "ftp://x")],
        2,
        &["github.api_url: must be an http(s) URL"],
    ),
    cli(
        "password without user",
        NoServer,
        &["runs", "list"],
        &[("GUARDIAN__NATS__PASSWORD", "p")],
        2,
        &["nats.user"],
    ),
    // Files for `check`.
    cli(
        "check a missing path",
        NoServer,
        &["check", "no/such/dir"],
        &[],
        2,
        &["cannot read `no/such/dir`"],
    ),
    cli(
        "check a file",
        NoServer,
        &["check", "broken.toml"],
        &[],
        2,
        &["`broken.toml` is not a directory"],
    ),
    cli(
        "check with bad policy options",
        NoServer,
        &["--config", "bad-options.toml", "check", "."],
        &[],
        2,
        &["license", "bogus"],
    ),
    // NATS.
    cli(
        "nothing listens",
        NoServer,
        &["runs", "list"],
        &[("NATS_URL", "nats://127.0.0.1:1")],
        5,
        &["connection refused", "guardian dev", "NATS_URL"],
    ),
    cli(
        "name does not resolve",
        NoServer,
        &["dlq", "list"],
        &[("NATS_URL", "nats://no-such-host.invalid:4222")],
        5,
        &[
            "cannot resolve the NATS host `no-such-host.invalid`",
            "NATS_URL",
        ],
    ),
    cli(
        "not provisioned: runs",
        Bare,
        &["runs", "list"],
        &[],
        5,
        &["bucket guardian_runs", "guardian provision"],
    ),
    cli(
        "not provisioned: dead letters",
        Bare,
        &["dlq", "list"],
        &[],
        5,
        &["stream GUARDIAN_DLQ", "guardian provision"],
    ),
    cli(
        "no worker",
        Bare,
        &["run", "octo/hello"],
        &[],
        5,
        &["no worker answers guardian.run", "guardian worker"],
    ),
    cli(
        "unknown run",
        Fleet,
        &["runs", "show", "01a2318c-8631-73fa-813e-108d1493fe58"],
        &[],
        5,
        &["run 01a2318c-8631-73fa-813e-108d1493fe58 not found"],
    ),
    cli(
        "unknown dead letter",
        Fleet,
        &["dlq", "replay", "999"],
        &[],
        5,
        &["no dead letter with id 999"],
    ),
    // GitHub tokens.
    cli(
        "scan without a token",
        NoServer,
        &["scan", "octo/hello"],
        &[],
        2,
        &["no GitHub token", "GITHUB_TOKEN", "--demo"],
    ),
    cli(
        "scan with a rejected token",
        Fleet,
        &["scan", "octo/hello"],
        &[("GITHUB_TOKEN", "ghp_wrong")],
        5,
        &["GitHub rejected the token (401", "GITHUB_TOKEN"],
    ),
    cli(
        "scan with GitHub unreachable",
        NoServer,
        &["scan", "octo/hello"],
        &[
            ("GITHUB_TOKEN", "t"),
            ("GUARDIAN__GITHUB__API_URL", "http://127.0.0.1:1"),
        ],
        5,
        &["cannot reach GitHub at http://127.0.0.1:1", "--demo"],
    ),
    // Requests to `guardian.run`.
    request(
        "payload not JSON",
        "not json",
        &["request is not valid JSON"],
    ),
    request(
        "target not a string",
        r#"{"target": 5}"#,
        &["field `target` must be a string, got a number"],
    ),
    request(
        "unknown field",
        r#"{"target": "o/r", "force": true}"#,
        &["unknown field `force`"],
    ),
    request(
        "unknown target form",
        r#"{"target": "team:x"}"#,
        &["unknown target form `team:x`"],
    ),
    request("not an object", "[1]", &["request must be a JSON object"]),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_exit_with_the_documented_code_and_say_what_to_do() {
    let mut h = Harness::start().await;
    h.spawn_worker().await;
    let bare = NatsServer::start(&h.dir.path().join("bare"), None).expect("nats-server");
    let dir = h.dir.path();
    std::fs::write(dir.join("unknown-key.toml"), "[nats]\nurll = \"x\"\n").unwrap();
    std::fs::write(dir.join("broken.toml"), "[nats\n").unwrap();
    std::fs::write(
        dir.join("bad-options.toml"),
        "[policies.license.options]\nbogus = 1\n",
    )
    .unwrap();
    let api = h.double.url();
    assert!(CASES.len() >= 25, "{} cases", CASES.len());

    let mut failures = vec![];
    for case in CASES {
        let (code, text) = match case.input {
            Input::Cli(args, env) => {
                let mut env: Vec<(&str, &str)> = env.to_vec();
                match case.server {
                    Server::Fleet => {
                        env.push(("NATS_URL", &h.nats.url));
                        env.push(("GUARDIAN__GITHUB__API_URL", &api));
                    }
                    Server::Bare => env.push(("NATS_URL", &bare.url)),
                    Server::None => {}
                }
                let run = guardian(dir, args, &env);
                (run.code, run.stderr)
            }
            Input::Request(payload) => {
                match h.bus.client.request("guardian.run", payload.into()).await {
                    Ok(reply) => {
                        let headers = reply.headers.unwrap_or_default();
                        let code = headers
                            .get("Nats-Service-Error-Code")
                            .and_then(|c| c.as_str().parse().ok())
                            .unwrap_or(0);
                        let text = headers
                            .get("Nats-Service-Error")
                            .map(|e| e.as_str().to_string())
                            .unwrap_or_default();
                        (code, text)
                    }
                    Err(e) => (-1, e.to_string()),
                }
            }
        };
        let missing: Vec<_> = case.says.iter().filter(|s| !text.contains(*s)).collect();
        if code != case.code || !missing.is_empty() {
            failures.push(format!(
                "{}: expected {} saying {:?}, got {code}:\n{text}",
                case.name, case.code, missing
            ));
        }
        // Said once: no error printed twice.
        if matches!(case.input, Input::Cli(..)) && text.matches("error:").count() > 1 {
            failures.push(format!("{}: more than one error line:\n{text}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad inputs misbehave:\n\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n\n")
    );
}
