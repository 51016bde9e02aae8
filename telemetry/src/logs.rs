//! The log policy of the three binaries (issue 12): a WARN or ERROR line is a real problem an
//! operator must look at. Two parts:
//!
//! - [`filter`]: the one place the default log filters are built. Library lines that report
//!   what the library also hands back to our code are off by default; our code reports the
//!   same failure once, at the level of what it means.
//! - [`Outage`]: how our code reports the Kubernetes API failing. A failure the client retries
//!   by itself (an API server or etcd restart: seconds) is INFO; a streak of failures longer
//!   than [`outage_warn_after`] is one WARN, and its end one INFO.

use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Mutex};
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

#[derive(Debug, Default)]
struct Streak {
    since: Option<Instant>,
    last: Option<Instant>,
    failures: u32,
    warned: bool,
}

/// A streak of transient failures of one thing (`what`, e.g. "the Kubernetes API"), reported
/// as the module docs say: INFO at its first failure, one WARN once it is older than the
/// bound (at the next failure after that), INFO at its end with how long it lasted; the
/// failures in between at debug. Shared between tasks (`&self` methods).
#[derive(Debug)]
pub struct Outage {
    what: &'static str,
    warn_after: Duration,
    streak: Mutex<Streak>,
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
            streak: Mutex::new(Streak::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Streak> {
        // A panic while holding this lock cannot leave a streak half-updated in a way that
        // matters for logging: take the data as it is.
        self.streak
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A transient failure (see [`is_transient`]).
    pub fn failed(&self, error: &dyn Display) -> Reported {
        self.failed_at(error, Instant::now())
    }

    fn failed_at(&self, error: &dyn Display, now: Instant) -> Reported {
        let what = self.what;
        let mut s = self.lock();
        s.failures = s.failures.saturating_add(1);
        s.last = Some(now);
        let Some(since) = s.since else {
            s.since = Some(now);
            tracing::info!(what, %error, "{what} failed; retrying");
            return Reported::Started;
        };
        let failing = now.saturating_duration_since(since);
        if !s.warned && failing >= self.warn_after {
            s.warned = true;
            tracing::warn!(what, %error, failing_secs = failing.as_secs(), failures = s.failures,
                warn_after_secs = self.warn_after.as_secs(),
                "{what} has been failing for {} s; still retrying", failing.as_secs());
            return Reported::Warned;
        }
        tracing::debug!(what, %error, failing_secs = failing.as_secs(), "{what} still failing");
        Reported::Quiet
    }

    /// A success: ends a streak (INFO with its length), nothing otherwise.
    pub fn recovered(&self) {
        let what = self.what;
        let mut s = self.lock();
        if let Some(since) = s.since.take() {
            let secs = since.elapsed().as_secs_f64();
            tracing::info!(
                what,
                failed_secs = (secs * 10.0).round() / 10.0,
                failures = s.failures,
                "{what} works again"
            );
            *s = Streak::default();
        }
    }

    /// Whether a streak is going on.
    pub fn is_failing(&self) -> bool {
        self.lock().since.is_some()
    }

    /// Whether a streak is going on with no failure for `quiet` (its end is likely).
    fn failing_but_quiet_for(&self, quiet: Duration) -> bool {
        let s = self.lock();
        s.since.is_some() && s.last.is_none_or(|l| l.elapsed() >= quiet)
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
