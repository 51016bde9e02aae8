//! The control API over HTTP against the real binary, with a scripted page standing in for a
//! browser (it speaks the page's own hello/poll protocol). Browser behaviour is in `browser.rs`.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Fake {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `fake-whatsapp` with sub-second QRs and reads the URL it prints.
fn start(qr_secs: &str, max_qrs: &str) -> Fake {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-whatsapp"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--first-qr-secs",
            qr_secs,
            "--next-qr-secs",
            qr_secs,
        ])
        .args([
            "--max-qrs",
            max_qrs,
            "--opening-secs",
            "0.05",
            "--pairing-secs",
            "0.1",
            "--sync-secs",
            "0.05",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start fake-whatsapp");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read URL line");
    let url = line
        .trim()
        .strip_prefix("FAKE_WHATSAPP_URL=")
        .expect("URL line")
        .to_string();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with('/'),
        "{url}"
    );
    Fake {
        child,
        url,
        http: reqwest::Client::new(),
    }
}

impl Fake {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .expect("POST");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON")
    }
}

/// A page as the app script drives it: hello, then long polls that keep it alive.
struct ScriptedPage {
    id: String,
    last: Value,
}

impl ScriptedPage {
    async fn open(fake: &Fake, credential: Option<&str>) -> Self {
        let (status, body) = fake
            .post("_page/hello", json!({"credential": credential}))
            .await;
        assert_eq!(status, 200, "{body}");
        Self {
            id: body["page"].as_str().expect("page id").to_string(),
            last: body["snapshot"].clone(),
        }
    }

    /// Links this page as the phone `phone` does: waits for its QR and scans it.
    async fn scan_qr(&mut self, fake: &Fake, phone: &str) {
        let qr = self.until(fake, "QR", state_is("UNPAIRED")).await["qr"]
            .as_str()
            .expect("qr")
            .to_string();
        let (status, body) = fake
            .post("_fake/scan", json!({"qr": qr, "phone": phone}))
            .await;
        assert_eq!(status, 200, "{body}");
    }

    /// Polls until `pred` holds for the page's snapshot (long polls return on every change).
    async fn until(&mut self, fake: &Fake, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut events = Vec::new();
        let mut messages = Vec::new();
        while !pred(&self.last) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last snapshot {}",
                self.last
            );
            let since = self.last["v"].as_u64().unwrap_or(0);
            let snap = fake
                .get(&format!("_page/poll?page={}&since={since}", self.id))
                .await;
            events.extend(snap["events"].as_array().cloned().unwrap_or_default());
            messages.extend(snap["messages"].as_array().cloned().unwrap_or_default());
            self.last = snap;
        }
        self.last["seenEvents"] = Value::Array(events);
        self.last["seenMessages"] = Value::Array(messages);
        self.last.clone()
    }
}

fn state_is(s: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["state"] == s
}

