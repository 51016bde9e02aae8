//! The README's quick start, followed literally: `DEMO_FAKE_WHATSAPP=1 make demo`; the first
//! screen offers "Conectar WhatsApp" (no QR round spent yet); then the original plan's own
//! Playwright test (tests/e2e/tests/plan.test.mjs) logs in at HUB_URL as DEMO_USER, opens
//! "WhatsApp", presses "Conectar", scans the QR on screen with the fake phone and sees
//! "Conectado"; `kubectl get wa` shows it connected with the phone; `make demo-down`.
//!
//! `make demo` runs with DEMO_DETACH=1 (return once ready instead of waiting for Ctrl-C),
//! DEMO_SKIP_BUILD=1 (`make test` has just built everything, and cargo's build lock is held
//! while tests run) and its state in a temporary DEMO_DIR under the cache's `state/` (not /tmp,
//! which session pods mount over), so a demo of the developer's own is never touched. It starts
//! its own devcluster (pod network 10.244.98.0/24, hub NodePort 31998), apart from make test's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chart_tests::*;
use serde_json::Value;

fn make(target: &str, demo_dir: &Path) -> std::process::Output {
    let bin = devcluster_testing::release_dir();
    Command::new("make")
        .arg("-s")
        .arg(target)
        .current_dir(repo_root())
        .env("DEMO_FAKE_WHATSAPP", "1")
        .env("DEMO_DETACH", "1")
        .env("DEMO_SKIP_BUILD", "1")
        .env("DEMO_DIR", demo_dir)
        .env("DEMO_HUB_PORT", "31998")
        .env("DEMO_POD_CIDR", "10.244.98.0/24")
        // The Makefile derives the binaries' directory from CARGO_TARGET_DIR.
        .env("CARGO_TARGET_DIR", bin.parent().unwrap_or(&bin))
        .output()
        .expect("make")
}

