//! The session container as a real kubelet runs it (devcluster `--node kubelet`: containerd,
//! runc, cgroups), with the chart's operator and the images built from `images/*.Dockerfile`:
//!
//! - the security context is read from the running container itself (`/proc/<pid>/status` of
//!   tini, the agent and each Chromium process; a write to `/`) and compared with what the
//!   operator put in the pod spec, which must be the restrictive one;
//! - exceeding `spec.resources.limits.memory` is an OOM kill the kubelet answers with a
//!   container restart (`OOMKilled`, exit 137), after which the session is connected again
//!   without a QR (docs/session-agent.md, "Memory limit");
//! - `kubectl logs` (through the kubelet) has the agent's log lines and `kubectl port-forward`
//!   to the pod's `metrics` port answers `/metrics`.
//!
//! Each test installs its own operator (the hub is not needed) in a fresh namespace and runs one
//! session against its own fake WhatsApp Web on the host. Skips with a printed reason when a
//! needed binary is missing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chart_tests::*;
use devcluster_testing::proxy::Tinyproxy;
use devcluster_testing::{TestCluster, wait_for_value};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

const PHONE: &str = "5491133445566";
/// The tag these tests install (their own: the session image carries the agent under test).
const TAG: &str = "0.1.0-test-container";

static IMAGES: OnceCell<PushedImages> = OnceCell::const_new();

async fn images(cluster: &TestCluster) -> &'static PushedImages {
    let registry = cluster
        .registry()
        .expect("a kubelet node's registry")
        .to_string();
    IMAGES
        .get_or_init(|| async move {
            tokio::task::spawn_blocking(move || {
                build_and_push_images(&registry, TAG).unwrap_or_else(|e| panic!("{e}"))
            })
            .await
            .expect("image build task")
        })
        .await
}

/// The chart with the operator only, in a fresh namespace labelled Pod Security `restricted`,
/// watching that namespace, sessions pointed at the fake.
struct Operator<'a> {
    cluster: &'a TestCluster,
    helm: PathBuf,
    name: &'static str,
    ns: String,
    _dir: tempfile::TempDir,
}

impl<'a> Operator<'a> {
    async fn install(
        cluster: &'a TestCluster,
        helm: &Path,
        name: &'static str,
        fake: &Fake,
    ) -> Self {
        Self::install_with(cluster, helm, name, fake, json!({})).await
    }

    /// As [`Operator::install`], with `values` merged over the test's.
    async fn install_with(
        cluster: &'a TestCluster,
        helm: &Path,
        name: &'static str,
        fake: &Fake,
        values: Value,
    ) -> Self {
        let ns = cluster.namespace(name).await;
        // restricted pods; sessions of tenant acme (the chart's tenant-claims policy)
        kubectl_ok(
            cluster,
            &[
                "label",
                "namespace",
                &ns,
                "pod-security.kubernetes.io/enforce=restricted",
                "tenant.whatsapp.leadmaster.io/acme=",
            ],
        )
        .await;
        let mut v = image_values(images(cluster).await);
        merge(
            &mut v,
            &json!({
                "operator": {"watchNamespace": ns, "leaderElection": {"enabled": false}},
                "hub": {"enabled": false},
                "session": {"whatsappUrl": format!("{}/", fake.url)},
                "networkPolicy": {"extraEgress": fake_egress(&fake.url)},
            }),
        );
        merge(&mut v, &values);
        let dir = tempfile::tempdir().unwrap();
        let values = dir.path().join("values.yaml");
        std::fs::write(&values, v.to_string()).unwrap();
        let op = Operator {
            cluster,
            helm: helm.to_path_buf(),
            name,
            ns,
            _dir: dir,
        };
        let chart = chart_dir().display().to_string();
        helm_cmd(
            &op.helm,
            cluster,
            &[
                "install",
                name,
                &chart,
                "-n",
                &op.ns,
                "-f",
                &values.display().to_string(),
                "--wait",
                "--timeout",
                "3m",
            ],
        );
        op
    }

