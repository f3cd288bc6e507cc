//! The Prometheus metrics of DESIGN.md §6, in one process-wide registry served on `/metrics`.
//!
//! Names, types and labels are a contract with the dashboards and alert rules under
//! `deploy/`; `docs/operations/monitoring.md` is the reference for operators. Every label
//! value known in advance is initialised when the registry is built, so each metric family
//! shows up on a worker's first scrape and `rate()` sees the first increment instead of a
//! series that appears out of nowhere. Only the LLM model is not known in advance: its
//! series appear when [`Metrics::register_llm_model`] or [`Metrics::llm_tokens`] first names
//! it. Recording goes through the helper methods, which keep label values consistent; the
//! raw vectors stay public for the rare case a helper does not cover.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// The workflow steps, as used in the `step` label.
pub const STEPS: [&str; 4] = ["plan", "scan", "review", "reconcile"];
/// Final run statuses, as used in `guardian_run_duration_seconds{outcome}`.
pub const RUN_OUTCOMES: [&str; 4] = ["succeeded", "partial", "failed", "stalled"];
/// Step outcomes: `ok` (acked), `retry` (nak with delay), `failed` (terminated and
/// dead-lettered), as used in `guardian_step_duration_seconds{outcome}`.
pub const STEP_OUTCOMES: [&str; 3] = ["ok", "retry", "failed"];
/// Issue actions, as used in `guardian_issues_total{action}`.
pub const ISSUE_ACTIONS: [&str; 4] = ["created", "updated", "reopened", "closed"];
/// Error classes, as used in `guardian_errors_total{kind}`.
pub const ERROR_KINDS: [&str; 6] = ["github", "llm", "nats", "decode", "config", "policy"];
/// Values of `guardian_github_requests_total{status}`: the class of the HTTP status, or
/// `error` when no response arrived (connection failure, timeout).
pub const GITHUB_STATUSES: [&str; 5] = ["2xx", "3xx", "4xx", "5xx", "error"];
/// The GitHub rate-limit resources the fleet spends (`x-ratelimit-resource`).
pub const RATE_LIMIT_RESOURCES: [&str; 1] = ["core"];
/// What a GitHub request waited for, as used in `guardian_github_budget_wait_seconds{kind}`:
/// points per minute, the write spacing and content-creation caps, a place among the
/// requests in flight, the primary limit's reserve.
pub const BUDGET_WAIT_KINDS: [&str; 4] = ["request", "write", "concurrency", "primary"];
/// Kinds of LLM tokens, as used in `guardian_llm_tokens_total{kind}`.
pub const TOKEN_KINDS: [&str; 2] = ["prompt", "completion"];

/// Value of `guardian_github_rate_limit_remaining` before the first GitHub response has
/// told the real budget. Zero would read as "budget exhausted" and page someone, so the
/// alert rules and dashboards only consider values `>= 0`.
pub const RATE_LIMIT_UNKNOWN: i64 = -1;

/// Run durations span seconds (one small repository) to hours (a large organisation
/// throttled by the GitHub budget).
const RUN_BUCKETS: [f64; 14] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0,
    28800.0,
];
/// Step durations span milliseconds (a plan answered from the ETag cache) to minutes (a
/// scan of a large repository, an LLM review).
const STEP_BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];
/// Budget waits span a few milliseconds (a place in flight) to `github.budget.max_wait`
/// (30 s by default); longer ones are deferrals, not waits.
const BUDGET_WAIT_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// How a GitHub response relates to the shared ETag cache (`guardian_http`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Nothing cached, or the cache was bypassed: a full response was fetched.
    Miss,
    /// A conditional request was answered `304 Not Modified`: the cached body was reused
    /// (and GitHub did not charge the rate limit).
    Revalidated,
    /// Served from the cache without asking GitHub at all.
    Hit,
}

impl CacheOutcome {
    /// The `cache` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Miss => "miss",
            CacheOutcome::Revalidated => "revalidated",
            CacheOutcome::Hit => "hit",
        }
    }

    const ALL: [CacheOutcome; 3] = [
        CacheOutcome::Miss,
        CacheOutcome::Revalidated,
        CacheOutcome::Hit,
    ];
}

