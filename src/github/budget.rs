//! The fleet-wide GitHub API budget of a token, shared by every worker through the
//! `guardian_budget` bucket, so that any number of workers together keep to GitHub's
//! limits instead of each keeping to them alone.
//!
//! What is shared, per token (the key prefix is [`budget_key`]'s label):
//!
//! - `<token>.requests`: request points claimed per slice of the window (a window is
//!   `github.budget.window`, GitHub's minute, cut into [`SLICES`] slices). A request may
//!   go out when the points of the last `SLICES + 1` slices plus its own stay within
//!   `requests_per_minute`; counting one slice more than the window holds is what keeps
//!   the cap in *every* sliding window, not only in aligned ones. A worker claims the
//!   points of all its waiting requests in one compare-and-set (plus `batch` spare ones
//!   while the window is less than half used), and unused points lapse at the end of their
//!   slice. A GET costs 1 point, a write 5, as GitHub counts them.
//!   The same key holds the primary (hourly) budget as GitHub last reported it — the
//!   smallest `x-ratelimit-remaining` seen for the latest `x-ratelimit-reset` wins — and
//!   the workers seen lately, among whom `max_concurrent` is shared.
//! - `<token>.writes`: the times of the content-creating requests (POST) of the last hour
//!   and of the last write of any kind: a write goes out when it keeps `write_interval`
//!   after the previous one and the per-minute and per-hour caps hold in every sliding
//!   window. Bursts up to the per-minute cap go out at once, so a webhook filing one issue
//!   never waits.
//!
//! A request that would exceed the budget sleeps until the budget allows it (never a
//! spin: the time is computed from the shared state) when that is at most
//! `github.budget.max_wait` away; a longer wait is returned as [`BudgetError::Wait`],
//! which the workflow turns into a deferral that does not use up deliveries. Every wait is
//! observed in `guardian_github_budget_wait_seconds{kind}`.
//!
//! Writes of one token are serialised per worker (one at a time, in arrival order) and
//! spaced `write_interval` apart across the fleet; two workers' writes may still overlap
//! when one takes longer than that interval.
//!
//! What lives elsewhere: reading GitHub's answers about limits that were hit anyway (a
//! 403/429 with `Retry-After`) is `GithubClient`'s; pausing the whole fleet until a primary
//! reset is the consumers' (`bus::flags`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use async_nats::jetstream::kv;
use http::HeaderMap;
use serde::{Deserialize, Serialize};

use crate::config::BudgetSettings;
use crate::store::{self, Record, StoreError};
use crate::telemetry;

/// Slices a window is cut into: the finer, the closer the fleet can come to the cap
/// (at most `SLICES / (SLICES + 1)` of it, 95 %) and the less a slice's lapsed points cost.
pub const SLICES: u64 = 20;
/// Rounds of compare-and-set attempts (each `store::update`'s own bound) on a budget key
/// before a request fails.
const CAS_ROUNDS: u32 = 5;
/// Workers not seen for this long no longer take a share of `max_concurrent`.
const WORKER_SEEN_WITHIN_MS: u64 = 30_000;
/// Points of a request by method, as GitHub counts them for the secondary limit.
const READ_POINTS: u32 = 1;
const WRITE_POINTS: u32 = 5;

/// What a request waited for, as the `kind` label of `guardian_github_budget_wait_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WaitKind {
    /// Points per minute.
    Request,
    /// Write spacing and the content-creation caps.
    Write,
    /// Requests in flight.
    Concurrency,
    /// The hourly primary limit, down to the reserve.
    Primary,
}

