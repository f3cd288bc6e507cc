//! Reading the latest value of many KV keys at once: an ordered consumer over the
//! bucket's stream, filtered by subject, last message per subject. Used for a run's
//! per-repository progress, the run list and the flag snapshot; its cost is linear in the
//! keys matched, not in the bucket.

use std::time::Duration;

use async_nats::jetstream::{consumer, kv};
use futures::StreamExt as _;

use super::BusError;

/// The latest entry of one key.
#[derive(Debug, Clone)]
pub struct Listed {
    pub key: String,
    pub value: bytes::Bytes,
    pub revision: u64,
    /// When the server stored it (the server's clock, not a worker's).
    pub stored_at: time::OffsetDateTime,
}

/// Every live key of `store` matching the subject filter `filter` (`*` one token, `>` the
/// rest), with its latest value, each key once. Reads the bucket's stream once, so the cost
/// is linear in the keys matched, not in the bucket. A key written while the listing runs
/// arrives again with its newer value (the consumer's pending count includes it): the
/// newest revision wins, never two entries for one key.
pub async fn list(store: &kv::Store, filter: &str) -> Result<Vec<Listed>, BusError> {
    let context = || format!("listing `{filter}` in {}", store.name);
    let consumer = store
        .stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: format!("{}{filter}", store.prefix),
            deliver_policy: consumer::DeliverPolicy::LastPerSubject,
            ..Default::default()
        })
        .await
        .map_err(|e| BusError::nats(context(), e))?;
    let mut remaining = consumer.cached_info().num_pending;
    // Key → its newest entry (`None` once deleted), in key order.
    let mut out: std::collections::BTreeMap<String, Option<Listed>> = Default::default();
    if remaining == 0 {
        return Ok(Vec::new());
    }
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| BusError::nats(context(), e))?;
    while remaining > 0 {
        let next = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .map_err(|e| BusError::nats(context(), e))?;
        let Some(message) = next else { break };
        let message = message.map_err(|e| BusError::nats(context(), e))?;
        let info = message
            .info()
            .map_err(|e| BusError::nats(context(), e.to_string()))?;
        remaining = info.pending;
        let (revision, stored_at) = (info.stream_sequence, info.published);
        let deleted = message
            .headers
            .as_ref()
            .and_then(|h| h.get("KV-Operation"))
            .is_some_and(|op| op.as_str() == "DEL" || op.as_str() == "PURGE");
        let key = message
            .subject
            .strip_prefix(store.prefix.as_str())
            .unwrap_or(&message.subject)
            .to_string();
        let listed = (!deleted).then(|| Listed {
            key: key.clone(),
            value: message.payload.clone(),
            revision,
            stored_at,
        });
        match out.get_mut(&key) {
            Some(seen)
                if seen
                    .as_ref()
                    .is_some_and(|s: &Listed| s.revision > revision) => {}
            _ => {
                out.insert(key, listed);
            }
        }
    }
    Ok(out.into_values().flatten().collect())
}
