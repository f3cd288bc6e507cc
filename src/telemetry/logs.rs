//! Log lines: the JSON-lines format for production, the short human format for people at a
//! terminal, the writer that keeps log lines from tearing a progress bar, and the filter
//! defaults.
//!
//! The JSON format puts the fields of every enclosing span at the top level of each line,
//! next to the event's own fields, so a line logged deep inside a step handler carries
//! `run_id`, `step`, `repo` and `trace_id` without repeating them at every call site, and
//! Loki/Vector can parse them without walking nested objects. The human format is one
//! short line per event (`INFO demo-org/web: repository scanned findings=3`): no span
//! fields but the repository, no OpenTelemetry attributes, no Rust `Some(…)` wrappers.
//! Nothing here installs anything: [`super::init`] does.

use std::fmt;
use std::fmt::Write as _;
use std::io;
use std::sync::Mutex;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// Filter used when `RUST_LOG` is unset or invalid: our own `info`, and only warnings from
/// the chatty network libraries.
pub const DEFAULT_FILTER: &str = "info,async_nats=warn,hyper=warn,octocrab=warn";

/// Console filter of a one-shot command: its result is the output, so only problems log.
pub const QUIET_FILTER: &str = "warn";

/// The filter for a console verbosity: `-q` → errors only, none → `default`, `-v` →
/// [`DEFAULT_FILTER`], `-vv` → our own debug lines, `-vvv` → everything at debug.
pub fn filter_for(verbosity: i8, default: &str) -> String {
    match verbosity {
        i8::MIN..=-1 => "error".into(),
        0 => default.into(),
        1 => DEFAULT_FILTER.into(),
        2 => "debug,async_nats=info,hyper=info,octocrab=info,h2=info,rustls=info".into(),
        _ => "debug".into(),
    }
}

/// The two line formats, behind one [`FormatEvent`]. Span fields are read from the JSON
/// the `JsonFields` formatter stores in each span's extensions, so the layer using this
/// format must use `JsonFields` for fields.
#[derive(Debug, Clone, Copy)]
pub enum LineFormat {
    /// One JSON object per line: `timestamp`, `level`, `target`, `span` (innermost span
    /// name), the fields of all enclosing spans (inner ones win) and the event's fields
    /// (`message` included), which win over span fields of the same name.
    FlatJson,
    /// One short line per event for people: level, the repository the event concerns
    /// (from the enclosing step span), the message, then the event's own fields as
    /// `key=value`. Debug wrappers are unwrapped (`Some("x")` → `x`, `None` fields are left
    /// out) and error cause chains are left to the JSON format, where they can be searched.
    Human {
        /// ANSI colours for the level.
        color: bool,
    },
}

impl<S> FormatEvent<S, JsonFields> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let (spans, innermost) = span_fields(ctx);
        match self {
            LineFormat::FlatJson => flat_json(writer, event, spans, innermost),
            LineFormat::Human { color } => human(*color, writer, event, &spans),
        }
    }
}

fn flat_json(
    mut writer: Writer<'_>,
    event: &Event<'_>,
    spans: Map<String, Value>,
    innermost: Option<&'static str>,
) -> fmt::Result {
    let meta = event.metadata();
    let mut line = Map::new();
    line.insert("timestamp".into(), Value::String(timestamp()));
    line.insert("level".into(), meta.level().as_str().into());
    line.insert("target".into(), meta.target().into());
    line.extend(spans);
    if let Some(name) = innermost {
        line.insert("span".into(), name.into());
    }
    event.record(&mut JsonVisitor(&mut line));
    let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
    writeln!(writer, "{text}")
}

/// The fields of all spans enclosing the event (inner ones win), without the ones meant
/// for the tracing backend, and the innermost span's name.
fn span_fields<S>(ctx: &FmtContext<'_, S, JsonFields>) -> (Map<String, Value>, Option<&'static str>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let mut all = Map::new();
    let mut innermost = None;
    if let Some(scope) = ctx.event_scope() {
        for span in scope.from_root() {
            let extensions = span.extensions();
            if let Some(fields) = extensions.get::<FormattedFields<JsonFields>>()
                && let Ok(Value::Object(fields)) = serde_json::from_str(fields.as_str())
            {
                // `otel.*` and `messaging.*` describe the span to the tracing backend;
                // on every log line they would only repeat what `step` already says.
                all.extend(fields.into_iter().filter(|(key, _)| !is_trace_only(key)));
            }
            innermost = Some(span.name());
        }
    }
    (all, innermost)
}

