//! Per-repository state in `guardian_repos`: the finding → issue number map, the last head
//! SHA and scan time (key `owner/name`), and the reconcile lease (key `lease.owner/name`)
//! that makes one worker at a time write a repository's issues.
//!
//! The lease is what prevents duplicate issues when two workers race on one repository
//! (two runs at once, or a redelivery while the first attempt still runs): whoever holds it
//! lists the issues, decides and writes; the other waits. A lease expires after its TTL so
//! a crashed holder cannot block a repository for long, and the next holder finds the
//! crashed holder's issues by their fingerprint markers.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};

use super::{Record, StoreError};
use crate::bus::BusError;
use crate::domain::RepoRef;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoState {
    pub v: u32,
    #[serde(default)]
    pub head_sha: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub reconciled_at: Option<time::OffsetDateTime>,
    /// Fingerprint → issue number of every issue the fleet filed in this repository.
    #[serde(default)]
    pub issues: BTreeMap<String, u64>,
    /// Fingerprints open after the last reconcile.
    #[serde(default)]
    pub open_findings: Vec<String>,
}

impl Record for RepoState {
    const BUCKET: &'static str = crate::bus::REPOS_BUCKET;
    const VERSION: u32 = 1;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeaseRecord {
    v: u32,
    holder: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: time::OffsetDateTime,
}

impl Record for LeaseRecord {
    const BUCKET: &'static str = crate::bus::REPOS_BUCKET;
    const VERSION: u32 = 1;
}

/// A held lease; release it with [`RepoStore::release`].
#[derive(Debug)]
pub struct Lease {
    key: String,
    revision: u64,
    pub holder: String,
}

/// KV keys allow `[-/_=.A-Za-z0-9]`; dots separate tokens, so they are spelled `=2E`.
pub fn state_key(repo: &RepoRef) -> String {
    repo.full_name().to_lowercase().replace('.', "=2E")
}

#[derive(Clone)]
pub struct RepoStore {
    pub kv: kv::Store,
}

impl RepoStore {
    pub fn new(kv: kv::Store) -> Self {
        RepoStore { kv }
    }

    pub async fn get(&self, repo: &RepoRef) -> Result<Option<RepoState>, StoreError> {
        Ok(super::read::<RepoState>(&self.kv, &state_key(repo))
            .await?
            .map(|(r, _)| r))
    }

    pub async fn update(
        &self,
        repo: &RepoRef,
        change: impl FnMut(&mut RepoState) -> bool,
    ) -> Result<RepoState, StoreError> {
        let init = || {
            Some(RepoState {
                v: RepoState::VERSION,
                ..Default::default()
            })
        };
        let (state, _) = super::update(&self.kv, &state_key(repo), init, change)
            .await?
            .unwrap_or_default();
        Ok(state)
    }

    /// Tries once to take the repository's lease. `Ok(None)` when someone else holds a
    /// lease that has not expired.
    pub async fn try_lease(
        &self,
        repo: &RepoRef,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let key = format!("lease.{}", state_key(repo));
        let record = LeaseRecord {
            v: LeaseRecord::VERSION,
            holder: holder.to_string(),
            expires_at: time::OffsetDateTime::now_utc() + ttl,
        };
        let bytes: bytes::Bytes = serde_json::to_vec(&record).unwrap_or_default().into();
        let entry = self
            .kv
            .entry(&key)
            .await
            .map_err(|e| BusError::nats("reading lease", e))?;
        let result = match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                let current = super::decode::<LeaseRecord>(&key, &e.value)?;
                if current.expires_at > time::OffsetDateTime::now_utc() && current.holder != holder
                {
                    return Ok(None);
                }
                // Expired (its holder died) or our own: take it over at this revision.
                self.kv.update(&key, bytes, e.revision).await.ok()
            }
            Some(e) => self.kv.update(&key, bytes, e.revision).await.ok(),
            None => self.kv.create(&key, bytes).await.ok(),
        };
        Ok(result.map(|revision| Lease {
            key,
            revision,
            holder: holder.to_string(),
        }))
    }

    /// Extends a held lease; fails when it was lost (expired and taken over).
    pub async fn renew(&self, lease: &mut Lease, ttl: Duration) -> Result<bool, StoreError> {
        let record = LeaseRecord {
            v: LeaseRecord::VERSION,
            holder: lease.holder.clone(),
            expires_at: time::OffsetDateTime::now_utc() + ttl,
        };
        let bytes: bytes::Bytes = serde_json::to_vec(&record).unwrap_or_default().into();
        match self.kv.update(&lease.key, bytes, lease.revision).await {
            Ok(rev) => {
                lease.revision = rev;
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    }

    /// Releases a lease only if it is still ours (the revision did not move).
    pub async fn release(&self, lease: Lease) {
        if let Err(e) = self
            .kv
            .delete_expect_revision(&lease.key, Some(lease.revision))
            .await
        {
            tracing::debug!(error.message = %e, "lease already gone at release");
        }
    }
}
