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
use serde::{Deserialize, Serialize};

/// Everything a `guardian` process can be configured with.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub nats: NatsSettings,
    pub github: GithubSettings,
    pub http: HttpSettings,
    pub worker: WorkerSettings,
    pub telemetry: TelemetrySettings,
    pub targets: TargetFilters,
    /// The OpenAI-compatible model of the optional review step.
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
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// The secret GitHub signs deliveries with (`X-Hub-Signature-256`). Without it the
    /// route does not exist (404): an unsigned endpoint would let anyone start runs.
    #[serde(serialize_with = "redacted")]
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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSettings {
    /// Server URL(s), comma separated.
    pub url: String,
    /// Optional `.creds` file (JWT + NKey) for the connection (decentralised auth).
    pub creds: Option<PathBuf>,
    /// User and password (config-file auth, as in `deploy/nats`), instead of `creds`.
    pub user: Option<String>,
    #[serde(serialize_with = "redacted")]
    pub password: Option<SecretString>,
    /// Stream replicas: 1 for a single server, 3 on a 3-node cluster.
    pub replicas: usize,
    /// How long the work stream deduplicates `Nats-Msg-Id`s.
    #[serde(
        deserialize_with = "humantime_serde::deserialize",
        serialize_with = "duration_text"
    )]
    pub duplicate_window: Duration,
    /// Consumer AckWait; in-progress heartbeats are sent at a third of it.
    #[serde(
        deserialize_with = "humantime_serde::deserialize",
        serialize_with = "duration_text"
    )]
    pub ack_wait: Duration,
    /// The application's delivery budget: deliveries that ended in a failure before a
    /// transiently failing step is given up and dead-lettered (`bus::consumer::decide`).
    /// Rate-limit deferrals do not count.
    pub max_deliver: i64,
    /// The server's MaxDeliver on every work consumer, far above `max_deliver`, so a
    /// delivery that ends without an outcome (a crash, a drain) never strands a message:
    /// when even this runs out, the server's max-deliveries advisory dead-letters it.
    pub server_max_deliver: i64,
    /// Redelivery delays after a transient failure (the last one repeats).
    #[serde(deserialize_with = "durations", serialize_with = "serialize_durations")]
    pub backoff: Vec<Duration>,
    /// How long the audit trail in `GUARDIAN_EVENTS` is kept.
    #[serde(
        deserialize_with = "humantime_serde::deserialize",
        serialize_with = "duration_text"
    )]
    pub events_max_age: Duration,
    /// How long dead letters are kept.
    #[serde(
        deserialize_with = "humantime_serde::deserialize",
        serialize_with = "duration_text"
    )]
    pub dlq_max_age: Duration,
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GithubSettings {
    /// REST API base URL: `https://api.github.com`, a GitHub Enterprise Server
    /// `https://HOST/api/v3`, or the test double.
    pub api_url: String,
    /// Personal access or installation token. Not together with `[github.app]`.
    #[serde(serialize_with = "redacted")]
    pub token: Option<SecretString>,
    /// A GitHub App instead of a token: each request carries the installation token of the
    /// account it concerns (`docs/operations/github-app.md`). In use when `app_id` is set.
    #[serde(default)]
    pub app: GithubAppSettings,
    /// Per-request timeout.
    #[serde(
        deserialize_with = "humantime_serde::deserialize",
        serialize_with = "duration_text"
    )]
    pub timeout: Duration,
    /// Conditional requests against the shared ETag cache (`guardian_http`). Only worth
    /// switching off to measure what the cache saves.
    pub etag_cache: bool,
    /// Label put on every issue the fleet files.
    pub label: String,
    /// `User-Agent` header GitHub asks every client to send.
    pub user_agent: String,
    /// Least time between two mutating requests (POST/PATCH/PUT/DELETE) of one token across
    /// the whole fleet (GitHub asks for writes one after another, about a second apart). It
    /// is kept through the shared budget (`[github.budget]`); writes of one worker are also
    /// serialised. `0s` leaves only the per-minute and per-hour caps.
    #[serde(
        deserialize_with = "humantime_serde::deserialize",
        serialize_with = "duration_text"
    )]
    pub write_interval: Duration,
    /// First wait after a secondary rate limit answered without `Retry-After` (GitHub asks
    /// for at least a minute); it doubles with each further one, up to 16 times, and resets
    /// after a success.
    #[serde(
        deserialize_with = "humantime_serde::deserialize",
        serialize_with = "duration_text"
    )]
    pub secondary_limit_backoff: Duration,
    /// The fleet-wide API budget per token (`[github.budget]`).
    pub budget: BudgetSettings,
}

