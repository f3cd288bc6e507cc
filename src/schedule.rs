//! Schedules: runs fired on a cadence (`every = "6h"` or a cron expression), exactly once per
//! window across the whole fleet, however many workers run the scheduler.
//!
//! Time is cut into windows: for `every`, fixed slices aligned on the Unix epoch (so every
//! worker computes the same boundaries without talking to the others); for `cron`, the span
//! from one occurrence to the next, in UTC. The fleet remembers the last window fired per
//! schedule in one key of `guardian_schedules`, `schedule.<name>`. A worker that sees the
//! current window newer than the stored one claims it with a compare-and-set on the key's
//! revision; only the claim that wins starts the run, through `guardian.run` like any other
//! trigger. Because only the *current* window is ever claimed, a fleet that was down for
//! several windows fires once when it comes back, not once per missed window, and a restart
//! inside an already fired window fires nothing. Nothing here knows how a run is executed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{kv, stream};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, BusError};
use crate::domain::Target;
use crate::store::{self, Record, StoreError};

/// The bucket holding the last fired window of each schedule.
pub const SCHEDULES_BUCKET: &str = "guardian_schedules";

/// Longest the scheduler sleeps between two looks at the clock, so a clock that jumps (or
/// a NATS outage that ends) is noticed within this time.
const MAX_NAP: Duration = Duration::from_secs(30);

/// One configured schedule, parsed and validated when the configuration is loaded.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(try_from = "RawSchedule", into = "RawSchedule")]
pub struct Schedule {
    /// Key of the schedule in `guardian_schedules`; stable across restarts and releases.
    pub name: String,
    pub target: Target,
    pub cadence: Cadence,
    pub dry_run: bool,
}

/// When a schedule's windows start.
#[derive(Debug, Clone)]
pub enum Cadence {
    /// Windows of this length, aligned on the Unix epoch.
    Every(Duration),
    /// Windows start at each occurrence of the expression (UTC).
    Cron(Box<croner::Cron>),
}

/// `[[schedules]]` as written in the configuration.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    name: Option<String>,
    target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    every: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cron: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

impl From<Schedule> for RawSchedule {
    fn from(s: Schedule) -> Self {
        let (every, cron) = match &s.cadence {
            Cadence::Every(d) => (Some(humantime::format_duration(*d).to_string()), None),
            Cadence::Cron(c) => (None, Some(c.pattern.to_string())),
        };
        RawSchedule {
            name: Some(s.name),
            target: s.target.to_string(),
            every,
            cron,
            dry_run: s.dry_run,
        }
    }
}

impl TryFrom<RawSchedule> for Schedule {
    type Error = String;

    fn try_from(raw: RawSchedule) -> Result<Self, String> {
        let target = Target::parse(&raw.target)
            .map_err(|e| format!("schedule for `{}`: {e}", raw.target))?;
        let (cadence, spec) = match (&raw.every, &raw.cron) {
            (Some(every), None) => {
                let every = humantime::parse_duration(every.trim())
                    .map_err(|e| format!("schedule for `{target}`: every = {every:?}: {e}"))?;
                if every < Duration::from_secs(1) {
                    return Err(format!(
                        "schedule for `{target}`: every must be at least 1s"
                    ));
                }
                (
                    Cadence::Every(every),
                    humantime::format_duration(every).to_string(),
                )
            }
            (None, Some(cron)) => {
                let parsed = croner::parser::CronParser::builder()
                    .seconds(croner::parser::Seconds::Optional)
                    .build()
                    .parse(cron.trim())
                    .map_err(|e| format!("schedule for `{target}`: cron = {cron:?}: {e}"))?;
                (Cadence::Cron(Box::new(parsed)), cron.clone())
            }
            _ => {
                return Err(format!(
                    "schedule for `{target}` needs exactly one of `every` or `cron`"
                ));
            }
        };
        let name = match raw.name {
            Some(name) if valid_name(&name) => name,
            Some(name) => {
                return Err(format!(
                    "schedule name `{name}` may only hold letters, digits, `-` and `_`"
                ));
            }
            None => default_name(&format!("{target}-{spec}")),
        };
        Ok(Schedule {
            name,
            target,
            cadence,
            dry_run: raw.dry_run,
        })
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A key-safe name derived from the target and cadence, e.g. `org-acme-6h`.
fn default_name(text: &str) -> String {
    let mut name = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            name.push(c);
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    name.trim_matches('-').to_string()
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn to_chrono(t: SystemTime) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::<chrono::Utc>::from(t)
}

impl Cadence {
    /// Start of the window `now` falls in, or `None` when a cron expression has no
    /// occurrence before `now`.
    pub fn window_start(&self, now: SystemTime) -> Option<SystemTime> {
        match self {
            Cadence::Every(every) => {
                let every = u64::try_from(every.as_millis()).unwrap_or(u64::MAX).max(1);
                let now = millis(now);
                Some(from_millis(now - now % every))
            }
            Cadence::Cron(cron) => cron
                .find_previous_occurrence(&to_chrono(now), true)
                .ok()
                .map(SystemTime::from),
        }
    }

    /// Start of the window after the one `now` falls in.
    pub fn next_window_start(&self, now: SystemTime) -> Option<SystemTime> {
        match self {
            Cadence::Every(every) => self.window_start(now).map(|start| start + *every),
            Cadence::Cron(cron) => cron
                .find_next_occurrence(&to_chrono(now), false)
                .ok()
                .map(SystemTime::from),
        }
    }
}

/// What `schedule.<name>` holds: the last window fired, by whom, and the run it started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FiredWindow {
    pub v: u32,
    /// Start of the window, milliseconds since the Unix epoch (compared, never parsed).
    pub window_start_ms: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub window_start: time::OffsetDateTime,
    /// The worker whose claim won.
    pub claimed_by: String,
    /// The run started for the window, once `guardian.run` answered.
    #[serde(default)]
    pub run_id: Option<String>,
}

impl Record for FiredWindow {
    const BUCKET: &'static str = SCHEDULES_BUCKET;
    const VERSION: u32 = 1;
}

impl FiredWindow {
    fn new(window_start: SystemTime, claimed_by: &str) -> Self {
        FiredWindow {
            v: Self::VERSION,
            window_start_ms: millis(window_start),
            window_start: time::OffsetDateTime::from(window_start),
            claimed_by: claimed_by.to_string(),
            run_id: None,
        }
    }

