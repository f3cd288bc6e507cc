//! W3C trace context in NATS message headers (`traceparent`, `tracestate`).
//!
//! Every publish carries the trace context of the span that published it, and every step
//! handler continues that trace, so one run is one distributed trace across the fleet.
//! The propagator is used directly rather than through OpenTelemetry's global, so the
//! headers are right even in tests and tools that never call [`super::init`].

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Writes the current span's trace context into `headers`; writes nothing when there is
/// no valid current trace.
pub fn inject(headers: &mut async_nats::HeaderMap) {
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

/// Reads the trace context a publisher wrote into `headers` (empty context when absent or
/// malformed, so the step starts a new trace instead of failing).
pub fn extract(headers: Option<&async_nats::HeaderMap>) -> opentelemetry::Context {
    match headers {
        Some(headers) => TraceContextPropagator::new().extract(&HeaderExtractor(headers)),
        None => opentelemetry::Context::new(),
    }
}

/// Lets the propagator write into NATS headers.
struct HeaderInjector<'a>(&'a mut async_nats::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value);
    }
}

/// Lets the propagator read NATS headers.
struct HeaderExtractor<'a>(&'a async_nats::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        // NATS header names keep their case; W3C names are lower case but a publisher in
        // another language may have capitalised them, so fall back to a case-blind scan.
        if let Some(value) = self.0.get(key) {
            return Some(value.as_str());
        }
        self.0
            .iter()
            .find(|(name, _)| AsRef::<str>::as_ref(*name).eq_ignore_ascii_case(key))
            .and_then(|(_, values)| values.first())
            .map(|value| value.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_ref()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt;

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn extract_reads_traceparent() {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("traceparent", TRACEPARENT);
        headers.insert("tracestate", "vendor=value");
        let cx = extract(Some(&headers));
        let span = cx.span();
        let sc = span.span_context();
        assert!(sc.is_remote());
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert_eq!(sc.trace_state().get("vendor"), Some("value"));
    }

    #[test]
    fn extract_ignores_header_case() {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Traceparent", TRACEPARENT);
        let cx = extract(Some(&headers));
        assert!(cx.span().span_context().is_valid());
    }

    #[test]
    fn missing_or_malformed_headers_give_an_empty_context() {
        assert!(!extract(None).span().span_context().is_valid());
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("traceparent", "not-a-trace");
        assert!(!extract(Some(&headers)).span().span_context().is_valid());
    }

    #[test]
    fn inject_outside_a_trace_writes_nothing() {
        let mut headers = async_nats::HeaderMap::new();
        inject(&mut headers);
        assert!(headers.get("traceparent").is_none());
    }
}
