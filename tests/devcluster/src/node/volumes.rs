//! The pod's volumes, prepared on the host under the pod dir (or found, for PVCs and hostPath)
//! and later bind-mounted into each container at its mountPaths.
//!
//! Supported: emptyDir (medium Memory → tmpfs), hostPath, persistentVolumeClaim (the bound PV's
//! hostPath/local path), secret, configMap, downwardAPI and projected (secret, configMap,
//! downwardAPI, serviceAccountToken). Files are written once at pod start; the projected
//! ServiceAccount token is refreshed by [`refresh_tokens`].

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod, Secret, ServiceAccount, Volume,
};
use kube::api::{Api, PostParams};
use nix::mount::MsFlags;

use super::NodeError;
use super::spawn::BindMount;

/// What the volume preparation needs from the agent.
pub struct VolumeContext<'a> {
    pub client: &'a kube::Client,
    pub ca_crt: &'a Path,
    pub pod_dir: &'a Path,
}

/// The pod's volumes by name: their host directories.
#[derive(Default, Debug)]
pub struct PodVolumes {
    pub dirs: BTreeMap<String, PathBuf>,
    /// tmpfs mounts on the host to unmount when the pod goes.
    pub tmpfs: Vec<PathBuf>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> NodeError + '_ {
    move |source| NodeError::Io { path: path.to_path_buf(), source }
}

fn missing(what: String) -> NodeError {
    NodeError::Command { command: "prepare volumes".into(), message: what }
}

/// A file written with the given mode; parents are created.
fn write_file(dir: &Path, rel: &str, data: &[u8], mode: u32) -> Result<(), NodeError> {
    // Keys and paths come from the API; refuse anything escaping the volume dir.
    if rel.split('/').any(|c| c == ".." || c.is_empty()) || rel.starts_with('/') {
        return Err(missing(format!("invalid file path {rel:?} in a volume")));
    }
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    // Write-then-rename so a reader never sees a half-written file (tokens are rewritten).
    let tmp = path.with_extension("devcluster-tmp");
    std::fs::write(&tmp, data).map_err(io_err(&tmp))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode & 0o777)).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    Ok(())
}

fn write_items(
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    what: &str,
    optional: bool,
) -> Result<(), NodeError> {
    match items {
        Some(items) => {
            for item in items {
                match data.get(&item.key) {
                    Some(v) => write_file(dir, &item.path, v, item.mode.map_or(default_mode, |m| m as u32))?,
                    None if optional => {}
                    None => return Err(missing(format!("{what} has no key {:?}", item.key))),
                }
            }
        }
        None => {
            for (k, v) in data {
                write_file(dir, k, v, default_mode)?;
            }
        }
    }
    Ok(())
}

async fn secret_data(client: &kube::Client, ns: &str, name: &str, optional: bool) -> Result<Option<BTreeMap<String, Vec<u8>>>, NodeError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    match api.get_opt(name).await? {
        Some(s) => {
            let mut out: BTreeMap<String, Vec<u8>> = s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
            for (k, v) in s.string_data.unwrap_or_default() {
                out.insert(k, v.into_bytes());
            }
            Ok(Some(out))
        }
        None if optional => Ok(None),
        None => Err(missing(format!("secret {ns}/{name} not found"))),
    }
}

async fn config_map_data(client: &kube::Client, ns: &str, name: &str, optional: bool) -> Result<Option<BTreeMap<String, Vec<u8>>>, NodeError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    match api.get_opt(name).await? {
        Some(c) => {
            let mut out: BTreeMap<String, Vec<u8>> = c.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
            for (k, v) in c.binary_data.unwrap_or_default() {
                out.insert(k, v.0);
            }
            Ok(Some(out))
        }
        None if optional => Ok(None),
        None => Err(missing(format!("configmap {ns}/{name} not found"))),
    }
}

/// The value of a downward API `fieldRef` (also used for env).
pub fn field_ref(pod: &Pod, field: &str, pod_ip: Option<&str>, host_ip: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let map_entry = |m: &Option<BTreeMap<String, String>>, key: &str| m.as_ref().and_then(|m| m.get(key).cloned());
    let render = |m: &Option<BTreeMap<String, String>>| {
        m.as_ref().map(|m| m.iter().map(|(k, v)| format!("{k}={v:?}\n")).collect::<String>()).unwrap_or_default()
    };
    Some(match field {
        "metadata.name" => meta.name.clone()?,
        "metadata.namespace" => meta.namespace.clone()?,
        "metadata.uid" => meta.uid.clone()?,
        "metadata.labels" => render(&meta.labels),
        "metadata.annotations" => render(&meta.annotations),
        "spec.nodeName" => spec?.node_name.clone()?,
        "spec.serviceAccountName" => spec?.service_account_name.clone().unwrap_or_else(|| "default".into()),
        "status.podIP" | "status.podIPs" => pod_ip?.to_string(),
        "status.hostIP" | "status.hostIPs" => host_ip.to_string(),
        f => {
            if let Some(k) = f.strip_prefix("metadata.labels['").and_then(|r| r.strip_suffix("']")) {
                map_entry(&meta.labels, k)?
            } else if let Some(k) = f.strip_prefix("metadata.annotations['").and_then(|r| r.strip_suffix("']")) {
                map_entry(&meta.annotations, k)?
            } else {
                return None;
            }
        }
    })
}