impl WaitKind {
    pub const ALL: [WaitKind; 4] = [
        WaitKind::Request,
        WaitKind::Write,
        WaitKind::Concurrency,
        WaitKind::Primary,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WaitKind::Request => "request",
            WaitKind::Write => "write",
            WaitKind::Concurrency => "concurrency",
            WaitKind::Primary => "primary",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    /// The budget returns only after more than `max_wait`.
    #[error("the fleet's GitHub {} budget is spent for the next {}s", kind.as_str(), wait.as_secs_f64().ceil())]
    Wait { kind: WaitKind, wait: Duration },
    #[error("cannot use the shared GitHub budget: {0}")]
    Store(#[from] StoreError),
}

/// The points a request of `method` costs.
pub fn points(method: &http::Method) -> u32 {
    match *method {
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS => READ_POINTS,
        _ => WRITE_POINTS,
    }
}

/// A token's label as a key token of the bucket, so any identity (`pat`,
/// `installation:42`) maps to a valid key.
pub fn budget_key(identity: &str) -> String {
    store::key_token(identity)
}

fn now_ms() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// The primary budget as GitHub reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrimaryView {
    pub remaining: u64,
    /// `x-ratelimit-reset`: Unix seconds.
    pub reset: u64,
}

impl PrimaryView {
    /// The view of the latest reset; for the same reset, the smallest remaining.
    pub fn merge(self, other: PrimaryView) -> PrimaryView {
        match other.reset.cmp(&self.reset) {
            std::cmp::Ordering::Greater => other,
            std::cmp::Ordering::Equal if other.remaining < self.remaining => other,
            _ => self,
        }
    }

    /// Reads `x-ratelimit-remaining` / `-reset` of the `core` resource.
    pub fn from_headers(headers: &HeaderMap) -> Option<PrimaryView> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        if header("x-ratelimit-resource").is_some_and(|r| r != "core") {
            return None;
        }
        Some(PrimaryView {
            remaining: header("x-ratelimit-remaining")?.trim().parse().ok()?,
            reset: header("x-ratelimit-reset")?.trim().parse().ok()?,
        })
    }
}

/// `<token>.requests`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestState {
    /// Points claimed per slice index (milliseconds since the epoch ÷ slice length).
    #[serde(default)]
    pub slices: BTreeMap<u64, u32>,
    #[serde(default)]
    pub primary: Option<PrimaryView>,
    /// Worker id → when it last claimed points (ms since the epoch).
    #[serde(default)]
    pub workers: BTreeMap<String, u64>,
}

impl Record for RequestState {
    const BUCKET: &'static str = crate::bus::BUDGET_BUCKET;
    const VERSION: u32 = 1;
}

/// `<token>.writes`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WriteState {
    /// Times (ms since the epoch) of the content-creating requests of the last hour, sorted.
    #[serde(default)]
    pub creations: Vec<u64>,
    /// Time of the last write of any kind.
    #[serde(default)]
    pub last_write: u64,
}

impl Record for WriteState {
    const BUCKET: &'static str = crate::bus::BUDGET_BUCKET;
    const VERSION: u32 = 1;
}

/// What a claim decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Granted; for request points, how many were taken.
    Granted(u32),
    /// Not before this long from now.
    Wait(WaitKind, Duration),
}

/// The limits in the units the arithmetic uses (milliseconds).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub points_per_window: u32,
    pub creations_per_window: u32,
    pub creations_per_hour: u32,
    pub window_ms: u64,
    pub write_spacing_ms: u64,
    pub reserve: u64,
    pub max_concurrent: u32,
    pub max_concurrent_per_worker: u32,
}

impl Limits {
    pub fn new(settings: &BudgetSettings, write_interval: Duration) -> Limits {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Limits {
            points_per_window: settings.requests_per_minute,
            creations_per_window: settings.writes_per_minute,
            creations_per_hour: settings.writes_per_hour,
            window_ms: ms(settings.window).max(SLICES),
            write_spacing_ms: ms(write_interval),
            reserve: u64::from(settings.reserve),
            max_concurrent: settings.max_concurrent,
            max_concurrent_per_worker: settings.max_concurrent_per_worker,
        }
    }

    pub fn slice_ms(&self) -> u64 {
        self.window_ms / SLICES
    }

    /// Points claimed in a slice are spent before its last tenth, so a request sent at the
    /// end of its slice is not counted by GitHub in a window the fleet thought empty.
    pub fn slice_guard_ms(&self) -> u64 {
        self.slice_ms() / 10
    }

