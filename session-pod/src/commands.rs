//! Watches the agent's own CR (field selector on its name, so a Role limited by
//! resourceNames allows the list/watch) and hands the latest object to the session loop.

use crds::WhatsAppSession;
use futures::StreamExt;
use std::sync::Arc;

use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use runtime::kube_errors::WatchFailure;
use runtime::outage::Outage;
use tokio::sync::watch;

/// The requests of the spec the agent acts on, once per value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Requests {
    pub qr_requested_at: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    pub logout_requested_at: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    pub pairing_phone: Option<String>,
}

impl Requests {
    pub fn of(cr: &WhatsAppSession) -> Self {
        Self {
            qr_requested_at: cr.spec.qr_requested_at.clone(),
            logout_requested_at: cr.spec.logout_requested_at.clone(),
            pairing_phone: cr.spec.pairing.as_ref().map(|p| p.phone_number.clone()),
        }
    }
}

/// Spawns the watch; the receiver always holds the newest spec requests. A watch failure
/// because the API server is away goes to `outage` (INFO, one WARN past the bound; the watch
/// resumes by itself); any other (a 403: the session's Role) is a WARN.
pub fn watch_requests(
    api: Api<WhatsAppSession>,
    name: &str,
    initial: Requests,
    outage: Arc<Outage>,
) -> watch::Receiver<Requests> {
    let (tx, rx) = watch::channel(initial);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    tokio::spawn(async move {
        let mut stream = watcher(api, cfg)
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(item) = stream.next().await {
            match item {
                Ok(cr) => {
                    outage.recovered();
                    let req = Requests::of(&cr);
                    tx.send_if_modified(|cur| {
                        if *cur != req {
                            *cur = req;
                            true
                        } else {
                            false
                        }
                    });
                }
                Err(e) => match runtime::kube_errors::classify_watch(&e) {
                    WatchFailure::Outage => {
                        outage.failed(&e);
                    }
                    WatchFailure::Relist => {
                        tracing::debug!(error = %e, "watch of the session CR lists again")
                    }
                    WatchFailure::Other => {
                        tracing::warn!(error = %e, "watch of the session CR failed; retrying")
                    }
                },
            }
        }
    });
    rx
}
