//! Typed, validated configuration.
//!
//! Layers, later wins: built-in defaults → `guardian.toml` in the working directory (or the
//! file given with `--config`) → environment variables `GUARDIAN__SECTION__KEY`. A few
//! well-known variables are honoured as fallbacks (`NATS_URL`, `GITHUB_TOKEN`). Secrets are
//! held in [`SecretString`] and never printed: `Debug` of a secret shows `[REDACTED]`.
//! Validation happens once at start-up and names the offending key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

/// Everything a `guardian` process can be configured with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub nats: NatsSettings,
    pub github: GithubSettings,
    pub http: HttpSettings,
    pub worker: WorkerSettings,
    pub telemetry: TelemetrySettings,
    pub targets: TargetFilters,
    /// The OpenAI-compatible endpoint of the optional review step. Accepted and validated
    /// now so deployments can provision the secret; no step calls it yet.
    #[serde(default)]
    pub llm: LlmSettings,
    /// Per-policy switches and options, keyed by policy id (`[policies.license]`).
    #[serde(default)]
    pub policies: BTreeMap<String, PolicySettings>,
    /// The GitHub webhook receiver on the ops server; off unless a secret is set.
    pub webhook: WebhookSettings,
    /// Runs fired on a cadence, once per window across the fleet (`[[schedules]]`).
    #[serde(default)]
    pub schedules: Vec<crate::schedule::Schedule>,
}

