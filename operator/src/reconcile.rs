//! The controller: watches WhatsAppSessions (and the children they own) and reconciles each
//! into its ServiceAccount, Role, RoleBinding, PVC and StatefulSet.
use std::fmt::Debug;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crds::{SessionApply, WhatsAppSession, Writer};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::utils::{Backoff, Predicate};
use kube::runtime::{WatchStreamExt, finalizer, predicates, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::applied::{Applied, Ledger, Tracked, body_hash, fingerprint, needs_apply};
use crate::caches::{self, Caches};
use crate::children::{self, Settings};
use crate::error::{Error, Result};
use crate::events::Events;
use crate::finalizer::{FINALIZER, cleanup, logout_gate};
use crate::metrics::Metrics;
use crate::status;
use runtime::kube_errors::WatchFailure;
use runtime::outage::Outage;
use runtime::streaks::{Streak, Streaks};

/// The reason of the Warning Event on a session the operator cannot read (crds::watch).
pub const UNPARSABLE: &str = "Unparsable";
/// Periodic re-check of every session (catches anything a watch might have missed).
const RESYNC: Duration = Duration::from_secs(300);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long a reconcile waits for the children's caches to hold their first lists.
const CACHE_SYNC_WAIT: Duration = Duration::from_secs(10);
/// While the API server is away, how often the operator asks it for its version to tell when
/// it is back.
const OUTAGE_PROBE_EVERY: Duration = Duration::from_secs(2);

pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub logout_timeout: Duration,
    pub metrics: Arc<Metrics>,
    pub events: Events,
    /// The current streak of failed reconciles per session: back-off in `error_policy`, and
    /// whether a failure is reported as a problem ([`is_loud`]).
    failures: Streaks<(String, String)>,
    /// How long a session's reconciles may fail because the API server is away before that is
    /// reported (`runtime::outage::outage_warn_after`).
    outage_warn_after: Duration,
    /// The children's watch caches, once `run` started them (without them every reconcile
    /// applies every child and GETs the pod, as a reconcile called on its own must).
    caches: OnceLock<Caches>,
    /// What was applied to each child (crate::applied).
    applied: Ledger,
}

impl Context {
    pub fn new(
        client: Client,
        settings: Settings,
        logout_timeout: Duration,
        metrics: Arc<Metrics>,
        events: Events,
    ) -> Self {
        Context {
            client,
            settings,
            logout_timeout,
            metrics,
            events,
            failures: Streaks::default(),
            outage_warn_after: runtime::outage::outage_warn_after(),
            caches: OnceLock::new(),
            applied: Ledger::default(),
        }
    }

    fn key<K: Resource>(obj: &K) -> (String, String) {
        (
            obj.meta().namespace.clone().unwrap_or_default(),
            obj.meta().name.clone().unwrap_or_default(),
        )
    }

    fn reset_failures<K: Resource>(&self, obj: &K) {
        self.failures.ended(&Self::key(obj));
    }

    /// Counts a failed reconcile of `obj` in its streak and says whether to report it.
    fn record_failure<K: Resource>(&self, obj: &K, transient: bool) -> bool {
        count_failure(
            &self.failures,
            Self::key(obj),
            transient,
            Instant::now(),
            self.outage_warn_after,
        )
    }

    /// The streak `record_failure` left (for `error_policy`, which runs right after).
    fn failing<K: Resource>(&self, obj: &K) -> Option<Streak> {
        self.failures.get(&Self::key(obj))
    }
}

/// Counts a failed reconcile of `key` at `now` and says whether it is loud ([`is_loud`]).
fn count_failure<K: Eq + std::hash::Hash>(
    failures: &Streaks<K>,
    key: K,
    transient: bool,
    now: Instant,
    warn_after: Duration,
) -> bool {
    failures.failed(key, now, |streak| {
        if transient {
            streak.warn_once_past(now, warn_after);
        }
        is_loud(transient, streak)
    })
}

