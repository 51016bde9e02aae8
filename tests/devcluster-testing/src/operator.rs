//! The operator (`wa-operator`, the build of the package under test) as a host process
//! against the devcluster API, with the stand-in agent image.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crate::binaries::package_program;
use crate::metrics::{metric_sum, metric_value};
use crate::{TestCluster, free_port, http_get, wait_for_value};

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
        // (devcluster's test pod: an HTTP server answering the agent's probes)
        if !extra.contains(&"--session-image") {
            args.extend(["--session-image".into(), cluster.test_pod_image().await]);
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
        let child = tokio::process::Command::new(package_program("wa-operator"))
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
                http_get(format!("127.0.0.1:{}", op.metrics_port), "/healthz")
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
        Some(metric_sum(&self.metrics().await?, name))
    }

    pub async fn metrics(&self) -> Option<String> {
        http_get(format!("127.0.0.1:{}", self.metrics_port), "/metrics")
            .await
            .map(|(_, body)| body)
    }

    /// The value of an unlabelled sample, e.g. `wa_operator_leader`.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = self.metrics().await?;
        metric_value(&text, name)
    }
}
