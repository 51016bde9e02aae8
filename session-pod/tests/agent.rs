//! wa-session end to end at the host level: the real agent binary, real Chromium, the fake
//! WhatsApp Web, and the devcluster API server holding the WhatsAppSession.

mod support;

use std::time::Duration;

use crds::{ConditionType, QrStatus, SessionState, error_codes};
use support::*;

const T: Duration = Duration::from_secs(60);

fn code(s: &crds::WhatsAppSessionStatus) -> Option<&str> {
    s.last_error.as_ref().map(|e| e.code.as_str())
}

fn authenticated(s: &crds::WhatsAppSessionStatus) -> Option<String> {
    s.conditions.iter().find(|c| c.type_ == ConditionType::Authenticated.as_str()).map(|c| c.status.clone())
}

/// Starts an agent for a new CR and links it by scanning the QR it published.
async fn connected_session(prefix: &str, tmp: &tempfile::TempDir) -> (String, kube::Api<crds::WhatsAppSession>, fake_whatsapp::FakeWhatsApp, Agent) {
    let c = cluster().await;
    let ns = c.namespace(prefix).await;
    let api = create_session(c, &ns, "s1").await;
    let fake = fake(Duration::from_secs(20), Duration::from_secs(20), 6).await;
    let agent = Agent::start(AgentOpts {
        ns: &ns,
        name: "s1",
        url: &fake.url(),
        data_dir: &tmp.path().join("data"),
        kubeconfig: c.kubeconfig(),
        extra_env: vec![],
    });
    let s = wait_status(&api, "s1", "first QR", T, |s| s.qr.is_some()).await;
    scan(&fake.url(), s.qr.as_deref().expect("qr")).await;
    let s = wait_status(&api, "s1", "connected", T, |s| s.status == Some(SessionState::Connected)).await;
    assert_eq!(s.phone_number.as_deref(), Some(PHONE));
    assert_eq!(s.push_name.as_deref(), Some("Ana"));
    assert_eq!(s.qr_status, Some(QrStatus::Used));
    assert_eq!(s.qr, None);
    assert!(s.connected_at.is_some());
    assert_eq!(authenticated(&s).as_deref(), Some("True"));
    (ns, api, fake, agent)
}

#[tokio::test]
async fn qr_rotates_expires_and_a_request_starts_a_fresh_round() {
    let c = cluster().await;
    let ns = c.namespace("agent-qr").await;
    let api = create_session(c, &ns, "s1").await;
    let fake = fake(Duration::from_secs(3), Duration::from_secs(2), 3).await;
    let tmp = tempfile::tempdir().expect("tmp");
    let _agent = Agent::start(AgentOpts {
        ns: &ns,
        name: "s1",
        url: &fake.url(),
        data_dir: &tmp.path().join("data"),
        kubeconfig: c.kubeconfig(),
        extra_env: vec![],
    });
    let first = wait_status(&api, "s1", "first QR", T, |s| s.qr.is_some()).await;
    assert_eq!(first.status, Some(SessionState::QrRequired));
    assert_eq!(first.qr_status, Some(QrStatus::Generated));
    assert_eq!(first.qr.as_deref().map(|q| q.split(',').count()), Some(5), "ref,noiseKey,identityKey,advSecret,platform");
    let gen_at = first.qr_generated_at.clone().expect("generatedAt").0;
    let exp_at = first.qr_expires_at.clone().expect("expiresAt").0;
    assert_eq!(exp_at.duration_since(gen_at).as_secs(), 3, "first QR announced with the first-QR lifetime");
    assert_eq!(authenticated(&first).as_deref(), Some("False"));
    let q1 = first.qr.clone();
    let second = wait_status(&api, "s1", "second QR", T, |s| s.qr.is_some() && s.qr != q1).await;
    let gen_at = second.qr_generated_at.clone().expect("generatedAt").0;
    let exp_at = second.qr_expires_at.clone().expect("expiresAt").0;
    assert_eq!(exp_at.duration_since(gen_at).as_secs(), 2, "next QRs use the shorter lifetime");

    let expired = wait_status(&api, "s1", "expired", T, |s| s.qr_status == Some(QrStatus::Expired)).await;
    assert_eq!(expired.qr, None);
    assert_eq!(expired.qr_expires_at, None);

    let requested = request(&api, "s1", "qrRequestedAt").await;
    let fresh = wait_status(&api, "s1", "fresh QR round", T, |s| s.qr_status == Some(QrStatus::Generated) && s.qr.is_some()).await;
    assert_eq!(fresh.handled.as_ref().and_then(|h| h.qr_requested_at.clone()), Some(requested));
    assert!(fresh.qr != q1 && fresh.qr != second.qr);
    let gen_at = fresh.qr_generated_at.clone().expect("generatedAt").0;
    let exp_at = fresh.qr_expires_at.clone().expect("expiresAt").0;
    assert_eq!(exp_at.duration_since(gen_at).as_secs(), 3, "a fresh round starts with the first-QR lifetime");
}