    fn encode(&self) -> bytes::Bytes {
        serde_json::to_vec(self).unwrap_or_default().into()
    }
}

/// The key of a schedule in [`SCHEDULES_BUCKET`].
pub fn key(schedule: &Schedule) -> String {
    format!("schedule.{}", schedule.name)
}

/// Creates (or updates) the schedules bucket. Idempotent, like the rest of provisioning.
pub async fn provision(bus: &Bus, replicas: usize) -> Result<kv::Store, BusError> {
    bus.js
        .create_or_update_key_value(kv::Config {
            bucket: SCHEDULES_BUCKET.into(),
            description: "Last window fired per schedule, key = schedule.<name>".into(),
            history: 1,
            storage: stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        })
        .await
        .map_err(|e| BusError::nats(format!("provisioning bucket {SCHEDULES_BUCKET}"), e))
}

/// Claims `window_start` for `schedule` fleet-wide. `Ok(true)` for exactly one caller per
/// window; `Ok(false)` when the window (or a later one) was already claimed.
pub async fn claim(
    kv: &kv::Store,
    schedule: &Schedule,
    window_start: SystemTime,
    worker: &str,
) -> Result<bool, StoreError> {
    let key = key(schedule);
    let value = FiredWindow::new(window_start, worker);
    match store::read::<FiredWindow>(kv, &key).await? {
        Some((last, _)) if last.window_start_ms >= value.window_start_ms => Ok(false),
        Some((_, revision)) => match kv.update(&key, value.encode(), revision).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(BusError::nats(format!("claiming {key}"), e).into()),
        },
        None => match kv.create(&key, value.encode()).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(BusError::nats(format!("claiming {key}"), e).into()),
        },
    }
}

