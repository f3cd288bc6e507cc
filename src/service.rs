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
use crate::store::runs::{RunRecord, RunStatus, RunStore, parse_run_id, truncate};

/// A validated `guardian.run` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunRequest {
    /// `OWNER/REPO`, `org:NAME`, `user:NAME`, or `installations` (every repository of every
    /// installation of the configured GitHub App).
    pub target: String,
    #[serde(default)]
    pub dry_run: bool,
}

/// The reply of `guardian.run`: the run started, or — with `existing` — the run of the same
/// target that is still active (one active run per target).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunAccepted {
    pub run_id: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub existing: bool,
}

/// A request the caller got wrong (400) or something missing (404); the text is the reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RequestError {
    pub code: usize,
    pub message: String,
}

/// Longest error text a reply carries: an oversized request is never echoed back whole.
const MAX_REPLY_TEXT: usize = 512;
/// Longest target accepted (a GitHub owner has at most 39 characters, a name 100).
const MAX_TARGET: usize = 256;

fn bad(message: impl Into<String>) -> RequestError {
    RequestError {
        code: 400,
        message: truncate(&message.into(), MAX_REPLY_TEXT),
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

/// A JSON object whose keys are unique: `{"dry_run":true,"dry_run":false}` is refused
/// instead of silently keeping the last value.
struct UniqueObject(serde_json::Map<String, serde_json::Value>);

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = UniqueObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<UniqueObject, A::Error> {
                let mut out = serde_json::Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    if out.contains_key(&key) {
                        return Err(serde::de::Error::custom(format!("duplicate field `{key}`")));
                    }
                    let value = map.next_value()?;
                    out.insert(key, value);
                }
                Ok(UniqueObject(out))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// Parses a request object: valid JSON, an object, no duplicate keys, then the typed
/// request `T` (whose fields deny unknown names and say what they expected).
fn parse_object<T: serde::de::DeserializeOwned>(
    payload: &[u8],
    example: &str,
) -> Result<T, RequestError> {
    let value: serde_json::Value = serde_json::from_slice(payload)
        .map_err(|e| bad(format!("request is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(bad(format!(
            "request must be a JSON object like {example}, got {}",
            type_name(&value)
        )));
    }
    let UniqueObject(map) = serde_json::from_slice(payload).map_err(|e| bad(e.to_string()))?;
    serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| bad(e.to_string()))
}

/// A field that must be a string, named in the error.
fn string_field<'de, D: serde::Deserializer<'de>>(
    name: &'static str,
    d: D,
) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        other => Err(serde::de::Error::custom(format!(
            "field `{name}` must be a string, got {}",
            type_name(&other)
        ))),
    }
}

/// The wire form of `guardian.run`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunRequestWire {
    #[serde(deserialize_with = "target_field")]
    target: String,
    #[serde(default, deserialize_with = "dry_run_field")]
    dry_run: Option<bool>,
}

fn target_field<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    string_field("target", d)
}

fn dry_run_field<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Bool(b) => Ok(Some(b)),
        other => Err(serde::de::Error::custom(format!(
            "field `dry_run` must be a boolean, got {}",
            type_name(&other)
        ))),
    }
}

/// Parses and validates a `guardian.run` payload, naming the field and the problem.
pub fn parse_run_request(payload: &[u8]) -> Result<RunRequest, RequestError> {
    let wire: RunRequestWire = parse_object(payload, r#"{"target": "owner/repo"}"#)?;
    if wire.target.len() > MAX_TARGET {
        return Err(bad(format!(
            "field `target` is {} bytes long; at most {MAX_TARGET} are allowed",
            wire.target.len()
        )));
    }
    let target = Target::parse(&wire.target).map_err(|e| bad(e.to_string()))?;
    Ok(RunRequest {
        target: target.to_string(),
        dry_run: wire.dry_run.unwrap_or(false),
    })
}

/// Records a new run and queues its plan step — unless a run of the same target is still
/// active: then that run is the answer (`existing`). A plan that cannot be queued fails
/// its run at once, so no run waits `queued` forever.
pub async fn start_run(
    bus: &Bus,
    runs: &RunStore,
    request: &RunRequest,
) -> Result<RunAccepted, anyhow::Error> {
    let run_id = uuid::Uuid::now_v7().to_string();
    let record = RunRecord::new(&run_id, &request.target, request.dry_run);
    runs.create(&record).await?;
    match runs.claim_target(&request.target, &run_id).await {
        Ok(None) => {}
        Ok(Some(active)) => {
            runs.discard(&run_id).await?;
            let status = runs
                .get(&active)
                .await?
                .map(|r| r.status.as_str().to_string())
                .unwrap_or_else(|| "queued".into());
            tracing::info!(run_id = %active, target = %request.target, "a run of this target is active; answering with it");
            return Ok(RunAccepted {
                run_id: active,
                status,
                existing: true,
            });
        }
        Err(e) => {
            let _ = runs.discard(&run_id).await;
            return Err(e.into());
        }
    }
    if let Err(e) = queue_plan(bus, &run_id, request).await {
        let reason = format!("the plan could not be queued: {e}");
        let failed = runs
            .end_unplanned(&run_id, RunStatus::Failed, "plan", &reason)
            .await;
        if failed.is_ok() {
            let _ = runs.release_target(&request.target, &run_id).await;
        }
        // When even that failed, the sweeper ends the run after `worker.stall_timeout`.
        return Err(e);
    }
    tracing::info!(run_id = %run_id, target = %request.target, dry_run = request.dry_run, "run queued");
    Ok(RunAccepted {
        run_id,
        status: "queued".into(),
        existing: false,
    })
}

async fn queue_plan(bus: &Bus, run_id: &str, request: &RunRequest) -> anyhow::Result<()> {
    events::emit(
        bus,
        run_id,
        Event::Started,
        None,
        "",
        serde_json::json!({ "target": request.target, "dry_run": request.dry_run }),
    )
    .await?;
    let envelope = Envelope::new(
        run_id,
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
    Ok(())
}

/// The wire form of `guardian.status`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusRequestWire {
    #[serde(deserialize_with = "run_id_field")]
    run_id: String,
}

fn run_id_field<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    string_field("run_id", d)
}

