//! Telemetry: logs (`tracing`), traces (OpenTelemetry over OTLP/HTTP) and Prometheus metrics.
//!
//! `init` is called once by `main`. The rest of the code records through [`metrics()`] and
//! creates step spans through [`step_span`]; trace context crosses NATS in message headers
//! through [`inject`] and [`extract`]. What each signal contains and how operators use it
//! is in `docs/operations/monitoring.md`; serving `/metrics` is the ops HTTP server's job,
//! not this module's.

pub mod logs;
pub mod metrics;
pub mod propagation;
pub mod traces;

pub use metrics::{CacheOutcome, Metrics, metrics};
pub use propagation::{extract, inject};

use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, fmt};

use crate::config::{LogFormat, TelemetrySettings};

/// Where and how log lines are written: the format, the filter used when `RUST_LOG` is
/// unset, and whether human lines are coloured. Workers log JSON as configured; interactive
/// commands log short human lines (see [`logs::LineFormat`]).
#[derive(Debug, Clone)]
pub struct Console {
    pub format: LogFormat,
    pub default_filter: String,
    pub color: bool,
}

impl Console {
    /// What a fleet worker uses: the configured format and [`logs::DEFAULT_FILTER`].
    pub fn fleet(settings: &TelemetrySettings) -> Console {
        Console {
            format: settings.log_format,
            default_filter: logs::DEFAULT_FILTER.into(),
            color: false,
        }
    }
}

/// Keeps the tracer provider alive; on drop, flushes pending spans to the exporter and
/// shuts it down, so the last steps before a drain are not lost. Hold it in `main` until
/// the process ends.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            // The subscriber may already be gone at this point; stderr always works.
            eprintln!("telemetry: flushing spans at shutdown failed: {e}");
        }
    }
}

/// Installs the global subscriber (the fleet's log format, filter from `RUST_LOG` or
/// [`logs::DEFAULT_FILTER`], logs on stderr), the OpenTelemetry layer with the OTLP exporter
/// when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, the TLS crypto provider, and the metrics
/// registry.
///
/// Calling it again in the same process (tests) keeps the first subscriber and returns a
/// guard that owns nothing.
pub fn init(settings: &TelemetrySettings) -> anyhow::Result<TelemetryGuard> {
    init_with(settings, &Console::fleet(settings))
}

/// Like [`init`], with the console chosen by the caller (interactive commands).
pub fn init_with(
    settings: &TelemetrySettings,
    console: &Console,
) -> anyhow::Result<TelemetryGuard> {
    // reqwest is built without a default crypto provider so that exactly one (ring) is
    // compiled in; it must be chosen before any TLS client is built. A second call finds
    // one installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _ = metrics();
    if tracing::dispatcher::has_been_set() {
        // Someone (an earlier `init`, a test harness) owns the global subscriber; spans
        // would not reach a new provider, so do not build one.
        return Ok(TelemetryGuard { provider: None });
    }

    let provider = traces::tracer_provider(settings.trace_sample_ratio)?;
    // Set before the subscriber exists, so the SDK's own "provider set" notice does not
    // open every log.
    opentelemetry::global::set_tracer_provider(provider.clone());
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    if subscriber(console, &provider).try_init().is_err() {
        let _ = provider.shutdown();
        return Ok(TelemetryGuard { provider: None });
    }
    tracing::debug!(
        otlp = traces::otlp_enabled(),
        service = %traces::service_name(),
        "telemetry initialised"
    );
    Ok(TelemetryGuard {
        provider: Some(provider),
    })
}

/// The subscriber `init` installs: filter, OpenTelemetry layer, then one of the two log
/// formats on stderr. Separate so tests can use it as a scoped default.
fn subscriber(
    console: &Console,
    provider: &SdkTracerProvider,
) -> impl tracing::Subscriber + Send + Sync + 'static {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(&console.default_filter));
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("repo-guardian"))
        .with_tracked_inactivity(false);
    // `Option<Layer>` is a layer, which keeps one concrete type for both formats.
    let (json, human) = match console.format {
        LogFormat::Json => (
            Some(
                fmt::layer()
                    .fmt_fields(fmt::format::JsonFields::new())
                    .event_format(logs::LineFormat::FlatJson)
                    .with_writer(logs::ConsoleWriter),
            ),
            None,
        ),
        LogFormat::Human => (
            None,
            Some(
                fmt::layer()
                    .fmt_fields(fmt::format::JsonFields::new())
                    .event_format(logs::LineFormat::Human {
                        color: console.color,
                    })
                    .with_writer(logs::ConsoleWriter),
            ),
        ),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(otel)
        .with(json)
        .with(human)
}

