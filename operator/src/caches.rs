//! The watches of the sessions' children, kept as caches the reconcile reads instead of the API
//! server: the StatefulSet and the pod for the status (no GET per reconcile), and every child's
//! metadata for [`crate::applied`] (no apply when nothing changed). The same watches trigger
//! the reconciles ([`crate::reconcile::run`]).
//!
//! Kept small (500 sessions within the operator's 64 MiB): ServiceAccount, Role, RoleBinding
//! and PVC as metadata only (a metadata watch), managedFields dropped everywhere, the pod
//! without its spec and the StatefulSet without its pod template (the status reads neither).
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Resource;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector;
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};

/// Readers of the children's caches.
#[derive(Clone)]
pub struct Caches {
    pub statefulsets: Store<StatefulSet>,
    pub pods: Store<Pod>,
    pub pvcs: Store<PartialObjectMeta<PersistentVolumeClaim>>,
    pub service_accounts: Store<PartialObjectMeta<ServiceAccount>>,
    pub roles: Store<PartialObjectMeta<Role>>,
    pub role_bindings: Store<PartialObjectMeta<RoleBinding>>,
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
