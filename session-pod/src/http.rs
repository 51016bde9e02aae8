//! /livez, /readyz and /metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::error::Result;

/// The session loop beats at least this often (idle included); a longer silence means it is
/// stuck and the pod should be restarted.
pub const MAX_SILENCE: Duration = Duration::from_secs(120);

#[derive(Default)]
pub struct Health {
    /// WhatsApp Web is loaded and the driver reads it, or the agent is deliberately idle.
    ready: AtomicBool,
    last_beat_ms: AtomicU64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Health {
    pub fn beat(&self) {
        self.last_beat_ms.store(now_ms(), Ordering::Relaxed);
    }
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
    fn alive(&self) -> bool {
        now_ms().saturating_sub(self.last_beat_ms.load(Ordering::Relaxed))
            < MAX_SILENCE.as_millis() as u64
    }
}

/// Serves the probes and `/metrics` on one listener (the pod's `metrics` port) until `shutdown`.
pub async fn serve(
    addr: std::net::SocketAddr,
    health: Arc<Health>,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) -> Result<()> {
    let probes = Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .with_state(health);
    let app = runtime::metrics::router(registry).merge(probes);
    runtime::metrics::serve(addr, app, shutdown.cancelled_owned()).await?;
    Ok(())
}

async fn livez(State(health): State<Arc<Health>>) -> impl IntoResponse {
    if health.alive() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "session loop stalled\n")
    }
}

async fn readyz(State(health): State<Arc<Health>>) -> impl IntoResponse {
    if health.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "page not ready\n")
    }
}
