//! Tenant isolation: a user of one tenant never sees, changes or hears of another tenant's
//! session, over REST or socket.io; unauthenticated sockets may only authenticate.

use std::time::Duration;

use crds::WhatsAppSession;
use kube::Api;
use serde_json::{Value, json};

use crate::support::bridge::Bridge;
use crate::support::*;

#[tokio::test]
async fn tenant_isolation_matrix() {
    let e = env("hub-tenants").await;
    e.session("a-one", "a").await;
    e.session("b-one", "b").await;
    let mut args = hs256_args(&e.files, &e.ns);
    args.extend(["--auth-timeout-secs".into(), "2".into()]);
    let hub = HubProc::start(&e.kubeconfig, args).await;
    let ana = token("ana", &["a"], "user", 600);
    let admin = token("root", &[], "admin", 600);

    // REST: every route on B's session is 403 FORBIDDEN for a user of A, with and without /api.
    for api in [true, false] {
        let base = format!("{}/b-one", sessions_url(&hub, api));
        assert_err(&get(&base, Some(&ana)).await, 403, "FORBIDDEN");
        assert_err(
            &post(&format!("{base}/qr"), Some(&ana), None).await,
            403,
            "FORBIDDEN",
        );
        assert_err(
            &post(&format!("{base}/disconnect"), Some(&ana), None).await,
            403,
            "FORBIDDEN",
        );
        assert_eq!(
            get(&format!("{}/a-one", sessions_url(&hub, api)), Some(&ana))
                .await
                .0,
            200
        );
    }
    let cr = Api::<WhatsAppSession>::namespaced(e.client.clone(), &e.ns)
        .get("b-one")
        .await
        .unwrap();
    assert!(
        cr.spec.qr_requested_at.is_none() && cr.spec.logout_requested_at.is_none(),
        "forbidden requests wrote nothing"
    );

    // socket.io: every event on B → connection-error FORBIDDEN.
    let mut b = Bridge::start().await;
    b.connect("ana", &hub.url, Some(json!({"token": ana})), vec![])
        .await;
    b.event("ana", "authenticated", None).await;
    for ev in ["subscribe-session", "request-qr"] {
        let ack = b.emit_ack("ana", ev, json!({"instance_id": "b-one"})).await;
        assert_eq!(
            (ack["error"].as_str(), ack["instance_id"].as_str()),
            (Some("FORBIDDEN"), Some("b-one")),
            "{ev}: {ack}"
        );
        let ce = b.event("ana", "connection-error", Some("b-one")).await;
        assert_eq!(ce["error"], "FORBIDDEN");
    }
    b.emit_ack("ana", "subscribe-session", json!({"instance_id": "a-one"}))
        .await;
    b.connect("admin", &hub.url, Some(json!({"token": admin})), vec![])
        .await;
    b.event("admin", "authenticated", None).await;
    assert_eq!(
        b.emit_ack(
            "admin",
            "subscribe-session",
            json!({"instance_id": "b-one"})
        )
        .await["ok"],
        true
    );
    assert_eq!(
        b.emit_ack(
            "admin",
            "subscribe-session",
            json!({"instance_id": "a-one"})
        )
        .await["ok"],
        true
    );

    // B changes reach admin, never ana; A changes reach both.
    for i in 0..3 {
        agent_status(&e.client, &e.ns, "b-one", json!({"status": "qr_required", "qrStatus": "generated", "qr": format!("b-secret-qr-{i}"), "qrExpiresAt": rfc3339_in(60), "updatedAt": rfc3339_in(i)})).await;
        b.expect("admin gets B's QR", |m| {
            m["client"] == "admin"
                && m["event"] == "qr-code"
                && m["data"]["qr_string"] == format!("b-secret-qr-{i}")
        })
        .await;
    }
    agent_status(
        &e.client,
        &e.ns,
        "a-one",
        json!({"status": "connecting", "updatedAt": rfc3339_in(5)}),
    )
    .await;
    b.expect("ana gets A", |m| {
        m["client"] == "ana"
            && m["event"] == "session-status"
            && m["data"]["status"] == "connecting"
    })
    .await;
    b.expect("admin gets A", |m| {
        m["client"] == "admin"
            && m["event"] == "session-status"
            && m["data"]["status"] == "connecting"
    })
    .await;
    b.drain();
    let leaked: Vec<&Value> = b
        .seen
        .iter()
        .filter(|m| {
            m["client"] == "ana"
                && m["type"] == "event"
                && m["event"] != "connection-error"
                && m["data"]["instance_id"] == "b-one"
        })
        .collect();
    assert!(leaked.is_empty(), "ana received B's data: {leaked:#?}");

    // The list never shows B to ana.
    let (_, list) = get(&sessions_url(&hub, true), Some(&ana)).await;
    assert!(list.as_array().unwrap().iter().all(|s| s["tenant"] == "a"));

    // Unauthenticated sockets: only `authenticate` works, then they are dropped after the timeout.
    b.connect("anon", &hub.url, None, vec![]).await;
    b.expect("anon connected", |m| {
        m["client"] == "anon" && m["type"] == "connect"
    })
    .await;
    let ack = b
        .emit_ack("anon", "subscribe-session", json!({"instance_id": "a-one"}))
        .await;
    assert_eq!(ack["error"], "UNAUTHENTICATED");
    let ack = b
        .emit_ack("anon", "request-qr", json!({"instance_id": "a-one"}))
        .await;
    assert_eq!(ack["error"], "UNAUTHENTICATED");
    let ack = b
        .emit_ack("anon", "authenticate", json!({"token": "garbage"}))
        .await;
    assert_eq!(ack["error"], "UNAUTHENTICATED");
    b.expect("anon dropped with TIMEOUT", |m| {
        m["client"] == "anon" && m["event"] == "connection-error" && m["data"]["error"] == "TIMEOUT"
    })
    .await;
    b.expect("anon disconnected", |m| {
        m["client"] == "anon" && m["type"] == "disconnect"
    })
    .await;
    b.close("anon").await;
    // ...while authenticating by event within the timeout keeps the socket.
    b.connect("late", &hub.url, None, vec![]).await;
    b.expect("late connected", |m| {
        m["client"] == "late" && m["type"] == "connect"
    })
    .await;
    assert_eq!(
        b.emit_ack("late", "authenticate", json!({"token": ana}))
            .await,
        json!({"success": true})
    );
    assert_eq!(
        b.emit_ack("late", "subscribe-session", json!({"instance_id": "a-one"}))
            .await["ok"],
        true
    );
    tokio::time::sleep(Duration::from_secs(3)).await; // past the 2 s auth timeout: must still be connected
    b.drain();
    assert!(
        !b.seen
            .iter()
            .any(|m| m["client"] == "late" && m["type"] == "disconnect"),
        "authenticated socket was dropped"
    );
}
