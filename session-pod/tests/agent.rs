//! wa-session end to end at the host level: the real agent binary, real Chromium, the fake
//! WhatsApp Web, and the devcluster API server holding the WhatsAppSession.

#[path = "support/devices.rs"]
mod devices;
#[path = "support/metrics.rs"]
mod metrics;
mod support;

use std::time::Duration;

use crds::testing::{request, reset_status, status, wait_status};
use crds::{ConditionType, QrStatus, SessionState, error_codes};
use devcluster_testing::agent::{Agent, AgentOpts, AgentProgram};
use devcluster_testing::chromium::{chromium_kind, chromium_pids, cmdline};
use devices::fake_devices;
use fake_whatsapp::Generation;
use metrics::until_metric;
use support::*;

const T: Duration = Duration::from_secs(60);

fn code(s: &crds::WhatsAppSessionStatus) -> Option<&str> {
    s.last_error.as_ref().map(|e| e.code.as_str())
}

fn authenticated(s: &crds::WhatsAppSessionStatus) -> Option<String> {
    s.conditions
        .iter()
        .find(|c| c.type_ == ConditionType::Authenticated.as_str())
        .map(|c| c.status.clone())
}

/// One test's world: a fresh namespace holding the CR `s1`, the fake WhatsApp Web, and a data
/// directory for the agent's profile.
struct Fixture {
    c: &'static devcluster_testing::TestCluster,
    ns: String,
    api: kube::Api<crds::WhatsAppSession>,
    fake: fake_whatsapp::FakeWhatsApp,
    tmp: tempfile::TempDir,
}

impl Fixture {
    /// QRs of 20 s (6 per round): long enough that the shown QR is still valid when scanned.
    async fn new(prefix: &str) -> Self {
        Self::new_in(prefix, Generation::default()).await
    }

    /// As [`Self::new`], the fake serving generation `g` of WhatsApp Web.
    async fn new_in(prefix: &str, g: Generation) -> Self {
        let fake = fake_in(g, Duration::from_secs(20), Duration::from_secs(20), 6).await;
        Self::with(prefix, fake, crds::WhatsAppSessionSpec::default()).await
    }

    async fn with(
        prefix: &str,
        fake: fake_whatsapp::FakeWhatsApp,
        spec: crds::WhatsAppSessionSpec,
    ) -> Self {
        let c = cluster().await;
        let ns = c.namespace(prefix).await;
        let api = create_session_with(c, &ns, "s1", spec).await;
        let tmp = tempfile::tempdir().expect("tmp");
        Self {
            c,
            ns,
            api,
            fake,
            tmp,
        }
    }

    fn data(&self) -> std::path::PathBuf {
        self.tmp.path().join("data")
    }

    /// Starts the agent for `s1` with the admin kubeconfig, by `start` (`AgentProgram::start`
    /// or `AgentProgram::start_pod`).
    fn start_with(&self, start: fn(&AgentProgram, AgentOpts<'_>) -> Agent) -> Agent {
        self.start_env(start, vec![])
    }

    /// As [`Self::start_with`], with more environment for the agent.
    fn start_env(
        &self,
        start: fn(&AgentProgram, AgentOpts<'_>) -> Agent,
        extra_env: Vec<(&'static str, String)>,
    ) -> Agent {
        let data = self.data();
        start(
            &wa_session(),
            AgentOpts {
                ns: &self.ns,
                name: "s1",
                url: &self.fake.url(),
                data_dir: &data,
                kubeconfig: self.c.kubeconfig(),
                extra_env,
            },
        )
    }

    /// Starts the agent for `s1` with the admin kubeconfig.
    fn agent(&self) -> Agent {
        self.start_with(AgentProgram::start)
    }

    /// As [`Self::agent`], the agent in a process group of its own, as in a pod.
    fn pod_agent(&self) -> Agent {
        self.start_with(AgentProgram::start_pod)
    }

    /// Starts an agent and links it by scanning the QR it published.
    async fn connected(prefix: &str) -> (Self, Agent) {
        Self::connected_in(prefix, Generation::default()).await
    }

    /// As [`Self::connected`], the fake serving generation `g` of WhatsApp Web.
    async fn connected_in(prefix: &str, g: Generation) -> (Self, Agent) {
        Self::connected_env(prefix, g, vec![]).await
    }

    /// As [`Self::connected_in`], with more environment for the agent.
    async fn connected_env(
        prefix: &str,
        g: Generation,
        extra_env: Vec<(&'static str, String)>,
    ) -> (Self, Agent) {
        let f = Self::new_in(prefix, g).await;
        let agent = f.start_env(AgentProgram::start, extra_env);
        let s = wait_status(&f.api, "s1", "first QR", T, |s| s.qr.is_some()).await;
        scan(&f.fake.url(), s.qr.as_deref().expect("qr")).await;
        let s = wait_status(&f.api, "s1", "connected", T, |s| {
            s.status == Some(SessionState::Connected)
        })
        .await;
        assert_eq!(s.phone_number.as_deref(), Some(PHONE));
        assert_eq!(s.push_name.as_deref(), Some("Ana"));
        assert_eq!(s.qr_status, Some(QrStatus::Used));
        assert_eq!(s.qr, None);
        assert!(s.connected_at.is_some());
        assert_eq!(authenticated(&s).as_deref(), Some("True"));
        (f, agent)
    }
}

/// The scenarios that exercise what the page driver reads (state, QR parts, phone, push name,
/// logout, pairing code) run once per generation of WhatsApp Web the fake can serve
/// (`generation_2026_03::…`, `generation_2026_04::…`); the others run on the newest.
macro_rules! in_every_generation {
    ($($scenario:ident),* $(,)?) => {
        mod generation_2026_03 {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(fake_whatsapp::Generation::G2026_03).await
            })*
        }
        mod generation_2026_04 {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(fake_whatsapp::Generation::G2026_04).await
            })*
        }
    };
}

in_every_generation!(
    qr_rotates_expires_and_a_request_starts_a_fresh_round,
    logout_request_logs_out_wipes_the_profile_and_idles,
    unlink_from_the_phone_is_logged_out_remotely,
    conflict_is_taken_over,
    pairing_code_is_published_and_entering_it_connects,
);