fn write_downward(dir: &Path, pod: &Pod, items: &[DownwardAPIVolumeFile], default_mode: u32, pod_ip: Option<&str>, host_ip: &str) -> Result<(), NodeError> {
    for item in items {
        // resourceFieldRef (limits) is not supported: no resource accounting here.
        let Some(f) = &item.field_ref else { continue };
        let value = field_ref(pod, &f.field_path, pod_ip, host_ip).unwrap_or_default();
        write_file(dir, &item.path, value.as_bytes(), item.mode.map_or(default_mode, |m| m as u32))?;
    }
    Ok(())
}

/// A real token from the TokenRequest API, bound to the pod.
async fn service_account_token(client: &kube::Client, pod: &Pod, audience: Option<String>, expiration: Option<i64>) -> Result<String, NodeError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let sa = pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_else(|| "default".into());
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audience.map(|a| vec![a]).unwrap_or_default(),
            expiration_seconds: Some(expiration.unwrap_or(3607)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let resp = api.create_token_request(&sa, &PostParams::default(), &req).await?;
    resp.status.map(|s| s.token).ok_or_else(|| missing(format!("TokenRequest for {ns}/{sa} returned no token")))
}

struct Ownership {
    /// Group that may use every volume (pod `fsGroup`).
    fs_group: Option<u32>,
    /// Owner of secret/configMap/token files when there is no fsGroup: the pod's user, so a
    /// non-root process can read its own token (as the kubelet does).
    reader_uid: Option<u32>,
}

fn chown_tree(path: &Path, uid: Option<u32>, gid: Option<u32>, group_writable: bool) {
    let walk = |p: &Path| {
        let _ = std::os::unix::fs::chown(p, uid, gid);
        if gid.is_some()
            && let Ok(meta) = std::fs::metadata(p)
        {
            let mut mode = meta.permissions().mode();
            mode |= if meta.is_dir() { 0o2050 } else { 0o040 };
            if group_writable {
                mode |= 0o020 | if meta.is_dir() { 0o010 } else { 0 };
            }
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
        }
    };
    walk(path);
    if path.is_dir()
        && let Ok(entries) = std::fs::read_dir(path)
    {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                chown_tree(&e.path(), uid, gid, group_writable);
            } else {
                walk(&e.path());
            }
        }
    }
}

fn bound_pv_path(pv: &PersistentVolume) -> Option<PathBuf> {
    let spec = pv.spec.as_ref()?;
    spec.host_path.as_ref().map(|h| PathBuf::from(&h.path)).or_else(|| spec.local.as_ref().map(|l| PathBuf::from(&l.path)))
}

/// Prepares every volume of the pod. Failures (a PVC not bound yet, a missing secret) are
/// returned so the caller retries later with the message in the container's waiting state.
pub async fn prepare(ctx: &VolumeContext<'_>, pod: &Pod, vols: &mut PodVolumes, pod_ip: Option<&str>, host_ip: &str) -> Result<(), NodeError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let spec = pod.spec.as_ref().ok_or_else(|| missing("pod has no spec".into()))?;
    let security = spec.security_context.as_ref();
    let fs_group = security.and_then(|s| s.fs_group).map(|g| g as u32);
    let pod_user = security.and_then(|s| s.run_as_user).or_else(|| {
        // All containers agree on a user: that user reads the token.
        let users: Vec<Option<i64>> = spec.containers.iter().map(|c| c.security_context.as_ref().and_then(|s| s.run_as_user)).collect();
        users.first().copied().flatten().filter(|u| users.iter().all(|x| *x == Some(*u)))
    });
    let own = Ownership { fs_group, reader_uid: if fs_group.is_none() { pod_user.map(|u| u as u32) } else { None } };
    let base = ctx.pod_dir.join("volumes");
    for vol in spec.volumes.as_deref().unwrap_or_default() {
        if vols.dirs.contains_key(&vol.name) {
            continue;
        }
        let dir = base.join(&vol.name);
        let path = prepare_one(ctx, pod, ns, vol, &dir, vols, pod_ip, host_ip).await?;
        match &path {
            VolumePath::Writable(p) => {
                if let Some(g) = own.fs_group {
                    chown_tree(p, None, Some(g), true);
                }
            }
            VolumePath::Files(p) => {
                if own.fs_group.is_some() || own.reader_uid.is_some() {
                    chown_tree(p, own.reader_uid, own.fs_group, false);
                }
            }
            VolumePath::Host(_) => {}
        }
        let p = match path {
            VolumePath::Writable(p) | VolumePath::Files(p) | VolumePath::Host(p) => p,
        };
        vols.dirs.insert(vol.name.clone(), p);
    }
    Ok(())
}