/// Runs the scheduler until `shutdown`: fires each schedule's current window when no worker
/// has fired it yet, then sleeps until the next window starts.
pub async fn run(bus: Bus, schedules: Vec<Schedule>, worker: String, shutdown: CancellationToken) {
    if schedules.is_empty() {
        return;
    }
    let kv = loop {
        match bus.kv(SCHEDULES_BUCKET).await {
            Ok(kv) => break kv,
            Err(e) => {
                tracing::warn!(error.message = %e, "schedules bucket unavailable; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    tracing::info!(schedules = schedules.len(), "scheduler started");
    loop {
        let now = SystemTime::now();
        let mut wake = now + MAX_NAP;
        for schedule in &schedules {
            if let Some(start) = schedule.cadence.window_start(now) {
                fire_if_due(&bus, &kv, schedule, start, &worker).await;
            }
            if let Some(next) = schedule.cadence.next_window_start(now) {
                wake = wake.min(next);
            }
        }
        // A little past the boundary, so the clock reads the new window when we wake.
        let nap = wake
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .saturating_add(Duration::from_millis(20));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(nap) => {}
        }
    }
}

/// Claims the window and, when the claim wins, starts the run and notes its id.
async fn fire_if_due(
    bus: &Bus,
    kv: &kv::Store,
    schedule: &Schedule,
    window_start: SystemTime,
    worker: &str,
) {
    let name = schedule.name.as_str();
    match claim(kv, schedule, window_start, worker).await {
        Ok(false) => return,
        Ok(true) => {}
        Err(e) => {
            tracing::warn!(schedule = name, error.message = %e, error.cause_chain = ?e, "cannot read or claim the schedule's window; will look again");
            return;
        }
    }
    let target = schedule.target.to_string();
    // The window is ours alone now; a refused or unanswered trigger is retried a few times
    // rather than losing the window.
    for attempt in 1..=3 {
        match crate::client::request_run(bus, &target, schedule.dry_run).await {
            Ok(accepted) => {
                tracing::info!(schedule = name, run_id = %accepted.run_id, target = %target, "scheduled run started");
                let mut fired = FiredWindow::new(window_start, worker);
                fired.run_id = Some(accepted.run_id);
                if let Err(e) = kv.put(key(schedule), fired.encode()).await {
                    tracing::warn!(schedule = name, error.message = %e, "cannot note the run id on the schedule");
                }
                return;
            }
            Err(e) => {
                tracing::warn!(schedule = name, attempt, error.message = %e, "scheduled run not accepted");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    tracing::error!(
        schedule = name,
        "scheduled run could not be started for this window"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(toml_text: &str) -> Result<Schedule, String> {
        let raw: RawSchedule = toml_like(toml_text);
        Schedule::try_from(raw)
    }

    /// Builds the raw form from `key=value` pairs separated by `;`.
    fn toml_like(text: &str) -> RawSchedule {
        let mut raw = RawSchedule {
            name: None,
            target: String::new(),
            every: None,
            cron: None,
            dry_run: false,
        };
        for pair in text.split(';') {
            let (k, v) = pair.split_once('=').expect("key=value");
            let v = v.trim().to_string();
            match k.trim() {
                "name" => raw.name = Some(v),
                "target" => raw.target = v,
                "every" => raw.every = Some(v),
                "cron" => raw.cron = Some(v),
                "dry_run" => raw.dry_run = v == "true",
                other => panic!("unknown key {other}"),
            }
        }
        raw
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn every_windows_are_aligned_on_the_epoch() {
        let s = schedule("target=org:acme;every=6h").unwrap();
        assert_eq!(s.name, "org-acme-6h");
        let six_hours = 6 * 3600;
        assert_eq!(
            s.cadence.window_start(at(10 * six_hours + 17)),
            Some(at(10 * six_hours))
        );
        assert_eq!(
            s.cadence.next_window_start(at(10 * six_hours + 17)),
            Some(at(11 * six_hours))
        );
        assert_eq!(
            s.cadence.window_start(at(11 * six_hours)),
            Some(at(11 * six_hours))
        );
    }

    #[test]
    fn cron_windows_run_from_one_occurrence_to_the_next() {
        let s = schedule("name=nightly;target=octo/hello;cron=0 3 * * *").unwrap();
        assert_eq!(s.name, "nightly");
        let day = 86_400;
        // 2026-12-01 is day 20423 since the epoch.
        let midnight = 20_423 * day;
        assert_eq!(
            s.cadence.window_start(at(midnight + 5 * 3600)),
            Some(at(midnight + 3 * 3600))
        );
        assert_eq!(
            s.cadence.window_start(at(midnight + 3600)),
            Some(at(midnight - day + 3 * 3600))
        );
        assert_eq!(
            s.cadence.next_window_start(at(midnight + 5 * 3600)),
            Some(at(midnight + day + 3 * 3600))
        );
        let seconds = schedule("target=org:acme;cron=*/10 * * * * *").unwrap();
        assert_eq!(
            seconds.cadence.window_start(at(midnight + 25)),
            Some(at(midnight + 20))
        );
    }

    #[test]
    fn bad_schedules_name_the_problem() {
        assert!(
            schedule("target=org:acme")
                .unwrap_err()
                .contains("exactly one of `every` or `cron`")
        );
        assert!(
            schedule("target=org:acme;every=1h;cron=* * * * *")
                .unwrap_err()
                .contains("exactly one")
        );
        assert!(
            schedule("target=org:acme;every=soon")
                .unwrap_err()
                .contains("every")
        );
        assert!(
            schedule("target=org:acme;every=10ms")
                .unwrap_err()
                .contains("at least 1s")
        );
        assert!(
            schedule("target=org:acme;cron=99 * * * *")
                .unwrap_err()
                .contains("cron")
        );
        assert!(
            schedule("name=a b;target=org:acme;every=1h")
                .unwrap_err()
                .contains("may only hold")
        );
        assert!(
            schedule("target=nope;every=1h")
                .unwrap_err()
                .contains("unknown target form")
        );
    }
}
