//! Session operations shared by REST and socket.io: lookup with authorization, list, QR
//! request and logout request (server-side apply of the hub's spec fields only).

use std::sync::Arc;

use crds::{DesiredState, SessionApply, SpecRequests, WhatsAppSession, Writer};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::{Api, ResourceExt};

use crate::app::Hub;
use crate::auth::Claims;
use crate::error::{ApiError, Code};
use crate::ids;
use crate::qr_request::{self, QrOutcome};
use crate::snapshot::{self, Snapshot};

/// How long a request waits for a starting hub's first list before answering 503.
const SYNC_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl Hub {
    /// Wait for the first complete lists of sessions and namespaces (bounded; see
    /// `View::wait_synced`).
    pub async fn synced(&self) {
        tokio::join!(
            self.view.wait_synced(SYNC_WAIT),
            self.tenancy.wait_synced(SYNC_WAIT)
        );
    }

    /// The session `id` (in `namespace` when given) among those `claims` may see: 400 bad id,
    /// 404 when none of them has that name, 409 when several do (in several namespaces).
    /// Sessions the caller may not see are never named: another tenant's session, or one whose
    /// namespace does not claim its tenant, answers the same 404 as no session at all, and a
    /// session of the same name elsewhere never makes the caller's own ambiguous.
    pub fn authorize(
        &self,
        claims: &Claims,
        id: &str,
        namespace: Option<&str>,
    ) -> Result<Arc<WhatsAppSession>, ApiError> {
        ids::validate(id)?;
        if let Some(ns) = namespace {
            ids::validate_namespace(ns)?;
        }
        let mut visible = self
            .view
            .named(id, namespace)?
            .into_iter()
            .filter(|s| self.may_see(claims, s));
        match (visible.next(), visible.next()) {
            (Some(one), None) => Ok(one),
            (None, _) => Err(ApiError::not_found(format!("session {id} not found"))),
            (Some(_), Some(_)) => Err(ApiError::new(
                Code::Conflict,
                format!("you have sessions named {id} in several namespaces; add ?namespace="),
            )),
        }
    }

    /// Whether `claims` may see `session`: its tenant is the caller's (or the caller is an
    /// admin) and its namespace claims that tenant (`tenancy`).
    pub fn may_see(&self, claims: &Claims, session: &WhatsAppSession) -> bool {
        claims.may_access(&session.spec.tenant) && self.is_claimed(session)
    }

    /// Whether the session's namespace claims the session's tenant: only then is it served.
    pub fn is_claimed(&self, session: &WhatsAppSession) -> bool {
        session
            .metadata
            .namespace
            .as_deref()
            .is_some_and(|ns| self.tenancy.claims(ns, &session.spec.tenant))
    }

    /// The sessions `claims` may see, sorted by namespace and name.
    pub fn list(&self, claims: &Claims) -> Result<Vec<Snapshot>, ApiError> {
        if !self.view.is_live() && self.view.all().is_empty() {
            return Err(ApiError::unavailable("session view not synced yet"));
        }
        let mut out: Vec<Snapshot> = self
            .view
            .all()
            .iter()
            .filter(|s| self.may_see(claims, s))
            .map(|s| Snapshot::of(s))
            .collect();
        out.sort_by(|a, b| (&a.namespace, &a.instance_id).cmp(&(&b.namespace, &b.instance_id)));
        Ok(out)
    }

    /// Make sure the session runs and, unless a QR is valid or a recent request is still
    /// pending, start a new QR round (at most one per session per interval → 429). What to do
    /// is [`qr_request::decide`]'s; this only reads, applies and answers.
    pub async fn request_qr(
        &self,
        claims: &Claims,
        id: &str,
        namespace: Option<&str>,
    ) -> Result<Snapshot, ApiError> {
        self.synced().await;
        let cached = self.authorize(claims, id, namespace)?;
        self.spend_budget(claims)?;
        let ns = cached.namespace().unwrap_or_default();
        let api: Api<WhatsAppSession> = Api::namespaced(self.client.clone(), &ns);
        // Decide on the current object, not the cache: another replica may have just acted.
        let fresh = api.get(id).await?;
        let room = snapshot::room(&ns, id);
        let now = crds::now().0;
        let outcome = qr_request::decide(
            &fresh,
            now,
            self.config.qr_rate_limit(),
            self.limiter.last(&room),
        );
        let qr_at = match outcome {
            QrOutcome::Answer => return Ok(Snapshot::of(&fresh)),
            QrOutcome::RateLimited { retry_after_secs } => {
                return Err(ApiError::rate_limited(
                    format!(
                        "a new QR was requested for {id} less than {}s ago",
                        self.config.qr_rate_limit_secs
                    ),
                    retry_after_secs,
                ));
            }
            QrOutcome::Resume { requested_at } => Some(requested_at),
            QrOutcome::NewRound { at } => Some(at),
        };
        let patch = hub_fields(
            &fresh,
            DesiredState::Running,
            qr_at,
            fresh.spec.logout_requested_at.as_ref().map(|t| t.0),
        );
        let patched = patch.apply(&api, Writer::Hub).await?;
        if let QrOutcome::NewRound { at } = outcome {
            self.limiter.record(&room, at);
        }
        tracing::info!(session = %id, namespace = %ns, user = %claims.sub, "QR round requested");
        Ok(Snapshot::of(&patched))
    }

    /// A text through the session's agent (REST `POST …/messages` and socket.io
    /// `send-message`): the caller must see the session, then the agent decides.
    pub async fn send_message(
        &self,
        claims: &Claims,
        id: &str,
        namespace: Option<&str>,
        message: &crate::agents::SendMessage,
        idempotency_key: Option<&str>,
    ) -> Result<crate::agents::SentMessage, ApiError> {
        self.synced().await;
        let session = self.authorize(claims, id, namespace)?;
        self.agents
            .send(&self.client, &session, message, idempotency_key)
            .await
    }

    /// Ask the agent to log out of WhatsApp and wipe the saved login.
    pub async fn disconnect(
        &self,
        claims: &Claims,
        id: &str,
        namespace: Option<&str>,
    ) -> Result<(), ApiError> {
        self.synced().await;
        let cached = self.authorize(claims, id, namespace)?;
        self.spend_budget(claims)?;
        let ns = cached.namespace().unwrap_or_default();
        let api: Api<WhatsAppSession> = Api::namespaced(self.client.clone(), &ns);
        let fresh = api.get(id).await?;
        if logout_pending(&fresh) {
            // The agent acts once per value: a second request before it has would change
            // nothing but cost a write (a double click, a retrying client).
            return Ok(());
        }
        let patch = hub_fields(
            &fresh,
            fresh.spec.desired_state,
            fresh.spec.qr_requested_at.as_ref().map(|t| t.0),
            Some(crds::now().0),
        );
        patch.apply(&api, Writer::Hub).await?;
        tracing::info!(session = %id, namespace = %ns, user = %claims.sub, "logout requested");
        Ok(())
    }

    /// One request of the caller's budget (`ratelimit::RequestBudget`), or 429.
    fn spend_budget(&self, claims: &Claims) -> Result<(), ApiError> {
        self.budget
            .spend(&claims.sub)
            .map_err(|wait| ApiError::rate_limited("too many session requests; slow down", wait))
    }
}