    /// Creates session `name` with `spec` (over `tenant: acme`, `deletionPolicy: Delete`) and
    /// waits until its pod is Ready (Chromium runs, the page is loaded); returns the pod.
    async fn session(&self, name: &str, spec: Value) -> Value {
        let mut full = json!({"tenant": "acme", "deletionPolicy": "Delete"});
        merge(&mut full, &spec);
        let cr = json!({
            "apiVersion": "whatsapp.leadmaster.io/v1alpha1", "kind": "WhatsAppSession",
            "metadata": {"name": name, "namespace": self.ns}, "spec": full,
        });
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), cr.to_string()).unwrap();
        kubectl_ok(
            self.cluster,
            &["apply", "-f", &file.path().display().to_string()],
        )
        .await;
        let pod = format!("wa-{name}-0");
        wait_for_value(
            &format!("pod {pod} Ready"),
            Duration::from_secs(180),
            || async {
                let out = self
                    .cluster
                    .kubectl(&["get", "pod", "-n", &self.ns, &pod, "-o", "json"])
                    .await;
                let p: Value = serde_json::from_slice(&out.stdout).ok()?;
                p["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    .then_some(p)
            },
        )
        .await
    }

    /// Deletes the session, the release and the namespace (frees the node for other tests).
    async fn remove(self, session: &str) {
        let _ = self
            .cluster
            .kubectl(&["delete", "wa", "-n", &self.ns, session, "--timeout=90s"])
            .await;
        helm_cmd(
            &self.helm,
            self.cluster,
            &[
                "uninstall",
                self.name,
                "-n",
                &self.ns,
                "--wait",
                "--timeout",
                "2m",
            ],
        );
        let _ = self
            .cluster
            .kubectl(&["delete", "namespace", &self.ns, "--wait=false"])
            .await;
    }
}

/// The session pod's one container (as the operator named it).
fn container(pod: &Value) -> &Value {
    let cs = pod["spec"]["containers"].as_array().expect("containers");
    assert_eq!(cs.len(), 1, "a session pod has one container: {cs:?}");
    &cs[0]
}

/// `kubectl exec` in the session container of `pod`.
async fn exec(cluster: &TestCluster, pod: &Value, cmd: &[&str]) -> std::process::Output {
    let ns = pod["metadata"]["namespace"].as_str().unwrap();
    let name = pod["metadata"]["name"].as_str().unwrap();
    let c = container(pod)["name"].as_str().unwrap();
    let mut args = vec!["exec", "-n", ns, name, "-c", c, "--"];
    args.extend_from_slice(cmd);
    cluster.kubectl(&args).await
}

/// A process of the container as its `/proc/<pid>/status` shows it.
#[derive(Debug)]
struct Proc {
    pid: u32,
    comm: String,
    status: String,
}

impl Proc {
    fn field(&self, name: &str) -> Vec<&str> {
        self.status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.split_whitespace().collect())
            .unwrap_or_default()
    }
    /// Chromium's `--type=` (renderer, utility, …); empty for the browser process and the rest.
    fn cmdline_type(&self) -> &str {
        self.status
            .lines()
            .find_map(|l| l.strip_prefix("#type="))
            .unwrap_or("")
    }
}

