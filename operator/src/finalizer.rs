//! Deletion of a session under its `deletionPolicy`, behind the finalizer
//! `whatsapp.leadmaster.io/cleanup`:
//! - `Logout`: set `spec.logoutRequestedAt` (server-side apply, field manager
//!   [`Writer::OperatorFinalizer`], so the hub's own requests keep their manager), wait until the agent
//!   reports it in `status.handled.logoutRequestedAt` (at most `--logout-timeout`, then go on
//!   with a Warning event), then delete the PVC;
//! - `Delete`: delete the PVC;
//! - `Retain`: drop the session's ownerReference from the PVC so the garbage collector keeps it.
//!
//! The waiting happens in [`logout_gate`], before kube's `finalizer` helper runs the cleanup:
//! that helper removes the finalizer as soon as the cleanup returns Ok, so a cleanup cannot
//! "requeue and wait" itself without going through the error back-off.
use std::time::Duration;

use crds::{
    DeletionPolicy, DesiredState, SessionApply, SpecRequests, WhatsAppSession, Writer, now,
};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use crate::children::pvc_name;
use crate::context::Context;
use crate::error::{Call, During, Error, Result, Verb};
use crate::reconcile::namespace;

pub const FINALIZER: &str = "whatsapp.leadmaster.io/cleanup";
/// How often a pending logout is checked.
const LOGOUT_POLL: Duration = Duration::from_secs(2);

/// What the Logout gate decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    /// Go on with the cleanup.
    Proceed,
    /// Ask the agent to log out (set `spec.logoutRequestedAt`).
    Request,
    /// A request is pending; check again later.
    Wait,
    /// The agent did not confirm in time; clean up anyway.
    TimedOut,
}

/// Pure decision for a deleting session under `Logout`.
pub fn logout_decision(session: &WhatsAppSession, now_secs: i64, timeout: Duration) -> Gate {
    if session.spec.deletion_policy != DeletionPolicy::Logout
        || session.spec.desired_state == DesiredState::Stopped
    {
        // Nothing runs that could log out a Stopped session; its data is deleted directly.
        return Gate::Proceed;
    }
    let requested = session.spec.logout_requested_at.as_ref();
    let handled = session
        .status
        .as_ref()
        .and_then(|s| s.handled.as_ref())
        .and_then(|h| h.logout_requested_at.as_ref());
    let deleting_since = session
        .metadata
        .deletion_timestamp
        .as_ref()
        .map(|t| t.0.as_second());
    match requested {
        Some(req) if Some(req) == handled => Gate::Proceed,
        Some(req) if deleting_since.is_none_or(|d| req.0.as_second() >= d) => {
            if now_secs - req.0.as_second() >= timeout.as_secs() as i64 {
                Gate::TimedOut
            } else {
                Gate::Wait
            }
        }
        // No request, or an older one that the agent has not confirmed: ask now.
        _ => Gate::Request,
    }
}

/// Runs before the finalizer cleanup. `Some(action)` = keep the finalizer and come back later.
pub async fn logout_gate(session: &WhatsAppSession, ctx: &Context) -> Result<Option<Action>> {
    let oref = session.object_ref(&());
    let ns = namespace(session)?;
    let now = now();
    match logout_decision(session, now.0.as_second(), ctx.logout_timeout) {
        Gate::Proceed => Ok(None),
        Gate::Request => {
            let api: Api<WhatsAppSession> = Api::namespaced(ctx.client.clone(), &ns);
            SessionApply::spec(
                session.name_any(),
                SpecRequests::default().request_logout(now),
            )
            .apply(&api, Writer::OperatorFinalizer)
            .await
            .during(Call::on::<WhatsAppSession>(
                Verb::Apply,
                Some(&ns),
                session.name_any(),
            ))?;
            ctx.events
                .normal(
                    &oref,
                    "LogoutRequested",
                    "Delete",
                    "asked the session agent to log out before deleting its data".into(),
                )
                .await;
            Ok(Some(Action::requeue(LOGOUT_POLL)))
        }
        Gate::Wait => Ok(Some(Action::requeue(LOGOUT_POLL))),
        Gate::TimedOut => {
            ctx.events
                .warning(
                    &oref,
                    "LogoutTimedOut",
                    "Delete",
                    format!(
                        "the session agent did not confirm the logout within {}s; deleting the data anyway (the device may stay linked on the phone)",
                        ctx.logout_timeout.as_secs()
                    ),
                )
                .await;
            Ok(None)
        }
    }
}