/// Whether the latest failure of a session's streak is reported as a problem (WARN, and the
/// `ReconcileFailed` Event): always for a failure the API server's return does not mend (a
/// refusal, an invalid object); for the API server being away (`Error::is_transient`) only
/// once per streak, at the first failure after the outage bound — before it the retry usually
/// mends it (a restart of the API server or etcd), after it the operator's watch loop has said
/// so already, and a WARN per session and retry would bury that.
fn is_loud(transient: bool, streak: &Streak) -> bool {
    !transient || streak.warned_now()
}

pub fn backoff_delay(failures: u32) -> Duration {
    let secs = 1u64
        .checked_shl(failures.saturating_sub(1).min(16))
        .unwrap_or(u64::MAX);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

/// Runs the controller until shutdown is signalled.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    concurrency: u16,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    // The watches resume without a word once the API server is back; the probe says so.
    let outage = Arc::new(Outage::new("the Kubernetes API (the operator's watches)"));
    {
        let client = client.clone();
        outage.spawn_probe(OUTAGE_PROBE_EVERY, move || {
            let client = client.clone();
            async move { client.apiserver_version().await.is_ok() }
        });
    }
    let outage = &outage;
    fn api<K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>>(
        c: &Client,
        ns: Option<&str>,
    ) -> Api<K> {
        match ns {
            Some(ns) => Api::namespaced(c.clone(), ns),
            None => Api::all(c.clone()),
        }
    }
    // Raw objects, each read on its own (crds::watch): one the types cannot read is left out
    // and reported — a log line, the gauge, and a Warning Event on it — instead of breaking the
    // list for all the others.
    let unparsables = {
        let events = ctx.events.clone();
        crds::watch::Unparsables::with_hook(move |u| {
            let (events, u) = (events.clone(), u.clone());
            tokio::spawn(async move {
                events
                    .warning(
                        &u.reference,
                        UNPARSABLE,
                        "Read",
                        format!(
                            "cannot read this WhatsAppSession at {u}; the operator leaves it and its children as they are (no reconcile, no deletion cleanup) until the field is fixed"
                        ),
                    )
                    .await
            });
        })
    };
    ctx.metrics.set_unparsables(unparsables.clone());
    let (reader, writer) = reflector::store();
    // Only spec changes (generation; the deletion mark bumps it too) and finalizer changes
    // trigger a reconcile from the CR itself: the agent patches status many times per minute
    // (QR rotation), and none of those writes concern the operator. Pod readiness arrives
    // through the owned StatefulSet's status; why a pod is not ready (ErrImagePull,
    // CrashLoopBackOff, ...) changes only the pod, so the session pods are watched too
    // (mapped by their instance label), plus the periodic resync.
    let trigger = crds::watch::watch(
        client.clone(),
        namespace,
        watcher::Config::default().any_semantic(),
        unparsables,
    )
    .default_backoff()
    .reflect(writer)
    .applied_objects()
    .predicate_filter(
        predicates::generation::<WhatsAppSession>
            .combine(predicates::finalizers::<WhatsAppSession>),
        Default::default(),
    );
    ctx.metrics.set_store(reader.clone());
    let child_cfg = watcher::Config::default().labels(&format!(
        "{}={}",
        crds::labels::MANAGED_BY,
        crds::labels::MANAGED_BY_VALUE
    ));
    // Each child watch both fills its cache (read by the reconcile) and triggers its session.
    let (cache, w) = caches::new();
    tokio::spawn(cache.clone().announce_synced());
    let _ = ctx.caches.set(cache);
    let statefulsets = watcher(api::<StatefulSet>(&client, namespace), child_cfg.clone())
        .default_backoff()
        .modify(caches::slim_statefulset)
        .reflect(w.statefulsets)
        .touched_objects();
    let pods = watcher(api::<Pod>(&client, namespace), child_cfg.clone())
        .default_backoff()
        .modify(caches::slim_pod)
        .reflect(w.pods)
        .touched_objects();
    macro_rules! meta_stream {
        ($kind:ty, $writer:expr) => {
            // An Api of PartialObjectMeta makes metadata-only requests (kube 5).
            watcher(
                api::<PartialObjectMeta<$kind>>(&client, namespace),
                child_cfg.clone(),
            )
            .default_backoff()
            .modify(caches::slim_meta)
            .reflect($writer)
            .touched_objects()
        };
    }
    Controller::for_stream(trigger, reader)
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .trigger_backoff(EachWatchBacksOffAlone)
        .owns_stream(statefulsets)
        .owns_stream(meta_stream!(PersistentVolumeClaim, w.pvcs))
        .owns_stream(meta_stream!(ServiceAccount, w.service_accounts))
        .owns_stream(meta_stream!(Role, w.roles))
        .owns_stream(meta_stream!(RoleBinding, w.role_bindings))
        .watches_stream(pods, session_of_pod)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => {
                    outage.recovered();
                    tracing::debug!(session = %obj.name, namespace = ?obj.namespace, "reconciled")
                }
                // A watch failed (kube-runtime's watcher retries it with its back-off): the API
                // server away is one streak for all of them (INFO, one WARN past the bound);
                // anything else (a 403: RBAC) is a problem at once.
                Err(kube::runtime::controller::Error::QueueError(error)) => {
                    match runtime::kube_errors::classify_watch(&error) {
                        WatchFailure::Outage => {
                            outage.failed(&error);
                        }
                        WatchFailure::Relist => tracing::debug!(%error, "a watch lists again"),
                        WatchFailure::Other => tracing::warn!(%error, "a watch failed; retrying"),
                    }
                }
                // reported by `reconcile` and `error_policy`
                Err(error) => tracing::debug!(%error, "reconcile failed"),
            }
        })
        .await;
}