/// A span for one step execution, child of the trace carried by the message (`parent`),
/// with `run_id`, `step`, `repo` and `trace_id` fields so every log line inside carries them.
///
/// The OpenTelemetry span is named after the step, is a `consumer` span and carries the
/// messaging semantic-convention attributes of a NATS `process` operation. When `parent`
/// holds a remote span context (from [`extract`]), the span continues that trace; otherwise
/// it starts a new one.
pub fn step_span(
    step: &str,
    run_id: &str,
    repo: Option<&str>,
    parent: opentelemetry::Context,
) -> tracing::Span {
    let span = tracing::info_span!(
        "step",
        otel.name = step,
        otel.kind = "consumer",
        step,
        run_id,
        repo = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        messaging.system = "nats",
        messaging.operation.type = "process",
        messaging.destination.name = format!("guardian.work.{step}"),
        messaging.consumer.group.name = format!("guardian-{step}"),
    );
    if let Some(repo) = repo {
        span.record("repo", repo);
    }
    continue_trace(span, parent)
}

/// Makes `span` continue the trace of `parent` (a context read from message headers with
/// [`extract`]; an empty one starts a new trace), and records the trace id in the span's
/// `trace_id` field when it declares one, so log lines inside carry it.
pub fn continue_trace(span: tracing::Span, parent: opentelemetry::Context) -> tracing::Span {
    let parent_trace = parent.span().span_context().trace_id();
    // Fails only when the OpenTelemetry layer is absent (no `init`) or the span is
    // disabled by the filter; the span then simply has no OpenTelemetry side.
    let _ = span.set_parent(parent);
    let own_trace = span.context().span().span_context().trace_id();
    let trace_id = if own_trace != opentelemetry::trace::TraceId::INVALID {
        own_trace
    } else {
        parent_trace
    };
    if trace_id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
    span
}

/// The trace id of the current span (32 hex digits), for records that should point at the
/// trace, such as a run record or an error report; `None` outside any trace.
pub fn current_trace_id() -> Option<String> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `test` under the subscriber `init` would install, scoped to this thread so
    /// the tests of other modules keep their own.
    fn with_telemetry(test: impl FnOnce()) {
        let provider = traces::tracer_provider(1.0).expect("tracer provider");
        let console = Console {
            format: LogFormat::Json,
            default_filter: logs::DEFAULT_FILTER.into(),
            color: false,
        };
        tracing::subscriber::with_default(subscriber(&console, &provider), test);
    }

    fn trace_id_in(span: &tracing::Span) -> String {
        span.in_scope(|| current_trace_id().unwrap_or_default())
    }

    #[test]
    fn a_root_step_gets_a_trace_id_without_any_exporter() {
        with_telemetry(|| {
            let root = step_span("plan", "run-1", None, opentelemetry::Context::new());
            let trace_id = trace_id_in(&root);
            assert_eq!(trace_id.len(), 32);
            assert_ne!(trace_id, "0".repeat(32));
        });
    }

    #[test]
    fn trace_context_crosses_nats_headers() {
        with_telemetry(|| {
            let root = step_span("plan", "run-1", None, opentelemetry::Context::new());
            let root_trace = trace_id_in(&root);

            // Publish from inside the root step, consume in another step.
            let mut headers = async_nats::HeaderMap::new();
            root.in_scope(|| inject(&mut headers));
            let traceparent = headers.get("traceparent").expect("traceparent set");
            assert!(traceparent.as_str().contains(&root_trace));

            let child = step_span("scan", "run-1", Some("octo/hello"), extract(Some(&headers)));
            assert_eq!(trace_id_in(&child), root_trace);
        });
    }

    #[test]
    fn a_remote_parent_decides_the_trace_id() {
        with_telemetry(|| {
            let mut remote = async_nats::HeaderMap::new();
            remote.insert(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            );
            // Not sampled upstream: the trace id is still carried for the logs.
            let step = step_span("reconcile", "run-2", Some("a/b"), extract(Some(&remote)));
            assert_eq!(trace_id_in(&step), "4bf92f3577b34da6a3ce929d0e0e4736");
        });
    }
}
