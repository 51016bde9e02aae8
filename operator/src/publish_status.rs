//! The last step of a reconcile: the status the operator owns ([`crate::status`] decides it),
//! written only when it changed, with the Events of the session pod turning ready or not; and,
//! for an agent that died without a word, the agent's part written in its stead.
use crds::{SessionApply, WhatsAppSession, WhatsAppSessionStatus, Writer};
use kube::{Api, Resource, ResourceExt};

use crate::children;
use crate::context::Context;
use crate::error::{Call, During, Result, Verb};
use crate::observe::{Observation, read_pod};
use crate::reconcile::namespace;
use crate::status;

pub async fn publish_status(
    session: &WhatsAppSession,
    ctx: &Context,
    observation: &Observation,
) -> Result<()> {
    let ns = namespace(session)?;
    let name = session.name_any();
    let observed = observation.observed();
    if status::stand_in_for_agent(session, observed, crds::now()).is_some() {
        // The pod cache may lag behind the CR: decide again on a fresh read before writing as
        // the agent (rare: only after an agent died).
        let fresh = read_pod(ctx, &ns, &children::pod_name(&name)).await?;
        let observed = status::Observed {
            pod: fresh.as_ref(),
            ..observed
        };
        if let Some(stopped) = status::stand_in_for_agent(session, observed, crds::now()) {
            stand_in_for_agent(session, &ns, stopped, ctx).await?;
        }
    }
    let desired = status::desired(session, observed, crds::now());
    if !status::needs_patch(session, &desired) {
        return Ok(());
    }
    let was_ready = session.status.as_ref().is_some_and(status::is_ready);
    let api: Api<WhatsAppSession> = Api::namespaced(ctx.client.clone(), &ns);
    SessionApply::status(&name, desired.clone())
        .apply(&api, Writer::Operator)
        .await
        .during(Call::on::<WhatsAppSession>(
            Verb::ApplyStatus,
            Some(&ns),
            &name,
        ))?;
    let ready = status::is_ready(&desired);
    let oref = session.object_ref(&());
    if ready && !was_ready {
        ctx.events
            .normal(
                &oref,
                "SessionPodReady",
                "Reconcile",
                format!("pod {} is ready", children::pod_name(&name)),
            )
            .await;
    } else if !ready && was_ready {
        let why = desired
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.message.clone())
            .unwrap_or_default();
        ctx.events
            .warning(&oref, "SessionPodNotReady", "Reconcile", why)
            .await;
    }
    Ok(())
}

/// Writes, as the agent, the status of an agent that died without a word
/// ([`status::stand_in_for_agent`]), on condition that the CR did not change since it was read:
/// an agent that started meanwhile has written its own status, which wins.
async fn stand_in_for_agent(
    session: &WhatsAppSession,
    ns: &str,
    stopped: WhatsAppSessionStatus,
    ctx: &Context,
) -> Result<()> {
    let name = session.name_any();
    let api: Api<WhatsAppSession> = Api::namespaced(ctx.client.clone(), ns);
    let body =
        SessionApply::status(&name, stopped).unless_changed_since(session.resource_version());
    match body.apply(&api, Writer::Agent).await {
        Ok(_) => {
            ctx.events
                .warning(
                    &session.object_ref(&()),
                    "AgentStopped",
                    "Reconcile",
                    format!(
                        "the session agent in pod {} stopped without saying so (killed, out of memory, or its pod gone): the session is connecting until an agent restores it",
                        children::pod_name(&name)
                    ),
                )
                .await;
            Ok(())
        }
        // The CR changed since it was read (most likely the new agent wrote): its word counts;
        // the change triggers the next reconcile anyway.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e).during(Call::on::<WhatsAppSession>(
            Verb::ApplyStatus,
            Some(ns),
            &name,
        )),
    }
}
