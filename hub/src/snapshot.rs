//! The snapshot of a session as REST returns it and the socket.io payloads derived from it.

use crds::{QrStatus, SessionState, WhatsAppSession};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LastErrorView {
    pub code: String,
    pub message: String,
    #[schema(format = DateTime)]
    pub at: String,
}

/// docs/design.md §3 snapshot, plus `namespace` and `display_name` (additive, for UIs listing
/// sessions across namespaces).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Snapshot {
    pub instance_id: String,
    pub namespace: String,
    pub tenant: String,
    pub display_name: Option<String>,
    #[schema(schema_with = crate::openapi::string_enum::<SessionState>)]
    pub status: &'static str,
    #[schema(schema_with = crate::openapi::string_enum::<QrStatus>)]
    pub qr_status: &'static str,
    pub qr_string: Option<String>,
    #[schema(format = DateTime)]
    pub qr_expires_at: Option<String>,
    pub phone_number: Option<String>,
    #[schema(format = DateTime)]
    pub connected_at: Option<String>,
    #[schema(format = DateTime)]
    pub updated_at: Option<String>,
    #[schema(inline)]
    pub last_error: Option<LastErrorView>,
}

fn ts(t: &Option<Time>) -> Option<String> {
    t.as_ref().map(|t| t.0.to_string())
}

impl Snapshot {
    pub fn of(s: &WhatsAppSession) -> Self {
        let st = s.status.clone().unwrap_or_default();
        Snapshot {
            instance_id: s.name_any(),
            namespace: s.namespace().unwrap_or_default(),
            tenant: s.spec.tenant.clone(),
            display_name: s.spec.display_name.clone(),
            status: st.status.unwrap_or(SessionState::Init).as_str(),
            qr_status: st.qr_status.unwrap_or(QrStatus::None).as_str(),
            qr_string: st.qr.clone(),
            qr_expires_at: ts(&st.qr_expires_at),
            phone_number: st.phone_number.clone(),
            connected_at: ts(&st.connected_at),
            updated_at: ts(&st.updated_at),
            last_error: st.last_error.as_ref().map(|e| LastErrorView {
                code: e.code.clone(),
                message: e.message.clone(),
                at: e.at.0.to_string(),
            }),
        }
    }

    /// The room of this session: unique across namespaces.
    pub fn room(&self) -> String {
        room(&self.namespace, &self.instance_id)
    }

    /// A QR is shown and not past its expiry.
    pub fn has_valid_qr(&self, now: k8s_openapi::jiff::Timestamp) -> bool {
        if self.qr_status != QrStatus::Generated.as_str() || self.qr_string.is_none() {
            return false;
        }
        match &self.qr_expires_at {
            Some(exp) => exp
                .parse::<k8s_openapi::jiff::Timestamp>()
                .map(|e| e > now)
                .unwrap_or(true),
            None => true,
        }
    }

    /// The part of the snapshot that `session-status` carries; a change here means a push.
    pub fn status_changed(&self, old: &Snapshot) -> bool {
        self.status != old.status
            || self.qr_status != old.qr_status
            || self.connected_at != old.connected_at
            || self.phone_number != old.phone_number
            || self.updated_at != old.updated_at
            || self.last_error != old.last_error
    }
}

/// The `qr-expired` message (docs/design.md §4; the UI is Spanish).
pub const QR_EXPIRED_MESSAGE: &str = "QR expirado, genere uno nuevo";

pub fn room(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// What to push after a change from `old` (None: first seen) to `new`.
#[derive(Debug, Default, PartialEq)]
pub struct Pushes {
    pub status: bool,
    pub qr: bool,
    pub expired: bool,
}

pub fn diff(old: Option<&Snapshot>, new: &Snapshot, now: k8s_openapi::jiff::Timestamp) -> Pushes {
    match old {
        None => Pushes {
            status: true,
            qr: new.has_valid_qr(now),
            expired: false,
        },
        Some(old) => Pushes {
            status: new.status_changed(old),
            qr: new.has_valid_qr(now) && new.qr_string != old.qr_string,
            expired: new.qr_status == QrStatus::Expired.as_str() && old.qr_status != new.qr_status,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crds::{WhatsAppSessionSpec, WhatsAppSessionStatus};
    use k8s_openapi::jiff::{Timestamp, ToSpan};

    fn session(status: Option<WhatsAppSessionStatus>) -> WhatsAppSession {
        let mut s = WhatsAppSession::new(
            "s1",
            WhatsAppSessionSpec {
                tenant: "acme".into(),
                ..Default::default()
            },
        );
        s.metadata.namespace = Some("ns".into());
        s.status = status;
        s
    }

    #[test]
    fn empty_status_defaults() {
        let snap = Snapshot::of(&session(None));
        assert_eq!(snap.status, "init");
        assert_eq!(snap.qr_status, "none");
        assert_eq!(snap.room(), "ns/s1");
        let v = serde_json::to_value(&snap).unwrap();
        for k in [
            "instance_id",
            "tenant",
            "status",
            "qr_status",
            "qr_string",
            "qr_expires_at",
            "phone_number",
            "connected_at",
            "updated_at",
            "last_error",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
    }

    #[test]
    fn valid_qr_and_diff() {
        let now = Timestamp::now();
        let st = WhatsAppSessionStatus {
            status: Some(SessionState::QrRequired),
            qr_status: Some(QrStatus::Generated),
            qr: Some("ref1,abc".into()),
            qr_expires_at: Some(Time(now + 20.seconds())),
            ..Default::default()
        };
        let a = Snapshot::of(&session(Some(st.clone())));
        assert!(a.has_valid_qr(now));
        assert!(!a.has_valid_qr(now + 30.seconds()));
        assert_eq!(
            diff(None, &a, now),
            Pushes {
                status: true,
                qr: true,
                expired: false
            }
        );
        assert_eq!(diff(Some(&a), &a, now), Pushes::default());
        let mut st2 = st.clone();
        st2.qr = Some("ref2,abc".into());
        let b = Snapshot::of(&session(Some(st2)));
        assert_eq!(
            diff(Some(&a), &b, now),
            Pushes {
                status: false,
                qr: true,
                expired: false
            }
        );
        let mut st3 = st;
        st3.qr_status = Some(QrStatus::Expired);
        st3.qr = None;
        let c = Snapshot::of(&session(Some(st3)));
        assert_eq!(
            diff(Some(&b), &c, now),
            Pushes {
                status: true,
                qr: false,
                expired: true
            }
        );
    }
}
