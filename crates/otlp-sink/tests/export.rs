//! End-to-end check of the worker's trace export: two processes, each initialising
//! Repo Guardian's telemetry with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at an [`OtlpSink`],
//! run one step of the same run; the trace context crosses from the first to the second
//! in a `traceparent` header, as it does over NATS. The processes are this test binary
//! itself, re-run with the ignored `emitter` test, because environment variables can only
//! be set safely for a child process.

use std::process::Command;
use std::time::Duration;

use otlp_sink::{OtlpSink, ReceivedSpan};
use repo_guardian::config::{LogFormat, TelemetrySettings};
use repo_guardian::telemetry;

const RUN_ID: &str = "run-otlp-sink-test";

/// What one emitter process printed.
struct Emitted {
    stdout: String,
    traceparent: Option<String>,
    log_lines: Vec<serde_json::Value>,
}

/// Runs the `emitter` test in a child process with `role` and extra environment.
fn emit(sink: &OtlpSink, role: &str, env: &[(&str, &str)]) -> Emitted {
    let exe = std::env::current_exe().expect("test binary path");
    let output = Command::new(exe)
        .args([
            "emitter",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_remove("OTEL_SERVICE_NAME")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", sink.endpoint())
        .env("RUST_LOG", "info")
        .env("OTLP_SINK_ROLE", role)
        .envs(env.iter().copied())
        .output()
        .expect("emitter process runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "emitter {role} failed\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
    Emitted {
        stdout: stdout.clone().into_owned(),
        traceparent: stdout
            .lines()
            // The harness prints `test emitter ... ` on the same line first.
            .find_map(|line| {
                line.split_once("TRACEPARENT=")
                    .map(|(_, value)| value.trim())
            })
            .map(str::to_owned),
        log_lines: stderr
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect(),
    }
}

fn step<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    spans
        .iter()
        .find(|span| span.name == name)
        .unwrap_or_else(|| panic!("no `{name}` span among {spans:#?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_export_one_trace() {
    let sink = OtlpSink::start().await;

    let plan = tokio::task::block_in_place(|| emit(&sink, "plan", &[]));
    let traceparent = plan
        .traceparent
        .clone()
        .unwrap_or_else(|| panic!("the plan process printed no traceparent:\n{}", plan.stdout));
    let scan = tokio::task::block_in_place(|| {
        emit(
            &sink,
            "scan",
            &[
                ("TRACEPARENT", traceparent.as_str()),
                ("OTEL_SERVICE_NAME", "guardian-worker-b"),
            ],
        )
    });

    // Both processes flushed on exit, but the receiver may still be storing.
    let spans = sink
        .wait_for_spans(Duration::from_secs(10), |spans| {
            ["plan", "scan"]
                .iter()
                .all(|name| spans.iter().any(|span| span.name == *name))
        })
        .await;
    let plan_span = step(&spans, "plan");
    let scan_span = step(&spans, "scan");

    assert_eq!(plan_span.trace_id, scan_span.trace_id, "one run, one trace");
    assert!(traceparent.contains(&plan_span.trace_id));
    assert_eq!(plan_span.parent_span_id, None);
    assert_eq!(
        scan_span.parent_span_id.as_deref(),
        Some(plan_span.span_id.as_str()),
        "the scan step continues the span that published it"
    );
    assert_eq!(plan_span.service_name.as_deref(), Some("repo-guardian"));
    assert_eq!(scan_span.service_name.as_deref(), Some("guardian-worker-b"));

    assert_eq!(scan_span.kind, "SPAN_KIND_CONSUMER");
    assert_eq!(scan_span.attribute("messaging.system"), Some("nats"));
    assert_eq!(
        scan_span.attribute("messaging.operation.type"),
        Some("process")
    );
    assert_eq!(
        scan_span.attribute("messaging.destination.name"),
        Some("guardian.work.scan")
    );
    assert_eq!(scan_span.attribute("run_id"), Some(RUN_ID));
    assert_eq!(scan_span.attribute("repo"), Some("octo-org/hello-world"));

    // The log line written inside the scan step carries the run's coordinates.
    let line = scan
        .log_lines
        .iter()
        .find(|line| line["message"] == "snapshot built")
        .expect("the scan process logged inside its step");
    assert_eq!(line["trace_id"], scan_span.trace_id.as_str());
    assert_eq!(line["run_id"], RUN_ID);
    assert_eq!(line["step"], "scan");
    assert_eq!(line["repo"], "octo-org/hello-world");
}

/// One worker process's share of a run, driven by `OTLP_SINK_ROLE`: `plan` starts the
/// trace and prints the `traceparent` it would publish; `scan` continues the trace from
/// `TRACEPARENT`. Only meaningful as a child of `two_processes_export_one_trace`.
#[test]
#[ignore = "child process of two_processes_export_one_trace"]
fn emitter() {
    let role = std::env::var("OTLP_SINK_ROLE").expect("OTLP_SINK_ROLE is set by the parent");
    let guard = telemetry::init(&TelemetrySettings {
        log_format: LogFormat::Json,
        trace_sample_ratio: 1.0,
    })
    .expect("telemetry initialises");
    match role.as_str() {
        "plan" => {
            let span = telemetry::step_span("plan", RUN_ID, None, opentelemetry::Context::new());
            let mut headers = async_nats::HeaderMap::new();
            span.in_scope(|| {
                tracing::info!("run planned");
                telemetry::inject(&mut headers);
            });
            let traceparent = headers.get("traceparent").expect("traceparent injected");
            println!("TRACEPARENT={}", traceparent.as_str());
        }
        "scan" => {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(
                "traceparent",
                std::env::var("TRACEPARENT").expect("TRACEPARENT is set by the parent"),
            );
            let parent = telemetry::extract(Some(&headers));
            let span = telemetry::step_span("scan", RUN_ID, Some("octo-org/hello-world"), parent);
            span.in_scope(|| tracing::info!(files = 12, "snapshot built"));
        }
        other => panic!("unknown OTLP_SINK_ROLE {other}"),
    }
    // Dropping the guard flushes the batch exporter before the process exits.
    drop(guard);
}