/// `POST /webhooks/github` on the ops server (see `docs/configuration.md#webhooks`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// The secret GitHub signs deliveries with (`X-Hub-Signature-256`). Without it the
    /// route does not exist (404): an unsigned endpoint would let anyone start runs.
    pub secret: Option<SecretString>,
    /// Largest body accepted; larger deliveries are answered 413 unread. GitHub caps
    /// payloads at 25 MB.
    pub max_body_bytes: usize,
    /// Events for one repository arriving within this window of the first are folded into
    /// one scan, started when the window ends. Zero scans at once.
    #[serde(with = "humantime_serde")]
    pub coalesce_window: Duration,
    /// How long delivery ids are remembered fleet-wide, so a redelivery is not scanned
    /// twice. GitHub lets operators redeliver for three days.
    #[serde(with = "humantime_serde")]
    pub delivery_ttl: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSettings {
    /// Server URL(s), comma separated.
    pub url: String,
    /// Optional `.creds` file (JWT + NKey) for the connection (decentralised auth).
    pub creds: Option<PathBuf>,
    /// User and password (config-file auth, as in `deploy/nats`), instead of `creds`.
    pub user: Option<String>,
    pub password: Option<SecretString>,
    /// Stream replicas: 1 for a single server, 3 on a 3-node cluster.
    pub replicas: usize,
    /// How long the work stream deduplicates `Nats-Msg-Id`s.
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
    /// Consumer AckWait; in-progress heartbeats are sent at a third of it.
    #[serde(with = "humantime_serde")]
    pub ack_wait: Duration,
    /// Deliveries before a transiently failing step is given up and dead-lettered.
    pub max_deliver: i64,
    /// Redelivery delays after a transient failure (the last one repeats).
    #[serde(deserialize_with = "durations")]
    pub backoff: Vec<Duration>,
    /// How long the audit trail in `GUARDIAN_EVENTS` is kept.
    #[serde(with = "humantime_serde")]
    pub events_max_age: Duration,
    /// How long dead letters are kept.
    #[serde(with = "humantime_serde")]
    pub dlq_max_age: Duration,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubSettings {
    /// REST API base URL: `https://api.github.com`, a GitHub Enterprise Server
    /// `https://HOST/api/v3`, or the test double.
    pub api_url: String,
    /// Personal access or installation token.
    pub token: Option<SecretString>,
    /// Per-request timeout.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Conditional requests against the shared ETag cache (`guardian_http`). Only worth
    /// switching off to measure what the cache saves.
    pub etag_cache: bool,
    /// Label put on every issue the fleet files.
    pub label: String,
    /// `User-Agent` header GitHub asks every client to send.
    pub user_agent: String,
    /// Least time between two mutating requests (POST/PATCH/PUT/DELETE) of one worker.
    /// GitHub asks integrations not to send writes concurrently and to wait about a second
    /// between them; writes are also serialised per worker.
    #[serde(with = "humantime_serde")]
    pub write_interval: Duration,
    /// First wait after a secondary rate limit answered without `Retry-After` (GitHub asks
    /// for at least a minute); it doubles with each further one, up to 16 times, and resets
    /// after a success.
    #[serde(with = "humantime_serde")]
    pub secondary_limit_backoff: Duration,
}

impl std::fmt::Debug for GithubSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubSettings")
            .field("api_url", &self.api_url)
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .field("timeout", &self.timeout)
            .field("etag_cache", &self.etag_cache)
            .field("label", &self.label)
            .field("write_interval", &self.write_interval)
            .field("secondary_limit_backoff", &self.secondary_limit_backoff)
            .finish()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmSettings {
    /// Base URL of an OpenAI-compatible API (OpenAI, Ollama, vLLM, llama.cpp).
    pub api_url: Option<String>,
    pub api_key: Option<SecretString>,
    pub model: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Address of the ops server (`/healthz`, `/readyz`, `/metrics`).
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    /// Steps handled at once by one worker, per step.
    pub concurrency: StepConcurrency,
    /// After SIGTERM: how long in-flight steps may finish before they are handed back.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// How long a worker holds a repository's reconcile lease before others may take it.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// How often queue depth is read from the consumers for metrics.
    #[serde(with = "humantime_serde")]
    pub queue_poll_interval: Duration,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepConcurrency {
    pub plan: usize,
    pub scan: usize,
    pub review: usize,
    pub reconcile: usize,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line, for production log shipping.
    Json,
    /// Human-readable, coloured on a terminal.
    Human,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    pub log_format: LogFormat,
    /// Fraction of root traces sampled (0.0–1.0) when OTLP export is on.
    pub trace_sample_ratio: f64,
}

/// Which repositories of an organisation or user a run covers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetFilters {
    pub include_archived: bool,
    pub include_forks: bool,
    pub include_private: bool,
    /// Glob patterns over `owner/name`; empty means all.
    pub allow: Vec<String>,
    /// Glob patterns over `owner/name`, applied after `allow`.
    pub deny: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    /// Overrides the policy's default on/off.
    pub enabled: Option<bool>,
    /// Policy-specific options, documented with each policy.
    #[serde(default)]
    pub options: BTreeMap<String, serde_json::Value>,
}

/// Configuration could not be loaded; the message names the key and the problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration key `{key}`: {problem}")]
    Invalid { key: &'static str, problem: String },
}

/// A list of humantime durations (`["1s", "5s"]`).
fn durations<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    let raw: Vec<String> = Vec::deserialize(d)?;
    raw.iter()
        .map(|s| {
            humantime::parse_duration(s.trim())
                .map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}")))
        })
        .collect()
}

const DEFAULTS: &str = include_str!("../config/defaults.toml");

