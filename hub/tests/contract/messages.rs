//! Sending messages through the hub (docs/design.md §3 `POST …/messages`, §4 `send-message`)
//! against the real API server and the real socket.io-client: the hub's own part — tenancy,
//! bad input, a session without a running agent. The agent's part runs through the real parts
//! in session-pod/tests/messages_api.rs.

use serde_json::json;

use crate::support::bridge::Bridge;
use crate::support::*;

#[tokio::test]
async fn a_send_is_authorized_like_every_session_route_and_needs_a_running_agent() {
    let e = env("hub-messages").await;
    e.session("a-main", "a").await;
    let hub = e.hub().await;
    let (ana, bob) = (login(&hub, "ana").await, login(&hub, "bob").await);
    let hola = json!({"to": "5491122334455", "text": "hola"});
    for api in [true, false] {
        let url = format!("{}/a-main/messages", sessions_url(&hub, api));
        // no pod runs the session's agent: not ready, with the session's status
        let (st, body) = post(&url, Some(&ana), Some(hola.clone())).await;
        assert_eq!(
            (st, body["error"].as_str()),
            (409, Some("SESSION_NOT_READY")),
            "{body}"
        );
        assert!(
            body["message"].as_str().unwrap().contains("status"),
            "{body}"
        );
        // another tenant's session is no session at all
        let (st, body) = post(&url, Some(&bob), Some(hola.clone())).await;
        assert_eq!(
            (st, body["error"].as_str()),
            (404, Some("NOT_FOUND")),
            "{body}"
        );
        let (st, _) = post(&url, None, Some(hola.clone())).await;
        assert_eq!(st, 401);
        let (st, body) = post(&url, Some(&ana), Some(json!({"to": 5}))).await;
        assert_eq!(
            (st, body["error"].as_str()),
            (400, Some("BAD_REQUEST")),
            "{body}"
        );
    }
}

#[tokio::test]
async fn send_message_over_socket_io_reaches_the_same_path() {
    let e = env("hub-messages-socket").await;
    e.session("a-main", "a").await;
    let hub = e.hub().await;
    let ana = login(&hub, "ana").await;
    let mut b = Bridge::start().await;
    b.connect("ana", &hub.url, Some(json!({"token": ana})), vec![])
        .await;
    b.event("ana", "authenticated", None).await;
    let ack = b
        .emit_ack(
            "ana",
            "send-message",
            json!({"instance_id": "a-main", "to": "5491122334455", "text": "hola", "idempotency_key": "k1"}),
        )
        .await;
    assert_eq!(ack["error"], "SESSION_NOT_READY", "{ack}");
    assert_eq!(ack["instance_id"], "a-main", "{ack}");
    let ack = b
        .emit_ack(
            "ana",
            "send-message",
            json!({"instance_id": "b-other", "to": "5491122334455", "text": "x"}),
        )
        .await;
    assert_eq!(ack["error"], "NOT_FOUND", "{ack}");
    let ack = b
        .emit_ack(
            "ana",
            "send-message",
            json!({"instance_id": "a-main", "text": "x"}),
        )
        .await;
    assert_eq!(ack["error"], "BAD_REQUEST", "{ack}");
}
