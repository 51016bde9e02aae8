//! The fake page in real Chromium (Debian's `/usr/bin/chromium`, headless, over CDP): read the
//! way whatsapp-web.js reads the real page.

use std::path::Path;
use std::time::Duration;

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::page::Page;
use fake_whatsapp::{FakeWhatsApp, Generation, Timings};
use futures::StreamExt as _;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

const CHROMIUM: &str = "/usr/bin/chromium";
const WAIT: Duration = Duration::from_secs(15);

struct Chrome {
    browser: Browser,
    handler: JoinHandle<()>,
}

impl Chrome {
    async fn launch(profile: &Path) -> Self {
        let config = BrowserConfig::builder()
            .chrome_executable(CHROMIUM)
            .user_data_dir(profile)
            .no_sandbox()
            .new_headless_mode()
            // chromiumoxide adds the leading `--` itself; a dashed name would reach Chromium as
            // `----name` and be ignored.
            .args([
                "disable-dev-shm-usage",
                "disable-gpu",
                "no-first-run",
                "no-default-browser-check",
            ])
            .build()
            .expect("browser config");
        let (browser, mut handler) = Browser::launch(config).await.expect("launch chromium");
        let handler = tokio::spawn(async move { while handler.next().await.is_some() {} });
        Self { browser, handler }
    }

    async fn open(&self, url: &str) -> Page {
        let page = self
            .browser
            .new_page("about:blank")
            .await
            .expect("new page");
        // Records whether a QR ever appears in this document (a restore must not show one).
        page.evaluate_on_new_document(
            "window.__sawQr = false; new MutationObserver(() => { if (document.querySelector('div[data-ref]')) window.__sawQr = true; })\
             .observe(document, {subtree: true, childList: true});",
        )
        .await
        .expect("init script");
        page.goto(url).await.expect("goto");
        page
    }

    /// Closes Chromium cleanly (the profile is flushed, as on a graceful shutdown).
    async fn close(mut self) {
        let _ = self.browser.close().await;
        let _ = self.browser.wait().await;
        self.handler.abort();
    }
}

/// Runs a statement for its effect.
async fn run(page: &Page, expr: &str) {
    page.evaluate(expr)
        .await
        .unwrap_or_else(|e| panic!("evaluate {expr}: {e}"));
}

async fn eval<T: DeserializeOwned>(page: &Page, expr: &str) -> T {
    page.evaluate(expr)
        .await
        .unwrap_or_else(|e| panic!("evaluate {expr}: {e}"))
        .into_value()
        .expect("value")
}

/// Evaluates `expr` until it returns something other than null/false.
async fn until(page: &Page, what: &str, expr: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        // Errors are expected while a navigation replaces the document.
        if let Ok(Ok(v)) = tokio::time::timeout(Duration::from_secs(5), page.evaluate(expr)).await
            && let Ok(v) = v.into_value::<Value>()
            && !v.is_null()
            && v != Value::Bool(false)
        {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what} ({expr})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const STATE: &str =
    "window.Debug?.VERSION ? window.require('WAWebSocketModel').Socket.state : null";

async fn until_state(page: &Page, state: &str) {
    until(page, state, &format!("({STATE}) === '{state}'")).await;
}

/// The QR exactly as whatsapp-web.js 1.34.7 builds it on the newest generation (src/Client.js
/// inject(), lines 246-272; AuthStore.js 12-19): the ADV secret from the synchronous
/// `WAWebUserPrefsMultiDevice.getADVSecretKey()`.
const WWJS_QR: &str = r#"(async () => {
    const AuthStore = {
        Conn: window.require('WAWebConnModel').Conn,
        Base64Tools: window.require('WABase64'),
        RegistrationUtils: {
            ...window.require('WAWebCompanionRegClientUtils'),
            ...window.require('WAWebUserPrefsInfoStore'),
            ...window.require('WAWebSignalStoreApi'),
        },
    };
    const registrationInfo = await AuthStore.RegistrationUtils.waSignalStore.getRegistrationInfo();
    const noiseKeyPair = await AuthStore.RegistrationUtils.waNoiseInfo.get();
    const staticKeyB64 = AuthStore.Base64Tools.encodeB64(noiseKeyPair.staticKeyPair.pubKey);
    const identityKeyB64 = AuthStore.Base64Tools.encodeB64(registrationInfo.identityKeyPair.pubKey);
    const platform = AuthStore.RegistrationUtils.DEVICE_PLATFORM;
    return AuthStore.Conn.ref + ',' + staticKeyB64 + ',' + identityKeyB64 + ',' +
        window.require('WAWebUserPrefsMultiDevice').getADVSecretKey() + ',' + platform;
})()"#;

