//! One run is one trace across worker processes, and log lines inside steps carry the
//! run, the step, the repository and the trace id.

use std::collections::BTreeSet;
use std::time::Duration;

use otlp_sink::OtlpSink;
use repo_guardian::store::runs::RunStatus;

use crate::helpers::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_across_two_workers_is_one_trace_and_logs_carry_its_ids() {
    let sink = OtlpSink::start().await;
    let mut h = Harness::start().await;
    h.seed_org("trace-org", 12, 12);
    h.double.set_latency(Duration::from_millis(30));
    h.worker_env
        .insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), sink.endpoint());
    h.worker_env
        .insert("OTEL_BSP_SCHEDULE_DELAY".into(), "200".into());
    for name in ["worker-a", "worker-b"] {
        h.worker_env.insert("OTEL_SERVICE_NAME".into(), name.into());
        h.spawn_worker().await;
    }
    let record = h.run("org:trace-org", false).await;
    assert_eq!(record.status, RunStatus::Succeeded);
    let run_id = record.run_id.clone();

    let of_run = |spans: &[otlp_sink::ReceivedSpan]| -> Vec<otlp_sink::ReceivedSpan> {
        spans
            .iter()
            .filter(|s| s.attribute("run_id") == Some(run_id.as_str()))
            .cloned()
            .collect()
    };
    // 1 plan + 12 scans + 12 reconciles.
    let spans = sink
        .wait_for_spans(Duration::from_secs(20), |s| of_run(s).len() >= 25)
        .await;
    let steps = of_run(&spans);
    assert!(steps.len() >= 25, "step spans received: {}", steps.len());
    let traces: BTreeSet<&str> = steps.iter().map(|s| s.trace_id.as_str()).collect();
    assert_eq!(traces.len(), 1, "one run, one trace: {traces:?}");
    let services: BTreeSet<Option<&str>> =
        steps.iter().map(|s| s.service_name.as_deref()).collect();
    assert_eq!(
        services.len(),
        2,
        "both workers worked on the run: {services:?}"
    );
    let trace_id = *traces.iter().next().unwrap();
    assert!(
        steps.iter().all(|s| s.parent_span_id.is_some()),
        "steps descend from the trigger span"
    );
    assert!(
        spans
            .iter()
            .any(|s| s.trace_id == trace_id && s.name.starts_with("github")),
        "GitHub requests are spans of the run's trace"
    );
    assert!(
        steps
            .iter()
            .any(|s| s.attribute("messaging.system") == Some("nats"))
    );

    // JSON log lines inside steps carry run_id, step, repo and the same trace id.
    let logs = h.logs();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["run_id"] == run_id.as_str() && v["step"] == "scan")
        .collect();
    assert!(!lines.is_empty(), "no JSON step lines in:\n{logs}");
    for line in &lines {
        assert_eq!(line["trace_id"], trace_id, "{line}");
        assert!(
            line["repo"]
                .as_str()
                .is_some_and(|r| r.starts_with("trace-org/")),
            "{line}"
        );
    }
}