async fn qr_rotates_expires_and_a_request_starts_a_fresh_round(g: Generation) {
    let f = Fixture::with(
        "agent-qr",
        fake_in(g, Duration::from_secs(3), Duration::from_secs(2), 3).await,
        Default::default(),
    )
    .await;
    let api = &f.api;
    let _agent = f.agent();
    let first = wait_status(api, "s1", "first QR", T, |s| s.qr.is_some()).await;
    assert_eq!(first.status, Some(SessionState::QrRequired));
    assert_eq!(first.qr_status, Some(QrStatus::Generated));
    assert_eq!(
        first.qr.as_deref().map(|q| q.split(',').count()),
        Some(5),
        "ref,noiseKey,identityKey,advSecret,platform"
    );
    let gen_at = first.qr_generated_at.clone().expect("generatedAt").0;
    let exp_at = first.qr_expires_at.clone().expect("expiresAt").0;
    assert_eq!(
        exp_at.duration_since(gen_at).as_secs(),
        3,
        "first QR announced with the first-QR lifetime"
    );
    assert_eq!(authenticated(&first).as_deref(), Some("False"));
    let q1 = first.qr.clone();
    let second = wait_status(api, "s1", "second QR", T, |s| s.qr.is_some() && s.qr != q1).await;
    let gen_at = second.qr_generated_at.clone().expect("generatedAt").0;
    let exp_at = second.qr_expires_at.clone().expect("expiresAt").0;
    assert_eq!(
        exp_at.duration_since(gen_at).as_secs(),
        2,
        "next QRs use the shorter lifetime"
    );

    let expired = wait_status(api, "s1", "expired", T, |s| {
        s.qr_status == Some(QrStatus::Expired)
    })
    .await;
    assert_eq!(expired.qr, None);
    assert_eq!(expired.qr_expires_at, None);

    let requested = request(api, "s1", "qrRequestedAt").await;
    let fresh = wait_status(api, "s1", "fresh QR round", T, |s| {
        s.qr_status == Some(QrStatus::Generated) && s.qr.is_some()
    })
    .await;
    assert_eq!(
        fresh
            .handled
            .as_ref()
            .and_then(|h| h.qr_requested_at.clone()),
        Some(requested)
    );
    assert!(fresh.qr != q1 && fresh.qr != second.qr);
    let gen_at = fresh.qr_generated_at.clone().expect("generatedAt").0;
    let exp_at = fresh.qr_expires_at.clone().expect("expiresAt").0;
    assert_eq!(
        exp_at.duration_since(gen_at).as_secs(),
        3,
        "a fresh round starts with the first-QR lifetime"
    );
}

#[tokio::test]
async fn scan_connects_and_kill9_restores_without_qr_ten_times() {
    let (f, mut agent) = Fixture::connected("agent-restore").await;
    let api = &f.api;
    let mut ok = 0;
    for round in 0..10 {
        agent.kill9().await;
        // Mark the status so that "connected" below is the new agent's doing.
        reset_status(api, "s1").await;
        let started = std::time::Instant::now();
        agent = f.agent();
        // Every status seen until connected again: none may carry a QR.
        let mut saw_qr = false;
        let deadline = std::time::Instant::now() + T;
        let restored = loop {
            let s = status(api, "s1").await;
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
            other => eprintln!(
                "round {round}: not restored cleanly (saw_qr={saw_qr}): {other:?}\n{}",
                agent.log_text()
            ),
        }
    }
    assert_eq!(ok, 10, "restores without a QR: {ok}/10");
    let devices = fake_devices(&f.fake.url()).await;
    assert_eq!(
        devices.as_array().map(|a| a.len()),
        Some(1),
        "one linked device, reused: {devices}"
    );
}

async fn logout_request_logs_out_wipes_the_profile_and_idles(g: Generation) {
    let (f, agent) = Fixture::connected_in("agent-logout", g).await;
    let api = &f.api;
    let fake = &f.fake;
    assert!(agent.profile().is_dir());
    let requested = request(api, "s1", "logoutRequestedAt").await;
    let s = wait_status(api, "s1", "disconnected after logout", T, |s| {
        s.status == Some(SessionState::Disconnected)
            && s.handled
                .as_ref()
                .and_then(|h| h.logout_requested_at.as_ref())
                == Some(&requested)
    })
    .await;
    assert_eq!(s.phone_number, None);
    assert_eq!(s.qr, None);
    assert_eq!(authenticated(&s).as_deref(), Some("False"));
    assert!(!agent.profile().exists(), "profile wiped");
    assert!(agent.chromium_pids().is_empty(), "Chromium closed");
    // WhatsApp forgot the device (the phone no longer lists it as linked).
    let devices = fake_devices(&fake.url()).await;
    let linked: Vec<_> = devices
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["phone"] == PHONE)
        .collect();
    assert!(linked.is_empty(), "device still linked: {devices}");

    // A second logout request with nothing logged in is still recorded (the operator's
    // finalizer waits for it).
    let again = request(api, "s1", "logoutRequestedAt").await;
    wait_status(api, "s1", "second logout handled", T, |s| {
        s.handled
            .as_ref()
            .and_then(|h| h.logout_requested_at.as_ref())
            == Some(&again)
    })
    .await;
    assert_eq!(
        status(api, "s1").await.qr,
        None,
        "idle: no QR until one is requested"
    );

    // A QR request leaves the idle state.
    let qr_req = request(api, "s1", "qrRequestedAt").await;
    let s = wait_status(api, "s1", "QR after idle", T, |s| s.qr.is_some()).await;
    assert_eq!(
        s.handled.as_ref().and_then(|h| h.qr_requested_at.clone()),
        Some(qr_req)
    );
}

