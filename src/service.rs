//! The trigger API: the NATS micro service `repo-guardian` with endpoints `guardian.run`
//! and `guardian.status`, served by every worker (one queue group, so each request is
//! answered once). Visible to `nats micro ls|info|stats`.
//!
//! Requests are validated completely before anything is queued; a bad request gets a
//! micro-protocol error (`Nats-Service-Error` / `Nats-Service-Error-Code` headers) whose
//! text names the problem.

use async_nats::service::{self, ServiceExt as _};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::bus::envelope::{Envelope, PlanTask, Task};
use crate::bus::events::{self, Event};
use crate::bus::{Bus, RUN_ENDPOINT, SERVICE_NAME, STATUS_ENDPOINT, Step};
use crate::domain::Target;
use crate::store::runs::{RunRecord, RunStore};

/// A validated `guardian.run` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunRequest {
    pub target: String,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunAccepted {
    pub run_id: String,
    pub status: String,
}

/// A request the caller got wrong (400) or something missing (404); the text is the reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RequestError {
    pub code: usize,
    pub message: String,
}

fn bad(message: impl Into<String>) -> RequestError {
    RequestError {
        code: 400,
        message: message.into(),
    }
}

fn type_name(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Parses and validates a `guardian.run` payload, naming the field and the problem.
pub fn parse_run_request(payload: &[u8]) -> Result<RunRequest, RequestError> {
    let value: serde_json::Value = serde_json::from_slice(payload)
        .map_err(|e| bad(format!("request is not valid JSON: {e}")))?;
    let serde_json::Value::Object(map) = value else {
        return Err(bad(format!(
            "request must be a JSON object like {{\"target\": \"owner/repo\"}}, got {}",
            type_name(&value)
        )));
    };
    if let Some(unknown) = map.keys().find(|k| *k != "target" && *k != "dry_run") {
        return Err(bad(format!(
            "unknown field `{unknown}`: expected `target` and optionally `dry_run`"
        )));
    }
    let target = match map.get("target") {
        None => return Err(bad("missing field `target`")),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(bad(format!(
                "field `target` must be a string, got {}",
                type_name(other)
            )));
        }
    };
    let dry_run = match map.get("dry_run") {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => *b,
        Some(other) => {
            return Err(bad(format!(
                "field `dry_run` must be a boolean, got {}",
                type_name(other)
            )));
        }
    };
    let target = Target::parse(&target).map_err(|e| bad(e.to_string()))?;
    Ok(RunRequest {
        target: target.to_string(),
        dry_run,
    })
}

/// Records a new run and queues its plan step.
pub async fn start_run(
    bus: &Bus,
    runs: &RunStore,
    request: &RunRequest,
) -> Result<RunAccepted, anyhow::Error> {
    let run_id = uuid::Uuid::now_v7().to_string();
    let record = RunRecord::new(&run_id, &request.target, request.dry_run);
    runs.create(&record).await?;
    events::emit(
        bus,
        &run_id,
        Event::Started,
        None,
        "",
        serde_json::json!({ "target": request.target, "dry_run": request.dry_run }),
    )
    .await?;
    let envelope = Envelope::new(
        &run_id,
        Task::Plan(PlanTask {
            target: request.target.clone(),
            dry_run: request.dry_run,
        }),
    );
    bus.publish(
        Step::Plan.subject(),
        &format!("{run_id}.plan"),
        envelope.encode(),
    )
    .await?;
    tracing::info!(run_id = %run_id, target = %request.target, dry_run = request.dry_run, "run queued");
    Ok(RunAccepted {
        run_id,
        status: "queued".into(),
    })
}

/// `guardian.status` accepts `{"run_id": "…"}` or the bare run id.
pub fn parse_status_request(payload: &[u8]) -> Result<String, RequestError> {
    let text = std::str::from_utf8(payload)
        .map_err(|_| bad("request is not UTF-8"))?
        .trim();
    if text.starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| bad(format!("request is not valid JSON: {e}")))?;
        return match value.get("run_id") {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(other) => Err(bad(format!(
                "field `run_id` must be a non-empty string, got {}",
                type_name(other)
            ))),
            None => Err(bad("missing field `run_id`")),
        };
    }
    if text.is_empty() {
        return Err(bad("missing run id"));
    }
    Ok(text.trim_matches('"').to_string())
}

