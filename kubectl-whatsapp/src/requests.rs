//! When the plugin writes the spec requests the hub writes (docs/design.md §2,
//! hub/src/actions.rs): `desiredState`, `qrRequestedAt`, `logoutRequestedAt`. The bodies are the
//! `crds` crate's [`SpecRequests`], sent as [`crds::Writer::Kubectl`] (field manager
//! `kubectl-whatsapp`, so managedFields tell a terminal's request from the hub's); every write
//! starts from [`SpecRequests::current`], so all three fields are always sent and server-side
//! apply never drops one.

use crds::{DesiredState, QrStatus, SessionState, SpecRequests, WhatsAppSession};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// An earlier QR request the agent has not handled yet is left alone for this long (the hub's
/// default rate-limit interval): a second `connect` right after the first must not restart the
/// round that is starting.
pub const PENDING_WINDOW: SignedDuration = SignedDuration::from_secs(60);

/// Now, in whole seconds: what RFC 3339 in the CR keeps, so a value read back compares equal.
pub fn now_secs() -> Time {
    let now = Timestamp::now();
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}

/// What `connect` (and `qr` before it shows anything) does with a session.
#[derive(Clone, Debug, PartialEq)]
pub enum Connect {
    /// Running and linked: nothing to ask.
    AlreadyConnected,
    /// Running and showing a valid QR: nothing to ask.
    QrShown,
    /// Running with a recent request the agent has not handled yet: nothing to ask.
    Pending,
    /// Write these requests (Running, and a QR request: new, or the pending one kept).
    Apply(SpecRequests),
}

/// The hub's QR-request decision (hub/src/actions.rs `request_qr`), less its per-replica rate
/// limiter: the plugin writes with the user's own RBAC, which is the limit that applies.
pub fn decide_connect(s: &WhatsAppSession, now: Time) -> Connect {
    let running = s.spec.desired_state == DesiredState::Running;
    let status = s.status.as_ref();
    if running && status.and_then(|st| st.status) == Some(SessionState::Connected) {
        return Connect::AlreadyConnected;
    }
    if running && has_valid_qr(s, &now) {
        return Connect::QrShown;
    }
    let requested = s.spec.qr_requested_at.as_ref();
    let handled = status
        .and_then(|st| st.handled.as_ref())
        .and_then(|h| h.qr_requested_at.as_ref());
    let pending =
        requested.is_some_and(|r| handled != Some(r) && now.0.duration_since(r.0) < PENDING_WINDOW);
    if pending && running {
        return Connect::Pending;
    }
    let at = match requested {
        Some(r) if pending => r.clone(),
        _ => now,
    };
    Connect::Apply(SpecRequests::current(&s.spec).request_qr(at))
}

/// A QR is shown and has not expired.
pub fn has_valid_qr(s: &WhatsAppSession, now: &Time) -> bool {
    let Some(st) = s.status.as_ref() else {
        return false;
    };
    st.qr_status == Some(QrStatus::Generated)
        && st.qr.is_some()
        && st.qr_expires_at.as_ref().is_none_or(|e| e.0 > now.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crds::{Handled, WhatsAppSessionSpec, WhatsAppSessionStatus};

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(1_700_000_000 + secs).expect("time"))
    }

    fn session(desired: DesiredState, status: WhatsAppSessionStatus) -> WhatsAppSession {
        let mut s = WhatsAppSession::new(
            "ventas",
            WhatsAppSessionSpec {
                tenant: "acme".into(),
                desired_state: desired,
                ..Default::default()
            },
        );
        s.metadata.namespace = Some("ns".into());
        s.status = Some(status);
        s
    }

    fn requested(mut s: WhatsAppSession, at_: Time, handled: Option<Time>) -> WhatsAppSession {
        s.spec.qr_requested_at = Some(at_);
        s.status.get_or_insert_default().handled = Some(Handled {
            qr_requested_at: handled,
            logout_requested_at: None,
        });
        s
    }

    #[test]
    fn a_stopped_session_is_started_with_a_fresh_qr_request() {
        let s = session(DesiredState::Stopped, Default::default());
        let Connect::Apply(r) = decide_connect(&s, at(0)) else {
            panic!("expected a write")
        };
        assert_eq!(r.desired_state, Some(DesiredState::Running));
        assert_eq!(r.qr_requested_at, Some(at(0)));
        assert_eq!(r.logout_requested_at, None);
    }

    #[test]
    fn a_connected_or_qr_showing_session_gets_no_new_request() {
        let connected = session(
            DesiredState::Running,
            WhatsAppSessionStatus {
                status: Some(SessionState::Connected),
                ..Default::default()
            },
        );
        assert_eq!(decide_connect(&connected, at(0)), Connect::AlreadyConnected);
        let showing = session(
            DesiredState::Running,
            WhatsAppSessionStatus {
                status: Some(SessionState::QrRequired),
                qr_status: Some(QrStatus::Generated),
                qr: Some("2@x,a,b,c".into()),
                qr_expires_at: Some(at(20)),
                ..Default::default()
            },
        );
        assert_eq!(decide_connect(&showing, at(10)), Connect::QrShown);
        // once expired, a new round is asked for
        assert!(
            matches!(decide_connect(&showing, at(21)), Connect::Apply(r) if r.qr_requested_at == Some(at(21)))
        );
    }

    #[test]
    fn an_unhandled_recent_request_is_not_repeated() {
        let s = requested(
            session(DesiredState::Running, Default::default()),
            at(0),
            None,
        );
        assert_eq!(decide_connect(&s, at(30)), Connect::Pending);
        // a minute later it is stale: ask again
        assert!(
            matches!(decide_connect(&s, at(61)), Connect::Apply(r) if r.qr_requested_at == Some(at(61)))
        );
        // handled: a new one
        let s = requested(
            session(DesiredState::Running, Default::default()),
            at(0),
            Some(at(0)),
        );
        assert!(
            matches!(decide_connect(&s, at(5)), Connect::Apply(r) if r.qr_requested_at == Some(at(5)))
        );
        // pending but stopped: start it, keeping the pending request
        let s = requested(
            session(DesiredState::Stopped, Default::default()),
            at(0),
            None,
        );
        assert_eq!(
            decide_connect(&s, at(5)),
            Connect::Apply(SpecRequests {
                desired_state: Some(DesiredState::Running),
                qr_requested_at: Some(at(0)),
                logout_requested_at: None
            })
        );
    }

    #[test]
    fn a_qr_request_keeps_a_logout_request() {
        let mut s = session(DesiredState::Stopped, Default::default());
        s.spec.logout_requested_at = Some(at(-5));
        let Connect::Apply(r) = decide_connect(&s, at(0)) else {
            panic!("expected a write")
        };
        assert_eq!(
            r.logout_requested_at,
            Some(at(-5)),
            "all three fields are sent"
        );
    }
}
