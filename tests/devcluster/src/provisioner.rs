//! The storage provisioner of StorageClass `devcluster-local`: each PVC of the class gets a
//! PersistentVolume backed by the directory `<state>/volumes/<pv>` (a hostPath volume the node
//! agent bind-mounts into pods), pre-bound to the claim so the real PV binder completes the
//! binding. A Released PV with reclaim policy Delete loses its directory, then its object.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeSpec,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio_util::sync::CancellationToken;

pub const STORAGE_CLASS: &str = "devcluster-local";
pub const PROVISIONER: &str = "devcluster.local/hostpath";
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
const FIELD_MANAGER: &str = "devcluster";

#[derive(Debug, thiserror::Error)]
pub enum ProvisionerError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Creates (or updates) the default StorageClass `devcluster-local`.
pub async fn ensure_storage_class(client: &Client) -> Result<(), ProvisionerError> {
    let sc = StorageClass {
        metadata: ObjectMeta {
            name: Some(STORAGE_CLASS.into()),
            annotations: Some(BTreeMap::from([(
                "storageclass.kubernetes.io/is-default-class".to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        },
        provisioner: PROVISIONER.into(),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("Immediate".into()),
        ..Default::default()
    };
    Api::<StorageClass>::all(client.clone())
        .patch(
            STORAGE_CLASS,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&sc),
        )
        .await?;
    Ok(())
}

/// Runs until `shutdown`: provisions PVs for new claims and deletes released ones.
pub async fn run(client: Client, volumes_dir: PathBuf, shutdown: CancellationToken) {
    let claims = watch_claims(client.clone(), volumes_dir.clone());
    let volumes = watch_volumes(client, volumes_dir);
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = claims => {}
        _ = volumes => {}
    }
}

async fn watch_claims(client: Client, volumes_dir: PathBuf) {
    watch_all(client.clone(), "PVC", move |pvc: PersistentVolumeClaim| {
        let (client, volumes_dir) = (client.clone(), volumes_dir.clone());
        async move {
            if let Err(e) = provision(&client, &volumes_dir, &pvc).await {
                let (pvc, ns) = (pvc.name_any(), pvc.namespace());
                tracing::warn!(pvc, ?ns, error = %e, "provisioning failed; retrying on the next event");
            }
        }
    })
    .await
}

async fn watch_volumes(client: Client, volumes_dir: PathBuf) {
    watch_all(client.clone(), "PV", move |pv: PersistentVolume| {
        let (client, volumes_dir) = (client.clone(), volumes_dir.clone());
        async move {
            if let Err(e) = reclaim(&client, &volumes_dir, &pv).await {
                let pv = pv.name_any();
                tracing::warn!(pv, error = %e, "reclaiming failed; retrying on the next event");
            }
        }
    })
    .await
}

/// Hands every applied object of kind `K` (cluster-wide, with the watcher's own backoff) to
/// `handle`, one at a time.
async fn watch_all<K, F, Fut>(client: Client, kind: &str, mut handle: F)
where
    F: FnMut(K) -> Fut,
    Fut: std::future::Future<Output = ()>,
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
{
    let mut stream = watcher(Api::<K>::all(client), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(event) = stream.next().await {
        match event {
            Ok(obj) => handle(obj).await,
            Err(e) => tracing::warn!(kind, error = %e, "watch error"),
        }
    }
}

pub fn pv_name(pvc: &PersistentVolumeClaim) -> Option<String> {
    pvc.uid().map(|uid| format!("pvc-{uid}"))
}

async fn provision(
    client: &Client,
    volumes_dir: &Path,
    pvc: &PersistentVolumeClaim,
) -> Result<(), ProvisionerError> {
    let Some(spec) = &pvc.spec else { return Ok(()) };
    let ours = spec.storage_class_name.as_deref() == Some(STORAGE_CLASS);
    let pending = spec.volume_name.as_deref().unwrap_or("").is_empty()
        && pvc
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Pending")
            == "Pending";
    if !ours || !pending || pvc.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let (Some(name), Some(ns)) = (pv_name(pvc), pvc.namespace()) else {
        return Ok(());
    };
    let dir = volumes_dir.join(&name);
    std::fs::create_dir_all(&dir).map_err(|source| ProvisionerError::Io {
        path: dir.clone(),
        source,
    })?;
    // pods run as arbitrary non-root users: let them write, like a fresh cloud disk's root
    // owned by fsGroup would
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).map_err(
            |source| ProvisionerError::Io {
                path: dir.clone(),
                source,
            },
        )?;
    }
    let capacity = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage").cloned());
    let pv = PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            annotations: Some(BTreeMap::from([(
                PROVISIONED_BY.to_string(),
                PROVISIONER.to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: capacity.map(|c| BTreeMap::from([("storage".to_string(), c)])),
            access_modes: spec.access_modes.clone(),
            volume_mode: spec.volume_mode.clone(),
            storage_class_name: Some(STORAGE_CLASS.into()),
            persistent_volume_reclaim_policy: Some("Delete".into()),
            host_path: Some(HostPathVolumeSource {
                path: dir.display().to_string(),
                type_: Some("Directory".into()),
            }),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some(ns.clone()),
                name: Some(pvc.name_any()),
                uid: pvc.uid(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    match Api::<PersistentVolume>::all(client.clone())
        .create(&PostParams::default(), &pv)
        .await
    {
        Ok(_) => {
            tracing::info!(pv = %name, pvc = %pvc.name_any(), %ns, dir = %dir.display(), "provisioned");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn reclaim(
    client: &Client,
    volumes_dir: &Path,
    pv: &PersistentVolume,
) -> Result<(), ProvisionerError> {
    let ours = pv.annotations().get(PROVISIONED_BY).map(String::as_str) == Some(PROVISIONER);
    let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    let delete = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        == Some("Delete");
    if !ours || !released || !delete {
        return Ok(());
    }
    let name = pv.name_any();
    // only ever remove a directory of our own volumes dir, whatever the PV object says
    let dir = volumes_dir.join(&name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|source| ProvisionerError::Io {
            path: dir.clone(),
            source,
        })?;
    }
    match Api::<PersistentVolume>::all(client.clone())
        .delete(&name, &DeleteParams::default())
        .await
    {
        Ok(_) => tracing::info!(pv = %name, "released volume deleted"),
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// Retries `ensure_storage_class` briefly: right after `/readyz` the storage API may still
/// be settling.
pub async fn ensure_storage_class_with_retry(client: &Client) -> Result<(), ProvisionerError> {
    let mut attempts = 0;
    loop {
        match ensure_storage_class(client).await {
            Ok(()) => return Ok(()),
            Err(e) if attempts >= 50 => return Err(e),
            Err(_) => attempts += 1,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
