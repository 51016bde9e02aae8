//! The one way the binaries expose their prometheus-client registry: `GET /metrics` in the
//! OpenMetrics text format, on a listener of its own (never the hub's public one).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;

/// What Prometheus negotiates for the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A registry to expose, with an optional hook for gauges computed at scrape time (e.g. sessions
/// by status, counted from a cache only when someone asks).
pub trait Scrape: Send + Sync + 'static {
    fn registry(&self) -> &Registry;

    /// Called before every encoding.
    fn refresh(&self) {}
}

impl Scrape for Registry {
    fn registry(&self) -> &Registry {
        self
    }
}

/// The registry's current text, after its refresh hook.
pub fn render<S: Scrape + ?Sized>(source: &S) -> Result<String, std::fmt::Error> {
    source.refresh();
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, source.registry())?;
    Ok(out)
}

/// The `/metrics` answer: 200 with the text, or a bare 500 if encoding failed.
pub fn response<S: Scrape + ?Sized>(source: &S) -> Response {
    match render(source) {
        Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn handler<S: Scrape>(State(source): State<Arc<S>>) -> Response {
    response(source.as_ref())
}

/// A router with `GET /metrics`; binaries add their probes (`/healthz`, `/livez`, ...) to it.
pub fn router<S: Scrape>(source: Arc<S>) -> Router {
    Router::new()
        .route("/metrics", get(handler::<S>))
        .with_state(source)
}

/// Binds `addr` and serves `app` until `shutdown` resolves. Binding is separate from serving
/// so a taken port is reported as such.
pub async fn serve(
    addr: SocketAddr,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_on(bind(addr).await?, app, shutdown).await
}

/// Binds the metrics listener. A binary calls this during start-up, so a taken port stops it
/// there with a readable error instead of failing later in a background task nobody awaits.
pub async fn bind(addr: SocketAddr) -> Result<Listener, ServeError> {
    let inner = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    Ok(Listener { inner, addr })
}

/// A bound metrics listener, with the address it was asked for (for errors and logs).
#[derive(Debug)]
pub struct Listener {
    inner: tokio::net::TcpListener,
    addr: SocketAddr,
}

/// Serves `app` on a listener from [`bind`] until `shutdown` resolves.
pub async fn serve_on(
    listener: Listener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let Listener { inner, addr } = listener;
    tracing::info!(%addr, "metrics listening");
    axum::serve(inner, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| ServeError::Serve { addr, source })
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("serving on {addr}: {source}")]
    Serve {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use axum::body::Body;
    use axum::http::Request;
    use prometheus_client::metrics::counter::Counter;
    use tower::ServiceExt;

    use super::*;

    struct Probe {
        registry: Registry,
        refreshed: AtomicU32,
    }

    impl Scrape for Probe {
        fn registry(&self) -> &Registry {
            &self.registry
        }
        fn refresh(&self) {
            self.refreshed.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[tokio::test]
    async fn serves_the_registry_after_its_refresh_hook() {
        let mut registry = Registry::with_prefix("wa_test");
        let hits = Counter::<u64>::default();
        registry.register("hits", "Hits", hits.clone());
        hits.inc();
        let probe = Arc::new(Probe {
            registry,
            refreshed: AtomicU32::new(0),
        });
        let resp = router(probe.clone())
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains("wa_test_hits_total 1"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(probe.refreshed.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_taken_port_is_a_bind_error_naming_the_address() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let err = bind(addr).await.expect_err("the port is taken");
        assert!(
            matches!(err, ServeError::Bind { addr: a, .. } if a == addr),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with(&format!("listening on {addr}: ")),
            "{err}"
        );
    }
}