/// The fleet-wide GitHub API budget of one token (`[github.budget]`), shared by every
/// worker through the `guardian_budget` bucket; see `docs/operations/monitoring.md#github-api-budget`.
/// The caps default to GitHub's documented secondary limits, a little below them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSettings {
    /// Points per `window` for the whole fleet: a GET costs 1, a write 5 (GitHub: 900 a
    /// minute per token).
    pub requests_per_minute: u32,
    /// Content-creating requests (POST) per `window` for the whole fleet (GitHub: 80).
    pub writes_per_minute: u32,
    /// Content-creating requests per 60 `window`s for the whole fleet (GitHub: 500 an hour).
    pub writes_per_hour: u32,
    /// Requests of one token in flight at once across the fleet (GitHub: 100); each worker
    /// takes its share of it among the workers seen in the last half minute.
    pub max_concurrent: u32,
    /// Requests of one token in flight at once in one worker.
    pub max_concurrent_per_worker: u32,
    /// Part of the primary (hourly) limit never spent: when GitHub reports this many or
    /// fewer requests remaining, the fleet waits for the reset.
    pub reserve: u32,
    /// Longest wait a request sleeps in its worker for budget; a longer wait hands the step
    /// back to the queue until the budget returns (without using up its deliveries).
    #[serde(with = "duration_field")]
    pub max_wait: Duration,
    /// Length of GitHub's minute for the caps above (the hour is 60 of them). Only tests
    /// and benchmarks shorten it, to scale GitHub's limits down.
    #[serde(with = "duration_field")]
    pub window: Duration,
    /// Most request points a worker claims from the shared counter at once beyond what it
    /// needs right now, while less than half the window's budget is used (fewer round
    /// trips to NATS when the budget is plentiful).
    pub batch: u32,
}

impl std::fmt::Debug for GithubSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubSettings")
            .field("api_url", &self.api_url)
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .field("app", &self.app)
            .field("timeout", &self.timeout)
            .field("etag_cache", &self.etag_cache)
            .field("label", &self.label)
            .field("write_interval", &self.write_interval)
            .field("secondary_limit_backoff", &self.secondary_limit_backoff)
            .field("budget", &self.budget)
            .finish()
    }
}

/// `[github.app]`: the App's id and private key, from which workers mint installation
/// tokens (`crate::github::app`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GithubAppSettings {
    /// The App's numeric id (the App's settings page, "App ID"); unset, no App is used.
    #[serde(default)]
    pub app_id: Option<u64>,
    /// The App's private key, PEM (`-----BEGIN RSA PRIVATE KEY-----` as GitHub hands it
    /// out, or PKCS#8). Either this or `private_key_file`.
    #[serde(default, serialize_with = "redacted")]
    pub private_key: Option<SecretString>,
    /// A file holding the PEM private key (a mounted secret), instead of `private_key`.
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    /// Installations the fleet may act for; empty means every installation of the App.
    #[serde(default, deserialize_with = "installation_ids")]
    pub installation_ids: Vec<u64>,
    /// An installation token is replaced when less than this is left of its lifetime
    /// (GitHub's last one hour), so no request starts with a token about to expire.
    #[serde(
        default = "default_token_refresh_margin",
        deserialize_with = "humantime_serde::deserialize",
        serialize_with = "duration_text"
    )]
    pub token_refresh_margin: Duration,
}

/// `[1, 2]` in a file; `1,2` or a single `1` in `GUARDIAN__GITHUB__APP__INSTALLATION_IDS`
/// (the environment hands over strings, or a lone number).
fn installation_ids<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Number(u64),
        Text(String),
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Ids {
        One(Id),
        Many(Vec<Id>),
    }
    let ids = match Ids::deserialize(d)? {
        Ids::One(id) => vec![id],
        Ids::Many(ids) => ids,
    };
    ids.into_iter()
        .map(|id| match id {
            Id::Number(n) => Ok(n),
            Id::Text(t) => t.trim().parse().map_err(|_| {
                serde::de::Error::custom(format!("{t:?} is not an installation id (a number)"))
            }),
        })
        .collect()
}

fn default_token_refresh_margin() -> Duration {
    Duration::from_secs(5 * 60)
}

impl Default for GithubAppSettings {
    fn default() -> Self {
        GithubAppSettings {
            app_id: None,
            private_key: None,
            private_key_file: None,
            installation_ids: Vec::new(),
            token_refresh_margin: default_token_refresh_margin(),
        }
    }
}

impl GithubSettings {
    /// The GitHub App section and its id, when the fleet authenticates as an App.
    pub fn app(&self) -> Option<(u64, &GithubAppSettings)> {
        self.app.app_id.map(|id| (id, &self.app))
    }
}

impl GithubAppSettings {
    /// The private key's PEM text, from `private_key` or read from `private_key_file`.
    /// A key pasted into one line with literal `\n` (as some secret stores hand it over)
    /// is unfolded.
    pub fn private_key_pem(&self) -> Result<SecretString, ConfigError> {
        use secrecy::ExposeSecret as _;
        let invalid = |key, problem: String| ConfigError::Invalid { key, problem };
        let text = match (&self.private_key, &self.private_key_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "github.app.private_key",
                    "set either github.app.private_key or github.app.private_key_file, not both"
                        .into(),
                ));
            }
            (None, None) => {
                return Err(invalid(
                    "github.app.private_key",
                    "the App's private key is missing: set github.app.private_key \
                     (GUARDIAN__GITHUB__APP__PRIVATE_KEY) or github.app.private_key_file"
                        .into(),
                ));
            }
            (Some(pem), None) => pem.expose_secret().to_string(),
            (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| {
                invalid(
                    "github.app.private_key_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?,
        };
        let text = if !text.contains('\n') && text.contains("\\n") {
            text.replace("\\n", "\n")
        } else {
            text
        };
        Ok(SecretString::from(text))
    }
}

