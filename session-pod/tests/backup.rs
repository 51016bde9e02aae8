//! Backups of the login (docs/session-agent.md "Backups") through the real parts: the agent
//! binary, real Chromium, the fake WhatsApp Web (which keeps its login in IndexedDB, like the
//! real page) and the devcluster API server holding the WhatsAppSession.

#[path = "support/devices.rs"]
mod devices;
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crds::testing::{request, wait_status};
use crds::{ConditionType, QrStatus, SessionState, error_codes};
use devcluster_testing::agent::{Agent, AgentOpts};
use devcluster_testing::{TestCluster, wait_for_named};
use devices::fake_devices;
use support::*;

const T: Duration = Duration::from_secs(60);

struct Fixture {
    c: &'static TestCluster,
    ns: String,
    api: kube::Api<crds::WhatsAppSession>,
    fake: fake_whatsapp::FakeWhatsApp,
    tmp: tempfile::TempDir,
}

impl Fixture {
    /// A linked session: its agent running, connected, and its first backup taken.
    async fn linked(prefix: &str) -> (Self, Agent) {
        let c = cluster().await;
        let ns = c.namespace(prefix).await;
        let api = create_session(c, &ns, "s1").await;
        let fake = fake(Duration::from_secs(20), Duration::from_secs(20), 6).await;
        let f = Self {
            c,
            ns,
            api,
            fake,
            tmp: tempfile::tempdir().expect("tmp"),
        };
        let agent = f.agent();
        let s = wait_status(&f.api, "s1", "first QR", T, |s| s.qr.is_some()).await;
        scan(&f.fake.url(), s.qr.as_deref().expect("qr")).await;
        wait_status(&f.api, "s1", "connected", T, |s| {
            s.status == Some(SessionState::Connected)
        })
        .await;
        f.wait_for_backups(1).await;
        (f, agent)
    }

    fn data(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    fn agent(&self) -> Agent {
        let data = self.data();
        wa_session().start(AgentOpts {
            ns: &self.ns,
            name: "s1",
            url: &self.fake.url(),
            data_dir: &data,
            kubeconfig: self.c.kubeconfig(),
            // The fake writes its login right after CONNECTED; half a second is plenty.
            extra_env: vec![("WA_BACKUP_SETTLE", "500ms".into())],
        })
    }

    /// The sealed copies on the volume (`backups/<unix-ms>/` with a manifest).
    fn backups(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.data().join("backups")) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("manifest.json").is_file())
            .collect()
    }

    async fn wait_for_backups(&self, n: usize) {
        wait_for_named(&format!("{n} backup(s) taken"), T, || async {
            self.backups().len() >= n
        })
        .await;
    }

    fn live_idb(&self) -> PathBuf {
        self.data().join("profile/Default/IndexedDB")
    }
}

/// Overwrites every LevelDB file under `dir` (IndexedDB's `*.log`, `*.ldb`, `MANIFEST-*`,
/// `CURRENT`) with garbage of the same size, as a torn disk write or a bad sector would.
fn garble(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "LOCK" || name.starts_with("LOG") {
                continue;
            }
            let len = std::fs::metadata(&p).expect("meta").len() as usize;
            let junk: Vec<u8> = (0..len.max(1)).map(|i| (i * 7 + 13) as u8 ^ 0x5a).collect();
            std::fs::write(&p, junk).expect("garble");
            n += 1;
        }
    }
    assert!(n > 0, "nothing to garble under {}", dir.display());
    n
}

