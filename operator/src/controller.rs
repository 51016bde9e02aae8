//! The controller: watches WhatsAppSessions (and the children they own, [`crate::watches`]) and
//! runs [`crate::reconcile`] for each, until shutdown.
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use runtime::kube_errors::WatchFailure;
use runtime::outage::Outage;

use crate::backoff::EachWatchBacksOffAlone;
use crate::context::Context;
use crate::reconcile::{error_policy, reconcile};
use crate::watches;

/// While the API server is away, how often the operator asks it for its version to tell when
/// it is back.
const OUTAGE_PROBE_EVERY: Duration = Duration::from_secs(2);

/// Runs the controller until `shutdown` resolves.
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
    let unparsables = watches::unparsables(ctx.events.clone());
    ctx.metrics.set_unparsables(unparsables.clone());
    let (sessions, trigger) = watches::sessions(&client, namespace, unparsables);
    ctx.metrics.set_store(sessions.clone());
    let (cache, children) = watches::children(&client, namespace);
    tokio::spawn(cache.clone().announce_synced());
    ctx.use_caches(cache);
    // Plus the periodic resync (crate::reconcile::RESYNC).
    Controller::for_stream(trigger, sessions)
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .trigger_backoff(EachWatchBacksOffAlone)
        .owns_stream(children.statefulsets)
        .owns_stream(children.pvcs)
        .owns_stream(children.service_accounts)
        .owns_stream(children.roles)
        .owns_stream(children.role_bindings)
        .watches_stream(children.pods, watches::session_of_pod)
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