#[tokio::test]
async fn scan_connects_and_kill9_restores_without_qr_ten_times() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (ns, api, fake, mut agent) = connected_session("agent-restore", &tmp).await;
    let c = cluster().await;
    let mut ok = 0;
    for round in 0..10 {
        agent.kill9().await;
        // Mark the status so that "connected" below is the new agent's doing.
        reset_status(&api, "s1").await;
        let started = std::time::Instant::now();
        agent = Agent::start(AgentOpts {
            ns: &ns,
            name: "s1",
            url: &fake.url(),
            data_dir: &tmp.path().join("data"),
            kubeconfig: c.kubeconfig(),
            extra_env: vec![],
        });
        // Every status seen until connected again: none may carry a QR.
        let mut saw_qr = false;
        let deadline = std::time::Instant::now() + T;
        let restored = loop {
            let s = status(&api, "s1").await;
            saw_qr |= s.qr.is_some() || s.qr_status == Some(QrStatus::Generated);
            if s.status == Some(SessionState::Connected) {
                break Some(s);
            }
            if std::time::Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        match restored {
            Some(s) if !saw_qr && s.phone_number.as_deref() == Some(PHONE) => {
                ok += 1;
                eprintln!("round {round}: restored in {:?}", started.elapsed());
            }
            other => eprintln!("round {round}: not restored cleanly (saw_qr={saw_qr}): {other:?}\n{}", agent.log_text()),
        }
    }
    assert_eq!(ok, 10, "restores without a QR: {ok}/10");
    let devices = fake_devices(&fake.url()).await;
    assert_eq!(devices.as_array().map(|a| a.len()), Some(1), "one linked device, reused: {devices}");
}

#[tokio::test]
async fn logout_request_logs_out_wipes_the_profile_and_idles() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_ns, api, fake, agent) = connected_session("agent-logout", &tmp).await;
    assert!(agent.profile().is_dir());
    let requested = request(&api, "s1", "logoutRequestedAt").await;
    let s = wait_status(&api, "s1", "disconnected after logout", T, |s| {
        s.status == Some(SessionState::Disconnected) && s.handled.as_ref().and_then(|h| h.logout_requested_at.as_ref()) == Some(&requested)
    })
    .await;
    assert_eq!(s.phone_number, None);
    assert_eq!(s.qr, None);
    assert_eq!(authenticated(&s).as_deref(), Some("False"));
    assert!(!agent.profile().exists(), "profile wiped");
    assert!(agent.chromium_pids().is_empty(), "Chromium closed");
    // WhatsApp forgot the device (the phone no longer lists it as linked).
    let devices = fake_devices(&fake.url()).await;
    let linked: Vec<_> = devices.as_array().into_iter().flatten().filter(|d| d["phone"] == PHONE).collect();
    assert!(linked.is_empty(), "device still linked: {devices}");

    // A second logout request with nothing logged in is still recorded (the operator's
    // finalizer waits for it).
    let again = request(&api, "s1", "logoutRequestedAt").await;
    wait_status(&api, "s1", "second logout handled", T, |s| {
        s.handled.as_ref().and_then(|h| h.logout_requested_at.as_ref()) == Some(&again)
    })
    .await;
    assert_eq!(status(&api, "s1").await.qr, None, "idle: no QR until one is requested");

    // A QR request leaves the idle state.
    let qr_req = request(&api, "s1", "qrRequestedAt").await;
    let s = wait_status(&api, "s1", "QR after idle", T, |s| s.qr.is_some()).await;
    assert_eq!(s.handled.as_ref().and_then(|h| h.qr_requested_at.clone()), Some(qr_req));
}

#[tokio::test]
async fn unlink_from_the_phone_is_logged_out_remotely() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_ns, api, fake, agent) = connected_session("agent-unlink", &tmp).await;
    let r = fake_post(&fake.url(), "/_fake/unlink", serde_json::json!({"phone": PHONE})).await;
    assert!(r.status().is_success());
    let s = wait_status(&api, "s1", "LOGGED_OUT_REMOTELY", T, |s| s.status == Some(SessionState::Disconnected)).await;
    assert_eq!(code(&s), Some(error_codes::LOGGED_OUT_REMOTELY));
    assert_eq!(s.phone_number, None);
    assert_eq!(authenticated(&s).as_deref(), Some("False"));
    assert!(!agent.profile().exists(), "the dead login is wiped");
}