/// The session a pod belongs to (its StatefulSet owns it, the session owns the StatefulSet):
/// named by the pod's instance label, in the pod's namespace.
fn session_of_pod(pod: Pod) -> Option<ObjectRef<WhatsAppSession>> {
    let name = pod
        .metadata
        .labels
        .as_ref()?
        .get(crds::labels::INSTANCE)?
        .clone();
    Some(ObjectRef::new(&name).within(pod.metadata.namespace.as_deref()?))
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
        Ok(_) => ctx.reset_failures(&*obj),
        // Where operators look (`kubectl describe`, event exporters); rate-limited per session
        // and reason by `Events`, as a failing session is retried every few seconds. Only a
        // failure reported as a problem (`is_loud`).
        Err(e) => {
            if ctx.record_failure(&*obj, e.is_transient()) {
                ctx.events
                    .warning(
                        &obj.object_ref(&()),
                        "ReconcileFailed",
                        "Reconcile",
                        e.event_note(),
                    )
                    .await
            }
        }
    }
    result
}

async fn reconcile_inner(session: &WhatsAppSession, ctx: &Context) -> Result<Action> {
    let ns = session
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
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

fn ssa() -> PatchParams {
    // force: the operator is the authority on its children; a hand edit to a field it sets is
    // taken back (the conflict is resolved in its favour) rather than failing the reconcile.
    Writer::Operator.patch_params()
}

/// Applies `obj` unless the ledger shows this very body applied and `cached` (the child's
/// metadata in the watch cache) unchanged since (crate::applied). Returns the child as the
/// apply left it, or `None` when skipped.
async fn apply_child<K>(
    ctx: &Context,
    ns: &str,
    obj: &K,
    tracked: Tracked,
    cached: Option<&ObjectMeta>,
) -> Result<Option<K>>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let name = obj
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingField("metadata.name"))?;
    // apiVersion/kind are required in an apply body; typed k8s-openapi objects don't serialize them.
    let mut body = serde_json::to_value(obj)?;
    body["apiVersion"] = json!(K::api_version(&()));
    body["kind"] = json!(K::kind(&()));
    let hash = body_hash(&body)?;
    let key = (K::kind(&()).into_owned(), ns.to_string(), name.clone());
    let now = cached.map(|m| fingerprint(m, tracked));
    if !needs_apply(ctx.applied.get(&key), hash, now, Instant::now()) {
        tracing::trace!(kind = %key.0, child = %name, "unchanged since our last apply; skipped");
        return Ok(None);
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let applied = api.patch(&name, &ssa(), &Patch::Apply(&body)).await?;
    ctx.applied.record(
        key,
        Applied {
            body: hash,
            left: fingerprint(applied.meta(), tracked),
            at: Instant::now(),
        },
    );
    Ok(Some(applied))
}

