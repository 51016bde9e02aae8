//! The operator's two back-offs: a failing session's retries, and (none for) the controller's
//! trigger watches together.
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use kube::runtime::utils::Backoff;

/// The longest wait between two retries of a failing session.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);

/// How long a session waits before its next reconcile after `failures` failures in a row:
/// 1 s, 2 s, 4 s, … up to [`MAX_RETRY_DELAY`], without jitter.
pub fn retry_delay(failures: u32) -> Duration {
    let steps = usize::try_from(failures.saturating_sub(1)).unwrap_or(usize::MAX);
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_secs(1))
        .with_factor(2.0)
        .with_max_delay(MAX_RETRY_DELAY)
        .without_max_times()
        .build()
        // Past the cap every step is the cap: no need to walk there.
        .nth(steps.min(16))
        .unwrap_or(MAX_RETRY_DELAY)
}

/// The controller's back-off over its trigger watches together: none, since each watch backs
/// off by itself (`default_backoff()` in [`crate::watches`]). With kube-runtime's default there
/// as well, one watch's error paused all of them, for longer at each error: after an API server
/// restart each watch gets one 410 Gone (its resourceVersion is older than the new server's
/// watch cache) and lists again, and five 410s in a row paused the controller for over a minute
/// (api_server_restart_logs).
#[derive(Debug, Clone, Copy)]
pub struct EachWatchBacksOffAlone;

impl Iterator for EachWatchBacksOffAlone {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

impl Backoff for EachWatchBacksOffAlone {
    fn reset(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(retry_delay(0), Duration::from_secs(1));
        assert_eq!(retry_delay(1), Duration::from_secs(1));
        assert_eq!(retry_delay(2), Duration::from_secs(2));
        assert_eq!(retry_delay(5), Duration::from_secs(16));
        assert_eq!(retry_delay(9), Duration::from_secs(256));
        assert_eq!(retry_delay(10), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(50), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(u32::MAX), MAX_RETRY_DELAY);
    }
}
