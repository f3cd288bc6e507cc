//! Issue writes waiting for the fleet's write budget, per run: one small key per
//! repository whose reconcile is waiting (`guardian_runs` key
//! `<run_id>.deferred.<owner/name>`), written when its writes start to wait and removed
//! when they are done. [`RunStore::view`] adds them up into the run record's
//! `deferred_writes` and `writes_resume_at`, so `guardian runs show` and `guardian.status`
//! tell how many writes wait and until when. A reconcile that crashes leaves its key to
//! its redelivery; keys of a final run are ignored.

use serde::{Deserialize, Serialize};

use super::runs::{RunRecord, RunStore};
use super::{Record, StoreError, key_token};
use crate::bus::BusError;

/// One repository's writes waiting for budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeferredWrites {
    pub v: u32,
    pub repo: String,
    /// Issue writes of the repository still to do.
    pub writes: u32,
    /// When the next of them may go out, as the budget said.
    #[serde(with = "time::serde::rfc3339")]
    pub resume_at: time::OffsetDateTime,
}

impl Record for DeferredWrites {
    const BUCKET: &'static str = crate::bus::RUNS_BUCKET;
    const VERSION: u32 = 1;
}

fn deferred_key(run_id: &str, repo: &str) -> String {
    format!("{run_id}.deferred.{}", key_token(repo))
}

impl RunStore {
    /// Notes that `writes` issue writes of `repo` wait for budget until `resume_at`.
    pub async fn defer_writes(
        &self,
        run_id: &str,
        repo: &str,
        writes: u32,
        resume_at: time::OffsetDateTime,
    ) -> Result<(), StoreError> {
        let key = deferred_key(run_id, repo);
        let record = DeferredWrites {
            v: DeferredWrites::VERSION,
            repo: repo.to_string(),
            writes,
            resume_at,
        };
        self.kv
            .put(&key, serde_json::to_vec(&record).unwrap_or_default().into())
            .await
            .map_err(|e| BusError::nats(format!("writing {key}"), e))?;
        Ok(())
    }

    /// The writes of `repo` no longer wait.
    pub async fn writes_done(&self, run_id: &str, repo: &str) -> Result<(), StoreError> {
        let key = deferred_key(run_id, repo);
        self.kv
            .purge(&key)
            .await
            .map_err(|e| BusError::nats(format!("removing {key}"), e))?;
        Ok(())
    }

    /// Issue writes of a run waiting for budget, and the earliest time one resumes.
    pub async fn deferred_writes(
        &self,
        run_id: &str,
    ) -> Result<(u32, Option<time::OffsetDateTime>), StoreError> {
        let mut writes = 0;
        let mut resume_at: Option<time::OffsetDateTime> = None;
        for listed in super::list(&self.kv, &format!("{run_id}.deferred.>")).await? {
            let deferred = super::decode::<DeferredWrites>(&listed.key, &listed.value)?;
            writes += deferred.writes;
            resume_at = Some(resume_at.map_or(deferred.resume_at, |t| t.min(deferred.resume_at)));
        }
        Ok((writes, resume_at))
    }

    /// A run record as people read it: with the writes waiting for budget while it runs.
    pub async fn view(&self, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
        let Some(mut record) = self.get(run_id).await? else {
            return Ok(None);
        };
        if !record.status.is_final() {
            (record.deferred_writes, record.writes_resume_at) =
                self.deferred_writes(run_id).await?;
        }
        Ok(Some(record))
    }
}
