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

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

use super::{Bus, FLAGS_BUCKET};

/// The current value of every flag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagState {
    pub pause_runs: bool,
    pub force_dry_run: bool,
    pub disable_llm: bool,
    pub disabled_policies: BTreeSet<String>,
}

impl FlagState {
    /// Applies one key/value (`None` = deleted).
    pub fn apply(&mut self, key: &str, value: Option<&[u8]>) {
        let on = value.is_some_and(|v| {
            matches!(
                String::from_utf8_lossy(v)
                    .trim()
                    .to_ascii_lowercase()
                    .as_str(),
                "true" | "1" | "on" | "yes"
            )
        });
        match key {
            "pause_runs" => self.pause_runs = on,
            "force_dry_run" => self.force_dry_run = on,
            "disable_llm" => self.disable_llm = on,
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
}

/// Shared, live view of the flags.
#[derive(Clone, Default)]
pub struct Flags {
    state: Arc<RwLock<FlagState>>,
}

impl Flags {
    pub fn snapshot(&self) -> FlagState {
        self.state.read().map(|s| s.clone()).unwrap_or_default()
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

    /// Loads the current flags, then follows changes until `shutdown`; reconnects the watch
    /// when it breaks.
    pub async fn watch(self, bus: Bus, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            if let Err(e) = self.watch_once(&bus, &shutdown).await {
                tracing::warn!(error.message = %e, "flag watch interrupted; re-watching");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    async fn watch_once(
        &self,
        bus: &Bus,
        shutdown: &CancellationToken,
    ) -> Result<(), super::BusError> {
        let store = bus.kv(FLAGS_BUCKET).await?;
        // `watch_with_history` delivers the current value of every key first, then changes.
        let mut watch = store
            .watch_with_history(">")
            .await
            .map_err(|e| super::BusError::nats("watching guardian_flags", e))?;
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
                    Some(Err(e)) => return Err(super::BusError::nats("watching guardian_flags", e)),
                    None => return Ok(()),
                }
            }
        }
    }
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
}
