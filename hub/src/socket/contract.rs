//! The socket.io contract of docs/design.md §4 in one place: every event name and every
//! payload the hub sends. Handlers and the push task emit only through [`ServerEvent`], so an
//! event's name and the shape of its payload cannot drift apart between the places that send
//! it (subscribe, `request-qr`, pushes).

use serde::Serialize;

use crate::error::ApiError;
use crate::snapshot::{LastErrorView, QR_EXPIRED_MESSAGE, Snapshot};

/// Client → server events.
pub mod client {
    /// `{token}` or the token as a bare string (also accepted in the handshake `auth`).
    pub const AUTHENTICATE: &str = "authenticate";
    /// `{instance_id, namespace?}`: join the session's room; answered with its state at once.
    pub const SUBSCRIBE_SESSION: &str = "subscribe-session";
    /// `{instance_id, namespace?}`: leave the session's room.
    pub const UNSUBSCRIBE_SESSION: &str = "unsubscribe-session";
    /// `{instance_id, namespace?}`: as REST `POST …/qr`.
    pub const REQUEST_QR: &str = "request-qr";
    /// `{instance_id, namespace?, to, text, idempotency_key?}`: as REST `POST …/messages`;
    /// acked with `{ok: true, message}` or the `connection-error` payload.
    pub const SEND_MESSAGE: &str = "send-message";
}

/// A server → client event: its name and its payload, together.
pub trait ServerEvent: Serialize {
    const NAME: &'static str;
}

/// `authenticated {success: true}`.
#[derive(Debug, Serialize)]
pub struct Authenticated {
    pub success: bool,
}

impl Authenticated {
    pub const OK: Authenticated = Authenticated { success: true };
}

impl ServerEvent for Authenticated {
    const NAME: &'static str = "authenticated";
}

/// `session-status`: sent on subscribe and on every change of what it carries
/// ([`Snapshot::status_changed`]); §4's fields plus `namespace`, `tenant` and `lastError`.
#[derive(Debug, Serialize)]
pub struct SessionStatus<'a> {
    pub instance_id: &'a str,
    pub namespace: &'a str,
    pub tenant: &'a str,
    pub status: &'a str,
    pub qr_status: &'a str,
    #[serde(rename = "connectedAt")]
    pub connected_at: Option<&'a str>,
    #[serde(rename = "phoneNumber")]
    pub phone_number: Option<&'a str>,
    #[serde(rename = "updatedAt")]
    pub updated_at: Option<&'a str>,
    #[serde(rename = "lastError")]
    pub last_error: Option<&'a LastErrorView>,
}

impl<'a> SessionStatus<'a> {
    pub fn of(snap: &'a Snapshot) -> Self {
        SessionStatus {
            instance_id: &snap.instance_id,
            namespace: &snap.namespace,
            tenant: &snap.tenant,
            status: snap.status,
            qr_status: snap.qr_status,
            connected_at: snap.connected_at.as_deref(),
            phone_number: snap.phone_number.as_deref(),
            updated_at: snap.updated_at.as_deref(),
            last_error: snap.last_error.as_ref(),
        }
    }
}

impl ServerEvent for SessionStatus<'_> {
    const NAME: &'static str = "session-status";
}

/// `qr-code`: on subscribe when a QR is valid, and on every new QR.
#[derive(Debug, Serialize)]
pub struct QrCode<'a> {
    pub instance_id: &'a str,
    /// `data:image/png;base64,…`
    pub qr: &'a str,
    pub qr_string: &'a str,
    #[serde(rename = "expiresAt")]
    pub expires_at: Option<&'a str>,
}

impl<'a> QrCode<'a> {
    /// The event for the snapshot's QR, `image` being it rendered; `None` without a QR.
    pub fn of(snap: &'a Snapshot, image: &'a str) -> Option<Self> {
        Some(QrCode {
            instance_id: &snap.instance_id,
            qr: image,
            qr_string: snap.qr_string.as_deref()?,
            expires_at: snap.qr_expires_at.as_deref(),
        })
    }
}

impl ServerEvent for QrCode<'_> {
    const NAME: &'static str = "qr-code";
}

/// `qr-expired`: when the QR status turns expired (and on subscribe while it is).
#[derive(Debug, Serialize)]
pub struct QrExpired<'a> {
    pub instance_id: &'a str,
    pub message: &'static str,
}

