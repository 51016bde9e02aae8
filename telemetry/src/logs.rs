//! The log policy of the three binaries (issue 12): a WARN or ERROR line is a real problem an
//! operator must look at. Two parts:
//!
//! - [`filter`]: the one place the default log filters are built. Library lines that report
//!   what the library also hands back to our code are off by default; our code reports the
//!   same failure once, at the level of what it means.
//! - [`Outage`]: how our code reports the Kubernetes API failing. A failure the client retries
//!   by itself (an API server or etcd restart: seconds) is INFO; a streak of failures longer
//!   than [`outage_warn_after`] is one WARN, and its end one INFO.
//!
//! Both count failures in [`Streaks`] (per key: since when, how many, one WARN past a bound),
//! as does the operator's per-session reconcile back-off.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt::Display;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tracing_subscriber::EnvFilter;

/// Library targets whose WARN/ERROR lines are transient noise, as directives for every binary.
///
/// - `kube=warn`: kube-runtime's and kube-client's INFO/DEBUG lines; kube-runtime's watcher
///   still warns on every 403 of a watch (a missing RBAC rule is a real problem).
/// - `kube_client::client::builder=off`: kube-client's tower-http trace layer logs every
///   failed request at ERROR (`failed with error client error (Connect)` while the API server
///   restarts, `failed with status 503` while it starts); the same error is returned to the
///   caller, which reports it (for the API server being away: [`Outage`]).
/// - `kube_client::client=error`: `eof in poll` / `timeout in poll` at WARN when the API server
///   closes a watch (its restart, or just a long watch): kube-client ends the stream there and
///   kube-runtime's watcher resumes it, nothing is lost. `kube_client::client::tls=warn` keeps
///   its CA-reload warning (a rotated CA that cannot be read is a real problem).
pub const QUIET_LIBRARIES: &str = "kube=warn,kube_client::client=error,kube_client::client::builder=off,kube_client::client::tls=warn";

/// The default directives of a binary: `info`, [`QUIET_LIBRARIES`], then the binary's own
/// (`extra`, may be empty; later directives for the same target win).
pub fn default_directives(extra: &str) -> String {
    let mut s = format!("info,{QUIET_LIBRARIES}");
    if !extra.is_empty() {
        s.push(',');
        s.push_str(extra);
    }
    s
}

/// The log filter: [`default_directives`]`(extra)` with `RUST_LOG` layered over them.
pub fn filter(extra: &str) -> EnvFilter {
    filter_or(&default_directives(extra))
}

/// `defaults` with `RUST_LOG` layered over them (for a command whose base level is not
/// `info`, e.g. `wa-session canary`), read from the environment: see [`layered`].
pub fn filter_or(defaults: &str) -> EnvFilter {
    layered(defaults, std::env::var("RUST_LOG").ok().as_deref())
}

/// `defaults`, then the directives of `rust_log`. Layered, not replaced: the chart sets
/// `RUST_LOG=info` (`logLevel`), and a replacing `info` brought back kube-client's duplicate
/// ERROR lines on every API server restart (the soak counted 12 per binary). A more specific
/// default (`kube_client::client::builder=off`) outranks a general level, so `RUST_LOG=debug`
/// raises our lines and leaves those off; naming the same target brings it back
/// (`kube_client::client::builder=debug`: the later directive for a target wins). An
/// unparsable `RUST_LOG` falls back to the defaults, so a typo never silences the logs; an
/// empty one (a chart value left blank) adds nothing.
pub fn layered(defaults: &str, rust_log: Option<&str>) -> EnvFilter {
    match rust_log.map(str::trim) {
        Some(v) if !v.is_empty() => EnvFilter::try_new(format!("{defaults},{v}"))
            .unwrap_or_else(|_| EnvFilter::new(defaults)),
        _ => EnvFilter::new(defaults),
    }
}

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

/// Whether a kube-client error is the API server being away or overloaded (connection
/// refused or reset, a watch cut, 5xx, 429): the kind of failure a retry mends once it is
/// back. Anything else (403, 404, 422, an unreadable object) is not an outage.
pub fn is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code >= 500 || s.code == 429,
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

/// What a kube-runtime watcher's error means for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchFailure {
    /// 410 Gone ("too old resource version", e.g. after an API server or etcd restart): the
    /// watcher lists again by itself. Debug.
    Relist,
    /// The API server away ([`is_transient`]): an [`Outage`].
    Outage,
    /// Anything else (a 403: RBAC): a WARN.
    Other,
}

