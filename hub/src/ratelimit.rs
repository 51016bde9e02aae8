//! At most one new QR round per session per interval. The authority is the CR itself
//! (`spec.qrRequestedAt`, shared by every replica); the in-memory map only closes the gap
//! between this replica's own patch and the watch event that reflects it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

pub struct QrLimiter {
    interval: Duration,
    recent: Mutex<HashMap<String, Timestamp>>,
}

impl QrLimiter {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// The last round this replica started for `room`.
    pub fn last(&self, room: &str) -> Option<Timestamp> {
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(room)
            .copied()
    }

    pub fn record(&self, room: &str, at: Timestamp) {
        let mut map = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        // Entries older than the interval carry no information; drop them as we go.
        let interval = self.interval;
        if map.len() > 1024 {
            map.retain(|_, t| at.duration_since(*t).unsigned_abs() < interval);
        }
        map.insert(room.to_owned(), at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qr_request::retry_after;
    use k8s_openapi::jiff::ToSpan;

    /// The limiter as `qr_request::decide` consults it.
    fn check(
        l: &QrLimiter,
        room: &str,
        in_cr: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<(), u64> {
        retry_after(in_cr, l.last(room), now, l.interval).map_or(Ok(()), Err)
    }

    #[test]
    fn one_round_per_interval() {
        let l = QrLimiter::new(Duration::from_secs(60));
        let t0 = Timestamp::now();
        assert!(check(&l, "ns/a", None, t0).is_ok());
        l.record("ns/a", t0);
        let wait = check(&l, "ns/a", None, t0 + 10.seconds()).unwrap_err();
        assert_eq!(wait, 50);
        assert!(check(&l, "ns/b", None, t0).is_ok());
        assert!(check(&l, "ns/a", None, t0 + 61.seconds()).is_ok());
        // The CR's own record counts even if this replica never saw the request.
        assert!(check(&l, "ns/c", Some(t0), t0 + 30.seconds()).is_err());
        assert!(check(&l, "ns/c", Some(t0), t0 + 60.seconds()).is_ok());
    }
}
