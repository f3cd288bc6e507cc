//! Opt-in enforcement of GitHub's secondary rate limits, so a fleet can be shown to stay
//! within them: requests per sliding window (every request costs 1), points per sliding
//! window (GitHub's "points per minute": a GET costs 1, any other method 5), content-creating
//! requests (POST) per sliding window and per sliding hour (60 windows), and requests in
//! flight at once. A request over a cap is answered like GitHub does — 403 "You have
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
    /// Points per sliding window: a GET costs 1, any other method 5 (GitHub: 900 a minute).
    pub points: Option<u32>,
    /// Content-creating requests (POST) per sliding window (GitHub: 80 a minute).
    pub content_creation: Option<u32>,
    /// Content-creating requests per sliding 60 windows (GitHub: 500 an hour).
    pub content_creation_per_hour: Option<u32>,
    /// Requests in flight at once (GitHub: 100).
    pub concurrent: Option<u32>,
    /// Length of the sliding window (GitHub: one minute).
    pub window: Duration,
}

impl SecondaryLimits {
    fn any(&self) -> bool {
        self.requests.is_some()
            || self.points.is_some()
            || self.content_creation.is_some()
            || self.content_creation_per_hour.is_some()
            || self.concurrent.is_some()
    }
}

/// What the double enforces and what it saw.
#[derive(Debug, Default)]
pub struct Enforcer {
    pub limits: SecondaryLimits,
    requests: VecDeque<Instant>,
    /// Admitted requests' times and points.
    points: VecDeque<(Instant, u32)>,
    creations: VecDeque<Instant>,
    /// Requests being answered right now (counted from arrival, latency included).
    pub in_flight: u32,
    /// Most requests in flight at once so far.
    pub max_in_flight: u32,
    /// Requests answered with a secondary-limit 403.
    pub violations: u64,
    /// Every request admitted while a cap was set: when, and its points.
    pub admitted: Vec<(Instant, u32)>,
}

/// The points GitHub charges a request of `method`.
fn points_of(method: &str) -> u32 {
    match method {
        "GET" | "HEAD" | "OPTIONS" => 1,
        _ => 5,
    }
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
    /// A request arrived (before its latency): it is in flight until [`Enforcer::leave`].
    pub fn enter(&mut self) {
        self.in_flight += 1;
        self.max_in_flight = self.max_in_flight.max(self.in_flight);
    }

    pub fn leave(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Admits a request of `method`, or returns the `retry-after` seconds of a refusal.
    pub fn admit(&mut self, method: &str) -> Result<(), u64> {
        let (limits, now) = (self.limits, Instant::now());
        if !limits.any() {
            return Ok(());
        }
        let hour = limits.window * 60;
        trim(&mut self.requests, now, limits.window);
        while self
            .points
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= limits.window)
        {
            self.points.pop_front();
        }
        trim(&mut self.creations, now, hour);
        if let Some(cap) = limits.concurrent
            && self.in_flight > cap
        {
            return self.refuse(1);
        }
        if let Some(cap) = limits.requests
            && self.requests.len() >= cap as usize
        {
            return self.refuse(wait(&self.requests, now, limits.window));
        }
        let cost = points_of(method);
        if let Some(cap) = limits.points
            && self.points.iter().map(|(_, p)| p).sum::<u32>() + cost > cap
        {
            let times: VecDeque<Instant> = self.points.iter().map(|(t, _)| *t).collect();
            return self.refuse(wait(&times, now, limits.window));
        }
        let creating = method == "POST";
        if creating {
            let in_window: VecDeque<Instant> = self
                .creations
                .iter()
                .copied()
                .filter(|t| now.duration_since(*t) < limits.window)
                .collect();
            if let Some(cap) = limits.content_creation
                && in_window.len() >= cap as usize
            {
                return self.refuse(wait(&in_window, now, limits.window));
            }
            if let Some(cap) = limits.content_creation_per_hour
                && self.creations.len() >= cap as usize
            {
                return self.refuse(wait(&self.creations, now, hour));
            }
        }
        self.requests.push_back(now);
        self.points.push_back((now, cost));
        self.admitted.push((now, cost));
        if creating {
            self.creations.push_back(now);
        }
        Ok(())
    }

    fn refuse(&mut self, retry_after: u64) -> Result<(), u64> {
        self.violations += 1;
        Err(retry_after)
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
                ..Default::default()
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

    #[test]
    fn writes_cost_five_points_and_creations_have_an_hourly_cap() {
        let mut e = Enforcer {
            limits: SecondaryLimits {
                points: Some(12),
                window: Duration::from_secs(60),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(e.admit("POST"), Ok(()));
        assert_eq!(e.admit("PATCH"), Ok(()));
        assert_eq!(e.admit("GET"), Ok(()));
        assert_eq!(e.admit("GET"), Ok(()));
        assert!(e.admit("GET").is_err(), "12 points spent");
        let mut e = Enforcer {
            limits: SecondaryLimits {
                content_creation_per_hour: Some(2),
                window: Duration::from_secs(1),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(e.admit("POST"), Ok(()));
        assert_eq!(e.admit("POST"), Ok(()));
        let retry = e.admit("POST").unwrap_err();
        assert!(
            (50..=60).contains(&retry),
            "an hour of one-second windows: {retry}"
        );
        assert_eq!(e.violations, 1);
    }

    #[test]
    fn requests_in_flight_over_the_cap_are_refused() {
        let mut e = Enforcer {
            limits: SecondaryLimits {
                concurrent: Some(2),
                window: Duration::from_secs(60),
                ..Default::default()
            },
            ..Default::default()
        };
        e.enter();
        e.enter();
        assert_eq!(e.admit("GET"), Ok(()));
        e.enter();
        assert!(e.admit("GET").is_err());
        e.leave();
        assert_eq!(e.admit("GET"), Ok(()));
        assert_eq!((e.max_in_flight, e.violations), (3, 1));
    }
}
