//! The GitHub webhook receiver: `POST /webhooks/github` on the worker's ops server, mounted
//! only when `webhook.secret` is set (otherwise the path is 404).
//!
//! A delivery is checked in this order: body size (413, read no further), signature
//! (`X-Hub-Signature-256`, constant time; 401 and nothing started), delivery id
//! (`X-GitHub-Delivery`, remembered fleet-wide in `guardian_webhook_deliveries` with a
//! create-if-absent, so a redelivery to any worker is answered `duplicate`), then the event
//! ([`event::decide`]). Scans are never run in the handler: each repository named is
//! *coalesced* through a create-if-absent key in `guardian_webhook_bursts` holding the end
//! of its window (`webhook.coalesce_window`). The delivery that opens a window stores a
//! pending scan in `GUARDIAN_WEBHOOK_SCANS` ([`pending`]) before it is answered; whichever
//! worker pulls it when the window ends starts one run for the repository through
//! `guardian.run`, like any other trigger. Events arriving meanwhile (on any worker) find
//! the window open and are folded into that run. The handler answers within milliseconds,
//! far inside GitHub's 10 s, and the run's trace starts at the delivery's span.

pub mod event;
pub mod pending;
pub mod signature;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{kv, stream};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use secrecy::{ExposeSecret as _, SecretString};
use tokio::sync::OnceCell;
use tracing::Instrument as _;

use crate::bus::{Bus, BusError};
use crate::config::{NatsSettings, WebhookSettings};
use crate::domain::RepoRef;
use event::Decision;

/// The path GitHub posts to.
pub const PATH: &str = "/webhooks/github";
/// Delivery ids seen recently, fleet-wide.
pub const DELIVERIES_BUCKET: &str = "guardian_webhook_deliveries";
/// One key per repository with a scan pending at the end of its coalescing window.
pub const BURSTS_BUCKET: &str = "guardian_webhook_bursts";