/// The `status` label of `guardian_github_requests_total` for an HTTP status code.
///
/// Classes rather than exact codes keep the series count fixed and known in advance; a
/// revalidation (`304`) is already told apart by `cache="revalidated"`. Status `0` stands
/// for "no response" (connection failure, timeout).
pub fn github_status_class(status: u16) -> &'static str {
    match status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "error",
    }
}

/// Every metric the fleet exports.
pub struct Metrics {
    /// The registry `/metrics` encodes; separate from the `prometheus` crate's default
    /// registry so that nothing a dependency registers leaks into the contract.
    pub registry: Registry,
    /// `guardian_run_duration_seconds{outcome}`: from the trigger to the final status.
    pub run_duration: HistogramVec,
    /// `guardian_step_duration_seconds{step,outcome}`: one step message handled.
    pub step_duration: HistogramVec,
    /// `guardian_llm_tokens_total{model,kind}`: tokens the LLM reported as used.
    pub llm_tokens: IntCounterVec,
    /// `guardian_issues_total{action}`: writes to GitHub issues (not dry-run plans).
    pub issues: IntCounterVec,
    /// `guardian_errors_total{kind}`: errors by class, retried or not.
    pub errors: IntCounterVec,
    /// `guardian_github_requests_total{status,cache}`: GitHub REST requests.
    pub github_requests: IntCounterVec,
    /// `guardian_github_rate_limit_remaining{resource}`: last seen `x-ratelimit-remaining`.
    pub github_rate_limit_remaining: IntGaugeVec,
    /// `guardian_github_budget_wait_seconds{kind}`: time a GitHub request waited for the
    /// fleet's budget (only requests that waited are observed).
    pub github_budget_wait: HistogramVec,
    /// `guardian_queue_pending{step}`: messages waiting in each step's consumer.
    pub queue_pending: IntGaugeVec,
    /// `guardian_steps_inflight{step}`: steps this worker is handling right now.
    pub steps_inflight: IntGaugeVec,
    /// `guardian_build_info{version,revision}`: always 1; tells which build runs.
    pub build_info: IntGaugeVec,
    /// `guardian_webhooks_total{event,outcome}`: GitHub webhook deliveries received. Its
    /// series are created by the receiver when it is mounted (`webhook::router`).
    pub webhooks: IntCounterVec,
}

/// The process-wide metrics, created (with every known series at zero) on first use.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// The crate version and the source revision the binary was built from (`GUARDIAN_REVISION`
/// in the build environment, set by the Nix build and CI).
fn build_labels() -> [&'static str; 2] {
    [
        env!("CARGO_PKG_VERSION"),
        option_env!("GUARDIAN_REVISION").unwrap_or("unknown"),
    ]
}

