//! The ops HTTP server: `/healthz` (the process is alive), `/readyz` (connected to NATS,
//! kill switches loaded, every consumer task alive, not draining; 503 with the reason
//! otherwise) and `/metrics` (Prometheus text format).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

/// What `/readyz` reports; flipped by the worker as it starts and drains.
#[derive(Clone, Default)]
pub struct Readiness {
    ready: Arc<AtomicBool>,
    /// Set once a part the worker cannot do without has stopped; never cleared.
    failed: Arc<Mutex<Option<String>>>,
    client: Option<async_nats::Client>,
}

impl Readiness {
    pub fn new(client: Option<async_nats::Client>) -> Self {
        Readiness {
            ready: Arc::new(AtomicBool::new(false)),
            failed: Arc::default(),
            client,
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Marks the worker not ready for good: `what` stopped (a consumer task died).
    pub fn set_failed(&self, what: impl Into<String>) {
        if let Ok(mut failed) = self.failed.lock() {
            failed.get_or_insert_with(|| what.into());
        }
    }

    /// `Ok` when ready, otherwise the reason.
    pub fn check(&self) -> Result<(), String> {
        if let Ok(failed) = self.failed.lock()
            && let Some(what) = failed.as_ref()
        {
            return Err(format!("not ready: {what}"));
        }
        if !self.ready.load(Ordering::SeqCst) {
            return Err("not ready: starting or draining".into());
        }
        match &self.client {
            Some(c) if c.connection_state() != async_nats::connection::State::Connected => {
                Err("not ready: NATS disconnected".into())
            }
            _ => Ok(()),
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(readiness): State<Readiness>) -> impl IntoResponse {
    match readiness.check() {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}

async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::telemetry::metrics().encode(),
    )
}

pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(readiness)
}

/// Binds `addr` and serves until `shutdown`. Returns the bound address at once (useful
/// with port 0) and the serving task.
pub async fn serve(
    addr: SocketAddr,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    serve_with(addr, readiness, Router::new(), shutdown).await
}

/// Like [`serve`], with `extra` routes (the webhook receiver) merged in.
pub async fn serve_with(
    addr: SocketAddr,
    readiness: Readiness,
    extra: Router,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("http.listen {addr}: cannot bind: {e}"))?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router(readiness).merge(extra))
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error.message = %e, "ops server stopped");
        }
    });
    Ok((bound, task))
}
