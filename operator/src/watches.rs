//! The controller's watches: the sessions (raw, each read on its own, filtered to the changes
//! that concern the operator) and the children, each filling its cache ([`crate::caches`]) and
//! triggering its session.
use std::fmt::Debug;
use std::hash::Hash;

use crds::WhatsAppSession;
use futures::Stream;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::core::{NamespaceResourceScope, PartialObjectMeta};
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::utils::Predicate;
use kube::runtime::{WatchStreamExt, predicates, reflector, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use crate::caches::{self, Caches};
use crate::events::Events;

/// The reason of the Warning Event on a session the operator cannot read (crds::watch).
pub const UNPARSABLE: &str = "Unparsable";

type Watched<K> = Result<K, watcher::Error>;

/// Sessions the types cannot read, reported — a log line, the gauge, and a Warning Event on
/// it — instead of breaking the list for all the others.
pub fn unparsables(events: Events) -> crds::watch::Unparsables {
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
}

/// The sessions, into their store. Only spec changes (generation; the deletion mark bumps it
/// too) and finalizer changes trigger a reconcile from the CR itself: the agent patches status
/// many times per minute (QR rotation), and none of those writes concern the operator.
pub fn sessions(
    client: &Client,
    namespace: Option<&str>,
    unparsables: crds::watch::Unparsables,
) -> (
    Store<WhatsAppSession>,
    impl Stream<Item = Watched<WhatsAppSession>> + Send + use<>,
) {
    let (reader, writer) = reflector::store();
    let stream = crds::watch::watch(
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
    (reader, stream)
}

/// The watches of the children (the operator's own, by label), each filling its cache.
pub struct ChildWatches<S, P, Pvc, Sa, R, Rb> {
    pub statefulsets: S,
    /// Pod readiness arrives through the owned StatefulSet's status; why a pod is not ready
    /// (ErrImagePull, CrashLoopBackOff, ...) changes only the pod, so the session pods are
    /// watched too (mapped by their instance label: [`session_of_pod`]).
    pub pods: P,
    pub pvcs: Pvc,
    pub service_accounts: Sa,
    pub roles: R,
    pub role_bindings: Rb,
}

/// The children's caches and the watches that fill them.
#[allow(clippy::type_complexity)]
pub fn children(
    client: &Client,
    namespace: Option<&str>,
) -> (
    Caches,
    ChildWatches<
        impl Stream<Item = Watched<StatefulSet>> + Send + 'static,
        impl Stream<Item = Watched<Pod>> + Send + 'static,
        impl Stream<Item = Watched<PartialObjectMeta<PersistentVolumeClaim>>> + Send + 'static,
        impl Stream<Item = Watched<PartialObjectMeta<ServiceAccount>>> + Send + 'static,
        impl Stream<Item = Watched<PartialObjectMeta<Role>>> + Send + 'static,
        impl Stream<Item = Watched<PartialObjectMeta<RoleBinding>>> + Send + 'static,
    >,
) {
    let cfg = watcher::Config::default().labels(&format!(
        "{}={}",
        crds::labels::MANAGED_BY,
        crds::labels::MANAGED_BY_VALUE
    ));
    let (cache, w) = caches::new();
    let on = ChildWatch {
        client,
        namespace,
        cfg: &cfg,
    };
    let watch = ChildWatches {
        statefulsets: on.of(caches::slim_statefulset, w.statefulsets),
        pods: on.of(caches::slim_pod, w.pods),
        // An Api of PartialObjectMeta makes metadata-only requests.
        pvcs: on.of(caches::slim_meta, w.pvcs),
        service_accounts: on.of(caches::slim_meta, w.service_accounts),
        roles: on.of(caches::slim_meta, w.roles),
        role_bindings: on.of(caches::slim_meta, w.role_bindings),
    };
    (cache, watch)
}

/// Where the children are watched: the namespace (or all) and the operator's label.
struct ChildWatch<'a> {
    client: &'a Client,
    namespace: Option<&'a str>,
    cfg: &'a watcher::Config,
}

impl ChildWatch<'_> {
    /// One child kind's watch: each object slimmed, into its cache, then to the controller.
    fn of<K>(
        &self,
        slim: fn(&mut K),
        cache: Writer<K>,
    ) -> impl Stream<Item = Watched<K>> + Send + use<K>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug
            + Send
            + Sync
            + 'static,
        K::DynamicType: Eq + Hash + Clone,
    {
        let api: Api<K> = match self.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        watcher(api, self.cfg.clone())
            .default_backoff()
            .modify(slim)
            .reflect(cache)
            .touched_objects()
    }
}

/// The session a pod belongs to (its StatefulSet owns it, the session owns the StatefulSet):
/// named by the pod's instance label, in the pod's namespace.
pub fn session_of_pod(pod: Pod) -> Option<ObjectRef<WhatsAppSession>> {
    let name = pod
        .metadata
        .labels
        .as_ref()?
        .get(crds::labels::INSTANCE)?
        .clone();
    Some(ObjectRef::new(&name).within(pod.metadata.namespace.as_deref()?))
}
