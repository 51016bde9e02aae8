//! The agent's message API through the real parts: the agent binary with real Chromium on the
//! fake WhatsApp Web, the devcluster API server holding the session and reviewing real
//! ServiceAccount tokens (TokenRequest) for the message API's audience.

#[path = "support/metrics.rs"]
mod metrics;
mod support;

use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::PostParams;
use metrics::until_metric;
use serde_json::{Value, json};
use support::*;

const T: Duration = Duration::from_secs(60);
const AUDIENCE: &str = "whatsapp.leadmaster.io/messages";

async fn service_account(c: &devcluster_testing::TestCluster, ns: &str, name: &str) {
    let api: Api<ServiceAccount> = Api::namespaced(c.client(), ns);
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    api.create(&PostParams::default(), &sa)
        .await
        .unwrap_or_else(|e| panic!("create ServiceAccount {ns}/{name}: {e}"));
}

/// A real token of `ns/name` for `audiences` (as a projected volume gets it).
async fn token(
    c: &devcluster_testing::TestCluster,
    ns: &str,
    name: &str,
    audiences: &[&str],
) -> String {
    let api: Api<ServiceAccount> = Api::namespaced(c.client(), ns);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audiences.iter().map(|a| a.to_string()).collect(),
            expiration_seconds: Some(600),
            ..Default::default()
        },
        ..Default::default()
    };
    api.create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("token of {ns}/{name}: {e}"))
        .status
        .expect("a token")
        .token
}

async fn post(url: &str, token: Option<&str>) -> (u16, Value) {
    send(
        url,
        token,
        json!({"to": PHONE, "text": "hola"}),
        Some("auth-test"),
    )
    .await
}