/// The QR as whatsapp-web.js 1.34.6 builds it on the 2026-03 generation (src/Client.js:190-200):
/// the ADV secret from the async `WAWebAdvSignatureApi.getADVSecretKey()`.
const WWJS_1_34_6_QR: &str = r#"(async () => {
    const RegistrationUtils = {
        ...window.require('WAWebCompanionRegClientUtils'),
        ...window.require('WAWebAdvSignatureApi'),
        ...window.require('WAWebUserPrefsInfoStore'),
        ...window.require('WAWebSignalStoreApi'),
    };
    const registrationInfo = await RegistrationUtils.waSignalStore.getRegistrationInfo();
    const noiseKeyPair = await RegistrationUtils.waNoiseInfo.get();
    const B64 = window.require('WABase64');
    return window.require('WAWebConnModel').Conn.ref + ',' + B64.encodeB64(noiseKeyPair.staticKeyPair.pubKey) + ',' +
        B64.encodeB64(registrationInfo.identityKeyPair.pubKey) + ',' + (await RegistrationUtils.getADVSecretKey()) + ',' +
        RegistrationUtils.DEVICE_PLATFORM;
})()"#;

async fn wwjs_qr(page: &Page) -> String {
    eval_async(page, WWJS_QR).await
}

async fn eval_async<T: DeserializeOwned>(page: &Page, expr: &str) -> T {
    let params = chromiumoxide::cdp::js_protocol::runtime::EvaluateParams::builder()
        .expression(expr)
        .await_promise(true)
        .return_by_value(true)
        .build()
        .expect("params");
    page.evaluate_expression(params)
        .await
        .expect("evaluate")
        .into_value()
        .expect("value")
}

async fn post(fake: &FakeWhatsApp, path: &str, body: Value) -> u16 {
    reqwest::Client::new()
        .post(format!("{}{path}", fake.url()))
        .json(&body)
        .send()
        .await
        .expect("POST")
        .status()
        .as_u16()
}

async fn get(fake: &FakeWhatsApp, path: &str) -> Value {
    reqwest::get(format!("{}{path}", fake.url()))
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON")
}

async fn start_fake(qr: Duration, max_qrs: u32) -> FakeWhatsApp {
    FakeWhatsApp::start(
        "127.0.0.1:0".parse().expect("addr"),
        Timings::fast(qr, max_qrs),
    )
    .await
    .expect("start fake")
}

/// Records, in the page, the events automation listens to: `change:state`, `change:hasSynced`,
/// `change:ref` and every `Cmd` event with the offline progress at that moment. Kept in
/// sessionStorage, which outlives the navigation a logout makes.
const RECORD_EVENTS: &str = "const push = (e) => { const ev = JSON.parse(sessionStorage.getItem('ev') || '[]'); ev.push(e);\
       sessionStorage.setItem('ev', JSON.stringify(ev)); };\
     const S = window.require('WAWebSocketModel').Socket;\
     S.on('change:state', (_, s) => push('state:' + s));\
     S.on('change:hasSynced', (_, v) => push('hasSynced:' + v));\
     window.require('WAWebConnModel').Conn.on('change:ref', (_, r) => push('ref:' + (r === undefined ? 'undefined' : 'new')));\
     window.require('WAWebCmd').Cmd.on('all', (name) => push(name + ':' +\
       window.require('WAWebOfflineHandler').OfflineMessageHandler.getOfflineDeliveryProgress()));\
     null";