fn human(
    color: bool,
    mut writer: Writer<'_>,
    event: &Event<'_>,
    spans: &Map<String, Value>,
) -> fmt::Result {
    let level = *event.metadata().level();
    let mut fields = Map::new();
    event.record(&mut JsonVisitor(&mut fields));
    let message = fields
        .remove("message")
        .and_then(|m| m.as_str().map(str::to_string))
        .unwrap_or_default();
    let (start, end) = match (color, level) {
        (false, _) => ("", ""),
        (true, tracing::Level::ERROR) => ("\x1b[1;31m", "\x1b[0m"),
        (true, tracing::Level::WARN) => ("\x1b[1;33m", "\x1b[0m"),
        (true, tracing::Level::INFO) => ("\x1b[32m", "\x1b[0m"),
        (true, _) => ("\x1b[2m", "\x1b[0m"),
    };
    let mut line = format!("{start}{:>5}{end} ", level.as_str());
    // The repository of an event's own fields wins over the span's.
    let repo = fields.remove("repo").or_else(|| spans.get("repo").cloned());
    if let Some(repo) = repo.as_ref().and_then(human_value) {
        let _ = write!(line, "{repo}: ");
    }
    line.push_str(&message);
    let visible = |line: &str| line.chars().count() - start.len() - end.len();
    for (key, value) in &fields {
        if key.ends_with("cause_chain") {
            continue;
        }
        let Some(mut text) = human_value(value) else {
            continue;
        };
        let is_error = key.starts_with("error");
        // Long values (summaries, bodies) belong in JSON logs; an error is kept whole.
        if !is_error && text.chars().count() > MAX_HUMAN_VALUE {
            text = text.chars().take(MAX_HUMAN_VALUE - 1).collect::<String>() + "…";
        }
        let field = if text.contains(' ') {
            format!(" {key}=\"{text}\"")
        } else {
            format!(" {key}={text}")
        };
        // A short line: fields that would run past the width are left out, errors never.
        if is_error || visible(&line) + field.chars().count() <= MAX_HUMAN_LINE {
            line.push_str(&field);
        }
    }
    write!(writer, "{line}")?;
    writeln!(writer)
}

/// Longest field value a human line shows (errors excepted).
const MAX_HUMAN_VALUE: usize = 48;

/// Human lines stop adding fields at this width (errors excepted).
const MAX_HUMAN_LINE: usize = 120;

/// A field's value as a person reads it: strings without quotes, Rust's `Some(…)`
/// unwrapped, `None` and empty values left out.
fn human_value(value: &Value) -> Option<String> {
    let text = match value {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let text = text.trim();
    if text.is_empty() || text == "None" {
        return None;
    }
    let inner = text
        .strip_prefix("Some(")
        .and_then(|t| t.strip_suffix(')'))
        .unwrap_or(text);
    let inner = inner
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(inner);
    Some(inner.to_string())
}

/// The progress bar being drawn, if any: log lines are written "through" it (the bar is
/// cleared, the line printed, the bar redrawn), so they never tear it.
static PROGRESS: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);

/// Routes log lines around `bar` until [`end_progress`] is called.
pub fn begin_progress(bar: &indicatif::ProgressBar) {
    if let Ok(mut slot) = PROGRESS.lock() {
        *slot = Some(bar.clone());
    }
}

/// Log lines go straight to stderr again.
pub fn end_progress() {
    if let Ok(mut slot) = PROGRESS.lock() {
        *slot = None;
    }
}

/// Standard error, suspended around the progress bar while one is drawn.
#[derive(Clone, Copy, Default)]
pub struct ConsoleWriter;

impl io::Write for ConsoleWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let bar = PROGRESS.lock().ok().and_then(|slot| slot.clone());
        match bar {
            Some(bar) => bar.suspend(|| io::stderr().write_all(buf)),
            None => io::stderr().write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for ConsoleWriter {
    type Writer = ConsoleWriter;
    fn make_writer(&'a self) -> Self::Writer {
        *self
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

    /// What `format` writes for the events `body` logs.
    fn capture(format: LineFormat, body: impl FnOnce()) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(JsonFields::new())
                .event_format(format)
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, body);
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn span_fields_are_flattened_into_every_line() {
        let text = capture(LineFormat::FlatJson, || {
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

    #[test]
    fn human_lines_are_short_and_free_of_telemetry_and_debug_noise() {
        let text = capture(LineFormat::Human { color: false }, || {
            let step = tracing::info_span!(
                "step",
                run_id = "01a2318c-8631-73fa-813e-108d1493fe58",
                step = "scan",
                otel.kind = "consumer",
                messaging.destination.name = "guardian.work.scan",
                repo = "demo-org/web-frontend",
            );
            let _entered = step.enter();
            let head: Option<&str> = Some("9311e745");
            let none: Option<&str> = None;
            tracing::info!(findings = 3, head = ?head, gone = ?none, "repository scanned");
            tracing::info!(summary = ?Some("x".repeat(100)), "run finished");
            tracing::info!(
                a = "y".repeat(40),
                b = "y".repeat(40),
                c = "y".repeat(40),
                "wide"
            );
            tracing::warn!(
                error.message = "rate limited",
                error.cause_chain = "Transient { kind: Github }",
                "step failed"
            );
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                " INFO demo-org/web-frontend: repository scanned findings=3 head=9311e745",
                &format!(
                    " INFO demo-org/web-frontend: run finished summary={}…",
                    "x".repeat(47)
                ),
                &format!(
                    " INFO demo-org/web-frontend: wide a={} b={}",
                    "y".repeat(40),
                    "y".repeat(40)
                ),
                " WARN demo-org/web-frontend: step failed error.message=\"rate limited\"",
            ]
        );
    }

    #[test]
    fn verbosity_maps_to_filters() {
        assert_eq!(filter_for(-1, QUIET_FILTER), "error");
        assert_eq!(filter_for(0, QUIET_FILTER), "warn");
        assert_eq!(filter_for(1, QUIET_FILTER), DEFAULT_FILTER);
        assert!(filter_for(2, QUIET_FILTER).starts_with("debug,"));
    }
}
