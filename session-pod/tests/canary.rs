//! `wa-session canary` against the fake WhatsApp Web (real Chromium; no cluster needed): every
//! assumption holds on each generation the fake serves, and a page that broke one is reported.

use std::time::Duration;

use fake_whatsapp::{FakeWhatsApp, Generation, PageConfig, Timings};
use serde_json::Value;

/// Runs the canary on `url`; returns its exit code and the JSON report.
async fn canary(url: &str) -> (i32, Value) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_wa-session"))
        .args(["canary", "--url", url, "--timeout", "30s", "--json"])
        .env_remove("WA_DRIVER_DIR")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), out)
        .await
        .expect("canary finishes")
        .expect("canary runs");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "JSON report ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

fn failed(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["ok"] != true)
        .map(|c| c["name"].as_str().unwrap_or("?").to_string())
        .collect()
}

async fn fake(page: PageConfig) -> FakeWhatsApp {
    FakeWhatsApp::start_with(
        "127.0.0.1:0".parse().expect("addr"),
        Timings::fast(Duration::from_secs(20), 6),
        page,
    )
    .await
    .expect("fake starts")
}

#[tokio::test]
async fn every_assumption_holds_on_each_generation() {
    for g in Generation::ALL {
        let fake = fake(PageConfig {
            generation: g,
            ..Default::default()
        })
        .await;
        let (code, report) = canary(&fake.url()).await;
        assert_eq!(failed(&report), Vec::<String>::new(), "{g}: {report:#}");
        assert_eq!(code, 0, "{g}");
        assert!(
            report["checks"].as_array().is_some_and(|c| c.len() >= 10),
            "{g}: {report:#}"
        );
        assert_eq!(report["version"], "2.3000.1017054665", "{g}");
        fake.stop().await;
    }
}

/// Runs the canary on a page without `module`: it fails (exit 1) on the `check` assumption
/// alone, and that check's detail names the module.
async fn only_check_fails_without(module: &str, check: &str) {
    let fake = fake(PageConfig {
        without_modules: vec![module.into()],
        ..Default::default()
    })
    .await;
    let (code, report) = canary(&fake.url()).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        failed(&report),
        vec![check.to_string()],
        "only that assumption fails: {report:#}"
    );
    let detail = report["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == check)
        .map(|c| c["detail"].clone());
    assert_eq!(
        detail,
        Some(Value::from(format!(
            "Requiring unknown module \"{module}\""
        )))
    );
    fake.stop().await;
}

#[tokio::test]
async fn a_module_gone_from_the_page_is_reported_and_fails_the_canary() {
    only_check_fails_without("WAWebAltDeviceLinkingApi", "pairing code").await;
}

/// The renamed-module failure of February 2026 (WAHA #1887): without the message collection
/// the canary fails on the message check alone.
#[tokio::test]
async fn a_missing_message_module_fails_the_canary() {
    only_check_fails_without("WAWebCollections", "message events").await;
}
