//! Shared helpers of the delivery tests: where the repository is, and how to evaluate its
//! pure Nix job functions with `nix-instantiate` without racing.
//!
//! The tests themselves live in `tests/`: `jobs.rs` (strict decode of every rendered job),
//! `ci_sh.rs` (the deploy script against a fake `nomad`), `nats_auth.rs` (the generated
//! NATS cluster configuration over TLS) and `scrape.rs` (Prometheus' Nomad discovery).
//! Nothing here talks to a network.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

use serde_json::Value;

/// Placeholder images, pinned by digest as the job functions require.
pub const WORKER_IMAGE: &str = "ghcr.io/example/repo-guardian@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
pub const NATS_IMAGE: &str = "docker.io/library/nats@sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
pub const VECTOR_IMAGE: &str = "docker.io/timberio/vector@sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
/// The three environments, in promotion order.
pub const ENVS: [&str; 3] = ["dev", "staging", "prod"];

/// The repository root (this crate lives in `crates/delivery`): the working directory's
/// nearest ancestor with a `flake.nix` — cargo runs tests in the package's directory, and
/// a build directory shared between checkouts may hold a copy of this crate compiled in
/// another checkout — else where this crate was compiled.
pub fn repo_root() -> PathBuf {
    let compiled = || Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = std::env::current_dir()
        .ok()
        .and_then(|cwd| {
            cwd.ancestors()
                .find(|d| d.join("flake.nix").is_file())
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(compiled);
    root.canonicalize().expect("repository root")
}

/// Serializes every use of Nix in this process and warms it up once.
///
/// On a fresh machine the first `nix-instantiate` creates its state under `/nix/var`
/// (profiles, gc roots); several first calls at once race on those symlinks ("creating
/// symlink … File exists"). One warm-up evaluation behind this lock, and every later call
/// behind the same lock, keep the test threads from ever racing.
pub fn nix_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    static WARM: OnceLock<()> = OnceLock::new();
    let guard = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    WARM.get_or_init(|| {
        let out = Command::new("nix-instantiate")
            .args(["--eval", "-E", "1"])
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run nix-instantiate ({e}): install Nix (Debian: apt-get install -y nix-bin)"
                )
            });
        assert!(
            out.status.success(),
            "nix-instantiate warm-up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    guard
}

/// Runs `nix-instantiate --eval --strict --json` with `args`; `Err` is Nix's message.
pub fn nix_eval(args: &[&str]) -> Result<Value, String> {
    let _nix = nix_lock();
    let out = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json"])
        .args(args)
        .current_dir(repo_root())
        .output()
        .map_err(|e| format!("cannot run nix-instantiate: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("not JSON: {e}"))
}

/// Evaluates a job function file with `--argstr` pairs.
pub fn eval_file(file: &str, args: &[(&str, &str)]) -> Result<Value, String> {
    let mut argv = vec![file];
    for (name, value) in args {
        argv.extend(["--argstr", name, value]);
    }
    nix_eval(&argv)
}

/// Renders `file` for `env` with `image` once per test process; later calls reuse the text.
fn rendered(file: &str, env: &str, image: &str) -> String {
    static CACHE: Mutex<BTreeMap<(String, String), String>> = Mutex::new(BTreeMap::new());
    let key = (file.to_owned(), env.to_owned());
    if let Some(json) = CACHE.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return json.clone();
    }
    let json = eval_file(file, &[("env", env), ("image", image)])
        .unwrap_or_else(|e| panic!("rendering {file} for {env} failed: {e}"))
        .to_string();
    CACHE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, json.clone());
    json
}

/// The rendered worker job of `env`, as JSON text.
pub fn worker_job_json(env: &str) -> String {
    rendered("deploy/nomad/default.nix", env, WORKER_IMAGE)
}

/// The rendered NATS cluster job of `env`, as JSON text.
pub fn nats_job_json(env: &str) -> String {
    rendered("deploy/nats/default.nix", env, NATS_IMAGE)
}

/// The rendered log shipper job of `env`, as JSON text.
pub fn logging_job_json(env: &str) -> String {
    rendered("deploy/logging/default.nix", env, VECTOR_IMAGE)
}

/// Decodes a rendered job strictly, panicking with serde's message (which names the
/// unknown field or the wrong type and its position).
pub fn decode(what: &str, json: &str) -> nomad_api::JobFile {
    nomad_api::decode_job(json)
        .unwrap_or_else(|e| panic!("{what} does not decode into Nomad's job API: {e}"))
}