async fn unlink_from_the_phone_is_logged_out_remotely(g: Generation) {
    let (f, agent) = Fixture::connected_in("agent-unlink", g).await;
    let api = &f.api;
    let fake = &f.fake;
    let r = fake_post(
        &fake.url(),
        "/_fake/unlink",
        serde_json::json!({"phone": PHONE}),
    )
    .await;
    assert!(r.status().is_success());
    let s = wait_status(api, "s1", "LOGGED_OUT_REMOTELY", T, |s| {
        s.status == Some(SessionState::Disconnected)
    })
    .await;
    assert_eq!(code(&s), Some(error_codes::LOGGED_OUT_REMOTELY));
    assert_eq!(s.phone_number, None);
    assert_eq!(authenticated(&s).as_deref(), Some("False"));
    assert!(!agent.profile().exists(), "the dead login is wiped");
}

async fn conflict_is_taken_over(g: Generation) {
    let (f, _agent) = Fixture::connected_in("agent-conflict", g).await;
    let api = &f.api;
    let fake = &f.fake;
    let r = fake_post(
        &fake.url(),
        "/_fake/conflict",
        serde_json::json!({"phone": PHONE}),
    )
    .await;
    assert!(r.status().is_success());
    // The agent waits WA_TAKEOVER_DELAY (2 s) before taking over: CONFLICT is visible, and
    // the session is not ours meanwhile (connecting, the account kept).
    let held_elsewhere = wait_status(api, "s1", "CONFLICT", T, |s| {
        code(s) == Some(error_codes::CONFLICT)
    })
    .await;
    assert_eq!(held_elsewhere.status, Some(SessionState::Connecting));
    assert_eq!(held_elsewhere.phone_number.as_deref(), Some(PHONE));
    let s = wait_status(api, "s1", "connected after takeover", T, |s| {
        s.status == Some(SessionState::Connected) && s.last_error.is_none()
    })
    .await;
    assert_eq!(s.phone_number.as_deref(), Some(PHONE));
}

#[tokio::test]
async fn corrupt_profile_is_moved_aside_and_a_fresh_login_starts() {
    let f = Fixture::new("agent-corrupt").await;
    let api = &f.api;
    let data = f.data();
    std::fs::create_dir_all(data.join("profile")).expect("mkdir");
    std::fs::write(data.join("profile/Default"), b"\x00garbage").expect("corrupt");
    let _agent = f.agent();
    let s = wait_status(api, "s1", "fresh QR after PROFILE_CORRUPT", T, |s| {
        s.qr.is_some()
    })
    .await;
    assert_eq!(code(&s), Some(error_codes::PROFILE_CORRUPT));
    let aside: Vec<_> = std::fs::read_dir(&data)
        .expect("data dir")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("profile.corrupt-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "the corrupt profile is kept aside");
    assert_eq!(
        std::fs::read(aside[0].path().join("Default")).expect("kept"),
        b"\x00garbage"
    );
    assert!(
        data.join("profile/Default").is_dir(),
        "a fresh profile is in use"
    );
}

#[tokio::test]
async fn sigterm_closes_chromium_and_exits() {
    let (_f, agent) = Fixture::connected("agent-sigterm").await;
    let profile = agent.profile();
    assert!(!agent.chromium_pids().is_empty());
    let exit = agent.terminate(Duration::from_secs(25)).await;
    assert!(exit.success(), "clean exit: {exit:?}");
    assert!(
        chromium_pids(&profile).is_empty(),
        "Chromium closed with the agent"
    );
    // A clean close leaves no single-instance lock behind.
    assert!(std::fs::symlink_metadata(profile.join("SingletonLock")).is_err());
}

/// What deleting the pod does (rolling upgrade, node drain, `helm upgrade` to a new image):
/// SIGTERM to the container's whole process group, as the devcluster node and `tini -g` send
/// it. Chromium, in a group of its own, is not signalled: the agent closes it over CDP, so the
/// profile is written out and the next agent on it comes back connected without a QR. In
/// between the CR says `connecting` (reason AgentStopped), not `connected`.
#[tokio::test]
async fn sigterm_to_the_pod_closes_chromium_cleanly_and_the_next_agent_restores() {
    let f = Fixture::new("agent-sigterm-pod").await;
    let api = &f.api;
    let mut agent = f.pod_agent();
    let s = wait_status(api, "s1", "first QR", T, |s| s.qr.is_some()).await;
    scan(&f.fake.url(), s.qr.as_deref().expect("qr")).await;
    wait_status(api, "s1", "connected", T, |s| {
        s.status == Some(SessionState::Connected)
    })
    .await;
    for round in 0..3 {
        let profile = agent.profile();
        let log = agent.log.clone();
        let started = std::time::Instant::now();
        let exit = agent.terminate_group(Duration::from_secs(25)).await;
        let stopped_in = started.elapsed();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(exit.success(), "clean exit: {exit:?}\n{text}");
        assert!(
            text.contains("\"Chromium closed\""),
            "Chromium closed in order, not killed:\n{text}"
        );
        assert!(!text.contains("did not close in time"), "{text}");
        assert!(
            chromium_pids(&profile).is_empty(),
            "Chromium exited with the agent"
        );
        assert!(
            std::fs::symlink_metadata(profile.join("SingletonLock")).is_err(),
            "a clean close leaves no lock"
        );
        // Nothing holds the session now: the CR must not say connected.
        let s = status(api, "s1").await;
        assert_eq!(s.status, Some(SessionState::Connecting), "{s:?}");
        assert_eq!(authenticated(&s).as_deref(), Some("Unknown"));
        let reason = s
            .conditions
            .iter()
            .find(|c| c.type_ == ConditionType::Authenticated.as_str())
            .map(|c| c.reason.clone());
        assert_eq!(reason.as_deref(), Some("AgentStopped"));
        assert_eq!(
            s.phone_number.as_deref(),
            Some(PHONE),
            "the account is still linked"
        );
        assert_eq!(s.connected_at, None);

        // The next agent on the same profile: connected again, never a QR on the way.
        agent = f.pod_agent();
        let mut saw_qr = false;
        let deadline = std::time::Instant::now() + T;
        let restored = loop {
            let s = status(api, "s1").await;
            saw_qr |= s.qr.is_some() || s.qr_status == Some(QrStatus::Generated);
            if s.status == Some(SessionState::Connected) {
                break s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not restored: {s:?}\n{}",
                agent.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(
            !saw_qr,
            "a QR was shown: the profile did not keep the login"
        );
        assert_eq!(restored.phone_number.as_deref(), Some(PHONE));
        assert!(restored.connected_at.is_some());
        eprintln!(
            "round {round}: SIGTERM -> agent exited in {} ms, -> next agent connected in {} ms",
            stopped_in.as_millis(),
            started.elapsed().as_millis()
        );
    }
    let devices = fake_devices(&f.fake.url()).await;
    assert_eq!(
        devices.as_array().map(|a| a.len()),
        Some(1),
        "one linked device, reused: {devices}"
    );
}

/// Chromium signalled together with the agent (as it was when it shared the agent's process
/// group): its CDP connection drops before `Browser.close` is answered. The agent waits for the
/// process's own clean exit instead of waiting out `WA_SHUTDOWN_TIMEOUT` for an answer that
/// cannot come and then killing it.
#[tokio::test]
async fn chromium_signalled_with_the_agent_is_waited_for_not_killed() {
    let (_f, mut agent) = Fixture::connected("agent-sigterm-both").await;
    let profile = agent.profile();
    let log = agent.log.clone();
    let browser = agent
        .chromium_pids()
        .into_iter()
        .find(|p| chromium_kind(*p) == "browser")
        .expect("the browser process");
    // Chromium leads its own process group: SIGTERM to the agent and to all of that group in
    // one kill(1), microseconds apart, as a group-wide signal arrives. (Two kill processes
    // left Chromium ~tens of ms to exit before the agent had its SIGTERM: under load the agent
    // then saw a crash first and relaunched.)
    let pid = agent.child.id().expect("running");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", "--", &pid.to_string(), &format!("-{browser}")])
        .status();
    let exit = agent.exited(Duration::from_secs(25)).await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(exit.success(), "clean exit: {exit:?}\n{text}");
    assert!(
        text.contains("\"Chromium closed\""),
        "Chromium's own exit awaited:\n{text}"
    );
    assert!(!text.contains("did not close in time"), "{text}");
    assert!(
        chromium_pids(&profile).is_empty(),
        "nothing left of Chromium"
    );
}

/// Chromium's browser process killed (`kill -9`, an OOM kill of that process): its CDP socket
/// breaks and the agent relaunches at once and restores the login — not after three CDP
/// timeouts taken for a hung page (the soak measured ~35 s, issue 12).
#[tokio::test]
async fn chromium_killed_is_relaunched_at_once_not_taken_for_a_hung_page() {
    let (f, agent) = Fixture::connected("agent-chromium-kill9").await;
    let before = agent.chromium_pids();
    let browser = before
        .iter()
        .copied()
        .find(|p| chromium_kind(*p) == "browser")
        .expect("the browser process");
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &browser.to_string()])
        .status();
    wait_status(&f.api, "s1", "BROWSER_CRASHED", T, |s| {
        code(s) == Some(error_codes::BROWSER_CRASHED)
    })
    .await;
    let s = wait_status(&f.api, "s1", "connected after relaunch", T, |s| {
        s.status == Some(SessionState::Connected)
    })
    .await;
    assert_eq!(s.qr, None, "restored without a QR");
    let text = std::fs::read_to_string(&agent.log).unwrap_or_default();
    assert!(
        !text.contains("page did not answer"),
        "the broken socket was taken for a hung page:\n{text}"
    );
    let after = agent.chromium_pids();
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "a new Chromium: {before:?} -> {after:?}"
    );
}

