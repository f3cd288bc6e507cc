//! The Prometheus metrics of DESIGN.md §6, in one registry served on `/metrics`.

use std::sync::OnceLock;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Every metric the fleet exports. Label values known in advance are initialised at zero.
pub struct Metrics {
    pub registry: Registry,
    /// `guardian_run_duration_seconds{outcome}`
    pub run_duration: HistogramVec,
    /// `guardian_step_duration_seconds{step,outcome}`
    pub step_duration: HistogramVec,
    /// `guardian_llm_tokens_total{model,kind}`
    pub llm_tokens: IntCounterVec,
    /// `guardian_issues_total{action}`
    pub issues: IntCounterVec,
    /// `guardian_errors_total{kind}`
    pub errors: IntCounterVec,
    /// `guardian_github_requests_total{status,cache}`
    pub github_requests: IntCounterVec,
    /// `guardian_github_rate_limit_remaining{resource}`
    pub github_rate_limit_remaining: IntGaugeVec,
    /// `guardian_queue_pending{step}`
    pub queue_pending: IntGaugeVec,
    /// `guardian_steps_inflight{step}`
    pub steps_inflight: IntGaugeVec,
    /// `guardian_build_info{version,revision}`
    pub build_info: IntGaugeVec,
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    #[allow(clippy::expect_used)]
    fn new() -> Self {
        let registry = Registry::new();
        macro_rules! reg {
            ($m:expr) => {{
                let m = $m.expect("metric definition");
                registry.register(Box::new(m.clone())).expect("unique metric");
                m
            }};
        }
        Metrics {
            run_duration: reg!(HistogramVec::new(
                HistogramOpts::new("guardian_run_duration_seconds", "Run duration"),
                &["outcome"]
            )),
            step_duration: reg!(HistogramVec::new(
                HistogramOpts::new("guardian_step_duration_seconds", "Step duration"),
                &["step", "outcome"]
            )),
            llm_tokens: reg!(IntCounterVec::new(
                Opts::new("guardian_llm_tokens_total", "LLM tokens"),
                &["model", "kind"]
            )),
            issues: reg!(IntCounterVec::new(
                Opts::new("guardian_issues_total", "Issue actions"),
                &["action"]
            )),
            errors: reg!(IntCounterVec::new(
                Opts::new("guardian_errors_total", "Errors"),
                &["kind"]
            )),
            github_requests: reg!(IntCounterVec::new(
                Opts::new("guardian_github_requests_total", "GitHub requests"),
                &["status", "cache"]
            )),
            github_rate_limit_remaining: reg!(IntGaugeVec::new(
                Opts::new("guardian_github_rate_limit_remaining", "GitHub budget"),
                &["resource"]
            )),
            queue_pending: reg!(IntGaugeVec::new(
                Opts::new("guardian_queue_pending", "Pending"),
                &["step"]
            )),
            steps_inflight: reg!(IntGaugeVec::new(
                Opts::new("guardian_steps_inflight", "In flight"),
                &["step"]
            )),
            build_info: reg!(IntGaugeVec::new(
                Opts::new("guardian_build_info", "Build"),
                &["version", "revision"]
            )),
            registry,
        }
    }

    /// Text exposition format for `/metrics`.
    pub fn encode(&self) -> String {
        let mut buf = String::new();
        let _ = prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut buf);
        buf
    }
}
