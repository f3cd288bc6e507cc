//! Dead letters: what a permanently failed step leaves behind, in `GUARDIAN_DLQ` under
//! `guardian.dlq.<step>`, with the original payload and headers, the reason and the
//! delivery count. `guardian dlq list` reads them; `guardian dlq replay` puts them back.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::consumer;
use base64::Engine as _;
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use super::{Bus, BusError, DLQ_STREAM, Step};

/// Version of the dead-letter record format.
pub const DEAD_LETTER_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub v: u32,
    pub step: Step,
    /// Subject the message was consumed from; a replay publishes there.
    pub subject: String,
    /// Sequence of the original message in `GUARDIAN_WORK`.
    pub work_sequence: u64,
    pub delivered: i64,
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The original payload: UTF-8 text when it was, base64 otherwise.
    pub payload: String,
    pub payload_base64: bool,
    pub headers: BTreeMap<String, Vec<String>>,
    #[serde(with = "time::serde::rfc3339")]
    pub dead_lettered_at: time::OffsetDateTime,
}

/// A dead letter as stored, with its `GUARDIAN_DLQ` sequence (the id `replay` takes).
#[derive(Debug, Clone, Serialize)]
pub struct StoredDeadLetter {
    pub id: u64,
    #[serde(flatten)]
    pub letter: DeadLetter,
}

impl DeadLetter {
    /// A dead letter for a message of `GUARDIAN_WORK` (delivered to a consumer, or read
    /// back by sequence after the server gave up on it).
    pub fn new(
        step: Step,
        subject: &str,
        payload: &[u8],
        headers: Option<&async_nats::HeaderMap>,
        work_sequence: u64,
        delivered: i64,
        error: &str,
    ) -> DeadLetter {
        let (text, payload_base64) = match std::str::from_utf8(payload) {
            Ok(text) => (text.to_string(), false),
            Err(_) => (
                base64::engine::general_purpose::STANDARD.encode(payload),
                true,
            ),
        };
        let mut kept = BTreeMap::new();
        if let Some(h) = headers {
            for (name, values) in h.iter() {
                kept.insert(
                    name.to_string(),
                    values.iter().map(|v| v.as_str().to_string()).collect(),
                );
            }
        }
        DeadLetter {
            v: DEAD_LETTER_VERSION,
            step,
            subject: subject.to_string(),
            work_sequence,
            delivered,
            error: error.to_string(),
            run_id: super::envelope::Envelope::peek_run_id(payload),
            payload: text,
            payload_base64,
            headers: kept,
            dead_lettered_at: time::OffsetDateTime::now_utc(),
        }
    }

    pub fn payload_bytes(&self) -> Vec<u8> {
        if self.payload_base64 {
            base64::engine::general_purpose::STANDARD
                .decode(&self.payload)
                .unwrap_or_default()
        } else {
            self.payload.clone().into_bytes()
        }
    }
}

pub async fn publish(bus: &Bus, letter: &DeadLetter) -> Result<(), BusError> {
    let payload =
        serde_json::to_vec(letter).map_err(|e| BusError::nats("encoding dead letter", e))?;
    // Deduplicated by the original message, so a retried dead-lettering (a redelivery
    // after the record on the run failed, or the same stranded message seen twice) stores
    // one letter.
    bus.publish(
        letter.step.dlq_subject(),
        &format!("dlq.{}", letter.work_sequence),
        payload,
    )
    .await
}

/// Every dead letter currently stored, oldest first.
pub async fn list(bus: &Bus) -> Result<Vec<StoredDeadLetter>, BusError> {
    let stream = bus
        .js
        .get_stream(DLQ_STREAM)
        .await
        .map_err(|e| BusError::nats("binding GUARDIAN_DLQ", e))?;
    let info = stream
        .get_info()
        .await
        .map_err(|e| BusError::nats("reading GUARDIAN_DLQ", e))?;
    if info.state.messages == 0 {
        return Ok(vec![]);
    }
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| BusError::nats("reading GUARDIAN_DLQ", e))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| BusError::nats("reading GUARDIAN_DLQ", e))?;
    let mut out = Vec::new();
    while let Ok(Some(next)) = tokio::time::timeout(Duration::from_secs(2), messages.next()).await {
        let message = next.map_err(|e| BusError::nats("reading GUARDIAN_DLQ", e))?;
        let id = message.info().map(|i| i.stream_sequence).unwrap_or(0);
        match serde_json::from_slice::<DeadLetter>(&message.payload) {
            Ok(letter) => out.push(StoredDeadLetter { id, letter }),
            Err(e) => tracing::warn!(id, error.message = %e, "unreadable dead letter skipped"),
        }
        if id >= info.state.last_sequence {
            break;
        }
    }
    Ok(out)
}

/// Publishes the dead letter's payload back onto its work subject and removes it from the
/// dead-letter stream. Returns the replayed letters.
pub async fn replay(bus: &Bus, id: Option<u64>) -> Result<Vec<StoredDeadLetter>, BusError> {
    let letters = list(bus).await?;
    let chosen: Vec<_> = match id {
        Some(id) => letters.into_iter().filter(|l| l.id == id).collect(),
        None => letters,
    };
    if let (Some(id), true) = (id, chosen.is_empty()) {
        return Err(BusError::nats(
            "replay",
            format!("no dead letter with id {id}"),
        ));
    }
    let stream = bus
        .js
        .get_stream(DLQ_STREAM)
        .await
        .map_err(|e| BusError::nats("binding GUARDIAN_DLQ", e))?;
    for stored in &chosen {
        let mut headers = async_nats::HeaderMap::new();
        for (name, values) in &stored.letter.headers {
            if name.eq_ignore_ascii_case("Nats-Msg-Id") || name.starts_with("Nats-") {
                continue;
            }
            for value in values {
                headers.append(name.as_str(), value.as_str());
            }
        }
        bus.publish_with_headers(
            stored.letter.subject.clone(),
            &format!("replay.{}.{}", stored.id, stored.letter.work_sequence),
            stored.letter.payload_bytes(),
            headers,
        )
        .await?;
        stream
            .delete_message(stored.id)
            .await
            .map_err(|e| BusError::nats("removing replayed dead letter", e))?;
    }
    Ok(chosen)
}
