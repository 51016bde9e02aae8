//! The one way to write a `WhatsAppSession`: server-side apply requests built from typed
//! structs, with apiVersion and kind taken from the type and the field manager from the
//! [`Writer`]. Each writer sends only the fields it owns (docs/design.md §2), so the body of a spec
//! write is [`SpecRequests`] (never the whole spec, whose `tenant` is required) and the body of a
//! status write is a [`WhatsAppSessionStatus`] holding only that writer's fields (every optional
//! field is skipped when `None`).

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;

use crate::{DesiredState, WhatsAppSession, WhatsAppSessionSpec, WhatsAppSessionStatus, managers};

/// Who writes. Each writer has exactly one field manager, so `kubectl get
/// --show-managed-fields` tells who set what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writer {
    /// The operator's reconcile: children and its part of the status.
    Operator,
    /// The operator's deletion logout (`spec.logoutRequestedAt`), kept apart from
    /// [`Writer::Operator`] and [`Writer::Hub`] so a deletion logout is told from a user's.
    OperatorFinalizer,
    /// The session agent: its part of the status.
    Agent,
    /// The hub: the spec requests made through REST and socket.io.
    Hub,
    /// The `kubectl whatsapp` plugin: the same spec requests as the hub, made from a terminal.
    Kubectl,
}

impl Writer {
    pub fn field_manager(self) -> &'static str {
        match self {
            Self::Operator => managers::OPERATOR,
            Self::OperatorFinalizer => managers::OPERATOR_FINALIZER,
            Self::Agent => managers::AGENT,
            Self::Hub => managers::HUB,
            Self::Kubectl => managers::KUBECTL,
        }
    }

    /// Apply with `force`: every writer is the authority on the fields it sends, so a
    /// conflicting owner (a hand edit, or another writer of the same request field) is taken
    /// over instead of failing the write.
    pub fn patch_params(self) -> PatchParams {
        PatchParams::apply(self.field_manager()).force()
    }
}

/// The spec fields written on a user's behalf: whether the session runs, and the requests the
/// agent acts on once per value. `None` fields are left out of the request; note that server-side
/// apply removes a field its manager applied before and omits now, so a writer that owns a field
/// must keep sending it (start from [`SpecRequests::current`]).
#[derive(Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SpecRequests {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_state: Option<DesiredState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qr_requested_at: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logout_requested_at: Option<Time>,
}

impl SpecRequests {
    /// All three request fields with their current values in `spec`.
    pub fn current(spec: &WhatsAppSessionSpec) -> Self {
        Self {
            desired_state: Some(spec.desired_state),
            qr_requested_at: spec.qr_requested_at.clone(),
            logout_requested_at: spec.logout_requested_at.clone(),
        }
    }

    /// Run the session and ask for a fresh QR round at `at` (other requests kept).
    pub fn request_qr(self, at: Time) -> Self {
        Self {
            desired_state: Some(DesiredState::Running),
            qr_requested_at: Some(at),
            ..self
        }
    }

    /// Ask the agent to log out and wipe the saved login at `at` (other requests kept).
    pub fn request_logout(self, at: Time) -> Self {
        Self {
            logout_requested_at: Some(at),
            ..self
        }
    }

    /// Set `desiredState` (other requests kept).
    pub fn desired_state(self, state: DesiredState) -> Self {
        Self {
            desired_state: Some(state),
            ..self
        }
    }
}

#[derive(Serialize, Clone, Debug, PartialEq)]
struct ApplyMeta {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    /// A precondition: the API server refuses the request (409) if the object changed since.
    #[serde(rename = "resourceVersion", skip_serializing_if = "Option::is_none")]
    resource_version: Option<String>,
}

/// A server-side apply request for one session: either spec requests or a status part.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SessionApply {
    api_version: Cow<'static, str>,
    kind: Cow<'static, str>,
    metadata: ApplyMeta,
    #[serde(skip_serializing_if = "Option::is_none")]
    spec: Option<SpecRequests>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<WhatsAppSessionStatus>,
}

impl SessionApply {
    fn new(name: impl Into<String>) -> Self {
        Self {
            api_version: WhatsAppSession::api_version(&()),
            kind: WhatsAppSession::kind(&()),
            metadata: ApplyMeta {
                name: name.into(),
                namespace: None,
                resource_version: None,
            },
            spec: None,
            status: None,
        }
    }

