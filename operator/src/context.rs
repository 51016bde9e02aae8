//! What every reconcile shares: the client, the settings, metrics, Events, the failure streaks,
//! the children's watch caches and the ledger of applies.
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kube::Client;

use crate::applied::Ledger;
use crate::caches::Caches;
use crate::children::Settings;
use crate::events::Events;
use crate::failures::FailureStreaks;
use crate::metrics::Metrics;

/// How long a reconcile waits for the children's caches to hold their first lists.
const CACHE_SYNC_WAIT: Duration = Duration::from_secs(10);

pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub logout_timeout: Duration,
    pub metrics: Arc<Metrics>,
    pub events: Events,
    /// The current streak of failed reconciles per session.
    pub failures: FailureStreaks,
    /// The children's watch caches, once `controller::run` started them (without them every
    /// reconcile applies every child and GETs the pod, as a reconcile called on its own must).
    caches: OnceLock<Caches>,
    /// What was applied to each child (crate::applied).
    pub applied: Ledger,
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
            failures: FailureStreaks::new(runtime::outage::outage_warn_after()),
            caches: OnceLock::new(),
            applied: Ledger::default(),
        }
    }

    /// Gives the reconciles the children's caches (once; later calls are ignored).
    pub fn use_caches(&self, caches: Caches) {
        let _ = self.caches.set(caches);
    }

    /// The children's caches, if there are any and they hold their first lists: right after
    /// start-up an empty cache would read as "child missing", so this waits for the lists, and
    /// after [`CACHE_SYNC_WAIT`] the reconcile goes to the API server instead.
    pub async fn synced_caches(&self) -> Option<&Caches> {
        match self.caches.get() {
            Some(c) if c.synced(CACHE_SYNC_WAIT).await => Some(c),
            Some(_) => {
                tracing::warn!(
                    "the children's watch caches are not synced yet; reading from the API server"
                );
                None
            }
            None => None,
        }
    }
}
