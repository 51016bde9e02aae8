//! Kubernetes Events on sessions (`kubectl describe wa NAME`). Publishing is best effort: a
//! failed Event is logged, never a reconcile error.
//!
//! Warnings are where operators look when something fails, so every failed reconcile publishes
//! one; a session failing in a loop must not flood the API server or `kubectl describe`, hence
//! two layers: [`WarningGate`] lets at most one Warning per session and reason through per
//! [`WARNING_INTERVAL`], and kube's [`Recorder`] folds the repeats it does publish (same
//! session, reason and action within 6 minutes) into one Event whose `series.count` grows,
//! which kubectl shows as "(x5 over 4m)".
//!
//! An error becomes an Event in one place, [`Events::error`] (Stackable operator-rs's
//! `publish_controller_error_as_k8s_event` is the model): the note is the API server's message
//! and the call that failed, and the Event's related object is the child that call was about.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::error::{Call, Error};

/// Shortest time between two Warnings of one session with one reason. Shorter than the
/// Recorder's 6-minute series window, so a steady failure stays one Event with a count.
pub const WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// The API server refuses an Event whose note is longer than this (events.k8s.io/v1).
const NOTE_MAX_BYTES: usize = 1024;

#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
    gate: Arc<Mutex<WarningGate>>,
}

impl Events {
    pub fn new(client: Client, instance: &str) -> Self {
        let reporter = Reporter {
            controller: crds::managers::OPERATOR.into(),
            instance: Some(instance.to_string()),
        };
        Events {
            recorder: Recorder::new(client, reporter),
            gate: Arc::new(Mutex::new(WarningGate::new(WARNING_INTERVAL))),
        }
    }

    pub async fn normal(&self, obj: &ObjectReference, reason: &str, action: &str, note: String) {
        self.publish(obj, EventType::Normal, reason, action, note, None)
            .await;
    }

    /// A Warning, unless one with this reason was published for this object within
    /// [`WARNING_INTERVAL`] (then only logged at debug level).
    pub async fn warning(&self, obj: &ObjectReference, reason: &str, action: &str, note: String) {
        self.gated_warning(obj, reason, action, note, None).await
    }

    /// The Warning for `error` on the session `obj` (rate-limited as [`Events::warning`]):
    /// its note says what the API server answered and to which call, its related object is
    /// the child that call was about.
    pub async fn error(&self, obj: &ObjectReference, reason: &str, error: &Error) {
        let related = error.call().map(Call::object_ref);
        self.gated_warning(obj, reason, "Reconcile", error.event_note(), related)
            .await
    }

    async fn gated_warning(
        &self,
        obj: &ObjectReference,
        reason: &str,
        action: &str,
        note: String,
        related: Option<ObjectReference>,
    ) {
        let key = WarningKey {
            namespace: obj.namespace.clone().unwrap_or_default(),
            name: obj.name.clone().unwrap_or_default(),
            reason: reason.to_string(),
        };
        let admitted = match self.gate.lock() {
            Ok(mut gate) => gate.admit(key, Instant::now()),
            // A panic elsewhere poisoned the lock: publishing is still better than silence.
            Err(_) => true,
        };
        if admitted {
            self.publish(obj, EventType::Warning, reason, action, note, related)
                .await;
        } else {
            tracing::debug!(reason, %note, "warning event suppressed (published recently)");
        }
    }

    async fn publish(
        &self,
        obj: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
        related: Option<ObjectReference>,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(truncate(note, NOTE_MAX_BYTES)),
            action: action.into(),
            secondary: related,
        };
        match self.recorder.publish(&event, obj).await {
            Ok(()) => {}
            // The namespace is being deleted: no new Events can go there, and nobody will read them.
            Err(error) if crate::error::kube_gone(&error) => {
                tracing::debug!(%error, reason, object = ?obj.name, "event not published: namespace going")
            }
            // The API server away: the failure the Event was about is in the log already, and
            // the outage is reported once by the watch loop (docs/operator.md "Logs").
            Err(error) if runtime::kube_errors::is_transient(&error) => {
                tracing::info!(%error, reason, object = ?obj.name, "could not publish event; the API server is away")
            }
            Err(error) => {
                tracing::warn!(%error, reason, object = ?obj.name, "could not publish event")
            }
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct WarningKey {
    pub namespace: String,
    pub name: String,
    pub reason: String,
}

/// Decides which Warnings go out: the first of a key, then none until `interval` has passed
/// since the last one that went out.
#[derive(Debug)]
pub struct WarningGate {
    interval: Duration,
    last: HashMap<WarningKey, Instant>,
}

impl WarningGate {
    pub fn new(interval: Duration) -> Self {
        WarningGate {
            interval,
            last: HashMap::new(),
        }
    }

    /// Whether a Warning for `key` may go out at `now` (and if so, remembers it). Keys older
    /// than the interval are forgotten, so the map holds only the last interval's failures.
    pub fn admit(&mut self, key: WarningKey, now: Instant) -> bool {
        let interval = self.interval;
        self.last
            .retain(|_, at| now.saturating_duration_since(*at) < interval);
        if self.last.contains_key(&key) {
            return false;
        }
        self.last.insert(key, now);
        true
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

/// At most `max` bytes, cut at a character boundary, with an ellipsis when cut.
fn truncate(mut text: String, max: usize) -> String {
    const ELLIPSIS: &str = "…";
    if text.len() <= max {
        return text;
    }
    let mut end = max - ELLIPSIS.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(ELLIPSIS);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, reason: &str) -> WarningKey {
        WarningKey {
            namespace: "ns".into(),
            name: name.into(),
            reason: reason.into(),
        }
    }

    #[test]
    fn one_warning_per_session_and_reason_per_interval() {
        let mut gate = WarningGate::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(gate.admit(key("a", "ReconcileFailed"), t0));
        // a failure loop within the interval: nothing more
        for s in 1..60 {
            assert!(!gate.admit(key("a", "ReconcileFailed"), t0 + Duration::from_secs(s)));
        }
        // other sessions and other reasons are not held back by it
        assert!(gate.admit(key("b", "ReconcileFailed"), t0 + Duration::from_secs(1)));
        assert!(gate.admit(key("a", "SessionPodNotReady"), t0 + Duration::from_secs(1)));
        // the interval counts from the last one published
        assert!(gate.admit(key("a", "ReconcileFailed"), t0 + Duration::from_secs(60)));
        assert!(!gate.admit(key("a", "ReconcileFailed"), t0 + Duration::from_secs(119)));
    }

    #[test]
    fn the_gate_forgets_old_keys() {
        let mut gate = WarningGate::new(Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..100 {
            gate.admit(key(&format!("s{i}"), "ReconcileFailed"), t0);
        }
        assert_eq!(gate.len(), 100);
        gate.admit(key("late", "ReconcileFailed"), t0 + Duration::from_secs(61));
        assert_eq!(gate.len(), 1);
    }

    #[test]
    fn notes_fit_the_api_limit() {
        assert_eq!(truncate("short".into(), NOTE_MAX_BYTES), "short");
        let long = "ñ".repeat(1000); // 2000 bytes
        let cut = truncate(long, NOTE_MAX_BYTES);
        assert!(cut.len() <= NOTE_MAX_BYTES, "{}", cut.len());
        assert!(cut.ends_with('…'));
    }
}
