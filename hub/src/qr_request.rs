//! What a QR request (REST `POST …/qr`, socket.io `request-qr`) does to a session: a pure
//! decision over the freshly read CR, like the operator's finalizer `Gate`; `Hub::request_qr`
//! only reads, applies and answers.

use std::time::Duration;

use crds::{DesiredState, WhatsAppSession};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::snapshot::Snapshot;

/// What a QR request leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum QrOutcome {
    /// Nothing to write: the session runs and shows a valid QR, or a request for a new round
    /// is still unhandled by the agent (within the interval; a double click, a second tab).
    Answer,
    /// The pending request stands but the session is not `Running`: apply `Running` and keep
    /// `qrRequestedAt` as it is (no new round, so the limiter records nothing).
    Resume { requested_at: Timestamp },
    /// Start a new round: apply `Running` and `qrRequestedAt = at`, and record it locally.
    NewRound { at: Timestamp },
    /// A round was started less than the interval ago: 429, retry after this many seconds.
    RateLimited { retry_after_secs: u64 },
}

/// Decide on `session` as just read from the API server. `now` is whole seconds (what the CR
/// keeps, `crds::now`); `interval` is the rate limit; `started_here` is the last round this
/// replica started for the session (the watch may not show it yet).
pub fn decide(
    session: &WhatsAppSession,
    now: Timestamp,
    interval: Duration,
    started_here: Option<Timestamp>,
) -> QrOutcome {
    let running = session.spec.desired_state == DesiredState::Running;
    if running && Snapshot::of(session).has_valid_qr(now) {
        return QrOutcome::Answer;
    }
    let requested = session.spec.qr_requested_at.as_ref().map(|t| t.0);
    let handled = session
        .status
        .as_ref()
        .and_then(|s| s.handled.as_ref())
        .and_then(|h| h.qr_requested_at.as_ref())
        .map(|t| t.0);
    let interval_signed = SignedDuration::try_from(interval).unwrap_or_default();
    match requested {
        Some(r) if handled != Some(r) && now.duration_since(r) < interval_signed => {
            if running {
                QrOutcome::Answer
            } else {
                QrOutcome::Resume { requested_at: r }
            }
        }
        _ => match retry_after(requested, started_here, now, interval) {
            Some(retry_after_secs) => QrOutcome::RateLimited { retry_after_secs },
            None => QrOutcome::NewRound { at: now },
        },
    }
}

/// Seconds to wait (at least 1) when the later of the CR's `qrRequestedAt` and this replica's
/// own record is less than `interval` before `now`; `None` when a new round may start.
pub fn retry_after(
    in_cr: Option<Timestamp>,
    here: Option<Timestamp>,
    now: Timestamp,
    interval: Duration,
) -> Option<u64> {
    let last = in_cr.max(here)?;
    let elapsed = now.duration_since(last);
    let interval = SignedDuration::try_from(interval).unwrap_or(SignedDuration::MAX);
    (elapsed < interval).then(|| (interval - elapsed).as_secs().max(1) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crds::{Handled, QrStatus, WhatsAppSessionSpec, WhatsAppSessionStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::ToSpan;

    const MINUTE: Duration = Duration::from_secs(60);

    fn t0() -> Timestamp {
        Timestamp::from_second(1_700_000_000).unwrap()
    }

    fn session(desired: DesiredState, requested: Option<Timestamp>) -> WhatsAppSession {
        WhatsAppSession::new(
            "s1",
            WhatsAppSessionSpec {
                tenant: "acme".into(),
                desired_state: desired,
                qr_requested_at: requested.map(Time),
                ..Default::default()
            },
        )
    }

    fn with_qr(mut s: WhatsAppSession, expires: Timestamp) -> WhatsAppSession {
        s.status = Some(WhatsAppSessionStatus {
            qr_status: Some(QrStatus::Generated),
            qr: Some("ref,abc".into()),
            qr_expires_at: Some(Time(expires)),
            ..Default::default()
        });
        s
    }

    fn handled(mut s: WhatsAppSession, at: Timestamp) -> WhatsAppSession {
        s.status.get_or_insert_default().handled = Some(Handled {
            qr_requested_at: Some(Time(at)),
            ..Default::default()
        });
        s
    }

    #[test]
    fn a_running_session_with_a_valid_qr_is_answered_as_is() {
        let s = with_qr(session(DesiredState::Running, None), t0() + 20.seconds());
        assert_eq!(decide(&s, t0(), MINUTE, None), QrOutcome::Answer);
    }

    #[test]
    fn a_valid_qr_of_a_stopped_session_does_not_count() {
        let s = with_qr(session(DesiredState::Stopped, None), t0() + 20.seconds());
        assert_eq!(
            decide(&s, t0(), MINUTE, None),
            QrOutcome::NewRound { at: t0() }
        );
    }

    #[test]
    fn an_expired_qr_starts_a_new_round() {
        let s = with_qr(session(DesiredState::Running, None), t0());
        assert_eq!(
            decide(&s, t0(), MINUTE, None),
            QrOutcome::NewRound { at: t0() }
        );
    }

    #[test]
    fn an_unhandled_recent_request_is_pending_not_limited() {
        let s = session(DesiredState::Running, Some(t0()));
        assert_eq!(
            decide(&s, t0() + 5.seconds(), MINUTE, Some(t0())),
            QrOutcome::Answer
        );
        let stopped = session(DesiredState::Stopped, Some(t0()));
        assert_eq!(
            decide(&stopped, t0() + 5.seconds(), MINUTE, None),
            QrOutcome::Resume { requested_at: t0() }
        );
    }

    #[test]
    fn a_handled_recent_request_limits_the_next_round() {
        let s = handled(session(DesiredState::Running, Some(t0())), t0());
        assert_eq!(
            decide(&s, t0() + 10.seconds(), MINUTE, None),
            QrOutcome::RateLimited {
                retry_after_secs: 50
            }
        );
        assert_eq!(
            decide(&s, t0() + 60.seconds(), MINUTE, None),
            QrOutcome::NewRound {
                at: t0() + 60.seconds()
            }
        );
    }

    #[test]
    fn an_old_unhandled_request_no_longer_counts_as_pending() {
        let s = session(DesiredState::Running, Some(t0()));
        assert_eq!(
            decide(&s, t0() + 61.seconds(), MINUTE, None),
            QrOutcome::NewRound {
                at: t0() + 61.seconds()
            }
        );
    }

    #[test]
    fn a_round_started_here_limits_even_before_the_watch_shows_it() {
        let s = session(DesiredState::Running, None);
        assert_eq!(
            decide(&s, t0() + 1.seconds(), MINUTE, Some(t0())),
            QrOutcome::RateLimited {
                retry_after_secs: 59
            }
        );
    }

    #[test]
    fn retry_after_waits_at_least_a_second() {
        let ms = Timestamp::new(1_700_000_059, 900_000_000).unwrap();
        assert_eq!(retry_after(Some(t0()), None, ms, MINUTE), Some(1));
        assert_eq!(retry_after(None, None, t0(), MINUTE), None);
    }
}