/// Every process in the container: `comm`, `status` and (for Chromium) its `--type=`, read with
/// one `kubectl exec` of the image's `sh` (the exec'd shell itself is left out). Chromium
/// rewrites its command line as one space-separated string (its process title), hence the
/// split on NUL and space.
async fn processes(cluster: &TestCluster, pod: &Value) -> Vec<Proc> {
    let script = r#"for p in /proc/[0-9]*; do
  pid=${p#/proc/}; [ "$pid" = "$$" ] && continue
  s=$(cat $p/status 2>/dev/null) || continue
  t=$(tr '\0 ' '\n\n' < $p/cmdline 2>/dev/null | sed -n 's/^--type=//p' | head -n1)
  printf '=== %s\n%s\n#type=%s\n' "$pid" "$s" "$t"
done"#;
    let out = exec(cluster, pod, &["sh", "-c", script]).await;
    assert!(
        out.status.success(),
        "exec: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split("=== ")
        .filter_map(|block| {
            let (pid, status) = block.split_once('\n')?;
            let comm = status
                .lines()
                .find_map(|l| l.strip_prefix("Name:"))?
                .trim()
                .to_string();
            Some(Proc {
                pid: pid.trim().parse().ok()?,
                comm,
                status: status.to_string(),
            })
        })
        // the children of the exec'd shell (cat, tr, sed, head) are not the container's
        .filter(|p| !["cat", "tr", "sed", "head", "sh"].contains(&p.comm.as_str()))
        .collect()
}

/// Capability bits of the names in a pod spec's `capabilities.add` (linux/capability.h).
fn capability_mask(names: &[Value]) -> u64 {
    const CAPS: [&str; 41] = [
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    names
        .iter()
        .filter_map(|n| n.as_str())
        .map(|n| {
            let n = n.trim_start_matches("CAP_");
            let bit = CAPS
                .iter()
                .position(|c| *c == n)
                .unwrap_or_else(|| panic!("unknown capability {n}"));
            1u64 << bit
        })
        .fold(0, |a, b| a | b)
}

/// 1. The security context, read from the running session container: tini (PID 1), the agent
/// and every Chromium process run with the uid/gid, capabilities, no_new_privs and seccomp mode
/// of the pod spec the operator created, and the root file system refuses writes. The spec's
/// values are also checked to be the restrictive ones (non-root, no capabilities, no privilege
/// escalation, RuntimeDefault seccomp, read-only root).
#[tokio::test]
async fn security_context_read_from_the_running_session_container() {
    let test = "security_context_read_from_the_running_session_container";
    let Some(helm) = helm_or_skip(test) else {
        return;
    };
    let cluster = devcluster_testing::cluster().await;
    let Some(programs) = programs_or_skip(test, &["fake-whatsapp"]) else {
        return;
    };
    let fake = start_fake(&programs[0], cluster.host_ip());
    let op = Operator::install(cluster, &helm, "wa-secctx", &fake).await;
    let small = json!({"resources": {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}});
    let pod = op.session("secctx", small).await;

    // What the operator asked for (pod and container level; the container's wins).
    let psc = &pod["spec"]["securityContext"];
    let c = container(&pod);
    let csc = &c["securityContext"];
    let pick = |k: &str| {
        if csc[k].is_null() {
            psc[k].clone()
        } else {
            csc[k].clone()
        }
    };
    let uid = pick("runAsUser").as_u64().expect("runAsUser set");
    let gid = pick("runAsGroup").as_u64().expect("runAsGroup set");
    let fs_group = psc["fsGroup"].as_u64();
    let added = capability_mask(
        csc["capabilities"]["add"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default(),
    );
    let drops_all = csc["capabilities"]["drop"]
        .as_array()
        .is_some_and(|d| d.iter().any(|c| c == "ALL"));
    let no_escalation = csc["allowPrivilegeEscalation"] == false;
    let seccomp = pick("seccompProfile")["type"]
        .as_str()
        .unwrap_or("Unconfined")
        .to_string();
    let read_only_root = csc["readOnlyRootFilesystem"] == true;
    // ... and that it is the restrictive profile
    assert_ne!(uid, 0, "runAsUser");
    assert_ne!(gid, 0, "runAsGroup");
    assert_eq!(pick("runAsNonRoot"), true);
    assert!(
        drops_all && added == 0,
        "capabilities: {}",
        csc["capabilities"]
    );
    assert!(
        no_escalation,
        "allowPrivilegeEscalation: {}",
        csc["allowPrivilegeEscalation"]
    );
    assert_eq!(seccomp, "RuntimeDefault");
    assert!(
        read_only_root,
        "readOnlyRootFilesystem: {}",
        csc["readOnlyRootFilesystem"]
    );

    // What the kernel enforces, per process.
    let procs = processes(cluster, &pod).await;
    let names: Vec<String> = procs
        .iter()
        .map(|p| format!("{} {} ({})", p.pid, p.comm, p.cmdline_type()))
        .collect();
    let init = procs.iter().find(|p| p.pid == 1).expect("PID 1");
    assert_eq!(init.comm, "tini", "PID 1 of {names:?}");
    assert!(
        procs.iter().any(|p| p.comm == "wa-session"),
        "no agent in {names:?}"
    );
    let chromium: Vec<&Proc> = procs.iter().filter(|p| p.comm == "chromium").collect();
    assert!(
        chromium.iter().any(|p| p.cmdline_type().is_empty()),
        "no browser process in {names:?}"
    );
    assert!(
        chromium.iter().any(|p| p.cmdline_type() == "renderer"),
        "no renderer in {names:?}"
    );
    // with ALL dropped and nothing added, every set is empty (what the spec adds would be in the
    // bounding set only, a non-root process gaining none of it on exec)
    let expected_caps = format!("{added:016x}");
    let uid_s = uid.to_string();
    let gid_s = gid.to_string();
    for p in procs
        .iter()
        .filter(|p| ["tini", "wa-session", "chromium"].contains(&p.comm.as_str()))
    {
        let what = format!("{} {} ({})", p.pid, p.comm, p.cmdline_type());
        assert_eq!(
            p.field("Uid"),
            [uid_s.as_str(); 4],
            "{what}: real, effective, saved, fs uid"
        );
        assert_eq!(
            p.field("Gid"),
            [gid_s.as_str(); 4],
            "{what}: real, effective, saved, fs gid"
        );
        if let Some(g) = fs_group {
            assert!(
                p.field("Groups").contains(&g.to_string().as_str()),
                "{what}: fsGroup {g} among {:?}",
                p.field("Groups")
            );
        }
        assert!(
            !p.field("Groups").contains(&"0"),
            "{what}: in group root: {:?}",
            p.field("Groups")
        );
        for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(p.field(cap), [expected_caps.as_str()], "{what}: {cap}");
        }
        assert_eq!(
            p.field("NoNewPrivs"),
            [if no_escalation { "1" } else { "0" }],
            "{what}: NoNewPrivs"
        );
        // RuntimeDefault (and Localhost) are a seccomp filter: mode 2
        assert_eq!(
            p.field("Seccomp"),
            [if seccomp == "Unconfined" { "0" } else { "2" }],
            "{what}: Seccomp"
        );
    }

    eprintln!(
        "{test}: uid {uid} gid {gid} caps {expected_caps} NoNewPrivs {no_escalation} seccomp {seccomp} in {names:?}"
    );

    // Read-only root: a write to / is refused by the file system, while the mounted volumes
    // (emptyDir /tmp, the data volume) take writes from the same user.
    let out = exec(cluster, &pod, &["touch", "/probe"]).await;
    assert!(!out.status.success(), "a write to / succeeded");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Read-only file system"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for dir in ["/tmp", "/data"] {
        let out = exec(cluster, &pod, &["touch", &format!("{dir}/.secctx-probe")]).await;
        assert!(
            out.status.success(),
            "write to {dir}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    op.remove("secctx").await;
}

/// A QR from the CR's status, scanned on the fake → `connected`.
async fn link(op: &Operator<'_>, http: &reqwest::Client, fake: &Fake, session: &str) {
    let qr = wait_for_value(
        "a QR in the CR's status",
        Duration::from_secs(120),
        || async {
            let cr = kubectl_json(op.cluster, &["get", "wa", "-n", &op.ns, session]).await;
            cr["status"]["qr"].as_str().map(String::from)
        },
    )
    .await;
    let r = http
        .post(format!("{}/_fake/scan", fake.url))
        .json(&json!({"qr": qr, "phone": PHONE}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "scan: {}", r.status());
    kubectl_ok(
        op.cluster,
        &[
            "wait",
            "-n",
            &op.ns,
            "--for=jsonpath={.status.status}=connected",
            &format!("wa/{session}"),
            "--timeout=90s",
        ],
    )
    .await;
}

/// 2. The page allocates past the session's memory limit: the kernel OOM-kills (a Chromium
/// process, as it happens on this cgroup v1 node), the agent ends the container, the kubelet
/// reports `OOMKilled` with exit code 137 and restarts the container, and the session is
/// connected again from the saved login, without a QR.
#[tokio::test]
async fn exceeding_the_session_memory_limit_restarts_the_container_and_restores_without_qr() {
    let test = "exceeding_the_session_memory_limit_restarts_the_container_and_restores_without_qr";
    let Some(helm) = helm_or_skip(test) else {
        return;
    };
    let cluster = devcluster_testing::cluster().await;
    let Some(programs) = programs_or_skip(test, &["fake-whatsapp"]) else {
        return;
    };
    let fake = start_fake(&programs[0], cluster.host_ip());
    let op = Operator::install(cluster, &helm, "wa-oom", &fake).await;
    // Chromium needs ~300 MiB connected and idle; 640 MiB leaves the page room to load.
    let limit = "640Mi";
    let pod = op.session("oom", json!({"resources": {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"memory": limit}}})).await;
    let pod_name = pod["metadata"]["name"].as_str().unwrap().to_string();
    let c = container(&pod);
    assert_eq!(
        c["resources"]["limits"]["memory"], limit,
        "the operator passes spec.resources on"
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    link(&op, &http, &fake, "oom").await;
    let before = connected_pages(&http, &fake.url, PHONE).await;
    assert_eq!(before.len(), 1, "one browser holds the session: {before:?}");
    assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0);

    // More than the limit, allocated by the page (ArrayBuffers, outside V8's heap limit).
    let started = std::time::Instant::now();
    let r = http
        .post(format!("{}/_fake/bloat", fake.url))
        .json(&json!({"mb": 1024, "phone": PHONE}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "bloat: {}", r.status());
    let status = wait_for_value(
        "the container OOM-killed and restarted",
        Duration::from_secs(120),
        || async {
            let p = kubectl_json(cluster, &["get", "pod", "-n", &op.ns, &pod_name]).await;
            let cs = p["status"]["containerStatuses"][0].clone();
            (cs["restartCount"].as_u64() >= Some(1) && cs["lastState"]["terminated"].is_object())
                .then_some(cs)
        },
    )
    .await;
    let restarted_after = started.elapsed();
    let terminated = &status["lastState"]["terminated"];
    assert_eq!(terminated["reason"], "OOMKilled", "{status}");
    assert_eq!(terminated["exitCode"], 137, "{status}");
    assert_eq!(status["restartCount"], 1, "{status}");
    // Same pod (a container restart by the kubelet, not a new pod from the StatefulSet).
    let now = kubectl_json(cluster, &["get", "pod", "-n", &op.ns, &pod_name]).await;
    assert_eq!(now["metadata"]["uid"], pod["metadata"]["uid"]);
    // The previous container's log says why it ended.
    let c_name = container(&pod)["name"].as_str().unwrap();
    // The kubelet answers "unable to retrieve container logs for containerd://…" (in the body)
    // when its runtime call for the dead container fails; on the loaded CI machine that happened
    // once right after the restart, so wait until it can read them, then check what they say.
    let previous = wait_for_value(
        "the kubelet serving the previous container's log",
        Duration::from_secs(30),
        || async {
            let out = cluster
                .kubectl(&["logs", "-n", &op.ns, &pod_name, "-c", c_name, "--previous"])
                .await;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            (out.status.success() && !text.starts_with("unable to retrieve container logs"))
                .then_some(text)
        },
    )
    .await;
    assert!(
        previous.contains("killed for exceeding its memory limit"),
        "previous log: {}",
        tail(&previous, 10)
    );

    // Connected again: a new page (the new container's browser) holds the phone's session, the
    // CR is connected with no QR.
    wait_for_value(
        "a new browser page connected with the saved login",
        Duration::from_secs(120),
        || async {
            let now = connected_pages(&http, &fake.url, PHONE).await;
            now.iter()
                .find(|p| !before.iter().any(|b| b["id"] == p["id"]))
                .cloned()
        },
    )
    .await;
    let restored_after = started.elapsed();
    kubectl_ok(
        cluster,
        &[
            "wait",
            "-n",
            &op.ns,
            "--for=jsonpath={.status.status}=connected",
            "wa/oom",
            "--timeout=60s",
        ],
    )
    .await;
    let cr = kubectl_json(cluster, &["get", "wa", "-n", &op.ns, "oom"]).await;
    assert!(
        cr["status"]["qr"].is_null(),
        "a QR after the restart: {}",
        cr["status"]
    );
    assert!(
        cr["status"]["phoneNumber"]
            .as_str()
            .is_some_and(|p| p.contains(PHONE)),
        "{}",
        cr["status"]
    );
    eprintln!(
        "{test}: restarted {restarted_after:?} after the bloat request, connected again after {restored_after:?}"
    );
    op.remove("oom").await;
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// 3. Through the kubelet: `kubectl logs` of the session container has the agent's JSON log
/// lines, and `kubectl port-forward` to the pod's `metrics` port answers `/metrics`.
#[tokio::test]
async fn kubectl_logs_and_port_forward_reach_the_session_agent() {
    let test = "kubectl_logs_and_port_forward_reach_the_session_agent";
    let Some(helm) = helm_or_skip(test) else {
        return;
    };
    let cluster = devcluster_testing::cluster().await;
    let Some(programs) = programs_or_skip(test, &["fake-whatsapp"]) else {
        return;
    };
    let fake = start_fake(&programs[0], cluster.host_ip());
    let op = Operator::install(cluster, &helm, "wa-kubelet-api", &fake).await;
    let small = json!({"resources": {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}});
    let pod = op.session("logs", small).await;
    let pod_name = pod["metadata"]["name"].as_str().unwrap().to_string();

    let logs = kubectl_ok(
        cluster,
        &[
            "logs",
            "-n",
            &op.ns,
            &pod_name,
            "-c",
            container(&pod)["name"].as_str().unwrap(),
        ],
    )
    .await;
    let starting = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["fields"]["message"] == "wa-session starting")
        .unwrap_or_else(|| panic!("no 'wa-session starting' line in: {}", tail(&logs, 10)));
    assert_eq!(starting["fields"]["session"], "logs");
    assert_eq!(starting["fields"]["namespace"], op.ns.as_str());
    assert_eq!(starting["level"], "INFO");

    // port-forward from a free local port (`:PORT` picks one and prints it) to the container's
    // `metrics` port as the operator declared it
    let port = container(&pod)["ports"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "metrics"))
        .and_then(|p| p["containerPort"].as_u64())
        .expect("a metrics port in the pod spec");
    let mut child = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .args([
            "port-forward",
            "-n",
            &op.ns,
            &format!("pod/{pod_name}"),
            &format!(":{port}"),
            "--address",
            "127.0.0.1",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl port-forward");
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
    let local: u16 = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(l)) = lines.next_line().await {
            // "Forwarding from 127.0.0.1:43127 -> 8080"
            if let Some(p) = l
                .strip_prefix("Forwarding from 127.0.0.1:")
                .and_then(|r| r.split_whitespace().next())
            {
                return p.parse().ok();
            }
        }
        None
    })
    .await
    .expect("port-forward announced no port in 30 s")
    .expect("port-forward ended without a port");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let r = http
        .get(format!("http://127.0.0.1:{local}/metrics"))
        .send()
        .await
        .expect("GET /metrics through port-forward");
    assert!(r.status().is_success(), "/metrics: {}", r.status());
    let body = r.text().await.unwrap();
    for m in [
        "wa_session_qr_published_total",
        "wa_session_browser_restarts_total",
        "wa_session_connected",
    ] {
        assert!(body.contains(m), "{m} missing from /metrics:\n{body}");
    }
    let r = http
        .get(format!("http://127.0.0.1:{local}/readyz"))
        .send()
        .await
        .expect("GET /readyz");
    assert_eq!(
        r.status(),
        reqwest::StatusCode::OK,
        "the pod is Ready, so /readyz answers 200"
    );
    let _ = child.kill().await;
    op.remove("logs").await;
}

/// 4. Chromium talks to WhatsApp only: with the session behind a real proxy (tinyproxy on the
/// host, forwarding only to the fake and logging every request it gets, forwarded or refused),
/// from launch through linking to a minute of idling, every request the browser sends is for
/// WhatsApp Web (the fake): the managed policy the operator mounts keeps Chromium's own
/// services (component updates, sign-in, sync, safe browsing, search, variations, …) silent.
#[tokio::test]
async fn chromium_contacts_only_whatsapp_from_launch_to_idle() {
    let test = "chromium_contacts_only_whatsapp_from_launch_to_idle";
    let Some(helm) = helm_or_skip(test) else {
        return;
    };
    let cluster = devcluster_testing::cluster().await;
    let Some(programs) = programs_or_skip(test, &["fake-whatsapp"]) else {
        return;
    };
    let fake = start_fake(&programs[0], cluster.host_ip());
    let fake_host = fake
        .url
        .strip_prefix("http://")
        .expect("the fake's URL is http://HOST:PORT")
        .to_string();
    let host = std::net::IpAddr::from(cluster.host_ip());
    let proxy = Tinyproxy::start_on(host, &[host.to_string()], None);
    // The customer's set-up: sessions may leave only through the proxy (the chart's policy).
    let proxy_only = json!({"networkPolicy": {
        "proxy": {"cidrs": [format!("{host}/32")], "ports": [proxy.port()]},
        "extraEgress": [],
    }});
    let op = Operator::install_with(cluster, &helm, "wa-egress", &fake, proxy_only).await;
    let spec = json!({
        "proxy": {"url": proxy.url()},
        "resources": {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
    });
    let pod = op.session("egress", spec).await;
    let policy = exec(
        cluster,
        &pod,
        &[
            "cat",
            "/etc/chromium/policies/managed/whatsapp-operator.json",
        ],
    )
    .await;
    assert!(
        String::from_utf8_lossy(&policy.stdout).contains(&format!("\"http://{fake_host}\"")),
        "the session container reads the operator's policy: {policy:?}"
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    link(&op, &http, &fake, "egress").await;
    assert!(
        !proxy.requests_for(&fake.url).is_empty(),
        "WhatsApp Web was loaded through the proxy:\n{}",
        proxy.log_text()
    );
    // The window in which an idle browser's background services would call home (component
    // updater, variations and safe-browsing fetches start within a minute of launch). The
    // node's connection records are read through it: what the pod opened, proxy or not.
    let pod_ip = pod["status"]["podIP"].as_str().expect("podIP").to_string();
    let mut destinations = std::collections::BTreeSet::new();
    let until = tokio::time::Instant::now() + IDLE;
    while tokio::time::Instant::now() < until {
        destinations.extend(connections_from(cluster, &pod_ip).await);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The proxy, and the API server through the `kubernetes` Service (the agent's own CR).
    let api = kubectl_json(cluster, &["get", "service", "-n", "default", "kubernetes"]).await;
    let allowed = [
        proxy.url().trim_start_matches("http://").to_string(),
        format!(
            "{}:443",
            api["spec"]["clusterIP"].as_str().expect("clusterIP")
        ),
    ];
    let unexpected: Vec<&String> = destinations
        .iter()
        .filter(|d| !allowed.iter().any(|a| d.ends_with(&format!(" {a}"))))
        .collect();
    assert!(
        unexpected.is_empty(),
        "the session pod opened connections beyond the proxy and the API server {allowed:?}: \
         {unexpected:?}"
    );
    let others = proxy.requested_hosts_except(&fake_host);
    assert!(
        others.is_empty(),
        "Chromium asked the proxy for hosts other than WhatsApp Web ({fake_host}): {others:?}"
    );
    op.remove("egress").await;
}

/// How long the linked session idles under observation.
const IDLE: Duration = Duration::from_secs(60);

/// `PROTO DST:DPORT` of each connection the node tracks from `pod_ip` (conntrack in the node's
/// network namespace: TCP and UDP alike, including what bypassed the proxy).
async fn connections_from(cluster: &TestCluster, pod_ip: &str) -> Vec<String> {
    let out = tokio::process::Command::new("ip")
        .args(["netns", "exec", &cluster.node_netns()])
        .args(["conntrack", "-L", "-s", pod_ip])
        .output()
        .await
        .expect("ip netns exec … conntrack (tests/scripts/install-deps.sh installs conntrack)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let proto = l.split_whitespace().next()?;
            // the original direction's fields come first
            let field = |k: &str| {
                l.split_whitespace()
                    .find_map(|f| f.strip_prefix(&format!("{k}=")))
            };
            Some(format!("{proto} {}:{}", field("dst")?, field("dport")?))
        })
        .collect()
}
