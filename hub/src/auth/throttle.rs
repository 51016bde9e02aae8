//! Login throttling: failed attempts per key (username, client address) in a sliding window.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys beyond this are pruned of stale entries, so a flood of random usernames cannot grow
/// memory without bound.
const PRUNE_ABOVE: usize = 10_000;

pub struct Throttle {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Throttle {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry_after_secs)` when `key` has used up its failures in the window.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), u64> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let Some(q) = map.get_mut(key) else {
            return Ok(());
        };
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            q.pop_front();
        }
        if q.len() as u32 >= self.max_failures {
            let oldest = q.front().copied().unwrap_or(now);
            let wait = self.window.saturating_sub(now.duration_since(oldest));
            return Err(wait.as_secs().max(1));
        }
        Ok(())
    }

    pub fn record_failure(&self, key: &str, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > PRUNE_ABOVE {
            let window = self.window;
            map.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        map.entry(key.to_owned()).or_default().push_back(now);
    }

    pub fn reset(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_max_then_recovers() {
        let t = Throttle::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(t.check("u", t0).is_ok());
            t.record_failure("u", t0);
        }
        let retry = t.check("u", t0).unwrap_err();
        assert!((1..=60).contains(&retry));
        assert!(t.check("other", t0).is_ok());
        assert!(t.check("u", t0 + Duration::from_secs(61)).is_ok());
        t.record_failure("v", t0);
        t.reset("v");
        assert!(t.check("v", t0).is_ok());
    }
}