    /// Margin added to the content-creation windows for the time between claiming a write
    /// and GitHub receiving it.
    pub fn write_guard_ms(&self) -> u64 {
        self.window_ms / 100 + 200
    }

    fn hour_ms(&self) -> u64 {
        self.window_ms * 60
    }

    /// This worker's share of the fleet's concurrency among `workers` live workers.
    pub fn concurrency_share(&self, workers: usize) -> usize {
        let workers = u32::try_from(workers.max(1)).unwrap_or(u32::MAX);
        (self.max_concurrent / workers).clamp(1, self.max_concurrent_per_worker) as usize
    }
}

/// Claims `need` request points (plus up to `spare` more when the window is less than
/// half used) at `now` for worker `me`.
pub fn claim_points(
    state: &mut RequestState,
    limits: &Limits,
    now: u64,
    need: u32,
    spare: u32,
    me: &str,
) -> Claim {
    let slice_ms = limits.slice_ms();
    let slice = now / slice_ms;
    let oldest = slice.saturating_sub(SLICES);
    state.slices.retain(|s, _| *s >= oldest);
    state
        .workers
        .retain(|_, seen| now.saturating_sub(*seen) < WORKER_SEEN_WITHIN_MS);
    if let Some(primary) = state.primary
        && primary.remaining <= limits.reserve
        && primary.reset * 1000 > now
    {
        // GitHub's reset is in whole seconds; one more keeps clear of clock skew.
        return Claim::Wait(
            WaitKind::Primary,
            Duration::from_millis(primary.reset * 1000 - now + 1000),
        );
    }
    let cap = limits.points_per_window;
    let used: u32 = state.slices.values().sum();
    if used + need <= cap {
        let spare = if used + need + spare <= cap / 2 {
            spare
        } else {
            0
        };
        let take = need + spare;
        *state.slices.entry(slice).or_default() += take;
        state.workers.insert(me.to_string(), now);
        return Claim::Granted(take);
    }
    // The earliest time enough old slices have left the window: slice `j` counts until
    // slice `j + SLICES` ends.
    let mut still_used = used;
    for (j, points) in &state.slices {
        still_used -= points;
        if still_used + need <= cap {
            let free_at = (j + SLICES + 1) * slice_ms;
            return Claim::Wait(
                WaitKind::Request,
                Duration::from_millis(free_at.saturating_sub(now).max(1)),
            );
        }
    }
    // Unreachable with need <= cap (validated), but never a zero wait.
    Claim::Wait(WaitKind::Request, Duration::from_millis(slice_ms))
}

/// Claims a write at `now`; `creating` for content-creating requests (POST).
pub fn claim_write(state: &mut WriteState, limits: &Limits, now: u64, creating: bool) -> Claim {
    let guard = limits.write_guard_ms();
    let (minute, hour) = (limits.window_ms + guard, limits.hour_ms() + guard);
    state.creations.retain(|t| t + hour > now);
    let mut ready = if state.last_write == 0 {
        0
    } else {
        state.last_write + limits.write_spacing_ms
    };
    if creating {
        let in_minute: Vec<u64> = state
            .creations
            .iter()
            .copied()
            .filter(|t| t + minute > now)
            .collect();
        let per_minute = limits.creations_per_window as usize;
        if in_minute.len() >= per_minute {
            ready = ready.max(in_minute[in_minute.len() - per_minute] + minute);
        }
        let per_hour = limits.creations_per_hour as usize;
        if state.creations.len() >= per_hour {
            ready = ready.max(state.creations[state.creations.len() - per_hour] + hour);
        }
    }
    if ready > now {
        return Claim::Wait(WaitKind::Write, Duration::from_millis(ready - now));
    }
    if creating {
        state.creations.push(now);
        state.creations.sort_unstable();
    }
    state.last_write = state.last_write.max(now);
    Claim::Granted(1)
}

/// Where the shared state lives.
enum Shared {
    Kv(Box<kv::Store>),
    /// This process only: a client without NATS (and unit tests) keeps the same arithmetic
    /// for itself.
    Local(StdMutex<HashMap<String, Vec<u8>>>),
}