async fn apply(session: &WhatsAppSession, ctx: &Context) -> Result<Action> {
    let ns = session
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = session.name_any();
    let client = &ctx.client;
    let oref = session.object_ref(&());
    let cache = match ctx.caches.get() {
        // Right after start-up an empty cache would read as "pod missing": wait for the lists,
        // and go to the API server if they take too long.
        Some(c) if c.synced(CACHE_SYNC_WAIT).await => Some(c),
        Some(_) => {
            tracing::warn!(
                "the children's watch caches are not synced yet; reading from the API server"
            );
            None
        }
        None => None,
    };
    let (object, pvc_name) = (children::object_name(&name), children::pvc_name(&name));
    let cached_sa = cache.and_then(|c| caches::get(&c.service_accounts, &ns, &object));
    let cached_role = cache.and_then(|c| caches::get(&c.roles, &ns, &object));
    let cached_rb = cache.and_then(|c| caches::get(&c.role_bindings, &ns, &object));
    let cached_pvc = cache.and_then(|c| caches::get(&c.pvcs, &ns, &pvc_name));
    let cached_sts = cache.and_then(|c| caches::get(&c.statefulsets, &ns, &object));

    let (sa, role, rb) = (
        children::service_account(session)?,
        children::role(session)?,
        children::role_binding(session)?,
    );
    let pvc = children::pvc(session, &ctx.settings)?;
    let every = Tracked::EveryWrite;
    let (r1, r2, r3, r4) = tokio::join!(
        apply_child(
            ctx,
            &ns,
            &sa,
            every,
            cached_sa.as_ref().map(|m| &m.metadata)
        ),
        apply_child(
            ctx,
            &ns,
            &role,
            every,
            cached_role.as_ref().map(|m| &m.metadata)
        ),
        apply_child(
            ctx,
            &ns,
            &rb,
            every,
            cached_rb.as_ref().map(|m| &m.metadata)
        ),
        apply_child(
            ctx,
            &ns,
            &pvc,
            every,
            cached_pvc.as_ref().map(|m| &m.metadata)
        ),
    );
    r1?;
    r2?;
    r3?;
    match r4 {
        Ok(_) => {}
        // Most of a PVC's spec is immutable (class, and size can only grow where the class
        // allows it): report the rejected change instead of failing every reconcile.
        Err(Error::Kube(kube::Error::Api(e))) if e.code == 422 => {
            ctx.events
                .warning(
                    &oref,
                    "StorageChangeRejected",
                    "Reconcile",
                    format!("PersistentVolumeClaim not updated: {}", e.message),
                )
                .await;
        }
        Err(e) => return Err(e),
    }
    let applied_sts = apply_child(
        ctx,
        &ns,
        &children::statefulset(session, &ctx.settings)?,
        Tracked::SpecAndMetadata,
        cached_sts.as_ref().map(|s| &s.metadata),
    )
    .await?;
    // Skipped only when the cache holds it, so one of the two is there.
    let sts = applied_sts.or_else(|| cached_sts.as_deref().cloned());

    let pod = match cache {
        Some(c) => caches::get(&c.pods, &ns, &children::pod_name(&name))
            .as_deref()
            .cloned(),
        None => {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
            pods.get_opt(&children::pod_name(&name)).await?
        }
    };
    let observed = status::Observed {
        statefulset: sts.as_ref(),
        pod: pod.as_ref(),
    };
    if status::stand_in_for_agent(session, observed, crds::now()).is_some() {
        // The pod cache may lag behind the CR: decide again on a fresh read before writing as
        // the agent (rare: only after an agent died).
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let fresh = pods.get_opt(&children::pod_name(&name)).await?;
        let observed = status::Observed {
            pod: fresh.as_ref(),
            ..observed
        };
        if let Some(stopped) = status::stand_in_for_agent(session, observed, crds::now()) {
            stand_in_for_agent(session, &ns, stopped, ctx).await?;
        }
    }
    let desired = status::desired(session, observed, crds::now());
    if status::needs_patch(session, &desired) {
        let was_ready = session.status.as_ref().is_some_and(status::is_ready);
        let api: Api<WhatsAppSession> = Api::namespaced(client.clone(), &ns);
        SessionApply::status(&name, desired.clone())
            .apply(&api, Writer::Operator)
            .await?;
        let ready = status::is_ready(&desired);
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
    }
    Ok(Action::requeue(RESYNC))
}

