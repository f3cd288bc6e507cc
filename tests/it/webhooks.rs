//! Webhooks end to end: signed deliveries to real workers start real runs; unsigned,
//! duplicated, bursty and oversized deliveries do not start more than they should.

use std::time::Duration;

use repo_guardian::webhook::signature::sign;

use crate::helpers::{Harness, open_and_duplicates};

const SECRET: &str = "whsec-test-0123456789";

fn push(repo: &str) -> Vec<u8> {
    serde_json::json!({
        "ref": "refs/heads/main",
        "after": "0123456789abcdef0123456789abcdef01234567",
        "repository": { "full_name": repo, "default_branch": "main" },
    })
    .to_string()
    .into_bytes()
}

/// Posts a delivery to worker `index`; `signature` `None` signs it with [`SECRET`].
async fn deliver(
    h: &Harness,
    index: usize,
    event: &str,
    delivery: &str,
    body: Vec<u8>,
    signature: Option<&str>,
) -> (u16, String) {
    let url = format!(
        "http://127.0.0.1:{}/webhooks/github",
        h.workers[index].ops_port
    );
    let signature = signature
        .map(str::to_string)
        .unwrap_or_else(|| sign(SECRET.as_bytes(), &body));
    let mut request = reqwest::Client::new()
        .post(url)
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Delivery", delivery)
        .header("Content-Type", "application/json")
        .body(body);
    if !signature.is_empty() {
        request = request.header("X-Hub-Signature-256", signature);
    }
    let response = request.send().await.expect("webhook answered");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, text)
}

fn outcome(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v["outcome"].as_str().map(str::to_string))
        .unwrap_or_default()
}

async fn webhook_harness(window: &str, extra: &[(&str, &str)]) -> Harness {
    let mut h = Harness::start().await;
    h.worker_env
        .insert("GUARDIAN__WEBHOOK__SECRET".into(), SECRET.into());
    h.worker_env
        .insert("GUARDIAN__WEBHOOK__COALESCE_WINDOW".into(), window.into());
    for (k, v) in extra {
        h.worker_env.insert(k.to_string(), v.to_string());
    }
    h
}

#[tokio::test]
async fn a_signed_push_updates_the_issues_and_a_redelivery_scans_nothing() {
    let mut h = webhook_harness("300ms", &[]).await;
    h.double.add_org("octo");
    h.seed_repo("octo", "hello", false, Some(1));
    h.seed_repo("octo", "sentinel", true, Some(1));
    h.spawn_worker().await;
    let repos = vec!["hello".to_string()];

    // The missing licence is filed by the scan the push starts.
    let (status, text) = deliver(&h, 0, "push", "d-1", push("octo/hello"), None).await;
    assert_eq!((status, outcome(&text).as_str()), (202, "queued"), "{text}");
    h.wait_for_final_runs("octo/hello", 1, Duration::from_secs(60))
        .await;
    assert_eq!(open_and_duplicates(&h.issues("octo", &repos)), (1, 0));

    // The licence is added and pushed: the next push closes the issue.
    h.double
        .put_file("octo", "hello", "LICENSE", "MIT License\n");
    let (status, text) = deliver(&h, 0, "push", "d-2", push("octo/hello"), None).await;
    assert_eq!((status, outcome(&text).as_str()), (202, "queued"), "{text}");
    h.wait_for_final_runs("octo/hello", 2, Duration::from_secs(60))
        .await;
    assert_eq!(open_and_duplicates(&h.issues("octo", &repos)), (0, 0));

    // GitHub redelivers d-2: acknowledged, not scanned. The sentinel, sent afterwards with
    // the same window, proves that a run for the redelivery would have started by now.
    let (status, text) = deliver(&h, 0, "push", "d-2", push("octo/hello"), None).await;
    assert_eq!(
        (status, outcome(&text).as_str()),
        (200, "duplicate"),
        "{text}"
    );
    deliver(&h, 0, "push", "d-3", push("octo/sentinel"), None).await;
    h.wait_for_final_runs("octo/sentinel", 1, Duration::from_secs(60))
        .await;
    assert_eq!(h.runs_of("octo/hello").await.len(), 2);
}

