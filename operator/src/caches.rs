//! The watches of the sessions' children, kept as caches the reconcile reads instead of the API
//! server: the StatefulSet and the pod for the status (no GET per reconcile), and every child's
//! metadata for [`crate::applied`] (no apply when nothing changed). The same watches trigger
//! the reconciles ([`crate::controller::run`]).
//!
//! Kept small (500 sessions within the operator's 64 MiB): ServiceAccount, Role, RoleBinding
//! and PVC as metadata only (a metadata watch), managedFields dropped everywhere, the pod
//! without its spec and the StatefulSet without its pod template (the status reads neither).
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Resource;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector;
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use tokio::sync::watch;

/// Readers of the children's caches.
#[derive(Clone)]
pub struct Caches {
    pub statefulsets: Store<StatefulSet>,
    pub pods: Store<Pod>,
    pub pvcs: Store<PartialObjectMeta<PersistentVolumeClaim>>,
    pub service_accounts: Store<PartialObjectMeta<ServiceAccount>>,
    pub roles: Store<PartialObjectMeta<Role>>,
    pub role_bindings: Store<PartialObjectMeta<RoleBinding>>,
    /// True once all of them hold their first complete list ([`Caches::announce_synced`]).
    synced: Arc<watch::Sender<bool>>,
}

/// Their writers, for the watch streams in `run`.
pub struct Writers {
    pub statefulsets: Writer<StatefulSet>,
    pub pods: Writer<Pod>,
    pub pvcs: Writer<PartialObjectMeta<PersistentVolumeClaim>>,
    pub service_accounts: Writer<PartialObjectMeta<ServiceAccount>>,
    pub roles: Writer<PartialObjectMeta<Role>>,
    pub role_bindings: Writer<PartialObjectMeta<RoleBinding>>,
}

impl Caches {
    /// Run once, by `run`: marks the caches synced when each holds its first complete list.
    /// Reconciles must not wait on the stores themselves: `Store::wait_until_ready` wakes only
    /// the last task that polled it (kube-runtime's `DelayedInit` is a oneshot receiver, which
    /// keeps one waker), so when several sessions were reconciled at start-up all but one
    /// waited forever — the restarted operator never reconciled the sessions it found with
    /// children (operator_killed_mid_reconcile_converges_without_duplicate_pods). This task
    /// is the stores' only waiter; the reconciles wait on the watch channel, which wakes all.
    pub async fn announce_synced(self) {
        let (a, b, c, d, e, f) = tokio::join!(
            self.statefulsets.wait_until_ready(),
            self.pods.wait_until_ready(),
            self.pvcs.wait_until_ready(),
            self.service_accounts.wait_until_ready(),
            self.roles.wait_until_ready(),
            self.role_bindings.wait_until_ready(),
        );
        // A dropped writer (the controller stopping) leaves them unsynced: reconciles go to
        // the API server.
        if a.is_ok() && b.is_ok() && c.is_ok() && d.is_ok() && e.is_ok() && f.is_ok() {
            self.synced.send_replace(true);
        }
    }

    /// Whether every cache holds its first complete list, waiting for that at most `within`.
    /// Until then an empty cache would read as "child missing" or "no pod", so a reconcile
    /// that finds them unsynced goes to the API server instead (`Context::synced_caches`).
    pub async fn synced(&self, within: Duration) -> bool {
        let mut rx = self.synced.subscribe();
        matches!(
            tokio::time::timeout(within, rx.wait_for(|synced| *synced)).await,
            Ok(Ok(_))
        )
    }
}

#[cfg(test)]
impl Writers {
    /// As when every watch has delivered its first complete list (tests).
    pub fn all_listed(&mut self) {
        use kube::runtime::watcher::Event::InitDone;
        self.statefulsets.apply_watcher_event(&InitDone);
        self.pods.apply_watcher_event(&InitDone);
        self.pvcs.apply_watcher_event(&InitDone);
        self.service_accounts.apply_watcher_event(&InitDone);
        self.roles.apply_watcher_event(&InitDone);
        self.role_bindings.apply_watcher_event(&InitDone);
    }
}

pub fn new() -> (Caches, Writers) {
    let (statefulsets, w_sts) = reflector::store();
    let (pods, w_pods) = reflector::store();
    let (pvcs, w_pvcs) = reflector::store();
    let (service_accounts, w_sa) = reflector::store();
    let (roles, w_roles) = reflector::store();
    let (role_bindings, w_rb) = reflector::store();
    (
        Caches {
            statefulsets,
            pods,
            pvcs,
            service_accounts,
            roles,
            role_bindings,
            synced: Arc::new(watch::Sender::new(false)),
        },
        Writers {
            statefulsets: w_sts,
            pods: w_pods,
            pvcs: w_pvcs,
            service_accounts: w_sa,
            roles: w_roles,
            role_bindings: w_rb,
        },
    )
}

/// The cached object `name` in `ns`.
pub fn get<K>(store: &Store<K>, ns: &str, name: &str) -> Option<std::sync::Arc<K>>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    store.get(&ObjectRef::new(name).within(ns))
}

/// A pod as the status needs it: metadata and status.
pub fn slim_pod(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    pod.spec = None;
}

/// A StatefulSet as the status and [`crate::applied`] need it: no pod template.
pub fn slim_statefulset(sts: &mut StatefulSet) {
    sts.metadata.managed_fields = None;
    if let Some(spec) = sts.spec.as_mut() {
        spec.template = Default::default();
        spec.volume_claim_templates = None;
    }
}

pub fn slim_meta<K>(obj: &mut PartialObjectMeta<K>) {
    obj.metadata.managed_fields = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{StatefulSetSpec, StatefulSetStatus};
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

    /// The restart bug: several reconciles waiting at once for the caches must all go on
    /// once the lists are in (a store's own `wait_until_ready` wakes only its last waiter).
    #[tokio::test]
    async fn every_waiting_reconcile_goes_on_once_the_caches_are_synced() {
        let (caches, mut w) = new();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let c = caches.clone();
                tokio::spawn(async move { c.synced(Duration::from_secs(10)).await })
            })
            .collect();
        tokio::spawn(caches.clone().announce_synced());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !caches.synced(Duration::from_millis(10)).await,
            "not yet listed"
        );
        w.all_listed();
        for waiter in waiters {
            let synced = tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("a waiting reconcile was left waiting")
                .expect("join");
            assert!(synced);
        }
    }

    #[test]
    fn slimming_keeps_what_the_status_reads() {
        let mut pod = Pod {
            spec: Some(PodSpec::default()),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        pod.metadata.managed_fields = Some(vec![ManagedFieldsEntry::default()]);
        slim_pod(&mut pod);
        assert!(pod.spec.is_none() && pod.metadata.managed_fields.is_none());
        assert_eq!(pod.status.and_then(|s| s.phase).as_deref(), Some("Running"));

        let mut sts = StatefulSet {
            spec: Some(StatefulSetSpec {
                replicas: Some(1),
                ..Default::default()
            }),
            status: Some(StatefulSetStatus {
                ready_replicas: Some(1),
                ..Default::default()
            }),
            ..Default::default()
        };
        slim_statefulset(&mut sts);
        assert_eq!(sts.spec.and_then(|s| s.replicas), Some(1));
        assert_eq!(sts.status.and_then(|s| s.ready_replicas), Some(1));
    }
}
