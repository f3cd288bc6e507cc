//! Log lines: the JSON-lines format for production and the filter defaults.
//!
//! The JSON format puts the fields of every enclosing span at the top level of each line,
//! next to the event's own fields, so a line logged deep inside a step handler carries
//! `run_id`, `step`, `repo` and `trace_id` without repeating them at every call site, and
//! Loki/Vector can parse them without walking nested objects. The human format is
//! tracing-subscriber's own. Nothing here installs anything: [`super::init`] does.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Filter used when `RUST_LOG` is unset or invalid: our own `info`, and only warnings from
/// the chatty network libraries.
pub const DEFAULT_FILTER: &str = "info,async_nats=warn,hyper=warn,octocrab=warn";

/// One JSON object per line: `timestamp`, `level`, `target`, `span` (innermost span name),
/// the fields of all enclosing spans (inner ones win) and the event's fields (`message`
/// included), which win over span fields of the same name.
///
/// Span fields are read from the JSON the `JsonFields` formatter stores in each span's
/// extensions, so the layer using this format must use `JsonFields` for fields.
pub struct FlatJson;

impl<S> FormatEvent<S, JsonFields> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert("timestamp".into(), Value::String(timestamp()));
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        if let Some(scope) = ctx.event_scope() {
            let mut innermost = None;
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<JsonFields>>()
                    && let Ok(Value::Object(fields)) = serde_json::from_str(fields.as_str())
                {
                    // `otel.*` and `messaging.*` describe the span to the tracing backend;
                    // on every log line they would only repeat what `step` already says.
                    line.extend(fields.into_iter().filter(|(key, _)| !is_trace_only(key)));
                }
                innermost = Some(span.name());
            }
            if let Some(name) = innermost {
                line.insert("span".into(), name.into());
            }
        }
        event.record(&mut JsonVisitor(&mut line));
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Span fields meant for the OpenTelemetry span only.
fn is_trace_only(key: &str) -> bool {
    key.starts_with("otel.") || key.starts_with("messaging.")
}

/// RFC 3339 in UTC, with the precision Loki and Vector parse.
fn timestamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// Collects an event's fields as JSON values, keeping numbers and booleans typed.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    /// A writer that keeps what was logged, for assertions.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn span_fields_are_flattened_into_every_line() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(JsonFields::new())
                .event_format(FlatJson)
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            let step = tracing::info_span!(
                "scan",
                run_id = "run-1",
                step = "scan",
                otel.kind = "consumer",
                messaging.system = "nats",
                trace_id = tracing::field::Empty
            );
            let _entered = step.enter();
            step.record("trace_id", "abc123");
            let inner = tracing::info_span!("github", repo = "octo/hello");
            let _inner = inner.enter();
            tracing::info!(files = 3, cached = true, "snapshot built");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["message"], "snapshot built");
        assert_eq!(line["run_id"], "run-1");
        assert_eq!(line["step"], "scan");
        assert_eq!(line["repo"], "octo/hello");
        assert_eq!(line["trace_id"], "abc123");
        assert_eq!(line["files"], 3);
        assert_eq!(line["cached"], true);
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["span"], "github");
        assert!(line.get("otel.kind").is_none() && line.get("messaging.system").is_none());
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
    }
}