const RECORDED: &str = "JSON.parse(sessionStorage.getItem('ev') || '[]')";

/// Each generation serves its own shape of the moved parts and only that one, fires its own
/// loading-progress event between CONNECTED and hasSynced, and neither fires what the real page
/// does not (an undefined ref after a scan, hasSynced going false on logout).
#[tokio::test]
async fn each_generation_serves_its_own_modules_and_events() {
    for g in Generation::ALL {
        let fake = FakeWhatsApp::start_generation(
            "127.0.0.1:0".parse().expect("addr"),
            Timings::fast(Duration::from_secs(5), 6),
            g,
        )
        .await
        .expect("start fake");
        let profile = tempfile::tempdir().expect("tempdir");
        let chrome = Chrome::launch(profile.path()).await;
        let page = chrome.open(&fake.url()).await;
        until_state(&page, "UNPAIRED").await;
        let has = |m: &str| {
            format!(
                "(() => {{ try {{ window.require('{m}'); return true }} catch (e) {{ return false }} }})()"
            )
        };
        // Where the ADV secret is read from: only the generation's own place has it.
        const ASYNC_ADV: &str =
            "typeof window.require('WAWebAdvSignatureApi').getADVSecretKey === 'function'";
        const SYNC_ADV: &str = "(() => { try { return typeof window.require('WAWebUserPrefsMultiDevice').getADVSecretKey() === 'string' } catch (e) { return false } })()";
        let (qr_formula, present, absent, progress) = match g {
            Generation::G2026_03 => (
                WWJS_1_34_6_QR,
                ASYNC_ADV,
                SYNC_ADV,
                "offline_progress_update",
            ),
            Generation::G2026_04 => (
                WWJS_QR,
                SYNC_ADV,
                ASYNC_ADV,
                "offline_progress_update_from_bridge",
            ),
        };
        assert!(eval::<bool>(&page, present).await, "{g}: {present}");
        assert!(
            !eval::<bool>(&page, absent).await,
            "{g}: not {absent} (it moved)"
        );
        for m in [
            "WAWebAdvSignatureApi",
            "WAWebCollections",
            "WAWebSyncGatingUtils",
            "WAWebCallCollection",
        ] {
            assert!(
                eval::<bool>(&page, &has(m)).await,
                "{g}: {m} (read after login)"
            );
        }

        run(&page, RECORD_EVENTS).await;
        let qr: String = eval_async(&page, qr_formula).await;
        let pages = get(&fake, "_fake/pages").await;
        assert_eq!(
            pages[0]["qr"],
            qr.as_str(),
            "{g}: the library's formula gives the QR the fake shows"
        );
        assert_eq!(
            post(
                &fake,
                "_fake/scan",
                json!({"qr": qr, "phone": "5491100000013", "pushName": "Ana"})
            )
            .await,
            200
        );
        until(
            &page,
            "hasSynced",
            "window.require('WAWebSocketModel').Socket.hasSynced",
        )
        .await;
        let events: Vec<String> = eval(&page, RECORDED).await;
        let at = |e: &str| {
            events
                .iter()
                .position(|x| x == e)
                .unwrap_or_else(|| panic!("{g}: no {e} in {events:?}"))
        };
        assert!(
            at("state:CONNECTED") < at(&format!("{progress}:0")),
            "{g}: {events:?}"
        );
        assert!(
            at(&format!("{progress}:0")) < at(&format!("{progress}:100")),
            "{g}: {events:?}"
        );
        assert!(
            at(&format!("{progress}:100")) < at("hasSynced:true"),
            "{g}: {events:?}"
        );
        assert!(
            !events.iter().any(|e| e == "ref:undefined"),
            "{g}: no undefined ref after the scan: {events:?}"
        );

        assert_eq!(
            post(&fake, "_fake/unlink", json!({"phone": "5491100000013"})).await,
            200
        );
        until(
            &page,
            "the post-logout page",
            "location.search.includes('post_logout=1')",
        )
        .await;
        let events: Vec<String> = eval(&page, RECORDED).await;
        let logout = at("hasSynced:true") + 1;
        assert!(
            events[logout..]
                .iter()
                .any(|e| e.starts_with("logout_from_bridge:")),
            "{g}: {events:?}"
        );
        assert!(
            !events[logout..].iter().any(|e| e.starts_with("hasSynced:")),
            "{g}: hasSynced stays until the page navigates: {events:?}"
        );
        chrome.close().await;
        fake.stop().await;
    }
}

