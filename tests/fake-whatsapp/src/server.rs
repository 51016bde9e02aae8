//! The HTTP server: shared state, the timer loop, and start/stop for tests and the binary.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{Generation, PageConfig, Timings};
use crate::outage::Outage;
use crate::registry::Registry;
use crate::{control_api, control_messages, page_api};

pub(crate) struct Shared {
    registry: Mutex<Registry>,
    /// What every page of this server serves (generation, hidden modules).
    pub(crate) page: PageConfig,
    /// Wakes the timer loop when a change may have moved the earliest deadline.
    pub(crate) wake: Notify,
    /// A test outage: the page's routes answer 503 while it lasts (`/_fake/offline`).
    pub(crate) outage: Outage,
}

impl Shared {
    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock would be a bug in the registry; keep serving rather
        // than poisoning every later request.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) type AppState = Arc<Shared>;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running fake. Dropping it stops the server.
pub struct FakeWhatsApp {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FakeWhatsApp {
    /// Binds `addr` (port 0 picks a free one) and serves the newest generation until dropped or
    /// [`Self::stop`].
    pub async fn start(addr: SocketAddr, timings: Timings) -> Result<Self, StartError> {
        Self::start_generation(addr, timings, Generation::default()).await
    }

    /// Like [`Self::start`], serving the given generation of WhatsApp Web.
    pub async fn start_generation(
        addr: SocketAddr,
        timings: Timings,
        generation: Generation,
    ) -> Result<Self, StartError> {
        Self::start_with(
            addr,
            timings,
            PageConfig {
                generation,
                ..PageConfig::default()
            },
        )
        .await
    }

    /// Like [`Self::start`], with everything the page serves spelled out.
    pub async fn start_with(
        addr: SocketAddr,
        timings: Timings,
        page: PageConfig,
    ) -> Result<Self, StartError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        let shared = Arc::new(Shared {
            registry: Mutex::new(Registry::new(timings)),
            page,
            wake: Notify::new(),
            outage: Outage::default(),
        });
        let app = router(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let timers = tokio::spawn(timer_loop(shared));
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "server stopped");
            }
            timers.abort();
        });
        Ok(Self {
            addr,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/` — the page's URL (what `WA_URL` points at).
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Stops accepting, lets open requests finish (long polls end within their hold time).
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Serves until the process is stopped.
    pub async fn wait(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for FakeWhatsApp {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn router(shared: AppState) -> Router {
    Router::new()
        .merge(
            page_api::routes().layer(axum::middleware::from_fn_with_state(
                shared.clone(),
                crate::outage::refuse_while_offline,
            )),
        )
        .merge(control_api::routes())
        .merge(control_messages::routes())
        .with_state(shared)
}

/// Fires the registry's timers (QR rotation, pairing, sync) at their deadlines.
async fn timer_loop(shared: AppState) {
    // Even with no deadline, wake now and then to collect pages that went away.
    const IDLE: std::time::Duration = std::time::Duration::from_secs(5);
    loop {
        let next = shared.registry().tick(Instant::now());
        let until = next
            .unwrap_or_else(|| Instant::now() + IDLE)
            .min(Instant::now() + IDLE);
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            _ = shared.wake.notified() => {}
        }
    }
}