#[tokio::test]
async fn scan_answers_404_410_200_and_links_a_device() {
    let fake = start("0.4", "2");
    let mut page = ScriptedPage::open(&fake, None).await;
    let first = page.until(&fake, "first QR", state_is("UNPAIRED")).await;
    let first_qr = first["qr"].as_str().expect("qr").to_string();
    let first_ref = first["ref"].as_str().expect("ref").to_string();
    assert!(first_qr.starts_with(&format!("{first_ref},")));
    assert_eq!(
        first_qr.split(',').count(),
        5,
        "ref,noise,identity,adv,platform: {first_qr}"
    );

    // Listed for tests that need the QR without the agent.
    let pages = fake.get("_fake/pages").await;
    assert!(
        pages
            .as_array()
            .expect("array")
            .iter()
            .any(|p| p["qr"] == first_qr.as_str() && p["state"] == "UNPAIRED")
    );

    let (status, _) = fake
        .post(
            "_fake/scan",
            json!({"qr": "2@unknown,a,b,c,d", "phone": "5491100000001"}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = fake
        .post(
            "_fake/scan",
            json!({"qr": first_qr, "phone": "not a phone"}),
        )
        .await;
    assert_eq!(status, 400);

    // The first QR rotates away: scanning it is 410.
    let second = page
        .until(&fake, "second QR", |v| v["ref"] != first_ref.as_str())
        .await;
    let (status, _) = fake
        .post(
            "_fake/scan",
            json!({"qr": first_qr, "phone": "5491100000001"}),
        )
        .await;
    assert_eq!(status, 410);

    // The current one, by its ref alone (the first comma-separated part), links.
    let second_ref = second["ref"].as_str().expect("ref").to_string();
    let (status, body) = fake
        .post(
            "_fake/scan",
            json!({"qr": second_ref, "phone": "+54 9 11 0000-0001", "pushName": "Ana"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let connected = page
        .until(&fake, "CONNECTED and synced", |v| {
            v["state"] == "CONNECTED" && v["hasSynced"] == true
        })
        .await;
    assert_eq!(connected["me"]["phone"], "5491100000001");
    assert_eq!(connected["me"]["pushName"], "Ana");
    assert!(connected["credential"].is_string());

    let devices = fake.get("_fake/devices").await;
    assert_eq!(devices.as_array().expect("array").len(), 1, "{devices}");
    assert_eq!(devices[0]["phone"], "5491100000001");
    assert_eq!(devices[0]["connected"], true);
    assert!(devices[0]["lastSeen"].is_string());
}

#[tokio::test]
async fn round_expires_and_refresh_starts_a_new_one() {
    let fake = start("0.2", "3");
    let mut page = ScriptedPage::open(&fake, None).await;
    let mut refs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while page.last["state"] != "UNPAIRED_IDLE" {
        assert!(Instant::now() < deadline, "no UNPAIRED_IDLE: {}", page.last);
        if let Some(r) = page.last["ref"].as_str()
            && page.last["state"] == "UNPAIRED"
            && refs.last().map(String::as_str) != Some(r)
        {
            refs.push(r.to_string());
        }
        let v = page.last["v"].as_u64().unwrap_or(0);
        page.until(&fake, "a change", |s| s["v"].as_u64().unwrap_or(0) > v)
            .await;
    }
    assert_eq!(refs.len(), 3, "max-qrs refs in a round: {refs:?}");
    let last = refs.last().expect("a ref").clone();
    let (status, _) = fake
        .post("_fake/scan", json!({"qr": last, "phone": "5491100000002"}))
        .await;
    assert_eq!(status, 410, "an idle page's QR is expired");

    let (status, _) = fake
        .post(
            "_page/action",
            json!({"page": page.id, "action": "refreshQR"}),
        )
        .await;
    assert_eq!(status, 200);
    let fresh = page.until(&fake, "a new round", state_is("UNPAIRED")).await;
    assert!(!refs.iter().any(|r| fresh["ref"] == r.as_str()));
}

#[tokio::test]
async fn restore_unlink_conflict_and_logout() {
    let fake = start("5", "6");
    let mut page = ScriptedPage::open(&fake, None).await;
    page.scan_qr(&fake, "5491100000003").await;
    let credential = page.until(&fake, "CONNECTED", state_is("CONNECTED")).await["credential"]
        .as_str()
        .expect("credential")
        .to_string();

    // A second window with the same login takes over; the first goes CONFLICT.
    let mut second = ScriptedPage::open(&fake, Some(&credential)).await;
    let restored = second.until(&fake, "restored", state_is("CONNECTED")).await;
    assert!(restored["qr"].is_null(), "a restore shows no QR");
    page.until(&fake, "CONFLICT", state_is("CONFLICT")).await;
    let (status, _) = fake
        .post(
            "_page/action",
            json!({"page": page.id, "action": "takeover"}),
        )
        .await;
    assert_eq!(status, 200);
    page.until(&fake, "CONNECTED after takeover", state_is("CONNECTED"))
        .await;
    second
        .until(&fake, "second in CONFLICT", state_is("CONFLICT"))
        .await;

    // The account opened elsewhere (control API).
    let (status, _) = fake
        .post("_fake/conflict", json!({"phone": "5491100000003"}))
        .await;
    assert_eq!(status, 200);
    page.until(&fake, "CONFLICT by the control API", state_is("CONFLICT"))
        .await;
    let (status, _) = fake
        .post("_fake/conflict", json!({"phone": "5490000000000"}))
        .await;
    assert_eq!(status, 404);

    // Unlink from the phone: a logout event, credential wiped, navigation to post_logout.
    let (status, _) = fake
        .post("_fake/unlink", json!({"phone": "5491100000003"}))
        .await;
    assert_eq!(status, 200);
    let out = page.until(&fake, "logged out", state_is("UNPAIRED")).await;
    assert!(out["credential"].is_null());
    assert_eq!(out["navigate"], "/?post_logout=1");
    assert_eq!(out["seenEvents"], json!(["logout_from_bridge"]));
    assert_eq!(fake.get("_fake/devices").await, json!([]));
    let (status, _) = fake
        .post("_fake/unlink", json!({"phone": "5491100000003"}))
        .await;
    assert_eq!(status, 404);

    // The old credential no longer restores.
    let mut again = ScriptedPage::open(&fake, Some(&credential)).await;
    assert!(
        again.last["credential"].is_null(),
        "an unknown credential is wiped"
    );
    again
        .until(&fake, "QR after a stale credential", state_is("UNPAIRED"))
        .await;

    // Logout from the page itself (Socket.logout()): the server forgets the device.
    again.scan_qr(&fake, "5491100000004").await;
    again.until(&fake, "CONNECTED", state_is("CONNECTED")).await;
    let (status, _) = fake
        .post(
            "_page/action",
            json!({"page": again.id, "action": "logout"}),
        )
        .await;
    assert_eq!(status, 200);
    let out = again
        .until(&fake, "logged out", |v| v["navigate"].is_string())
        .await;
    assert_eq!(out["state"], "UNPAIRED");
    assert_eq!(out["seenEvents"], json!(["logout"]));
    assert_eq!(fake.get("_fake/devices").await, json!([]));
}

#[tokio::test]
async fn pairing_code_links_and_hooks_select_pages() {
    let fake = start("5", "6");
    let mut page = ScriptedPage::open(&fake, None).await;
    page.until(&fake, "QR", state_is("UNPAIRED")).await;
    let (status, body) = fake
        .post(
            "_page/action",
            json!({"page": page.id, "action": "startAltLinkingFlow", "phone": "+5491100000005"}),
        )
        .await;
    assert_eq!(status, 200);
    let code = body["code"].as_str().expect("code").to_string();
    assert_eq!(code.len(), 8);
    let (status, _) = fake.post("_fake/pair", json!({"code": "ZZZZZZZZ"})).await;
    assert_eq!(status, 404);
    let (status, _) = fake
        .post("_fake/pair", json!({"code": code, "pushName": "Bea"}))
        .await;
    assert_eq!(status, 200);
    let connected = page
        .until(&fake, "CONNECTED by code", state_is("CONNECTED"))
        .await;
    assert_eq!(connected["me"]["phone"], "5491100000005");

    // Hooks reach only the selected live pages.
    let (status, body) = fake
        .post("_fake/bloat", json!({"mb": 64, "phone": "5490000000000"}))
        .await;
    assert_eq!((status, body["pages"].as_u64()), (200, Some(0)));
    let (status, body) = fake
        .post("_fake/bloat", json!({"mb": 64, "phone": "5491100000005"}))
        .await;
    assert_eq!((status, body["pages"].as_u64()), (200, Some(1)));
    page.until(&fake, "bloat size", |v| v["bloatMb"] == 64)
        .await;
    let (status, body) = fake
        .post("_fake/hang", json!({"phone": "5490000000000"}))
        .await;
    assert_eq!((status, body["pages"].as_u64()), (200, Some(0)));
    let (status, body) = fake
        .post("_fake/hang", json!({"phone": "5491100000005"}))
        .await;
    assert_eq!((status, body["pages"].as_u64()), (200, Some(1)));
    page.until(&fake, "hang flag", |v| v["hang"] == true).await;
}

#[tokio::test]
async fn offline_cuts_held_polls_refuses_the_page_and_ends_by_itself() {
    let fake = start("5", "6");
    let mut page = ScriptedPage::open(&fake, None).await;
    page.scan_qr(&fake, "5491100000005").await;
    page.until(&fake, "CONNECTED and synced", |v| {
        v["state"] == "CONNECTED" && v["hasSynced"] == true
    })
    .await;
    let connected = |devices: &Value| devices[0]["connected"] == true;
    assert!(connected(&fake.get("_fake/devices").await));

    // A poll held open (nothing new to say) when the outage starts ends at once with 503.
    let since = page.last["v"].as_u64().expect("v");
    let held = {
        let http = fake.http.clone();
        let url = format!("{}_page/poll?page={}&since={since}", fake.url, page.id);
        tokio::spawn(async move { http.get(url).send().await.map(|r| r.status().as_u16()) })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !held.is_finished(),
        "the poll is held while nothing changes"
    );
    let started = Instant::now();
    let (status, body) = fake.post("_fake/offline", json!({"secs": 3})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(held.await.expect("join").expect("poll"), 503);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "cut, not held out"
    );
    // The page's routes are refused (a new poll, the app itself); the device is not connected
    // from the fake's side once the page has not polled for a few seconds; the phone's side works.
    let poll_url = format!("{}_page/poll?page={}&since={since}", fake.url, page.id);
    let status_of = |url: String| {
        let http = fake.http.clone();
        async move { http.get(url).send().await.expect("GET").status().as_u16() }
    };
    assert_eq!(status_of(poll_url.clone()).await, 503);
    assert_eq!(status_of(fake.url.clone()).await, 503);
    let deadline = Instant::now() + Duration::from_secs(10);
    while connected(&fake.get("_fake/devices").await) {
        assert!(
            Instant::now() < deadline,
            "still connected during the outage"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // It ends by itself: the same page polls again and is connected, no new login.
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_of(poll_url.clone()).await != 200 {
        assert!(Instant::now() < deadline, "the outage did not end");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    page.until(&fake, "CONNECTED after the outage", state_is("CONNECTED"))
        .await;
    assert!(connected(&fake.get("_fake/devices").await));

    // secs 0 ends an outage early; nonsense is refused.
    let (status, _) = fake.post("_fake/offline", json!({"secs": 60})).await;
    assert_eq!(status, 200);
    assert_eq!(status_of(poll_url.clone()).await, 503);
    let (status, _) = fake.post("_fake/offline", json!({"secs": 0})).await;
    assert_eq!(status, 200);
    assert_eq!(status_of(fake.url.clone()).await, 200);
    let (status, _) = fake.post("_fake/offline", json!({"secs": -1})).await;
    assert_eq!(status, 400);
}

/// The page's and the phone's side of messages: numbers that exist, a page's send (recorded with
/// the server ack), a contact's message and the phone's own reaching the page, acks moving
/// forward, the history a reconnecting page loads, and bad input refused.
#[tokio::test]
async fn messages_are_recorded_routed_to_the_page_and_acknowledged() {
    let fake = start("5", "2");
    let me = "5491100000010";
    let (status, body) = fake
        .post("_fake/numbers", json!({"phones": ["+54 9 11 2233-4455"]}))
        .await;
    assert_eq!((status, body["added"].clone()), (200, json!(1)), "{body}");
    assert_eq!(fake.get("_fake/numbers").await, json!(["5491122334455"]));
    let (status, _) = fake.post("_fake/numbers", json!({"phones": ["abc"]})).await;
    assert_eq!(status, 400);

    let mut page = ScriptedPage::open(&fake, None).await;
    let action = |page: &str, body: Value| {
        let mut b = body;
        b["page"] = json!(page);
        b
    };
    // Not linked yet: the page cannot ask.
    let (status, _) = fake
        .post(
            "_page/action",
            action(
                &page.id,
                json!({"action": "queryExists", "phone": "5491122334455"}),
            ),
        )
        .await;
    assert_eq!(status, 409);
    page.scan_qr(&fake, me).await;
    page.until(&fake, "CONNECTED", state_is("CONNECTED")).await;

    for (phone, exists) in [
        ("5491122334455", true),
        (me, true),
        ("5491199999999", false),
    ] {
        let (status, body) = fake
            .post(
                "_page/action",
                action(&page.id, json!({"action": "queryExists", "phone": phone})),
            )
            .await;
        assert_eq!(
            (status, body["exists"].clone()),
            (200, json!(exists)),
            "{phone}"
        );
    }

    let send = json!({"action": "sendMessage", "id": "3EB0AABBCCDD", "chat": "5491122334455@c.us", "body": "hola"});
    let (status, body) = fake.post("_page/action", action(&page.id, send)).await;
    assert_eq!((status, body["ack"].clone()), (200, json!(1)), "{body}");
    for bad in [
        json!({"action": "sendMessage", "id": "X1", "chat": "123-456@g.us", "body": "hola"}),
        json!({"action": "sendMessage", "id": "X2", "chat": "5491122334455@c.us", "body": ""}),
        json!({"action": "sendMessage", "id": "bad id!", "chat": "5491122334455@c.us", "body": "x"}),
    ] {
        let (status, body) = fake.post("_page/action", action(&page.id, bad)).await;
        assert_eq!(status, 400, "{body}");
    }
    let sent = fake.get(&format!("_fake/messages?account={me}")).await;
    assert_eq!(sent.as_array().map(Vec::len), Some(1), "{sent}");
    assert_eq!(sent[0]["key"], "true_5491122334455@c.us_3EB0AABBCCDD");
    assert_eq!(
        (
            &sent[0]["body"],
            &sent[0]["chat"],
            &sent[0]["via"],
            &sent[0]["page"]
        ),
        (
            &json!("hola"),
            &json!("5491122334455@c.us"),
            &json!("page"),
            &json!(page.id)
        )
    );

    // The recipient's phone acknowledges: delivered, then read; never backwards.
    let (status, body) = fake
        .post(
            "_fake/messages/ack",
            json!({"id": "3EB0AABBCCDD", "ack": 2}),
        )
        .await;
    assert_eq!((status, body["pages"].clone()), (200, json!(1)), "{body}");
    let key = "true_5491122334455@c.us_3EB0AABBCCDD";
    let snap = page
        .until(&fake, "ack 2", |v| {
            v["messages"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["kind"] == "ack"))
        })
        .await;
    assert!(
        snap["seenMessages"]
            .as_array()
            .unwrap()
            .contains(&json!({"kind": "ack", "key": key, "ack": 2})),
        "{snap}"
    );
    let (status, _) = fake
        .post("_fake/messages/ack", json!({"id": key, "ack": 2}))
        .await;
    assert_eq!(status, 400, "acks only move forward");
    let (status, _) = fake
        .post("_fake/messages/ack", json!({"id": "NOPE", "ack": 3}))
        .await;
    assert_eq!(status, 404);
    let (status, _) = fake
        .post("_fake/messages/ack", json!({"id": key, "ack": 3}))
        .await;
    assert_eq!(status, 200);

    // A contact writes; the phone writes: both reach the page as new messages.
    let (status, incoming) = fake
        .post(
            "_fake/messages/incoming",
            json!({"to": me, "from": "5491155556666", "body": "¿precio?"}),
        )
        .await;
    assert_eq!(
        (status, incoming["pages"].clone()),
        (200, json!(1)),
        "{incoming}"
    );
    let (status, outgoing) = fake
        .post(
            "_fake/messages/outgoing",
            json!({"phone": me, "to": "5491155556666", "body": "desde el teléfono"}),
        )
        .await;
    assert_eq!(status, 200, "{outgoing}");
    let has_key = |k: Value| {
        move |v: &Value| {
            v["messages"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["record"]["key"] == k))
        }
    };
    let snap = page
        .until(
            &fake,
            "the phone's message",
            has_key(outgoing["key"].clone()),
        )
        .await;
    let seen: Vec<&Value> = snap["seenMessages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "msg")
        .collect();
    let got = |k: &Value| seen.iter().find(|m| &m["record"]["key"] == k).copied();
    let inc = got(&incoming["key"]).expect("the contact's message reached the page");
    assert_eq!(
        (
            &inc["isNew"],
            &inc["record"]["fromMe"],
            &inc["record"]["body"],
            &inc["record"]["chat"]
        ),
        (
            &json!(true),
            &json!(false),
            &json!("¿precio?"),
            &json!("5491155556666@c.us")
        )
    );
    let out = got(&outgoing["key"]).expect("the phone's message reached the page");
    assert_eq!(
        (&out["isNew"], &out["record"]["fromMe"]),
        (&json!(true), &json!(true))
    );
    assert!(
        outgoing["key"]
            .as_str()
            .unwrap()
            .starts_with("true_5491155556666@c.us_"),
        "{outgoing}"
    );
    let (status, _) = fake
        .post(
            "_fake/messages/incoming",
            json!({"to": "5491177777777", "from": "5491155556666", "body": "x"}),
        )
        .await;
    assert_eq!(status, 404, "no linked device of that account");

    // A reload: the new page loads the history (not new), with the acks reached so far.
    let cred = page.last["credential"]
        .as_str()
        .expect("credential")
        .to_string();
    let _ = fake
        .post(&format!("_page/bye?page={}", page.id), json!({}))
        .await;
    let mut again = ScriptedPage::open(&fake, Some(&cred)).await;
    let snap = again
        .until(&fake, "CONNECTED again", state_is("CONNECTED"))
        .await;
    let history: Vec<Value> = snap["seenMessages"].as_array().unwrap().to_vec();
    let mine = history
        .iter()
        .find(|m| m["record"]["key"] == key)
        .expect("the sent message is in the history");
    assert_eq!(
        (&mine["isNew"], &mine["record"]["ack"]),
        (&json!(false), &json!(3))
    );
    assert_eq!(
        history.iter().filter(|m| m["kind"] == "msg").count(),
        3,
        "{history:?}"
    );
}