#[tokio::test]
async fn qr_rotates_expires_and_refresh_starts_a_new_round() {
    let fake = start_fake(Duration::from_millis(1000), 3).await;
    let profile = tempfile::tempdir().expect("tempdir");
    let chrome = Chrome::launch(profile.path()).await;
    let page = chrome.open(&fake.url()).await;

    until_state(&page, "UNPAIRED").await;
    let version: String = eval(&page, "window.Debug.VERSION").await;
    assert!(version.starts_with("2.3000."), "{version}");
    // Unknown modules throw, like the real loader.
    let threw: bool = eval(&page, "(() => { try { window.require('NoSuchModule'); return false } catch (e) { return true } })()").await;
    assert!(threw);

    // Listen for new refs the way whatsapp-web.js does, and watch the old data-ref markup too.
    run(
        &page,
        "window.__refs = [window.require('WAWebConnModel').Conn.ref];\
         window.require('WAWebConnModel').Conn.on('change:ref', (_, ref) => window.__refs.push(ref));\
         window.__dataRefs = [];\
         new MutationObserver((ms) => ms.forEach((m) => m.attributeName === 'data-ref' && window.__dataRefs.push(m.target.dataset.ref)))\
           .observe(document.querySelector('div[data-ref]').parentElement, {subtree: true, attributes: true, attributeFilter: ['data-ref']});\
         null",
    )
    .await;
    // The module formula and the data-ref markup agree (read twice more if a rotation fell between).
    let mut attempts = 0;
    let qr = loop {
        let qr = wwjs_qr(&page).await;
        let data_ref: String =
            eval(&page, "document.querySelector('div[data-ref]').dataset.ref").await;
        if qr == data_ref {
            break qr;
        }
        attempts += 1;
        assert!(attempts < 3, "wwjs QR {qr} != data-ref {data_ref}");
    };
    assert!(eval::<bool>(&page, "!!document.querySelector('div[data-ref] canvas')").await);
    let pages = get(&fake, "_fake/pages").await;
    // On a loaded machine a rotation may happen before the listeners are in: count from here.
    let shown = pages[0]["qrIndex"].as_u64().expect("qrIndex") as usize;
    if pages[0]["ref"] == qr.split(',').next().expect("ref") {
        assert_eq!(
            pages[0]["qr"],
            qr.as_str(),
            "GET /_fake/pages shows the same QR"
        );
    }

    until_state(&page, "UNPAIRED_IDLE").await;
    let refs: Vec<String> = eval(&page, "window.__refs").await;
    assert_eq!(
        refs.len(),
        3 - shown + 1,
        "max-qrs refs, each announced by change:ref: {refs:?}"
    );
    assert_eq!(
        refs.iter().collect::<std::collections::HashSet<_>>().len(),
        refs.len()
    );
    let data_refs: Vec<String> = eval(&page, "window.__dataRefs").await;
    assert_eq!(
        data_refs.len(),
        3 - shown,
        "data-ref changed in place for each new QR: {data_refs:?}"
    );
    let last = refs.last().expect("a ref");
    assert_eq!(
        post(
            &fake,
            "_fake/scan",
            json!({"qr": last, "phone": "5491100000010"})
        )
        .await,
        410
    );

    // The old retry button starts a new round.
    run(
        &page,
        "document.querySelector('div[data-ref] > span > button').click(); null",
    )
    .await;
    until_state(&page, "UNPAIRED").await;
    let fresh: String = eval(&page, "window.require('WAWebConnModel').Conn.ref").await;
    assert!(!refs.contains(&fresh));
    assert!(
        eval::<bool>(
            &page,
            "!document.querySelector('div[data-ref] > span > button')"
        )
        .await
    );

    // And so does Cmd.refreshQR(), what whatsapp-web.js calls on UNPAIRED_IDLE.
    until_state(&page, "UNPAIRED_IDLE").await;
    run(&page, "window.require('WAWebCmd').Cmd.refreshQR(); null").await;
    until_state(&page, "UNPAIRED").await;
    chrome.close().await;
}

