//! The node agent on a real control plane: node registration, pods as processes with their own
//! IPs, NodePort forwarding, restarts, unknown images and memory-backed emptyDirs.

mod node_common;

use std::net::SocketAddr;
use std::time::Duration;

use devcluster::testing::{process_cluster, wait_for_named, wait_for_value};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::Api;
use kube::api::PostParams;
use node_common::*;
use serde_json::json;

#[tokio::test]
async fn node_is_registered_ready_with_a_fresh_lease() {
    let c = process_cluster().await;
    let client = c.client();
    let node = Api::<Node>::all(client.clone()).get("devcluster-node").await.expect("node exists");
    let status = node.status.expect("status");
    let ready = status.conditions.unwrap_or_default().into_iter().find(|c| c.type_ == "Ready").expect("Ready condition");
    assert_eq!(ready.status, "True");
    let cap = status.capacity.expect("capacity");
    for k in ["cpu", "memory", "pods"] {
        assert!(cap.contains_key(k), "capacity has {k}");
    }
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client, "kube-node-lease");
    let lease = leases.get("devcluster-node").await.expect("lease");
    let renewed = lease.spec.and_then(|s| s.renew_time).expect("renewTime").0;
    let age = k8s_openapi::jiff::Timestamp::now().duration_since(renewed);
    assert!(age.as_secs() < 30, "lease renewed {age:?} ago");
}

