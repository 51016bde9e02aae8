//! socket.io (docs/design.md §4): subscribing, pushes of status changes, unsubscribing.

use serde_json::json;

use crate::support::bridge::Bridge;
use crate::support::*;

/// Handshake auth, then `subscribe-session`: acked, and the current status sent at once.
#[tokio::test]
async fn subscribing_sends_the_current_status_at_once() {
    let e = env("hub-subscribe").await;
    e.session("a-main", "a").await;
    let hub = e.hub().await;
    let ana = login(&hub, "ana").await;
    let mut b = Bridge::start().await;
    b.connect("ana", &hub.url, Some(json!({"token": ana})), vec![])
        .await;
    assert_eq!(
        b.event("ana", "authenticated", None).await,
        json!({"success": true})
    );
    let ack = b
        .emit_ack("ana", "subscribe-session", json!({"instance_id": "a-main"}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let st0 = b.event("ana", "session-status", Some("a-main")).await;
    assert_eq!(st0["status"], "init");
}

/// The agent reports the link: subscribers get `connected` with the phone number.
#[tokio::test]
async fn a_linked_session_pushes_connected_with_the_phone_number() {
    let e = env("hub-linked").await;
    e.session("a-main", "a").await;
    let hub = e.hub().await;
    let ana = login(&hub, "ana").await;
    let mut b = Bridge::start().await;
    b.subscribed("ana", &hub.url, &ana, "a-main").await;
    agent_status(&e.client, &e.ns, "a-main", json!({"status": "connected", "qrStatus": "used", "phoneNumber": "5491122334455", "connectedAt": rfc3339_in(2), "updatedAt": rfc3339_in(2)})).await;
    let s = b
        .expect("connected status", |m| {
            m["client"] == "ana"
                && m["event"] == "session-status"
                && m["data"]["status"] == "connected"
        })
        .await;
    assert_eq!(s["data"]["phoneNumber"], "5491122334455");
}

/// After `unsubscribe-session` a client gets no more pushes of that session; another
/// subscriber still does.
#[tokio::test]
async fn an_unsubscribed_client_gets_no_more_pushes() {
    let e = env("hub-unsubscribe").await;
    e.session("a-main", "a").await;
    let hub = e.hub().await;
    let ana = login(&hub, "ana").await;
    let mut b = Bridge::start().await;
    for client in ["ana", "ana2"] {
        b.subscribed(client, &hub.url, &ana, "a-main").await;
    }
    let ack = b
        .emit_ack(
            "ana",
            "unsubscribe-session",
            json!({"instance_id": "a-main"}),
        )
        .await;
    assert_eq!(ack["ok"], true);
    agent_status(
        &e.client,
        &e.ns,
        "a-main",
        json!({"status": "disconnected", "qrStatus": "none", "updatedAt": rfc3339_in(3)}),
    )
    .await;
    b.expect("ana2 sees disconnected", |m| {
        m["client"] == "ana2"
            && m["event"] == "session-status"
            && m["data"]["status"] == "disconnected"
    })
    .await;
    b.drain();
    assert!(!b.seen.iter().any(|m| m["client"] == "ana"
        && m["event"] == "session-status"
        && m["data"]["status"] == "disconnected"));
}
