//! Per-socket outgoing queues and the rooms (one per session) that broadcasts go through.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::protocol;

/// A socket's outgoing queue, filled by broadcasters and drained by the socket's only task.
///
/// This is the design point being measured. engineioxide's queue is a tokio `mpsc` channel,
/// which allocates its first block of 32 slots of ~170 B when it is created; here an empty
/// `VecDeque` owns no memory, the first frame allocates a few 32-byte slots, and the task takes
/// the whole deque when it drains it, so an idle socket is back to owning nothing. `Notify`
/// keeps a wake-up sent while the task is busy, so none is lost.
pub struct Outbox {
    queue: Mutex<VecDeque<Utf8Bytes>>,
    pub wake: Notify,
    /// Bound on queued frames: a client that does not read loses frames beyond it, like an
    /// engineioxide socket whose `max_buffer_size` is reached.
    cap: usize,
}

impl Outbox {
    pub fn new(cap: usize) -> Self {
        Self {
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            cap,
        }
    }

    /// Queue a frame; false when the queue is full (the frame is dropped).
    pub fn push(&self, frame: Utf8Bytes) -> bool {
        let mut q = lock(&self.queue);
        if q.len() >= self.cap {
            return false;
        }
        q.push_back(frame);
        drop(q);
        self.wake.notify_one();
        true
    }

    /// Everything queued, leaving an unallocated queue behind.
    pub fn take(&self) -> VecDeque<Utf8Bytes> {
        std::mem::take(&mut *lock(&self.queue))
    }
}

/// A poisoned lock only means another task panicked mid-update of plain data; go on.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Room {
    members: Vec<(u64, Arc<Outbox>)>,
    /// The session's last `session-status` frame, encoded once and shared by every send.
    status: Utf8Bytes,
}

#[derive(Default)]
pub struct Rooms {
    rooms: Mutex<HashMap<Box<str>, Room>>,
    pub dropped: AtomicU64,
}

impl Rooms {
    /// Join socket `id` to session `name`'s room; returns the session's current status frame
    /// (sent on subscribe, as wa-hub and the Node peer do).
    pub fn join(&self, name: &str, id: u64, outbox: &Arc<Outbox>) -> Utf8Bytes {
        let mut rooms = lock(&self.rooms);
        let room = rooms.entry(name.into()).or_insert_with(|| Room {
            members: Vec::new(),
            status: status_frame(name, Value::Null),
        });
        if !room.members.iter().any(|(m, _)| *m == id) {
            room.members.push((id, outbox.clone()));
        }
        room.status.clone()
    }

    pub fn leave(&self, name: &str, id: u64) {
        let mut rooms = lock(&self.rooms);
        if let Some(room) = rooms.get_mut(name) {
            room.members.retain(|(m, _)| *m != id);
            if room.members.is_empty() {
                rooms.remove(name);
            }
        }
    }

    /// A new status for one room (the `nth` in iteration order, for the load driver), sent to
    /// every member. Returns the number of sockets it was queued for.
    pub fn broadcast_nth(&self, nth: usize, phone: Value) -> usize {
        let mut rooms = lock(&self.rooms);
        let len = rooms.len();
        if len == 0 {
            return 0;
        }
        let Some((name, room)) = rooms.iter_mut().nth(nth % len) else {
            return 0;
        };
        room.status = status_frame(name, phone);
        let mut sent = 0;
        for (_, outbox) in &room.members {
            if outbox.push(room.status.clone()) {
                sent += 1;
            } else {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        sent
    }
}

/// The same `session-status` payload as wa-hub and the Node peer (field for field).
fn status_frame(name: &str, phone: Value) -> Utf8Bytes {
    let ev = json!({
        "instance_id": name,
        "namespace": "bench",
        "tenant": "bench",
        "status": "init",
        "qr_status": "none",
        "connectedAt": null,
        "phoneNumber": phone,
        "updatedAt": null,
        "lastError": null,
    });
    protocol::event("session-status", &ev).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_is_bounded_and_empty_after_take() {
        let o = Outbox::new(2);
        assert!(o.push("a".into()));
        assert!(o.push("b".into()));
        assert!(!o.push("c".into()));
        assert_eq!(o.take().len(), 2);
        assert_eq!(lock(&o.queue).capacity(), 0);
    }

    #[test]
    fn broadcast_reaches_the_members_only() {
        let rooms = Rooms::default();
        let (a, b) = (Arc::new(Outbox::new(8)), Arc::new(Outbox::new(8)));
        let snap = rooms.join("s1", 1, &a);
        assert!(
            snap.as_str()
                .starts_with(r#"42["session-status",{"connectedAt""#)
        );
        rooms.join("s1", 2, &b);
        rooms.leave("s1", 2);
        assert_eq!(rooms.broadcast_nth(0, json!("t1")), 1);
        assert!(a.take()[0].as_str().contains(r#""phoneNumber":"t1""#));
        assert!(b.take().is_empty());
        rooms.leave("s1", 1);
        assert_eq!(rooms.broadcast_nth(0, json!("t2")), 0);
    }
}