enum VolumePath {
    /// A data volume the pod writes (emptyDir, PVC): fsGroup gets write access.
    Writable(PathBuf),
    /// Files the agent wrote (secret, configMap, downward API, projected).
    Files(PathBuf),
    /// A host path used as is.
    Host(PathBuf),
}

#[allow(clippy::too_many_arguments)]
async fn prepare_one(
    ctx: &VolumeContext<'_>,
    pod: &Pod,
    ns: &str,
    vol: &Volume,
    dir: &Path,
    vols: &mut PodVolumes,
    pod_ip: Option<&str>,
    host_ip: &str,
) -> Result<VolumePath, NodeError> {
    let mkdir = |d: &Path| std::fs::create_dir_all(d).map_err(io_err(d));
    if let Some(ed) = &vol.empty_dir {
        mkdir(dir)?;
        if ed.medium.as_deref() == Some("Memory") {
            let size = ed.size_limit.as_ref().map(|q| format!("size={}", q.0.trim_end_matches('i'))).unwrap_or_default();
            let opts = if size.is_empty() { "mode=0777".to_string() } else { format!("mode=0777,{size}") };
            nix::mount::mount(Some("tmpfs"), dir, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some(opts.as_str()))?;
            vols.tmpfs.push(dir.to_path_buf());
        } else {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).map_err(io_err(dir))?;
        }
        return Ok(VolumePath::Writable(dir.to_path_buf()));
    }
    if let Some(hp) = &vol.host_path {
        let p = PathBuf::from(&hp.path);
        if matches!(hp.type_.as_deref(), Some("DirectoryOrCreate")) {
            mkdir(&p)?;
        }
        return Ok(VolumePath::Host(p));
    }
    if let Some(pvc) = &vol.persistent_volume_claim {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
        let claim = claims.get_opt(&pvc.claim_name).await?.ok_or_else(|| missing(format!("persistentvolumeclaim {ns}/{} not found", pvc.claim_name)))?;
        let pv_name = claim
            .spec
            .and_then(|s| s.volume_name)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| missing(format!("persistentvolumeclaim {ns}/{} is not bound yet", pvc.claim_name)))?;
        let pvs: Api<PersistentVolume> = Api::all(ctx.client.clone());
        let pv = pvs.get(&pv_name).await?;
        let p = bound_pv_path(&pv).ok_or_else(|| missing(format!("persistentvolume {pv_name} has neither hostPath nor local path")))?;
        mkdir(&p)?;
        return Ok(VolumePath::Writable(p));
    }
    if let Some(s) = &vol.secret {
        mkdir(dir)?;
        let name = s.secret_name.clone().unwrap_or_default();
        let optional = s.optional.unwrap_or(false);
        if let Some(data) = secret_data(ctx.client, ns, &name, optional).await? {
            write_items(dir, &data, s.items.as_deref(), s.default_mode.map_or(0o644, |m| m as u32), &format!("secret {name}"), optional)?;
        }
        return Ok(VolumePath::Files(dir.to_path_buf()));
    }
    if let Some(c) = &vol.config_map {
        mkdir(dir)?;
        let optional = c.optional.unwrap_or(false);
        if let Some(data) = config_map_data(ctx.client, ns, &c.name, optional).await? {
            write_items(dir, &data, c.items.as_deref(), c.default_mode.map_or(0o644, |m| m as u32), &format!("configmap {}", c.name), optional)?;
        }
        return Ok(VolumePath::Files(dir.to_path_buf()));
    }
    if let Some(d) = &vol.downward_api {
        mkdir(dir)?;
        write_downward(dir, pod, d.items.as_deref().unwrap_or_default(), d.default_mode.map_or(0o644, |m| m as u32), pod_ip, host_ip)?;
        return Ok(VolumePath::Files(dir.to_path_buf()));
    }
    if let Some(p) = &vol.projected {
        mkdir(dir)?;
        write_projected(ctx, pod, ns, p, dir, pod_ip, host_ip).await?;
        return Ok(VolumePath::Files(dir.to_path_buf()));
    }
    Err(missing(format!("volume {:?}: unsupported volume type on devcluster", vol.name)))
}

