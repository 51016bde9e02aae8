//! Which tenants each namespace may hold: the namespace label keys
//! `tenant.whatsapp.leadmaster.io/<tenant>` (`crds::labels::tenant_claim`). Namespaces are
//! cluster-scoped, so only cluster admins can set them, never a tenant with rights in its own
//! namespace. The chart's admission policy refuses a session whose namespace does not claim its
//! tenant; the hub checks the same claim before it serves a session, so a session created
//! before the policy, in a cluster without it, or in a namespace relabelled since, is served to
//! nobody (docs/design.md §2 "Tenants and namespaces").
//!
//! A reflector over the namespaces' metadata only: every namespace in all-namespaces mode, the
//! one served otherwise.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use runtime::kube_errors::{WatchFailure, classify_watch};

#[derive(Clone)]
pub struct Tenancy {
    store: Store<PartialObjectMeta<Namespace>>,
    synced: Arc<AtomicBool>,
}

impl Tenancy {
    /// Start watching the namespaces' labels (`namespace`: only that one).
    pub fn start(client: Client, namespace: Option<&str>) -> Self {
        // Metadata-only requests: labels are all the hub needs of a namespace.
        let api: Api<PartialObjectMeta<Namespace>> = Api::all(client);
        let config = match namespace {
            Some(ns) => watcher::Config::default().fields(&format!("metadata.name={ns}")),
            None => watcher::Config::default(),
        };
        let (store, writer) = reflector::store();
        let synced = Arc::new(AtomicBool::new(false));
        let flag = synced.clone();
        tokio::spawn(async move {
            let stream = watcher(api, config).default_backoff().reflect(writer);
            futures::pin_mut!(stream);
            let mut warned = false;
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(watcher::Event::InitDone) => {
                        warned = false;
                        flag.store(true, Ordering::SeqCst);
                    }
                    Ok(_) => {}
                    // The API server away (a restart) is the session view's to report, once
                    // (docs/hub.md "Logs"); the watch resumes by itself.
                    Err(e) if classify_watch(&e) != WatchFailure::Other => {
                        tracing::debug!(error = %e, "watch of namespaces interrupted; retrying");
                    }
                    // Anything else (a 403: the hub's RBAC lacks namespaces get/list/watch) means
                    // no session can be served: say so once per run of errors.
                    Err(e) if !warned => {
                        warned = true;
                        tracing::warn!(error = %e, "watch of namespaces (tenant claims) failed");
                    }
                    Err(e) => tracing::debug!(error = %e, "watch of namespaces still failing"),
                }
            }
        });
        Self { store, synced }
    }

    /// Listed namespaces that each claim the tenants given with them; watches nothing (the
    /// fast test tier).
    #[cfg(test)]
    pub fn listed(claims: &[(&str, &[&str])]) -> Self {
        let (store, mut writer) = reflector::store();
        writer.apply_watcher_event(&watcher::Event::Init);
        for (namespace, tenants) in claims {
            let labels = tenants
                .iter()
                .map(|t| (crds::labels::tenant_claim(t), String::new()))
                .collect();
            let mut ns = PartialObjectMeta::<Namespace>::default();
            ns.metadata.name = Some(namespace.to_string());
            ns.metadata.labels = Some(labels);
            writer.apply_watcher_event(&watcher::Event::InitApply(ns));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        Self {
            store,
            synced: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Whether the first list of namespaces arrived.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }

    /// Wait (at most `timeout`) for the first list.
    pub async fn wait_synced(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.store.wait_until_ready()).await;
    }

    /// Whether `namespace` claims `tenant` (carries its claim label).
    pub fn claims(&self, namespace: &str, tenant: &str) -> bool {
        self.store
            .get(&ObjectRef::new(namespace))
            .is_some_and(|ns| claims(&ns, tenant))
    }
}

fn claims(ns: &PartialObjectMeta<Namespace>, tenant: &str) -> bool {
    !tenant.is_empty()
        && ns
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(&crds::labels::tenant_claim(tenant)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn ns(labels: &[&str]) -> PartialObjectMeta<Namespace> {
        PartialObjectMeta {
            metadata: ObjectMeta {
                name: Some("shared".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|k| (k.to_string(), String::new()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_namespace_claims_exactly_the_tenants_it_is_labelled_for() {
        let shared = ns(&[
            "tenant.whatsapp.leadmaster.io/acme",
            "tenant.whatsapp.leadmaster.io/globex",
            "whatsapp.leadmaster.io/tenant",
        ]);
        assert!(claims(&shared, "acme"));
        assert!(claims(&shared, "globex"));
        assert!(!claims(&shared, "initech"));
        assert!(!claims(&shared, ""));
        assert!(!claims(&ns(&[]), "acme"));
    }
}