pub fn classify_watch(e: &kube::runtime::watcher::Error) -> WatchFailure {
    use kube::runtime::watcher::Error as W;
    match e {
        W::InitialListFailed(e) | W::WatchStartFailed(e) | W::WatchFailed(e) if is_transient(e) => {
            WatchFailure::Outage
        }
        W::WatchError(s) if s.code == 410 => WatchFailure::Relist,
        W::WatchError(s) if s.code >= 500 || s.code == 429 => WatchFailure::Outage,
        _ => WatchFailure::Other,
    }
}

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

    /// A transient failure (see [`is_transient`]).
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

    #[test]
    fn transient_errors_are_the_api_server_being_away() {
        let status = |code: u16| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                ..Default::default()
            }))
        };
        assert!(is_transient(&status(503)));
        assert!(is_transient(&status(500)));
        assert!(is_transient(&status(429)));
        assert!(!is_transient(&status(403)));
        assert!(!is_transient(&status(404)));
        assert!(!is_transient(&status(422)));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(is_transient(&kube::Error::Service(Box::new(refused))));
        use kube::runtime::watcher::Error as W;
        let gone = W::WatchError(Box::new(kube::core::Status {
            code: 410,
            ..Default::default()
        }));
        assert_eq!(classify_watch(&gone), WatchFailure::Relist);
        assert_eq!(
            classify_watch(&W::WatchStartFailed(status(503))),
            WatchFailure::Outage
        );
        assert_eq!(
            classify_watch(&W::InitialListFailed(status(403))),
            WatchFailure::Other
        );
    }

    #[test]
    fn the_defaults_quiet_kube_clients_duplicates_and_keep_the_binarys_own() {
        let d = default_directives("chromiumoxide::handler=off");
        assert!(d.starts_with("info,kube=warn,"), "{d}");
        assert!(d.contains("kube_client::client::builder=off"), "{d}");
        assert!(d.contains("kube_client::client=error"), "{d}");
        assert!(d.ends_with(",chromiumoxide::handler=off"), "{d}");
        // every directive parses
        EnvFilter::try_new(&d).expect("valid directives");
        assert_eq!(default_directives(""), format!("info,{QUIET_LIBRARIES}"));
    }

    /// Which of a few probe lines a filter lets through, through a real subscriber.
    fn passes(filter: EnvFilter) -> Vec<&'static str> {
        use tracing_subscriber::layer::SubscriberExt;
        let seen = Arc::new(Mutex::new(Vec::new()));
        struct Record(Arc<Mutex<Vec<&'static str>>>);
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Record {
            fn on_event(
                &self,
                e: &tracing::Event<'_>,
                _: tracing_subscriber::layer::Context<'_, S>,
            ) {
                if let Ok(mut v) = self.0.lock() {
                    v.push(e.metadata().name());
                }
            }
        }
        let subscriber = tracing_subscriber::registry()
            .with(Record(seen.clone()))
            .with(filter);
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(name: "builder-error", target: "kube_client::client::builder", "x");
            tracing::warn!(name: "client-warn", target: "kube_client::client", "x");
            tracing::info!(name: "ours-info", target: "operator::reconcile", "x");
            tracing::debug!(name: "ours-debug", target: "operator::reconcile", "x");
        });
        seen.lock().map(|v| v.clone()).unwrap_or_default()
    }

    #[test]
    fn rust_log_is_layered_over_the_defaults_not_in_their_place() {
        let d = default_directives("");
        assert_eq!(passes(layered(&d, None)), ["ours-info"]);
        // the chart's logLevel: info
        assert_eq!(passes(layered(&d, Some("info"))), ["ours-info"]);
        assert_eq!(passes(layered(&d, Some(""))), ["ours-info"]);
        assert_eq!(
            passes(layered(&d, Some("debug"))),
            ["ours-info", "ours-debug"]
        );
        // a library's lines come back when named
        assert_eq!(
            passes(layered(&d, Some("info,kube_client::client::builder=error"))),
            ["builder-error", "ours-info"]
        );
        // a typo keeps the defaults
        assert_eq!(passes(layered(&d, Some("info,=x=y"))), ["ours-info"]);
    }
}