/// Stops the demo even when an assertion fails.
struct DemoDown<'a>(&'a Path);
impl Drop for DemoDown<'_> {
    fn drop(&mut self) {
        let out = make("demo-down", self.0);
        if !out.status.success() {
            eprintln!("make demo-down: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

#[tokio::test]
async fn readme_quick_start_with_the_fake_whatsapp() {
    let test = "readme_quick_start_with_the_fake_whatsapp";
    if helm_or_skip(test).is_none() {
        return;
    }
    let built = [
        "devcluster",
        "wa-operator",
        "wa-hub",
        "wa-session",
        "fake-whatsapp",
    ];
    if programs_or_skip(test, &built).is_none() {
        return;
    }
    // Not under /tmp: session pods mount their own /tmp over it (see tests/scripts/demo.sh).
    let cache = std::env::var_os("WA_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/whatsapp-operator")
        });
    std::fs::create_dir_all(cache.join("state")).unwrap();
    let dir = tempfile::Builder::new()
        .prefix("quickstart-")
        .tempdir_in(cache.join("state"))
        .unwrap();
    let demo_dir = dir.path().join("demo");
    let _down = DemoDown(&demo_dir);
    let started = std::time::Instant::now();
    let out = make("demo", &demo_dir);
    assert!(
        out.status.success(),
        "make demo failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "make demo (warm, no build) ready in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    // .demo/demo.env has every variable the README and docs/design.md §6 promise, and make demo
    // printed the same lines.
    let env_text = std::fs::read_to_string(demo_dir.join("demo.env")).unwrap();
    let env: HashMap<&str, &str> = env_text.lines().filter_map(|l| l.split_once('=')).collect();
    for k in [
        "KUBECONFIG",
        "HUB_URL",
        "DEMO_USER",
        "DEMO_PASSWORD",
        "DEMO_NAMESPACE",
        "DEMO_SESSION",
        "FAKE_WHATSAPP_URL",
    ] {
        assert!(
            env.get(k).is_some_and(|v| !v.is_empty()),
            "demo.env lacks {k}:\n{env_text}"
        );
    }
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&env_text),
        "make demo did not print demo.env"
    );
    let (hub, ns, name) = (
        env["HUB_URL"].trim_end_matches('/'),
        env["DEMO_NAMESPACE"],
        env["DEMO_SESSION"],
    );

    // The UI is served, and the demo user logs in.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let index = http.get(format!("{hub}/")).send().await.unwrap();
    assert!(index.status().is_success(), "GET / → {}", index.status());
    assert!(
        index.text().await.unwrap().contains("<div id=\"root\""),
        "the UI is not served at HUB_URL"
    );
    let token = hub_login(&http, hub, env["DEMO_USER"], env["DEMO_PASSWORD"])
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // The first screen is the README's: nothing has spent a QR round before someone asks. The
    // sample session is Stopped (no pod, no QR request, no QR), so however late the newcomer
    // arrives, the page offers "Conectar WhatsApp" rather than "QR expirado".
    let cr = kubectl_json(
        env["KUBECONFIG"],
        &["get", "wa", "-n", ns, name, "-o", "json"],
    );
    assert_eq!(cr["spec"]["desiredState"], "Stopped", "{cr}");
    assert!(cr["spec"]["qrRequestedAt"].is_null(), "{cr}");
    for field in ["qr", "qrStatus", "status", "handled"] {
        assert!(cr["status"][field].is_null(), "status.{field} set: {cr}");
    }
    let pods = kubectl_json(
        env["KUBECONFIG"],
        &[
            "get",
            "pods",
            "-n",
            ns,
            "-l",
            &format!("app.kubernetes.io/instance={name}"),
            "-o",
            "json",
        ],
    );
    assert_eq!(pods["items"].as_array().map(Vec::len), Some(0), "{pods}");
    let snap: Value = http
        .get(format!("{hub}/api/session-manager/sessions/{name}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(snap["qr_string"].is_null(), "{snap}");

    // The original plan's own Playwright test, as a newcomer would follow the README: log in,
    // "WhatsApp", a button with "Conectar", the QR on screen, scanned (by the fake phone,
    // from the pixels), "Conectado".
    let e2e = repo_root().join("tests/e2e");
    if !e2e.join("node_modules/playwright-core").is_dir() {
        let ci = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&e2e)
            .output()
            .expect("npm");
        assert!(
            ci.status.success(),
            "npm ci in tests/e2e: {}",
            String::from_utf8_lossy(&ci.stderr)
        );
    }
    let artifacts = dir.path().join("artifacts");
    let plan = Command::new("node")
        .args(["--test", "--test-reporter=spec", "tests/plan.test.mjs"])
        .current_dir(&e2e)
        .env("E2E_URL", env["HUB_URL"])
        .env("E2E_USER", env["DEMO_USER"])
        .env("E2E_PASSWORD", env["DEMO_PASSWORD"])
        .env("E2E_FAKE_URL", env["FAKE_WHATSAPP_URL"])
        .env("E2E_ARTIFACTS", &artifacts)
        .output()
        .expect("node");
    assert!(
        plan.status.success(),
        "the plan's test against the demo failed (screenshots: {}):\n{}\n{}",
        artifacts.display(),
        String::from_utf8_lossy(&plan.stdout),
        String::from_utf8_lossy(&plan.stderr)
    );
    let out = Command::new("kubectl")
        .args([
            "--kubeconfig",
            env["KUBECONFIG"],
            "wait",
            "-n",
            ns,
            "--for=condition=Authenticated",
            &format!("wa/{name}"),
            "--timeout=90s",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("kubectl")
        .args(["--kubeconfig", env["KUBECONFIG"], "get", "wa", "-A"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.contains(name) && l.contains("connected") && l.contains("5491100000009")),
        "{table}"
    );
}

/// `kubectl get ... -o json` against the demo's cluster.
fn kubectl_json(kubeconfig: &str, args: &[&str]) -> Value {
    let out = Command::new("kubectl")
        .args(["--kubeconfig", kubeconfig])
        .args(args)
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("kubectl json")
}
