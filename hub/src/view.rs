//! The live view of WhatsAppSession CRs: a kube reflector (one namespace or all) whose events
//! also feed the socket.io push task, plus a liveness flag for `/health`.
//!
//! The watch is `crds::watch`'s, shared with the operator: raw objects, each read on its own,
//! so an object the types cannot read is left out of the view with a WARN line naming it and
//! the field, and counted (`wa_hub_unparsable_sessions`), instead of the whole list failing.
//!
//! Liveness: the view is live after the first complete list and stale after any watch error.
//! The kube watcher resumes a broken watch from its last resourceVersion without emitting an
//! event when nothing changed, so a stale view is declared live again by a probe (a cheap list
//! of the same resources) succeeding; the watch itself is retried at most 2 s apart, so it is
//! back within that time and delivers every change made meanwhile (or relists on 410 Gone).
//!
//! Readiness and back-off are kube-runtime's, as in kube-rs's controller-rs: the store's own
//! readiness ([`Store::wait_until_ready`], released at the first complete list) and
//! [`WatchStreamExt::backoff`]. Not [`WatchStreamExt::default_backoff`]: its client-go
//! parameters (0.8 s doubling to 30 s) are kind to a struggling API server, but a browser
//! waiting on a reconnected hub would then wait up to 30 s for changes it missed; one watch
//! per hub replica retried every 2 s is no burden.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crds::WhatsAppSession;
use futures::StreamExt;
use kube::Client;
use kube::api::ListParams;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::metrics::Metrics;
use runtime::kube_errors::{WatchFailure, classify_watch};
use runtime::outage::Outage;

/// What the push side learns from the watch.
#[derive(Debug)]
pub enum ViewEvent {
    /// An object was added or changed (`at`: when its watch event arrived).
    Changed {
        obj: Arc<WhatsAppSession>,
        at: Instant,
    },
    /// An object is gone.
    Deleted { namespace: String, name: String },
    /// A full relist finished; objects not in the store are gone.
    Relisted,
}

#[derive(Clone)]
pub struct View {
    store: Store<WhatsAppSession>,
    live: Arc<AtomicBool>,
    namespace: Option<String>,
    /// Objects of the watch the types cannot read (left out of `store`).
    unparsables: crds::watch::Unparsables,
}

const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// The watch's retry policy: 250 ms doubling to 2 s, reset by any event (see the module docs).
fn backoff() -> watcher::ExponentialBackoff {
    backon::ExponentialBuilder::default()
        .with_min_delay(BACKOFF_MIN)
        .with_max_delay(BACKOFF_MAX)
        .with_factor(2.0)
        .without_max_times()
        .into()
}

