//! Prometheus metrics served on /metrics (registered under the `wa_session` prefix).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Clone, Default)]
pub struct Metrics {
    pub qr_published: Counter,
    pub state_transitions: Family<StateLabel, Counter>,
    pub browser_restarts: Counter,
    pub status_writes: Family<ResultLabel, Counter>,
    pub connected: Gauge,
    pub backups: Family<ResultLabel, Counter>,
    pub backup_bytes: Gauge,
    pub restores: Family<ResultLabel, Counter>,
    pub messages_sent: Counter,
    pub message_events: Counter,
    pub message_listeners: Gauge,
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "qr_published",
            "QR codes published to the CR status",
            self.qr_published.clone(),
        );
        registry.register(
            "state_transitions",
            "Transitions of status.status, by new state",
            self.state_transitions.clone(),
        );
        registry.register(
            "browser_restarts",
            "Chromium relaunches after a crash, hang or profile problem",
            self.browser_restarts.clone(),
        );
        registry.register(
            "status_writes",
            "Server-side-apply writes of the CR status, by result",
            self.status_writes.clone(),
        );
        registry.register(
            "connected",
            "1 while the WhatsApp account is linked and connected",
            self.connected.clone(),
        );
        registry.register(
            "backups",
            "Copies of the login attempted once connected, by result (taken, too_large, unsettled, failed, cancelled)",
            self.backups.clone(),
        );
        registry.register(
            "backup_bytes",
            "Size of the last copy of the login taken",
            self.backup_bytes.clone(),
        );
        registry.register(
            "restores",
            "Lost logins put back from a backup, by result (restored, no_usable_backup, failed)",
            self.restores.clone(),
        );
        registry.register(
            "messages_sent",
            "Texts the page was asked to send and added (or found already added: a repeated id)",
            self.messages_sent.clone(),
        );
        registry.register(
            "message_events",
            "Message events (new messages, acks) the page reported",
            self.message_events.clone(),
        );
        registry.register(
            "message_listeners",
            "1 while the listeners that receive messages are attached to the linked page, 0 while the page is linked and they cannot attach (the session cannot receive); 1 while not linked",
            self.message_listeners.clone(),
        );
    }
}
