//! Opt-in enforcement of GitHub's secondary rate limits, so a fleet can be shown to stay
//! within them: a cap on requests per sliding minute (GitHub's "points per minute", with a
//! write costing as much as a read here) and a cap on content-creating requests (POST) per
//! sliding minute. A request over a cap is answered like GitHub does — 403 "You have
//! exceeded a secondary rate limit" with `retry-after` — and counted as a violation. Off
//! unless set with [`crate::GithubDouble::set_secondary_limits`]; the existing behaviour
//! is unchanged.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The caps to enforce; `None` leaves a cap off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SecondaryLimits {
    /// Requests (of any method) per sliding window.
    pub requests: Option<u32>,
    /// Content-creating requests (POST) per sliding window.
    pub content_creation: Option<u32>,
    /// Length of the sliding window (GitHub: one minute).
    pub window: Duration,
}

/// What the double enforces and what it saw.
#[derive(Debug, Default)]
pub struct Enforcer {
    pub limits: SecondaryLimits,
    requests: VecDeque<Instant>,
    creations: VecDeque<Instant>,
    /// Requests answered with a secondary-limit 403.
    pub violations: u64,
}

fn trim(times: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while times
        .front()
        .is_some_and(|t| now.duration_since(*t) >= window)
    {
        times.pop_front();
    }
}

/// Seconds until the oldest request of a full window leaves it (at least 1).
fn wait(times: &VecDeque<Instant>, now: Instant, window: Duration) -> u64 {
    times
        .front()
        .map(|t| {
            (window.saturating_sub(now.duration_since(*t)))
                .as_secs_f64()
                .ceil() as u64
        })
        .unwrap_or(1)
        .max(1)
}

impl Enforcer {
    /// Admits a request of `method`, or returns the `retry-after` seconds of a refusal.
    pub fn admit(&mut self, method: &str) -> Result<(), u64> {
        let (limits, now) = (self.limits, Instant::now());
        if limits.requests.is_none() && limits.content_creation.is_none() {
            return Ok(());
        }
        trim(&mut self.requests, now, limits.window);
        trim(&mut self.creations, now, limits.window);
        if let Some(cap) = limits.requests
            && self.requests.len() >= cap as usize
        {
            self.violations += 1;
            return Err(wait(&self.requests, now, limits.window));
        }
        let creating = method == "POST";
        if creating
            && let Some(cap) = limits.content_creation
            && self.creations.len() >= cap as usize
        {
            self.violations += 1;
            return Err(wait(&self.creations, now, limits.window));
        }
        self.requests.push_back(now);
        if creating {
            self.creations.push_back(now);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_over_the_caps_and_counts_violations() {
        let mut e = Enforcer {
            limits: SecondaryLimits {
                requests: Some(3),
                content_creation: Some(1),
                window: Duration::from_secs(60),
            },
            ..Default::default()
        };
        assert_eq!(e.admit("POST"), Ok(()));
        assert!(e.admit("POST").is_err(), "second creation in the minute");
        assert_eq!(e.admit("GET"), Ok(()));
        assert_eq!(e.admit("PATCH"), Ok(()));
        let retry = e.admit("GET").unwrap_err();
        assert!((1..=60).contains(&retry), "{retry}");
        assert_eq!(e.violations, 2);
        let mut off = Enforcer::default();
        for _ in 0..1000 {
            assert_eq!(off.admit("POST"), Ok(()));
        }
    }
}
