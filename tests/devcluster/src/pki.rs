//! Certificates and keys of a devcluster: one CA (ECDSA P-256) signing the API server's
//! serving certificate and the client certificates of the admin and the control-plane
//! components, plus the ServiceAccount token signing key. Generated fresh on every start
//! (the cluster's data is fresh too), in milliseconds.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("generating {what}: {source}")]
    Generate { what: String, source: rcgen::Error },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A client or serving certificate with its key, PEM encoded.
#[derive(Clone)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

/// Everything the control plane needs, written under `pki/`.
pub struct Pki {
    pub ca_crt: PathBuf,
    pub ca_key: PathBuf,
    pub ca_pem: String,
    pub apiserver: CertPair,
    pub admin: CertPair,
    pub controller_manager: CertPair,
    pub scheduler: CertPair,
    /// The node agent's kubelet port (`kubectl logs`): its serving certificate, and the client
    /// certificate kube-apiserver presents there.
    pub kubelet: CertPair,
    pub apiserver_kubelet_client: CertPair,
    /// A kubelet node's identities: the kubelet (system:node:NAME in system:nodes, what the
    /// Node authorizer and NodeRestriction expect), kube-proxy, CoreDNS and the NetworkPolicy
    /// controller.
    pub node: CertPair,
    pub kube_proxy: CertPair,
    pub coredns: CertPair,
    pub kube_router: CertPair,
    /// ServiceAccount token signing key (private, PKCS#8) and its public half.
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
}

/// A client identity: the API server maps CN to the user and O to groups.
struct Identity<'a> {
    file: &'a str,
    cn: &'a str,
    org: Option<&'a str>,
}

/// `kubelet_ips`: the addresses the API server reaches the kubelet port at (the Node's
/// InternalIP), in the kubelet's serving certificate.
pub fn generate(dir: &Path, host_ip: Ipv4Addr, kubelet_ips: &[Ipv4Addr]) -> Result<Pki, PkiError> {
    std::fs::create_dir_all(dir).map_err(|source| PkiError::Write {
        path: dir.into(),
        source,
    })?;
    let ca = Ca::generate(dir)?;
    let client = |id: Identity<'_>| sign(dir, id.file, client_params(&id), &ca.issuer);
    let node_cn = format!("system:node:{}", crate::daemon::NODE_NAME);
    let (sa_key, sa_pub) = service_account_key(dir)?;
    Ok(Pki {
        apiserver: sign(dir, "apiserver", apiserver_serving(host_ip), &ca.issuer)?,
        admin: client(Identity {
            file: "admin",
            cn: "admin",
            org: Some("system:masters"),
        })?,
        controller_manager: client(Identity {
            file: "controller-manager",
            cn: "system:kube-controller-manager",
            org: None,
        })?,
        scheduler: client(Identity {
            file: "scheduler",
            cn: "system:kube-scheduler",
            org: None,
        })?,
        apiserver_kubelet_client: client(Identity {
            file: "apiserver-kubelet-client",
            cn: "kube-apiserver-kubelet-client",
            org: None,
        })?,
        node: client(Identity {
            file: "node",
            cn: &node_cn,
            org: Some("system:nodes"),
        })?,
        kube_proxy: client(Identity {
            file: "kube-proxy",
            cn: "system:kube-proxy",
            org: None,
        })?,
        coredns: client(Identity {
            file: "coredns",
            cn: "system:coredns",
            org: None,
        })?,
        kube_router: client(Identity {
            file: "kube-router",
            cn: "system:kube-router",
            org: None,
        })?,
        kubelet: sign(dir, "kubelet", kubelet_serving(kubelet_ips), &ca.issuer)?,
        sa_key,
        sa_pub,
        ca_crt: ca.crt,
        ca_key: ca.key,
        ca_pem: ca.pem,
    })
}

/// The cluster's CA, written as `ca.crt` and `ca.key`.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    crt: PathBuf,
    key: PathBuf,
    pem: String,
}

impl Ca {
    fn generate(dir: &Path) -> Result<Self, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen_err("CA key"))?;
        let key_pem = key.serialize_pem();
        let mut params = CertificateParams::default();
        params.distinguished_name = dn("devcluster-ca", None);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer =
            CertifiedIssuer::self_signed(params, key).map_err(gen_err("CA certificate"))?;
        let pem = issuer.pem();
        Ok(Self {
            crt: write(dir, "ca.crt", &pem)?,
            key: write(dir, "ca.key", &key_pem)?,
            issuer,
            pem,
        })
    }
}