/// An agent killed without a word (`kill -9`, OOM) leaves `connected` in the CR. The next agent
/// does not hold the session until its page is linked again, so the CR must say `connecting`
/// in between (every version of the CR is watched: a poll could miss a short window).
#[tokio::test]
async fn a_new_agent_says_connecting_over_a_killed_agents_connected_until_linked() {
    use futures::StreamExt;
    let (f, agent) = Fixture::connected("agent-kill-truth").await;
    agent.kill9().await;
    let left = status(&f.api, "s1").await;
    assert_eq!(
        left.status,
        Some(SessionState::Connected),
        "what the killed agent left"
    );
    let mut versions = kube::runtime::watcher::watch_object(f.api.clone(), "s1").boxed();
    let _next = f.agent();
    let mut seen: Vec<SessionState> = Vec::new();
    let linked = tokio::time::timeout(T, async {
        while let Some(Ok(Some(obj))) = versions.next().await {
            let Some(st) = obj.status else { continue };
            let Some(state) = st.status else { continue };
            if seen.last() != Some(&state) {
                seen.push(state);
            }
            if state == SessionState::Connected && seen.contains(&SessionState::Connecting) {
                return Some(st);
            }
        }
        None
    })
    .await;
    let st = linked
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("never connecting then connected again: {seen:?}"));
    assert_eq!(
        seen,
        vec![
            SessionState::Connected,
            SessionState::Connecting,
            SessionState::Connected
        ],
        "the stale connected, the restore, linked again"
    );
    assert_eq!(st.qr, None, "restored without a QR");
    assert_eq!(st.phone_number.as_deref(), Some(PHONE));
    assert!(st.connected_at.is_some());
}

/// WhatsApp Web unreachable (the page shows TIMEOUT): the login is kept but nothing flows, so
/// the CR says `connecting` with TIMEOUT, and `connected` again — no QR — once it is back.
#[tokio::test]
async fn a_timeout_page_is_connecting_until_whatsapp_is_back() {
    let (f, _agent) = Fixture::connected("agent-offline").await;
    let r = fake_post(
        &f.fake.url(),
        "/_fake/offline",
        serde_json::json!({"secs": 8}),
    )
    .await;
    assert!(r.status().is_success());
    let down = wait_status(&f.api, "s1", "connecting with TIMEOUT", T, |s| {
        s.status == Some(SessionState::Connecting) && code(s) == Some(error_codes::TIMEOUT)
    })
    .await;
    assert_eq!(down.connected_at, None);
    assert_eq!(
        down.phone_number.as_deref(),
        Some(PHONE),
        "the account is kept"
    );
    assert_eq!(authenticated(&down).as_deref(), Some("Unknown"));
    let back = wait_status(&f.api, "s1", "connected again", T, |s| {
        s.status == Some(SessionState::Connected)
    })
    .await;
    assert_eq!(back.qr, None, "no QR: the login was never lost");
    assert_eq!(code(&back), None, "the TIMEOUT is over");
    assert!(back.connected_at.is_some());
}