/// The cleanup itself; when it returns Ok the finalizer is removed.
pub async fn cleanup(session: &WhatsAppSession, ctx: &Context) -> Result<Action> {
    let ns = namespace(session)?;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let name = pvc_name(&session.name_any());
    let oref = session.object_ref(&());
    let on_pvc = |verb| Call::on::<PersistentVolumeClaim>(verb, Some(&ns), &name);
    match session.spec.deletion_policy {
        DeletionPolicy::Retain => {
            disown_pvc(&pvcs, &name, session.uid().as_deref(), on_pvc).await?;
            ctx.events
                .normal(
                    &oref,
                    "DataRetained",
                    "Delete",
                    format!("kept PersistentVolumeClaim {name}"),
                )
                .await;
        }
        DeletionPolicy::Delete | DeletionPolicy::Logout => {
            match pvcs.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e).during(on_pvc(Verb::Delete)),
            }
            ctx.events
                .normal(
                    &oref,
                    "DataDeleted",
                    "Delete",
                    format!("deleted PersistentVolumeClaim {name}"),
                )
                .await;
        }
    }
    Ok(Action::await_change())
}

/// How many times a conflicting change to the retained PVC is read again before the cleanup
/// fails (and the reconcile retries it): the namespace's deletion and the PVC protection
/// controller write the PVC at the same moment as we do.
const DISOWN_ATTEMPTS: u32 = 5;

/// Takes the session out of the retained PVC's owners, so the garbage collector keeps it. As
/// client-go's `RetryOnConflict`: the patch carries the resourceVersion it read (a concurrent
/// change is never overwritten), and a 409 reads the PVC again.
async fn disown_pvc(
    pvcs: &Api<PersistentVolumeClaim>,
    name: &str,
    session_uid: Option<&str>,
    on_pvc: impl Fn(Verb) -> Call,
) -> Result<()> {
    let mut attempt = 1;
    loop {
        let Some(pvc) = pvcs.get_opt(name).await.during(on_pvc(Verb::Get))? else {
            return Ok(());
        };
        let owners: Vec<_> = pvc
            .owner_references()
            .iter()
            .filter(|o| Some(o.uid.as_str()) != session_uid)
            .cloned()
            .collect();
        if owners.len() == pvc.owner_references().len() {
            return Ok(());
        }
        let owners = if owners.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::to_value(&owners).map_err(|source| Error::Serialize {
                object: format!("the owners of PersistentVolumeClaim {name}"),
                source,
            })?
        };
        let patch = json!({ "metadata": {
            "resourceVersion": pvc.resource_version(),
            "ownerReferences": owners,
        }});
        match pvcs
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(()),
            // deleted meanwhile (its namespace is going): nothing left to retain
            Err(kube::Error::Api(e)) if e.is_not_found() => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < DISOWN_ATTEMPTS => {
                attempt += 1;
            }
            Err(e) => return Err(e).during(on_pvc(Verb::Patch)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::SessionFixture;
    use crds::{Handled, WhatsAppSessionStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn t(s: i64) -> Time {
        Time(Timestamp::from_second(s).unwrap())
    }
    fn deleting(at: i64) -> WhatsAppSession {
        WhatsAppSession::test("s").deleting_since(t(at))
    }
    const TIMEOUT: Duration = Duration::from_secs(60);

    #[test]
    fn logout_is_requested_then_awaited_then_confirmed() {
        let mut s = deleting(100);
        assert_eq!(logout_decision(&s, 100, TIMEOUT), Gate::Request);
        s.spec.logout_requested_at = Some(t(101));
        assert_eq!(logout_decision(&s, 110, TIMEOUT), Gate::Wait);
        s.status = Some(WhatsAppSessionStatus {
            handled: Some(Handled {
                logout_requested_at: Some(t(101)),
                qr_requested_at: None,
            }),
            ..Default::default()
        });
        assert_eq!(logout_decision(&s, 111, TIMEOUT), Gate::Proceed);
    }

    #[test]
    fn logout_times_out() {
        let mut s = deleting(100);
        s.spec.logout_requested_at = Some(t(101));
        assert_eq!(logout_decision(&s, 161, TIMEOUT), Gate::TimedOut);
    }

    #[test]
    fn stale_unconfirmed_request_is_renewed_and_other_policies_skip() {
        let mut s = deleting(100);
        s.spec.logout_requested_at = Some(t(50));
        assert_eq!(logout_decision(&s, 100, TIMEOUT), Gate::Request);
        s.spec.deletion_policy = DeletionPolicy::Retain;
        assert_eq!(logout_decision(&s, 100, TIMEOUT), Gate::Proceed);
        let s = deleting(100).stopped();
        assert_eq!(logout_decision(&s, 100, TIMEOUT), Gate::Proceed);
    }
}
