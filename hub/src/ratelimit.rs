//! Request limits of the session routes.
//!
//! At most one new QR round per session per interval ([`QrLimiter`]). The authority is the CR
//! itself (`spec.qrRequestedAt`, shared by every replica); the in-memory map only closes the
//! gap between this replica's own patch and the watch event that reflects it.
//!
//! Each caller's budget of session requests ([`RequestBudget`]): a QR or logout request reads
//! the CR from the API server and may write it, so one token must not be able to turn itself
//! into a stream of API server writes (the probe sent ~1,800 logouts in 7 minutes).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
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

/// Callers' budgets beyond this are pruned of those back to full.
const BUDGETS_PRUNE_ABOVE: usize = 10_000;

pub struct RequestBudget {
    limiter: RateLimiter<String, HashMapStateStore<String>, DefaultClock>,
}

impl RequestBudget {
    /// `per_minute` requests a minute on average, at most `burst` at once.
    pub fn new(per_minute: NonZeroU32, burst: NonZeroU32) -> Self {
        Self {
            limiter: RateLimiter::hashmap(Quota::per_minute(per_minute).allow_burst(burst)),
        }
    }

    /// Spend one request of `caller`'s budget, or `Err(retry_after_secs)` when it is empty.
    pub fn spend(&self, caller: &str) -> Result<(), u64> {
        if self.limiter.len() > BUDGETS_PRUNE_ABOVE {
            self.limiter.retain_recent();
        }
        let key = caller.to_owned();
        self.limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.limiter.clock().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
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

    #[test]
    fn each_caller_has_a_budget_of_its_own() {
        let b = RequestBudget::new(NonZeroU32::new(6).unwrap(), NonZeroU32::new(3).unwrap());
        for _ in 0..3 {
            assert!(b.spend("ana").is_ok());
        }
        let wait = b.spend("ana").unwrap_err();
        assert!((1..=10).contains(&wait), "{wait}");
        assert!(b.spend("bob").is_ok());
    }
}