/// Id of the policy whose findings the model reports (`crate::llm::answer`).
pub const LLM_AUDIT_POLICY: &str = "llm-audit";

/// The optional review step's model (`[llm]`); see `docs/llm.md`. Without both `api_url`
/// and `model`, no step calls a model and nothing else here matters.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LlmSettings {
    /// Base URL of an OpenAI-compatible API (OpenAI, Ollama, vLLM, llama.cpp); the client
    /// posts to `{api_url}/chat/completions`.
    pub api_url: Option<String>,
    /// Sent as `Authorization: Bearer …` when set; local servers usually need none.
    #[serde(serialize_with = "redacted")]
    pub api_key: Option<SecretString>,
    pub model: Option<String>,
    /// Per-request timeout; a slower answer counts as a failed call.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Further attempts after a 429, a 5xx or a network error.
    pub max_retries: u32,
    /// First delay between attempts, doubled each time, unless `Retry-After` says otherwise.
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// Longest `Retry-After` honoured; a longer one gives the call up.
    #[serde(with = "humantime_serde")]
    pub max_retry_after: Duration,
    /// Model calls in flight at once in one worker.
    pub concurrency: usize,
    /// Tokens (prompt + completion) one run may spend; 0 = no limit.
    pub max_tokens_per_run: u64,
    /// Tokens the whole fleet may spend per UTC day; 0 = no limit.
    pub max_tokens_per_day: u64,
    /// `max_tokens` asked of the model per answer.
    pub max_completion_tokens: u32,
    /// Characters of repository content (per file) put into a prompt; the rest is cut.
    pub max_input_chars: usize,
    /// Characters of model text (per answer field) allowed into an issue.
    pub max_output_chars: usize,
    /// Findings the `llm-audit` policy reports per repository at most.
    pub max_audit_findings: usize,
}

impl Default for LlmSettings {
    fn default() -> Self {
        LlmSettings {
            api_url: None,
            api_key: None,
            model: None,
            timeout: Duration::from_secs(60),
            max_retries: 2,
            retry_backoff: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(60),
            concurrency: 2,
            max_tokens_per_run: 0,
            max_tokens_per_day: 0,
            max_completion_tokens: 800,
            max_input_chars: 12_000,
            max_output_chars: 3_000,
            max_audit_findings: 10,
        }
    }
}

impl LlmSettings {
    /// `true` when a model is configured, which turns the review step on.
    pub fn configured(&self) -> bool {
        let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        set(&self.api_url) && set(&self.model)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Address of the ops server (`/healthz`, `/readyz`, `/metrics`).
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    /// Steps handled at once by one worker, per step.
    pub concurrency: StepConcurrency,
    /// After SIGTERM: how long in-flight steps may finish before they are handed back.
    #[serde(
        deserialize_with = "humantime_serde::deserialize",
        serialize_with = "duration_text"
    )]
    pub drain_timeout: Duration,
    /// How long a worker holds a repository's reconcile lease before others may take it.
    #[serde(
        deserialize_with = "humantime_serde::deserialize",
        serialize_with = "duration_text"
    )]
    pub lease_ttl: Duration,
    /// How often queue depth is read from the consumers for metrics.
    #[serde(
        deserialize_with = "humantime_serde::deserialize",
        serialize_with = "duration_text"
    )]
    pub queue_poll_interval: Duration,
    /// A run whose record has not changed for this long is finalised as `stalled` by the
    /// sweeper, with a reason for every repository still pending.
    #[serde(
        deserialize_with = "humantime_serde::deserialize",
        serialize_with = "duration_text"
    )]
    pub stall_timeout: Duration,
    /// How often the sweeper looks for stalled runs (one worker of the fleet at a time).
    #[serde(
        deserialize_with = "humantime_serde::deserialize",
        serialize_with = "duration_text"
    )]
    pub sweep_interval: Duration,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StepConcurrency {
    pub plan: usize,
    pub scan: usize,
    pub review: usize,
    pub reconcile: usize,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line, for production log shipping.
    Json,
    /// Human-readable, coloured on a terminal.
    Human,
}

