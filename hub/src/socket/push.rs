//! Pushes CR changes to the rooms of the sessions: `session-status` on every change of what it
//! carries, `qr-code` on every new valid QR, `qr-expired` when the QR status turns expired.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use socketioxide::SocketIo;
use tokio::sync::mpsc;

use crate::app::Hub;
use crate::snapshot::{self, Snapshot};
use crate::socket::contract::{QrCode, QrExpired, ServerEvent, SessionStatus};
use crate::view::ViewEvent;

/// The snapshot's QR as a PNG data URL for `qr-code`, rendered once per QR string.
pub fn qr_image(hub: &Hub, snap: &Snapshot) -> Option<Arc<str>> {
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
    Some(url)
}

pub async fn run(io: SocketIo, hub: Arc<Hub>, mut rx: mpsc::UnboundedReceiver<ViewEvent>) {
    let mut last: HashMap<String, Snapshot> = HashMap::new();
    // Rooms of sessions already reported as unclaimed (one log line per session).
    let mut unclaimed: HashSet<String> = HashSet::new();
    // Claims decide what is pushed: not before the namespaces are listed (bounded, as requests).
    hub.synced().await;
    while let Some(ev) = rx.recv().await {
        match ev {
            ViewEvent::Changed { obj, at } => {
                let snap = Snapshot::of(&obj);
                let room = snap.room();
                if !hub.is_claimed(&obj) {
                    // Served to nobody; a namespace that lost its claim since a socket
                    // subscribed sends that socket nothing more either.
                    if unclaimed.insert(room.clone()) {
                        tracing::warn!(
                            namespace = %snap.namespace, session = %snap.instance_id,
                            tenant = %snap.tenant,
                            label = %crds::labels::tenant_claim(&snap.tenant),
                            "session not served: its namespace does not claim its tenant"
                        );
                    }
                    last.remove(&room);
                    continue;
                }
                unclaimed.remove(&room);
                let p = snapshot::diff(last.get(&room), &snap, Timestamp::now());
                // A session nobody watches costs only the diff.
                let mut emitted = false;
                if p.status {
                    emitted |= emit(&io, &hub, &room, &SessionStatus::of(&snap)).await;
                }
                if p.qr
                    && let Some(image) = qr_image(&hub, &snap)
                    && let Some(ev) = QrCode::of(&snap, &image)
                {
                    emitted |= emit(&io, &hub, &room, &ev).await;
                }
                if p.expired {
                    emitted |= emit(&io, &hub, &room, &QrExpired::of(&snap)).await;
                }
                if emitted {
                    hub.metrics.push_latency.observe(at.elapsed().as_secs_f64());
                }
                last.insert(room, snap);
            }
            ViewEvent::Deleted { namespace, name } => {
                let room = snapshot::room(&namespace, &name);
                unclaimed.remove(&room);
                last.remove(&room);
            }
            ViewEvent::Relisted => {
                let present: HashSet<String> = hub
                    .view
                    .all()
                    .iter()
                    .map(|s| Snapshot::of(s).room())
                    .collect();
                last.retain(|room, _| present.contains(room));
                unclaimed.retain(|room| present.contains(room));
            }
        }
    }
}

/// Emit to a room; true when anyone was in it.
async fn emit<E: ServerEvent>(io: &SocketIo, hub: &Hub, room: &str, event: &E) -> bool {
    let op = io.to(room.to_owned());
    if op.clone().sockets().is_empty() {
        return false;
    }
    match op.emit(E::NAME, event).await {
        Ok(()) => {
            hub.metrics.pushed(E::NAME);
            true
        }
        Err(e) => {
            tracing::debug!(%room, event = E::NAME, error = %e, "push partly failed");
            true
        }
    }
}
