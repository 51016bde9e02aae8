//! The message API over real HTTP against a stub of the page's side of the contract (the real
//! page driver and the fake WhatsApp Web: tests/messages.rs).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::api::{self, Api};
use super::auth::{self, Auth, Refused};
use super::journal::Journal;
use super::page::{self, Ack, PageError, PageRequest, SentMessage};
use super::rate::Limits;
use super::send::{Deadlines, Sender};

const HUB_TOKEN: &str = "hub-token";

/// Accepts the hub's token, refuses another valid one (a tenant's), and no token.
struct StubAuth;

impl Auth for StubAuth {
    fn check<'a>(&'a self, headers: &'a HeaderMap) -> BoxFuture<'a, Result<(), Refused>> {
        Box::pin(async move {
            match auth::bearer(headers)? {
                HUB_TOKEN => Ok(()),
                "tenant-token" => Err(Refused::Forbidden("not the hub".into())),
                _ => Err(Refused::Unauthenticated("bad token".into())),
            }
        })
    }
}

/// What the stub page does: numbers not on WhatsApp, a status while not ready, failures,
/// and how long a send takes. Like the real page, a second send with a known id answers the
/// message already sent.
#[derive(Default)]
struct Page {
    not_on_whatsapp: HashSet<String>,
    not_ready: Option<String>,
    fail: Option<String>,
    send_delay: Duration,
    sent: Vec<(String, String, String)>,
    lookups: usize,
}

struct Harness {
    url: String,
    page: Arc<Mutex<Page>>,
    http: reqwest::Client,
    _dir: Arc<tempfile::TempDir>,
}

fn answer(chat: &str, id: &str) -> SentMessage {
    SentMessage {
        id: format!("true_{chat}_{id}"),
        to: chat.to_string(),
        timestamp: 1_700_000_000,
        ack: Ack::Server,
    }
}