impl LogFormat {
    pub const NAMES: [&'static str; 2] = ["json", "human"];
}

/// By hand rather than derived, so a typo reads `unknown value "xml", expected one of:
/// json, human` instead of naming Rust's enum and its "variant constructor".
impl<'de> Deserialize<'de> for LogFormat {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        match raw.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(LogFormat::Json),
            "human" => Ok(LogFormat::Human),
            _ => Err(serde::de::Error::custom(format!(
                "unknown value {raw:?}, expected one of: {}",
                LogFormat::NAMES.join(", ")
            ))),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    pub log_format: LogFormat,
    /// Fraction of root traces sampled (0.0–1.0) when OTLP export is on.
    pub trace_sample_ratio: f64,
}

/// Which repositories of an organisation or user a run covers, whether their owners
/// must opt in, where findings of repositories without issues go, and per-organisation
/// overrides (`[targets.orgs.<name>]`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetFilters {
    pub include_archived: bool,
    pub include_forks: bool,
    pub include_private: bool,
    /// Glob patterns over `owner/name`; empty means all.
    pub allow: Vec<String>,
    /// Glob patterns over `owner/name`, applied after `allow`.
    pub deny: Vec<String>,
    /// `opt-out`: every listed repository is checked unless its owners' file says
    /// `enabled: false`; `opt-in`: only those whose file says `enabled: true` or that
    /// match `opt_in`.
    #[serde(default)]
    pub mode: TargetMode,
    /// Glob patterns over `owner/name` of repositories opted in by the operators
    /// (`opt-in` mode); an owners' `enabled: false` still wins.
    #[serde(default)]
    pub opt_in: Vec<String>,
    /// `owner/name` of the repository that receives the findings of repositories with
    /// issues disabled; unset, such repositories fail their reconcile with the reason.
    #[serde(default)]
    pub issue_repo: Option<String>,
    /// Overrides for the repositories of one organisation or user, by its login.
    #[serde(default)]
    pub orgs: BTreeMap<String, OrgSettings>,
}

/// Whether repositories are checked unless they opt out, or only when they opt in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetMode {
    #[default]
    OptOut,
    OptIn,
}

/// `[targets.orgs.<login>]`: what differs for one organisation's (or user's) repositories.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OrgSettings {
    /// Overrides `targets.mode`.
    pub mode: Option<TargetMode>,
    /// Replaces `targets.opt_in`.
    pub opt_in: Option<Vec<String>>,
    /// Overrides `targets.issue_repo`.
    pub issue_repo: Option<String>,
    /// Per-policy switches and options over `[policies]`: `enabled` replaces the fleet's,
    /// options are merged key by key.
    #[serde(default)]
    pub policies: BTreeMap<String, PolicySettings>,
}

/// What applies to one repository: [`TargetFilters::for_repo`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoTargeting {
    pub mode: TargetMode,
    /// The operators opted this repository in (`opt_in` matches it).
    pub opted_in: bool,
    /// Where its findings go when it has issues disabled.
    pub issue_repo: Option<crate::domain::RepoRef>,
}

impl TargetFilters {
    /// The overrides of `owner` (logins are case-insensitive).
    fn org(&self, owner: &str) -> Option<&OrgSettings> {
        self.orgs
            .iter()
            .find(|(login, _)| login.eq_ignore_ascii_case(owner))
            .map(|(_, o)| o)
    }

    /// Mode, opt-in and central issue repository for `repo`, with its organisation's
    /// overrides applied. Values were validated at start-up; an invalid one reads as unset.
    pub fn for_repo(&self, repo: &crate::domain::RepoRef) -> RepoTargeting {
        let org = self.org(&repo.owner);
        let globs = org.and_then(|o| o.opt_in.as_ref()).unwrap_or(&self.opt_in);
        let name = repo.full_name().to_ascii_lowercase();
        let opted_in = globs.iter().any(|g| {
            globset::Glob::new(&g.to_ascii_lowercase())
                .map(|g| g.compile_matcher().is_match(&name))
                .unwrap_or(false)
        });
        let issue_repo = org
            .and_then(|o| o.issue_repo.as_deref())
            .or(self.issue_repo.as_deref())
            .and_then(parse_repo);
        RepoTargeting {
            mode: org.and_then(|o| o.mode).unwrap_or(self.mode),
            opted_in,
            issue_repo,
        }
    }
}

/// `owner/name` as a repository, by GitHub's naming rules.
fn parse_repo(text: &str) -> Option<crate::domain::RepoRef> {
    match crate::domain::Target::parse(text) {
        Ok(crate::domain::Target::Repo(r)) => Some(r),
        _ => None,
    }
}

/// Per-policy switches and options; the type lives with the policies, which the owners'
/// `.github/repo-guardian.yml` configures with the same shape.
pub use crate::policy::PolicySettings;

/// Configuration could not be loaded; the message names the key and the problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration key `{key}`: {problem}")]
    Invalid { key: &'static str, problem: String },
    /// A `[policies]` entry: an unknown policy id or an option the policy rejects; `key`
    /// is the full path, e.g. `policies.branch-protection.options.min_approving_reviews`.
    #[error("configuration key `{key}`: {problem}")]
    Policy { key: String, problem: String },
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

fn serialize_durations<S: serde::Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|d| short_duration(*d)))
}

/// A duration field read as humantime text (`30s`) and written the way the defaults
/// spell it: `#[serde(with = "duration_field")]`.
mod duration_field {
    pub(crate) use super::duration_text as serialize;
    pub(crate) use humantime_serde::deserialize;
}

pub(crate) fn duration_text<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&short_duration(*d))
}

