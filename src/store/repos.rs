//! Per-repository state in `guardian_repos` (key `owner/name`): the finding → issue number
//! map, the last head SHA and reconcile time, and the order stamps that keep an older
//! reconcile from overwriting a newer one.
//!
//! Writes that follow GitHub writes are *fenced*: they happen only while the repository's
//! lease (`store::leases`) is still current, and they stamp the lease's revision on the
//! state. A writer whose lease expired while it stalled finds either its lease gone or a
//! newer stamp on the state, and writes nothing. The next holder finds a crashed holder's
//! issues by their fingerprint markers.

use std::collections::BTreeMap;

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};

use super::leases::{Lease, LeaseStore};
use super::{Record, StoreError};
use crate::domain::RepoRef;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoState {
    pub v: u32,
    #[serde(default)]
    pub head_sha: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub reconciled_at: Option<time::OffsetDateTime>,
    /// Fingerprint → issue number of every issue the fleet filed for this repository.
    #[serde(default)]
    pub issues: BTreeMap<String, u64>,
    /// The central repository (`owner/name`) the numbers in `issues` belong to, when the
    /// findings are filed there; `None`: the repository itself. A map kept for another
    /// repository is not used to look issues up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue_repo: Option<String>,
    /// Fingerprints open after the last reconcile.
    #[serde(default)]
    pub open_findings: Vec<String>,
    /// Revision of the lease the state was last written under (the fencing token).
    #[serde(default)]
    pub fence: u64,
    /// Order of the run whose reconcile wrote the state (`RunRecord::seq`, a server-assigned
    /// revision): a reconcile of an older run is skipped instead of undoing a newer one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_seq: Option<u64>,
}

impl Record for RepoState {
    const BUCKET: &'static str = crate::bus::REPOS_BUCKET;
    const VERSION: u32 = 1;
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
        Ok(super::update(&self.kv, &state_key(repo), init, change)
            .await?
            .map(|u| u.record)
            .unwrap_or_default())
    }

    /// Changes the state under `lease`: refused with `LeaseLost` when the lease is no
    /// longer current, or when the state carries a newer lease's stamp.
    pub async fn update_fenced(
        &self,
        repo: &RepoRef,
        leases: &LeaseStore,
        lease: &Lease,
        mut change: impl FnMut(&mut RepoState) -> bool,
    ) -> Result<RepoState, StoreError> {
        leases.check(lease).await?;
        let mut newer = None;
        let state = self
            .update(repo, |s| {
                if s.fence > lease.revision {
                    newer = Some(s.fence);
                    return false;
                }
                s.fence = lease.revision;
                change(s)
            })
            .await?;
        match newer {
            Some(fence) => Err(StoreError::LeaseLost {
                key: lease.key.clone(),
                reason: format!("the state was written under a newer lease (revision {fence})"),
            }),
            None => Ok(state),
        }
    }
}

/// Key of a repository's reconcile lease in `guardian_leases`.
pub fn lease_key(repo: &RepoRef) -> String {
    format!("repo.{}", state_key(repo))
}
