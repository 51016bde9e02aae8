//! Test harness: the real agent binary (devcluster_testing::agent) as a host process against
//! the devcluster API, real Chromium, and the fake WhatsApp Web (in-process) with fast timings.

use std::time::Duration;

use crds::{WhatsAppSession, WhatsAppSessionSpec};
use devcluster_testing::TestCluster;
use devcluster_testing::agent::AgentProgram;
use fake_whatsapp::{FakeWhatsApp, Generation, Timings};
use kube::Api;

pub const PHONE: &str = "5491122334455";

pub async fn cluster() -> &'static TestCluster {
    let c = devcluster_testing::cluster().await;
    crds::testing::install_crd(&c.client()).await;
    c
}

/// The fake (newest generation) with QRs of `first`/`next` and `max` per round.
#[allow(
    dead_code,
    reason = "proxy.rs starts its fakes with fake_on, off loopback, which Chromium never proxies"
)]
pub async fn fake(first: Duration, next: Duration, max: u32) -> FakeWhatsApp {
    fake_in(Generation::default(), first, next, max).await
}

/// The fake serving generation `g` of WhatsApp Web, with QRs of `first`/`next` and `max` per round.
#[allow(dead_code, reason = "as fake")]
pub async fn fake_in(g: Generation, first: Duration, next: Duration, max: u32) -> FakeWhatsApp {
    fake_on([127, 0, 0, 1].into(), g, first, next, max).await
}

/// As [`fake_in`], listening on `ip` (a port of its own).
pub async fn fake_on(
    ip: std::net::IpAddr,
    g: Generation,
    first: Duration,
    next: Duration,
    max: u32,
) -> FakeWhatsApp {
    let mut t = Timings::fast(next, max);
    t.first_qr = first;
    FakeWhatsApp::start_generation((ip, 0).into(), t, g)
        .await
        .expect("fake starts")
}

pub async fn create_session(c: &TestCluster, ns: &str, name: &str) -> Api<WhatsAppSession> {
    create_session_with(c, ns, name, WhatsAppSessionSpec::default()).await
}

/// Creates the CR with `spec` (tenant `acme` when empty).
pub async fn create_session_with(
    c: &TestCluster,
    ns: &str,
    name: &str,
    spec: WhatsAppSessionSpec,
) -> Api<WhatsAppSession> {
    let api: Api<WhatsAppSession> = Api::namespaced(c.client(), ns);
    crds::testing::create(&api, name, serde_json::to_value(spec).expect("spec json")).await;
    api
}

pub async fn fake_post(fake_url: &str, path: &str, body: serde_json::Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}{}", fake_url.trim_end_matches('/'), path))
        .json(&body)
        .send()
        .await
        .expect("fake control API")
}

pub async fn scan(fake_url: &str, qr: &str) {
    let r = fake_post(
        fake_url,
        "/_fake/scan",
        serde_json::json!({"qr": qr, "phone": PHONE, "pushName": "Ana"}),
    )
    .await;
    assert!(
        r.status().is_success(),
        "scan: {} {}",
        r.status(),
        r.text().await.unwrap_or_default()
    );
}

/// The agent under test (this package's binary) with the suite's fast timings.
pub fn wa_session() -> AgentProgram {
    AgentProgram {
        program: env!("CARGO_BIN_EXE_wa-session").into(),
        env: vec![
            ("WA_QR_FIRST_TTL", "3s"),
            ("WA_QR_NEXT_TTL", "2s"),
            ("WA_TAKEOVER_DELAY", "2s"),
            ("WA_CDP_TIMEOUT", "5s"),
        ],
    }
}