/// Writes, as the agent, the status of an agent that died without a word
/// ([`status::stand_in_for_agent`]), on condition that the CR did not change since it was read:
/// an agent that started meanwhile has written its own status, which wins.
async fn stand_in_for_agent(
    session: &WhatsAppSession,
    ns: &str,
    stopped: crds::WhatsAppSessionStatus,
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
        Err(e) => Err(e.into()),
    }
}

pub fn error_policy(obj: Arc<WhatsAppSession>, error: &Error, ctx: Arc<Context>) -> Action {
    // `reconcile` counted this failure; a caller that skipped it gets the first step.
    let (count, failing_secs, loud) = match ctx.failing(&*obj) {
        Some(s) => (
            s.failures(),
            s.since().elapsed().as_secs(),
            is_loud(error.is_transient(), &s),
        ),
        None => (1, 0, true),
    };
    let delay = backoff_delay(count);
    let (session, namespace) = (obj.meta().name.as_deref(), obj.meta().namespace.as_deref());
    if loud {
        tracing::warn!(session, namespace, %error, failing_secs, retry_in_secs = delay.as_secs(), "reconcile failed");
    } else {
        tracing::info!(session, namespace, %error, failing_secs, retry_in_secs = delay.as_secs(), "reconcile failed; the API server is away, retrying");
    }
    Action::requeue(delay)
}

/// The controller's back-off over its trigger watches together: none, since each watch backs
/// off by itself (`default_backoff()` above). With kube-runtime's default there as well, one
/// watch's error paused all of them, for longer at each error: after an API server restart
/// each watch gets one 410 Gone (its resourceVersion is older than the new server's watch
/// cache) and lists again, and the five 410s in a row paused the controller 3, 6, 7, 15 and
/// 40 s — the operator did not act on a spec change for over a minute (api_server_restart_logs).
#[derive(Debug, Clone, Copy)]
struct EachWatchBacksOffAlone;

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

    /// A failed reconcile of session "s" `secs` after `t0`, with an outage bound of a minute:
    /// whether it is loud.
    fn fail_at(failures: &Streaks<&str>, t0: Instant, transient: bool, secs: u64) -> bool {
        let now = t0 + Duration::from_secs(secs);
        count_failure(failures, "s", transient, now, Duration::from_secs(60))
    }

    #[test]
    fn the_api_server_away_is_reported_once_past_the_bound_anything_else_every_time() {
        let failures = Streaks::default();
        let t0 = Instant::now();
        let fail = |transient, secs| fail_at(&failures, t0, transient, secs);
        assert!(!fail(true, 0), "a restart's failure is mended by the retry");
        assert!(!fail(true, 30));
        assert!(fail(true, 63), "past the bound: once");
        assert!(
            failures.get(&"s").is_some_and(|s| is_loud(true, &s)),
            "error_policy, right after, sees the same"
        );
        assert!(!fail(true, 127), "once per streak");
        assert!(failures.get(&"s").is_some_and(|s| !is_loud(true, &s)));
        assert!(fail(false, 255), "a refusal always");
        assert_eq!(failures.get(&"s").map(|s| s.failures()), Some(5));
    }

    #[test]
    fn a_refusal_does_not_use_the_outage_warn_up() {
        let failures = Streaks::default();
        let t0 = Instant::now();
        let fail = |transient, secs| fail_at(&failures, t0, transient, secs);
        assert!(fail(false, 0));
        assert!(fail(false, 70), "a refusal past the bound: loud, as always");
        assert!(fail(true, 80), "the outage's one WARN is still to come");
        assert!(!fail(true, 90));
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff_delay(1), Duration::from_secs(1));
        assert_eq!(backoff_delay(2), Duration::from_secs(2));
        assert_eq!(backoff_delay(5), Duration::from_secs(16));
        assert_eq!(backoff_delay(50), MAX_BACKOFF);
    }
}