#[tokio::test]
async fn deployment_is_reachable_at_pod_ip_and_through_node_port() {
    let c = process_cluster().await;
    let ns = c.namespace("node-deploy").await;
    let client = c.client();
    let deploy: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": test_pod_spec(8080)},
        }
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), &ns).create(&PostParams::default(), &deploy).await.unwrap();
    // A free node port: pick from the allocator's range by letting the API server choose.
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    }))
    .unwrap();
    let svc = Api::<Service>::namespaced(client.clone(), &ns).create(&PostParams::default(), &svc).await.unwrap();
    let node_port = svc.spec.unwrap().ports.unwrap()[0].node_port.expect("nodePort") as u16;

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    wait_for_named("deployment web available", Duration::from_secs(90), || async {
        deployments.get("web").await.ok().and_then(|d| d.status).and_then(|s| s.ready_replicas) == Some(1)
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = pods.list(&Default::default()).await.unwrap().items.into_iter().next().expect("a pod");
    let ip = pod_ip(&pod);
    assert!(ip.to_string().starts_with(c.host_ip().to_string().rsplit_once('.').unwrap().0), "pod IP {ip} in the pod CIDR");
    let status = pod.status.clone().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(status.host_ip.as_deref(), Some(c.host_ip().to_string().as_str()));
    let cs = &status.container_statuses.unwrap()[0];
    assert!(cs.ready && cs.started == Some(true) && cs.state.as_ref().unwrap().running.is_some(), "{cs:?}");

    let (code, body) = http_get(SocketAddr::new(ip, 8080), "/env").await.expect("pod answers at its IP");
    assert_eq!(code, 200);
    let env: std::collections::BTreeMap<String, String> = serde_json::from_str(&body).unwrap();
    assert_eq!(env.get("KUBERNETES_SERVICE_HOST"), Some(&c.host_ip().to_string()));
    assert_eq!(env.get("HOSTNAME"), pod.metadata.name.as_ref());

    let via_node_port = wait_for_value("node port forwarding", Duration::from_secs(30), || async {
        http_get(SocketAddr::from(([127, 0, 0, 1], node_port)), "/healthz").await.filter(|(code, _)| *code == 200)
    })
    .await;
    assert_eq!(via_node_port.1, "ok");
}

#[tokio::test]
async fn two_pods_listen_on_the_same_port_without_collision() {
    let c = process_cluster().await;
    let ns = c.namespace("node-ports").await;
    let pods: Api<Pod> = Api::namespaced(c.client(), &ns);
    for name in ["one", "two"] {
        let mut spec = test_pod_spec(8080);
        spec["containers"][0]["env"].as_array_mut().unwrap().push(json!({"name": "WHO", "value": name}));
        pods.create(&PostParams::default(), &pod(name, spec)).await.unwrap();
    }
    let one = wait_ready(&pods, "one").await;
    let two = wait_ready(&pods, "two").await;
    assert_ne!(pod_ip(&one), pod_ip(&two));
    for (p, who) in [(&one, "one"), (&two, "two")] {
        let (code, body) = http_get(SocketAddr::new(pod_ip(p), 8080), "/env").await.expect("answers");
        assert_eq!(code, 200);
        let env: std::collections::BTreeMap<String, String> = serde_json::from_str(&body).unwrap();
        assert_eq!(env.get("WHO").map(String::as_str), Some(who));
    }
}

#[tokio::test]
async fn exited_container_is_restarted_with_restart_count_and_last_state() {
    let c = process_cluster().await;
    let ns = c.namespace("node-restart").await;
    let pods: Api<Pod> = Api::namespaced(c.client(), &ns);
    pods.create(&PostParams::default(), &pod("crashy", test_pod_spec(8080))).await.unwrap();
    let p = wait_ready(&pods, "crashy").await;
    let (code, _) = http_get(SocketAddr::new(pod_ip(&p), 8080), "/exit?code=3").await.expect("answers");
    assert_eq!(code, 200);
    // First the container is seen terminated (or waiting in back-off) with exit code 3 ...
    let after = wait_for_value("restartCount 1", Duration::from_secs(60), || async {
        let p = pods.get("crashy").await.ok()?;
        let cs = p.status.as_ref()?.container_statuses.as_ref()?.first()?.clone();
        (cs.restart_count >= 1 && cs.state.as_ref()?.running.is_some()).then_some(cs)
    })
    .await;
    let last = after.last_state.and_then(|s| s.terminated).expect("lastState.terminated");
    assert_eq!(last.exit_code, 3);
    // ... and the restarted process serves again.
    let p = wait_ready(&pods, "crashy").await;
    assert_eq!(http_get(SocketAddr::new(pod_ip(&p), 8080), "/healthz").await.map(|r| r.0), Some(200));
}

#[tokio::test]
async fn unknown_image_waits_with_err_image_pull_naming_the_image() {
    let c = process_cluster().await;
    let ns = c.namespace("node-image").await;
    let pods: Api<Pod> = Api::namespaced(c.client(), &ns);
    let mut spec = test_pod_spec(8080);
    spec["containers"][0]["image"] = json!("registry.example/not-mapped:1.0");
    pods.create(&PostParams::default(), &pod("missing", spec)).await.unwrap();
    let waiting = wait_for_value("ErrImagePull", Duration::from_secs(30), || async {
        let p = pods.get("missing").await.ok()?;
        let w = p.status?.container_statuses?.first()?.state.clone()?.waiting?;
        (w.reason.as_deref() == Some("ErrImagePull")).then_some(w)
    })
    .await;
    let message = waiting.message.unwrap_or_default();
    assert!(message.contains("registry.example/not-mapped:1.0"), "message names the image: {message}");
    let p = pods.get("missing").await.unwrap();
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Pending"));
}

#[tokio::test]
async fn memory_empty_dir_is_a_tmpfs_and_deletion_stops_the_pod() {
    let c = process_cluster().await;
    let ns = c.namespace("node-tmpfs").await;
    let pods: Api<Pod> = Api::namespaced(c.client(), &ns);
    let mut spec = test_pod_spec(8080);
    spec["volumes"] = json!([{"name": "scratch", "emptyDir": {"medium": "Memory"}}]);
    spec["containers"][0]["volumeMounts"] = json!([{"name": "scratch", "mountPath": "/tmp/devcluster-test-scratch"}]);
    pods.create(&PostParams::default(), &pod("mem", spec)).await.unwrap();
    let p = wait_ready(&pods, "mem").await;
    let addr = SocketAddr::new(pod_ip(&p), 8080);
    let (code, mounts) = http_get(addr, "/read?path=/proc/self/mounts").await.expect("answers");
    assert_eq!(code, 200);
    let line = mounts.lines().find(|l| l.split_whitespace().nth(1) == Some("/tmp/devcluster-test-scratch")).expect("mounted");
    assert_eq!(line.split_whitespace().nth(2), Some("tmpfs"), "{line}");
    // Writable by the non-root user, invisible outside the pod's mount namespace.
    assert_eq!(http_get(addr, "/write?path=/tmp/devcluster-test-scratch/f&data=x").await.map(|r| r.0), Some(200));
    assert!(!std::path::Path::new("/tmp/devcluster-test-scratch/f").exists());

    pods.delete("mem", &Default::default()).await.unwrap();
    wait_for_named("pod mem gone", Duration::from_secs(30), || async { matches!(pods.get_opt("mem").await, Ok(None)) }).await;
    // The process stops with its pod. Polled, and judged by the pod's own HOSTNAME: its IP may
    // already belong to a pod of a test running in parallel.
    wait_for_named("mem's process stopped", Duration::from_secs(30), || async {
        match http_get(addr, "/env").await {
            None => true,
            Some((_, env)) => serde_json::from_str::<serde_json::Value>(&env).map_or(true, |e| e["HOSTNAME"] != "mem"),
        }
    })
    .await;
}

/// `kubectl logs` and `kubectl logs -f` through the API server and the node agent's kubelet port.
#[tokio::test]
async fn kubectl_logs_and_follow_read_the_container_output() {
    let c = process_cluster().await;
    let ns = c.namespace("node-logs").await;
    let pods: Api<Pod> = Api::namespaced(c.client(), &ns);
    // busybox maps to the host's own programs: a shell that prints a numbered line per second
    let spec = json!({
        "containers": [{
            "name": "ticker", "image": "busybox",
            "command": ["sh", "-c", "echo first; i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done"],
        }],
        "terminationGracePeriodSeconds": 1,
    });
    pods.create(&PostParams::default(), &pod("ticker", spec)).await.unwrap();
    wait_for_named("ticker to print tick 2", Duration::from_secs(60), || async {
        c.logs(&ns, "ticker", "ticker").contains("tick 2")
    })
    .await;

    let out = c.kubectl(&["logs", "-n", &ns, "ticker"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "kubectl logs failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with("first\ntick 1\n"), "{text}");

    let out = c.kubectl(&["logs", "-n", &ns, "ticker", "--tail=1"]).await;
    let last = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(last.lines().count(), 1, "{last:?}");
    assert!(last.starts_with("tick "), "{last:?}");

    // -f streams lines written after it started
    let mut follow = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .args(["logs", "-f", "-n", &ns, "ticker"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl logs -f");
    let seen_before: u32 = c.logs(&ns, "ticker", "ticker").lines().count() as u32;
    let wanted = format!("tick {}", seen_before + 2);
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(follow.stdout.take().unwrap()));
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line == wanted {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "kubectl logs -f never showed {wanted:?}");
    let _ = follow.kill().await;
    pods.delete("ticker", &Default::default()).await.unwrap();
}