/// The span a run's trace starts with; its trace id is on its log lines too.
fn run_span(request: &RunRequest) -> tracing::Span {
    let span = tracing::info_span!(
        "guardian.run",
        otel.kind = "server",
        target = %request.target,
        trace_id = tracing::field::Empty
    );
    if let Some(id) = span.in_scope(crate::telemetry::current_trace_id) {
        span.record("trace_id", id);
    }
    span
}

/// Serves both endpoints until `shutdown`.
pub async fn serve(bus: Bus, runs: RunStore, shutdown: CancellationToken) -> anyhow::Result<()> {
    let service = bus
        .client
        .service_builder()
        .description("Repo Guardian: start runs and read their status")
        .start(SERVICE_NAME, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| anyhow::anyhow!("starting micro service: {e}"))?;
    let mut run = service
        .endpoint(RUN_ENDPOINT)
        .await
        .map_err(|e| anyhow::anyhow!("adding endpoint {RUN_ENDPOINT}: {e}"))?;
    let mut status = service
        .endpoint(STATUS_ENDPOINT)
        .await
        .map_err(|e| anyhow::anyhow!("adding endpoint {STATUS_ENDPOINT}: {e}"))?;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(request) = run.next() => {
                let reply = match parse_run_request(&request.message.payload) {
                    // The run's trace starts here: every step span descends from it.
                    Ok(req) => match tracing::Instrument::instrument(start_run(&bus, &runs, &req), run_span(&req)).await {
                        Ok(accepted) => Ok(serde_json::to_vec(&accepted).unwrap_or_default().into()),
                        Err(e) => {
                            tracing::error!(error.message = %e, error.cause_chain = ?e, "cannot queue run");
                            Err(service::error::Error { status: format!("cannot queue run: {e}"), code: 503 })
                        }
                    },
                    Err(e) => Err(service::error::Error { status: e.message, code: e.code }),
                };
                let _ = request.respond(reply).await;
            }
            Some(request) = status.next() => {
                let reply = match parse_status_request(&request.message.payload) {
                    Ok(run_id) => match runs.get(&run_id).await {
                        Ok(Some(record)) => Ok(serde_json::to_vec(&record).unwrap_or_default().into()),
                        Ok(None) => Err(service::error::Error { status: format!("run {run_id} not found"), code: 404 }),
                        Err(e) => Err(service::error::Error { status: e.to_string(), code: 503 }),
                    },
                    Err(e) => Err(service::error::Error { status: e.message, code: e.code }),
                };
                let _ = request.respond(reply).await;
            }
        }
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), service.stop()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(payload: &str) -> String {
        parse_run_request(payload.as_bytes()).unwrap_err().message
    }

    #[test]
    fn accepts_good_requests() {
        let r = parse_run_request(br#"{"target":"octo-org/hello-world","dry_run":true}"#).unwrap();
        assert_eq!(r.target, "octo-org/hello-world");
        assert!(r.dry_run);
        assert!(
            !parse_run_request(br#"{"target":"org:octo"}"#)
                .unwrap()
                .dry_run
        );
    }

    #[test]
    fn names_the_problem_of_bad_requests() {
        assert!(err("{not json").contains("not valid JSON"));
        assert!(err(r#"["x"]"#).contains("must be a JSON object"));
        assert!(err(r#"{"target": 5}"#).contains("field `target` must be a string, got a number"));
        assert!(
            err(r#"{"target":"o/r","dry_run":"yes"}"#)
                .contains("field `dry_run` must be a boolean")
        );
        assert!(err(r#"{}"#).contains("missing field `target`"));
        assert!(err(r#"{"target":"team:x"}"#).contains("unknown target form"));
        assert!(
            err(r#"{"target":"octo/bad name"}"#).contains("invalid repository name `bad name`")
        );
        assert!(err(r#"{"target":"o/r","force":true}"#).contains("unknown field `force`"));
    }

    #[test]
    fn status_takes_json_or_a_bare_id() {
        assert_eq!(parse_status_request(br#"{"run_id":"abc"}"#).unwrap(), "abc");
        assert_eq!(parse_status_request(b"abc").unwrap(), "abc");
        assert!(parse_status_request(br#"{"run_id":1}"#).is_err());
    }
}