async fn start_with(
    dir: Arc<tempfile::TempDir>,
    limits: Limits,
    deadlines: Deadlines,
    page: Arc<Mutex<Page>>,
) -> Harness {
    let (client, mut server) = page::channel(16, 16);
    let state = page.clone();
    tokio::spawn(async move {
        while let Some(req) = server.requests.recv().await {
            let state = state.clone();
            tokio::spawn(async move {
                match req {
                    PageRequest::NumberId { to, reply } => {
                        let r = {
                            let mut p = state.lock().unwrap();
                            p.lookups += 1;
                            match &p.not_ready {
                                Some(s) => Err(PageError::NotReady { status: s.clone() }),
                                None if p.not_on_whatsapp.contains(&to) => Ok(None),
                                None => Ok(Some(format!("{to}@c.us"))),
                            }
                        };
                        let _ = reply.send(r);
                    }
                    PageRequest::SendText {
                        chat,
                        body,
                        id,
                        reply,
                    } => {
                        let delay = state.lock().unwrap().send_delay;
                        tokio::time::sleep(delay).await;
                        let r = {
                            let mut p = state.lock().unwrap();
                            if let Some(f) = &p.fail {
                                Err(PageError::Failed(f.clone()))
                            } else {
                                if !p.sent.iter().any(|(_, _, i)| *i == id) {
                                    p.sent.push((chat.clone(), body, id.clone()));
                                }
                                Ok(answer(&chat, &id))
                            }
                        };
                        let _ = reply.send(r);
                    }
                }
            });
        }
    });
    let journal = Arc::new(Journal::open(&dir.path().join("idempotency"), 100).unwrap());
    let (_tx, limits) = watch::channel(limits);
    std::mem::forget(_tx);
    let sender = Sender::new(
        "ns/s".into(),
        client,
        journal,
        limits,
        deadlines,
        Duration::ZERO,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/messages", listener.local_addr().unwrap());
    let app = api::router(Api {
        sender: Arc::new(sender),
        auth: Arc::new(StubAuth),
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Harness {
        url,
        page,
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

const FAST: Deadlines = Deadlines {
    send: Duration::from_secs(5),
    queue: Duration::from_secs(5),
};
const UNLIMITED: Limits = Limits {
    per_minute: 60,
    burst: 100,
};

async fn start() -> Harness {
    start_with(
        Arc::new(tempfile::tempdir().unwrap()),
        UNLIMITED,
        FAST,
        Arc::default(),
    )
    .await
}

impl Harness {
    async fn post(&self, body: Value, key: Option<&str>) -> (u16, HeaderMap, Value) {
        self.post_raw(body.to_string().into_bytes(), key, Some(HUB_TOKEN))
            .await
    }

    async fn post_raw(
        &self,
        body: Vec<u8>,
        key: Option<&str>,
        token: Option<&str>,
    ) -> (u16, HeaderMap, Value) {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.json().await.unwrap_or(Value::Null);
        (status, headers, body)
    }

    fn sent(&self) -> Vec<(String, String, String)> {
        self.page.lock().unwrap().sent.clone()
    }
}

fn msg(to: &str, text: &str) -> Value {
    json!({ "to": to, "text": text })
}

#[tokio::test]
async fn a_send_answers_once_the_page_handed_it_over() {
    let h = start().await;
    let (status, headers, body) = h.post(msg("5491122334455", "hola"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["to"], "5491122334455@c.us");
    assert_eq!(body["ack"], 1);
    assert_eq!(body["timestamp"], 1_700_000_000);
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].0.as_str(), sent[0].1.as_str()),
        ("5491122334455@c.us", "hola")
    );
    assert_eq!(
        body["message_id"],
        format!("true_5491122334455@c.us_{}", sent[0].2)
    );
    // without a key, the same request is a new message
    let (status, _, _) = h.post(msg("5491122334455@c.us", "hola"), None).await;
    assert_eq!(status, 200);
    assert_eq!(h.sent().len(), 2);
}

#[tokio::test]
async fn the_same_key_sends_once_and_answers_the_first_result() {
    let h = start().await;
    let first = h.post(msg("5491122334455", "hola"), Some("k-1")).await;
    assert_eq!(first.0, 200);
    let again = h.post(msg("5491122334455", "hola"), Some("k-1")).await;
    assert_eq!(again.0, 200);
    assert_eq!(again.2, first.2);
    assert_eq!(h.sent().len(), 1);
    assert_eq!(
        h.page.lock().unwrap().lookups,
        1,
        "a known key asks the page nothing"
    );
    // the id is the key's: WhatsApp's format, the same on every agent of this session
    assert_eq!(h.sent()[0].2, super::ids::from_key("ns/s", "k-1"));
    // another request under the key is refused, not answered with the first
    let (status, _, body) = h.post(msg("5491122334455", "chau"), Some("k-1")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("IDEMPOTENCY_KEY_REUSED"))
    );
    assert_eq!(h.sent().len(), 1);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_send_once() {
    let h = start().await;
    h.page.lock().unwrap().send_delay = Duration::from_millis(300);
    let h = Arc::new(h);
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let h = h.clone();
            tokio::spawn(async move { h.post(msg("5491122334455", "hola"), Some("same")).await })
        })
        .collect();
    let mut answers = Vec::new();
    for c in calls {
        let (status, _, body) = c.await.unwrap();
        assert_eq!(status, 200, "{body}");
        answers.push(body);
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    assert_eq!(h.sent().len(), 1);
}

#[tokio::test]
async fn bad_input_is_refused_with_its_code_and_nothing_is_sent() {
    let h = start().await;
    let long = "a".repeat(super::input::MAX_TEXT_CHARS + 1);
    let long_key = "k".repeat(256);
    let cases: Vec<(Vec<u8>, Option<&str>, u16, &str)> = vec![
        (
            msg("+5491122334455", "x").to_string().into(),
            None,
            400,
            "INVALID_TO",
        ),
        (
            msg("1234567", "x").to_string().into(),
            None,
            400,
            "INVALID_TO",
        ),
        (
            msg("5491122334455@g.us", "x").to_string().into(),
            None,
            400,
            "INVALID_TO",
        ),
        (
            json!({"text": "x"}).to_string().into(),
            None,
            400,
            "INVALID_TO",
        ),
        (
            json!({"to": 5491122334455u64, "text": "x"})
                .to_string()
                .into(),
            None,
            400,
            "INVALID_TO",
        ),
        (
            msg("5491122334455", "").to_string().into(),
            None,
            400,
            "INVALID_MESSAGE",
        ),
        (
            msg("5491122334455", "  ").to_string().into(),
            None,
            400,
            "INVALID_MESSAGE",
        ),
        (
            json!({"to": "5491122334455"}).to_string().into(),
            None,
            400,
            "INVALID_MESSAGE",
        ),
        (
            msg("5491122334455", &long).to_string().into(),
            None,
            400,
            "INVALID_MESSAGE",
        ),
        (
            b"{\"to\":\"5491122334455\",\"text\":\"\xff\"}".to_vec(),
            None,
            400,
            "INVALID_MESSAGE",
        ),
        (b"{not json".to_vec(), None, 400, "BAD_REQUEST"),
        (
            msg("5491122334455", "x").to_string().into(),
            Some(""),
            400,
            "INVALID_IDEMPOTENCY_KEY",
        ),
        (
            msg("5491122334455", "x").to_string().into(),
            Some(&long_key),
            400,
            "INVALID_IDEMPOTENCY_KEY",
        ),
        (
            vec![b' '; api::MAX_BODY_BYTES + 1],
            None,
            413,
            "PAYLOAD_TOO_LARGE",
        ),
    ];
    for (body, key, status, code) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
        let (s, _, b) = h.post_raw(body, key, Some(HUB_TOKEN)).await;
        assert_eq!(
            (s, b["error"].as_str()),
            (status, Some(code)),
            "{shown}: {b}"
        );
        assert!(b["message"].as_str().is_some_and(|m| !m.is_empty()), "{b}");
    }
    let (_, _, b) = h
        .post_raw(
            msg("5491122334455", &long).to_string().into(),
            None,
            Some(HUB_TOKEN),
        )
        .await;
    assert!(
        b["message"].as_str().unwrap().contains("65536"),
        "the limit is said: {b}"
    );
    assert!(h.sent().is_empty());
    assert_eq!(h.page.lock().unwrap().lookups, 0);
}

#[tokio::test]
async fn only_the_hub_may_call() {
    let h = start().await;
    let body = || msg("5491122334455", "x").to_string().into_bytes();
    let (s, _, b) = h.post_raw(body(), None, None).await;
    assert_eq!((s, b["error"].as_str()), (401, Some("UNAUTHENTICATED")));
    let (s, _, b) = h.post_raw(body(), None, Some("forged")).await;
    assert_eq!((s, b["error"].as_str()), (401, Some("UNAUTHENTICATED")));
    let (s, _, b) = h.post_raw(body(), None, Some("tenant-token")).await;
    assert_eq!((s, b["error"].as_str()), (403, Some("FORBIDDEN")));
    assert!(h.sent().is_empty());
    assert_eq!(h.page.lock().unwrap().lookups, 0);
}

#[tokio::test]
async fn the_pages_refusals_have_their_codes() {
    let h = start().await;
    h.page
        .lock()
        .unwrap()
        .not_on_whatsapp
        .insert("5491100000000".into());
    let (s, _, b) = h.post(msg("5491100000000", "x"), Some("nobody")).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (404, Some("NOT_ON_WHATSAPP")),
        "{b}"
    );

    h.page.lock().unwrap().not_ready = Some("qr_required".into());
    let (s, _, b) = h.post(msg("5491122334455", "x"), None).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (409, Some("SESSION_NOT_READY")),
        "{b}"
    );
    assert_eq!(b["session_status"], "qr_required");
    assert!(b["message"].as_str().unwrap().contains("qr_required"));
    h.page.lock().unwrap().not_ready = None;

    h.page.lock().unwrap().fail = Some("chat not found".into());
    let (s, _, b) = h.post(msg("5491122334455", "x"), None).await;
    assert_eq!((s, b["error"].as_str()), (502, Some("SEND_FAILED")), "{b}");
    assert!(h.sent().is_empty());
}