/// Every file under `dir` with its content (to compare stores).
fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).expect("under").display().to_string();
                out.push((rel, std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

async fn metrics(agent: &Agent) -> String {
    reqwest::get(format!("{}/metrics", agent.http))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// The value of a metric line (`name{labels}`), 0 when absent.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn authenticated_reason(s: &crds::WhatsAppSessionStatus) -> Option<String> {
    s.conditions
        .iter()
        .find(|c| c.type_ == ConditionType::Authenticated.as_str())
        .map(|c| c.reason.clone())
}

#[tokio::test]
async fn a_corrupted_login_store_comes_back_from_the_backup_without_a_qr() {
    let (f, agent) = Fixture::linked("backup-restore").await;
    // The copy is on disk before the loop records it (at its next turn): wait for the metric.
    wait_for_named("backup counted", T, || async {
        metric(
            &metrics(&agent).await,
            "wa_session_backups_total{result=\"taken\"}",
        ) == 1.0
    })
    .await;
    let m = metrics(&agent).await;
    assert!(metric(&m, "wa_session_backup_bytes") > 0.0, "{m}");
    for line in agent
        .log_text()
        .lines()
        .filter(|l| l.contains("backup of the login taken"))
    {
        eprintln!("{line}");
    }
    let exit = agent.terminate(Duration::from_secs(25)).await;
    assert!(exit.success(), "clean exit: {exit:?}");

    // The pod is stopped: the login store on the volume gets damaged.
    let garbled = garble(&f.live_idb());
    let damaged = contents(&f.live_idb());
    eprintln!("garbled {garbled} files of the live IndexedDB");

    let started = std::time::Instant::now();
    let agent = f.agent();
    let s = wait_status(&f.api, "s1", "connected again", T, |s| {
        s.status == Some(SessionState::Connected)
    })
    .await;
    eprintln!("start → connected from the backup: {:?}", started.elapsed());
    assert_eq!(s.phone_number.as_deref(), Some(PHONE));
    assert_eq!(
        authenticated_reason(&s).as_deref(),
        Some("RestoredFromBackup"),
        "the status says where the login came from: {s:?}"
    );
    assert_eq!(s.qr, None);
    let m = metrics(&agent).await;
    assert_eq!(
        metric(&m, "wa_session_qr_published_total"),
        0.0,
        "no QR was ever published by this agent: {m}"
    );
    assert_eq!(
        metric(&m, "wa_session_restores_total{result=\"restored\"}"),
        1.0,
        "{m}"
    );
    assert_ne!(
        contents(&f.live_idb()),
        damaged,
        "the damaged store was replaced"
    );
    let log = agent.log_text();
    assert!(
        log.contains("the profile lost the login: restored it from the backup"),
        "{log}"
    );
    // The phone still has one device, held by the live page.
    let devices = fake_devices(&f.fake.url()).await;
    assert_eq!(devices.as_array().map(|a| a.len()), Some(1), "{devices}");
    assert_eq!(devices[0]["connected"], true, "{devices}");
}

#[tokio::test]
async fn logout_and_unlink_leave_no_backup() {
    let (f, agent) = Fixture::linked("backup-logout").await;
    let requested = request(&f.api, "s1", "logoutRequestedAt").await;
    wait_status(&f.api, "s1", "logged out", T, |s| {
        s.status == Some(SessionState::Disconnected)
            && s.handled
                .as_ref()
                .and_then(|h| h.logout_requested_at.as_ref())
                == Some(&requested)
    })
    .await;
    assert!(f.backups().is_empty(), "logout deleted the backups");
    assert!(!f.data().join("backups").exists());

    // Linked again, then unlinked from the phone.
    request(&f.api, "s1", "qrRequestedAt").await;
    let s = wait_status(&f.api, "s1", "QR of a new login", T, |s| {
        s.qr_status == Some(QrStatus::Generated)
    })
    .await;
    scan(&f.fake.url(), s.qr.as_deref().expect("qr")).await;
    wait_status(&f.api, "s1", "connected", T, |s| {
        s.status == Some(SessionState::Connected)
    })
    .await;
    f.wait_for_backups(1).await;
    let r = fake_post(
        &f.fake.url(),
        "/_fake/unlink",
        serde_json::json!({ "phone": PHONE }),
    )
    .await;
    assert!(r.status().is_success());
    wait_status(&f.api, "s1", "unlinked", T, |s| {
        s.status == Some(SessionState::Disconnected)
            && s.last_error.as_ref().map(|e| e.code.as_str())
                == Some(error_codes::LOGGED_OUT_REMOTELY)
    })
    .await;
    assert!(f.backups().is_empty(), "unlink deleted the backups");
    drop(agent);
}

#[tokio::test]
async fn a_damaged_backup_is_never_restored() {
    let (f, agent) = Fixture::linked("backup-damaged").await;
    let exit = agent.terminate(Duration::from_secs(25)).await;
    assert!(exit.success(), "clean exit: {exit:?}");
    for copy in f.backups() {
        garble(&copy.join("files"));
    }

    // A good profile: connected from it, the backup not touched.
    let agent = f.agent();
    let s = wait_status(&f.api, "s1", "connected from the profile", T, |s| {
        s.status == Some(SessionState::Connected)
    })
    .await;
    assert_eq!(authenticated_reason(&s).as_deref(), Some("Linked"));
    let m = metrics(&agent).await;
    assert!(!m.contains("wa_session_restores_total{"), "no restore: {m}");
    // This agent takes its own copy of the good login.
    f.wait_for_backups(2).await;
    let exit = agent.terminate(Duration::from_secs(25)).await;
    assert!(exit.success(), "clean exit: {exit:?}");

    // Now the profile is damaged too and every copy is garbage: none is put back; a new
    // login is asked for, saying why.
    for copy in f.backups() {
        garble(&copy.join("files"));
    }
    garble(&f.live_idb());
    let agent = f.agent();
    let s = wait_status(&f.api, "s1", "QR of a new login", T, |s| s.qr.is_some()).await;
    let error = s.last_error.clone().expect("lastError");
    assert_eq!(error.code, error_codes::PROFILE_CORRUPT, "{error:?}");
    assert!(error.message.contains("no usable backup"), "{error:?}");
    let m = metrics(&agent).await;
    assert_eq!(
        metric(&m, "wa_session_restores_total{result=\"no_usable_backup\"}"),
        1.0,
        "{m}"
    );
    assert!(
        f.backups().is_empty(),
        "the damaged copies were deleted, not kept for later"
    );
}