/// A duration the way the defaults spell it: its largest whole unit (`90d`, `2m`, `1s`),
/// which reads back to the same value (humantime's own format would say `2months 29days…`).
pub fn short_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 || secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    match secs {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Secrets never leave their type: a set secret is shown as a placeholder, an unset one as
/// absent (`guardian config defaults`).
fn redacted<S: serde::Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("[redacted]"),
        None => s.serialize_none(),
    }
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
                .with_list_parse_key("github.app.installation_ids")
                .with_list_parse_key("targets.opt_in")
                .try_parsing(true)
                .source(Some(namespaced)),
        );
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// The built-in defaults alone: no file, no environment (`guardian config defaults`).
    pub fn defaults() -> Result<Self, ConfigError> {
        let settings: Settings = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .build()?
            .try_deserialize()?;
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
        self.validate_llm()?;
        if !(1..=5).contains(&self.nats.replicas) {
            return invalid("nats.replicas", "must be between 1 and 5");
        }
        if self.nats.max_deliver < 1 {
            return invalid("nats.max_deliver", "must be at least 1");
        }
        if self.nats.server_max_deliver < self.nats.max_deliver {
            return invalid(
                "nats.server_max_deliver",
                "must not be below nats.max_deliver (keep it far above)",
            );
        }
        if self.worker.stall_timeout < Duration::from_secs(1) {
            return invalid("worker.stall_timeout", "must be at least 1s");
        }
        if self.worker.sweep_interval < Duration::from_millis(100) {
            return invalid("worker.sweep_interval", "must be at least 100ms");
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
        self.validate_github_app()?;
        if self.github.label.trim().is_empty() {
            return invalid("github.label", "must not be empty");
        }
        self.validate_budget()?;
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
            ("targets.opt_in", &self.targets.opt_in),
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
        self.validate_orgs()?;
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
        let mut selection = self.policy_selection();
        // `llm-audit` runs in the review step, not in the registry of pure policies; it can
        // be switched on or off but takes no options.
        selection.enabled.remove(LLM_AUDIT_POLICY);
        if selection
            .options
            .remove(LLM_AUDIT_POLICY)
            .is_some_and(|o| !o.is_empty())
        {
            return Err(ConfigError::Policy {
                key: format!("policies.{LLM_AUDIT_POLICY}.options"),
                problem: "llm-audit takes no options (see [llm] for its limits)".into(),
            });
        }
        crate::policy::validate_selection(&selection)
            .map_err(|(key, problem)| ConfigError::Policy { key, problem })?;
        Ok(())
    }

    /// `[github.app]`: an id, a private key that parses, and no token beside it.
    fn validate_github_app(&self) -> Result<(), ConfigError> {
        let app = &self.github.app;
        let Some(app_id) = app.app_id else {
            if app.private_key.is_some()
                || app.private_key_file.is_some()
                || !app.installation_ids.is_empty()
            {
                return Err(ConfigError::Invalid {
                    key: "github.app.app_id",
                    problem: "must be set when the App's private key or installation_ids are"
                        .into(),
                });
            }
            return Ok(());
        };
        if self.github.token.is_some() {
            return Err(ConfigError::Invalid {
                key: "github.token",
                problem: "a token (github.token, GUARDIAN__GITHUB__TOKEN or GITHUB_TOKEN) and \
                          a GitHub App (github.app) are both configured: keep one"
                    .into(),
            });
        }
        if app_id == 0 {
            return Err(ConfigError::Invalid {
                key: "github.app.app_id",
                problem: "must be the App's numeric id (its settings page, \"App ID\")".into(),
            });
        }
        let key = if app.private_key_file.is_some() {
            "github.app.private_key_file"
        } else {
            "github.app.private_key"
        };
        crate::github::app::AppKey::parse(&app.private_key_pem()?)
            .map_err(|problem| ConfigError::Invalid { key, problem })?;
        if app.token_refresh_margin >= Duration::from_secs(55 * 60) {
            return Err(ConfigError::Invalid {
                key: "github.app.token_refresh_margin",
                problem: "must be below 55m (installation tokens live one hour)".into(),
            });
        }
        Ok(())
    }

    /// `[github.budget]`: every cap at least 1, a write's cost within a minute's points.
    fn validate_budget(&self) -> Result<(), ConfigError> {
        let b = &self.github.budget;
        for (key, n) in [
            ("github.budget.requests_per_minute", b.requests_per_minute),
            ("github.budget.writes_per_minute", b.writes_per_minute),
            ("github.budget.writes_per_hour", b.writes_per_hour),
            ("github.budget.max_concurrent", b.max_concurrent),
            (
                "github.budget.max_concurrent_per_worker",
                b.max_concurrent_per_worker,
            ),
            ("github.budget.batch", b.batch),
        ] {
            if n == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    problem: "must be at least 1".into(),
                });
            }
        }
        if b.requests_per_minute < 5 {
            return Err(ConfigError::Invalid {
                key: "github.budget.requests_per_minute",
                problem: format!(
                    "must be at least 5 (one write costs 5 points), got {}",
                    b.requests_per_minute
                ),
            });
        }
        if b.window < Duration::from_millis(100) {
            return Err(ConfigError::Invalid {
                key: "github.budget.window",
                problem: "must be at least 100ms".into(),
            });
        }
        Ok(())
    }

    /// `targets.issue_repo` and every `[targets.orgs.<login>]`; errors name the full key.
    fn validate_orgs(&self) -> Result<(), ConfigError> {
        let invalid = |key: String, problem: String| Err(ConfigError::Policy { key, problem });
        let repo_ok = |text: &str| match crate::domain::Target::parse(text) {
            Ok(crate::domain::Target::Repo(_)) => Ok(()),
            Ok(_) => Err("expected OWNER/REPO".to_owned()),
            Err(e) => Err(e.to_string()),
        };
        if let Some(repo) = &self.targets.issue_repo
            && let Err(problem) = repo_ok(repo)
        {
            return invalid("targets.issue_repo".into(), problem);
        }
        for (login, org) in &self.targets.orgs {
            let key = |rest: &str| format!("targets.orgs.{login}.{rest}");
            if let Err(e) = crate::domain::Target::parse(&format!("org:{login}")) {
                return invalid(format!("targets.orgs.{login}"), e.to_string());
            }
            if let Some(repo) = &org.issue_repo
                && let Err(problem) = repo_ok(repo)
            {
                return invalid(key("issue_repo"), problem);
            }
            for (n, g) in org.opt_in.iter().flatten().enumerate() {
                if let Err(e) = globset::Glob::new(g) {
                    return invalid(
                        format!("{}[{n}]", key("opt_in")),
                        format!("bad glob {g:?}: {e}"),
                    );
                }
            }
            let selection = crate::policy::Selection {
                enabled: org
                    .policies
                    .iter()
                    .filter_map(|(id, p)| p.enabled.map(|e| (id.clone(), e)))
                    .collect(),
                options: org
                    .policies
                    .iter()
                    .map(|(id, p)| (id.clone(), p.options.clone()))
                    .collect(),
                ..Default::default()
            };
            crate::policy::validate_selection(&selection).map_err(|(k, problem)| {
                ConfigError::Policy {
                    key: format!("targets.orgs.{login}.{k}"),
                    problem,
                }
            })?;
        }
        Ok(())
    }

    fn validate_llm(&self) -> Result<(), ConfigError> {
        let llm = &self.llm;
        let invalid = |key, problem: String| Err(ConfigError::Invalid { key, problem });
        let blank = |v: &Option<String>| v.as_deref().is_none_or(|s| s.trim().is_empty());
        if let Some(url) = llm.api_url.as_deref().filter(|u| !u.trim().is_empty()) {
            match url::Url::parse(url) {
                Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                _ => return invalid("llm.api_url", "must be an http(s) URL".into()),
            }
            if blank(&llm.model) {
                return invalid("llm.model", "must be set when llm.api_url is".into());
            }
        } else if !blank(&llm.model) {
            return invalid("llm.api_url", "must be set when llm.model is".into());
        }
        if llm.timeout < Duration::from_millis(100) {
            return invalid("llm.timeout", "must be at least 100ms".into());
        }
        for (key, value, min, max) in [
            ("llm.concurrency", llm.concurrency, 1, 256),
            ("llm.max_input_chars", llm.max_input_chars, 200, 1_000_000),
            ("llm.max_output_chars", llm.max_output_chars, 200, 60_000),
            ("llm.max_audit_findings", llm.max_audit_findings, 0, 100),
            ("llm.max_retries", llm.max_retries as usize, 0, 10),
            (
                "llm.max_completion_tokens",
                llm.max_completion_tokens as usize,
                16,
                1_000_000,
            ),
        ] {
            if !(min..=max).contains(&value) {
                return invalid(key, format!("must be between {min} and {max}, got {value}"));
            }
        }
        Ok(())
    }

    /// The policies for the repositories of `owner`: `[policies]` with the overrides of
    /// `[targets.orgs.<owner>.policies]` (its `enabled` wins, its options are merged over
    /// the fleet's key by key). `None`: the fleet's alone.
    pub fn policy_selection_for(&self, owner: Option<&str>) -> crate::policy::Selection {
        let mut selection = self.policy_selection();
        let Some(org) = owner.and_then(|o| self.targets.org(o)) else {
            return selection;
        };
        for (id, p) in &org.policies {
            if let Some(enabled) = p.enabled {
                selection.enabled.insert(id.clone(), enabled);
            }
            selection
                .options
                .entry(id.clone())
                .or_default()
                .extend(p.options.clone());
        }
        selection
    }

    /// The policies switched on or off and their options, as configured (`[policies]`).
    pub fn policy_selection(&self) -> crate::policy::Selection {
        crate::policy::Selection {
            enabled: self
                .policies
                .iter()
                .filter_map(|(id, p)| p.enabled.map(|e| (id.clone(), e)))
                .collect(),
            options: self
                .policies
                .iter()
                .map(|(id, p)| (id.clone(), p.options.clone()))
                .collect(),
            ..Default::default()
        }
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
            ("GUARDIAN__TARGETS__OPT_IN", "acme/web-*,acme/api"),
            ("GUARDIAN__TARGETS__MODE", "opt-in"),
        ])
        .unwrap();
        assert_eq!(s.targets.opt_in, ["acme/web-*", "acme/api"]);
        assert_eq!(s.targets.mode, TargetMode::OptIn);
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
    fn llm_settings_go_together_and_name_the_key() {
        let err = |vars: &[(&str, &str)]| load(vars).unwrap_err().to_string();
        assert!(!load(&[]).unwrap().llm.configured());
        let s = load(&[
            ("GUARDIAN__LLM__API_URL", "http://127.0.0.1:11434/v1"),
            ("GUARDIAN__LLM__MODEL", "llama3.2"),
            ("GUARDIAN__LLM__MAX_TOKENS_PER_DAY", "50000"),
            ("GUARDIAN__LLM__TIMEOUT", "90s"),
        ])
        .unwrap();
        assert!(s.llm.configured());
        assert_eq!(s.llm.max_tokens_per_day, 50_000);
        assert_eq!(s.llm.timeout, Duration::from_secs(90));
        assert!(err(&[("GUARDIAN__LLM__API_URL", "http://x/v1")]).contains("llm.model"));
        assert!(err(&[("GUARDIAN__LLM__MODEL", "m")]).contains("llm.api_url"));
        assert!(
            err(&[
                ("GUARDIAN__LLM__API_URL", "ftp://x"),
                ("GUARDIAN__LLM__MODEL", "m")
            ])
            .contains("llm.api_url")
        );
        assert!(err(&[("GUARDIAN__LLM__CONCURRENCY", "0")]).contains("llm.concurrency"));
        let off = load(&[("GUARDIAN__POLICIES__LLM-AUDIT__ENABLED", "false")]).unwrap();
        assert_eq!(
            off.policy_selection().enabled.get(LLM_AUDIT_POLICY),
            Some(&false)
        );
    }

    #[test]
    fn policy_ids_and_options_are_validated_at_start_up() {
        let file = |toml: &str| {
            let dir = tempfile::tempdir().expect("temporary directory");
            let path = dir.path().join("guardian.toml");
            std::fs::write(&path, toml).expect("write");
            Settings::load_from(Some(&path), std::iter::empty()).map(|s| s.policy_selection())
        };
        let err = file("[policies.branch-protection.options]\nmin_approving_reviews = \"two\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`policies.branch-protection.options.min_approving_reviews`")
                && err.contains("expected an integer"),
            "{err}"
        );
        let err = file("[policies.no-such-policy]\nenabled = true\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`policies.no-such-policy`: unknown policy"),
            "{err}"
        );
        let err = file("[policies.readme.options]\nmin_size = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`policies.readme.options.min_size`"), "{err}");
        let ok = file("[policies.branch-protection.options]\nmin_approving_reviews = 2\n")
            .expect("valid options load");
        assert_eq!(
            ok.options["branch-protection"]["min_approving_reviews"],
            serde_json::json!(2)
        );
        let err = load(&[("GUARDIAN__POLICIES__README__ENABLED", "maybe")]);
        assert!(err.is_err());
    }

    #[test]
    fn a_github_app_is_configured_from_the_environment_or_a_file() {
        let key = include_str!("../tests/fixtures/github-app-test-key.pem");
        let s = load(&[
            ("GUARDIAN__GITHUB__APP__APP_ID", "42"),
            ("GUARDIAN__GITHUB__APP__PRIVATE_KEY", key),
            ("GUARDIAN__GITHUB__APP__INSTALLATION_IDS", "7,8"),
        ])
        .unwrap();
        let (id, app) = s.github.app().unwrap();
        assert_eq!((id, app.installation_ids.clone()), (42, vec![7, 8]));
        assert_eq!(app.token_refresh_margin, Duration::from_secs(300));
        let debug = format!("{s:?}");
        assert!(!debug.contains("PRIVATE KEY-----\nMII"), "{debug}");
        // One line with escaped newlines, as some secret stores hand it over.
        let folded = key.replace('\n', "\\n");
        let s = load(&[
            ("GUARDIAN__GITHUB__APP__APP_ID", "42"),
            ("GUARDIAN__GITHUB__APP__PRIVATE_KEY", &folded),
            ("GUARDIAN__GITHUB__APP__INSTALLATION_IDS", "7"),
        ])
        .unwrap();
        assert_eq!(s.github.app.installation_ids, vec![7]);
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("app.pem");
        std::fs::write(&pem, key).unwrap();
        let s = load(&[
            ("GUARDIAN__GITHUB__APP__APP_ID", "42"),
            (
                "GUARDIAN__GITHUB__APP__PRIVATE_KEY_FILE",
                pem.to_str().unwrap(),
            ),
        ])
        .unwrap();
        assert!(s.github.app().is_some());
        assert!(load(&[]).unwrap().github.app().is_none());
        let e = load(&[("GUARDIAN__GITHUB__APP__PRIVATE_KEY", key)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`github.app.app_id`"), "{e}");
    }

    #[test]
    fn github_app_mistakes_name_the_key() {
        let key = include_str!("../tests/fixtures/github-app-test-key.pem");
        let err = |vars: &[(&str, &str)]| load(vars).unwrap_err().to_string();
        let id = ("GUARDIAN__GITHUB__APP__APP_ID", "42");
        let e = err(&[id, ("GUARDIAN__GITHUB__APP__PRIVATE_KEY", "ghp_oops")]);
        assert!(
            e.contains("`github.app.private_key`") && e.contains("not a PEM private key"),
            "{e}"
        );
        assert!(!e.contains("ghp_oops"), "{e}");
        assert!(err(&[id]).contains("private key is missing"));
        let e = err(&[
            id,
            (
                "GUARDIAN__GITHUB__APP__PRIVATE_KEY_FILE",
                "/nonexistent/app.pem",
            ),
        ]);
        assert!(e.contains("`github.app.private_key_file`"), "{e}");
        let e = err(&[
            id,
            ("GUARDIAN__GITHUB__APP__PRIVATE_KEY", key),
            ("GITHUB_TOKEN", "ghp_x"),
        ]);
        assert!(
            e.contains("`github.token`") && e.contains("keep one"),
            "{e}"
        );
        let e = err(&[
            ("GUARDIAN__GITHUB__APP__APP_ID", "0"),
            ("GUARDIAN__GITHUB__APP__PRIVATE_KEY", key),
        ]);
        assert!(e.contains("`github.app.app_id`"), "{e}");
        let e = err(&[
            id,
            ("GUARDIAN__GITHUB__APP__PRIVATE_KEY", key),
            ("GUARDIAN__GITHUB__APP__INSTALLATION_IDS", "7,x"),
        ]);
        assert!(e.contains("installation_ids") && e.contains("\"x\""), "{e}");
        let e = err(&[("GUARDIAN__GITHUB__APP__INSTALLATION_IDS", "7")]);
        assert!(e.contains("`github.app.app_id`"), "{e}");
        let e = err(&[
            id,
            ("GUARDIAN__GITHUB__APP__PRIVATE_KEY", key),
            ("GUARDIAN__GITHUB__APP__TOKEN_REFRESH_MARGIN", "1h"),
        ]);
        assert!(e.contains("`github.app.token_refresh_margin`"), "{e}");
    }

    #[test]
    fn organisations_override_mode_issue_repository_and_policies() {
        let file = |toml: &str| {
            let dir = tempfile::tempdir().expect("temporary directory");
            let path = dir.path().join("guardian.toml");
            std::fs::write(&path, toml).expect("write");
            Settings::load_from(Some(&path), std::iter::empty())
        };
        let s = file(
            "[targets]\nmode = \"opt-in\"\nopt_in = [\"acme/web-*\"]\nissue_repo = \"acme/guardian-issues\"\n\n\
             [policies.stale-pull-requests]\nenabled = true\noptions = { days = 60 }\n\n\
             [targets.orgs.Octo]\nmode = \"opt-out\"\nissue_repo = \"octo/issues\"\n\n\
             [targets.orgs.Octo.policies.stale-pull-requests.options]\nignore_drafts = true\n",
        )
        .expect("valid settings");
        let repo = |o: &str, n: &str| crate::domain::RepoRef {
            owner: o.into(),
            name: n.into(),
        };
        let acme = s.targets.for_repo(&repo("acme", "web-shop"));
        assert_eq!(acme.mode, TargetMode::OptIn);
        assert!(acme.opted_in);
        assert_eq!(
            acme.issue_repo.map(|r| r.full_name()).as_deref(),
            Some("acme/guardian-issues")
        );
        assert!(!s.targets.for_repo(&repo("acme", "api")).opted_in);
        let octo = s.targets.for_repo(&repo("octo", "app"));
        assert_eq!(octo.mode, TargetMode::OptOut);
        assert_eq!(
            octo.issue_repo.map(|r| r.full_name()).as_deref(),
            Some("octo/issues")
        );
        let options = &s.policy_selection_for(Some("octo")).options["stale-pull-requests"];
        assert_eq!(options["days"], serde_json::json!(60));
        assert_eq!(options["ignore_drafts"], serde_json::json!(true));
        assert!(
            !s.policy_selection_for(None).options["stale-pull-requests"]
                .contains_key("ignore_drafts")
        );

        let err = |toml: &str| file(toml).unwrap_err().to_string();
        assert!(err("[targets]\nmode = \"sometimes\"\n").contains("mode"));
        assert!(err("[targets]\nissue_repo = \"not a repo\"\n").contains("`targets.issue_repo`"));
        let e = err("[targets.orgs.acme]\nissue_repo = \"org:acme\"\n");
        assert!(
            e.contains("`targets.orgs.acme.issue_repo`") && e.contains("OWNER/REPO"),
            "{e}"
        );
        let e = err("[targets.orgs.acme.policies.stale-pull-requests.options]\ndays = 0\n");
        assert!(
            e.contains("`targets.orgs.acme.policies.stale-pull-requests.options.days`"),
            "{e}"
        );
        let e = err("[targets.orgs.acme]\nmodes = \"opt-in\"\n");
        assert!(e.contains("modes"), "{e}");
    }

    #[test]
    fn durations_are_written_in_their_largest_whole_unit() {
        for (d, text) in [
            (Duration::from_secs(90 * 86_400), "90d"),
            (Duration::from_secs(7_200), "2h"),
            (Duration::from_secs(600), "10m"),
            (Duration::from_secs(25), "25s"),
            (Duration::from_millis(1_500), "1500ms"),
        ] {
            assert_eq!(short_duration(d), text);
            assert_eq!(humantime::parse_duration(text).unwrap(), d);
        }
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
