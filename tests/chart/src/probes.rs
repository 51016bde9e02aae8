//! Network probes from inside pods, for the NetworkPolicy tests (tests/install.rs): devcluster's
//! test pod image run with the labels of the pod it stands in for, and its client
//! (`devcluster-testpod connect|resolve`) run in it through `kubectl exec`, so each connection
//! leaves from the pod's own address and meets the node's policy enforcement like the real
//! pod's would.

use std::time::Duration;

use devcluster_testing::TestCluster;
use serde_json::{Value, json};

use crate::cluster::{kubectl_json, kubectl_ok};

/// How long a policy change may take to show (kube-router syncs on every pod and policy event).
const SETTLE: Duration = Duration::from_secs(60);

/// A running test pod: where it is and its address.
pub struct ProbePod {
    pub ns: String,
    pub name: String,
    pub ip: String,
}

/// Starts the test pod `name` in `ns` with `labels`, serving HTTP on `port`, under the
/// `restricted` Pod Security profile; returns once it is Ready.
pub async fn start_probe_pod(
    cluster: &TestCluster,
    ns: &str,
    name: &str,
    labels: Value,
    port: u16,
) -> ProbePod {
    let image = cluster.test_pod_image().await;
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "automountServiceAccountToken": false,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "probe", "image": image,
                "env": [{"name": "PORT", "value": port.to_string()}],
                "ports": [{"containerPort": port}],
                "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
            }],
        },
    });
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), pod.to_string()).unwrap();
    kubectl_ok(
        cluster,
        &["apply", "-f", &file.path().display().to_string()],
    )
    .await;
    kubectl_ok(
        cluster,
        &[
            "wait",
            "-n",
            ns,
            "--for=condition=Ready",
            &format!("pod/{name}"),
            "--timeout=120s",
        ],
    )
    .await;
    let status = kubectl_json(cluster, &["get", "pod", "-n", ns, name]).await;
    let ip = status["status"]["podIP"]
        .as_str()
        .unwrap_or_else(|| panic!("pod {ns}/{name} has no IP: {status}"))
        .to_string();
    ProbePod {
        ns: ns.into(),
        name: name.into(),
        ip,
    }
}

/// One check a probe pod makes.
#[derive(Debug, Clone)]
pub enum Check {
    /// A TCP connection to `HOST:PORT`.
    Connect(String),
    /// A DNS lookup of a name through the pod's resolver.
    Resolve(String),
}

impl Check {
    pub fn connect(host: impl std::fmt::Display, port: u16) -> Self {
        Check::Connect(format!("{host}:{port}"))
    }
}

/// Runs `check` inside `from`: whether it got through, and what the client printed.
pub async fn run_check(cluster: &TestCluster, from: &ProbePod, check: &Check) -> (bool, String) {
    let (verb, target) = match check {
        Check::Connect(t) => ("connect", t),
        Check::Resolve(t) => ("resolve", t),
    };
    let out = cluster
        .kubectl(&[
            "exec",
            "-n",
            &from.ns,
            &from.name,
            "--",
            "/usr/local/bin/devcluster-testpod",
            verb,
            target,
            "--timeout",
            "2s",
        ])
        .await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text.trim().to_string())
}

/// Waits until `check` from `from` gets through (`allowed`) or is stopped (`!allowed`), failing
/// with the client's last words when it does not within [`SETTLE`].
pub async fn expect(cluster: &TestCluster, from: &ProbePod, check: Check, allowed: bool) {
    let what = format!(
        "{}/{} {check:?} {}",
        from.ns,
        from.name,
        if allowed { "allowed" } else { "blocked" }
    );
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let (ok, text) = run_check(cluster, from, &check).await;
        if ok == allowed {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not so after {SETTLE:?}; the client said: {text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
