//! The first step of a reconcile: server-side apply of the session's children (ServiceAccount,
//! Role, RoleBinding, PVC, then the StatefulSet), each skipped when [`crate::applied`] shows it
//! unchanged since our last apply.
use std::fmt::Debug;
use std::time::Instant;

use crds::{WhatsAppSession, Writer};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::Store;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::applied::{AppliedChild, Tracked, body_hash, fingerprint, needs_apply};
use crate::caches::{self, Caches};
use crate::children;
use crate::context::Context;
use crate::error::{Call, During, Error, Result, Verb};
use crate::reconcile::namespace;

/// Server-side apply as the operator, with `force`: the operator is the authority on its
/// children; a hand edit to a field it sets is taken back (the conflict is resolved in its
/// favour) rather than failing the reconcile.
pub fn operator_apply_params() -> PatchParams {
    Writer::Operator.patch_params()
}

/// Applies the session's children; returns the StatefulSet as the apply left it, or as the
/// cache holds it when its apply was skipped.
pub async fn apply_children(
    session: &WhatsAppSession,
    ctx: &Context,
    cache: Option<&Caches>,
) -> Result<Option<StatefulSet>> {
    let ns = namespace(session)?;
    let name = session.name_any();
    let (object, pvc_name) = (children::object_name(&name), children::pvc_name(&name));
    let every = Tracked::EveryWrite;
    let sa = children::service_account(session)?;
    let role = children::role(session)?;
    let rb = children::role_binding(session)?;
    let pvc = children::pvc(session, &ctx.settings)?;
    let (sa_meta, role_meta, rb_meta, pvc_meta) = (
        cached_meta(cache, |c| &c.service_accounts, &ns, &object),
        cached_meta(cache, |c| &c.roles, &ns, &object),
        cached_meta(cache, |c| &c.role_bindings, &ns, &object),
        cached_meta(cache, |c| &c.pvcs, &ns, &pvc_name),
    );
    let (sa, role, rb, pvc) = tokio::join!(
        apply_child(ctx, &ns, &sa, every, sa_meta.as_ref()),
        apply_child(ctx, &ns, &role, every, role_meta.as_ref()),
        apply_child(ctx, &ns, &rb, every, rb_meta.as_ref()),
        apply_child(ctx, &ns, &pvc, every, pvc_meta.as_ref()),
    );
    sa?;
    role?;
    rb?;
    match pvc {
        Ok(_) => {}
        // Most of a PVC's spec is immutable (class, and size can only grow where the class
        // allows it): report the rejected change instead of failing every reconcile.
        Err(e) if e.is_api_code(422) => {
            ctx.events
                .error(&session.object_ref(&()), "StorageChangeRejected", &e)
                .await
        }
        Err(e) => return Err(e),
    }
    let cached_sts = cache.and_then(|c| caches::get(&c.statefulsets, &ns, &object));
    let applied_sts = apply_child(
        ctx,
        &ns,
        &children::statefulset(session, &ctx.settings)?,
        Tracked::SpecAndMetadata,
        cached_sts.as_ref().map(|s| &s.metadata),
    )
    .await?;
    // Skipped only when the cache holds it, so one of the two is there.
    Ok(applied_sts.or_else(|| cached_sts.as_deref().cloned()))
}

/// The metadata of the child `name` in the metadata-only cache `store` picks, if cached.
fn cached_meta<K>(
    cache: Option<&Caches>,
    store: impl Fn(&Caches) -> &Store<PartialObjectMeta<K>>,
    ns: &str,
    name: &str,
) -> Option<ObjectMeta>
where
    PartialObjectMeta<K>: Resource<DynamicType = ()> + Clone + 'static,
{
    cache
        .and_then(|c| caches::get(store(c), ns, name))
        .map(|m| m.metadata.clone())
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
    let serialize_error = |source| Error::Serialize {
        object: format!("{} {name}", K::kind(&())),
        source,
    };
    // apiVersion/kind are required in an apply body; typed k8s-openapi objects don't serialize them.
    let mut body = serde_json::to_value(obj).map_err(serialize_error)?;
    body["apiVersion"] = json!(K::api_version(&()));
    body["kind"] = json!(K::kind(&()));
    let hash = body_hash(&body).map_err(serialize_error)?;
    let key = (K::kind(&()).into_owned(), ns.to_string(), name.clone());
    let now = cached.map(|m| fingerprint(m, tracked));
    if !needs_apply(ctx.applied.get(&key), hash, now, Instant::now()) {
        tracing::trace!(kind = %key.0, child = %name, "unchanged since our last apply; skipped");
        return Ok(None);
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let applied = api
        .patch(&name, &operator_apply_params(), &Patch::Apply(&body))
        .await
        .during(Call::on::<K>(Verb::Apply, Some(ns), &name))?;
    ctx.applied.record(
        key,
        AppliedChild {
            body_hash: hash,
            fingerprint_after: fingerprint(applied.meta(), tracked),
            applied_at: Instant::now(),
        },
    );
    Ok(Some(applied))
}
