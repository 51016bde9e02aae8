//! The current streak of failed reconciles per session: the retry back-off
//! ([`crate::backoff::retry_delay`]) counts its failures, and whether a failure is reported as
//! a problem ([`is_loud`]) depends on how long the API server has been away.
use std::time::{Duration, Instant};

use kube::Resource;
use runtime::streaks::{Streak, Streaks};

/// A session, as (namespace, name).
type SessionKey = (String, String);

pub struct FailureStreaks {
    streaks: Streaks<SessionKey>,
    /// How long a session's reconciles may fail because the API server is away before that is
    /// reported (`runtime::outage::outage_warn_after`).
    outage_warn_after: Duration,
}

impl FailureStreaks {
    pub fn new(outage_warn_after: Duration) -> Self {
        FailureStreaks {
            streaks: Streaks::default(),
            outage_warn_after,
        }
    }

    fn key<K: Resource>(obj: &K) -> SessionKey {
        (
            obj.meta().namespace.clone().unwrap_or_default(),
            obj.meta().name.clone().unwrap_or_default(),
        )
    }

    /// A reconcile of `obj` succeeded: its streak ends.
    pub fn succeeded<K: Resource>(&self, obj: &K) {
        self.streaks.ended(&Self::key(obj));
    }

    /// Counts a failed reconcile of `obj` in its streak and says whether to report it.
    pub fn failed<K: Resource>(&self, obj: &K, transient: bool) -> bool {
        count_failure(
            &self.streaks,
            Self::key(obj),
            transient,
            Instant::now(),
            self.outage_warn_after,
        )
    }

    /// The streak `failed` left (for `error_policy`, which runs right after).
    pub fn current<K: Resource>(&self, obj: &K) -> Option<Streak> {
        self.streaks.get(&Self::key(obj))
    }
}

/// Counts a failed reconcile of `key` at `now` and says whether it is loud ([`is_loud`]).
fn count_failure<K: Eq + std::hash::Hash>(
    failures: &Streaks<K>,
    key: K,
    transient: bool,
    now: Instant,
    warn_after: Duration,
) -> bool {
    failures.failed(key, now, |streak| {
        if transient {
            streak.warn_once_past(now, warn_after);
        }
        is_loud(transient, streak)
    })
}

/// Whether the latest failure of a session's streak is reported as a problem (WARN, and the
/// `ReconcileFailed` Event): always for a failure the API server's return does not mend (a
/// refusal, an invalid object); for the API server being away (`Error::is_transient`) only
/// once per streak, at the first failure after the outage bound — before it the retry usually
/// mends it (a restart of the API server or etcd), after it the operator's watch loop has said
/// so already, and a WARN per session and retry would bury that.
pub fn is_loud(transient: bool, streak: &Streak) -> bool {
    !transient || streak.warned_now()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed reconcile of session "s" `secs` after `t0`, with an outage bound of a minute:
    /// whether it is loud.
    fn fail_at(failures: &Streaks<&str>, t0: Instant, transient: bool, secs: u64) -> bool {
        let now = t0 + Duration::from_secs(secs);
        count_failure(failures, "s", transient, now, Duration::from_secs(60))
    }

    #[test]
    fn the_api_server_away_is_reported_once_past_the_bound_anything_else_every_time() {
        let failures = Streaks::default();
        let t0 = Instant::now();
        let fail = |transient, secs| fail_at(&failures, t0, transient, secs);
        assert!(!fail(true, 0), "a restart's failure is mended by the retry");
        assert!(!fail(true, 30));
        assert!(fail(true, 63), "past the bound: once");
        assert!(
            failures.get(&"s").is_some_and(|s| is_loud(true, &s)),
            "error_policy, right after, sees the same"
        );
        assert!(!fail(true, 127), "once per streak");
        assert!(failures.get(&"s").is_some_and(|s| !is_loud(true, &s)));
        assert!(fail(false, 255), "a refusal always");
        assert_eq!(failures.get(&"s").map(|s| s.failures()), Some(5));
    }

    #[test]
    fn a_refusal_does_not_use_the_outage_warn_up() {
        let failures = Streaks::default();
        let t0 = Instant::now();
        let fail = |transient, secs| fail_at(&failures, t0, transient, secs);
        assert!(fail(false, 0));
        assert!(fail(false, 70), "a refusal past the bound: loud, as always");
        assert!(fail(true, 80), "the outage's one WARN is still to come");
        assert!(!fail(true, 90));
    }
}
