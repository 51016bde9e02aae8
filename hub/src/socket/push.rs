//! Pushes CR changes to the rooms of the sessions: `session-status` on every change of what it
//! carries, `qr-code` on every new valid QR, `qr-expired` when the QR status turns expired.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use socketioxide::SocketIo;
use tokio::sync::mpsc;

use crate::app::Hub;
use crate::snapshot::{self, Snapshot};
use crate::view::ViewEvent;

/// The `qr-code` payload, with the PNG rendered once per QR string.
pub fn qr_event(hub: &Hub, snap: &Snapshot) -> Option<serde_json::Value> {
    let qr = snap.qr_string.as_deref()?;
    let before = hub.qr.renders();
    let url = match hub.qr.data_url(qr) {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(session = %snap.instance_id, error = %e, "cannot render QR");
            return None;
        }
    };
    if hub.qr.renders() != before {
        hub.metrics.qr_renders.inc();
    }
    Some(serde_json::json!({
        "instance_id": snap.instance_id,
        "qr": &*url,
        "qr_string": qr,
        "expiresAt": snap.qr_expires_at,
    }))
}

pub async fn run(io: SocketIo, hub: Arc<Hub>, mut rx: mpsc::UnboundedReceiver<ViewEvent>) {
    let mut last: HashMap<String, Snapshot> = HashMap::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            ViewEvent::Changed { obj, at } => {
                let snap = Snapshot::of(&obj);
                let room = snap.room();
                let p = snapshot::diff(last.get(&room), &snap, Timestamp::now());
                // A session nobody watches costs only the diff.
                let mut emitted = false;
                if p.status {
                    emitted |= emit(&io, &hub, &room, "session-status", &snap.status_event()).await;
                }
                if p.qr
                    && let Some(ev) = qr_event(&hub, &snap)
                {
                    emitted |= emit(&io, &hub, &room, "qr-code", &ev).await;
                }
                if p.expired {
                    emitted |= emit(&io, &hub, &room, "qr-expired", &snap.expired_event()).await;
                }
                if emitted {
                    hub.metrics.push_latency.observe(at.elapsed().as_secs_f64());
                }
                last.insert(room, snap);
            }
            ViewEvent::Deleted { namespace, name } => {
                last.remove(&snapshot::room(&namespace, &name));
            }
            ViewEvent::Relisted => {
                let present: std::collections::HashSet<String> = hub
                    .view
                    .all()
                    .iter()
                    .map(|s| Snapshot::of(s).room())
                    .collect();
                last.retain(|room, _| present.contains(room));
            }
        }
    }
}

/// Emit to a room; true when anyone was in it.
async fn emit(io: &SocketIo, hub: &Hub, room: &str, event: &str, data: &serde_json::Value) -> bool {
    let op = io.to(room.to_owned());
    if op.clone().sockets().is_empty() {
        return false;
    }
    match op.emit(event, data).await {
        Ok(()) => {
            hub.metrics.pushed(event);
            true
        }
        Err(e) => {
            tracing::debug!(%room, %event, error = %e, "push partly failed");
            true
        }
    }
}
