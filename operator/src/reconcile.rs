//! One reconcile of a WhatsAppSession, behind its finalizer: apply the children
//! ([`crate::apply_children`]), observe the workload ([`crate::observe`]), publish the status
//! ([`crate::publish_status`]); and what a failure does (metrics, the Warning Event, back-off).
use std::sync::Arc;
use std::time::{Duration, Instant};

use crds::WhatsAppSession;
use kube::runtime::controller::Action;
use kube::runtime::finalizer;
use kube::{Api, Resource, ResourceExt};

use crate::apply_children::apply_children;
use crate::backoff::retry_delay;
use crate::children;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::failures::is_loud;
use crate::finalizer::{FINALIZER, cleanup, logout_gate};
use crate::observe::observe;
use crate::publish_status::publish_status;

/// Periodic re-check of every session (catches anything a watch might have missed).
const RESYNC: Duration = Duration::from_secs(300);

/// The session's namespace (a namespaced object read from the API server always has one).
pub fn namespace(session: &WhatsAppSession) -> Result<String> {
    session
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))
}

/// One reconcile, in a span naming the session so every line it logs says which one (kube's
/// own "reconciling object" span covers only the creation of this future, not its run).
#[tracing::instrument(name = "reconcile", skip_all, fields(
    session = obj.meta().name.as_deref().unwrap_or_default(),
    namespace = obj.meta().namespace.as_deref().unwrap_or_default(),
))]
pub async fn reconcile(obj: Arc<WhatsAppSession>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = match reconcile_inner(&obj, &ctx).await {
        // Typically the namespace is being deleted: the namespace controller deletes the
        // session's children and the session itself, and removing our finalizer from a session
        // already gone answers 404. Retrying that would only log errors about nothing.
        Err(e) if e.is_gone() => {
            tracing::debug!(error = %e, "session or its namespace is gone; nothing left to do");
            Ok(Action::await_change())
        }
        other => other,
    };
    ctx.metrics.observe_reconcile(
        started.elapsed(),
        result.as_ref().err().map(Error::metric_label),
    );
    match &result {
        Ok(_) => ctx.failures.succeeded(&*obj),
        // Where operators look (`kubectl describe`, event exporters); rate-limited per session
        // and reason by `Events`, as a failing session is retried every few seconds. Only a
        // failure reported as a problem (`is_loud`).
        Err(e) => {
            if ctx.failures.failed(&*obj, e.is_transient()) {
                ctx.events
                    .error(&obj.object_ref(&()), "ReconcileFailed", e)
                    .await
            }
        }
    }
    result
}

async fn reconcile_inner(session: &WhatsAppSession, ctx: &Context) -> Result<Action> {
    let ns = namespace(session)?;
    let api: Api<WhatsAppSession> = Api::namespaced(ctx.client.clone(), &ns);
    if session.meta().deletion_timestamp.is_some()
        && session.finalizers().iter().any(|f| f == FINALIZER)
        && let Some(wait) = logout_gate(session, ctx).await?
    {
        return Ok(wait);
    }
    finalizer(
        &api,
        FINALIZER,
        Arc::new(session.clone()),
        |event| async move {
            match event {
                finalizer::Event::Apply(s) => apply(&s, ctx).await,
                finalizer::Event::Cleanup(s) => {
                    let done = cleanup(&s, ctx).await;
                    let name = s.name_any();
                    ctx.applied.forget(
                        &ns,
                        &[children::object_name(&name), children::pvc_name(&name)],
                    );
                    done
                }
            }
        },
    )
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// A session that is not being deleted: its children applied, its workload observed, its
/// status published.
async fn apply(session: &WhatsAppSession, ctx: &Context) -> Result<Action> {
    let cache = ctx.synced_caches().await;
    let statefulset = apply_children(session, ctx, cache).await?;
    let observation = observe(session, ctx, cache, statefulset).await?;
    publish_status(session, ctx, &observation).await?;
    Ok(Action::requeue(RESYNC))
}

pub fn error_policy(obj: Arc<WhatsAppSession>, error: &Error, ctx: Arc<Context>) -> Action {
    // `reconcile` counted this failure; a caller that skipped it gets the first step.
    let (count, failing_secs, loud) = match ctx.failures.current(&*obj) {
        Some(s) => (
            s.failures(),
            s.since().elapsed().as_secs(),
            is_loud(error.is_transient(), &s),
        ),
        None => (1, 0, true),
    };
    let delay = retry_delay(count);
    let (session, namespace) = (obj.meta().name.as_deref(), obj.meta().namespace.as_deref());
    if loud {
        tracing::warn!(session, namespace, %error, failing_secs, retry_in_secs = delay.as_secs(), "reconcile failed");
    } else {
        tracing::info!(session, namespace, %error, failing_secs, retry_in_secs = delay.as_secs(), "reconcile failed; the API server is away, retrying");
    }
    Action::requeue(delay)
}

#[cfg(test)]
mod tests;