impl Metrics {
    /// Builds and registers every metric. The definitions are constants, so a failure here
    /// is a programming error caught by the unit tests, not a runtime condition.
    #[allow(clippy::expect_used)]
    pub fn new() -> Self {
        let registry = Registry::new();
        fn register<M: prometheus::core::Collector + Clone + 'static>(
            registry: &Registry,
            metric: prometheus::Result<M>,
        ) -> M {
            let metric = metric.expect("valid metric definition");
            registry
                .register(Box::new(metric.clone()))
                .expect("metric names are unique");
            metric
        }
        let histogram = |name: &str, help: &str, buckets: &[f64], labels: &[&str]| {
            register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                    labels,
                ),
            )
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(&registry, IntCounterVec::new(Opts::new(name, help), labels))
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            register(&registry, IntGaugeVec::new(Opts::new(name, help), labels))
        };

        let metrics = Metrics {
            run_duration: histogram(
                "guardian_run_duration_seconds",
                "Time from a run's trigger to its final status, by final status (succeeded, partial, failed).",
                &RUN_BUCKETS,
                &["outcome"],
            ),
            step_duration: histogram(
                "guardian_step_duration_seconds",
                "Time spent handling one workflow step message, by step and outcome (ok = acked, retry = redelivered later, failed = dead-lettered).",
                &STEP_BUCKETS,
                &["step", "outcome"],
            ),
            llm_tokens: counter(
                "guardian_llm_tokens_total",
                "LLM tokens used by reviews, as reported by the LLM, by model and kind (prompt, completion).",
                &["model", "kind"],
            ),
            issues: counter(
                "guardian_issues_total",
                "GitHub issues written by reconcile, by action (created, updated, reopened, closed); dry runs write nothing and count nothing.",
                &["action"],
            ),
            errors: counter(
                "guardian_errors_total",
                "Errors by class (github, llm, nats, decode, config, policy), whether retried or dead-lettered.",
                &["kind"],
            ),
            github_requests: counter(
                "guardian_github_requests_total",
                "GitHub REST API requests by status class (2xx, 3xx, 4xx, 5xx, error = no response) and ETag cache outcome (miss, revalidated, hit).",
                &["status", "cache"],
            ),
            github_rate_limit_remaining: gauge(
                "guardian_github_rate_limit_remaining",
                "Requests left in the current GitHub rate-limit window as last reported by GitHub, by resource; -1 until the first response.",
                &["resource"],
            ),
            github_budget_wait: histogram(
                "guardian_github_budget_wait_seconds",
                "Time a GitHub request waited in its worker for the fleet's shared budget, by what it waited for (request = points per minute, write = write spacing and content-creation caps, concurrency = a place among the requests in flight, primary = the hourly limit's reserve); requests that did not wait are not observed.",
                &BUDGET_WAIT_BUCKETS,
                &["kind"],
            ),
            queue_pending: gauge(
                "guardian_queue_pending",
                "Messages waiting for a worker in each step's JetStream consumer, as last read by this worker.",
                &["step"],
            ),
            steps_inflight: gauge(
                "guardian_steps_inflight",
                "Step messages this worker is handling right now, by step.",
                &["step"],
            ),
            build_info: gauge(
                "guardian_build_info",
                "Always 1; the labels tell the crate version and source revision of the running build.",
                &["version", "revision"],
            ),
            webhooks: counter(
                "guardian_webhooks_total",
                "GitHub webhook deliveries by event (other = not handled) and outcome (queued, coalesced, duplicate, ignored, unauthorized, too_large, invalid, error).",
                &["event", "outcome"],
            ),
            registry,
        };
        metrics.initialise_known_series();
        metrics
    }

    /// Creates every series whose label values are known in advance, at zero.
    fn initialise_known_series(&self) {
        for outcome in RUN_OUTCOMES {
            self.run_duration.with_label_values(&[outcome]);
        }
        for step in STEPS {
            for outcome in STEP_OUTCOMES {
                self.step_duration.with_label_values(&[step, outcome]);
            }
            self.queue_pending.with_label_values(&[step]).set(0);
            self.steps_inflight.with_label_values(&[step]).set(0);
        }
        for action in ISSUE_ACTIONS {
            self.issues.with_label_values(&[action]);
        }
        for kind in ERROR_KINDS {
            self.errors.with_label_values(&[kind]);
        }
        for status in GITHUB_STATUSES {
            for cache in CacheOutcome::ALL {
                self.github_requests
                    .with_label_values(&[status, cache.as_str()]);
            }
        }
        for resource in RATE_LIMIT_RESOURCES {
            self.github_rate_limit_remaining
                .with_label_values(&[resource])
                .set(RATE_LIMIT_UNKNOWN);
        }
        for kind in BUDGET_WAIT_KINDS {
            self.github_budget_wait.with_label_values(&[kind]);
        }
        self.build_info.with_label_values(&build_labels()).set(1);
    }

    /// Records one handled step message: `step` is one of [`STEPS`], `outcome` one of
    /// [`STEP_OUTCOMES`] (`failed` means terminated and dead-lettered).
    pub fn observe_step(&self, step: &str, outcome: &str, duration: Duration) {
        self.step_duration
            .with_label_values(&[step, outcome])
            .observe(duration.as_secs_f64());
    }

    /// Records a finished run: `outcome` is its final status, one of [`RUN_OUTCOMES`].
    pub fn observe_run(&self, outcome: &str, duration: Duration) {
        self.run_duration
            .with_label_values(&[outcome])
            .observe(duration.as_secs_f64());
    }

    /// Counts one issue write: `action` is one of [`ISSUE_ACTIONS`].
    pub fn issue(&self, action: &str) {
        self.issues.with_label_values(&[action]).inc();
    }

    /// Counts one error: `kind` is one of [`ERROR_KINDS`].
    pub fn error(&self, kind: &str) {
        self.errors.with_label_values(&[kind]).inc();
    }

    /// Counts one GitHub request by its HTTP status (`0` when no response arrived) and its
    /// cache outcome.
    pub fn record_github_request(&self, status: u16, cache: CacheOutcome) {
        self.github_requests
            .with_label_values(&[github_status_class(status), cache.as_str()])
            .inc();
    }

    /// Records the budget GitHub reported (`x-ratelimit-remaining`) for `resource`
    /// (`x-ratelimit-resource`, usually `core`).
    pub fn set_github_rate_limit_remaining(&self, resource: &str, remaining: i64) {
        self.github_rate_limit_remaining
            .with_label_values(&[resource])
            .set(remaining);
    }

    /// Records one wait for the GitHub budget: `kind` is one of [`BUDGET_WAIT_KINDS`].
    pub fn observe_budget_wait(&self, kind: &str, waited: Duration) {
        self.github_budget_wait
            .with_label_values(&[kind])
            .observe(waited.as_secs_f64());
    }

    /// Counts one webhook delivery.
    pub fn webhook(&self, event: &str, outcome: &str) {
        self.webhooks.with_label_values(&[event, outcome]).inc();
    }

    /// Creates the token series of `model` at zero; called when the LLM client is
    /// configured so the series exist before the first review.
    pub fn register_llm_model(&self, model: &str) {
        for kind in TOKEN_KINDS {
            self.llm_tokens.with_label_values(&[model, kind]);
        }
    }

    /// Counts the tokens one LLM call used.
    pub fn llm_tokens(&self, model: &str, prompt: u64, completion: u64) {
        self.llm_tokens
            .with_label_values(&[model, "prompt"])
            .inc_by(prompt);
        self.llm_tokens
            .with_label_values(&[model, "completion"])
            .inc_by(completion);
    }

    /// Sets the backlog of `step` (pending messages of its consumer).
    pub fn set_queue_pending(&self, step: &str, pending: u64) {
        self.queue_pending
            .with_label_values(&[step])
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    /// Marks one `step` message as being handled until the returned guard is dropped, so
    /// the gauge comes down on every path out of the handler, panics included.
    pub fn step_inflight(&self, step: &str) -> InflightGuard {
        let gauge = self.steps_inflight.with_label_values(&[step]);
        gauge.inc();
        InflightGuard { gauge }
    }

    /// Text exposition format for `/metrics`.
    pub fn encode(&self) -> String {
        let mut buf = String::new();
        // Encoding into a String only fails on invalid metric families, which the
        // registry already refused at registration; an empty page is the safe fallback.
        let _ = prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut buf);
        buf
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Decrements `guardian_steps_inflight` for its step when dropped.
#[must_use = "the step counts as in flight only while the guard lives"]
pub struct InflightGuard {
    gauge: prometheus::IntGauge,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    /// A metric family's sample lines in an exposition page.
    fn samples<'a>(page: &'a str, name: &str) -> Vec<&'a str> {
        page.lines()
            .filter(|line| !line.starts_with('#') && line.starts_with(name))
            .collect()
    }

    #[test]
    fn every_family_appears_on_the_first_scrape() {
        let page = Metrics::new().encode();
        for family in [
            "guardian_run_duration_seconds",
            "guardian_step_duration_seconds",
            "guardian_issues_total",
            "guardian_errors_total",
            "guardian_github_requests_total",
            "guardian_github_rate_limit_remaining",
            "guardian_github_budget_wait_seconds",
            "guardian_queue_pending",
            "guardian_steps_inflight",
            "guardian_build_info",
        ] {
            assert!(
                page.contains(&format!("# TYPE {family} ")),
                "{family} missing from:\n{page}"
            );
            assert!(!samples(&page, family).is_empty(), "{family} has no series");
        }
        // Models are unknown until the LLM client names one.
        assert!(samples(&page, "guardian_llm_tokens_total").is_empty());
        assert_eq!(
            samples(&page, "guardian_step_duration_seconds_count").len(),
            STEPS.len() * STEP_OUTCOMES.len()
        );
    }

    #[test]
    fn helpers_use_the_contract_label_values() {
        let m = Metrics::new();
        m.observe_step("scan", "ok", Duration::from_millis(30));
        m.observe_run("partial", Duration::from_secs(90));
        m.issue("reopened");
        m.error("github");
        m.record_github_request(304, CacheOutcome::Revalidated);
        m.record_github_request(502, CacheOutcome::Miss);
        m.record_github_request(0, CacheOutcome::Miss);
        m.set_github_rate_limit_remaining("core", 4321);
        m.llm_tokens("llama3", 120, 30);
        m.set_queue_pending("scan", 7);
        {
            let _busy = m.step_inflight("review");
            assert_eq!(m.steps_inflight.with_label_values(&["review"]).get(), 1);
        }
        let page = m.encode();
        for line in [
            r#"guardian_step_duration_seconds_count{outcome="ok",step="scan"} 1"#,
            r#"guardian_run_duration_seconds_count{outcome="partial"} 1"#,
            r#"guardian_issues_total{action="reopened"} 1"#,
            r#"guardian_errors_total{kind="github"} 1"#,
            r#"guardian_github_requests_total{cache="revalidated",status="3xx"} 1"#,
            r#"guardian_github_requests_total{cache="miss",status="5xx"} 1"#,
            r#"guardian_github_requests_total{cache="miss",status="error"} 1"#,
            r#"guardian_github_rate_limit_remaining{resource="core"} 4321"#,
            r#"guardian_llm_tokens_total{kind="prompt",model="llama3"} 120"#,
            r#"guardian_llm_tokens_total{kind="completion",model="llama3"} 30"#,
            r#"guardian_queue_pending{step="scan"} 7"#,
            r#"guardian_steps_inflight{step="review"} 0"#,
        ] {
            assert!(page.contains(line), "missing `{line}` in:\n{page}");
        }
    }

    #[test]
    fn rate_limit_starts_unknown_not_exhausted() {
        let page = Metrics::new().encode();
        assert!(page.contains(r#"guardian_github_rate_limit_remaining{resource="core"} -1"#));
    }

    #[test]
    fn build_info_names_the_version() {
        let page = Metrics::new().encode();
        let expected = format!(
            r#"guardian_build_info{{revision="{}",version="{}"}} 1"#,
            build_labels()[1],
            env!("CARGO_PKG_VERSION")
        );
        assert!(page.contains(&expected), "missing `{expected}` in:\n{page}");
    }

    /// `promtool check metrics` is the contract's lint (DESIGN §6). Without promtool the
    /// test fails rather than passing unnoticed; `GUARDIAN_SKIP_PROMTOOL=1` is the explicit
    /// opt-out for machines that cannot install it.
    #[test]
    fn exposition_passes_promtool_check_metrics() {
        let m = Metrics::new();
        m.llm_tokens("gpt-4o-mini", 1, 1);
        m.observe_step("plan", "ok", Duration::from_millis(2));
        let page = m.encode();

        let child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if std::env::var("GUARDIAN_SKIP_PROMTOOL").as_deref() == Ok("1") {
                    eprintln!("SKIPPED: promtool not found and GUARDIAN_SKIP_PROMTOOL=1");
                    return;
                }
                panic!(
                    "promtool is not on PATH: install it (Debian: `apt-get install -y prometheus`) \
                     or set GUARDIAN_SKIP_PROMTOOL=1 to skip this check explicitly"
                );
            }
            Err(e) => panic!("could not start promtool: {e}"),
        };
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(page.as_bytes())
            .expect("write to promtool");
        let out = child.wait_with_output().expect("promtool finishes");
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && report.trim().is_empty(),
            "promtool check metrics complained:\n{report}\n--- page ---\n{page}"
        );
    }
}