#[tokio::test]
async fn conflict_is_taken_over() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_ns, api, fake, _agent) = connected_session("agent-conflict", &tmp).await;
    let r = fake_post(&fake.url(), "/_fake/conflict", serde_json::json!({"phone": PHONE})).await;
    assert!(r.status().is_success());
    // The agent waits WA_TAKEOVER_DELAY (2 s) before taking over: CONFLICT is visible.
    wait_status(&api, "s1", "CONFLICT", T, |s| code(s) == Some(error_codes::CONFLICT)).await;
    let s = wait_status(&api, "s1", "connected after takeover", T, |s| {
        s.status == Some(SessionState::Connected) && s.last_error.is_none()
    })
    .await;
    assert_eq!(s.phone_number.as_deref(), Some(PHONE));
}

#[tokio::test]
async fn corrupt_profile_is_moved_aside_and_a_fresh_login_starts() {
    let c = cluster().await;
    let ns = c.namespace("agent-corrupt").await;
    let api = create_session(c, &ns, "s1").await;
    let fake = fake(Duration::from_secs(20), Duration::from_secs(20), 6).await;
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("profile")).expect("mkdir");
    std::fs::write(data.join("profile/Default"), b"\x00garbage").expect("corrupt");
    let _agent = Agent::start(AgentOpts { ns: &ns, name: "s1", url: &fake.url(), data_dir: &data, kubeconfig: c.kubeconfig(), extra_env: vec![] });
    let s = wait_status(&api, "s1", "fresh QR after PROFILE_CORRUPT", T, |s| s.qr.is_some()).await;
    assert_eq!(code(&s), Some(error_codes::PROFILE_CORRUPT));
    let aside: Vec<_> = std::fs::read_dir(&data)
        .expect("data dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("profile.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "the corrupt profile is kept aside");
    assert_eq!(std::fs::read(aside[0].path().join("Default")).expect("kept"), b"\x00garbage");
    assert!(data.join("profile/Default").is_dir(), "a fresh profile is in use");
}

#[tokio::test]
async fn sigterm_closes_chromium_and_exits() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_ns, _api, _fake, agent) = connected_session("agent-sigterm", &tmp).await;
    let profile = agent.profile();
    assert!(!agent.chromium_pids().is_empty());
    let exit = agent.terminate(Duration::from_secs(25)).await;
    assert!(exit.success(), "clean exit: {exit:?}");
    assert!(chromium_pids(&profile).is_empty(), "Chromium closed with the agent");
    // A clean close leaves no single-instance lock behind.
    assert!(std::fs::symlink_metadata(profile.join("SingletonLock")).is_err());
}

#[tokio::test]
async fn health_and_metrics_reflect_the_page() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_ns, _api, _fake, agent) = connected_session("agent-http", &tmp).await;
    let get = |p: &str| reqwest::get(format!("{}{p}", agent.http));
    assert_eq!(get("/livez").await.expect("livez").status(), 200);
    assert_eq!(get("/readyz").await.expect("readyz").status(), 200);
    let m = get("/metrics").await.expect("metrics").text().await.expect("text");
    assert!(m.contains("wa_session_qr_published_total 1"), "{m}");
    assert!(m.contains("wa_session_connected 1"), "{m}");
    assert!(m.contains("wa_session_status_writes_total{result=\"ok\"}"), "{m}");
}

#[tokio::test]
async fn hung_page_is_relaunched_and_restored() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_ns, api, fake, agent) = connected_session("agent-hang", &tmp).await;
    let before = agent.chromium_pids();
    let r = fake_post(&fake.url(), "/_fake/hang", serde_json::json!({})).await;
    assert!(r.status().is_success());
    // Three unanswered polls (WA_CDP_TIMEOUT 5 s each) mark the page hung.
    wait_status(&api, "s1", "TIMEOUT", T, |s| code(s) == Some(error_codes::TIMEOUT)).await;
    let s = wait_status(&api, "s1", "connected after relaunch", T, |s| s.status == Some(SessionState::Connected)).await;
    assert_eq!(s.qr, None);
    let after = agent.chromium_pids();
    assert!(!after.is_empty() && after.iter().all(|p| !before.contains(p)), "a new Chromium: {before:?} -> {after:?}");
}
