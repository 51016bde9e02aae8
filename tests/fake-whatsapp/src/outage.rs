//! A test hook: the service becomes unreachable for a while (`POST /_fake/offline {secs}`), as
//! when WhatsApp's servers or the network between them and the browser go away. The page cannot
//! poll, shows `TIMEOUT` (the real page's state while it cannot reach the server) and comes back
//! by itself once the service answers again; the phone's side (control API) stays up so a test
//! can watch and end the outage.

use std::sync::Mutex;
use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::server::AppState;

/// When the current outage ends, if any; a counter that moves when one starts (so held long
/// polls end at once instead of keeping the page "alive" through the outage).
pub(crate) struct Outage {
    until: Mutex<Option<Instant>>,
    started: watch::Sender<u64>,
}

impl Default for Outage {
    fn default() -> Self {
        Self {
            until: Mutex::new(None),
            started: watch::Sender::new(0),
        }
    }
}

/// Whether an outage lasting until `until` is still on at `now`.
pub(crate) fn is_on(until: Option<Instant>, now: Instant) -> bool {
    until.is_some_and(|u| now < u)
}

impl Outage {
    fn until(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.until.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts (or replaces) an outage of `length` from `now`; a zero length ends it.
    pub(crate) fn begin(&self, length: Duration, now: Instant) {
        *self.until() = (!length.is_zero()).then(|| now + length);
        if !length.is_zero() {
            self.started.send_modify(|n| *n += 1);
        }
    }

    pub(crate) fn active(&self, now: Instant) -> bool {
        is_on(*self.until(), now)
    }

    /// Seconds left, for the control API's answer.
    pub(crate) fn remaining(&self, now: Instant) -> f64 {
        self.until()
            .map(|u| u.saturating_duration_since(now).as_secs_f64())
            .unwrap_or(0.0)
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.started.subscribe()
    }
}

/// Middleware of the page's routes: 503 while an outage is on (the page's fetches fail).
pub(crate) async fn refuse_while_offline(
    State(s): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if s.outage.active(Instant::now()) {
        return unreachable_response();
    }
    next.run(req).await
}

pub(crate) fn unreachable_response() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"error": "OFFLINE", "message": "the service is unreachable (test outage)"})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_on_until_its_end_and_zero_ends_it() {
        let o = Outage::default();
        let t = Instant::now();
        assert!(!o.active(t));
        let mut rx = o.subscribe();
        o.begin(Duration::from_secs(2), t);
        assert!(rx.has_changed().unwrap_or(false), "held polls are told");
        rx.mark_unchanged();
        assert!(o.active(t + Duration::from_millis(1999)));
        assert!(!o.active(t + Duration::from_secs(2)));
        o.begin(Duration::ZERO, t);
        assert!(!o.active(t));
        assert!(!rx.has_changed().unwrap_or(true), "ending is not a start");
    }
}