async fn write_projected(
    ctx: &VolumeContext<'_>,
    pod: &Pod,
    ns: &str,
    p: &k8s_openapi::api::core::v1::ProjectedVolumeSource,
    dir: &Path,
    pod_ip: Option<&str>,
    host_ip: &str,
) -> Result<(), NodeError> {
    let default_mode = p.default_mode.map_or(0o644, |m| m as u32);
    for src in p.sources.as_deref().unwrap_or_default() {
        if let Some(t) = &src.service_account_token {
            let token = service_account_token(ctx.client, pod, t.audience.clone(), t.expiration_seconds).await?;
            // The token is a credential: owner-only unless a group must read it.
            let mode = if pod.spec.as_ref().and_then(|s| s.security_context.as_ref()).and_then(|s| s.fs_group).is_some() { 0o640 } else { 0o600 };
            write_file(dir, &t.path, token.as_bytes(), mode.min(default_mode | 0o600))?;
        }
        if let Some(c) = &src.config_map {
            let optional = c.optional.unwrap_or(false);
            // kube-root-ca.crt is the cluster CA: use the agent's copy so pods never depend on the
            // root-ca publisher having run yet.
            let data = if c.name == "kube-root-ca.crt" {
                let ca = std::fs::read(ctx.ca_crt).map_err(io_err(ctx.ca_crt))?;
                Some(BTreeMap::from([("ca.crt".to_string(), ca)]))
            } else {
                config_map_data(ctx.client, ns, &c.name, optional).await?
            };
            if let Some(data) = data {
                write_items(dir, &data, c.items.as_deref(), default_mode, &format!("configmap {}", c.name), optional)?;
            }
        }
        if let Some(s) = &src.secret {
            let optional = s.optional.unwrap_or(false);
            if let Some(data) = secret_data(ctx.client, ns, &s.name, optional).await? {
                write_items(dir, &data, s.items.as_deref(), default_mode, &format!("secret {}", s.name), optional)?;
            }
        }
        if let Some(d) = &src.downward_api {
            write_downward(dir, pod, d.items.as_deref().unwrap_or_default(), default_mode, pod_ip, host_ip)?;
        }
    }
    Ok(())
}

/// Rewrites the projected volumes that hold ServiceAccount tokens with fresh tokens.
pub async fn refresh_tokens(ctx: &VolumeContext<'_>, pod: &Pod, vols: &PodVolumes, pod_ip: Option<&str>, host_ip: &str) -> Result<(), NodeError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    for vol in pod.spec.as_ref().and_then(|s| s.volumes.as_deref()).unwrap_or_default() {
        if let (Some(p), Some(dir)) = (&vol.projected, vols.dirs.get(&vol.name))
            && p.sources.as_deref().unwrap_or_default().iter().any(|s| s.service_account_token.is_some())
        {
            write_projected(ctx, pod, ns, p, dir, pod_ip, host_ip).await?;
        }
    }
    Ok(())
}

/// The bind mounts of one container: its volumeMounts resolved against the pod's volumes.
pub fn container_mounts(container: &k8s_openapi::api::core::v1::Container, vols: &PodVolumes) -> Result<Vec<BindMount>, NodeError> {
    let mut out = Vec::new();
    for vm in container.volume_mounts.as_deref().unwrap_or_default() {
        let dir = vols.dirs.get(&vm.name).ok_or_else(|| missing(format!("volumeMount {:?} names no volume of the pod", vm.name)))?;
        let source = match vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => {
                if sub.split('/').any(|c| c == "..") || sub.starts_with('/') {
                    return Err(missing(format!("invalid subPath {sub:?}")));
                }
                let p = dir.join(sub);
                if !p.exists() {
                    std::fs::create_dir_all(&p).map_err(io_err(&p))?;
                }
                p
            }
            None => dir.clone(),
        };
        out.push(BindMount { source, target: PathBuf::from(&vm.mount_path), read_only: vm.read_only.unwrap_or(false) });
    }
    Ok(out)
}

/// Unmounts the pod's tmpfs volumes.
pub fn unmount(vols: &PodVolumes) {
    for p in &vols.tmpfs {
        let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Unmounts everything mounted under `root` (deepest first).
pub fn unmount_under(root: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return };
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(&root))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for p in points {
        let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
    }
}
