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

    /// `Err(retry_after_secs)` when a round was started for `room` less than the interval before
    /// `now`, either as recorded in the CR (`last_requested`) or by this replica.
    pub fn check(
        &self,
        room: &str,
        last_requested: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<(), u64> {
        let local = self
            .recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(room)
            .copied();
        let last = match (last_requested, local) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let Some(last) = last else { return Ok(()) };
        let elapsed = now.duration_since(last);
        let interval = k8s_openapi::jiff::SignedDuration::try_from(self.interval)
            .unwrap_or(k8s_openapi::jiff::SignedDuration::MAX);
        if elapsed < interval {
            let wait = (interval - elapsed).as_secs().max(1);
            return Err(wait as u64);
        }
        Ok(())
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
    use k8s_openapi::jiff::ToSpan;

    #[test]
    fn one_round_per_interval() {
        let l = QrLimiter::new(Duration::from_secs(60));
        let t0 = Timestamp::now();
        assert!(l.check("ns/a", None, t0).is_ok());
        l.record("ns/a", t0);
        let wait = l.check("ns/a", None, t0 + 10.seconds()).unwrap_err();
        assert_eq!(wait, 50);
        assert!(l.check("ns/b", None, t0).is_ok());
        assert!(l.check("ns/a", None, t0 + 61.seconds()).is_ok());
        // The CR's own record counts even if this replica never saw the request.
        assert!(l.check("ns/c", Some(t0), t0 + 30.seconds()).is_err());
        assert!(l.check("ns/c", Some(t0), t0 + 60.seconds()).is_ok());
    }
}
