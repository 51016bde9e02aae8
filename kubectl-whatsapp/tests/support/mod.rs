//! What the devcluster tests of the plugin share: the CRD, sessions, the plugin binary run as a
//! user runs it, the real session agent (`wa-session`, release build) as a host process with
//! real Chromium, and kubeconfigs of users without rights.

pub mod terminal_qr;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use crds::{WhatsAppSession, WhatsAppSessionSpec};
use devcluster_testing::agent::{Agent, AgentOpts, AgentProgram};
use devcluster_testing::{TestCluster, release_program};
use kube::Api;
use serde_json::Value;

pub const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-whatsapp");

pub async fn cluster() -> &'static TestCluster {
    let c = devcluster_testing::cluster().await;
    crds::testing::install_crd(&c.client()).await;
    c
}

pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Creates session `name` (tenant acme) with `spec` over the defaults.
pub async fn create_session(
    c: &TestCluster,
    ns: &str,
    name: &str,
    spec: WhatsAppSessionSpec,
) -> Api<WhatsAppSession> {
    let api: Api<WhatsAppSession> = Api::namespaced(c.client(), ns);
    let spec = serde_json::to_value(spec).expect("the spec as JSON");
    crds::testing::create(&api, name, spec).await;
    api
}

/// The plugin as a user runs it: `kubeconfig` via `KUBECONFIG`, the locale `lang` (e.g.
/// `es_AR.UTF-8`) via `LANG`, output piped.
pub fn plugin_command(kubeconfig: &Path, lang: &str, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(PLUGIN);
    cmd.args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("LANG", lang)
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES")
        .env_remove("KUBECTL_WHATSAPP_LANG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs the plugin to the end (at most 2 minutes).
pub async fn plugin(kubeconfig: &Path, lang: &str, args: &[&str]) -> Output {
    let out = plugin_command(kubeconfig, lang, args).output();
    tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .unwrap_or_else(|_| panic!("kubectl-whatsapp {args:?} still running after 2 minutes"))
        .expect("run kubectl-whatsapp")
}

/// `kubectl whatsapp ARGS`: kubectl itself finds the plugin on `PATH` (the directory of the
/// binary under test first) and hands it the arguments, as for a user who installed it.
pub async fn through_kubectl(kubeconfig: &Path, lang: &str, args: &[&str]) -> Output {
    let dir = Path::new(PLUGIN).parent().expect("the plugin's directory");
    let path = std::env::join_paths(std::iter::once(dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("PATH");
    tokio::process::Command::new("kubectl")
        .arg("whatsapp")
        .args(args)
        .env("PATH", path)
        .env("KUBECONFIG", kubeconfig)
        .env("LANG", lang)
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES")
        .env_remove("KUBECTL_WHATSAPP_LANG")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run kubectl whatsapp")
}

/// The real session agent (release build) for `ns/name` against `fake_url`, with the admin
/// kubeconfig and QRs living `qr_ttl` (the lifetimes the fake gives them, for qrExpiresAt).
pub fn start_agent(
    c: &TestCluster,
    ns: &str,
    name: &str,
    fake_url: &str,
    data_dir: &Path,
    qr_ttl: &str,
) -> Agent {
    let wa_session = AgentProgram {
        program: release_program("wa-session"),
        env: vec![],
    };
    wa_session.start(AgentOpts {
        ns,
        name,
        url: fake_url,
        data_dir,
        kubeconfig: c.kubeconfig(),
        extra_env: vec![
            ("WA_QR_FIRST_TTL", qr_ttl.to_string()),
            ("WA_QR_NEXT_TTL", qr_ttl.to_string()),
        ],
    })
}

/// A kubeconfig for ServiceAccount `ns/sa` (a token from the TokenRequest API, the cluster's
/// server and CA from the admin kubeconfig), written to `dir`.
pub async fn service_account_kubeconfig(
    c: &TestCluster,
    ns: &str,
    sa: &str,
    dir: &Path,
) -> PathBuf {
    let token = ok(&c
        .kubectl(&["create", "token", sa, "-n", ns, "--duration=1h"])
        .await);
    let raw = ok(&c
        .kubectl(&[
            "config",
            "view",
            "--raw",
            "--minify",
            "--flatten",
            "-o",
            "json",
        ])
        .await);
    let mut config: Value = serde_json::from_str(&raw).expect("kubeconfig json");
    for user in config["users"].as_array_mut().expect("users") {
        user["user"] = serde_json::json!({"token": token.trim()});
    }
    let path = dir.join(format!("{sa}.kubeconfig"));
    std::fs::write(&path, config.to_string()).expect("write kubeconfig");
    path
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
