//! Records kept in JetStream key-value buckets: runs and their per-repository progress
//! (`guardian_runs`), per-repository state (`guardian_repos`) and fenced leases
//! (`guardian_leases`). Every change is a compare-and-set on the key's revision, so
//! concurrent workers never overwrite each other's updates.
//!
//! KV failures are read by kind, never by message: a compare-and-set is a *conflict* only
//! when the server answers "wrong last sequence" (JetStream error 10071, async-nats
//! `WrongLastRevision`); a conflict is retried with jittered exponential backoff up to a
//! bound, and every other failure is a NATS error that keeps its source.

pub mod deferred;
pub mod leases;
pub mod repos;
pub mod runs;

use std::hash::{BuildHasher as _, Hasher as _};
use std::time::Duration;

use async_nats::jetstream::kv;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bus::BusError;

/// Attempts before a compare-and-set loop gives up (each retry re-reads the record).
const CAS_ATTEMPTS: u32 = 12;
/// First and largest pause between two compare-and-set attempts (before jitter).
const CAS_BACKOFF_FIRST: Duration = Duration::from_millis(2);
const CAS_BACKOFF_MAX: Duration = Duration::from_millis(400);

/// Why a stored record could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("record `{key}` in {bucket} is unreadable: {source}")]
    Corrupt {
        bucket: &'static str,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "record `{key}` in {bucket} has version {found}, newer than this worker understands ({supported})"
    )]
    NewerVersion {
        bucket: &'static str,
        key: String,
        found: u64,
        supported: u32,
    },
    #[error("record `{key}` in {bucket} kept changing; gave up after {CAS_ATTEMPTS} attempts")]
    Contended { bucket: &'static str, key: String },
    /// A failure shared by every caller of one batched write (a group commit of counts).
    #[error(transparent)]
    Shared(std::sync::Arc<StoreError>),
    /// The lease this write was fenced by is no longer current: another holder took over.
    #[error("lease `{key}` was lost: {reason}")]
    LeaseLost { key: String, reason: String },
}

/// A versioned record type stored as JSON.
pub trait Record: Serialize + DeserializeOwned {
    const BUCKET: &'static str;
    const VERSION: u32;
}

/// Reads a record and the revision it was read at.
pub async fn read<R: Record>(store: &kv::Store, key: &str) -> Result<Option<(R, u64)>, StoreError> {
    let entry = store
        .entry(key)
        .await
        .map_err(|e| BusError::nats(format!("reading {key} from {}", R::BUCKET), e))?;
    let Some(entry) = entry else { return Ok(None) };
    if entry.operation != kv::Operation::Put {
        return Ok(None);
    }
    decode::<R>(key, &entry.value).map(|r| Some((r, entry.revision)))
}

/// Decodes a record, refusing newer versions with a reason instead of misreading them.
pub fn decode<R: Record>(key: &str, bytes: &[u8]) -> Result<R, StoreError> {
    let corrupt = |source| StoreError::Corrupt {
        bucket: R::BUCKET,
        key: key.to_string(),
        source,
    };
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(corrupt)?;
    let version = value.get("v").and_then(|v| v.as_u64()).unwrap_or(0);
    if version > u64::from(R::VERSION) {
        return Err(StoreError::NewerVersion {
            bucket: R::BUCKET,
            key: key.to_string(),
            found: version,
            supported: R::VERSION,
        });
    }
    serde_json::from_value(value).map_err(corrupt)
}

fn encode<R: Record>(record: &R) -> bytes::Bytes {
    serde_json::to_vec(record).unwrap_or_default().into()
}

/// Creates a record; `Ok(None)` when the key already exists, else its revision.
pub async fn create<R: Record>(
    store: &kv::Store,
    key: &str,
    record: &R,
) -> Result<Option<u64>, StoreError> {
    match store.create(key, encode(record)).await {
        Ok(revision) => Ok(Some(revision)),
        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(BusError::nats(format!("creating {key} in {}", R::BUCKET), e).into()),
    }
}

/// Writes `record` at `revision`; `Ok(None)` when the server says the revision moved (a
/// conflict), any other failure is an error.
pub async fn write_at<R: Record>(
    store: &kv::Store,
    key: &str,
    record: &R,
    revision: u64,
) -> Result<Option<u64>, StoreError> {
    match store.update(key, encode(record), revision).await {
        Ok(revision) => Ok(Some(revision)),
        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
        Err(e) => Err(BusError::nats(format!("updating {key} in {}", R::BUCKET), e).into()),
    }
}

/// Full-jitter exponential backoff before compare-and-set attempt `attempt` (0-based).
pub fn cas_backoff(attempt: u32) -> Duration {
    let ceiling = CAS_BACKOFF_FIRST
        .saturating_mul(1 << attempt.min(16))
        .min(CAS_BACKOFF_MAX);
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX).max(1);
    Duration::from_nanos(random % nanos)
}

/// What a compare-and-set loop did.
#[derive(Debug, Clone)]
pub struct Updated<R> {
    /// The record as stored (or as read, when `change` left it untouched).
    pub record: R,
    pub written: bool,
    /// Revision of the record as stored.
    pub revision: u64,
}

/// Compare-and-set loop: reads the record (or `init()` when absent), lets `change` modify
/// it, writes it back at the revision read. `change` returns `false` to leave it untouched.
/// Conflicts are retried with jittered backoff; `None` when absent and `init` gives none.
pub async fn update<R: Record + Clone>(
    store: &kv::Store,
    key: &str,
    init: impl Fn() -> Option<R>,
    mut change: impl FnMut(&mut R) -> bool,
) -> Result<Option<Updated<R>>, StoreError> {
    for attempt in 0..CAS_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(cas_backoff(attempt - 1)).await;
        }
        let current = read::<R>(store, key).await?;
        let (mut record, revision) = match current {
            Some((r, rev)) => (r, Some(rev)),
            None => match init() {
                Some(r) => (r, None),
                None => return Ok(None),
            },
        };
        if !change(&mut record) {
            return Ok(Some(Updated {
                record,
                written: false,
                revision: revision.unwrap_or(0),
            }));
        }
        let written = match revision {
            Some(rev) => write_at(store, key, &record, rev).await?,
            None => create(store, key, &record).await?,
        };
        if let Some(revision) = written {
            return Ok(Some(Updated {
                record,
                written: true,
                revision,
            }));
        }
    }
    Err(StoreError::Contended {
        bucket: R::BUCKET,
        key: key.to_string(),
    })
}

pub use crate::bus::latest::Listed;

/// Every live key of `store` matching the subject filter `filter`, with its latest value.
pub async fn list(store: &kv::Store, filter: &str) -> Result<Vec<Listed>, StoreError> {
    Ok(crate::bus::latest::list(store, filter).await?)
}

/// Encodes free text (a target, a repository name) as one KV key token: letters, digits,
/// `-` and `_` stay, everything else is `=XX` (hex of the byte); lower case, because
/// GitHub names are case-insensitive.
pub fn key_token(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.to_lowercase().bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("={byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_tokens_are_single_valid_tokens_and_distinct() {
        assert_eq!(
            key_token("Octo-Org/hello.world"),
            "octo-org=2Fhello=2Eworld"
        );
        assert_eq!(key_token("org:octo"), "org=3Aocto");
        assert_ne!(key_token("a/b.c"), key_token("a.b/c"));
    }

    #[test]
    fn cas_backoff_is_bounded_and_grows() {
        for attempt in 0..40 {
            assert!(cas_backoff(attempt) <= CAS_BACKOFF_MAX);
        }
        assert!(cas_backoff(0) <= CAS_BACKOFF_FIRST);
    }
}
