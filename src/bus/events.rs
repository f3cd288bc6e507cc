//! The audit trail of each run on `guardian.events.<run_id>.<event>` (stream
//! `GUARDIAN_EVENTS`). Events are facts, published after the fact they report, each with a
//! `Nats-Msg-Id` derived from what it reports so redelivered steps do not repeat them.

use serde::Serialize;

use super::{Bus, BusError};
use crate::domain::RepoRef;

/// Version of the event payload format.
pub const EVENT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Started,
    Planned,
    RepoScanned,
    Finding,
    IssueCreated,
    IssueUpdated,
    IssueReopened,
    IssueClosed,
    RepoReconciled,
    Failed,
    Done,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Started => "started",
            Event::Planned => "planned",
            Event::RepoScanned => "repo_scanned",
            Event::Finding => "finding",
            Event::IssueCreated => "issue_created",
            Event::IssueUpdated => "issue_updated",
            Event::IssueReopened => "issue_reopened",
            Event::IssueClosed => "issue_closed",
            Event::RepoReconciled => "repo_reconciled",
            Event::Failed => "failed",
            Event::Done => "done",
        }
    }
}

#[derive(Serialize, schemars::JsonSchema)]
struct EventPayload<'a> {
    v: u32,
    run_id: &'a str,
    event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    repo: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    time: time::OffsetDateTime,
    data: serde_json::Value,
}

/// The JSON Schema of an event payload (published in `docs/schemas/`).
pub fn payload_schema() -> schemars::Schema {
    schemars::schema_for!(EventPayload<'static>)
}

/// Publishes one event. `key` distinguishes events of the same kind within a run (a
/// fingerprint, an issue number) for deduplication.
pub async fn emit(
    bus: &Bus,
    run_id: &str,
    event: Event,
    repo: Option<&RepoRef>,
    key: &str,
    data: serde_json::Value,
) -> Result<(), BusError> {
    let payload = EventPayload {
        v: EVENT_VERSION,
        run_id,
        event: event.as_str(),
        repo: repo.map(RepoRef::full_name),
        time: time::OffsetDateTime::now_utc(),
        data,
    };
    let bytes = serde_json::to_vec(&payload).map_err(|e| BusError::nats("encoding event", e))?;
    let repo_key = repo.map(RepoRef::full_name).unwrap_or_default();
    bus.publish(
        format!("guardian.events.{run_id}.{}", event.as_str()),
        &format!("ev.{run_id}.{}.{repo_key}.{key}", event.as_str()),
        bytes,
    )
    .await
}
