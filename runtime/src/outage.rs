//! How a binary tells the Kubernetes API failing: a failure the client retries by itself (an
//! API server or etcd restart: seconds) is INFO; a streak of failures longer than
//! [`outage_warn_after`] is one WARN, and its end one INFO.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::streaks::Streaks;

/// How long the Kubernetes API may fail before a binary says so at WARN, unless
/// `WA_API_OUTAGE_WARN_AFTER` (whole seconds) says otherwise. A minute: `devcluster restart`
/// of the API server or etcd, a control-plane upgrade or a leader change of a managed control
/// plane take seconds to tens of seconds, and the clients retry by themselves; longer than
/// that, sessions' requests (QR, logout) and status changes are held up, which an operator
/// should know.
pub const OUTAGE_WARN_AFTER: Duration = Duration::from_secs(60);

/// [`OUTAGE_WARN_AFTER`], or `WA_API_OUTAGE_WARN_AFTER` in seconds (tests use a few seconds).
pub fn outage_warn_after() -> Duration {
    std::env::var("WA_API_OUTAGE_WARN_AFTER")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(OUTAGE_WARN_AFTER)
}

/// A streak of transient failures of one thing (`what`, e.g. "the Kubernetes API"), reported
/// as the module docs say: INFO at its first failure, one WARN once it is older than the
/// bound (at the next failure after that), INFO at its end with how long it lasted; the
/// failures in between at debug. Shared between tasks (`&self` methods).
#[derive(Debug)]
pub struct Outage {
    what: &'static str,
    warn_after: Duration,
    streak: Streaks<()>,
}

/// What [`Outage::failed`] logged, for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reported {
    /// The first failure of a streak (INFO).
    Started,
    /// The streak outlasted the bound (the one WARN).
    Warned,
    /// Nothing above debug.
    Quiet,
}

impl Outage {
    /// With the bound of [`outage_warn_after`].
    pub fn new(what: &'static str) -> Self {
        Self::with_warn_after(what, outage_warn_after())
    }

    pub fn with_warn_after(what: &'static str, warn_after: Duration) -> Self {
        Outage {
            what,
            warn_after,
            streak: Streaks::default(),
        }
    }

    /// A transient failure (see [`crate::kube_errors::is_transient`]).
    pub fn failed(&self, error: &dyn Display) -> Reported {
        self.failed_at(error, Instant::now())
    }

    fn failed_at(&self, error: &dyn Display, now: Instant) -> Reported {
        let what = self.what;
        self.streak.failed((), now, |s| {
            if s.is_new() {
                tracing::info!(what, %error, "{what} failed; retrying");
                return Reported::Started;
            }
            let failing = now.saturating_duration_since(s.since());
            if s.warn_once_past(now, self.warn_after) {
                tracing::warn!(what, %error, failing_secs = failing.as_secs(), failures = s.failures(),
                    warn_after_secs = self.warn_after.as_secs(),
                    "{what} has been failing for {} s; still retrying", failing.as_secs());
                return Reported::Warned;
            }
            tracing::debug!(what, %error, failing_secs = failing.as_secs(), "{what} still failing");
            Reported::Quiet
        })
    }

    /// A success: ends a streak (INFO with its length), nothing otherwise. Called at every
    /// success, so with no streak open it is one atomic load.
    pub fn recovered(&self) {
        let what = self.what;
        if let Some(s) = self.streak.ended(&()) {
            let secs = s.since().elapsed().as_secs_f64();
            tracing::info!(
                what,
                failed_secs = (secs * 10.0).round() / 10.0,
                failures = s.failures(),
                "{what} works again"
            );
        }
    }

    /// Whether a streak is going on.
    pub fn is_failing(&self) -> bool {
        self.streak.get(&()).is_some()
    }

    /// Whether a streak is going on with no failure for `quiet` (its end is likely).
    fn failing_but_quiet_for(&self, quiet: Duration) -> bool {
        self.streak
            .get(&())
            .is_some_and(|s| s.last().elapsed() >= quiet)
    }

    /// Ends streaks that nothing else would see end: a kube-runtime watch resumes without an
    /// event when nothing changed, so while a streak lasts this task calls `probe` (a cheap
    /// request, e.g. the API server's version) every `every` and takes its success for
    /// [`Outage::recovered`] — once no failure came for a whole `every`: an API server in its
    /// graceful shutdown or start-up answers the probe while the watches still fail, and one
    /// restart would otherwise be several streaks.
    pub fn spawn_probe<F, Fut>(self: &Arc<Self>, every: Duration, probe: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = bool> + Send,
    {
        let outage = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                // The owner is gone: so is the need to probe.
                let Some(outage) = outage.upgrade() else {
                    return;
                };
                if outage.failing_but_quiet_for(every) && probe().await {
                    outage.recovered();
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streak_is_one_info_then_one_warn_past_the_bound_then_quiet() {
        let o = Outage::with_warn_after("the API", Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(o.failed_at(&"refused", t0), Reported::Started);
        assert_eq!(
            o.failed_at(&"refused", t0 + Duration::from_secs(30)),
            Reported::Quiet
        );
        assert_eq!(
            o.failed_at(&"refused", t0 + Duration::from_secs(61)),
            Reported::Warned
        );
        assert_eq!(
            o.failed_at(&"refused", t0 + Duration::from_secs(300)),
            Reported::Quiet,
            "one WARN per streak"
        );
        assert!(o.is_failing());
        o.recovered();
        assert!(!o.is_failing());
        assert_eq!(
            o.failed_at(&"refused", t0 + Duration::from_secs(400)),
            Reported::Started,
            "a new streak starts over"
        );
    }
}
