//! What the tests on devcluster's kubelet node share (tests/install.rs,
//! tests/session_container.rs): chart values for the pushed images, kubectl and helm against
//! the cluster, the project's release binaries and the fake WhatsApp Web on the host.

use std::path::{Path, PathBuf};

use devcluster_testing::TestCluster;
use serde_json::{Value, json};

use crate::{PushedImage, PushedImages, run_ok};

/// Chart values pointing the three images at the registry.
pub fn image_values(i: &PushedImages) -> Value {
    // a test tag is rebuilt in place on every run: pull what the registry has
    let v =
        |p: &PushedImage| json!({"repository": p.repository, "tag": p.tag, "pullPolicy": "Always"});
    json!({"operator": {"image": v(&i.operator)}, "hub": {"image": v(&i.hub)}, "session": {"image": v(&i.session)}})
}

/// `a` with `b`'s keys set over it, objects merged recursively.
pub fn merge(a: &mut Value, b: &Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b.clone(),
    }
}

/// The release binaries (`make build`) the tests run on the host (the hub's `hash-password`,
/// the fake WhatsApp Web), or None, saying the test skips, when one is not built.
pub fn programs_or_skip(test: &str, names: &[&str]) -> Option<Vec<PathBuf>> {
    names
        .iter()
        .map(|n| {
            let p = devcluster_testing::find_release_program(n);
            if p.is_none() {
                eprintln!("SKIP {test}: {n} is not built (make build; WA_BIN_DIR)");
            }
            p
        })
        .collect()
}

pub async fn kubectl_json(cluster: &TestCluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = cluster.kubectl(&all).await;
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

pub async fn kubectl_ok(cluster: &TestCluster, args: &[&str]) -> String {
    let out = cluster.kubectl(args).await;
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn helm_cmd(helm: &Path, cluster: &TestCluster, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let kc = cluster.kubeconfig();
    run_ok(helm, &args, &[("KUBECONFIG", kc.as_path())]).unwrap_or_else(|e| panic!("{e}"))
}

/// The fake WhatsApp Web on the bridge address, killed when dropped.
pub struct Fake {
    child: std::process::Child,
    /// `http://HOST_IP:PORT`, no trailing slash.
    pub url: String,
}
impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
pub fn start_fake(program: &Path, host_ip: std::net::Ipv4Addr) -> Fake {
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

/// `networkPolicy.extraEgress` letting session pods reach the fake WhatsApp Web at `url`
/// (`http://HOST_IP:PORT`): the real one is on the internet, which the session policy allows
/// on 443 and 80 outside private ranges; the fake is on the host's private address.
pub fn fake_egress(url: &str) -> Value {
    let authority = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    let (host, port) = authority
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("the fake's URL {url} has no port"));
    let port: u16 = port
        .parse()
        .unwrap_or_else(|e| panic!("the fake's URL {url}: port {port}: {e}"));
    json!([{"to": [{"ipBlock": {"cidr": format!("{host}/32")}}], "ports": [{"protocol": "TCP", "port": port}]}])
}

/// The fake WhatsApp Web's live pages connected as `phone` (`GET /_fake/pages`): each is a
/// browser holding the session, as the fake sees it.
pub async fn connected_pages(http: &reqwest::Client, fake: &str, phone: &str) -> Vec<Value> {
    let Ok(r) = http.get(format!("{fake}/_fake/pages")).send().await else {
        return Vec::new();
    };
    let pages: Vec<Value> = r.json().await.unwrap_or_default();
    pages
        .into_iter()
        .filter(|p| p["alive"] == true && p["phone"].as_str().is_some_and(|ph| ph.contains(phone)))
        .filter(|p| {
            p["state"]
                .as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case("connected"))
        })
        .collect()
}