/// What happened to one delivery: the `outcome` label of `guardian_webhooks_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// At least one scan will start when its window ends.
    Queued,
    /// Every repository named already had a scan pending; folded into it.
    Coalesced,
    /// The delivery id was seen before.
    Duplicate,
    /// Acknowledged; nothing to do for this event.
    Ignored,
    /// Missing or wrong signature (401).
    Unauthorized,
    /// Body over `webhook.max_body_bytes` (413).
    TooLarge,
    /// Signed, but no delivery id or a payload of the wrong shape (400).
    Invalid,
    /// NATS could not record the delivery (503; GitHub lets operators redeliver).
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 8] = [
        Outcome::Queued,
        Outcome::Coalesced,
        Outcome::Duplicate,
        Outcome::Ignored,
        Outcome::Unauthorized,
        Outcome::TooLarge,
        Outcome::Invalid,
        Outcome::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Queued => "queued",
            Outcome::Coalesced => "coalesced",
            Outcome::Duplicate => "duplicate",
            Outcome::Ignored => "ignored",
            Outcome::Unauthorized => "unauthorized",
            Outcome::TooLarge => "too_large",
            Outcome::Invalid => "invalid",
            Outcome::Error => "error",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Outcome::Queued | Outcome::Coalesced => StatusCode::ACCEPTED,
            Outcome::Duplicate | Outcome::Ignored => StatusCode::OK,
            Outcome::Unauthorized => StatusCode::UNAUTHORIZED,
            Outcome::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Outcome::Invalid => StatusCode::BAD_REQUEST,
            Outcome::Error => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Failures recording a delivery or a pending scan; the delivery is answered 503.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Bus(#[from] BusError),
}

struct Receiver {
    bus: Bus,
    secret: SecretString,
    settings: WebhookSettings,
    /// Replicas, AckWait and duplicate window of what the receiver provisions.
    nats: NatsSettings,
    /// Opened (and provisioned) on the first delivery, so mounting the route never waits
    /// for NATS.
    stores: OnceCell<Stores>,
}

struct Stores {
    deliveries: kv::Store,
    bursts: Option<kv::Store>,
}

/// The route, or `None` when no secret is configured (the path then answers 404).
pub fn router(bus: Bus, settings: &WebhookSettings, nats: &NatsSettings) -> Option<Router> {
    let secret = settings.secret.clone()?;
    let metrics = crate::telemetry::metrics();
    for event in event::HANDLED_EVENTS.into_iter().chain(["other"]) {
        for outcome in Outcome::ALL {
            metrics
                .webhooks
                .with_label_values(&[event, outcome.as_str()]);
        }
    }
    let receiver = Arc::new(Receiver {
        bus,
        secret,
        settings: settings.clone(),
        nats: nats.clone(),
        stores: OnceCell::new(),
    });
    Some(
        Router::new()
            .route(PATH, post(receive))
            .with_state(receiver),
    )
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn answer(event: &str, outcome: Outcome, detail: &str) -> Response {
    crate::telemetry::metrics().webhook(event::event_label(event), outcome.as_str());
    let body = serde_json::json!({ "outcome": outcome.as_str(), "detail": detail });
    (
        outcome.status(),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let event = header_str(&headers, "x-github-event")
        .unwrap_or("")
        .to_string();
    let limit = receiver.settings.max_body_bytes;
    let declared = header_str(&headers, "content-length").and_then(|l| l.parse::<u64>().ok());
    if declared.is_some_and(|l| l > limit as u64) {
        return answer(&event, Outcome::TooLarge, "body too large");
    }
    let Ok(body) = axum::body::to_bytes(body, limit).await else {
        return answer(&event, Outcome::TooLarge, "body too large");
    };
    let signature = header_str(&headers, "x-hub-signature-256");
    if let Err(e) = signature::verify(receiver.secret.expose_secret().as_bytes(), signature, &body)
    {
        tracing::warn!(event = event::event_label(&event), reason = %e, "webhook refused");
        return answer(&event, Outcome::Unauthorized, &e.to_string());
    }
    let Some(delivery) = header_str(&headers, "x-github-delivery").filter(|d| valid_delivery(d))
    else {
        return answer(
            &event,
            Outcome::Invalid,
            "missing or malformed X-GitHub-Delivery",
        );
    };
    let decision = match event::decide(&event, &body) {
        Ok(decision) => decision,
        Err(e) => {
            tracing::warn!(delivery, error.message = %e, "webhook payload refused");
            return answer(&event, Outcome::Invalid, &e.to_string());
        }
    };
    // The root of the trace of every run this delivery starts.
    let span = tracing::info_span!(
        "webhook",
        otel.kind = "server",
        delivery = %delivery,
        event = %event,
        trace_id = tracing::field::Empty
    );
    let span = crate::telemetry::continue_trace(span, opentelemetry::Context::new());
    match receiver.handle(delivery, decision).instrument(span).await {
        Ok((outcome, detail)) => answer(&event, outcome, &detail),
        Err(e) => {
            tracing::error!(delivery, error.message = %e, error.cause_chain = ?e, "webhook not recorded");
            answer(
                &event,
                Outcome::Error,
                "cannot record the delivery; redeliver later",
            )
        }
    }
}

/// GitHub's delivery ids are GUIDs; anything else cannot be a key and is refused.
fn valid_delivery(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The burst key of a repository: case-folded (GitHub names are case-insensitive), with
/// the dots of names escaped so every key is a valid KV key.
fn burst_key(repo: &RepoRef) -> String {
    format!(
        "repo.{}",
        repo.full_name().to_ascii_lowercase().replace('.', "=2E")
    )
}

async fn open_bucket(
    bus: &Bus,
    bucket: &str,
    description: &str,
    max_age: Duration,
    replicas: usize,
) -> Result<kv::Store, BusError> {
    bus.js
        .create_or_update_key_value(kv::Config {
            bucket: bucket.into(),
            description: description.into(),
            history: 1,
            max_age,
            storage: stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        })
        .await
        .map_err(|e| BusError::nats(format!("provisioning bucket {bucket}"), e))
}

impl Receiver {
    async fn stores(&self) -> Result<&Stores, BusError> {
        self.stores
            .get_or_try_init(|| async {
                pending::provision(&self.bus, &self.nats).await?;
                let deliveries = open_bucket(
                    &self.bus,
                    DELIVERIES_BUCKET,
                    "GitHub webhook delivery ids seen recently",
                    self.settings.delivery_ttl,
                    self.nats.replicas,
                )
                .await?;
                let bursts = if self.settings.coalesce_window.is_zero() {
                    None
                } else {
                    Some(
                        open_bucket(
                            &self.bus,
                            BURSTS_BUCKET,
                            "Repositories with a webhook scan pending, key = repo.<owner>/<name>",
                            self.settings.coalesce_window + Duration::from_secs(60),
                            self.nats.replicas,
                        )
                        .await?,
                    )
                };
                Ok(Stores { deliveries, bursts })
            })
            .await
    }

    async fn handle(
        &self,
        delivery: &str,
        decision: Decision,
    ) -> Result<(Outcome, String), WebhookError> {
        let repos = match decision {
            Decision::Ignore(reason) => return Ok((Outcome::Ignored, reason.to_string())),
            Decision::Scan(repos) => repos,
        };
        let stores = self.stores().await?;
        match stores.deliveries.create(delivery, "1".into()).await {
            Ok(_) => {}
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                return Ok((Outcome::Duplicate, "delivery already received".into()));
            }
            Err(e) => {
                return Err(BusError::nats(format!("recording delivery {delivery}"), e).into());
            }
        }
        let mut queued = Vec::new();
        for repo in &repos {
            match self.coalesce(stores, repo, delivery).await {
                Ok(true) => queued.push(repo.full_name()),
                Ok(false) => {}
                Err(e) => {
                    // Forget the delivery so GitHub's redelivery is not taken for a duplicate.
                    let _ = stores.deliveries.purge(delivery).await;
                    return Err(e.into());
                }
            }
        }
        if queued.is_empty() {
            tracing::info!(repos = repos.len(), "webhook folded into pending scans");
            Ok((Outcome::Coalesced, "a scan is already pending".into()))
        } else {
            tracing::info!(repos = ?queued, "webhook scan queued");
            Ok((
                Outcome::Queued,
                format!("scan of {} queued", queued.join(", ")),
            ))
        }
    }

    /// `Ok(true)` when this delivery opened the repository's window (and stored the scan
    /// due when it ends); `Ok(false)` when a scan is already pending.
    async fn coalesce(
        &self,
        stores: &Stores,
        repo: &RepoRef,
        delivery: &str,
    ) -> Result<bool, BusError> {
        let window = u64::try_from(self.settings.coalesce_window.as_millis()).unwrap_or(u64::MAX);
        let due = pending::now_ms().saturating_add(window);
        if let Some(bursts) = &stores.bursts
            && !open_window(bursts, &burst_key(repo), due).await?
        {
            return Ok(false);
        }
        let scan = pending::PendingScan::new(repo.clone(), due, delivery);
        pending::publish(&self.bus, &scan).await?;
        Ok(true)
    }
}

/// Opens the coalescing window of `key` unless one is open. The key holds the window's end
/// (milliseconds since the epoch); an ended window is taken over with a compare-and-set, so
/// exactly one of several concurrent deliveries opens the next one. The bucket's `max_age`
/// only collects old keys: JetStream expires entries too lazily to mark a window's end.
async fn open_window(bursts: &kv::Store, key: &str, end: u64) -> Result<bool, BusError> {
    let now = pending::now_ms();
    let value: bytes::Bytes = end.to_string().into();
    let failed = |e: Box<dyn std::error::Error + Send + Sync>| {
        BusError::nats(format!("coalescing {key}"), e)
    };
    // Twice at most: a key deleted between the failed create and the read is created again.
    for _ in 0..2 {
        match bursts.create(key, value.clone()).await {
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(e) => return Err(failed(e.into())),
        }
        let Some(entry) = bursts.entry(key).await.map_err(|e| failed(e.into()))? else {
            continue;
        };
        let open_until = std::str::from_utf8(&entry.value)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        if entry.operation == kv::Operation::Put && open_until > now {
            return Ok(false);
        }
        return match bursts.update(key, value, entry.revision).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(failed(e.into())),
        };
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_keys_are_valid_and_case_folded() {
        let key = burst_key(&RepoRef {
            owner: "Octo".into(),
            name: "my.repo..x".into(),
        });
        assert_eq!(key, "repo.octo/my=2Erepo=2E=2Ex");
        assert!(valid_delivery("72d3162e-cc78-11e3-81ab-4c9367dc0958"));
        assert!(!valid_delivery("a.b"));
        assert!(!valid_delivery(""));
    }

    #[test]
    fn outcomes_map_to_the_statuses_github_sees() {
        assert_eq!(Outcome::Unauthorized.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(Outcome::TooLarge.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(Outcome::Queued.status().is_success());
        assert!(Outcome::Ignored.status().is_success());
        assert!(Outcome::Duplicate.status().is_success());
    }
}