impl View {
    /// Start watching; events go to `events`. The returned view is not live until the first
    /// list completes.
    pub fn start(
        client: Client,
        namespace: Option<String>,
        metrics: Arc<Metrics>,
        events: mpsc::UnboundedSender<ViewEvent>,
    ) -> Self {
        let api = crds::watch::api(client, namespace.as_deref());
        let (store, writer) = reflector::store();
        let live = Arc::new(AtomicBool::new(false));
        let unparsables = crds::watch::Unparsables::new();
        let view = View {
            store,
            live: live.clone(),
            namespace,
            unparsables: unparsables.clone(),
        };
        let stale_after_error = Arc::new(AtomicBool::new(false));
        // How a broken watch is logged (docs/hub.md "Logs"): the API server away is INFO, one
        // WARN if it lasts past the bound, INFO when the view is live again; anything else
        // (a 403: the hub's RBAC) is a WARN at once.
        let outage = Arc::new(Outage::new("the Kubernetes API (the hub's session view)"));

        // The watch loop.
        {
            let api = api.clone();
            let live = live.clone();
            let stale = stale_after_error.clone();
            let metrics = metrics.clone();
            let outage = outage.clone();
            tokio::spawn(async move {
                // The back-off pauses the stream after an error: delaying the next poll delays
                // the retry.
                let stream =
                    crds::watch::typed(watcher(api, watcher::Config::default()), unparsables)
                        .backoff(backoff())
                        .reflect(writer);
                futures::pin_mut!(stream);
                let mut synced_once = false;
                let mut warned = false;
                while let Some(ev) = stream.next().await {
                    match ev {
                        Ok(watcher::Event::Apply(obj)) | Ok(watcher::Event::InitApply(obj)) => {
                            let _ = events.send(ViewEvent::Changed {
                                obj: Arc::new(obj),
                                at: Instant::now(),
                            });
                        }
                        Ok(watcher::Event::Delete(obj)) => {
                            let _ = events.send(ViewEvent::Deleted {
                                namespace: obj.metadata.namespace.clone().unwrap_or_default(),
                                name: obj.metadata.name.clone().unwrap_or_default(),
                            });
                        }
                        Ok(watcher::Event::Init) => {}
                        Ok(watcher::Event::InitDone) => {
                            warned = false;
                            outage.recovered();
                            stale.store(false, Ordering::SeqCst);
                            live.store(true, Ordering::SeqCst);
                            metrics.watch_live.set(1);
                            if !synced_once {
                                tracing::info!("session view synced");
                            }
                            synced_once = true;
                            let _ = events.send(ViewEvent::Relisted);
                        }
                        Err(e) => {
                            metrics.watch_errors.inc();
                            let was_live = live.swap(false, Ordering::SeqCst);
                            let failure = classify_watch(&e);
                            if failure == WatchFailure::Outage {
                                outage.failed(&e);
                            } else if failure == WatchFailure::Relist {
                                tracing::debug!(error = %e, "session watch lists again");
                            } else if was_live || !warned {
                                tracing::warn!(error = %e, "session watch failed; view is stale");
                                warned = true;
                            } else {
                                tracing::debug!(error = %e, "session watch still failing");
                            }
                            metrics.watch_live.set(0);
                            stale.store(synced_once, Ordering::SeqCst);
                        }
                    }
                }
                tracing::error!("session watch stream ended");
                live.store(false, Ordering::SeqCst);
            });
        }

        // The probe: declares a stale (previously synced) view live again once the API answers.
        {
            let live = live.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(PROBE_EVERY);
                loop {
                    tick.tick().await;
                    if !stale_after_error.load(Ordering::SeqCst) {
                        continue;
                    }
                    if api
                        .list_metadata(&ListParams::default().limit(1))
                        .await
                        .is_ok()
                        && stale_after_error.swap(false, Ordering::SeqCst)
                    {
                        live.store(true, Ordering::SeqCst);
                        metrics.watch_live.set(1);
                        outage.recovered();
                        tracing::debug!("session view live again");
                    }
                }
            });
        }
        view
    }

    /// A live view that lists `sessions` and watches nothing (the fast test tier).
    #[cfg(test)]
    pub fn listed(sessions: Vec<WhatsAppSession>) -> Self {
        let (store, mut writer) = reflector::store();
        writer.apply_watcher_event(&watcher::Event::Init);
        for session in sessions {
            writer.apply_watcher_event(&watcher::Event::InitApply(session));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        View {
            store,
            live: Arc::new(AtomicBool::new(true)),
            namespace: None,
            unparsables: crds::watch::Unparsables::new(),
        }
    }

    /// Wait (at most `timeout`) for the first complete list: requests arriving while a
    /// freshly started hub lists the CRs (reconnecting clients, typically) are answered from a
    /// complete view instead of failing.
    pub async fn wait_synced(&self, timeout: Duration) {
        // An error means the watch task is gone; the callers' answers say so (503).
        let _ = tokio::time::timeout(timeout, self.store.wait_until_ready()).await;
    }

    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }

    /// How many sessions of the watch cannot be read (and are left out).
    pub fn unparsable(&self) -> usize {
        self.unparsables.count()
    }

    pub fn all(&self) -> Vec<Arc<WhatsAppSession>> {
        self.store.state()
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<WhatsAppSession>> {
        self.store.get(&ObjectRef::new(name).within(namespace))
    }

    /// The sessions named `name` (in `namespace` when given, or in the namespace served): 503
    /// before the first sync. Who may see which is the caller's to decide (`Hub::authorize`).
    pub fn named(
        &self,
        name: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<Arc<WhatsAppSession>>, ApiError> {
        if !self.is_live() && self.store.is_empty() {
            return Err(ApiError::unavailable("session view not synced yet"));
        }
        if let Some(ns) = namespace.or(self.namespace.as_deref()) {
            return Ok(self.get(ns, name).into_iter().collect());
        }
        Ok(self
            .store
            .state()
            .into_iter()
            .filter(|s| s.metadata.name.as_deref() == Some(name))
            .collect())
    }
}