impl Shared {
    /// Applies `change` to the state under `key` by compare-and-set; `change` returns its
    /// result and whether it changed the state.
    async fn transact<T, R>(
        &self,
        key: &str,
        mut change: impl FnMut(&mut T) -> (R, bool),
    ) -> Result<R, StoreError>
    where
        T: Record + Clone + Default,
    {
        match self {
            Shared::Kv(store) => {
                // Every worker's requests meet on one key: a busy fleet may lose a whole
                // round of compare-and-set attempts, which is a reason to go again, not to
                // fail the request.
                for round in 0..CAS_ROUNDS {
                    let mut out = None;
                    let updated = store::update::<T>(
                        store,
                        key,
                        || Some(T::default()),
                        |state| {
                            let (result, changed) = change(state);
                            out = Some(result);
                            changed
                        },
                    )
                    .await;
                    match updated {
                        Ok(_) => {
                            if let Some(result) = out {
                                return Ok(result);
                            }
                        }
                        Err(StoreError::Contended { .. }) if round + 1 < CAS_ROUNDS => {
                            tracing::debug!(key, "budget key contended; trying again");
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(StoreError::Contended {
                    bucket: T::BUCKET,
                    key: key.to_string(),
                })
            }
            Shared::Local(map) => {
                let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
                let mut state: T = map
                    .get(key)
                    .and_then(|b| serde_json::from_slice(b).ok())
                    .unwrap_or_default();
                let (result, changed) = change(&mut state);
                if changed {
                    map.insert(
                        key.to_string(),
                        serde_json::to_vec(&state).unwrap_or_default(),
                    );
                }
                Ok(result)
            }
        }
    }
}

/// Points this worker holds for one slice.
#[derive(Debug, Default)]
struct LocalPoints {
    slice: u64,
    points: u32,
}

/// Requests of one token in flight in this worker, at most `limit`.
struct Gate {
    inflight: StdMutex<usize>,
    limit: AtomicUsize,
    freed: tokio::sync::Notify,
}

impl Gate {
    fn try_enter(&self) -> bool {
        let mut n = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        if *n < self.limit.load(Ordering::Relaxed) {
            *n += 1;
            true
        } else {
            false
        }
    }

    fn set_limit(&self, limit: usize) {
        if self.limit.swap(limit, Ordering::Relaxed) < limit {
            self.freed.notify_waiters();
        }
    }
}

/// A request's place among those in flight; freed when dropped.
pub struct InFlight {
    gate: Arc<Gate>,
    /// Held for a write: the worker's writes of this token go one at a time.
    _write: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut n = self.gate.inflight.lock().unwrap_or_else(|e| e.into_inner());
        *n = n.saturating_sub(1);
        drop(n);
        self.gate.freed.notify_one();
    }
}

/// This worker's side of one token's budget.
struct Token {
    requests_key: String,
    writes_key: String,
    local: tokio::sync::Mutex<LocalPoints>,
    /// Points wanted by this worker's requests waiting for them, claimed together.
    waiting: AtomicU32,
    primary: StdMutex<Option<PrimaryView>>,
    gate: Arc<Gate>,
    writes: Arc<tokio::sync::Mutex<()>>,
}

/// The budget of every token this worker uses.
#[derive(Clone)]
pub struct Budget {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Shared,
    limits: Limits,
    max_wait: Duration,
    batch: u32,
    worker: String,
    tokens: StdMutex<HashMap<String, Arc<Token>>>,
}

impl Budget {
    /// A budget shared through the `guardian_budget` bucket.
    pub fn shared(
        store: kv::Store,
        settings: &BudgetSettings,
        write_interval: Duration,
        worker: &str,
    ) -> Budget {
        Budget::with(
            Shared::Kv(Box::new(store)),
            settings,
            write_interval,
            worker,
        )
    }

    /// A budget kept by this process alone (no NATS).
    pub fn local(settings: &BudgetSettings, write_interval: Duration) -> Budget {
        Budget::with(
            Shared::Local(StdMutex::default()),
            settings,
            write_interval,
            "local",
        )
    }

    fn with(
        shared: Shared,
        settings: &BudgetSettings,
        write_interval: Duration,
        worker: &str,
    ) -> Budget {
        Budget {
            inner: Arc::new(Inner {
                shared,
                limits: Limits::new(settings, write_interval),
                max_wait: settings.max_wait,
                batch: settings.batch,
                worker: worker.to_string(),
                tokens: StdMutex::default(),
            }),
        }
    }

    fn token(&self, key: &str) -> Arc<Token> {
        let mut tokens = self.inner.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens
            .entry(key.to_string())
            .or_insert_with(|| {
                let label = budget_key(key);
                Arc::new(Token {
                    requests_key: format!("{label}.requests"),
                    writes_key: format!("{label}.writes"),
                    local: tokio::sync::Mutex::default(),
                    waiting: AtomicU32::new(0),
                    primary: StdMutex::default(),
                    gate: Arc::new(Gate {
                        inflight: StdMutex::new(0),
                        limit: AtomicUsize::new(self.inner.limits.concurrency_share(1)),
                        freed: tokio::sync::Notify::new(),
                    }),
                    writes: Arc::default(),
                })
            })
            .clone()
    }

    /// Waits until a request of `method` may go out for token `key`: a place among the
    /// requests in flight, for a write its turn and the content-creation budget, then its
    /// points. The returned guard is held until the response has arrived.
    pub async fn enter(
        &self,
        key: &str,
        method: &http::Method,
        creating: bool,
    ) -> Result<InFlight, BudgetError> {
        let token = self.token(key);
        let write = match points(method) {
            READ_POINTS => None,
            _ => Some(self.write_turn(&token, creating).await?),
        };
        let in_flight = self.in_flight(&token, write).await;
        self.claim_points(&token, points(method)).await?;
        Ok(in_flight)
    }

    /// Notes the primary budget GitHub reported in a response for token `key`.
    pub fn observe(&self, key: &str, headers: &HeaderMap) {
        if let Some(view) = PrimaryView::from_headers(headers) {
            let token = self.token(key);
            let mut primary = token.primary.lock().unwrap_or_else(|e| e.into_inner());
            *primary = Some(primary.map_or(view, |known| known.merge(view)));
        }
    }

    /// How long a write of token `key` would wait for the write budget now (an estimate:
    /// other workers may take the budget first).
    pub async fn write_wait(&self, key: &str, creating: bool) -> Duration {
        let token = self.token(key);
        let limits = self.inner.limits;
        let now = now_ms();
        let claim = self
            .inner
            .shared
            .transact(&token.writes_key, |state: &mut WriteState| {
                (claim_write(state, &limits, now, creating), false)
            })
            .await;
        match claim {
            Ok(Claim::Wait(_, wait)) => wait,
            _ => Duration::ZERO,
        }
    }

    /// Sleeps `wait` for `kind`, or refuses when it is longer than `max_wait`.
    async fn wait(&self, kind: WaitKind, wait: Duration) -> Result<(), BudgetError> {
        if wait > self.inner.max_wait {
            return Err(BudgetError::Wait { kind, wait });
        }
        tokio::time::sleep(wait).await;
        telemetry::metrics().observe_budget_wait(kind.as_str(), wait);
        Ok(())
    }

    async fn write_turn(
        &self,
        token: &Token,
        creating: bool,
    ) -> Result<tokio::sync::OwnedMutexGuard<()>, BudgetError> {
        let started = tokio::time::Instant::now();
        let turn = token.writes.clone().lock_owned().await;
        let limits = self.inner.limits;
        loop {
            let now = now_ms();
            let claim = self
                .inner
                .shared
                .transact(&token.writes_key, |state: &mut WriteState| {
                    let claim = claim_write(state, &limits, now, creating);
                    (claim, matches!(claim, Claim::Granted(_)))
                })
                .await?;
            match claim {
                Claim::Granted(_) => break,
                Claim::Wait(kind, wait) => self.wait(kind, wait).await?,
            }
        }
        let queued = started.elapsed();
        if queued > Duration::from_millis(1) {
            tracing::debug!(
                waited_ms = queued.as_millis() as u64,
                "write waited for its turn"
            );
        }
        Ok(turn)
    }

    async fn in_flight(
        &self,
        token: &Token,
        write: Option<tokio::sync::OwnedMutexGuard<()>>,
    ) -> InFlight {
        let gate = token.gate.clone();
        let started = tokio::time::Instant::now();
        let mut waited = false;
        loop {
            let freed = gate.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if gate.try_enter() {
                break;
            }
            waited = true;
            freed.await;
        }
        if waited {
            telemetry::metrics()
                .observe_budget_wait(WaitKind::Concurrency.as_str(), started.elapsed());
        }
        InFlight {
            gate,
            _write: write,
        }
    }

    async fn claim_points(&self, token: &Token, cost: u32) -> Result<(), BudgetError> {
        token.waiting.fetch_add(cost, Ordering::SeqCst);
        let result = self.claim_points_waiting(token, cost).await;
        token.waiting.fetch_sub(cost, Ordering::SeqCst);
        result
    }

    async fn claim_points_waiting(&self, token: &Token, cost: u32) -> Result<(), BudgetError> {
        let limits = self.inner.limits;
        let slice_ms = limits.slice_ms();
        loop {
            let mut local = token.local.lock().await;
            let now = now_ms();
            let slice = now / slice_ms;
            let slice_end = (slice + 1) * slice_ms;
            if now + limits.slice_guard_ms() >= slice_end {
                // Too late in the slice to spend its points: wait for the next one.
                drop(local);
                tokio::time::sleep(Duration::from_millis(slice_end - now)).await;
                continue;
            }
            if local.slice == slice && local.points >= cost {
                local.points -= cost;
                return Ok(());
            }
            let mut primary = *token.primary.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(view) = primary
                && view.remaining <= limits.reserve
                && view.reset * 1000 > now
            {
                drop(local);
                self.wait(
                    WaitKind::Primary,
                    Duration::from_millis(view.reset * 1000 - now + 1000),
                )
                .await?;
                continue;
            }
            let need = token.waiting.load(Ordering::SeqCst).max(cost);
            let (worker, batch) = (&self.inner.worker, self.inner.batch);
            let (claim, workers) = self
                .inner
                .shared
                .transact(&token.requests_key, |state: &mut RequestState| {
                    let before = state.primary;
                    if let Some(mine) = primary {
                        state.primary = Some(state.primary.map_or(mine, |s| s.merge(mine)));
                    }
                    let claim = claim_points(state, &limits, now, need, batch, worker);
                    primary = state.primary;
                    let changed = matches!(claim, Claim::Granted(_)) || state.primary != before;
                    ((claim, state.workers.len()), changed)
                })
                .await?;
            if let Some(shared) = primary {
                let mut mine = token.primary.lock().unwrap_or_else(|e| e.into_inner());
                *mine = Some(mine.map_or(shared, |m| m.merge(shared)));
            }
            token.gate.set_limit(limits.concurrency_share(workers));
            match claim {
                Claim::Granted(take) => {
                    if local.slice != slice {
                        *local = LocalPoints { slice, points: 0 };
                    }
                    local.points += take - cost;
                    return Ok(());
                }
                Claim::Wait(kind, wait) => {
                    drop(local);
                    self.wait(kind, wait).await?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            points_per_window: 100,
            creations_per_window: 4,
            creations_per_hour: 10,
            window_ms: 20_000,
            write_spacing_ms: 0,
            reserve: 50,
            max_concurrent: 90,
            max_concurrent_per_worker: 32,
        }
    }

    /// Points granted in every sliding window of the window's length, from a log of
    /// (time, points) grants, each assumed spent at once.
    fn max_in_any_window(log: &[(u64, u32)], window: u64) -> u32 {
        log.iter()
            .map(|(start, _)| {
                log.iter()
                    .filter(|(t, _)| *t >= *start && *t < start + window)
                    .map(|(_, p)| p)
                    .sum()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn request_points_keep_the_cap_in_every_sliding_window() {
        let l = limits();
        let mut state = RequestState::default();
        let mut log = Vec::new();
        let mut now = 1_000_000_000;
        // A steady stream of single-point requests that takes every point it may.
        while now < 1_000_000_000 + 10 * l.window_ms {
            match claim_points(&mut state, &l, now, 1, 0, "w1") {
                Claim::Granted(n) => log.push((now, n)),
                Claim::Wait(kind, wait) => {
                    assert_eq!(kind, WaitKind::Request);
                    assert!(wait > Duration::ZERO);
                }
            }
            now += 7;
        }
        let granted: u32 = log.iter().map(|(_, n)| n).sum();
        assert!(max_in_any_window(&log, l.window_ms) <= l.points_per_window);
        // Close to the cap: at least SLICES / (SLICES + 1) of it over ten windows.
        assert!(granted >= 10 * l.points_per_window * 9 / 10, "{granted}");
    }

    #[test]
    fn a_wait_for_points_ends_when_old_slices_leave_the_window() {
        let l = limits();
        let mut state = RequestState::default();
        let start = 1_000_000_000 - 1_000_000_000 % l.window_ms;
        assert_eq!(
            claim_points(&mut state, &l, start, 100, 0, "w1"),
            Claim::Granted(100)
        );
        let Claim::Wait(WaitKind::Request, wait) =
            claim_points(&mut state, &l, start + 5, 1, 0, "w1")
        else {
            panic!("over the cap");
        };
        // The first slice counts through SLICES more slices.
        assert_eq!(wait.as_millis() as u64, (SLICES + 1) * l.slice_ms() - 5);
        let later = start + (SLICES + 1) * l.slice_ms();
        assert_eq!(
            claim_points(&mut state, &l, later, 1, 0, "w1"),
            Claim::Granted(1)
        );
    }

    #[test]
    fn spare_points_only_while_the_window_is_quiet() {
        let l = limits();
        let mut state = RequestState::default();
        assert_eq!(
            claim_points(&mut state, &l, 1_000_000, 2, 10, "w1"),
            Claim::Granted(12)
        );
        assert_eq!(
            claim_points(&mut state, &l, 1_000_001, 30, 10, "w2"),
            Claim::Granted(30)
        );
        assert_eq!(state.workers.len(), 2);
    }

    #[test]
    fn the_primary_reserve_is_kept_until_the_reset() {
        let l = limits();
        let now = 1_700_000_000_000;
        let mut state = RequestState {
            primary: Some(PrimaryView {
                remaining: 50,
                reset: 1_700_000_600,
            }),
            ..Default::default()
        };
        assert_eq!(
            claim_points(&mut state, &l, now, 1, 0, "w1"),
            Claim::Wait(WaitKind::Primary, Duration::from_secs(601))
        );
        assert_eq!(
            claim_points(&mut state, &l, now + 601_000, 1, 0, "w1"),
            Claim::Granted(1)
        );
    }

    #[test]
    fn the_smallest_remaining_of_the_latest_reset_wins() {
        let a = PrimaryView {
            remaining: 300,
            reset: 100,
        };
        let b = PrimaryView {
            remaining: 200,
            reset: 100,
        };
        let next = PrimaryView {
            remaining: 5000,
            reset: 200,
        };
        assert_eq!(a.merge(b), b);
        assert_eq!(b.merge(a), b);
        assert_eq!(b.merge(next), next);
        assert_eq!(next.merge(a), next);
    }

    #[test]
    fn creations_burst_to_the_minute_cap_then_keep_both_caps() {
        let l = limits();
        let guard = l.write_guard_ms();
        let mut state = WriteState::default();
        let mut now = 5_000_000;
        let mut log = Vec::new();
        // Four at once: a burst up to the per-minute cap never waits.
        for _ in 0..4 {
            assert_eq!(claim_write(&mut state, &l, now, true), Claim::Granted(1));
            log.push((now, 1));
        }
        assert_eq!(
            claim_write(&mut state, &l, now, true),
            Claim::Wait(WaitKind::Write, Duration::from_millis(l.window_ms + guard))
        );
        // Updates and closes are not content creation.
        assert_eq!(claim_write(&mut state, &l, now, false), Claim::Granted(1));
        // Over two hours, never more than the caps in any sliding window.
        while now < 5_000_000 + 2 * l.hour_ms() {
            match claim_write(&mut state, &l, now, true) {
                Claim::Granted(_) => log.push((now, 1)),
                Claim::Wait(_, wait) => now += wait.as_millis() as u64,
            }
        }
        assert!(max_in_any_window(&log, l.window_ms) <= 4);
        assert!(max_in_any_window(&log, l.hour_ms()) <= 10);
        assert!(log.len() >= 19, "{}", log.len());
    }

    #[test]
    fn writes_keep_the_spacing() {
        let l = Limits {
            write_spacing_ms: 1000,
            ..limits()
        };
        let mut state = WriteState::default();
        assert_eq!(
            claim_write(&mut state, &l, 10_000, false),
            Claim::Granted(1)
        );
        assert_eq!(
            claim_write(&mut state, &l, 10_400, false),
            Claim::Wait(WaitKind::Write, Duration::from_millis(600))
        );
        assert_eq!(claim_write(&mut state, &l, 11_000, true), Claim::Granted(1));
    }

    #[test]
    fn the_fleet_concurrency_is_shared_among_live_workers() {
        let l = limits();
        assert_eq!(l.concurrency_share(1), 32);
        assert_eq!(l.concurrency_share(3), 30);
        assert_eq!(l.concurrency_share(200), 1);
    }

    #[test]
    fn token_labels_are_key_tokens() {
        assert_eq!(budget_key("pat"), "pat");
        assert_eq!(budget_key("installation:42"), "installation=3A42");
    }

    fn settings() -> BudgetSettings {
        BudgetSettings {
            requests_per_minute: 100,
            writes_per_minute: 2,
            writes_per_hour: 100,
            max_concurrent: 2,
            max_concurrent_per_worker: 2,
            reserve: 10,
            max_wait: Duration::from_secs(5),
            window: Duration::from_secs(60),
            batch: 10,
        }
    }

    #[tokio::test]
    async fn a_long_wait_is_refused_not_slept() {
        let budget = Budget::local(&settings(), Duration::ZERO);
        for _ in 0..2 {
            drop(
                budget
                    .enter("pat", &http::Method::POST, true)
                    .await
                    .expect("burst"),
            );
        }
        let started = std::time::Instant::now();
        let err = budget
            .enter("pat", &http::Method::POST, true)
            .await
            .err()
            .expect("third creation in the minute");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(
            matches!(err, BudgetError::Wait { kind: WaitKind::Write, wait } if wait > Duration::from_secs(50)),
            "{err}"
        );
        assert!(budget.write_wait("pat", true).await > Duration::from_secs(50));
        assert_eq!(budget.write_wait("pat", false).await, Duration::ZERO);
    }

    #[tokio::test]
    async fn requests_in_flight_are_capped() {
        let budget = Budget::local(&settings(), Duration::ZERO);
        let a = budget
            .enter("pat", &http::Method::GET, false)
            .await
            .unwrap();
        let _b = budget
            .enter("pat", &http::Method::GET, false)
            .await
            .unwrap();
        let third = {
            let budget = budget.clone();
            tokio::spawn(async move {
                budget
                    .enter("pat", &http::Method::GET, false)
                    .await
                    .map(|_| ())
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!third.is_finished(), "a third request waits for a place");
        drop(a);
        tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("enters once one is freed")
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn the_reserve_stops_requests_until_the_reset() {
        let budget = Budget::local(&settings(), Duration::ZERO);
        let reset = (now_ms() / 1000 + 3600).to_string();
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining", "10".parse().unwrap());
        h.insert("x-ratelimit-reset", reset.parse().unwrap());
        budget.observe("pat", &h);
        let err = budget
            .enter("pat", &http::Method::GET, false)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(
                err,
                BudgetError::Wait {
                    kind: WaitKind::Primary,
                    ..
                }
            ),
            "{err}"
        );
        // Another token is not affected.
        assert!(
            budget
                .enter("installation:1", &http::Method::GET, false)
                .await
                .is_ok()
        );
    }
}
