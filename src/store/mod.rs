//! Records kept in JetStream key-value buckets: runs (`guardian_runs`) and per-repository
//! state and leases (`guardian_repos`). Every change is a compare-and-set on the key's
//! revision, so concurrent workers never overwrite each other's updates.

pub mod repos;
pub mod runs;

use async_nats::jetstream::kv;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bus::BusError;

/// Attempts before a compare-and-set loop gives up (each retry re-reads the record).
const CAS_ATTEMPTS: usize = 64;

/// Why a stored record could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("record `{key}` in {bucket} is unreadable: {message}")]
    Corrupt {
        bucket: &'static str,
        key: String,
        message: String,
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
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            bucket: R::BUCKET,
            key: key.to_string(),
            message: e.to_string(),
        })?;
    let version = value.get("v").and_then(|v| v.as_u64()).unwrap_or(0);
    if version > u64::from(R::VERSION) {
        return Err(StoreError::NewerVersion {
            bucket: R::BUCKET,
            key: key.to_string(),
            found: version,
            supported: R::VERSION,
        });
    }
    serde_json::from_value(value).map_err(|e| StoreError::Corrupt {
        bucket: R::BUCKET,
        key: key.to_string(),
        message: e.to_string(),
    })
}

fn encode<R: Record>(record: &R) -> bytes::Bytes {
    serde_json::to_vec(record).unwrap_or_default().into()
}

/// Creates a record; `Ok(false)` when the key already exists.
pub async fn create<R: Record>(
    store: &kv::Store,
    key: &str,
    record: &R,
) -> Result<bool, StoreError> {
    match store.create(key, encode(record)).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(BusError::nats(format!("creating {key} in {}", R::BUCKET), e).into()),
    }
}

/// Compare-and-set loop: reads the record (or `init()` when absent), lets `change` modify
/// it, writes it back at the revision read. `change` returns `false` to leave it untouched.
/// Returns the record as stored (or as read when untouched) and whether it was written.
pub async fn update<R: Record + Clone>(
    store: &kv::Store,
    key: &str,
    init: impl Fn() -> Option<R>,
    mut change: impl FnMut(&mut R) -> bool,
) -> Result<Option<(R, bool)>, StoreError> {
    for _ in 0..CAS_ATTEMPTS {
        let current = read::<R>(store, key).await?;
        let (mut record, revision) = match current {
            Some((r, rev)) => (r, Some(rev)),
            None => match init() {
                Some(r) => (r, None),
                None => return Ok(None),
            },
        };
        if !change(&mut record) {
            return Ok(Some((record, false)));
        }
        let written = match revision {
            Some(rev) => store.update(key, encode(&record), rev).await.is_ok(),
            None => create(store, key, &record).await?,
        };
        if written {
            return Ok(Some((record, true)));
        }
        // Someone else wrote in between: read again and re-apply the change.
        tokio::task::yield_now().await;
    }
    Err(StoreError::Contended {
        bucket: R::BUCKET,
        key: key.to_string(),
    })
}