async fn send(url: &str, token: Option<&str>, body: Value, key: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(url).json(&body);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("the message API answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A session `s1` in a fresh tenant namespace, its agent with the message API on a free port
/// naming `wa-hub` of another namespace as its only caller.
struct World {
    c: &'static devcluster_testing::TestCluster,
    tenant_ns: String,
    hub_ns: String,
    api: Api<crds::WhatsAppSession>,
    fake: fake_whatsapp::FakeWhatsApp,
    url: String,
    agent: devcluster_testing::agent::Agent,
    _tmp: tempfile::TempDir,
}

impl World {
    async fn new(prefix: &str) -> Self {
        let c = cluster().await;
        let tenant_ns = c.namespace(prefix).await;
        let hub_ns = c.namespace(&format!("{prefix}-hub")).await;
        let api = create_session(c, &tenant_ns, "s1").await;
        service_account(c, &hub_ns, "wa-hub").await;
        let fake = fake(Duration::from_secs(20), Duration::from_secs(20), 6).await;
        let port = devcluster_testing::free_port();
        let (tmp, agent) = wa_session().start_on_empty_profile(
            c,
            &tenant_ns,
            "s1",
            &fake.url(),
            vec![
                ("WA_MESSAGES_ADDR", format!("127.0.0.1:{port}")),
                (
                    "WA_MESSAGES_CALLER",
                    format!("system:serviceaccount:{hub_ns}:wa-hub"),
                ),
                ("WA_MESSAGES_AUDIENCE", AUDIENCE.into()),
            ],
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the message API never listened: {}",
                agent.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self {
            c,
            tenant_ns,
            hub_ns,
            api,
            fake,
            url: format!("http://127.0.0.1:{port}/v1/messages"),
            agent,
            _tmp: tmp,
        }
    }

    /// Links `s1` by scanning its QR and declares `to` on WhatsApp.
    async fn link_and_declare(&self, to: &str) {
        let s =
            crds::testing::wait_status(&self.api, "s1", "first QR", T, |s| s.qr.is_some()).await;
        scan(&self.fake.url(), s.qr.as_deref().expect("qr")).await;
        crds::testing::wait_status(&self.api, "s1", "connected", T, |s| {
            s.status == Some(crds::SessionState::Connected)
        })
        .await;
        let r = fake_post(&self.fake.url(), "/_fake/numbers", json!({"phones": [to]})).await;
        assert!(r.status().is_success());
    }

    async fn hub_token(&self) -> String {
        token(self.c, &self.hub_ns, "wa-hub", &[AUDIENCE]).await
    }

    /// What the fake recorded for the linked account.
    async fn recorded(&self) -> Vec<Value> {
        let url = format!(
            "{}/_fake/messages?account={PHONE}",
            self.fake.url().trim_end_matches('/')
        );
        reqwest::get(url)
            .await
            .expect("the fake's record")
            .json()
            .await
            .expect("json")
    }
}

#[tokio::test]
async fn only_the_hubs_token_for_the_audience_is_accepted() {
    let w = World::new("msgauth").await;
    let (c, url) = (w.c, w.url.as_str());
    service_account(c, &w.tenant_ns, "intruder").await;

    // No token, a forged one, the hub's own token for another audience (the API server's):
    // not authenticated.
    for token in [
        None,
        Some("not-a-token".to_string()),
        Some(token(c, &w.hub_ns, "wa-hub", &[]).await),
    ] {
        let (s, b) = post(url, token.as_deref()).await;
        assert_eq!(
            (s, b["error"].as_str()),
            (401, Some("UNAUTHENTICATED")),
            "{b}"
        );
    }

    // A pod of the tenant's namespace with a valid token for the audience: forbidden.
    let intruder = token(c, &w.tenant_ns, "intruder", &[AUDIENCE]).await;
    let (s, b) = post(url, Some(&intruder)).await;
    assert_eq!((s, b["error"].as_str()), (403, Some("FORBIDDEN")), "{b}");
    assert!(b["message"].as_str().unwrap().contains("intruder"), "{b}");

    // The hub's token passes; the session is not linked, so the page says so.
    let hub = w.hub_token().await;
    let (s, b) = post(url, Some(&hub)).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (409, Some("SESSION_NOT_READY")),
        "{b}"
    );
    assert!(b["session_status"].is_string(), "{b}");
    assert!(w.recorded().await.is_empty(), "nothing was sent");
}

#[tokio::test]
async fn a_message_is_sent_once_per_key_and_bad_input_sends_nothing() {
    let w = World::new("msgsend").await;
    let to = "5491199887766";
    w.link_and_declare(to).await;
    let hub = w.hub_token().await;
    let hola = json!({"to": to, "text": "Hola desde la API"});

    // Sent: the answer comes with the fake's own record of it.
    let (s, first) = send(&w.url, Some(&hub), hola.clone(), Some("order-1")).await;
    assert_eq!(s, 200, "{first} {}", w.agent.log_text());
    let sent = w.recorded().await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["body"], "Hola desde la API");
    assert_eq!(sent[0]["chat"], format!("{to}@c.us"));
    assert_eq!(first["message_id"], sent[0]["key"]);
    assert_eq!(first["to"], format!("{to}@c.us"));
    assert!(first["ack"].as_i64().unwrap() >= 1);
    let id = sent[0]["id"].as_str().unwrap();
    assert!(
        id.starts_with("3EB0") && id.len() == 20,
        "the key's id: {id}"
    );

    // The same key: the first answer, nothing sent again; another text under it is refused.
    let (s, again) = send(&w.url, Some(&hub), hola.clone(), Some("order-1")).await;
    assert_eq!((s, &again), (200, &first));
    let (s, b) = send(
        &w.url,
        Some(&hub),
        json!({"to": to, "text": "otro"}),
        Some("order-1"),
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (422, Some("IDEMPOTENCY_KEY_REUSED")),
        "{b}"
    );

    // Bad input, each with its code; a number not on WhatsApp.
    for (body, code, status) in [
        (
            json!({"to": "+5491199887766", "text": "x"}),
            "INVALID_TO",
            400,
        ),
        (json!({"to": to, "text": ""}), "INVALID_MESSAGE", 400),
        (
            json!({"to": to, "text": "a".repeat(65_537)}),
            "INVALID_MESSAGE",
            400,
        ),
        (
            json!({"to": "5491100000001", "text": "x"}),
            "NOT_ON_WHATSAPP",
            404,
        ),
    ] {
        let (s, b) = send(&w.url, Some(&hub), body, None).await;
        assert_eq!((s, b["error"].as_str()), (status, Some(code)), "{b}");
    }
    assert_eq!(w.recorded().await.len(), 1, "nothing else was sent");
}

/// The whole path through the real parts: a text sent through the agent's message API is in the
/// fake's record under the answer's id; the recipient's acks (driven through the fake's control
/// API) and a contact's reply come back from the page as message events (counted on /metrics:
/// the events' subscribers are issue 24's delivery).
#[tokio::test]
async fn a_sent_message_is_acknowledged_and_the_reply_reported() {
    let w = World::new("msgevents").await;
    let to = "5491199887766";
    w.link_and_declare(to).await;
    let hub = w.hub_token().await;
    let (s, sent) = send(
        &w.url,
        Some(&hub),
        json!({"to": to, "text": "¿Seguís interesado?"}),
        Some("lead-7"),
    )
    .await;
    assert_eq!(s, 200, "{sent} {}", w.agent.log_text());
    let recorded = w.recorded().await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(sent["message_id"], recorded[0]["key"]);
    // The page reported its own new message and the server ack the answer waited for.
    until_metric(&w.agent.http, "wa_session_message_events_total 2").await;
    for (ack, events) in [(2, 3), (3, 4)] {
        let r = fake_post(
            &w.fake.url(),
            "/_fake/messages/ack",
            json!({"id": sent["message_id"], "ack": ack}),
        )
        .await;
        assert!(r.status().is_success(), "ack {ack}: {}", r.status());
        until_metric(
            &w.agent.http,
            &format!("wa_session_message_events_total {events}"),
        )
        .await;
    }
    let r = fake_post(
        &w.fake.url(),
        "/_fake/messages/incoming",
        json!({"to": PHONE, "from": to, "body": "Sí, ¿cuánto sale?"}),
    )
    .await;
    assert!(r.status().is_success(), "{}", r.status());
    until_metric(&w.agent.http, "wa_session_message_events_total 5").await;
}
