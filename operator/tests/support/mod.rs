//! Shared helpers of the operator's devcluster tests: the real `wa-operator` binary as a host
//! process, small HTTP and wait helpers (CRD and sessions: `devcluster::testing::sessions`).
#![allow(dead_code)]
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crds::WhatsAppSession;
use devcluster::testing::{TestCluster, free_port, wait_for_value};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// Installing the CRD and creating sessions are shared with the agent and hub suites.
// Like `dead_code` above: each test binary of the crate uses a different part.
#[allow(unused_imports)]
pub use devcluster::testing::sessions::{
    create as create_session, install_crd, manifest as session_manifest, set_desired_state,
};

/// The stand-in for the agent's image: devcluster's test pod (an HTTP server answering the
/// agent's probes), pushed to the cluster's registry.
pub async fn stand_in_image(cluster: &TestCluster) -> String {
    cluster.test_pod_image().await
}
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);
pub const GONE_TIMEOUT: Duration = Duration::from_secs(120);

/// The real `wa-operator`, run as a host process against the devcluster.
pub struct Operator {
    child: tokio::process::Child,
    pub metrics_port: u16,
    pub log: PathBuf,
}

impl Operator {
    /// Starts the operator watching only `ns`, with the stand-in agent image and leader
    /// election off unless `extra` says otherwise.
    pub async fn start(cluster: &TestCluster, ns: &str, extra: &[&str]) -> Operator {
        Self::start_as(cluster, ns, "op", extra).await
    }

    pub async fn start_as(cluster: &TestCluster, ns: &str, id: &str, extra: &[&str]) -> Operator {
        Self::start_with_env(cluster, ns, id, extra, &[]).await
    }

    /// As [`Operator::start_as`], with extra environment variables (e.g. `POD_UID`).
    pub async fn start_with_env(
        cluster: &TestCluster,
        ns: &str,
        id: &str,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Operator {
        let metrics_port = free_port();
        let log = std::env::temp_dir().join(format!("wa-operator-{ns}-{id}-{metrics_port}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut args: Vec<String> = vec!["--namespace".into(), ns.into()];
        // the stand-in, unless the test names the session image itself
        if !extra.contains(&"--session-image") {
            args.extend(["--session-image".into(), stand_in_image(cluster).await]);
        }
        args.extend([
            "--metrics-addr".into(),
            format!("127.0.0.1:{metrics_port}"),
            // No requests or limits: the stand-in needs next to nothing, and many test pods
            // share a 2-core machine.
            "--default-cpu-request=".into(),
            "--default-memory-request=".into(),
            "--default-cpu-limit=".into(),
            "--default-memory-limit=".into(),
        ]);
        if !extra.iter().any(|a| a.starts_with("--leader-election")) {
            args.push("--leader-election=false".into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wa-operator"))
            .args(&args)
            .env("KUBECONFIG", cluster.kubeconfig())
            .env("POD_NAME", id)
            .env("RUST_LOG", "info,operator=debug,kube=warn")
            .env_remove("WATCH_NAMESPACE")
            .env_remove("WA_SESSION_IMAGE")
            .env_remove("POD_UID")
            .envs(envs.iter().copied())
            .stdout(file.try_clone().expect("dup log"))
            .stderr(file)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn wa-operator");
        eprintln!("wa-operator {id} for {ns}: log {}", log.display());
        let op = Operator {
            child,
            metrics_port,
            log,
        };
        wait_for_value(
            "the operator's /healthz",
            Duration::from_secs(30),
            || async {
                http_get("127.0.0.1", op.metrics_port, "/healthz")
                    .await
                    .filter(|(code, _)| *code == 200)
            },
        )
        .await;
        op
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGKILL: no chance to clean up or release the Lease.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM, as the kubelet sends on pod deletion; waits for the process to exit.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("operator still running");
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid}");
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the operator exits within 30 s of SIGTERM")
            .expect("wait for the operator")
    }

    /// Everything the operator has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sum of all samples of a labelled counter family, e.g. `wa_operator_reconcile_errors_total`.
    pub async fn metric_sum(&self, name: &str) -> Option<f64> {
        let text = self.metrics().await?;
        Some(
            text.lines()
                .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
                .filter_map(|l| l.rsplit_once(' ')?.1.trim().parse::<f64>().ok())
                .sum(),
        )
    }

    pub async fn metrics(&self) -> Option<String> {
        http_get("127.0.0.1", self.metrics_port, "/metrics")
            .await
            .map(|(_, body)| body)
    }

    /// The value of an unlabelled sample, e.g. `wa_operator_leader`.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = self.metrics().await?;
        metric_value(&text, name)
    }
}

pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == name).then(|| v.trim().parse().ok()).flatten()
    })
}

