//! `kubectl whatsapp` against devcluster's API server (RBAC on), the real session agent with
//! real Chromium, and the fake WhatsApp Web: the plugin binary is run as a user runs it, with a
//! kubeconfig and a locale, and judged by its output and exit code.

mod support;

use std::time::Duration;

use crds::{DesiredState, WhatsAppSession, WhatsAppSessionSpec};
use devcluster_testing::wait_for_value;
use fake_whatsapp::{FakeWhatsApp, Timings};
use kube::Api;
use support::terminal_qr::{decode, modules_from_plain, plain_frames};
use support::*;
use tokio::io::AsyncBufReadExt;

const PHONE: &str = "5491144556677";
const ES: &str = "es_AR.UTF-8";
const EN: &str = "en_US.UTF-8";

/// The phones of the devices the fake has linked (`GET /_fake/devices`).
async fn devices(http: &reqwest::Client, fake: &str) -> Vec<String> {
    let list: serde_json::Value = http
        .get(format!("{}/_fake/devices", fake.trim_end_matches('/')))
        .send()
        .await
        .expect("devices")
        .json()
        .await
        .expect("devices json");
    list.as_array()
        .expect("a list")
        .iter()
        .filter_map(|d| d["phone"].as_str().map(String::from))
        .collect()
}

/// Who manages a spec field, by managedFields.
fn managers_of(s: &WhatsAppSession, field: &str) -> Vec<String> {
    s.metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .is_some_and(|f| f.0["f:spec"].get(format!("f:{field}")).is_some())
        })
        .filter_map(|m| m.manager.clone())
        .collect()
}

