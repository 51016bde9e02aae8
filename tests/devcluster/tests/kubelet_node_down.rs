//! `devcluster down` of a kubelet node leaves the machine as it found it: no process, network
//! namespace, link, route, cgroup or mount of the node, the global sysctls the kubelet sets as
//! they were. Its own cluster (pod CIDR 10.244.252.0/24, a state dir of its own), with a pod
//! running when it goes down.

use std::path::Path;
use std::time::Duration;

use devcluster::lifecycle;
use devcluster_testing::{claim, own_state_dir, wait_for_value};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::PostParams;

/// What the node may change on the machine, read from the kernel.
#[derive(Debug, PartialEq, Eq)]
struct Machine {
    netns: Vec<String>,
    links: Vec<String>,
    routes: Vec<String>,
    cgroups: Vec<String>,
    mounts: Vec<String>,
    sysctls: Vec<String>,
    processes: Vec<String>,
}

fn lines(program: &str, args: &[&str], keep: &dyn Fn(&str) -> bool) -> Vec<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .expect(program);
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| keep(l))
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

fn machine(prefix: &str, state_dir: &Path) -> Machine {
    let ours = |l: &str| l.contains(prefix);
    let mut cgroups = Vec::new();
    for entry in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry.path().join(prefix).exists() {
            cgroups.push(entry.path().join(prefix).display().to_string());
        }
    }
    let state = state_dir.display().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let sysctls = [
        "vm/overcommit_memory",
        "kernel/panic",
        "kernel/panic_on_oops",
    ]
    .iter()
    .map(|k| {
        format!(
            "{k}={}",
            std::fs::read_to_string(Path::new("/proc/sys").join(k))
                .unwrap_or_default()
                .trim()
        )
    })
    .collect();
    // every live process whose command line names the state dir, or runs from the node's
    // cgroup (a killed process waiting for its parent to reap it holds nothing but its pid)
    let mut processes = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.parse::<u32>().is_err() {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if stat
            .rsplit_once(") ")
            .is_none_or(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X'))
        {
            continue;
        }
        let cmd = std::fs::read(entry.path().join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        let cg = std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
        if cmd.contains(&state) || cg.contains(prefix) {
            processes.push(cmd);
        }
    }
    processes.sort();
    Machine {
        netns: lines("ip", &["netns", "list"], &ours),
        links: lines("ip", &["-o", "link"], &ours),
        routes: lines("ip", &["route"], &|l| l.contains("10.244.252.")),
        cgroups,
        mounts: mounts
            .lines()
            .filter(|l| l.contains(&state))
            .map(str::to_string)
            .collect(),
        sysctls,
        processes,
    }
}

#[tokio::test]
async fn down_leaves_the_machine_as_found() {
    // no env prefix a run would set: the checks below name this dir and CIDR
    let claim = claim(
        "DEVCLUSTER_KUBELET_DOWN_TEST",
        own_state_dir("kubelet-down-test"),
        "10.244.252.0/24",
    )
    .await;
    let state_dir = claim.state_dir().to_path_buf();
    // whatever a crashed run left, down first (the claim keeps other runs away), so `before`
    // is the machine as found
    let _ = lifecycle::down(&state_dir).await;
    let prefix = devcluster::node::sandbox::cluster_prefix(&state_dir);
    let before = machine(&prefix, &state_dir);

    let cluster = claim.up().await;
    let client = cluster.client();
    assert!(
        Api::<Node>::all(client.clone())
            .get("devcluster-node")
            .await
            .is_ok()
    );
    let during = machine(&prefix, &state_dir);
    assert_eq!(
        during.netns.len(),
        1,
        "the node's network namespace: {during:?}"
    );
    assert!(
        !during.cgroups.is_empty() && !during.processes.is_empty(),
        "{during:?}"
    );

    // a pod runs when the cluster goes down (its sandbox: the pause image)
    let image = cluster.test_pod_image().await;
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "sitter"},
        "spec": {"containers": [{"name": "main", "image": image,
                 "resources": {"requests": {"cpu": "10m"}}}]}
    }))
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("pod");
    wait_for_value("pod sitter Running", Duration::from_secs(120), || async {
        let p = pods.get("sitter").await.ok()?;
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;

    assert!(
        lifecycle::down(&state_dir).await.expect("down"),
        "the cluster was running"
    );
    let after = machine(&prefix, &state_dir);
    assert_eq!(after, before);
}
