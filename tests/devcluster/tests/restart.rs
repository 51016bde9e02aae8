//! `devcluster restart` through the real parts, on a cluster of its own (restarting the shared
//! cluster's etcd would disturb every other test): the API server (SIGTERM) and etcd (SIGKILL,
//! a crash) come back with the data kept and a client's watch resumes; the kubelet (SIGKILL)
//! and containerd (SIGTERM) come back with the node Ready, a running pod keeps its container,
//! and a new pod starts afterwards. Then an exit nobody asked for still stops the cluster.
//!
//! State dir `DEVCLUSTER_RESTART_TEST_STATE` (default `<cache>/state/restart-test`), pod CIDR
//! `DEVCLUSTER_RESTART_TEST_POD_CIDR` (default 10.244.250.0/24).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use devcluster::control;
use devcluster::state::StateLayout;
use devcluster_testing::{TestCluster, own_cluster, own_state_dir, wait_for_named, wait_for_value};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};

const WAIT: Duration = Duration::from_secs(120);

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "data": {"k": "v"}}))
        .unwrap()
}

fn pod(name: &str, image: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "main", "image": image,
                                 "resources": {"requests": {"cpu": "10m"}}}]}
    }))
    .unwrap()
}

/// (container id, restart count) of a running pod's only container.
async fn running_container(pods: &Api<Pod>, name: &str) -> Option<(String, i32)> {
    let p = pods.get(name).await.ok()?;
    let status = p.status?;
    if status.phase.as_deref() != Some("Running") {
        return None;
    }
    let c = status.container_statuses?.into_iter().next()?;
    c.state?.running?;
    Some((c.container_id?, c.restart_count))
}

async fn restart(cluster: &TestCluster, component: &str, kill: bool) {
    eprintln!("{}", cluster.restart(component, kill).await.message);
}

#[tokio::test]
async fn restarted_parts_come_back_and_an_unrequested_exit_still_stops_the_cluster() {
    let cluster = own_cluster(
        "DEVCLUSTER_RESTART_TEST",
        own_state_dir("restart-test"),
        "10.244.250.0/24",
    )
    .await;
    let state_dir = cluster.state_dir();
    let client = cluster.client();

    // a pod running before the node's parts restart
    let image = cluster.test_pod_image().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("sitter", &image))
        .await
        .expect("pod");
    let (container, restarts) = wait_for_value("pod sitter Running", WAIT, || {
        running_container(&pods, "sitter")
    })
    .await;

    // a client's watch on ConfigMaps, kept through the control plane's restarts
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let watch = {
        let seen = seen.clone();
        let stream = watcher(cms.clone(), watcher::Config::default())
            .default_backoff()
            .applied_objects();
        let mut stream = stream.boxed();
        tokio::spawn(async move {
            while let Some(item) = stream.next().await {
                if let Ok(cm) = item {
                    seen.lock().unwrap().push(cm.name_any());
                }
            }
        })
    };
    let before = cms
        .create(&PostParams::default(), &config_map("before"))
        .await
        .unwrap();
    let watched = |name: &'static str| {
        let seen = seen.clone();
        move || {
            let seen = seen.clone();
            async move { seen.lock().unwrap().iter().any(|n| n == name) }
        }
    };
    wait_for_named("the watch to see ConfigMap before", WAIT, watched("before")).await;

    restart(&cluster, "kube-apiserver", false).await;
    cms.create(&PostParams::default(), &config_map("after-apiserver"))
        .await
        .expect("a write after the API server's restart");
    wait_for_named(
        "the watch to resume and see after-apiserver",
        WAIT,
        watched("after-apiserver"),
    )
    .await;

    restart(&cluster, "etcd", true).await;
    let kept = cms
        .get("before")
        .await
        .expect("data kept across etcd's restart");
    assert_eq!(kept.uid(), before.uid());
    cms.create(&PostParams::default(), &config_map("after-etcd"))
        .await
        .expect("a write after etcd's restart");
    wait_for_named(
        "the watch to resume and see after-etcd",
        WAIT,
        watched("after-etcd"),
    )
    .await;
    watch.abort();

    // the node's parts: the pod keeps its container; the node works afterwards
    restart(&cluster, "kubelet", true).await;
    assert!(devcluster::daemon::node_is_ready(&client).await);
    restart(&cluster, "containerd", false).await;
    assert!(devcluster::daemon::node_is_ready(&client).await);
    assert_eq!(
        running_container(&pods, "sitter").await,
        Some((container, restarts)),
        "the pod kept its container through the kubelet's and containerd's restarts"
    );
    pods.create(&PostParams::default(), &pod("newcomer", &image))
        .await
        .expect("pod");
    wait_for_value("a pod created after the restarts Running", WAIT, || {
        running_container(&pods, "newcomer")
    })
    .await;

    // an exit nobody asked for still stops everything
    let layout = StateLayout::new(&state_dir);
    // the daemon's log is appended to across runs: only what this run writes from here counts
    let log_from = std::fs::metadata(layout.log("daemon")).unwrap().len() as usize;
    let pid = devcluster::process::read_pidfile(&layout.pidfile("kube-scheduler"))
        .expect("kube-scheduler's pidfile");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for_named("the supervisor to stop everything", WAIT, || async {
        devcluster::process::read_pidfile(&layout.daemon_pidfile()).is_none()
    })
    .await;
    let log = std::fs::read(layout.log("daemon")).unwrap();
    let log = String::from_utf8_lossy(&log[log_from..]);
    assert!(
        log.lines()
            .any(|l| l.contains("cluster part died")
                && l.contains(r#""component":"kube-scheduler""#)),
        "the daemon's log names the part that died"
    );
    assert!(!layout.cluster_env().exists() && !layout.control_socket().exists());
    let refused = control::restart(&state_dir, "kubelet", false).await;
    assert!(
        matches!(refused, Err(control::ControlError::NotRunning { .. })),
        "{refused:?}"
    );
    cluster.down().await;
}