#[tokio::test]
async fn a_timed_out_send_retried_with_its_key_is_one_message() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let page: Arc<Mutex<Page>> = Arc::default();
    let slow = Deadlines {
        send: Duration::from_millis(200),
        queue: Duration::from_secs(5),
    };
    page.lock().unwrap().send_delay = Duration::from_millis(600);
    let h = start_with(dir.clone(), UNLIMITED, slow, page.clone()).await;
    let (s, _, b) = h.post(msg("5491122334455", "hola"), Some("retry-me")).await;
    assert_eq!((s, b["error"].as_str()), (504, Some("TIMEOUT")), "{b}");
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("same Idempotency-Key")
    );
    // the page went on and sent it meanwhile
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while h.sent().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the page never sent"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // a new agent on the same volume (the first one crashed): the key is known, the send is
    // asked again under the same id, and the page answers the message it has
    drop(h);
    page.lock().unwrap().send_delay = Duration::ZERO;
    let h = start_with(dir, UNLIMITED, FAST, page.clone()).await;
    let (s, _, b) = h.post(msg("5491122334455", "hola"), Some("retry-me")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(h.sent().len(), 1);
    assert_eq!(
        h.page.lock().unwrap().lookups,
        1,
        "the chat came from the journal"
    );
}

#[tokio::test]
async fn beyond_the_rate_the_send_is_refused_with_retry_after() {
    let h = start_with(
        Arc::new(tempfile::tempdir().unwrap()),
        Limits {
            per_minute: 1,
            burst: 1,
        },
        Deadlines {
            send: Duration::from_secs(5),
            queue: Duration::from_secs(1),
        },
        Arc::default(),
    )
    .await;
    let (s, _, _) = h.post(msg("5491122334455", "1"), None).await;
    assert_eq!(s, 200);
    let (s, headers, b) = h.post(msg("5491122334455", "2"), Some("k2")).await;
    assert_eq!((s, b["error"].as_str()), (429, Some("RATE_LIMITED")), "{b}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((58..=60).contains(&retry), "{retry}");
    assert_eq!(h.sent().len(), 1);
    assert_eq!(
        h.page.lock().unwrap().lookups,
        1,
        "a refused send asks the page nothing"
    );
}
