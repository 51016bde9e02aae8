//! Failures in a row, per key: since when, how many, and one WARN past a bound. The operator's
//! per-session reconcile back-off and [`crate::outage::Outage`] both count in them.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// One streak of failures in a row: when it began, its last failure, how many, and whether
/// its one WARN was given. A success ends it ([`Streaks::ended`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Streak {
    since: Instant,
    last: Instant,
    failures: u32,
    /// The failure (its number in the streak) that was past the bound first, once there was one.
    warned_at: Option<u32>,
}

impl Streak {
    fn begin(now: Instant) -> Self {
        Streak {
            since: now,
            last: now,
            failures: 1,
            warned_at: None,
        }
    }

    fn count(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        self.last = now;
    }

    /// When its first failure came.
    pub fn since(&self) -> Instant {
        self.since
    }

    /// When its latest failure came.
    pub fn last(&self) -> Instant {
        self.last
    }

    /// Failures in a row, this one included (1 at the first).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Whether the latest failure is its first.
    pub fn is_new(&self) -> bool {
        self.failures == 1
    }

    /// Whether the latest failure (at `now`) is the streak's one to report as a problem: true
    /// the first time it is asked with the streak `bound` old or older, false ever after (one
    /// WARN per streak). A failure never asked about does not use the streak's one WARN up.
    pub fn warn_once_past(&mut self, now: Instant, bound: Duration) -> bool {
        if self.warned_at.is_none() && now.saturating_duration_since(self.since) >= bound {
            self.warned_at = Some(self.failures);
            return true;
        }
        false
    }

    /// Whether [`Streak::warn_once_past`] was true for the latest failure.
    pub fn warned_now(&self) -> bool {
        self.warned_at == Some(self.failures)
    }
}

/// Streaks of failures per key (a session; `()` for one thing), shared between tasks
/// (`&self` methods). Ending a streak is cheap when none is open (one atomic load), as it is
/// called at every success.
#[derive(Debug)]
pub struct Streaks<K> {
    /// How many streaks are open: changed under the lock, read without it by [`Streaks::ended`].
    open: AtomicUsize,
    streaks: Mutex<HashMap<K, Streak>>,
}

impl<K> Default for Streaks<K> {
    fn default() -> Self {
        Streaks {
            open: AtomicUsize::new(0),
            streaks: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash> Streaks<K> {
    fn lock(&self) -> MutexGuard<'_, HashMap<K, Streak>> {
        // A panic while holding this lock cannot leave a streak half-updated in a way that
        // matters for logging or back-off: take the data as it is.
        self.streaks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a failure of `key` at `now` (the first of a streak begins it) and hands its
    /// streak to `report`, under the lock, so that a failure's report and the streak's one
    /// WARN are decided once between tasks.
    pub fn failed<R>(&self, key: K, now: Instant, report: impl FnOnce(&mut Streak) -> R) -> R {
        let mut streaks = self.lock();
        let streak = match streaks.entry(key) {
            Entry::Occupied(e) => {
                let s = e.into_mut();
                s.count(now);
                s
            }
            Entry::Vacant(e) => {
                self.open.fetch_add(1, Ordering::Release);
                e.insert(Streak::begin(now))
            }
        };
        report(streak)
    }

    /// A success of `key`: ends its streak and returns it, if one was open.
    pub fn ended(&self, key: &K) -> Option<Streak> {
        if self.open.load(Ordering::Acquire) == 0 {
            return None;
        }
        let ended = self.lock().remove(key);
        if ended.is_some() {
            self.open.fetch_sub(1, Ordering::Release);
        }
        ended
    }

    /// The open streak of `key`.
    pub fn get(&self, key: &K) -> Option<Streak> {
        if self.open.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.lock().get(key).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_failure_begins_a_streak_and_the_next_ones_count_in_it() {
        let streaks = Streaks::default();
        let t0 = Instant::now();
        let first = streaks.failed("a", t0, |s| *s);
        assert!(first.is_new());
        assert_eq!((first.failures(), first.since(), first.last()), (1, t0, t0));
        let t1 = t0 + Duration::from_secs(5);
        let second = streaks.failed("a", t1, |s| *s);
        assert!(!second.is_new());
        assert_eq!(
            (second.failures(), second.since(), second.last()),
            (2, t0, t1)
        );
        assert_eq!(streaks.get(&"a"), Some(second));
    }

    #[test]
    fn each_key_has_a_streak_of_its_own() {
        let streaks = Streaks::default();
        let t0 = Instant::now();
        streaks.failed("a", t0, |_| ());
        streaks.failed("a", t0, |_| ());
        let b = streaks.failed("b", t0 + Duration::from_secs(1), |s| *s);
        assert!(b.is_new(), "b's first failure, whatever a's count");
        assert_eq!(streaks.ended(&"b").map(|s| s.failures()), Some(1));
        assert_eq!(
            streaks.get(&"a").map(|s| s.failures()),
            Some(2),
            "b's end leaves a's streak open"
        );
        assert_eq!(streaks.get(&"b"), None);
    }

    #[test]
    fn the_one_warn_of_a_streak_is_at_the_first_failure_asked_about_past_the_bound() {
        let streaks = Streaks::default();
        let bound = Duration::from_secs(60);
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        let warn = |now| streaks.failed("a", now, |s| s.warn_once_past(now, bound));
        assert!(!warn(t0));
        assert!(!warn(at(59)), "under the bound");
        // a failure not asked about (the operator's refusals) leaves the WARN to the next one
        assert!(!streaks.failed("a", at(61), |s| s.warned_now()));
        assert!(warn(at(62)), "the first asked past the bound");
        assert!(streaks.get(&"a").is_some_and(|s| s.warned_now()));
        assert!(!warn(at(300)), "one per streak");
        assert!(
            streaks.get(&"a").is_some_and(|s| !s.warned_now()),
            "warned_now is about the latest failure only"
        );
    }

    #[test]
    fn a_success_ends_the_streak_and_the_next_failure_begins_a_new_one() {
        let streaks = Streaks::default();
        let bound = Duration::from_secs(60);
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(100);
        streaks.failed("a", t0, |_| ());
        assert!(streaks.failed("a", later, |s| s.warn_once_past(later, bound)));
        let ended = streaks.ended(&"a").expect("an open streak");
        assert_eq!((ended.failures(), ended.since()), (2, t0));
        assert_eq!(
            streaks.ended(&"a"),
            None,
            "a success with no streak open is nothing"
        );
        let again = t0 + Duration::from_secs(200);
        let new = streaks.failed("a", again, |s| {
            (*s, s.warn_once_past(again, Duration::ZERO))
        });
        assert_eq!((new.0.failures(), new.0.since()), (1, again));
        assert!(new.1, "the new streak has its own WARN");
    }

    #[test]
    fn with_no_streak_open_a_success_takes_no_lock() {
        let streaks: Streaks<&str> = Streaks::default();
        // a lock held elsewhere (e.g. by a task counting a failure) would block `ended`
        let held = streaks.streaks.lock().expect("lock");
        assert_eq!(streaks.ended(&"a"), None);
        assert_eq!(streaks.get(&"a"), None);
        drop(held);
        streaks.failed("a", Instant::now(), |_| ());
        assert!(streaks.ended(&"a").is_some());
        assert_eq!(streaks.open.load(Ordering::Acquire), 0);
    }
}