#[tokio::test]
async fn unsigned_or_oversized_deliveries_start_nothing_and_no_secret_means_no_route() {
    let mut h = Harness::start().await;
    h.double.add_org("octo");
    h.seed_repo("octo", "hello", false, Some(1));
    h.seed_repo("octo", "sentinel", true, Some(1));
    // Without a secret the route does not exist.
    h.spawn_worker().await;
    let (status, _) = deliver(&h, 0, "push", "d-0", push("octo/hello"), None).await;
    assert_eq!(status, 404);

    h.worker_env
        .insert("GUARDIAN__WEBHOOK__SECRET".into(), SECRET.into());
    h.worker_env
        .insert("GUARDIAN__WEBHOOK__COALESCE_WINDOW".into(), "200ms".into());
    h.worker_env
        .insert("GUARDIAN__WEBHOOK__MAX_BODY_BYTES".into(), "4096".into());
    let w = h.spawn_worker().await;
    let wrong = sign(b"not-the-secret", &push("octo/hello"));
    for (delivery, signature) in [("d-1", ""), ("d-2", wrong.as_str()), ("d-3", "sha256=00")] {
        let (status, text) =
            deliver(&h, w, "push", delivery, push("octo/hello"), Some(signature)).await;
        assert_eq!(
            (status, outcome(&text).as_str()),
            (401, "unauthorized"),
            "{text}"
        );
    }
    // A body over the cap is refused before its signature is even looked at.
    let mut big = push("octo/hello");
    big.truncate(big.len() - 1);
    big.extend(format!(",\"padding\":\"{}\"}}", "x".repeat(8192)).bytes());
    let (status, text) = deliver(&h, w, "push", "d-4", big, None).await;
    assert_eq!(
        (status, outcome(&text).as_str()),
        (413, "too_large"),
        "{text}"
    );

    // A well-signed delivery sent after all of them is scanned; none of the others was.
    let (status, _) = deliver(&h, w, "push", "d-5", push("octo/sentinel"), None).await;
    assert_eq!(status, 202);
    h.wait_for_final_runs("octo/sentinel", 1, Duration::from_secs(60))
        .await;
    assert!(h.runs_of("octo/hello").await.is_empty());
    assert!(h.double.issues("octo", "hello").is_empty());

    let metrics = reqwest::get(format!(
        "http://127.0.0.1:{}/metrics",
        h.workers[w].ops_port
    ))
    .await
    .expect("metrics")
    .text()
    .await
    .expect("metrics text");
    for line in [
        r#"guardian_webhooks_total{event="push",outcome="unauthorized"} 3"#,
        r#"guardian_webhooks_total{event="push",outcome="too_large"} 1"#,
        r#"guardian_webhooks_total{event="push",outcome="queued"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    assert!(
        !h.logs().contains(SECRET),
        "the webhook secret leaked into the logs"
    );
}

#[tokio::test]
async fn twenty_pushes_in_two_seconds_across_two_workers_start_one_scan() {
    let mut h = webhook_harness("3s", &[]).await;
    h.double.add_org("octo");
    h.seed_repo("octo", "hello", false, Some(1));
    h.seed_repo("octo", "sentinel", true, Some(1));
    h.spawn_worker().await;
    h.spawn_worker().await;

    let started = tokio::time::Instant::now();
    let mut outcomes = Vec::new();
    for i in 0..20 {
        let (status, text) = deliver(
            &h,
            i % 2,
            "push",
            &format!("burst-{i}"),
            push("octo/hello"),
            None,
        )
        .await;
        assert_eq!(status, 202, "{text}");
        outcomes.push(outcome(&text));
        tokio::time::sleep_until(started + Duration::from_millis(90 * (i as u64 + 1))).await;
    }
    let burst = started.elapsed();
    assert!(burst < Duration::from_secs(2), "burst took {burst:?}");
    assert_eq!(outcomes.iter().filter(|o| *o == "queued").count(), 1);
    assert_eq!(outcomes.iter().filter(|o| *o == "coalesced").count(), 19);

    deliver(&h, 1, "push", "sentinel", push("octo/sentinel"), None).await;
    h.wait_for_final_runs("octo/sentinel", 1, Duration::from_secs(60))
        .await;
    let runs = h
        .wait_for_final_runs("octo/hello", 1, Duration::from_secs(60))
        .await;
    assert_eq!(runs.len(), 1, "one scan for the whole burst");
    assert_eq!(
        open_and_duplicates(&h.issues("octo", &["hello".into()])),
        (1, 0)
    );
}

