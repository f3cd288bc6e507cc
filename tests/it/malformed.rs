//! Malformed input is answered, not swallowed: bad trigger requests get error replies that
//! name the problem; poison messages on a work subject end in `GUARDIAN_DLQ` with their
//! reason; the worker keeps serving.

use std::time::Duration;

use repo_guardian::bus::dlq;
use repo_guardian::store::runs::RunStatus;

use crate::helpers::Harness;

async fn service_error(h: &Harness, payload: &str) -> (String, String) {
    let reply = h
        .bus
        .client
        .request("guardian.run", payload.to_string().into())
        .await
        .expect("a reply, not a timeout");
    let headers = reply.headers.expect("error headers");
    (
        headers
            .get("Nats-Service-Error-Code")
            .map(|v| v.to_string())
            .unwrap_or_default(),
        headers
            .get("Nats-Service-Error")
            .map(|v| v.to_string())
            .unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_and_poison_messages_are_answered_and_dead_lettered() {
    let mut h = Harness::start().await;
    let repos = h.seed_org("mal-org", 1, 1);
    h.spawn_worker().await;

    for (payload, expected) in [
        ("{\"target\": ", "request is not valid JSON"),
        (
            r#"{"target": 42}"#,
            "field `target` must be a string, got a number",
        ),
        (
            r#"{"target": "team:platform"}"#,
            "unknown target form `team:platform`",
        ),
        (
            r#"{"target": "mal-org/not a repo"}"#,
            "invalid repository name `not a repo`",
        ),
        (
            r#"{"target": "mal-org/x", "dry_run": "yes"}"#,
            "field `dry_run` must be a boolean",
        ),
    ] {
        let (code, message) = service_error(&h, payload).await;
        assert_eq!(code, "400", "{payload}");
        assert!(message.contains(expected), "{payload}: {message}");
    }

    // Garbage, a payload from a newer release, and an unknown repository, straight onto
    // the scan subject.
    let js = &h.bus.js;
    js.publish("guardian.work.scan", "\u{0}\u{1}not json at all".into())
        .await
        .unwrap()
        .await
        .unwrap();
    js.publish(
        "guardian.work.scan",
        r#"{"v":99,"run_id":"future","step":"scan","data":{"repo":{"owner":"o","name":"r"},"hologram":true}}"#.into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let letters = loop {
        let letters = dlq::list(&h.bus).await.unwrap();
        if letters.len() >= 2 {
            break letters;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "dead letters missing: {letters:?}\n{}",
            h.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        letters
            .iter()
            .all(|l| l.letter.subject == "guardian.work.scan")
    );
    assert!(
        letters
            .iter()
            .any(|l| l.letter.error.contains("payload is not JSON")),
        "{letters:?}"
    );
    assert!(
        letters
            .iter()
            .any(|l| l.letter.error.contains("version 99 is newer")
                && l.letter.payload.contains("hologram")),
        "{letters:?}"
    );

    // The worker is still serving; a missing repository fails its run with the reason.
    let ok = h.run(&format!("mal-org/{}", repos[0]), true).await;
    assert_eq!(ok.status, RunStatus::Succeeded);
    let missing = h.run("mal-org/does-not-exist", true).await;
    assert_eq!(missing.status, RunStatus::Failed);
    assert!(missing.errors[0].message.contains("404"), "{missing:?}");
    assert_eq!(dlq::list(&h.bus).await.unwrap().len(), 3);

    // guardian.status answers with the record, or an error naming the run.
    let reply = h
        .bus
        .client
        .request(
            "guardian.status",
            format!(r#"{{"run_id":"{}"}}"#, ok.run_id).into(),
        )
        .await
        .unwrap();
    let record: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(record["status"], "succeeded");
    // A well-formed run id nobody issued is 404; anything else is the caller's fault (400).
    for (request, code, named) in [
        (
            "0190c1de-0000-7000-8000-000000000000",
            "404",
            "0190c1de-0000-7000-8000-000000000000",
        ),
        ("no-such-run", "400", "no-such-run"),
    ] {
        let reply = h
            .bus
            .client
            .request("guardian.status", request.into())
            .await
            .unwrap();
        let headers = reply.headers.expect("error headers");
        assert_eq!(
            headers.get("Nats-Service-Error-Code").unwrap().as_str(),
            code
        );
        assert!(
            headers
                .get("Nats-Service-Error")
                .unwrap()
                .as_str()
                .contains(named)
        );
    }

    // A replayed dead letter goes back to its subject, is consumed again and — still
    // garbage — dead-lettered again with the same reason: nothing lost, nothing looping.
    let garbage = letters
        .iter()
        .find(|l| l.letter.error.contains("payload is not JSON"))
        .unwrap();
    let replayed = dlq::replay(&h.bus, Some(garbage.id)).await.unwrap();
    assert_eq!(replayed.len(), 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = dlq::list(&h.bus).await.unwrap();
        if now
            .iter()
            .any(|l| l.id != garbage.id && l.letter.error.contains("payload is not JSON"))
        {
            assert!(
                now.iter().all(|l| l.id != garbage.id),
                "the replayed letter was removed"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "replayed letter not seen again: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