impl Settings {
    /// Loads defaults, then `file` (or `./guardian.toml` when present), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// Like [`Settings::load`] with an explicit environment, so tests need not touch the
    /// process environment.
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let env: BTreeMap<String, String> = env.into_iter().collect();
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        match file {
            Some(path) => {
                if !path.exists() {
                    return Err(ConfigError::Invalid {
                        key: "--config",
                        problem: format!("file {} does not exist", path.display()),
                    });
                }
                builder = builder.add_source(config::File::from(path).required(true));
            }
            None => {
                builder = builder.add_source(config::File::with_name("guardian").required(false))
            }
        }
        // Well-known variables beat the file but not their namespaced spelling.
        for (plain, namespaced, key) in [
            ("NATS_URL", "GUARDIAN__NATS__URL", "nats.url"),
            ("GITHUB_TOKEN", "GUARDIAN__GITHUB__TOKEN", "github.token"),
        ] {
            if let (Some(value), false) = (env.get(plain), env.contains_key(namespaced)) {
                builder = builder.set_override(key, value.as_str())?;
            }
        }
        let namespaced: config::Map<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("GUARDIAN__"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("GUARDIAN")
                .prefix_separator("__")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("nats.backoff")
                .with_list_parse_key("targets.allow")
                .with_list_parse_key("targets.deny")
                .try_parsing(true)
                .source(Some(namespaced)),
        );
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, problem: &str| {
            Err(ConfigError::Invalid {
                key,
                problem: problem.to_string(),
            })
        };
        if self.nats.url.trim().is_empty() {
            return invalid("nats.url", "must not be empty");
        }
        if let Some(creds) = &self.nats.creds
            && !creds.exists()
        {
            return Err(ConfigError::Invalid {
                key: "nats.creds",
                problem: format!("file {} does not exist", creds.display()),
            });
        }
        if self.nats.password.is_some() != self.nats.user.is_some() {
            return invalid("nats.user", "nats.user and nats.password go together");
        }
        if self.nats.password.is_some() && self.nats.creds.is_some() {
            return invalid(
                "nats.creds",
                "use either nats.creds or nats.user/nats.password, not both",
            );
        }
        if let Some(url) = &self.llm.api_url
            && !url.starts_with("http://")
            && !url.starts_with("https://")
        {
            return invalid("llm.api_url", "must be an http(s) URL");
        }
        if !(1..=5).contains(&self.nats.replicas) {
            return invalid("nats.replicas", "must be between 1 and 5");
        }
        if self.nats.max_deliver < 1 {
            return invalid("nats.max_deliver", "must be at least 1");
        }
        if self.nats.backoff.is_empty() {
            return invalid("nats.backoff", "needs at least one delay");
        }
        if self.nats.ack_wait < Duration::from_secs(1) {
            return invalid("nats.ack_wait", "must be at least 1s");
        }
        match url::Url::parse(&self.github.api_url) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            _ => return invalid("github.api_url", "must be an http(s) URL"),
        }
        if self.github.label.trim().is_empty() {
            return invalid("github.label", "must not be empty");
        }
        let c = self.worker.concurrency;
        for (key, n) in [
            ("worker.concurrency.plan", c.plan),
            ("worker.concurrency.scan", c.scan),
            ("worker.concurrency.review", c.review),
            ("worker.concurrency.reconcile", c.reconcile),
        ] {
            if n == 0 || n > 1024 {
                return Err(ConfigError::Invalid {
                    key,
                    problem: format!("must be between 1 and 1024, got {n}"),
                });
            }
        }
        if !(0.0..=1.0).contains(&self.telemetry.trace_sample_ratio) {
            return invalid(
                "telemetry.trace_sample_ratio",
                "must be between 0.0 and 1.0",
            );
        }
        for (key, globs) in [
            ("targets.allow", &self.targets.allow),
            ("targets.deny", &self.targets.deny),
        ] {
            for g in globs {
                if let Err(e) = globset::Glob::new(g) {
                    return Err(ConfigError::Invalid {
                        key,
                        problem: format!("bad glob {g:?}: {e}"),
                    });
                }
            }
        }
        if self.webhook.max_body_bytes == 0 {
            return invalid("webhook.max_body_bytes", "must be at least 1");
        }
        if self.webhook.delivery_ttl < Duration::from_secs(1) {
            return invalid("webhook.delivery_ttl", "must be at least 1s");
        }
        let mut names = std::collections::BTreeSet::new();
        for schedule in &self.schedules {
            if !names.insert(schedule.name.as_str()) {
                return Err(ConfigError::Invalid {
                    key: "schedules",
                    problem: format!("two schedules are named `{}`", schedule.name),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::load_from(
            None,
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn defaults_then_well_known_then_namespaced_variables() {
        let s = load(&[]).unwrap();
        assert_eq!(s.nats.url, "nats://127.0.0.1:4222");
        assert_eq!(s.http.listen.to_string(), "0.0.0.0:9090");
        let s = load(&[("NATS_URL", "nats://a:4222"), ("GITHUB_TOKEN", "t1")]).unwrap();
        assert_eq!(s.nats.url, "nats://a:4222");
        let s = load(&[
            ("NATS_URL", "nats://a:4222"),
            ("GUARDIAN__NATS__URL", "nats://b:4222"),
            ("GUARDIAN__WORKER__CONCURRENCY__SCAN", "16"),
            ("GUARDIAN__NATS__BACKOFF", "1s,2s"),
            ("GUARDIAN__TARGETS__DENY", "octo/*,x/y"),
        ])
        .unwrap();
        assert_eq!(s.nats.url, "nats://b:4222");
        assert_eq!(s.worker.concurrency.scan, 16);
        assert_eq!(
            s.nats.backoff,
            vec![Duration::from_secs(1), Duration::from_secs(2)]
        );
        assert_eq!(
            s.targets.deny,
            vec!["octo/*".to_string(), "x/y".to_string()]
        );
    }

    #[test]
    fn invalid_values_name_the_key() {
        let err = |vars: &[(&str, &str)]| load(vars).unwrap_err().to_string();
        assert!(
            err(&[("GUARDIAN__WORKER__CONCURRENCY__SCAN", "0")])
                .contains("worker.concurrency.scan")
        );
        assert!(err(&[("GUARDIAN__GITHUB__API_URL", "ftp://x")]).contains("github.api_url"));
        assert!(err(&[("GUARDIAN__NATS__CREDS", "/nope.creds")]).contains("nats.creds"));
        assert!(err(&[("GUARDIAN__NATS__PASSWORD", "p")]).contains("nats.user"));
        assert!(err(&[("GUARDIAN__HTTP__LISTEN", "not-an-address")]).contains("listen"));
        assert!(err(&[("GUARDIAN__NATS__ACK_WAIT", "soon")]).contains("ack_wait"));
    }

    #[test]
    fn schedules_come_from_the_file_and_bad_ones_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("guardian.toml");
        let load_file = |text: &str| {
            std::fs::write(&file, text).unwrap();
            Settings::load_from(Some(&file), std::iter::empty())
        };
        let s = load_file(
            "[[schedules]]\ntarget = \"org:acme\"\nevery = \"6h\"\n\n\
             [[schedules]]\nname = \"nightly\"\ntarget = \"octo/hello\"\ncron = \"0 3 * * *\"\n",
        )
        .unwrap();
        assert_eq!(s.schedules.len(), 2);
        assert_eq!(s.schedules[1].name, "nightly");
        assert!(s.webhook.secret.is_none());
        let err = |text: &str| load_file(text).unwrap_err().to_string();
        assert!(err("[[schedules]]\ntarget = \"org:acme\"\n").contains("`every` or `cron`"));
        assert!(
            err("[[schedules]]\ntarget = \"org:acme\"\ncron = \"61 * * * *\"\n").contains("cron")
        );
        assert!(
            err("[[schedules]]\ntarget = \"team:x\"\nevery = \"1h\"\n")
                .contains("unknown target form")
        );
        assert!(
            err(
                "[[schedules]]\nname = \"a\"\ntarget = \"o/r\"\nevery = \"1h\"\n\n\
                 [[schedules]]\nname = \"a\"\ntarget = \"o/s\"\nevery = \"1h\"\n"
            )
            .contains("two schedules are named `a`")
        );
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let s = load(&[
            ("GITHUB_TOKEN", "ghp_supersecret"),
            ("GUARDIAN__LLM__API_KEY", "sk-secret"),
            ("GUARDIAN__WEBHOOK__SECRET", "whsec-secret"),
        ])
        .unwrap();
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("ghp_supersecret")
                && !debug.contains("sk-secret")
                && !debug.contains("whsec-secret"),
            "{debug}"
        );
    }
}