/// A logout was requested and the agent has not acted on it yet.
fn logout_pending(s: &WhatsAppSession) -> bool {
    let Some(requested) = s.spec.logout_requested_at.as_ref() else {
        return false;
    };
    let handled = s
        .status
        .as_ref()
        .and_then(|st| st.handled.as_ref())
        .and_then(|h| h.logout_requested_at.as_ref());
    handled != Some(requested)
}

/// The hub's apply configuration: exactly the three spec fields it manages. All three are
/// always sent with their intended values, because server-side apply removes a field the
/// manager applied before and omits now.
fn hub_fields(
    s: &WhatsAppSession,
    desired: DesiredState,
    qr: Option<Timestamp>,
    logout: Option<Timestamp>,
) -> SessionApply {
    let requests = SpecRequests {
        desired_state: Some(desired),
        qr_requested_at: qr.map(Time),
        logout_requested_at: logout.map(Time),
    };
    SessionApply::spec(s.name_any(), requests).in_namespace(s.namespace())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crds::{Handled, WhatsAppSessionSpec, WhatsAppSessionStatus};
    use serde_json::json;

    #[test]
    fn a_logout_is_pending_until_the_agent_handled_its_value() {
        let t = |s: i64| Time(Timestamp::from_second(1_700_000_000 + s).unwrap());
        let mut s = WhatsAppSession::new("s1", WhatsAppSessionSpec::default());
        assert!(!logout_pending(&s));
        s.spec.logout_requested_at = Some(t(0));
        assert!(logout_pending(&s));
        s.status = Some(WhatsAppSessionStatus {
            handled: Some(Handled {
                logout_requested_at: Some(t(0)),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(!logout_pending(&s));
        s.spec.logout_requested_at = Some(t(5));
        assert!(logout_pending(&s));
    }

    #[test]
    fn apply_carries_only_hub_fields() {
        let mut s = WhatsAppSession::new(
            "s1",
            WhatsAppSessionSpec {
                tenant: "acme".into(),
                display_name: Some("x".into()),
                ..Default::default()
            },
        );
        s.metadata.namespace = Some("ns".into());
        let t = Timestamp::from_second(1_700_000_000).unwrap();
        let p = serde_json::to_value(hub_fields(&s, DesiredState::Running, Some(t), None)).unwrap();
        let spec = p["spec"].as_object().unwrap();
        assert_eq!(spec.len(), 2);
        assert_eq!(spec["desiredState"], "Running");
        assert_eq!(spec["qrRequestedAt"], "2023-11-14T22:13:20Z");
        assert_eq!(p["metadata"]["namespace"], "ns");
    }

    /// The actions against a mocked API server that checks each request (`crate::fixtures`).
    mod against_the_api {
        use super::*;
        use crate::error::Code;
        use crate::fixtures::*;

        fn hub_with(sessions: Vec<WhatsAppSession>) -> (std::sync::Arc<Hub>, ApiServerVerifier) {
            let (client, server) = api_server();
            (Hub::test(client, sessions), server)
        }

        #[tokio::test]
        async fn a_qr_request_on_a_stopped_session_starts_it_with_a_new_round() {
            let s = session("s1")
                .stopped()
                .logout_requested(at(-600))
                .logout_handled(at(-600));
            let (hub, server) = hub_with(vec![s.clone()]);
            let scenario = server.run(Scenario::ReadThenApply(s, |spec, read| {
                assert_eq!(spec["desiredState"], "Running");
                let requested: Timestamp = spec["qrRequestedAt"].as_str().unwrap().parse().unwrap();
                assert!(requested >= at(-5), "{spec}");
                // The logout request stays as it was: a field left out would be removed.
                assert_eq!(
                    spec["logoutRequestedAt"],
                    json!(read.spec.logout_requested_at)
                );
            }));
            let snap = hub.request_qr(&user(), "s1", None).await.unwrap();
            timeout(scenario).await;
            assert_eq!(snap.instance_id, "s1");
            // The round is recorded here: a second request within the interval is refused
            // even before the watch shows the first.
            assert!(hub.limiter.last("acme-ns/s1").is_some());
        }

        #[tokio::test]
        async fn a_running_session_showing_a_valid_qr_is_answered_without_a_write() {
            let s = session("s1").showing_qr(at(60));
            let (hub, server) = hub_with(vec![s.clone()]);
            let scenario = server.run(Scenario::Read(s));
            let snap = hub.request_qr(&user(), "s1", None).await.unwrap();
            timeout(scenario).await;
            assert_eq!(snap.qr_status, "generated");
        }

        #[tokio::test]
        async fn a_pending_qr_request_on_a_stopped_session_resumes_it_with_the_same_request() {
            let s = session("s1").stopped().qr_requested(at(-10));
            let (hub, server) = hub_with(vec![s.clone()]);
            let scenario = server.run(Scenario::ReadThenApply(s, |spec, read| {
                assert_eq!(spec["desiredState"], "Running");
                assert_eq!(spec["qrRequestedAt"], json!(read.spec.qr_requested_at));
                assert!(spec.get("logoutRequestedAt").is_none(), "{spec}");
            }));
            hub.request_qr(&user(), "s1", None).await.unwrap();
            timeout(scenario).await;
            // No new round: nothing recorded for the rate limit.
            assert_eq!(hub.limiter.last("acme-ns/s1"), None);
        }

        #[tokio::test]
        async fn a_qr_round_started_within_the_interval_is_refused_with_retry_after() {
            let s = session("s1").qr_requested(at(-10)).qr_handled(at(-10));
            let (hub, server) = hub_with(vec![s.clone()]);
            let scenario = server.run(Scenario::Read(s));
            let err = hub.request_qr(&user(), "s1", None).await.unwrap_err();
            timeout(scenario).await;
            assert_eq!(err.code, Code::RateLimited);
            let retry = err.retry_after.unwrap();
            assert!((49..=50).contains(&retry), "{retry}");
        }

        #[tokio::test]
        async fn a_logout_request_sets_its_time_and_keeps_the_other_fields() {
            let s = session("s1").qr_requested(at(-100));
            let (hub, server) = hub_with(vec![s.clone()]);
            let scenario = server.run(Scenario::ReadThenApply(s, |spec, read| {
                assert_eq!(spec["desiredState"], "Running");
                assert_eq!(spec["qrRequestedAt"], json!(read.spec.qr_requested_at));
                let requested: Timestamp =
                    spec["logoutRequestedAt"].as_str().unwrap().parse().unwrap();
                assert!(requested >= at(-5), "{spec}");
            }));
            hub.disconnect(&user(), "s1", None).await.unwrap();
            timeout(scenario).await;
        }

        #[tokio::test]
        async fn a_logout_request_while_one_is_unhandled_writes_nothing() {
            let s = session("s1").logout_requested(at(-3));
            let (hub, server) = hub_with(vec![s.clone()]);
            let scenario = server.run(Scenario::Read(s));
            hub.disconnect(&user(), "s1", None).await.unwrap();
            timeout(scenario).await;
        }

        #[tokio::test]
        async fn another_tenants_session_is_not_found_without_a_request() {
            let s = session("s1").of_tenant("globex");
            let (hub, server) = hub_with(vec![s]);
            let scenario = server.run(Scenario::Nothing);
            let qr = hub.request_qr(&user(), "s1", None).await.unwrap_err();
            let logout = hub.disconnect(&user(), "s1", None).await.unwrap_err();
            timeout(scenario).await;
            assert_eq!((qr.code, logout.code), (Code::NotFound, Code::NotFound));
        }

        #[tokio::test]
        async fn a_session_deleted_since_the_view_saw_it_is_not_found() {
            let (hub, server) = hub_with(vec![session("s1")]);
            let scenario = server.run(Scenario::ReadGone("s1".into()));
            let err = hub.request_qr(&user(), "s1", None).await.unwrap_err();
            timeout(scenario).await;
            assert_eq!(err.code, Code::NotFound);
        }
    }
}