#[tokio::test]
async fn scan_connects_and_the_login_survives_reload_and_restart_until_unlinked() {
    let fake = start_fake(Duration::from_secs(5), 6).await;
    let profile = tempfile::tempdir().expect("tempdir");
    let chrome = Chrome::launch(profile.path()).await;
    let page = chrome.open(&fake.url()).await;
    until_state(&page, "UNPAIRED").await;
    run(
        &page,
        "window.__states = []; window.require('WAWebSocketModel').Socket.on('change:state', (_, s) => window.__states.push(s));\
         window.__synced = false; window.require('WAWebSocketModel').Socket.on('change:hasSynced', () => { window.__synced = true });\
         null",
    )
    .await;
    let qr = wwjs_qr(&page).await;
    assert_eq!(
        post(
            &fake,
            "_fake/scan",
            json!({"qr": qr, "phone": "+5491100000011", "pushName": "Ana"})
        )
        .await,
        200
    );
    until(&page, "authenticated (change:hasSynced)", "window.__synced").await;
    let states: Vec<String> = eval(&page, "window.__states").await;
    // PAIRING may be too short to be seen by a slow poll; CONNECTED must come last.
    assert_eq!(
        states.last().map(String::as_str),
        Some("CONNECTED"),
        "{states:?}"
    );
    assert!(
        states.iter().all(|s| s == "PAIRING" || s == "CONNECTED"),
        "{states:?}"
    );
    let info: Value = eval(
        &page,
        "({...window.require('WAWebConnModel').Conn.serialize(), wid: window.require('WAWebUserPrefsMeUser').getMaybeMePnUser()})",
    )
    .await;
    assert_eq!(info["wid"]["_serialized"], "5491100000011@c.us");
    assert_eq!(info["pushname"], "Ana");
    assert!(eval::<bool>(&page, "!!document.querySelector(\"[data-icon='search']\")").await);
    let devices = get(&fake, "_fake/devices").await;
    assert_eq!(devices[0]["connected"], true, "{devices}");

    // Reload: back to CONNECTED from the profile, no QR shown.
    page.reload().await.expect("reload");
    until_state(&page, "CONNECTED").await;
    assert!(
        !eval::<bool>(&page, "window.__sawQr").await,
        "a restore must not show a QR"
    );

    // Chromium restart on the same profile.
    chrome.close().await;
    let chrome = Chrome::launch(profile.path()).await;
    let page = chrome.open(&fake.url()).await;
    until_state(&page, "CONNECTED").await;
    assert!(
        !eval::<bool>(&page, "window.__sawQr").await,
        "a restart must not show a QR"
    );
    until(
        &page,
        "hasSynced",
        "window.require('WAWebSocketModel').Socket.hasSynced",
    )
    .await;

    // The phone unlinks the device: a Cmd logout event, then UNPAIRED and a reload to
    // /?post_logout=1 with a fresh QR round and the credential gone from the profile.
    run(
        &page,
        "window.__logout = []; const Cmd = window.require('WAWebCmd').Cmd;\
         Cmd.on('logout', () => window.__logout.push('logout'));\
         Cmd.on('logout_from_bridge', () => window.__logout.push('logout_from_bridge'));\
         window.require('WAWebSocketModel').Socket.on('change:state', (_, s) => window.__logout.push(s)); null",
    )
    .await;
    assert_eq!(
        post(&fake, "_fake/unlink", json!({"phone": "5491100000011"})).await,
        200
    );
    until(&page, "the post-logout page", "location.search.includes('post_logout=1') && window.Debug?.VERSION && window.require('WAWebSocketModel').Socket.state === 'UNPAIRED'").await;
    let stored: Value = until(
        &page,
        "the profile read",
        "new Promise((ok) => { const r = indexedDB.open('wawc', 1); r.onupgradeneeded = () => r.result.createObjectStore('user');\
         r.onsuccess = () => { const g = r.result.transaction('user').objectStore('user').get('fake-device-credential');\
         g.onsuccess = () => ok({value: g.result === undefined ? null : g.result}); }; })",
    )
    .await;
    assert_eq!(stored, json!({"value": null}), "credential wiped");
    assert_eq!(get(&fake, "_fake/devices").await, json!([]));
    chrome.close().await;
}

