//! The second step of a reconcile: what the session's workload looks like — its StatefulSet
//! (as the apply left it, or cached) and its pod, from the watch cache or, without one, the API
//! server.
use crds::WhatsAppSession;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, ResourceExt};

use crate::caches::{self, Caches};
use crate::children;
use crate::context::Context;
use crate::error::{Call, During, Result, Verb};
use crate::reconcile::namespace;
use crate::status::Observed;

/// The session's workload as the reconcile saw it.
#[derive(Clone, Debug, Default)]
pub struct Observation {
    pub statefulset: Option<StatefulSet>,
    pub pod: Option<Pod>,
}

impl Observation {
    pub fn observed(&self) -> Observed<'_> {
        Observed {
            statefulset: self.statefulset.as_ref(),
            pod: self.pod.as_ref(),
        }
    }
}

pub async fn observe(
    session: &WhatsAppSession,
    ctx: &Context,
    cache: Option<&Caches>,
    statefulset: Option<StatefulSet>,
) -> Result<Observation> {
    let ns = namespace(session)?;
    let pod_name = children::pod_name(&session.name_any());
    let pod = match cache {
        Some(c) => caches::get(&c.pods, &ns, &pod_name).as_deref().cloned(),
        None => read_pod(ctx, &ns, &pod_name).await?,
    };
    Ok(Observation { statefulset, pod })
}

/// The pod `name` as the API server has it now (the cache may lag behind).
pub async fn read_pod(ctx: &Context, ns: &str, name: &str) -> Result<Option<Pod>> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    pods.get_opt(name)
        .await
        .during(Call::on::<Pod>(Verb::Get, Some(ns), name))
}