/// The API server's serving certificate covers every name a client may use: loopback
/// (kubectl, the supervisor), the bridge address (pods, via the node agent's forward) and the
/// `kubernetes` Service (its first ClusterIP and DNS names).
fn apiserver_serving(host_ip: Ipv4Addr) -> CertificateParams {
    let mut sans: Vec<SanType> = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .iter()
    .filter_map(|n| (*n).try_into().ok().map(SanType::DnsName))
    .collect();
    for ip in [Ipv4Addr::LOCALHOST, host_ip, Ipv4Addr::new(10, 0, 0, 1)] {
        sans.push(SanType::IpAddress(IpAddr::V4(ip)));
    }
    let mut params = serving_params(dn("kube-apiserver", None));
    params.subject_alt_names = sans;
    params
}

/// The kubelet port's serving certificate: the API server reaches it at the node's InternalIP
/// (the bridge address).
fn kubelet_serving(kubelet_ips: &[Ipv4Addr]) -> CertificateParams {
    let mut params = serving_params(dn(crate::daemon::NODE_NAME, None));
    params.subject_alt_names = kubelet_ips
        .iter()
        .map(|ip| SanType::IpAddress(IpAddr::V4(*ip)))
        .collect();
    if let Ok(name) = crate::daemon::NODE_NAME.try_into() {
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    params
}

fn serving_params(name: DistinguishedName) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params
}

fn client_params(id: &Identity<'_>) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(id.cn, id.org);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params
}

/// The ServiceAccount token signing key: `sa.key` (private, PKCS#8) and `sa.pub`.
fn service_account_key(dir: &Path) -> Result<(PathBuf, PathBuf), PkiError> {
    let sa =
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen_err("ServiceAccount key"))?;
    Ok((
        write(dir, "sa.key", &sa.serialize_pem())?,
        write(dir, "sa.pub", &sa.public_key_pem())?,
    ))
}

fn gen_err(what: &str) -> impl Fn(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Generate {
        what: what.to_string(),
        source,
    }
}

fn dn(cn: &str, org: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(org) = org {
        dn.push(DnType::OrganizationName, org);
    }
    dn.push(DnType::CommonName, cn);
    dn
}

fn sign(
    dir: &Path,
    name: &str,
    params: CertificateParams,
    ca: &CertifiedIssuer<'_, KeyPair>,
) -> Result<CertPair, PkiError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen_err(name))?;
    let cert = params.signed_by(&key, &**ca).map_err(gen_err(name))?;
    let cert_pem = cert.pem();
    let key_pem = key.serialize_pem();
    let cert_path = write(dir, &format!("{name}.crt"), &cert_pem)?;
    let key_path = write(dir, &format!("{name}.key"), &key_pem)?;
    Ok(CertPair {
        cert_pem,
        key_pem,
        cert_path,
        key_path,
    })
}

fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf, PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    // keys are secrets: never readable by others, even for a moment
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    result.map_err(|source| PkiError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// A kubeconfig for `server` authenticating with a client certificate; the certificates are
/// embedded so the file can be copied elsewhere.
pub fn kubeconfig(server: &str, ca_pem: &str, user: &str, client: &CertPair) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: devcluster\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\ncontexts:\n- name: devcluster\n  context:\n    cluster: devcluster\n    user: {user}\n    namespace: default\ncurrent-context: devcluster\n",
        ca = b64(ca_pem),
        cert = b64(&client.cert_pem),
        key = b64(&client.key_pem),
    )
}

pub fn write_kubeconfig(path: &Path, text: &str) -> Result<(), PkiError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("kubeconfig");
    write(dir, name, text).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_readable_pems() {
        let dir = std::env::temp_dir().join(format!("devcluster-pki-{}", std::process::id()));
        let pki = generate(
            &dir,
            Ipv4Addr::new(10, 244, 9, 1),
            &[Ipv4Addr::new(10, 244, 9, 1)],
        )
        .unwrap();
        assert!(pki.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(pki.admin.key_pem.contains("PRIVATE KEY"));
        assert!(
            std::fs::read_to_string(&pki.sa_pub)
                .unwrap()
                .contains("PUBLIC KEY")
        );
        let kc = kubeconfig("https://127.0.0.1:1", &pki.ca_pem, "admin", &pki.admin);
        assert!(kc.contains("client-certificate-data: "));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