#[tokio::test]
async fn logout_conflict_takeover_and_hang() {
    let fake = start_fake(Duration::from_secs(5), 6).await;
    let profile = tempfile::tempdir().expect("tempdir");
    let chrome = Chrome::launch(profile.path()).await;
    let page = chrome.open(&fake.url()).await;
    until_state(&page, "UNPAIRED").await;
    let qr = wwjs_qr(&page).await;
    assert_eq!(
        post(
            &fake,
            "_fake/scan",
            json!({"qr": qr, "phone": "5491100000012"})
        )
        .await,
        200
    );
    until_state(&page, "CONNECTED").await;

    assert_eq!(
        post(&fake, "_fake/conflict", json!({"phone": "5491100000012"})).await,
        200
    );
    until_state(&page, "CONFLICT").await;
    run(
        &page,
        "window.require('WAWebSocketModel').Socket.takeover(); null",
    )
    .await;
    until_state(&page, "CONNECTED").await;

    // Socket.logout() from the page: the server forgets the device, the page starts over.
    run(
        &page,
        "window.require('WAWebSocketModel').Socket.logout(); null",
    )
    .await;
    until(&page, "a fresh QR round", "location.search.includes('post_logout=1') && window.Debug?.VERSION && window.require('WAWebSocketModel').Socket.state === 'UNPAIRED'").await;
    assert_eq!(get(&fake, "_fake/devices").await, json!([]));

    // Hang: the page stops answering CDP evaluations.
    assert_eq!(
        eval::<i64>(&page, "1 + 1").await,
        2,
        "answers before the hook"
    );
    assert_eq!(post(&fake, "_fake/hang", json!({})).await, 200);
    // The flag reaches the page with its next poll; from then on it never answers.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout(Duration::from_secs(2), page.evaluate("1 + 1")).await {
            Err(_) => break,
            Ok(_) => assert!(
                tokio::time::Instant::now() < deadline,
                "the page kept answering after the hang hook"
            ),
        }
    }
    chrome.close().await;
}

#[tokio::test]
async fn crash_hook_kills_the_renderer() {
    use chromiumoxide::cdp::browser_protocol::inspector::{EnableParams, EventTargetCrashed};
    let fake = start_fake(Duration::from_secs(5), 6).await;
    let profile = tempfile::tempdir().expect("tempdir");
    let chrome = Chrome::launch(profile.path()).await;
    let page = chrome.open(&fake.url()).await;
    until_state(&page, "UNPAIRED").await;
    page.execute(EnableParams::default())
        .await
        .expect("Inspector.enable");
    let mut crashed = page
        .event_listener::<EventTargetCrashed>()
        .await
        .expect("listener");
    let current_ref: String = eval(&page, "window.require('WAWebConnModel').Conn.ref").await;
    assert_eq!(
        post(&fake, "_fake/crash", json!({"ref": current_ref})).await,
        200
    );
    tokio::time::timeout(Duration::from_secs(30), crashed.next())
        .await
        .expect("Inspector.targetCrashed within 30 s")
        .expect("event");
    chrome.close().await;
}