#[tokio::test]
async fn a_webhook_run_is_one_trace_from_the_delivery_to_its_steps() {
    let sink = otlp_sink::OtlpSink::start().await;
    let mut h = webhook_harness(
        "0s",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &sink.endpoint()),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    )
    .await;
    h.double.add_org("octo");
    h.seed_repo("octo", "hello", false, Some(1));
    h.spawn_worker().await;

    let (status, text) = deliver(&h, 0, "push", "traced-1", push("octo/hello"), None).await;
    assert_eq!(status, 202, "{text}");
    let runs = h
        .wait_for_final_runs("octo/hello", 1, Duration::from_secs(60))
        .await;
    let run_id = runs[0].run_id.clone();

    // The delivery's span, the run request's span and plan, scan and reconcile.
    let is_delivery = |s: &otlp_sink::ReceivedSpan| s.attribute("delivery") == Some("traced-1");
    let of_run = |s: &otlp_sink::ReceivedSpan| s.attribute("run_id") == Some(run_id.as_str());
    let spans = sink
        .wait_for_spans(Duration::from_secs(20), |spans| {
            spans.iter().any(is_delivery) && spans.iter().filter(|s| of_run(s)).count() >= 3
        })
        .await;
    let delivery = spans
        .iter()
        .find(|s| is_delivery(s) && s.name == "webhook")
        .unwrap_or_else(|| panic!("no span of the delivery among {spans:#?}"));
    let steps: Vec<_> = spans.iter().filter(|s| of_run(s)).collect();
    assert!(steps.len() >= 3, "step spans of the run: {steps:#?}");
    for step in &steps {
        assert_eq!(
            step.trace_id, delivery.trace_id,
            "step {} is not in the delivery's trace",
            step.name
        );
    }
    assert!(
        spans
            .iter()
            .any(|s| s.name == "guardian.run" && s.trace_id == delivery.trace_id),
        "the run request continues the delivery's trace"
    );
}

#[tokio::test]
async fn a_scan_pending_in_its_window_survives_the_worker_that_opened_it() {
    let mut h = webhook_harness("3s", &[]).await;
    h.double.add_org("octo");
    h.seed_repo("octo", "hello", false, Some(1));
    h.spawn_worker().await;
    h.spawn_worker().await;

    let (status, text) = deliver(&h, 0, "push", "orphan-1", push("octo/hello"), None).await;
    assert_eq!((status, outcome(&text).as_str()), (202, "queued"), "{text}");
    // Killed inside the window: the worker that opened it never fires anything.
    h.kill_worker(0);
    assert!(
        h.runs_of("octo/hello").await.is_empty(),
        "scanned before the window ended"
    );

    let runs = h
        .wait_for_final_runs("octo/hello", 1, Duration::from_secs(60))
        .await;
    assert_eq!(runs.len(), 1);
    assert_eq!(
        open_and_duplicates(&h.issues("octo", &["hello".into()])),
        (1, 0),
        "the surviving worker scanned and filed the finding"
    );
}

#[tokio::test]
async fn a_push_during_an_active_run_of_its_repository_gets_a_run_of_its_own() {
    let mut h = webhook_harness("0s", &[]).await;
    h.double.add_org("octo");
    h.seed_repo("octo", "hello", false, Some(1));
    // Slow enough that the second push arrives while the first run is still active.
    h.double.set_latency(Duration::from_millis(300));
    h.spawn_worker().await;

    let (status, _) = deliver(&h, 0, "push", "active-1", push("octo/hello"), None).await;
    assert_eq!(status, 202);
    let first = loop {
        if let Some(run) = h.runs_of("octo/hello").await.into_iter().next() {
            break run;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (status, _) = deliver(&h, 0, "push", "active-2", push("octo/hello"), None).await;
    assert_eq!(status, 202);
    assert!(
        !h.runs_of("octo/hello").await[0].status.is_final(),
        "the second push must land while {} is active",
        first.run_id
    );

    let runs = h
        .wait_for_final_runs("octo/hello", 2, Duration::from_secs(60))
        .await;
    assert_eq!(runs.len(), 2, "one run per push: {runs:#?}");
    // The second push's run began after the first ended, so it read what was pushed.
    let first_ended = runs[0].finished_at.expect("final runs have ended");
    assert!(
        runs[1].created_at >= first_ended,
        "the second run started while the first was active: {runs:#?}"
    );
    assert_eq!(
        open_and_duplicates(&h.issues("octo", &["hello".into()])),
        (1, 0)
    );
}
