//! The OpenTelemetry tracer provider and its OTLP/HTTP exporter.
//!
//! A tracer provider is always built, so every step span has a real trace id for the logs
//! and for the `traceparent` header even where nothing is exported. The OTLP exporter is
//! added only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! is set; the exporter itself reads the other standard `OTEL_EXPORTER_OTLP_*` variables.
//!
//! The SDK's batch processor runs on a thread of its own and drives exports with a plain
//! executor, while the async `reqwest` client needs a Tokio reactor. [`ExportClient`]
//! bridges the two by running each request on a small runtime owned by the exporter, which
//! also keeps exports working while the application's runtime shuts down.

use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use opentelemetry::KeyValue;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};

/// Service name when `OTEL_SERVICE_NAME` is unset.
pub const DEFAULT_SERVICE_NAME: &str = "repo-guardian";

/// Export timeout when neither `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT` nor
/// `OTEL_EXPORTER_OTLP_TIMEOUT` is set (the specification's default).
const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the environment asks for OTLP export.
pub fn otlp_enabled() -> bool {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|value| !value.trim().is_empty()))
}

/// The service name spans are reported under.
pub fn service_name() -> String {
    std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|name| !name.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned())
}

/// Builds the tracer provider: parent-based sampling (a step follows the decision its
/// publisher made, so a run's trace is kept or dropped whole), a ratio for new traces, and
/// the OTLP batch exporter when enabled.
pub fn tracer_provider(sample_ratio: f64) -> anyhow::Result<SdkTracerProvider> {
    let ratio = if sample_ratio.is_finite() {
        sample_ratio.clamp(0.0, 1.0)
    } else {
        1.0
    };
    let resource = Resource::builder()
        .with_service_name(service_name())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let mut builder = SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            ratio,
        ))))
        .with_resource(resource);
    if otlp_enabled() {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_http_client(ExportClient::new()?)
            .build()
            .context("building the OTLP/HTTP span exporter")?;
        builder = builder.with_batch_exporter(exporter);
    }
    Ok(builder.build())
}

/// The export timeout from the standard variables, in milliseconds.
fn export_timeout() -> Duration {
    [
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ]
    .iter()
    .find_map(|name| std::env::var(name).ok()?.trim().parse::<u64>().ok())
    .map(Duration::from_millis)
    .unwrap_or(DEFAULT_EXPORT_TIMEOUT)
}

/// An HTTP client for the exporter: `reqwest` on a dedicated one-thread Tokio runtime.
#[derive(Debug)]
struct ExportClient {
    client: reqwest::Client,
    runtime: ExportRuntime,
}

impl ExportClient {
    fn new() -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(export_timeout())
            .build()
            .context("building the OTLP HTTP client")?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-export")
            .enable_all()
            .build()
            .context("starting the OTLP export runtime")?;
        Ok(Self {
            client,
            runtime: ExportRuntime(Some(runtime)),
        })
    }
}

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let Some(runtime) = &self.runtime.0 else {
            return Err("the OTLP export runtime is shut down".into());
        };
        runtime
            .spawn(async move { client.send_bytes(request).await })
            .await?
    }
}

/// Owns the export runtime and shuts it down without blocking, because the exporter may
/// be dropped from inside another runtime, where a blocking shutdown would panic.
#[derive(Debug)]
struct ExportRuntime(Option<tokio::runtime::Runtime>);

impl Drop for ExportRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}