#[tokio::test]
async fn health_and_metrics_reflect_the_page() {
    let (_f, agent) = Fixture::connected("agent-http").await;
    let get = |p: &str| reqwest::get(format!("{}{p}", agent.http));
    assert_eq!(get("/livez").await.expect("livez").status(), 200);
    assert_eq!(get("/readyz").await.expect("readyz").status(), 200);
    let m = get("/metrics")
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(m.contains("wa_session_qr_published_total 1"), "{m}");
    assert!(m.contains("wa_session_connected 1"), "{m}");
    assert!(
        m.contains("wa_session_status_writes_total{result=\"ok\"}"),
        "{m}"
    );
}

/// The hang watchdog's deadlines for the hang tests (docs/session-agent.md "Recovery"): a
/// snapshot answers within `ANSWER`, a settled page silent for `HANG_AFTER` is hung. Shorter
/// than the defaults (2 s, 6 s) so the tests are quick; the harness' `WA_CDP_TIMEOUT` stays 5 s.
const ANSWER: Duration = Duration::from_secs(1);
const HANG_AFTER: Duration = Duration::from_secs(3);
/// The harness' `WA_CDP_TIMEOUT` (support/mod.rs): before the watchdog, a hang was called after
/// three snapshots each unanswered for it.
const HARNESS_CDP_TIMEOUT: Duration = Duration::from_secs(5);

fn hang_env() -> Vec<(&'static str, String)> {
    vec![
        (
            "WA_PAGE_ANSWER_TIMEOUT",
            format!("{}ms", ANSWER.as_millis()),
        ),
        ("WA_HANG_AFTER", format!("{}ms", HANG_AFTER.as_millis())),
    ]
}

