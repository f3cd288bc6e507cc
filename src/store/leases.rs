//! Fenced leases in `guardian_leases`: one key per lease (`repo.<owner/name>` for a
//! repository's reconcile, `sweeper` for the fleet's sweeper).
//!
//! Expiry is the server's business, never a worker's clock: the bucket's `max_age` is the
//! lease TTL, so a key nobody renews disappears that long after its last write, and the
//! next `create` succeeds. The KV revision of the lease is its *fencing token*: renewing is
//! a compare-and-set at the held revision (a lost lease cannot be renewed), and writes made
//! under a lease check that revision is still current and stamp it on what they write, so a
//! holder that stalled past the TTL can neither renew nor overwrite what a newer holder
//! wrote. Reading a lease never renews it.

use serde::{Deserialize, Serialize};

use async_nats::jetstream::kv;

use super::{Record, StoreError};
use crate::bus::BusError;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeaseRecord {
    v: u32,
    holder: String,
}

impl Record for LeaseRecord {
    const BUCKET: &'static str = crate::bus::LEASES_BUCKET;
    const VERSION: u32 = 1;
}

/// A held lease. `revision` is the fencing token; it moves forward with every renewal.
#[derive(Debug)]
pub struct Lease {
    pub key: String,
    pub revision: u64,
    pub holder: String,
}

#[derive(Clone)]
pub struct LeaseStore {
    pub kv: kv::Store,
}

impl LeaseStore {
    pub fn new(kv: kv::Store) -> Self {
        LeaseStore { kv }
    }

    /// Tries once to take the lease `key`. `Ok(None)` while someone else holds it.
    pub async fn try_acquire(&self, key: &str, holder: &str) -> Result<Option<Lease>, StoreError> {
        let record = LeaseRecord {
            v: LeaseRecord::VERSION,
            holder: holder.to_string(),
        };
        Ok(super::create(&self.kv, key, &record)
            .await?
            .map(|revision| Lease {
                key: key.to_string(),
                revision,
                holder: holder.to_string(),
            }))
    }

    /// Extends a held lease by a compare-and-set at its revision; `LeaseLost` when it
    /// expired or was taken over.
    pub async fn renew(&self, lease: &mut Lease) -> Result<(), StoreError> {
        let record = LeaseRecord {
            v: LeaseRecord::VERSION,
            holder: lease.holder.clone(),
        };
        match super::write_at(&self.kv, &lease.key, &record, lease.revision).await? {
            Some(revision) => {
                lease.revision = revision;
                Ok(())
            }
            None => Err(lost(lease, "it expired or another holder took it")),
        }
    }

    /// Confirms the lease is still current (its revision did not move), without renewing.
    pub async fn check(&self, lease: &Lease) -> Result<(), StoreError> {
        let entry = self
            .kv
            .entry(&lease.key)
            .await
            .map_err(|e| BusError::nats(format!("reading lease {}", lease.key), e))?;
        match entry {
            Some(e) if e.revision == lease.revision && e.operation == kv::Operation::Put => Ok(()),
            _ => Err(lost(lease, "its revision moved on")),
        }
    }

    /// The server's clock, as stamped on the lease's current revision.
    pub async fn server_time(&self, lease: &Lease) -> Result<time::OffsetDateTime, StoreError> {
        let entry = self
            .kv
            .entry(&lease.key)
            .await
            .map_err(|e| BusError::nats(format!("reading lease {}", lease.key), e))?;
        match entry {
            Some(e) if e.revision == lease.revision => Ok(e.created),
            _ => Err(lost(lease, "its revision moved on")),
        }
    }

    /// Releases a lease only if it is still ours (the revision did not move).
    pub async fn release(&self, lease: Lease) {
        if let Err(e) = self
            .kv
            .delete_expect_revision(&lease.key, Some(lease.revision))
            .await
        {
            tracing::debug!(error.message = %e, key = %lease.key, "lease already gone at release");
        }
    }
}

fn lost(lease: &Lease, reason: &str) -> StoreError {
    StoreError::LeaseLost {
        key: lease.key.clone(),
        reason: reason.to_string(),
    }
}
