//! Prometheus metrics, served on `--metrics-addr` (never on the public listener).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: String,
}

/// Why a connection was closed on accept (`crate::server`): `total` or `per_client`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    pub reason: String,
}

pub struct Metrics {
    registry: Registry,
    pub sockets_connected: Gauge,
    pub subscriptions: Gauge,
    pub events_pushed: Family<EventLabels, Counter>,
    /// From the watch event of a CR change arriving at the hub to the emit to the room.
    pub push_latency: Histogram,
    pub http_requests: Family<HttpLabels, Counter>,
    pub watch_live: Gauge,
    pub watch_errors: Counter,
    pub sessions: Gauge,
    pub unparsable_sessions: Gauge,
    /// Sessions whose namespace does not claim their tenant: served to nobody.
    pub unclaimed_sessions: Gauge,
    pub qr_renders: Counter,
    /// Open connections on the public listener (websockets included).
    pub connections_open: Gauge,
    pub connections_refused: Family<RefusedLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("wa_hub");
        let sockets_connected = Gauge::default();
        let subscriptions = Gauge::default();
        let events_pushed = Family::<EventLabels, Counter>::default();
        let push_latency = Histogram::new([
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ]);
        let http_requests = Family::<HttpLabels, Counter>::default();
        let watch_live = Gauge::default();
        let watch_errors = Counter::default();
        let sessions = Gauge::default();
        let unparsable_sessions = Gauge::default();
        let unclaimed_sessions = Gauge::default();
        let qr_renders = Counter::default();
        let connections_open = Gauge::default();
        let connections_refused = Family::<RefusedLabels, Counter>::default();
        registry.register(
            "sockets_connected",
            "Connected socket.io clients",
            sockets_connected.clone(),
        );
        registry.register(
            "subscriptions",
            "Active session subscriptions over all sockets",
            subscriptions.clone(),
        );
        registry.register(
            "events_pushed",
            "Events emitted to session rooms, by event",
            events_pushed.clone(),
        );
        registry.register(
            "push_latency_seconds",
            "Time from a CR change arriving on the watch to its emit to the session room",
            push_latency.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            http_requests.clone(),
        );
        registry.register(
            "watch_live",
            "1 while the watch of WhatsAppSessions is live",
            watch_live.clone(),
        );
        registry.register(
            "watch_errors",
            "Errors on the watch of WhatsAppSessions",
            watch_errors.clone(),
        );
        registry.register("sessions", "WhatsAppSessions in the view", sessions.clone());
        registry.register(
            "unparsable_sessions",
            "WhatsAppSessions the hub cannot read, left out of the view (a WARN line names each and its field)",
            unparsable_sessions.clone(),
        );
        registry.register(
            "unclaimed_sessions",
            "WhatsAppSessions served to nobody: their namespace lacks the label tenant.whatsapp.leadmaster.io/<tenant>",
            unclaimed_sessions.clone(),
        );
        registry.register(
            "qr_renders",
            "QR strings rendered to PNG (cache misses)",
            qr_renders.clone(),
        );
        registry.register(
            "connections_open",
            "Open connections on the public listener, websockets included",
            connections_open.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed on accept because a connection limit was reached, by limit (total, per_client)",
            connections_refused.clone(),
        );
        Self {
            registry,
            sockets_connected,
            subscriptions,
            events_pushed,
            push_latency,
            http_requests,
            watch_live,
            watch_errors,
            sessions,
            unparsable_sessions,
            unclaimed_sessions,
            qr_renders,
            connections_open,
            connections_refused,
        }
    }

    pub fn pushed(&self, event: &str) {
        self.events_pushed
            .get_or_create(&EventLabels {
                event: event.to_owned(),
            })
            .inc();
    }
}

impl runtime::metrics::Scrape for crate::app::Hub {
    fn registry(&self) -> &Registry {
        &self.metrics.registry
    }

    fn refresh(&self) {
        self.metrics
            .unparsable_sessions
            .set(self.view.unparsable() as i64);
        let all = self.view.all();
        self.metrics.sessions.set(all.len() as i64);
        let unclaimed = all.iter().filter(|s| !self.is_claimed(s)).count();
        self.metrics.unclaimed_sessions.set(unclaimed as i64);
    }
}
