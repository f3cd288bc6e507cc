//! Fleet-wide kill switches in the `guardian_flags` bucket, watched live by every worker.
//!
//! ```text
//! nats kv put guardian_flags pause_runs true        # stop taking work (in-flight steps finish)
//! nats kv put guardian_flags force_dry_run true     # no GitHub writes at all
//! nats kv put guardian_flags disable_llm true       # never call the LLM
//! nats kv put guardian_flags disable_policy.license true
//! nats kv del guardian_flags pause_runs             # back to normal
//! ```
//! Values `true`, `1`, `on`, `yes` switch a flag on; anything else (or deleting the key)
//! switches it off. Unknown keys are logged and ignored.
//!
//! The switches fail closed: until the first complete snapshot of the bucket is loaded, and
//! whenever the watch breaks until it is re-established, the flags are *unknown* and a
//! worker behaves as paused. The fleet also writes one key itself,
//! `github.budget_exhausted_until` (an RFC 3339 time): GitHub said the token's budget is
//! used up until then, and no worker calls GitHub before it.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Bus, BusError, FLAGS_BUCKET};

/// The key the fleet writes when GitHub's budget is exhausted.
pub const BUDGET_KEY: &str = "github.budget_exhausted_until";

/// The current value of every flag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagState {
    pub pause_runs: bool,
    pub force_dry_run: bool,
    pub disable_llm: bool,
    pub disabled_policies: BTreeSet<String>,
    /// GitHub's budget is exhausted until then (GitHub's reset time, as reported).
    pub github_budget_until: Option<time::OffsetDateTime>,
}

impl FlagState {
    /// Applies one key/value (`None` = deleted).
    pub fn apply(&mut self, key: &str, value: Option<&[u8]>) {
        let text = value.map(|v| String::from_utf8_lossy(v).trim().to_ascii_lowercase());
        let on = text
            .as_deref()
            .is_some_and(|t| matches!(t, "true" | "1" | "on" | "yes"));
        match key {
            "pause_runs" => self.pause_runs = on,
            "force_dry_run" => self.force_dry_run = on,
            "disable_llm" => self.disable_llm = on,
            BUDGET_KEY => {
                self.github_budget_until = text.and_then(|t| {
                    time::OffsetDateTime::parse(
                        &t.to_ascii_uppercase(),
                        &time::format_description::well_known::Rfc3339,
                    )
                    .ok()
                })
            }
            _ => match key.strip_prefix("disable_policy.") {
                Some(policy) if on => {
                    self.disabled_policies.insert(policy.to_string());
                }
                Some(policy) => {
                    self.disabled_policies.remove(policy);
                }
                None => tracing::warn!(key, "unknown flag in guardian_flags ignored"),
            },
        }
    }

    /// How long GitHub's budget stays exhausted from `now`, if it is.
    pub fn github_wait(&self, now: time::OffsetDateTime) -> Option<Duration> {
        let until = self.github_budget_until?;
        (until > now).then(|| (until - now).try_into().unwrap_or(Duration::ZERO))
    }
}

/// Shared, live view of the flags. Starts *unknown* (which reads as paused).
#[derive(Clone)]
pub struct Flags {
    state: Arc<RwLock<FlagState>>,
    /// `true` while the state mirrors the bucket (first snapshot loaded, watch alive).
    known: Arc<watch::Sender<bool>>,
}

impl Default for Flags {
    fn default() -> Self {
        Flags {
            state: Arc::default(),
            known: Arc::new(watch::channel(false).0),
        }
    }
}

impl Flags {
    /// Flags that are known from the start (tests and embedded fleets without a bucket).
    pub fn known(state: FlagState) -> Self {
        let flags = Flags::default();
        if let Ok(mut s) = flags.state.write() {
            *s = state;
        }
        flags.known.send_replace(true);
        flags
    }