/// Every version of the CR's status from now on, with when it was seen (a poll every 200 ms
/// could miss a short `connecting`).
struct Recorder {
    seen:
        std::sync::Arc<std::sync::Mutex<Vec<(tokio::time::Instant, crds::WhatsAppSessionStatus)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start(api: &kube::Api<crds::WhatsAppSession>) -> Self {
        use futures::StreamExt;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let mut versions = kube::runtime::watcher::watch_object(api.clone(), "s1").boxed();
        let out = seen.clone();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            while let Some(Ok(obj)) = versions.next().await {
                if let Some(st) = obj.and_then(|o| o.status)
                    && let Ok(mut seen) = out.lock()
                {
                    seen.push((tokio::time::Instant::now(), st));
                }
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                }
            }
        });
        // The watch has delivered the current version: later changes are not missed.
        let _ = tokio::time::timeout(T, ready_rx).await;
        Self { seen, task }
    }

    /// The statuses seen so far.
    fn seen(&self) -> Vec<(tokio::time::Instant, crds::WhatsAppSessionStatus)> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// When a status matching `pred` was first seen after `after` (waits up to `within`).
    async fn first(
        &self,
        what: &str,
        after: tokio::time::Instant,
        within: Duration,
        pred: impl Fn(&crds::WhatsAppSessionStatus) -> bool,
    ) -> tokio::time::Instant {
        devcluster_testing::wait_for_value(what, within, || {
            let found = self
                .seen()
                .into_iter()
                .find(|(at, s)| *at > after && pred(s))
                .map(|(at, _)| at);
            async move { found }
        })
        .await
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A hung page (`/_fake/hang`: its main thread spins for good) is relaunched once it has been
/// silent for `WA_HANG_AFTER`, and the login restored from the profile without a QR. Before
/// the watchdog, three snapshots each unanswered for `WA_CDP_TIMEOUT` made a hang (the soak's
/// hang recovery p50 was 33.6 s with the 10 s default); the bound asserted here would fail so.
#[tokio::test]
async fn hung_page_is_relaunched_and_restored() {
    let (f, agent) = Fixture::connected_env("agent-hang", Generation::default(), hang_env()).await;
    let api = &f.api;
    let fake = &f.fake;
    let before = agent.chromium_pids();
    let rec = Recorder::start(api).await;
    let hung = tokio::time::Instant::now();
    let r = fake_post(&fake.url(), "/_fake/hang", serde_json::json!({})).await;
    assert!(r.status().is_success());
    // The relaunch: Chromium's life ended as TIMEOUT (published when it ends). Bound: the
    // silence limit, one answer deadline (the spell may start with a snapshot sent just before
    // the page began to spin), and 3 s for the hook to reach the page, the kill and the status
    // write on a loaded machine.
    let bound = HANG_AFTER + ANSWER + Duration::from_secs(3);
    let old_behaviour = 3 * HARNESS_CDP_TIMEOUT;
    assert!(
        bound < old_behaviour,
        "the bound tells the watchdog from three CDP timeouts"
    );
    let timeout_at = rec
        .first("TIMEOUT (the hung page relaunched)", hung, T, |s| {
            code(s) == Some(error_codes::TIMEOUT)
        })
        .await;
    let back_at = rec
        .first("connected after relaunch", timeout_at, T, |s| {
            s.status == Some(SessionState::Connected) && s.connected_at.is_some()
        })
        .await;
    let detected = timeout_at - hung;
    let recovered = back_at - hung;
    eprintln!(
        "hang → relaunch (TIMEOUT in the CR) {} ms, → connected again {} ms (bound {} ms; three CDP timeouts {} ms)",
        detected.as_millis(),
        recovered.as_millis(),
        bound.as_millis(),
        old_behaviour.as_millis()
    );
    assert!(
        detected < bound,
        "the hang was called after {detected:?}, bound {bound:?}"
    );
    // Nobody vouches for a page that does not answer: connecting from the first unanswered
    // snapshot, before the relaunch.
    let seen = rec.seen();
    let silent = seen
        .iter()
        .find(|(at, s)| {
            *at > hung && *at < timeout_at && s.status == Some(SessionState::Connecting)
        })
        .map(|(_, s)| s.clone())
        .unwrap_or_else(|| {
            panic!(
                "never connecting while the page was silent: {:?}",
                seen.iter().map(|(_, s)| s.status).collect::<Vec<_>>()
            )
        });
    assert_eq!(silent.connected_at, None);
    let s = status(api, "s1").await;
    assert_eq!(s.qr, None, "restored without a QR");
    let after = agent.chromium_pids();
    assert!(
        !after.is_empty() && after.iter().all(|p| !before.contains(p)),
        "a new Chromium: {before:?} -> {after:?}"
    );
}

/// A page whose main thread is busy for a while — longer than a snapshot's answer deadline,
/// shorter than `WA_HANG_AFTER`, as the real WhatsApp Web is while it decrypts a burst of
/// messages — is not relaunched: `connecting` while it is silent, `connected` again as soon as
/// it answers, the same Chromium.
#[tokio::test]
async fn a_busy_page_is_not_relaunched() {
    let (f, agent) = Fixture::connected_env("agent-busy", Generation::default(), hang_env()).await;
    let api = &f.api;
    let before = agent.chromium_pids();
    let rec = Recorder::start(api).await;
    let asked = tokio::time::Instant::now();
    let busy = ANSWER + (HANG_AFTER - ANSWER) / 4;
    let r = fake_post(
        &f.fake.url(),
        "/_fake/hang",
        serde_json::json!({"ms": busy.as_millis() as u64}),
    )
    .await;
    assert!(r.status().is_success());
    let silent_at = rec
        .first("connecting while the page is busy", asked, T, |s| {
            s.status == Some(SessionState::Connecting)
        })
        .await;
    let back_at = rec
        .first("connected again", silent_at, T, |s| {
            s.status == Some(SessionState::Connected) && s.connected_at.is_some()
        })
        .await;
    assert!(back_at > silent_at);
    // Well past the moment a hang would have been called.
    tokio::time::sleep(HANG_AFTER + ANSWER + Duration::from_secs(2)).await;
    let seen = rec.seen();
    assert!(
        seen.iter()
            .all(|(_, s)| code(s) != Some(error_codes::TIMEOUT)
                && s.status != Some(SessionState::Error)),
        "a busy page was taken for a hung one: {:?}",
        seen.iter()
            .map(|(_, s)| (s.status, code(s).map(str::to_string)))
            .collect::<Vec<_>>()
    );
    let s = status(api, "s1").await;
    assert_eq!(s.status, Some(SessionState::Connected));
    assert_eq!(agent.chromium_pids(), before, "the same Chromium");
    let log = agent.log_text();
    assert!(
        log.contains("page did not answer"),
        "the page was silent:\n{log}"
    );
    assert!(!log.contains("relaunching"), "{log}");
}

async fn pairing_code_is_published_and_entering_it_connects(g: Generation) {
    let spec = crds::WhatsAppSessionSpec {
        pairing: Some(crds::PairingSpec {
            phone_number: PHONE.into(),
        }),
        ..Default::default()
    };
    let f = Fixture::with(
        "agent-pairing",
        fake_in(g, Duration::from_secs(20), Duration::from_secs(20), 6).await,
        spec,
    )
    .await;
    let _agent = f.agent();
    let s = wait_status(&f.api, "s1", "pairing code", T, |s| {
        s.pairing_code.is_some()
    })
    .await;
    let code = s.pairing_code.clone().expect("code");
    assert_eq!(code.len(), 8, "an 8-character code: {code}");
    assert_eq!(s.status, Some(SessionState::QrRequired));
    // The code is the one the page got from WhatsApp for this phone.
    let pages: serde_json::Value = reqwest::get(format!("{}_fake/pages", f.fake.url()))
        .await
        .expect("pages")
        .json()
        .await
        .expect("json");
    assert!(
        pages
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["pairingCode"] == code.as_str()),
        "{pages}"
    );

    // The phone enters it.
    let r = fake_post(
        &f.fake.url(),
        "/_fake/pair",
        serde_json::json!({"code": code, "pushName": "Ana"}),
    )
    .await;
    assert!(r.status().is_success(), "pair: {}", r.status());
    let s = wait_status(&f.api, "s1", "connected by pairing code", T, |s| {
        s.status == Some(SessionState::Connected)
    })
    .await;
    assert_eq!(s.phone_number.as_deref(), Some(PHONE));
    assert_eq!(s.push_name.as_deref(), Some("Ana"));
    assert_eq!(s.pairing_code, None, "a used code is no longer shown");
    assert_eq!(authenticated(&s).as_deref(), Some("True"));
}

/// A kubeconfig for the devcluster API server that authenticates with `token` only.
fn token_kubeconfig(admin: &std::path::Path, token: &str, ns: &str, out: &std::path::Path) {
    let kc = kube::config::Kubeconfig::read_from(admin).expect("admin kubeconfig");
    let cluster = kc
        .clusters
        .first()
        .and_then(|c| c.cluster.clone())
        .expect("a cluster");
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "devcluster", "cluster": {
            "server": cluster.server,
            "certificate-authority-data": cluster.certificate_authority_data,
        }}],
        "users": [{"name": "session-sa", "user": {"token": token}}],
        "contexts": [{"name": "session-sa", "context": {"cluster": "devcluster", "user": "session-sa", "namespace": ns}}],
        "current-context": "session-sa",
    });
    // JSON is YAML: the agent's kube client reads it as a kubeconfig.
    std::fs::write(out, serde_json::to_vec_pretty(&doc).expect("json")).expect("write kubeconfig");
}