/// A minimal HTTP/1.0 GET (status, body).
pub async fn http_get(host: &str, port: u16, path: &str) -> Option<(u16, String)> {
    http(host, port, "GET", path, &[], None).await
}

/// A minimal HTTP/1.0 request with extra headers and a JSON body (status, body).
pub async fn http(
    host: &str,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    json_body: Option<&str>,
) -> Option<(u16, String)> {
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(body) = json_body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        request.push_str("\r\n");
    }
    let fut = async {
        let mut stream = tokio::net::TcpStream::connect((host, port)).await.ok()?;
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf).to_string();
        let (head, body) = text.split_once("\r\n\r\n")?;
        let code = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((code, body.to_string()))
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .ok()
        .flatten()
}

pub fn condition(s: &WhatsAppSession, type_: &str) -> Option<(String, String)> {
    s.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

pub async fn wait_ready(api: &Api<WhatsAppSession>, name: &str) -> WhatsAppSession {
    wait_for_value(
        &format!("session {name} Ready=True"),
        READY_TIMEOUT,
        || async {
            let s = api.get_opt(name).await.ok().flatten()?;
            (condition(&s, "Ready")?.0 == "True").then_some(s)
        },
    )
    .await
}

/// Pods of a session (by the instance label), not counting those already terminating.
pub async fn session_pods(client: &Client, ns: &str, name: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={name}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// The events.k8s.io Events about the object `name` in `ns`.
pub async fn events_for(client: &Client, ns: &str, name: &str) -> Vec<Event> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    events
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect()
}

pub const CRD_NAME: &str = "whatsappsessions.whatsapp.leadmaster.io";
/// The first release's CRD (`git show 411c26f:crds/whatsappsession.yaml`).
pub const OLD_CRD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../crds/tests/fixtures/whatsappsession-0.1.0.yaml"
);
pub const CHART_CRD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../charts/whatsapp-operator/crds/whatsappsession.yaml"
);

/// Puts the current CRD back (server-side apply, forced) when the test ends, however it ends.
/// For the tests that swap the cluster-wide CRD: each is a test binary of its own (cargo runs
/// test binaries one after another), so no other test sees the swap half done.
pub struct RestoreCurrentCrd(pub PathBuf);
impl Drop for RestoreCurrentCrd {
    fn drop(&mut self) {
        let out = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.0)
            .args([
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=whatsapp-tests",
                "-f",
                CHART_CRD,
            ])
            .output();
        if !out.as_ref().is_ok_and(|o| o.status.success()) {
            eprintln!("restoring the current CRD failed: {out:?}");
        }
    }
}

/// What `helm install` of the first release leaves: [`OLD_CRD`] written by the field manager
/// "helm" with a plain (non-apply) request, so "helm" owns `.spec.versions`. Here a replace of
/// the CRD the other tests applied: deleting it instead would delete every session in the
/// cluster, and hang on any whose finalizer no operator removes.
pub async fn install_old_crd_as_helm(client: &Client) {
    let yaml = std::fs::read_to_string(OLD_CRD).expect("read the old CRD");
    let mut old: CustomResourceDefinition =
        serde_saphyr::from_str(&yaml).expect("parse the old CRD");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pp = PostParams {
        field_manager: Some("helm".into()),
        ..Default::default()
    };
    match crds.get_opt(CRD_NAME).await.expect("read the CRD") {
        Some(current) => {
            old.metadata.resource_version = current.metadata.resource_version;
            crds.replace(CRD_NAME, &pp, &old)
                .await
                .expect("replace the CRD with the old one");
        }
        None => {
            crds.create(&pp, &old).await.expect("create the old CRD");
        }
    }
}

pub async fn setup(prefix: &str) -> (&'static TestCluster, Client, String) {
    // session pods are containers on a kubelet node
    let cluster = devcluster::testing::cluster().await;
    let client = cluster.client();
    install_crd(&client).await;
    let ns = cluster.namespace(prefix).await;
    (cluster, client, ns)
}
