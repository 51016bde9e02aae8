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
    /// Node authorizer and NodeRestriction expect), kube-proxy and CoreDNS.
    pub node: CertPair,
    pub kube_proxy: CertPair,
    pub coredns: CertPair,
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
    let gen_err = |what: &str| {
        let what = what.to_string();
        move |source| PkiError::Generate {
            what: what.clone(),
            source,
        }
    };

    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen_err("CA key"))?;
    let ca_key_pem = ca_key.serialize_pem();
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = dn("devcluster-ca", None);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(gen_err("CA certificate"))?;
    let ca_pem = ca.pem();
    let ca_crt = write(dir, "ca.crt", &ca_pem)?;
    let ca_key_path = write(dir, "ca.key", &ca_key_pem)?;

    // The serving certificate covers every name a client may use: loopback (kubectl, the
    // supervisor), the bridge address (pods, via the node agent's forward) and the
    // `kubernetes` Service (its first ClusterIP and DNS names).
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
    let mut serving = CertificateParams::default();
    serving.distinguished_name = dn("kube-apiserver", None);
    serving.subject_alt_names = sans;
    serving.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let apiserver = sign(dir, "apiserver", serving, &ca)?;

    let client = |id: Identity<'_>| -> Result<CertPair, PkiError> {
        let mut p = CertificateParams::default();
        p.distinguished_name = dn(id.cn, id.org);
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        sign(dir, id.file, p, &ca)
    };
    let admin = client(Identity {
        file: "admin",
        cn: "admin",
        org: Some("system:masters"),
    })?;
    let controller_manager = client(Identity {
        file: "controller-manager",
        cn: "system:kube-controller-manager",
        org: None,
    })?;
    let scheduler = client(Identity {
        file: "scheduler",
        cn: "system:kube-scheduler",
        org: None,
    })?;
    let apiserver_kubelet_client = client(Identity {
        file: "apiserver-kubelet-client",
        cn: "kube-apiserver-kubelet-client",
        org: None,
    })?;
    let node_cn = format!("system:node:{}", crate::daemon::NODE_NAME);
    let node = client(Identity {
        file: "node",
        cn: &node_cn,
        org: Some("system:nodes"),
    })?;
    let kube_proxy = client(Identity {
        file: "kube-proxy",
        cn: "system:kube-proxy",
        org: None,
    })?;
    let coredns = client(Identity {
        file: "coredns",
        cn: "system:coredns",
        org: None,
    })?;

    // The API server reaches the kubelet port at the node's InternalIP (the bridge address).
    let mut kubelet_params = CertificateParams::default();
    kubelet_params.distinguished_name = dn(crate::daemon::NODE_NAME, None);
    kubelet_params.subject_alt_names = kubelet_ips
        .iter()
        .map(|ip| SanType::IpAddress(IpAddr::V4(*ip)))
        .collect();
    if let Ok(name) = crate::daemon::NODE_NAME.try_into() {
        kubelet_params
            .subject_alt_names
            .push(SanType::DnsName(name));
    }
    kubelet_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    kubelet_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let kubelet = sign(dir, "kubelet", kubelet_params, &ca)?;

    let sa =
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen_err("ServiceAccount key"))?;
    let sa_key = write(dir, "sa.key", &sa.serialize_pem())?;
    let sa_pub = write(dir, "sa.pub", &sa.public_key_pem())?;

    Ok(Pki {
        ca_crt,
        ca_key: ca_key_path,
        ca_pem,
        apiserver,
        admin,
        controller_manager,
        scheduler,
        kubelet,
        apiserver_kubelet_client,
        node,
        kube_proxy,
        coredns,
        sa_key,
        sa_pub,
    })
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
    let key =
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| PkiError::Generate {
            what: name.to_string(),
            source,
        })?;
    let cert = params
        .signed_by(&key, &**ca)
        .map_err(|source| PkiError::Generate {
            what: name.into(),
            source,
        })?;
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