#[tokio::test]
async fn session_credentials_cannot_touch_another_sessions_cr() {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    use kube::api::PostParams;

    let c = cluster().await;
    let ns = c.namespace("agent-rbac").await;
    let api = create_session(c, &ns, "a").await;
    create_session(c, &ns, "b").await;
    let a = api.get("a").await.expect("CR a");
    let b_before = api.get("b").await.expect("CR b");

    // Session A's ServiceAccount, Role and RoleBinding, built by the operator's own code.
    let client = c.client();
    let pp = PostParams::default();
    let sa = operator::children::service_account(&a).expect("sa");
    let sa_name = sa.metadata.name.clone().expect("name");
    kube::Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .create(&pp, &sa)
        .await
        .expect("create SA");
    kube::Api::<Role>::namespaced(client.clone(), &ns)
        .create(&pp, &operator::children::role(&a).expect("role"))
        .await
        .expect("create Role");
    kube::Api::<RoleBinding>::namespaced(client.clone(), &ns)
        .create(&pp, &operator::children::role_binding(&a).expect("binding"))
        .await
        .expect("create RoleBinding");
    let req = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let issued: TokenRequest = kube::Api::<ServiceAccount>::namespaced(client, &ns)
        .create_subresource("token", &sa_name, &pp, &req)
        .await
        .expect("TokenRequest");
    let token = issued.status.expect("token status").token;
    let tmp = tempfile::tempdir().expect("tmp");
    let kubeconfig = tmp.path().join("session-a.kubeconfig");
    token_kubeconfig(&c.kubeconfig(), &token, &ns, &kubeconfig);

    let fake = fake(Duration::from_secs(20), Duration::from_secs(20), 6).await;
    // A's credentials pointed at B: refused, reported, and B untouched.
    let b_data = tmp.path().join("b");
    let mut agent_b = wa_session().start(AgentOpts {
        ns: &ns,
        name: "b",
        url: &fake.url(),
        data_dir: &b_data,
        kubeconfig: kubeconfig.clone(),
        extra_env: vec![],
    });
    let exit = agent_b.exited(Duration::from_secs(30)).await;
    let log = agent_b.log_text();
    eprintln!("agent for B with A's credentials:\n{log}");
    assert!(
        !exit.success(),
        "the agent must not run without access to its CR: {exit:?}\n{log}"
    );
    let refused = format!("access to WhatsAppSession {ns}/b refused (HTTP 403)");
    assert!(
        log.contains(&refused),
        "the log says why ({refused}):\n{log}"
    );
    assert!(
        log.contains(&format!("system:serviceaccount:{ns}:{sa_name}")),
        "and as whom:\n{log}"
    );
    assert!(
        !b_data.join("profile").exists(),
        "no Chromium was started for B"
    );
    let b_after = api.get("b").await.expect("CR b");
    assert_eq!(b_after.status, b_before.status, "B's status unchanged");
    assert_eq!(
        b_after.metadata.resource_version, b_before.metadata.resource_version,
        "B not written at all"
    );
    let managers: Vec<_> = b_after
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        !managers.iter().any(|m| m == crds::managers::AGENT),
        "no wa-agent fields on B: {managers:?}"
    );

    // Not the agent's restraint only: the API server refuses these credentials a write to B.
    let sa_config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig).expect("read"),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .expect("SA config");
    let as_a = kube::Api::<crds::WhatsAppSession>::namespaced(
        kube::Client::try_from(sa_config).expect("SA client"),
        &ns,
    );
    let connected = crds::WhatsAppSessionStatus {
        status: Some(SessionState::Connected),
        ..Default::default()
    };
    match crds::SessionApply::status("b", connected)
        .apply(&as_a, crds::Writer::Agent)
        .await
    {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 403, "{e:?}"),
        other => panic!("A's credentials wrote B's status: {other:?}"),
    }

    // The same credentials do work for A (so the refusal above is about B, not a broken token).
    let agent_a = wa_session().start(AgentOpts {
        ns: &ns,
        name: "a",
        url: &fake.url(),
        data_dir: &tmp.path().join("a"),
        kubeconfig: kubeconfig.clone(),
        extra_env: vec![],
    });
    let s = wait_status(
        &api,
        "a",
        "A's first QR published with A's credentials",
        T,
        |s| s.qr.is_some(),
    )
    .await;
    assert_eq!(s.status, Some(SessionState::QrRequired));
    let a_now = api.get("a").await.expect("CR a");
    let agent_fields = a_now
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .find(|m| m.manager.as_deref() == Some(crds::managers::AGENT));
    assert_eq!(
        agent_fields.and_then(|m| m.subresource.as_deref()),
        Some("status"),
        "A's status written by wa-agent"
    );
    drop(agent_a);

    // And while A's agent ran, B still was never written.
    assert_eq!(
        api.get("b").await.expect("CR b").metadata.resource_version,
        b_before.metadata.resource_version
    );
}