/// `guardian.status` accepts `{"run_id": "…"}` or the bare run id; a run id is a UUID.
pub fn parse_status_request(payload: &[u8]) -> Result<String, RequestError> {
    let text = std::str::from_utf8(payload)
        .map_err(|_| bad("request is not UTF-8"))?
        .trim();
    let raw = if text.starts_with('{') {
        let wire: StatusRequestWire = parse_object(payload, r#"{"run_id": "…"}"#)?;
        wire.run_id
    } else {
        text.trim_matches('"').to_string()
    };
    if raw.is_empty() {
        return Err(bad("missing run id"));
    }
    parse_run_id(&raw).ok_or_else(|| {
        bad(format!(
            "invalid run id `{}`: expected a UUID as returned by guardian.run",
            truncate(&raw, 64)
        ))
    })
}

/// The span a run's trace starts with, continuing the trace of whoever asked when the
/// request carries a `traceparent` (a webhook delivery, a schedule, a traced client); its
/// trace id is on its log lines too.
fn run_span(request: &RunRequest, headers: Option<&async_nats::HeaderMap>) -> tracing::Span {
    let span = tracing::info_span!(
        "guardian.run",
        otel.kind = "server",
        target = %request.target,
        trace_id = tracing::field::Empty
    );
    crate::telemetry::continue_trace(span, crate::telemetry::extract(headers))
}

/// Serves both endpoints until `shutdown`. `subscribed` is told once the server has the
/// endpoints' subscriptions, so a worker reports ready only when `guardian.run` answers.
pub async fn serve(
    bus: Bus,
    runs: RunStore,
    shutdown: CancellationToken,
    subscribed: tokio::sync::oneshot::Sender<()>,
) -> anyhow::Result<()> {
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
    // A subscription is only sent, not yet known to the server, until a flush returns.
    bus.client
        .flush()
        .await
        .map_err(|e| anyhow::anyhow!("subscribing the service endpoints: {e}"))?;
    let _ = subscribed.send(());
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(request) = run.next() => {
                let reply = match parse_run_request(&request.message.payload) {
                    // The run's trace starts here: every step span descends from it.
                    Ok(req) => match tracing::Instrument::instrument(start_run(&bus, &runs, &req), run_span(&req, request.message.headers.as_ref())).await {
                        Ok(accepted) => Ok(serde_json::to_vec(&accepted).unwrap_or_default().into()),
                        Err(e) => {
                            tracing::error!(error.message = %e, error.cause_chain = ?e, "cannot queue run");
                            Err(service::error::Error { status: truncate(&format!("cannot queue run: {e}"), MAX_REPLY_TEXT), code: 503 })
                        }
                    },
                    Err(e) => Err(service::error::Error { status: e.message, code: e.code }),
                };
                let _ = request.respond(reply).await;
            }
            Some(request) = status.next() => {
                let reply = match parse_status_request(&request.message.payload) {
                    Ok(run_id) => match runs.view(&run_id).await {
                        Ok(Some(record)) => Ok(serde_json::to_vec(&record).unwrap_or_default().into()),
                        Ok(None) => Err(service::error::Error { status: format!("run {run_id} not found"), code: 404 }),
                        Err(e) => Err(service::error::Error { status: truncate(&e.to_string(), MAX_REPLY_TEXT), code: 503 }),
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
    fn duplicate_keys_and_oversized_targets_are_refused_without_echo() {
        assert!(
            err(r#"{"target":"o/r","dry_run":true,"dry_run":false}"#)
                .contains("duplicate field `dry_run`")
        );
        let huge = format!(r#"{{"target":"{}"}}"#, "a".repeat(1_000_000));
        let message = err(&huge);
        assert!(message.len() <= 600, "{} bytes", message.len());
        assert!(message.contains("at most 256"), "{message}");
    }

    #[test]
    fn status_takes_json_or_a_bare_uuid() {
        let id = "0190c1de-0000-7000-8000-000000000000";
        assert_eq!(
            parse_status_request(format!(r#"{{"run_id":"{id}"}}"#).as_bytes()).unwrap(),
            id
        );
        assert_eq!(parse_status_request(id.as_bytes()).unwrap(), id);
        assert_eq!(
            parse_status_request(br#"{"run_id":1}"#).unwrap_err().code,
            400
        );
        let bad_id = parse_status_request(b"no-such-run").unwrap_err();
        assert_eq!(bad_id.code, 400);
        assert!(
            bad_id.message.contains("invalid run id"),
            "{}",
            bad_id.message
        );
        assert!(
            parse_status_request(br#"{"run_id":"x","run_id":"y"}"#)
                .unwrap_err()
                .message
                .contains("duplicate")
        );
    }
}