    /// Spec requests for the session `name`.
    pub fn spec(name: impl Into<String>, requests: SpecRequests) -> Self {
        Self {
            spec: Some(requests),
            ..Self::new(name)
        }
    }

    /// A status part for the session `name` (sent to the status subresource).
    pub fn status(name: impl Into<String>, status: WhatsAppSessionStatus) -> Self {
        Self {
            status: Some(status),
            ..Self::new(name)
        }
    }

    /// Name the namespace in the body too (it must then match the `Api`'s).
    pub fn in_namespace(mut self, namespace: Option<String>) -> Self {
        self.metadata.namespace = namespace;
        self
    }

    /// Only if the object is still at `resource_version` (else the API server answers 409
    /// Conflict): for a write decided from what the object said, which a newer write must not
    /// be overwritten by.
    pub fn unless_changed_since(mut self, resource_version: Option<String>) -> Self {
        self.metadata.resource_version = resource_version;
        self
    }

    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    /// Sends the request as `writer`: spec requests to the object, a status part to its status
    /// subresource. Returns the object as the API server stored it.
    pub async fn apply(
        &self,
        api: &Api<WhatsAppSession>,
        writer: Writer,
    ) -> kube::Result<WhatsAppSession> {
        let params = writer.patch_params();
        let patch = Patch::Apply(self);
        if self.status.is_some() {
            api.patch_status(self.name(), &params, &patch).await
        } else {
            api.patch(self.name(), &params, &patch).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{QrStatus, SessionState};
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).expect("valid timestamp"))
    }

    #[test]
    fn spec_request_carries_type_identity_and_only_the_given_fields() {
        let body = serde_json::to_value(
            SessionApply::spec(
                "s1",
                SpecRequests::default().request_logout(at(1_700_000_000)),
            )
            .in_namespace(Some("ns".into())),
        )
        .expect("serializes");
        assert_eq!(body["apiVersion"], "whatsapp.leadmaster.io/v1alpha1");
        assert_eq!(body["kind"], "WhatsAppSession");
        assert_eq!(body["metadata"]["name"], "s1");
        assert_eq!(body["metadata"]["namespace"], "ns");
        assert!(body.get("status").is_none());
        let spec = body["spec"].as_object().expect("spec");
        assert_eq!(spec.len(), 1, "only logoutRequestedAt: {spec:?}");
        assert_eq!(spec["logoutRequestedAt"], "2023-11-14T22:13:20Z");
    }

    #[test]
    fn a_qr_request_keeps_the_other_requests_and_runs_the_session() {
        let spec = WhatsAppSessionSpec {
            tenant: "acme".into(),
            display_name: Some("not a request".into()),
            desired_state: DesiredState::Stopped,
            logout_requested_at: Some(at(10)),
            ..Default::default()
        };
        let req = SpecRequests::current(&spec).request_qr(at(20));
        let body = serde_json::to_value(SessionApply::spec("s1", req)).expect("serializes");
        let spec = body["spec"].as_object().expect("spec");
        assert_eq!(spec.len(), 3, "{spec:?}");
        assert_eq!(spec["desiredState"], "Running");
        assert_eq!(spec["qrRequestedAt"], "1970-01-01T00:00:20Z");
        assert_eq!(spec["logoutRequestedAt"], "1970-01-01T00:00:10Z");
        assert!(body["metadata"].get("namespace").is_none());
    }

    #[test]
    fn a_status_part_is_sent_without_the_fields_the_writer_does_not_own() {
        let status = WhatsAppSessionStatus {
            status: Some(SessionState::QrRequired),
            qr_status: Some(QrStatus::Generated),
            ..Default::default()
        };
        let body = serde_json::to_value(SessionApply::status("s1", status)).expect("serializes");
        assert_eq!(body["kind"], "WhatsAppSession");
        assert!(body.get("spec").is_none());
        let st = body["status"].as_object().expect("status");
        assert_eq!(st.len(), 2, "{st:?}");
        assert_eq!(st["status"], "qr_required");
    }

    #[test]
    fn field_managers_are_distinct() {
        let all = [
            Writer::Operator,
            Writer::OperatorFinalizer,
            Writer::Agent,
            Writer::Hub,
            Writer::Kubectl,
        ];
        let mut names: Vec<_> = all.iter().map(|w| w.field_manager()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
        assert_eq!(
            Writer::Hub.patch_params().field_manager.as_deref(),
            Some("whatsapp-hub")
        );
        assert!(Writer::Hub.patch_params().force);
    }
}