#[tokio::test]
async fn chromium_runs_the_real_binary_with_the_low_memory_flags() {
    let f = Fixture::new("agent-flags").await;
    let agent = f.agent();
    wait_status(&f.api, "s1", "first QR", T, |s| s.qr.is_some()).await;
    let pids = agent.chromium_pids();
    let browser = pids
        .iter()
        .copied()
        .find(|p| chromium_kind(*p) == "browser")
        .expect("the browser process");
    let args = cmdline(browser);
    // Debian's launcher script (/usr/bin/chromium) would add flags of its own from /etc/chromium.d.
    let exe = std::fs::read_link(format!("/proc/{browser}/exe")).expect("exe");
    if std::path::Path::new("/usr/lib/chromium/chromium").is_file()
        && std::env::var_os("CHROMIUM_PATH").is_none()
    {
        assert_eq!(exe, std::path::PathBuf::from("/usr/lib/chromium/chromium"));
        assert_eq!(args[0], "/usr/lib/chromium/chromium");
    }
    for wrapper_flag in [
        "--enable-gpu-rasterization",
        "--enable-remote-extensions",
        "--show-component-extension-options",
    ] {
        assert!(
            !args.iter().any(|a| a.starts_with(wrapper_flag)),
            "{wrapper_flag} from the launcher script: {args:?}"
        );
    }
    // Each flag as Chromium sees it (chromiumoxide adds the dashes: "----x" would be ignored).
    for flag in [
        "--headless",
        "--no-sandbox",
        "--no-zygote",
        "--renderer-process-limit=1",
        "--disable-site-isolation-trials",
        "--in-process-gpu",
        "--enable-features=NetworkServiceInProcess2",
        "--disable-gpu",
        "--disable-extensions",
        "--disable-background-networking",
        "--js-flags=--max-old-space-size=512",
        "--disable-blink-features=AutomationControlled",
    ] {
        assert!(args.iter().any(|a| a == flag), "{flag} missing: {args:?}");
    }
    let disabled = args
        .iter()
        .find_map(|a| a.strip_prefix("--disable-features="))
        .expect("--disable-features");
    for feature in [
        "IsolateOrigins",
        "site-per-process",
        "SpareRendererForSitePerProcess",
        "PreloadTopChromeWebUI",
        "WebUIOmniboxPopup",
        "WebUIOmniboxAimPopup",
    ] {
        assert!(
            disabled.split(',').any(|f| f == feature),
            "{feature} not disabled: {disabled}"
        );
    }
    assert!(
        !args.iter().any(|a| a.starts_with("----")),
        "a flag passed with its dashes: {args:?}"
    );
    // What the flags are for: no GPU or network-service processes, one renderer.
    let kinds: Vec<String> = pids.iter().map(|p| chromium_kind(*p)).collect();
    assert!(
        !kinds
            .iter()
            .any(|k| k == "gpu-process" || k.contains("NetworkService")),
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| *k == "renderer").count(),
        1,
        "{kinds:?}"
    );
    // The agent drives the tab Chromium opened at launch (no Target.createTarget): one tab,
    // on WhatsApp Web, as Chromium's own DevTools HTTP endpoint lists them.
    let active = std::fs::read_to_string(agent.profile().join("DevToolsActivePort"))
        .expect("DevToolsActivePort");
    let port = active.lines().next().expect("port line").trim();
    let targets: Vec<serde_json::Value> =
        reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
            .await
            .expect("/json/list")
            .json()
            .await
            .expect("json");
    let tabs: Vec<&str> = targets
        .iter()
        .filter(|t| t["type"] == "page")
        .filter_map(|t| t["url"].as_str())
        .collect();
    assert_eq!(tabs.len(), 1, "{targets:?}");
    assert!(tabs[0].starts_with(&f.fake.url()), "{tabs:?}");
    // Started at WhatsApp Web (no proxy credentials): its load overlaps Chromium's start.
    let start: Vec<&str> = args
        .iter()
        .rev()
        .take(2)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(start[0], "--", "{args:?}");
    assert!(start[1].starts_with(&f.fake.url()), "{args:?}");
}

fn receiving(s: &crds::WhatsAppSessionStatus) -> Option<(String, String)> {
    s.conditions
        .iter()
        .find(|c| c.type_ == ConditionType::Receiving.as_str())
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// A linked page's messages reach the agent: its listeners attach (condition Receiving True),
/// and a contact's message, the phone's own and an ack injected through the fake's control API
/// are each reported by the page (counted on /metrics).
#[tokio::test]
async fn a_linked_page_reports_its_messages() {
    let (f, agent) = Fixture::connected("agent-msg").await;
    let s = wait_status(&f.api, "s1", "Receiving True", T, |s| {
        receiving(s).is_some_and(|c| c.0 == "True")
    })
    .await;
    assert_eq!(receiving(&s).map(|c| c.1).as_deref(), Some("Listening"));
    until_metric(&agent.http, "wa_session_message_listeners 1").await;
    let r = fake_post(
        &f.fake.url(),
        "/_fake/messages/incoming",
        serde_json::json!({"to": PHONE, "from": "5491155556666", "body": "¿precio?"}),
    )
    .await;
    assert!(r.status().is_success(), "{}", r.status());
    until_metric(&agent.http, "wa_session_message_events_total 1").await;
    let r = fake_post(
        &f.fake.url(),
        "/_fake/messages/outgoing",
        serde_json::json!({"phone": PHONE, "to": "5491155556666", "body": "hola"}),
    )
    .await;
    let key = r.json::<serde_json::Value>().await.expect("json")["key"].clone();
    until_metric(&agent.http, "wa_session_message_events_total 2").await;
    let r = fake_post(
        &f.fake.url(),
        "/_fake/messages/ack",
        serde_json::json!({"id": key, "ack": 3}),
    )
    .await;
    assert!(r.status().is_success(), "{}", r.status());
    until_metric(&agent.http, "wa_session_message_events_total 3").await;
}

/// WhatsApp Web renamed the message collection's module (as in February 2026, WAHA #1887):
/// the session is linked but cannot receive, and says so — condition Receiving False,
/// lastError MESSAGES_NOT_RECEIVED, wa_session_message_listeners 0 — instead of looking healthy.
#[tokio::test]
async fn a_linked_session_that_cannot_receive_says_so() {
    let fake = fake_whatsapp::FakeWhatsApp::start_with(
        "127.0.0.1:0".parse().expect("addr"),
        fake_whatsapp::Timings::fast(Duration::from_secs(20), 6),
        fake_whatsapp::PageConfig {
            without_modules: vec!["WAWebCollections".into()],
            ..Default::default()
        },
    )
    .await
    .expect("fake");
    let f = Fixture::with("agent-norecv", fake, crds::WhatsAppSessionSpec::default()).await;
    let agent = f.agent();
    let s = wait_status(&f.api, "s1", "first QR", T, |s| s.qr.is_some()).await;
    scan(&f.fake.url(), s.qr.as_deref().expect("qr")).await;
    let s = wait_status(&f.api, "s1", "Receiving False", T, |s| {
        receiving(s).is_some_and(|c| c.0 == "False")
    })
    .await;
    assert_eq!(
        s.status,
        Some(SessionState::Connected),
        "linked all the same"
    );
    assert_eq!(
        receiving(&s).map(|c| c.1).as_deref(),
        Some("MessageListenersMissing")
    );
    assert_eq!(code(&s), Some(error_codes::MESSAGES_NOT_RECEIVED));
    let message = s
        .last_error
        .as_ref()
        .map(|e| e.message.clone())
        .unwrap_or_default();
    assert!(message.contains("WAWebCollections"), "{message}");
    until_metric(&agent.http, "wa_session_message_listeners 0").await;
}
