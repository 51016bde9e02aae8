//! The default log filters of the binaries (issue 12's policy: a WARN or ERROR line is a real
//! problem an operator must look at). Library lines that report what the library also hands
//! back to our code are off by default; our code reports the same failure once, at the level of
//! what it means (for the Kubernetes API being away: [`crate::outage::Outage`]).

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
/// ERROR lines on every API server restart. A more specific
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

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
