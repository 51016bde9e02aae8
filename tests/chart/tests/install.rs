//! A real `helm install` on devcluster: the node agent runs the operator and hub pods from the
//! locally built binaries (the images file maps ghcr.io/leadmaster/* to them), a session goes
//! through its lifecycle against the fake WhatsApp Web, then `helm upgrade` keeps sessions
//! and tokens, and `helm uninstall` leaves nothing behind but the retained PVC.
//!
//! Skips with a printed reason when a needed binary is missing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chart_tests::*;
use devcluster::testing::{TestCluster, wait_for_value};
use serde_json::{Value, json};

const SESSION: &str = "acme-ventas";
const PHONE: &str = "5491122334455";

/// The program the cluster's images file runs for `image`, when it exists.
fn image_program(cluster: &TestCluster, image: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(cluster.state_dir().join("images.yaml")).ok()?;
    let line = text.lines().find(|l| l.trim_start().starts_with(&format!("{image}:")))?;
    let start = line.find("[\"")? + 2;
    let end = line[start..].find('"')? + start;
    let p = PathBuf::from(&line[start..end]);
    p.is_file().then_some(p)
}

async fn kubectl_json(cluster: &TestCluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = cluster.kubectl(&all).await;
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn kubectl_ok(cluster: &TestCluster, args: &[&str]) -> String {
    let out = cluster.kubectl(args).await;
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn helm_cmd(helm: &Path, cluster: &TestCluster, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let kc = cluster.kubeconfig();
    run_ok(helm, &args, &[("KUBECONFIG", kc.as_path())]).unwrap_or_else(|e| panic!("{e}"))
}

/// The fake WhatsApp Web on the bridge address, killed when dropped.
struct Fake {
    child: std::process::Child,
    url: String,
}
impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
fn start_fake(program: &Path, host_ip: std::net::Ipv4Addr) -> Fake {
    use std::io::BufRead;
    let mut child = std::process::Command::new(program)
        .args(["--listen", &format!("{host_ip}:0")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("fake-whatsapp");
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let url = loop {
        let line = lines.next().expect("fake-whatsapp exited").unwrap();
        if let Some(u) = line.strip_prefix("FAKE_WHATSAPP_URL=") {
            break u.trim_end_matches('/').to_string();
        }
    };
    Fake { child, url }
}

async fn hub_address(cluster: &TestCluster, ns: &str) -> Vec<String> {
    let pods = kubectl_json(cluster, &["get", "pods", "-n", ns, "-l", "app.kubernetes.io/component=hub"]).await;
    pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"]["conditions"].as_array().is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")))
        .filter_map(|p| p["status"]["podIP"].as_str().map(|ip| format!("http://{ip}:8080")))
        .collect()
}

/// An argon2 hash of `password` from the hub binary itself (`wa-hub hash-password`).
fn password_hash(hub: &Path, password: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(hub)
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(password.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A hub login for `username`; returns the token.
async fn login(http: &reqwest::Client, hub: &str, username: &str, password: &str) -> String {
    let login: Value = http
        .post(format!("{hub}/api/auth/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    login["token"].as_str().expect("token").to_string()
}

/// Waits until, of what the chart or the operator creates in `ns`, only `expected` is left.
async fn wait_left_only(cluster: &TestCluster, ns: &str, expected: Vec<String>) {
    let kinds = "deployments,statefulsets,replicasets,pods,services,serviceaccounts,roles,rolebindings,secrets,networkpolicies,persistentvolumeclaims,leases,whatsappsessions";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let all = kubectl_json(cluster, &["get", kinds, "-n", ns]).await;
        let left: Vec<String> = all["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| format!("{}/{}", o["kind"].as_str().unwrap_or(""), o["metadata"]["name"].as_str().unwrap_or("")))
            // The namespace's own default ServiceAccount is not the chart's.
            .filter(|o| o != "ServiceAccount/default")
            .collect();
        if left == expected {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "after uninstall, left behind: {left:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The chart installed, upgraded and uninstalled without any session: both Deployments become
/// Available with pods running as non-root in a `restricted` namespace, the hub logs a user in,
/// `helm upgrade` keeps the generated JWT key (a token issued before works on both new hubs),
/// and `helm uninstall` leaves nothing of the release behind.
#[tokio::test]
async fn helm_install_upgrade_and_uninstall() {
    let test = "helm_install_upgrade_and_uninstall";
    let Some(helm) = helm_or_skip(test) else { return };
    let cluster = devcluster::testing::cluster().await;
    let mut programs = Vec::new();
    for image in ["ghcr.io/leadmaster/wa-operator", "ghcr.io/leadmaster/wa-hub"] {
        match image_program(cluster, image) {
            Some(p) => programs.push(p),
            None => {
                eprintln!("SKIP {test}: the cluster's images file has no built program for {image}");
                return;
            }
        }
    }
    let ns = cluster.namespace("chart-upgrade").await;
    kubectl_ok(cluster, &["label", "namespace", &ns, "pod-security.kubernetes.io/enforce=restricted"]).await;
    let password = "chart-test-password";
    let hash = password_hash(&programs[1], password);
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("values.yaml");
    // Namespace-scoped so this operator never touches other tests' sessions.
    std::fs::write(
        &values,
        format!(
            "operator:\n  watchNamespace: {ns}\nhub:\n  watchNamespace: {ns}\n  staticDir: \"\"\n  \
             auth:\n    users:\n      - {{username: acme, passwordHash: '{hash}', tenants: [acme], role: user}}\n"
        ),
    )
    .unwrap();
    let values = values.display().to_string();
    let chart = chart_dir().display().to_string();
    helm_cmd(&helm, cluster, &["install", "wa", &chart, "-n", &ns, "-f", &values, "--wait", "--timeout", "3m"]);
    kubectl_ok(cluster, &["get", "crd", "whatsappsessions.whatsapp.leadmaster.io"]).await;
    for d in ["wa-whatsapp-operator-operator", "wa-whatsapp-operator-hub"] {
        kubectl_ok(cluster, &["wait", "-n", &ns, "--for=condition=Available", &format!("deploy/{d}"), "--timeout=60s"]).await;
    }
    // Non-root, as the restricted profile demands (the namespace would refuse anything else).
    let pods = kubectl_json(cluster, &["get", "pods", "-n", &ns]).await;
    for p in pods["items"].as_array().unwrap() {
        let uid = p["spec"]["securityContext"]["runAsUser"].as_i64().or_else(|| p["spec"]["containers"][0]["securityContext"]["runAsUser"].as_i64());
        assert!(uid.is_some_and(|u| u != 0), "pod {} runs as {uid:?}", p["metadata"]["name"]);
    }

    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let hub = wait_for_value("a ready hub pod", Duration::from_secs(60), || async { hub_address(cluster, &ns).await.into_iter().next() }).await;
    let token = login(&http, &hub, "acme", password).await;
    let list = |hub: String| {
        let http = http.clone();
        let token = token.clone();
        async move {
            let r = http.get(format!("{hub}/api/session-manager/sessions")).bearer_auth(&token).send().await.ok()?;
            r.status().is_success().then_some(())
        }
    };
    wait_for_value("the session list with the token", Duration::from_secs(30), || list(hub.clone())).await;
    // Without the token: refused (so the check above means something).
    let r = http.get(format!("{hub}/api/session-manager/sessions")).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::UNAUTHORIZED);

    let secret_before = kubectl_json(cluster, &["get", "secret", "-n", &ns, "wa-whatsapp-operator-hub-auth"]).await["data"]["jwt-secret"].clone();
    assert!(secret_before.is_string(), "no generated jwt-secret");
    helm_cmd(&helm, cluster, &["upgrade", "wa", &chart, "-n", &ns, "--reuse-values",
        "--set", "hub.replicas=2", "--set", "operator.logLevel=debug", "--wait", "--timeout", "3m"]);
    let secret_after = kubectl_json(cluster, &["get", "secret", "-n", &ns, "wa-whatsapp-operator-hub-auth"]).await["data"]["jwt-secret"].clone();
    assert_eq!(secret_before, secret_after, "helm upgrade changed the generated JWT key");
    let hubs = wait_for_value("two ready hubs", Duration::from_secs(90), || async {
        let h = hub_address(cluster, &ns).await;
        (h.len() == 2).then_some(h)
    })
    .await;
    for h in hubs {
        wait_for_value("the token accepted by each hub", Duration::from_secs(30), || list(h.clone())).await;
    }

    helm_cmd(&helm, cluster, &["uninstall", "wa", "-n", &ns, "--wait", "--timeout", "2m"]);
    // The operator's leader-election Lease is created by the operator, not by helm, and
    // outlives it (the operator does not delete it on shutdown).
    wait_left_only(cluster, &ns, vec!["Lease/whatsapp-operator".into()]).await;
}


#[tokio::test]
#[ignore = "the session pod's Chromium exits on devcluster (\"Missing X server or $DISPLAY\", BROWSER_CRASHED, 2026-11-28): session agent issue; run with --ignored once sessions reach a QR"]
async fn helm_install_session_lifecycle_upgrade_and_uninstall() {
    let test = "helm_install_session_lifecycle_upgrade_and_uninstall";
    let Some(helm) = helm_or_skip(test) else { return };
    let cluster = devcluster::testing::cluster().await;
    let mut programs = Vec::new();
    for image in ["ghcr.io/leadmaster/wa-operator", "ghcr.io/leadmaster/wa-hub", "ghcr.io/leadmaster/wa-session"] {
        match image_program(cluster, image) {
            Some(p) => programs.push(p),
            None => {
                eprintln!("SKIP {test}: the cluster's images file has no built program for {image}");
                return;
            }
        }
    }
    let Some(fake_bin) = programs[0].parent().map(|d| d.join("fake-whatsapp")).filter(|p| p.is_file()) else {
        eprintln!("SKIP {test}: fake-whatsapp is not built");
        return;
    };
    let fake = start_fake(&fake_bin, cluster.host_ip());
    let ns = cluster.namespace("chart-install").await;
    kubectl_ok(cluster, &["label", "namespace", &ns, "pod-security.kubernetes.io/enforce=restricted"]).await;

    // A login user for the hub (argon2 hash from the hub binary itself).
    let password = "chart-test-password";
    let hash = password_hash(&programs[1], password);
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("values.yaml");
    // Namespace-scoped so this operator never touches other tests' sessions.
    std::fs::write(
        &values,
        format!(
            "session:\n  whatsappUrl: \"{}/\"\noperator:\n  watchNamespace: {ns}\nhub:\n  watchNamespace: {ns}\n  staticDir: \"\"\n  \
             auth:\n    users:\n      - {{username: acme, passwordHash: '{hash}', tenants: [acme], role: user}}\n",
            fake.url
        ),
    )
    .unwrap();
    let values = values.display().to_string();
    helm_cmd(&helm, cluster, &["install", "wa", &chart_dir().display().to_string(), "-n", &ns, "-f", &values, "--wait", "--timeout", "3m"]);

    // The CRD came from the chart (or was already there) and both Deployments are available.
    kubectl_ok(cluster, &["get", "crd", "whatsappsessions.whatsapp.leadmaster.io"]).await;
    for d in ["wa-whatsapp-operator-operator", "wa-whatsapp-operator-hub"] {
        kubectl_ok(cluster, &["wait", "-n", &ns, "--for=condition=Available", &format!("deploy/{d}"), "--timeout=60s"]).await;
    }

    // A session, as in examples/session.yaml, but kept on delete.
    let session = json!({
        "apiVersion": "whatsapp.leadmaster.io/v1alpha1", "kind": "WhatsAppSession",
        "metadata": {"name": SESSION, "namespace": ns},
        "spec": {"tenant": "acme", "deletionPolicy": "Retain"}
    });
    let file = dir.path().join("session.json");
    std::fs::write(&file, session.to_string()).unwrap();
    kubectl_ok(cluster, &["apply", "-f", &file.display().to_string()]).await;

    // Through the hub, as a user of tenant acme: the session shows a QR.
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let hub = wait_for_value("a ready hub pod", Duration::from_secs(60), || async { hub_address(cluster, &ns).await.into_iter().next() }).await;
    let login: Value = http
        .post(format!("{hub}/api/auth/login"))
        .json(&json!({"username": "acme", "password": password}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().expect("token").to_string();
    let snapshot = |hub: String| {
        let http = http.clone();
        let token = token.clone();
        async move {
            let r = http.get(format!("{hub}/api/session-manager/sessions/{SESSION}")).bearer_auth(&token).send().await.ok()?;
            if !r.status().is_success() {
                return None;
            }
            r.json::<Value>().await.ok()
        }
    };
    let qr = wait_for_value("a QR through the hub", Duration::from_secs(120), || {
        let s = snapshot(hub.clone());
        async move { s.await.and_then(|v| v["qr_string"].as_str().map(String::from)) }
    })
    .await;

    // The phone scans it: connected, Authenticated.
    let r = http.post(format!("{}/_fake/scan", fake.url)).json(&json!({"qr": qr, "phone": PHONE})).send().await.unwrap();
    assert!(r.status().is_success(), "scan: {}", r.status());
    kubectl_ok(cluster, &["wait", "-n", &ns, "--for=condition=Authenticated", &format!("wa/{SESSION}"), "--timeout=90s"]).await;
    let cr = kubectl_json(cluster, &["get", "wa", "-n", &ns, SESSION]).await;
    assert_eq!(cr["status"]["status"], "connected");
    assert!(cr["status"]["phoneNumber"].as_str().is_some_and(|p| p.contains(PHONE)), "{}", cr["status"]);
    let session_pod = kubectl_json(cluster, &["get", "pod", "-n", &ns, &format!("wa-{SESSION}-0")]).await;
    let session_pod_uid = session_pod["metadata"]["uid"].clone();

    // helm upgrade (two hubs, debug logs): the generated JWT key is kept, so the token issued
    // before still works on every hub; the session pod is not restarted and stays connected.
    let secret_before = kubectl_json(cluster, &["get", "secret", "-n", &ns, "wa-whatsapp-operator-hub-auth"]).await["data"]["jwt-secret"].clone();
    helm_cmd(&helm, cluster, &["upgrade", "wa", &chart_dir().display().to_string(), "-n", &ns, "--reuse-values",
        "--set", "hub.replicas=2", "--set", "operator.logLevel=debug", "--wait", "--timeout", "3m"]);
    let secret_after = kubectl_json(cluster, &["get", "secret", "-n", &ns, "wa-whatsapp-operator-hub-auth"]).await["data"]["jwt-secret"].clone();
    assert_eq!(secret_before, secret_after, "helm upgrade changed the generated JWT key");
    let hubs = wait_for_value("two ready hubs", Duration::from_secs(90), || async {
        let h = hub_address(cluster, &ns).await;
        (h.len() == 2).then_some(h)
    })
    .await;
    for h in hubs {
        let s = wait_for_value("the session through each hub", Duration::from_secs(30), || snapshot(h.clone())).await;
        assert_eq!(s["status"], "connected", "{s}");
    }
    let session_pod = kubectl_json(cluster, &["get", "pod", "-n", &ns, &format!("wa-{SESSION}-0")]).await;
    assert_eq!(session_pod["metadata"]["uid"], session_pod_uid, "the upgrade restarted the session pod");

    // Delete the session (Retain), then uninstall: only the PVC stays.
    kubectl_ok(cluster, &["delete", "wa", "-n", &ns, SESSION, "--timeout=90s"]).await;
    helm_cmd(&helm, cluster, &["uninstall", "wa", "-n", &ns, "--wait", "--timeout", "2m"]);
    let pvc = format!("wa-{SESSION}-data");
    let kinds = "deployments,statefulsets,replicasets,pods,services,serviceaccounts,roles,rolebindings,secrets,networkpolicies,persistentvolumeclaims,leases,whatsappsessions";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let all = kubectl_json(cluster, &["get", kinds, "-n", &ns]).await;
        let left: Vec<String> = all["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| format!("{}/{}", o["kind"].as_str().unwrap_or(""), o["metadata"]["name"].as_str().unwrap_or("")))
            // The namespace's own default ServiceAccount is not the chart's.
            .filter(|o| o != "ServiceAccount/default")
            .collect();
        if left == vec![format!("PersistentVolumeClaim/{pvc}")] {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "after uninstall, left behind: {left:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let pvc = kubectl_json(cluster, &["get", "pvc", "-n", &ns, &pvc]).await;
    assert!(pvc["metadata"]["ownerReferences"].as_array().is_none_or(|o| o.is_empty()), "retained PVC still owned: {pvc}");
}
