//! The node (`devcluster up`): the official kubelet with containerd,
//! kube-proxy and CoreDNS, pods as containers pulled from the cluster's registry, limits and
//! security contexts enforced by the kernel, `kubectl logs/exec` through the kubelet API.
//! One cluster for the file (`testing::cluster`), a namespace per test.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use devcluster_testing::{TestCluster, cluster, http_get, wait_for_value};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use tokio::sync::OnceCell;

const WAIT: Duration = Duration::from_secs(120);

static IMAGE: OnceCell<String> = OnceCell::const_new();

async fn image(c: &TestCluster) -> &'static str {
    IMAGE.get_or_init(|| c.test_pod_image()).await
}

/// The restricted security context the chart gives session pods.
fn restricted() -> serde_json::Value {
    json!({
        "runAsNonRoot": true, "runAsUser": 1000, "runAsGroup": 1000,
        "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}
    })
}

fn test_pod(name: &str, image: &str, extra: serde_json::Value) -> Pod {
    let mut container = json!({
        "name": "main", "image": image, "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}, "periodSeconds": 1},
        "securityContext": restricted(),
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
    });
    if let (Some(c), Some(e)) = (container.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [container], "terminationGracePeriodSeconds": 1}
    }))
    .expect("valid pod")
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Creates the pod and waits until it is Ready; returns its address.
async fn run_pod(pods: &Api<Pod>, pod: Pod) -> SocketAddr {
    let name = pod.metadata.name.clone().unwrap_or_default();
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    let p = wait_for_value(&format!("pod {name} Ready"), WAIT, || async {
        pods.get_opt(&name).await.ok().flatten().filter(is_ready)
    })
    .await;
    let ip: IpAddr = p
        .status
        .and_then(|s| s.pod_ip)
        .expect("pod IP")
        .parse()
        .expect("IP");
    SocketAddr::new(ip, 8080)
}

#[tokio::test]
async fn node_is_the_pinned_kubelet_on_containerd_with_its_own_identity() {
    let c = cluster().await;
    let node = Api::<Node>::all(c.client())
        .get("devcluster-node")
        .await
        .expect("node");
    let status = node.status.expect("status");
    let info = status.node_info.expect("nodeInfo");
    let v = |k| devcluster::binaries::version(k).unwrap();
    assert_eq!(info.kubelet_version, v("K8S_VERSION"));
    assert_eq!(
        info.container_runtime_version,
        format!(
            "containerd://{}",
            v("CONTAINERD_VERSION").trim_start_matches('v')
        )
    );
    let internal = status
        .addresses
        .unwrap_or_default()
        .into_iter()
        .find(|a| a.type_ == "InternalIP")
        .expect("InternalIP");
    assert_eq!(Some(internal.address.parse().unwrap()), c.node_ip());
    assert!(
        status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );
    // the kubelet's client certificate is system:node:devcluster-node: the Node authorizer
    // lets it read its own Node only, so a Node it did not register would be refused
    let out = c
        .kubectl(&[
            "auth",
            "can-i",
            "get",
            "nodes/devcluster-node",
            "--as=system:node:devcluster-node",
            "--as-group=system:nodes",
        ])
        .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "yes");
}

#[tokio::test]
async fn a_pod_runs_its_image_under_the_security_context_the_kernel_enforces() {
    let c = cluster().await;
    let ns = c.namespace("secctx").await;
    let pods: Api<Pod> = Api::namespaced(c.client(), &ns);
    let addr = run_pod(&pods, test_pod("restricted", image(c).await, json!({}))).await;

    let (code, status) = http_get(addr, "/read?path=/proc/self/status")
        .await
        .expect("pod answers");
    assert_eq!(code, 200);
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(field("Uid"), ["1000"; 4], "{status}");
    assert_eq!(field("Gid"), ["1000"; 4], "{status}");
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(field(cap), ["0000000000000000"], "{cap} in {status}");
    }
    assert_eq!(field("NoNewPrivs"), ["1"]);
    assert_eq!(
        field("Seccomp"),
        ["2"],
        "RuntimeDefault is a seccomp filter"
    );
    let (code, body) = http_get(addr, "/write?path=/probe&data=x")
        .await
        .expect("pod answers");
    assert_eq!(code, 500);
    assert!(body.contains("Read-only file system"), "{body}");
    // the image's user would be 65532; the pod's runAsUser wins
    let (_, env) = http_get(addr, "/env").await.expect("env");
    assert!(env.contains("KUBERNETES_SERVICE_HOST"), "{env}");

    // kubectl exec and logs reach the container through the API server and the kubelet
    let out = c
        .kubectl(&[
            "exec",
            "-n",
            &ns,
            "restricted",
            "--",
            "/usr/local/bin/devcluster-testpod",
            "--version",
        ])
        .await;
    assert!(
        out.status.success(),
        "exec: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // the binary of the image answers (clap names it after its package)
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("devcluster "),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = c.kubectl(&["logs", "-n", &ns, "restricted"]).await;
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("devcluster-testpod listening on 0.0.0.0:8080")
    );
}

