//! Prometheus metrics and the HTTP server for `/metrics` and `/healthz`.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::routing::get;
use crds::WhatsAppSession;
use kube::runtime::reflector::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: String,
}

/// One session, for the per-session gauges (as many series as sessions: the operator is the one
/// place that sees every session pod's restarts without kube-state-metrics).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SessionLabels {
    pub namespace: String,
    pub session: String,
}

pub struct Metrics {
    registry: Registry,
    pub session_restarts: Family<SessionLabels, Gauge>,
    pub reconciles: Family<ResultLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub duration: Histogram,
    pub sessions: Family<StatusLabels, Gauge>,
    pub kube_requests: Counter,
    pub leader: Gauge,
    /// Sessions the operator cannot read (crds::watch), set at scrape time.
    pub unparsable_sessions: Gauge,
    /// The controller's cache, read at scrape time for the sessions-by-status gauge.
    store: OnceLock<Store<WhatsAppSession>>,
    /// The watch's unreadable objects, read at scrape time.
    unparsables: OnceLock<crds::watch::Unparsables>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("wa_operator");
        let reconciles = Family::<ResultLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let sessions = Family::<StatusLabels, Gauge>::default();
        let kube_requests = Counter::default();
        let leader = Gauge::default();
        let session_restarts = Family::<SessionLabels, Gauge>::default();
        registry.register(
            "session_restarts",
            "Container restarts of each session's pod (status.restarts; the alert on a session restarting repeatedly reads it)",
            session_restarts.clone(),
        );
        registry.register(
            "reconciles",
            "Reconciliations of WhatsAppSessions by result",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciliations by error kind",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconciliation",
            duration.clone(),
        );
        registry.register(
            "sessions",
            "WhatsAppSessions by status.status (unknown = not reported yet)",
            sessions.clone(),
        );
        registry.register(
            "kube_requests",
            "Requests sent to the Kubernetes API",
            kube_requests.clone(),
        );
        let unparsable_sessions = Gauge::default();
        registry.register(
            "unparsable_sessions",
            "WhatsAppSessions the operator cannot read (an Unparsable Warning Event on each names the field); left out of the other gauges and not reconciled",
            unparsable_sessions.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            leader.clone(),
        );
        Metrics {
            registry,
            reconciles,
            errors,
            duration,
            sessions,
            kube_requests,
            leader,
            session_restarts,
            unparsable_sessions,
            store: OnceLock::new(),
            unparsables: OnceLock::new(),
        }
    }
}

impl Metrics {
    pub fn set_store(&self, store: Store<WhatsAppSession>) {
        let _ = self.store.set(store);
    }

    pub fn set_unparsables(&self, unparsables: crds::watch::Unparsables) {
        let _ = self.unparsables.set(unparsables);
    }

    pub fn observe_reconcile(&self, took: Duration, error: Option<&'static str>) {
        self.duration.observe(took.as_secs_f64());
        let result = if error.is_some() { "error" } else { "ok" };
        self.reconciles
            .get_or_create(&ResultLabels { result })
            .inc();
        if let Some(kind) = error {
            self.errors.get_or_create(&ErrorLabels { kind }).inc();
        }
    }

    pub fn render(&self) -> Result<String, std::fmt::Error> {
        runtime::metrics::render(self)
    }
}

impl runtime::metrics::Scrape for Metrics {
    fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The sessions-by-status gauge, counted from the controller's cache at scrape time.
    fn refresh(&self) {
        if let Some(u) = self.unparsables.get() {
            self.unparsable_sessions.set(u.count() as i64);
        }
        let Some(store) = self.store.get() else {
            return;
        };
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        self.session_restarts.clear();
        for s in store.state() {
            let status = s
                .status
                .as_ref()
                .and_then(|st| st.status)
                .map_or("unknown", |st| st.as_str());
            *counts.entry(status.to_string()).or_default() += 1;
            if let Some(restarts) = s.status.as_ref().and_then(|st| st.restarts) {
                let labels = SessionLabels {
                    namespace: s.metadata.namespace.clone().unwrap_or_default(),
                    session: s.metadata.name.clone().unwrap_or_default(),
                };
                self.session_restarts
                    .get_or_create(&labels)
                    .set(i64::from(restarts));
            }
        }
        self.sessions.clear();
        for (status, n) in counts {
            self.sessions.get_or_create(&StatusLabels { status }).set(n);
        }
    }
}

/// Binds `addr` now (a taken port fails start-up) and returns the server of `/metrics` and
/// `/healthz`, to run until the process ends. Started before leader election so a standby
/// replica is live too.
pub async fn listen(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> Result<
    impl Future<Output = Result<(), runtime::metrics::ServeError>>,
    runtime::metrics::ServeError,
> {
    let listener = runtime::metrics::bind(addr).await?;
    let app = runtime::metrics::router(metrics).route("/healthz", get(|| async { "ok" }));
    Ok(runtime::metrics::serve_on(
        listener,
        app,
        std::future::pending(),
    ))
}

/// A tower layer for the kube client that counts API requests (for the per-session request
/// figure of the scale benchmark).
#[derive(Clone)]
pub struct CountRequestsLayer(pub Counter);

impl<S> tower::Layer<S> for CountRequestsLayer {
    type Service = CountRequests<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CountRequests {
            inner,
            counter: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct CountRequests<S> {
    inner: S,
    counter: Counter,
}

impl<S: tower::Service<R>, R> tower::Service<R> for CountRequests<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }
    fn call(&mut self, req: R) -> Self::Future {
        self.counter.inc();
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::default();
        m.observe_reconcile(Duration::from_millis(3), None);
        m.observe_reconcile(Duration::from_millis(3), Some("kube"));
        m.session_restarts
            .get_or_create(&SessionLabels {
                namespace: "ns".into(),
                session: "s1".into(),
            })
            .set(3);
        let text = m.render().unwrap();
        assert!(
            text.contains("wa_operator_session_restarts{namespace=\"ns\",session=\"s1\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("wa_operator_reconciles_total{result=\"ok\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("wa_operator_reconcile_errors_total{kind=\"kube\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("wa_operator_reconcile_duration_seconds_count 2"),
            "{text}"
        );
    }
}