impl<'a> QrExpired<'a> {
    pub fn of(snap: &'a Snapshot) -> Self {
        QrExpired {
            instance_id: &snap.instance_id,
            message: QR_EXPIRED_MESSAGE,
        }
    }
}

impl ServerEvent for QrExpired<'_> {
    const NAME: &'static str = "qr-expired";
}

/// `connection-error {instance_id?, error: CODE, message, retryAfter?}`; the same payload
/// answers the failed request's ack.
#[derive(Debug, Serialize)]
pub struct ConnectionError<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<&'a str>,
    pub error: &'static str,
    pub message: &'a str,
    #[serde(rename = "retryAfter", skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl<'a> ConnectionError<'a> {
    pub fn of(err: &'a ApiError, instance_id: Option<&'a str>) -> Self {
        ConnectionError {
            instance_id,
            error: err.code.as_str(),
            message: &err.message,
            retry_after: err.retry_after,
        }
    }
}

impl ServerEvent for ConnectionError<'_> {
    const NAME: &'static str = "connection-error";
}

/// The ack of `subscribe-session` and `request-qr`: `{ok: true, session}`; of
/// `unsubscribe-session`: `{ok: true}`.
#[derive(Debug, Serialize)]
pub struct Ack<'a> {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<&'a Snapshot>,
}

impl<'a> Ack<'a> {
    pub fn with(session: &'a Snapshot) -> Self {
        Ack {
            ok: true,
            session: Some(session),
        }
    }
    pub const EMPTY: Ack<'static> = Ack {
        ok: true,
        session: None,
    };
}

/// The ack of `send-message`: `{ok: true, message: {message_id, to, timestamp, ack}}`.
#[derive(Debug, Serialize)]
pub struct SentAck<'a> {
    pub ok: bool,
    pub message: &'a crate::agents::SentMessage,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Code;
    use crds::{
        QrStatus, SessionState, WhatsAppSession, WhatsAppSessionSpec, WhatsAppSessionStatus,
    };
    use serde_json::json;

    fn snap() -> Snapshot {
        let mut s = WhatsAppSession::new(
            "s1",
            WhatsAppSessionSpec {
                tenant: "acme".into(),
                ..Default::default()
            },
        );
        s.metadata.namespace = Some("ns".into());
        s.status = Some(WhatsAppSessionStatus {
            status: Some(SessionState::QrRequired),
            qr_status: Some(QrStatus::Expired),
            ..Default::default()
        });
        Snapshot::of(&s)
    }

    #[test]
    fn session_status_carries_the_documented_keys() {
        let s = snap();
        let v = serde_json::to_value(SessionStatus::of(&s)).unwrap();
        assert_eq!(
            v,
            json!({"instance_id": "s1", "namespace": "ns", "tenant": "acme",
                   "status": "qr_required", "qr_status": "expired", "connectedAt": null,
                   "phoneNumber": null, "updatedAt": null, "lastError": null})
        );
    }

    #[test]
    fn qr_expired_carries_the_spanish_message() {
        let s = snap();
        assert_eq!(
            serde_json::to_value(QrExpired::of(&s)).unwrap(),
            json!({"instance_id": "s1", "message": "QR expirado, genere uno nuevo"})
        );
    }

    #[test]
    fn connection_error_echoes_id_and_retry_after_only_when_known() {
        let e = ApiError::new(Code::Forbidden, "no");
        assert_eq!(
            serde_json::to_value(ConnectionError::of(&e, None)).unwrap(),
            json!({"error": "FORBIDDEN", "message": "no"})
        );
        let e = ApiError::rate_limited("slow down", 7);
        assert_eq!(
            serde_json::to_value(ConnectionError::of(&e, Some("s1"))).unwrap(),
            json!({"instance_id": "s1", "error": "RATE_LIMITED", "message": "slow down", "retryAfter": 7})
        );
    }

    #[test]
    fn acks_and_authenticated() {
        assert_eq!(
            serde_json::to_value(Authenticated::OK).unwrap(),
            json!({"success": true})
        );
        assert_eq!(
            serde_json::to_value(Ack::EMPTY).unwrap(),
            json!({"ok": true})
        );
        let s = snap();
        assert_eq!(
            serde_json::to_value(Ack::with(&s)).unwrap()["session"]["instance_id"],
            "s1"
        );
    }
}