#[tokio::test]
async fn pods_reach_services_by_cluster_ip_and_dns_names() {
    let c = cluster().await;
    let ns = c.namespace("svc").await;
    let client = c.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let addr = run_pod(&pods, test_pod("web", image(c).await, json!({}))).await;
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
    }))
    .unwrap();
    let svc = Api::<Service>::namespaced(client, &ns)
        .create(&PostParams::default(), &svc)
        .await
        .expect("service");
    let spec = svc.spec.expect("spec");
    let cluster_ip = spec.cluster_ip.expect("ClusterIP");

    // CoreDNS answers the Service's name with its ClusterIP, and the API server's
    let fqdn = format!("web.{ns}.svc.cluster.local");
    let (code, body) = http_get(addr, &format!("/resolve?name={fqdn}"))
        .await
        .expect("pod answers");
    assert_eq!((code, body.trim()), (200, cluster_ip.as_str()));
    let (_, body) = http_get(addr, "/resolve?name=kubernetes.default")
        .await
        .expect("pod answers");
    assert_eq!(
        body.trim(),
        "10.0.0.1",
        "search domains of the pod's resolv.conf"
    );
    // the in-cluster client goes through the `kubernetes` Service (kube-proxy's DNAT)
    let (code, body) = http_get(addr, "/kube?path=/api")
        .await
        .expect("pod answers");
    assert_eq!(code, 200, "{body}");
    // from the host: the NodePort on the node's address
    let node_port = spec.ports.unwrap()[0].node_port.expect("nodePort") as u16;
    let node = SocketAddr::new(IpAddr::V4(c.node_ip().expect("node IP")), node_port);
    let answer = wait_for_value("the NodePort to answer", WAIT, || async {
        http_get(node, "/healthz").await
    })
    .await;
    assert_eq!(answer, (200, "ok".to_string()));
}

#[tokio::test]
async fn exceeding_the_memory_limit_is_an_oom_kill_and_the_kubelet_restarts_the_container() {
    let c = cluster().await;
    let ns = c.namespace("oom").await;
    let pods: Api<Pod> = Api::namespaced(c.client(), &ns);
    let limits = json!({"resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}}});
    let addr = run_pod(&pods, test_pod("hog", image(c).await, limits)).await;
    // the answer may never come: the kernel kills the process while it allocates
    let _ = http_get(addr, "/alloc?mb=200").await;
    let terminated = wait_for_value("an OOM kill and a restart", WAIT, || async {
        let p = pods.get("hog").await.ok()?;
        let cs = p.status?.container_statuses?.into_iter().next()?;
        let last = cs.last_state?.terminated?;
        (cs.restart_count >= 1).then_some(last)
    })
    .await;
    assert_eq!(terminated.reason.as_deref(), Some("OOMKilled"));
    assert_eq!(terminated.exit_code, 137);
    // and the restarted container serves again
    wait_for_value("the restarted container to answer", WAIT, || async {
        http_get(addr, "/healthz").await.filter(|(c, _)| *c == 200)
    })
    .await;
}

#[tokio::test]
async fn an_image_missing_from_the_registry_is_errimagepull() {
    let c = cluster().await;
    let ns = c.namespace("noimage").await;
    let pods: Api<Pod> = Api::namespaced(c.client(), &ns);
    let missing = format!(
        "{}/devcluster/does-not-exist:1",
        c.registry().expect("registry")
    );
    pods.create(
        &PostParams::default(),
        &test_pod("ghost", &missing, json!({})),
    )
    .await
    .expect("create pod");
    let (reason, message) = wait_for_value("ErrImagePull or ImagePullBackOff", WAIT, || async {
        let p = pods.get("ghost").await.ok()?;
        let waiting = p
            .status?
            .container_statuses?
            .into_iter()
            .next()?
            .state?
            .waiting?;
        let reason = waiting.reason?;
        ["ErrImagePull", "ImagePullBackOff"]
            .contains(&reason.as_str())
            .then(|| (reason, waiting.message.unwrap_or_default()))
    })
    .await;
    assert!(
        message.contains("does-not-exist") || reason == "ImagePullBackOff",
        "{reason}: {message}"
    );
}