/// The QR drawn by `qr` decodes to what the agent published; the plugin redraws as the QR
/// rotates; a phone scanning the drawn QR (through the fake) links the session and the plugin
/// ends 0 with the phone number. Then, on the linked session: `wait`, `status`, `list`,
/// `connect` (nothing to ask), `logout` (the agent acts on it) and a `wait` that times out.
#[tokio::test]
async fn qr_draws_the_rotating_qr_until_a_phone_scans_it_and_exits_with_the_phone() {
    let c = cluster().await;
    let ns = c.namespace("kwa-qr").await;
    // Stopped: `qr` must start it and ask for a QR itself.
    let api = create_session(
        c,
        &ns,
        "ventas",
        WhatsAppSessionSpec {
            desired_state: DesiredState::Stopped,
            ..Default::default()
        },
    )
    .await;
    // QRs of 6 s, so two are seen within seconds and a decoded one is still valid when scanned
    let fake = FakeWhatsApp::start(
        "127.0.0.1:0".parse().unwrap(),
        Timings::fast(Duration::from_secs(6), 6),
    )
    .await
    .expect("the fake starts");
    let tmp = tempfile::tempdir().unwrap();
    let _agent = start_agent(
        c,
        &ns,
        "ventas",
        &fake.url(),
        &tmp.path().join("data"),
        "6s",
    );
    let kc = c.kubeconfig();

    let started = std::time::Instant::now();
    let mut child = plugin_command(&kc, ES, &["qr", "ventas", "-n", &ns, "--timeout=3m"])
        .spawn()
        .expect("spawn qr");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            let _ = tx.send(l);
        }
    });
    let mut output = String::new();
    // Every frame drawn so far, decoded; two different ones = a redraw on rotation.
    let mut decoded: Vec<String> = Vec::new();
    let http = reqwest::Client::new();
    // The phone scans the newest QR as drawn, once two different ones were (a redraw on
    // rotation). A loaded machine may let the page rotate between drawing and scanning (404/410
    // from the fake): then the next drawn QR is scanned, as a person would, at most 3 times.
    let mut scans = 0;
    let mut first_two = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(150);
    loop {
        let line = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no scannable QR within 150 s; output so far:\n{output}"))
            .unwrap_or_else(|| panic!("qr ended before a scan; output:\n{output}"));
        output.push_str(&line);
        output.push('\n');
        // each frame ends with a blank line
        if !line.is_empty() {
            continue;
        }
        let before = decoded.len();
        let frames = plain_frames(&output);
        for f in &frames[decoded.len()..] {
            let text = decode(&modules_from_plain(f, false))
                .unwrap_or_else(|| panic!("a drawn QR does not decode:\n{}", f.join("\n")));
            decoded.push(text);
        }
        let rotated = decoded.len() >= 2 && decoded[decoded.len() - 1] != decoded[0];
        if decoded.len() == before || !rotated {
            continue;
        }
        first_two.get_or_insert(started.elapsed());
        let qr = decoded.last().cloned().unwrap_or_default();
        let r = http
            .post(format!("{}/_fake/scan", fake.url().trim_end_matches('/')))
            .json(&serde_json::json!({"qr": qr, "phone": PHONE, "pushName": "Ana"}))
            .send()
            .await
            .expect("scan");
        scans += 1;
        let code = r.status();
        if code.is_success() {
            break;
        }
        assert!(
            [404, 410].contains(&code.as_u16()) && scans < 3,
            "scan {scans} of the drawn QR: {code} {}",
            r.text().await.unwrap_or_default()
        );
    }
    let first_two = first_two.unwrap_or_default();
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("qr ends within 60 s of the scan")
        .expect("wait for qr");
    // the last lines, up to the pipe's end
    while let Ok(Some(l)) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
        output.push_str(&l);
        output.push('\n');
    }
    assert!(
        status.success(),
        "qr exit status {status}; output:\n{output}"
    );
    let last = output.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        format!("Conectado: +{PHONE} (Ana) — sesión {ns}/ventas"),
        "output:\n{output}"
    );
    assert!(
        output.contains("Escanee con WhatsApp en el teléfono"),
        "Spanish from LANG: {output}"
    );
    eprintln!(
        "qr: {} QRs drawn and decoded, two different within {first_two:?}, {scans} scan(s), connected {:?} after start",
        decoded.len(),
        started.elapsed()
    );

    // The fake holds the linked device.
    assert_eq!(devices(&http, &fake.url()).await, [PHONE.to_string()]);

    // What it wrote: the hub's requests, as its own field manager.
    let s = api.get("ventas").await.unwrap();
    assert_eq!(s.spec.desired_state, DesiredState::Running);
    let asked = s
        .spec
        .qr_requested_at
        .clone()
        .expect("qrRequestedAt written");
    assert_eq!(
        s.status
            .as_ref()
            .and_then(|st| st.handled.as_ref())
            .and_then(|h| h.qr_requested_at.clone()),
        Some(asked.clone()),
        "the agent acted on the plugin's QR request"
    );
    assert!(
        managers_of(&s, "qrRequestedAt").contains(&"kubectl-whatsapp".to_string()),
        "{:?}",
        s.metadata.managed_fields
    );

    // wait, status, list on the linked session
    let out = plugin(
        &kc,
        EN,
        &[
            "wait",
            "ventas",
            "-n",
            &ns,
            "--for=connected",
            "--timeout=20s",
        ],
    )
    .await;
    assert_eq!(
        ok(&out),
        format!("session {ns}/ventas: connected +{PHONE}\n")
    );
    let out = ok(&plugin(&kc, EN, &["status", "ventas", "-n", &ns]).await);
    assert!(
        out.contains("Status:") && out.contains("connected (connected)"),
        "{out}"
    );
    assert!(out.contains(&format!("+{PHONE}")), "{out}");
    assert!(out.contains("Authenticated=True"), "{out}");
    let out = ok(&plugin(&kc, ES, &["list", "-n", &ns]).await);
    let row = out
        .lines()
        .find(|l| l.starts_with("ventas"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        row.contains("conectado") && row.contains(&format!("+{PHONE}")),
        "{out}"
    );
    // connect on a linked session asks for nothing
    let out = ok(&plugin(&kc, EN, &["connect", "ventas", "-n", &ns]).await);
    assert!(out.starts_with("The session is already connected"), "{out}");
    assert_eq!(
        api.get("ventas").await.unwrap().spec.qr_requested_at,
        Some(asked)
    );

    // a wait that cannot be met times out with exit code 1
    let out = plugin(
        &kc,
        ES,
        &[
            "wait",
            "ventas",
            "-n",
            &ns,
            "--for=qr_required",
            "--timeout=2s",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: se agotó el tiempo (2s) esperando que la sesión ventas llegue a «qr_required»\n"
    );

    // logout: the agent logs out on the plugin's request
    let out = ok(&plugin(&kc, ES, &["logout", "ventas", "-n", &ns]).await);
    assert!(out.starts_with("Cierre de sesión solicitado"), "{out}");
    let out = plugin(
        &kc,
        EN,
        &[
            "wait",
            "ventas",
            "-n",
            &ns,
            "--for=disconnected",
            "--timeout=60s",
        ],
    )
    .await;
    assert_eq!(ok(&out), format!("session {ns}/ventas: disconnected\n"));
    let s = api.get("ventas").await.unwrap();
    let logout = s
        .spec
        .logout_requested_at
        .clone()
        .expect("logoutRequestedAt written");
    assert_eq!(
        s.status
            .and_then(|st| st.handled)
            .and_then(|h| h.logout_requested_at),
        Some(logout)
    );
    let phones = devices(&http, &fake.url()).await;
    assert!(
        !phones.contains(&PHONE.to_string()),
        "the fake forgot the device after the logout: {phones:?}"
    );
}

/// `stop`, `start`, `connect` and `logout` write the spec requests the hub writes, keeping the
/// others; a second `connect` while the first request is pending writes nothing. The first
/// command goes through kubectl's plugin mechanism.
#[tokio::test]
async fn stop_start_connect_and_logout_write_the_hubs_spec_requests() {
    let c = cluster().await;
    let ns = c.namespace("kwa-writes").await;
    let api = create_session(c, &ns, "s1", WhatsAppSessionSpec::default()).await;
    let kc = c.kubeconfig();
    let get = || async { api.get("s1").await.unwrap() };

    // run as `kubectl whatsapp`, kubectl finding the plugin on PATH
    let out = ok(&through_kubectl(&kc, ES, &["stop", "s1", "-n", &ns]).await);
    assert_eq!(
        out,
        format!("Sesión {ns}/s1 detenida (sin pod; los datos se conservan).\n")
    );
    assert_eq!(get().await.spec.desired_state, DesiredState::Stopped);
    let out = ok(&plugin(&kc, EN, &["start", "s1", "-n", &ns]).await);
    assert_eq!(
        out,
        format!("Session {ns}/s1 started (desiredState=Running).\n")
    );
    assert_eq!(get().await.spec.desired_state, DesiredState::Running);

    ok(&plugin(&kc, EN, &["stop", "s1", "-n", &ns]).await);
    let out = ok(&plugin(&kc, EN, &["connect", "s1", "-n", &ns]).await);
    assert_eq!(
        out,
        format!("QR requested for session {ns}/s1: kubectl whatsapp qr s1 -n {ns}\n")
    );
    let s = get().await;
    assert_eq!(
        s.spec.desired_state,
        DesiredState::Running,
        "connect starts a stopped session"
    );
    let asked = s.spec.qr_requested_at.clone().expect("qrRequestedAt");
    // nobody handles it here (no agent): a second connect leaves the pending request alone
    let out = ok(&plugin(&kc, EN, &["connect", "s1", "-n", &ns]).await);
    assert!(out.starts_with("A QR was already requested"), "{out}");
    assert_eq!(get().await.spec.qr_requested_at, Some(asked.clone()));

    ok(&plugin(&kc, EN, &["logout", "s1", "-n", &ns]).await);
    let s = get().await;
    assert!(s.spec.logout_requested_at.is_some());
    assert_eq!(
        s.spec.qr_requested_at,
        Some(asked),
        "logout keeps the QR request"
    );
    assert_eq!(s.spec.tenant, "acme");
    for field in ["desiredState", "qrRequestedAt", "logoutRequestedAt"] {
        assert!(
            managers_of(&s, field).contains(&"kubectl-whatsapp".to_string()),
            "{field}: {:?}",
            s.metadata.managed_fields
        );
    }
}

/// An unknown session is named with its namespace; a user whose RBAC does not allow the call is
/// told so, with the verb and the resource: nothing at all in the namespace (list), read-only
/// (patch), rights in another namespace only (get, watch).
#[tokio::test]
async fn unknown_sessions_and_forbidden_namespaces_give_clear_errors() {
    let c = cluster().await;
    let ns = c.namespace("kwa-errors").await;
    let other = c.namespace("kwa-other").await;
    let kc = c.kubeconfig();
    for args in [
        vec!["status", "nope"],
        vec!["qr", "nope"],
        vec!["stop", "nope"],
        vec!["wait", "nope", "--for=connected"],
    ] {
        let mut a = args.clone();
        a.extend(["-n", ns.as_str()]);
        let out = plugin(&kc, ES, &a).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(
            stderr(&out),
            format!("error: no existe la sesión nope en el espacio de nombres {ns}\n"),
            "{args:?}"
        );
    }
    let out = plugin(&kc, EN, &["status", "nope", "-n", &ns]).await;
    assert_eq!(
        stderr(&out),
        format!("error: session nope does not exist in namespace {ns}\n")
    );

    // a ServiceAccount with no rights; one that may read sessions in `ns` only
    create_session(c, &ns, "s1", WhatsAppSessionSpec::default()).await;
    ok(&c
        .kubectl(&["create", "serviceaccount", "nobody", "-n", &ns])
        .await);
    ok(&c
        .kubectl(&["create", "serviceaccount", "reader", "-n", &ns])
        .await);
    ok(&c
        .kubectl(&[
            "create",
            "role",
            "sessions-reader",
            "-n",
            &ns,
            "--verb=get,list,watch",
            "--resource=whatsappsessions.whatsapp.leadmaster.io",
        ])
        .await);
    ok(&c
        .kubectl(&[
            "create",
            "rolebinding",
            "reader",
            "-n",
            &ns,
            "--role=sessions-reader",
            &format!("--serviceaccount={ns}:reader"),
        ])
        .await);
    let tmp = tempfile::tempdir().unwrap();
    let nobody = service_account_kubeconfig(c, &ns, "nobody", tmp.path()).await;
    let reader = service_account_kubeconfig(c, &ns, "reader", tmp.path()).await;

    let out = plugin(&nobody, ES, &["list", "-n", &ns]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("error: RBAC no permite «list» sobre whatsappsessions.whatsapp.leadmaster.io en el espacio de nombres {ns}")),
        "{err}"
    );
    assert!(
        err.contains(&format!("system:serviceaccount:{ns}:nobody")),
        "the server's words name the user: {err}"
    );

    // a new binding takes effect within moments (the authorizer's informers): wait for it
    wait_for_value(
        "the reader's binding in force",
        Duration::from_secs(30),
        || async {
            plugin(&reader, EN, &["status", "s1", "-n", &ns])
                .await
                .status
                .success()
                .then_some(())
        },
    )
    .await;
    let out = plugin(&reader, EN, &["stop", "s1", "-n", &ns]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with(&format!(
            "error: RBAC forbids patch on whatsappsessions.whatsapp.leadmaster.io in namespace {ns}"
        )),
        "{}",
        stderr(&out)
    );
    let s: WhatsAppSession = Api::namespaced(c.client(), &ns).get("s1").await.unwrap();
    assert_eq!(
        s.spec.desired_state,
        DesiredState::Running,
        "nothing written"
    );
    // in a namespace where it has no rights
    let out = plugin(&reader, ES, &["status", "s1", "-n", &other]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with(&format!("error: RBAC no permite «get» sobre whatsappsessions.whatsapp.leadmaster.io en el espacio de nombres {other}")),
        "{}",
        stderr(&out)
    );
    let out = plugin(&reader, EN, &["list", "-A"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .starts_with("error: RBAC forbids list on whatsappsessions.whatsapp.leadmaster.io"),
        "{}",
        stderr(&out)
    );
}
