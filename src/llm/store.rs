//! The review step's fleet-wide memory in the `guardian_llm` bucket: cached answers and
//! token counters.
//!
//! ```text
//! answer.<sha256 of model + prompt>   validated answer text, reused by every worker
//! tokens.run.<run_id>                 tokens spent by one run   (per-run budget)
//! tokens.day.<YYYY-MM-DD>             tokens spent by the fleet that UTC day (daily budget)
//! noted.<kind>.<run_id>               exists once the run's LLM trouble of that kind was reported
//! ```
//! Counters change by compare-and-set (`store::update`), so concurrent workers add up
//! exactly. Entries expire with the bucket's max age; nothing here is needed for
//! correctness, only for economy.

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};

use super::LlmTokens;
use crate::store::{self, Record, StoreError};

/// Tokens spent, as a counter record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spent {
    pub v: u32,
    pub prompt: u64,
    pub completion: u64,
}

impl Record for Spent {
    const BUCKET: &'static str = crate::bus::LLM_BUCKET;
    const VERSION: u32 = 1;
}

impl Spent {
    pub fn total(&self) -> u64 {
        self.prompt + self.completion
    }
}

/// A validated answer, as the model wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedAnswer {
    pub v: u32,
    pub model: String,
    pub content: String,
}

impl Record for CachedAnswer {
    const BUCKET: &'static str = crate::bus::LLM_BUCKET;
    const VERSION: u32 = 1;
}

/// A token counter and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Counter {
    Run(String),
    Day(time::Date),
}

impl Counter {
    /// Today's fleet-wide counter (UTC).
    pub fn today() -> Counter {
        Counter::Day(time::OffsetDateTime::now_utc().date())
    }

    fn key(&self) -> String {
        match self {
            Counter::Run(run_id) => format!("tokens.run.{}", key_safe(run_id)),
            Counter::Day(d) => format!(
                "tokens.day.{:04}-{:02}-{:02}",
                d.year(),
                u8::from(d.month()),
                d.day()
            ),
        }
    }
}

/// KV keys allow `[-/_=.a-zA-Z0-9]`; anything else in a run id becomes `_`.
fn key_safe(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' => c,
            _ => '_',
        })
        .collect()
}

#[derive(Clone)]
pub struct LlmStore {
    kv: kv::Store,
}

impl LlmStore {
    pub fn new(kv: kv::Store) -> Self {
        LlmStore { kv }
    }

    /// The cached answer of a prompt (by [`super::prompt::Prompt::cache_key`]). A bucket that
    /// cannot be read counts as a miss: the cache only saves tokens.
    pub async fn cached(&self, key: &str) -> Option<String> {
        match store::read::<CachedAnswer>(&self.kv, &format!("answer.{key}")).await {
            Ok(found) => found.map(|(a, _)| a.content),
            Err(e) => {
                tracing::debug!(error.message = %e, "answer cache unreadable; asking the model");
                None
            }
        }
    }

    /// Remembers a validated answer; the first writer wins (answers to one prompt are
    /// interchangeable).
    pub async fn remember(&self, key: &str, model: &str, content: &str) {
        let answer = CachedAnswer {
            v: CachedAnswer::VERSION,
            model: model.to_string(),
            content: content.to_string(),
        };
        if let Err(e) = store::create(&self.kv, &format!("answer.{key}"), &answer).await {
            tracing::debug!(error.message = %e, "answer not cached");
        }
    }

    /// Tokens counted so far.
    pub async fn spent(&self, counter: &Counter) -> Result<u64, StoreError> {
        Ok(store::read::<Spent>(&self.kv, &counter.key())
            .await?
            .map_or(0, |(s, _)| s.total()))
    }

    /// Adds a call's usage; returns the new total.
    pub async fn add(&self, counter: &Counter, usage: LlmTokens) -> Result<u64, StoreError> {
        let updated = store::update(
            &self.kv,
            &counter.key(),
            || {
                Some(Spent {
                    v: Spent::VERSION,
                    ..Default::default()
                })
            },
            |s: &mut Spent| {
                s.prompt += usage.prompt;
                s.completion += usage.completion;
                true
            },
        )
        .await?;
        Ok(updated.map_or(0, |u| u.record.total()))
    }

    /// `true` for exactly one caller per run and `what` across the fleet: the one that
    /// reports the run's LLM trouble of that kind.
    pub async fn first_notice(&self, run_id: &str, what: &str) -> bool {
        let marker = Spent {
            v: Spent::VERSION,
            ..Default::default()
        };
        let key = format!("noted.{}.{}", key_safe(what), key_safe(run_id));
        store::create(&self.kv, &key, &marker)
            .await
            .map_or(true, |created| created.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_keys_are_valid_kv_keys() {
        let day = time::macros::date!(2026 - 12 - 01);
        assert_eq!(Counter::Day(day).key(), "tokens.day.2026-12-01");
        assert_eq!(
            Counter::Run("0193a2b4-x.y*z".into()).key(),
            "tokens.run.0193a2b4-x_y_z"
        );
    }
}
