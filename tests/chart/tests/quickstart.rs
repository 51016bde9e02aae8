//! The README's quick start, followed literally: `DEMO_FAKE_WHATSAPP=1 make demo`, then log in
//! at HUB_URL as DEMO_USER, ask for a QR, scan it with the fake phone, see the session
//! connected with `kubectl get wa`, and `make demo-down`.
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
use serde_json::{Value, json};

fn bin_dir() -> PathBuf {
    std::env::var_os("WA_BIN_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(|d| PathBuf::from(d).join("release")))
        .unwrap_or_else(|| repo_root().join("target/release"))
}

fn make(target: &str, demo_dir: &Path) -> std::process::Output {
    let bin = bin_dir();
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
    for b in [
        "devcluster",
        "wa-operator",
        "wa-hub",
        "wa-session",
        "fake-whatsapp",
    ] {
        if !bin_dir().join(b).is_file() {
            eprintln!("SKIP {test}: {} is not built", bin_dir().join(b).display());
            return;
        }
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

    // "Conectar WhatsApp": POST .../qr returns the snapshot; the QR appears.
    let r = http
        .post(format!("{hub}/api/session-manager/sessions/{name}/qr"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success() || r.status().as_u16() == 429,
        "POST qr → {}",
        r.status()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let qr = loop {
        let s: Value = http
            .get(format!("{hub}/api/session-manager/sessions/{name}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(q) = s["qr_string"].as_str() {
            break q.to_string();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no QR through the hub: {s}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    // The README's scan with curl, then `kubectl get wa` shows it connected.
    let fake = env["FAKE_WHATSAPP_URL"];
    let scan = Command::new("curl")
        .args([
            "-fsS",
            "-X",
            "POST",
            &format!("{fake}_fake/scan"),
            "-H",
            "content-type: application/json",
            "-d",
        ])
        .arg(json!({"qr": qr, "phone": "5491122334455"}).to_string())
        .output()
        .unwrap();
    assert!(
        scan.status.success(),
        "scan: {}",
        String::from_utf8_lossy(&scan.stderr)
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
            .any(|l| l.contains(name) && l.contains("connected") && l.contains("5491122334455")),
        "{table}"
    );
}
