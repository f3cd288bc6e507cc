//! A client of the fleet: start a run through `guardian.run` and follow its record in
//! `guardian_runs` until it is final. Used by the CLI and by anything embedding the fleet.
//!
//! Failures are typed ([`ClientError`]) so the CLI can tell "no worker", "not
//! provisioned", "refused" and "timed out" apart and say what to do; nothing here prints.

use std::time::Duration;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::kv;
use futures::StreamExt as _;

use crate::bus::{Bus, RUN_ENDPOINT, RUNS_BUCKET};
use crate::service::{RunAccepted, RunRequest};
use crate::store::runs::RunRecord;

/// How long `guardian.run` may take to answer before the fleet is considered absent.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

type Source = Box<dyn std::error::Error + Send + Sync>;

/// Why a run could not be started or followed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing subscribes to `guardian.run`: no worker is connected to this server.
    #[error("no worker answers {RUN_ENDPOINT}")]
    NoWorker,
    /// Something subscribes but did not answer in time (overloaded or stuck workers).
    #[error("no answer from {RUN_ENDPOINT} within {}", humantime::format_duration(*.0))]
    NoAnswer(Duration),
    /// The service refused the request; `code` is the micro-protocol error code.
    #[error("run refused ({code}): {message}")]
    Refused { code: String, message: String },
    /// A stream or bucket the command needs does not exist on the server.
    #[error("`{name}` does not exist on this NATS server")]
    NotProvisioned { name: String },
    /// The run did not reach a final status in time; `last` is the last record seen.
    #[error("run {run_id} did not finish within {}", humantime::format_duration(*timeout))]
    Timeout {
        run_id: String,
        timeout: Duration,
        last: Option<Box<RunRecord>>,
    },
    /// The service answered something that is not a `RunAccepted`.
    #[error("unexpected answer from {RUN_ENDPOINT}")]
    Decode(#[source] serde_json::Error),
    /// Any other NATS failure, with what was being done.
    #[error("NATS: {context}")]
    Nats {
        context: String,
        #[source]
        source: Source,
    },
}

impl ClientError {
    fn nats(context: impl Into<String>, source: impl Into<Source>) -> Self {
        ClientError::Nats {
            context: context.into(),
            source: source.into(),
        }
    }
}

/// Opens a key-value bucket; a missing bucket is [`ClientError::NotProvisioned`], told
/// apart from other failures by the server's error code, not by its text.
pub async fn open_bucket(bus: &Bus, bucket: &str) -> Result<kv::Store, ClientError> {
    bus.js.get_key_value(bucket).await.map_err(|e| {
        let missing = std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<async_nats::jetstream::context::GetStreamError>())
            .is_some_and(|s| stream_not_found(&s.kind()));
        if missing {
            ClientError::NotProvisioned {
                name: format!("bucket {bucket}"),
            }
        } else {
            ClientError::nats(format!("opening bucket {bucket}"), e)
        }
    })
}

/// Checks that a stream exists; a missing one is [`ClientError::NotProvisioned`].
pub async fn require_stream(bus: &Bus, stream: &str) -> Result<(), ClientError> {
    match bus.js.get_stream(stream).await {
        Ok(_) => Ok(()),
        Err(e) if stream_not_found(&e.kind()) => Err(ClientError::NotProvisioned {
            name: format!("stream {stream}"),
        }),
        Err(e) => Err(ClientError::nats(format!("reading stream {stream}"), e)),
    }
}

fn stream_not_found(kind: &GetStreamErrorKind) -> bool {
    matches!(kind, GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// Sends a `guardian.run` request; a service error reply becomes [`ClientError::Refused`].
pub async fn request_run(
    bus: &Bus,
    target: &str,
    dry_run: bool,
) -> Result<RunAccepted, ClientError> {
    let request = RunRequest {
        target: target.to_string(),
        dry_run,
    };
    let payload = serde_json::to_vec(&request).map_err(ClientError::Decode)?;
    // The run continues the caller's trace (a webhook delivery, a schedule), if any.
    let mut headers = async_nats::HeaderMap::new();
    crate::telemetry::inject(&mut headers);
    let reply = tokio::time::timeout(
        REQUEST_TIMEOUT,
        bus.client
            .request_with_headers(RUN_ENDPOINT, headers, payload.into()),
    )
    .await
    .map_err(|_| ClientError::NoAnswer(REQUEST_TIMEOUT))?
    .map_err(|e| match e.kind() {
        async_nats::RequestErrorKind::NoResponders => ClientError::NoWorker,
        async_nats::RequestErrorKind::TimedOut => ClientError::NoAnswer(REQUEST_TIMEOUT),
        _ => ClientError::nats(format!("requesting {RUN_ENDPOINT}"), e),
    })?;
    if let Some(headers) = &reply.headers
        && let Some(error) = headers.get("Nats-Service-Error")
    {
        let code = headers
            .get("Nats-Service-Error-Code")
            .map(|c| c.as_str().to_string())
            .unwrap_or_default();
        return Err(ClientError::Refused {
            code,
            message: error.as_str().to_string(),
        });
    }
    serde_json::from_slice(&reply.payload).map_err(ClientError::Decode)
}

/// Watches the run record until it is final.
pub async fn follow(bus: &Bus, run_id: &str, timeout: Duration) -> Result<RunRecord, ClientError> {
    follow_with(bus, run_id, timeout, |_| {}).await
}

/// Like [`follow`], calling `on_update` with every version of the record (progress bars,
/// progress lines).
pub async fn follow_with(
    bus: &Bus,
    run_id: &str,
    timeout: Duration,
    mut on_update: impl FnMut(&RunRecord),
) -> Result<RunRecord, ClientError> {
    let kv = open_bucket(bus, RUNS_BUCKET).await?;
    let mut watch = kv
        .watch_with_history(run_id)
        .await
        .map_err(|e| ClientError::nats(format!("watching run {run_id}"), e))?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last: Option<RunRecord> = None;
    loop {
        let Ok(next) = tokio::time::timeout_at(deadline, watch.next()).await else {
            return Err(ClientError::Timeout {
                run_id: run_id.to_string(),
                timeout,
                last: last.map(Box::new),
            });
        };
        let Some(entry) = next else {
            return Err(ClientError::nats(
                format!("watching run {run_id}"),
                "the watch ended (server gone?)",
            ));
        };
        let entry = entry.map_err(|e| ClientError::nats(format!("watching run {run_id}"), e))?;
        let Ok(record) = crate::store::decode::<RunRecord>(run_id, &entry.value) else {
            continue;
        };
        on_update(&record);
        if record.status.is_final() {
            return Ok(record);
        }
        last = Some(record);
    }
}