    pub fn snapshot(&self) -> FlagState {
        self.state.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// Whether the flags are loaded and followed right now.
    pub fn is_known(&self) -> bool {
        *self.known.borrow()
    }

    /// Whether a worker may take work: the flags are known and `pause_runs` is off.
    pub fn may_take_work(&self) -> bool {
        self.is_known() && !self.snapshot().pause_runs
    }

    /// Waits until the flags are known; `false` when `shutdown` came first.
    pub async fn wait_known(&self, shutdown: &CancellationToken) -> bool {
        let mut rx = self.known.subscribe();
        tokio::select! {
            _ = shutdown.cancelled() => false,
            r = rx.wait_for(|k| *k) => r.is_ok(),
        }
    }

    fn apply(&self, key: &str, value: Option<&[u8]>) {
        if let Ok(mut s) = self.state.write() {
            let before = s.clone();
            s.apply(key, value);
            if *s != before {
                tracing::info!(key, flags = ?*s, "kill switch changed");
            }
        }
    }

    fn set_known(&self, known: bool) {
        if self.known.send_replace(known) != known && !known {
            tracing::warn!("kill switches unknown; taking no work until they are loaded again");
        }
    }

    /// Loads the current flags, then follows changes until `shutdown`; when the watch
    /// fails or ends, the flags turn unknown and the watch is re-established.
    pub async fn watch(self, bus: Bus, shutdown: CancellationToken) {
        let mut delay = Duration::from_millis(200);
        while !shutdown.is_cancelled() {
            match self.watch_once(&bus, &shutdown).await {
                Ok(()) if shutdown.is_cancelled() => return,
                Ok(()) => tracing::warn!("flag watch ended; re-watching"),
                Err(e) => {
                    tracing::warn!(error.message = %e, error.cause_chain = ?e, "flag watch interrupted; re-watching")
                }
            }
            self.set_known(false);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    async fn watch_once(&self, bus: &Bus, shutdown: &CancellationToken) -> Result<(), BusError> {
        let store = bus.kv(FLAGS_BUCKET).await?;
        // The snapshot first: every live key at its latest revision.
        let listed = super::latest::list(&store, ">").await?;
        let mut fresh = FlagState::default();
        let mut last = 0;
        for entry in &listed {
            fresh.apply(&entry.key, Some(&entry.value));
            last = last.max(entry.revision);
        }
        // Then every change after it (replaying one already seen is harmless).
        let mut watch = store
            .watch_all_from_revision(last + 1)
            .await
            .map_err(|e| BusError::nats("watching guardian_flags", e))?;
        if let Ok(mut s) = self.state.write() {
            if *s != fresh {
                tracing::info!(flags = ?fresh, "kill switches loaded");
            }
            *s = fresh;
        }
        self.set_known(true);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                next = watch.next() => match next {
                    Some(Ok(entry)) => {
                        let value = match entry.operation {
                            kv::Operation::Put => Some(entry.value.as_ref()),
                            kv::Operation::Delete | kv::Operation::Purge => None,
                        };
                        self.apply(&entry.key, value);
                    }
                    Some(Err(e)) => return Err(BusError::nats("watching guardian_flags", e)),
                    None => return Ok(()),
                }
            }
        }
    }
}

/// Records fleet-wide that GitHub's budget is exhausted for `wait` from now (never
/// shortening a later time already recorded).
pub async fn record_budget_exhausted(
    bus: &Bus,
    flags: &Flags,
    wait: Duration,
) -> Result<(), BusError> {
    let until = time::OffsetDateTime::now_utc() + wait;
    if flags
        .snapshot()
        .github_budget_until
        .is_some_and(|known| known >= until)
    {
        return Ok(());
    }
    let text = until
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| BusError::nats("formatting budget time", e))?;
    let store = bus.kv(FLAGS_BUCKET).await?;
    store
        .put(BUDGET_KEY, text.into())
        .await
        .map_err(|e| BusError::nats(format!("writing {BUDGET_KEY}"), e))?;
    tracing::warn!(%until, "GitHub budget exhausted; the fleet pauses GitHub steps until then");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_switch_on_and_off() {
        let mut s = FlagState::default();
        s.apply("force_dry_run", Some(b"true"));
        s.apply("pause_runs", Some(b"ON"));
        s.apply("disable_policy.license", Some(b"1"));
        assert!(s.force_dry_run && s.pause_runs);
        assert!(s.disabled_policies.contains("license"));
        s.apply("force_dry_run", None);
        s.apply("pause_runs", Some(b"false"));
        s.apply("disable_policy.license", Some(b"no"));
        assert_eq!(s, FlagState::default());
    }

    #[test]
    fn unknown_flags_read_as_paused() {
        let flags = Flags::default();
        assert!(!flags.may_take_work());
        assert!(Flags::known(FlagState::default()).may_take_work());
    }

    #[test]
    fn the_budget_key_holds_a_time() {
        let mut s = FlagState::default();
        s.apply(BUDGET_KEY, Some(b"2026-12-01T12:00:00Z"));
        let before = time::macros::datetime!(2026-12-01 11:59:00 UTC);
        assert_eq!(s.github_wait(before), Some(Duration::from_secs(60)));
        assert_eq!(s.github_wait(before + Duration::from_secs(120)), None);
        s.apply(BUDGET_KEY, None);
        assert_eq!(s.github_budget_until, None);
    }
}
