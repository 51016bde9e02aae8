//! Tenant isolation: a user of one tenant never sees, changes or hears of another tenant's
//! session, over REST or socket.io — another tenant's session answers as no session at all;
//! a session is served only when its namespace claims its tenant; unauthenticated sockets may
//! only authenticate.

use std::time::Duration;

use crds::WhatsAppSession;
use devcluster_testing::wait_for_value;
use kube::Api;
use serde_json::{Value, json};

use crate::support::bridge::Bridge;
use crate::support::*;

#[tokio::test]
async fn tenant_isolation_matrix() {
    let e = env("hub-tenants").await;
    e.session("a-one", "a").await;
    e.session("b-one", "b").await;
    let hub = e.hub_with(&["--auth-timeout-secs", "2"]).await;
    let ana = token("ana", &["a"], "user", 600);
    let admin = token("root", &[], "admin", 600);

    // REST: every route on B's session is 404 NOT_FOUND for a user of A (the same answer as a
    // name nobody has: B's sessions are not revealed), with and without /api.
    for api in [true, false] {
        let base = format!("{}/b-one", sessions_url(&hub, api));
        let nobody = format!("{}/no-such-session", sessions_url(&hub, api));
        let other = get(&base, Some(&ana)).await;
        assert_err(&other, 404, "NOT_FOUND");
        assert_eq!(
            other.1["message"].as_str().map(|m| m.replace("b-one", "X")),
            get(&nobody, Some(&ana)).await.1["message"]
                .as_str()
                .map(|m| m.replace("no-such-session", "X")),
            "another tenant's session answers exactly as a missing one"
        );
        assert_err(
            &post(&format!("{base}/qr"), Some(&ana), None).await,
            404,
            "NOT_FOUND",
        );
        assert_err(
            &post(&format!("{base}/disconnect"), Some(&ana), None).await,
            404,
            "NOT_FOUND",
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

    // socket.io: every event on B → connection-error NOT_FOUND.
    let mut b = Bridge::start().await;
    b.connect("ana", &hub.url, Some(json!({"token": ana})), vec![])
        .await;
    b.event("ana", "authenticated", None).await;
    for ev in ["subscribe-session", "request-qr"] {
        let ack = b.emit_ack("ana", ev, json!({"instance_id": "b-one"})).await;
        assert_eq!(
            (ack["error"].as_str(), ack["instance_id"].as_str()),
            (Some("NOT_FOUND"), Some("b-one")),
            "{ev}: {ack}"
        );
        let ce = b.event("ana", "connection-error", Some("b-one")).await;
        assert_eq!(ce["error"], "NOT_FOUND");
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

/// Items 2 and 3 of issue 28, on a hub serving every namespace (the chart's default): a
/// session is served only where its namespace claims its tenant, and a name resolves among the
/// sessions the caller may see.
#[tokio::test]
async fn names_resolve_among_visible_sessions_of_claimed_namespaces() {
    let e = env("hub-claims").await;
    let cluster = devcluster_testing::cluster().await;
    // Tenants of this test only: other tests' sessions are served by this hub too.
    let suffix = &e.ns[e.ns.len() - 6..];
    let (acme, globex) = (format!("acme-{suffix}"), format!("globex-{suffix}"));
    let (own_ns, other_ns, attacker_ns) = (
        e.ns.clone(),
        cluster.namespace("hub-claims-b").await,
        cluster.namespace("hub-claims-x").await,
    );
    let api = |ns: &str| Api::<WhatsAppSession>::namespaced(e.client.clone(), ns);
    crds::testing::create(
        &api(&own_ns),
        "ventas",
        json!({"tenant": acme, "displayName": "Ventas"}),
    )
    .await;
    crds::testing::create(&api(&other_ns), "ventas", json!({"tenant": globex})).await;
    // The attacker's namespace claims its own tenant only; the planted session names acme's.
    crds::testing::claim_tenant(&e.client, &attacker_ns, "attacker").await;
    let planted: WhatsAppSession = serde_json::from_value(crds::testing::manifest(
        "ventas",
        json!({"tenant": acme, "displayName": "Ventas", "desiredState": "Stopped"}),
    ))
    .unwrap();
    api(&attacker_ns)
        .create(&Default::default(), &planted)
        .await
        .unwrap();

    let hub = HubProc::start(&e.kubeconfig, all_namespaces_args(&e.files)).await;
    let user = token("u", &[&acme], "user", 600);
    let admin = token("root", &[], "admin", 600);
    let base = sessions_url(&hub, true);

    // The list: acme's own session only, not the planted one.
    let (st, list) = get(&base, Some(&user)).await;
    assert_eq!(st, 200);
    let mine: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["namespace"].as_str().unwrap(),
                s["instance_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(mine, [(own_ns.as_str(), "ventas")]);

    // Without ?namespace= the name is acme's own (globex's and the planted one are not
    // acme's to see, so they neither answer nor make it ambiguous).
    let (st, snap) = get(&format!("{base}/ventas"), Some(&user)).await;
    assert_eq!(
        (st, snap["namespace"].as_str()),
        (200, Some(own_ns.as_str()))
    );
    // The planted session cannot be reached even by naming its namespace, and a QR request
    // for it writes nothing (no pod would start there).
    for path in ["", "/qr", "/disconnect"] {
        let url = format!("{base}/ventas{path}?namespace={attacker_ns}");
        let r = if path.is_empty() {
            get(&url, Some(&user)).await
        } else {
            post(&url, Some(&user), None).await
        };
        assert_err(&r, 404, "NOT_FOUND");
    }
    let untouched = api(&attacker_ns).get("ventas").await.unwrap();
    assert!(
        untouched.spec.qr_requested_at.is_none()
            && untouched.spec.logout_requested_at.is_none()
            && untouched.spec.desired_state == crds::DesiredState::Stopped,
        "{:?}",
        untouched.spec
    );
    // socket.io resolves the same way.
    let mut b = Bridge::start().await;
    b.connect("u", &hub.url, Some(json!({"token": user})), vec![])
        .await;
    b.event("u", "authenticated", None).await;
    let ack = b
        .emit_ack("u", "subscribe-session", json!({"instance_id": "ventas"}))
        .await;
    assert_eq!(ack["session"]["namespace"], own_ns.as_str(), "{ack}");
    let ack = b
        .emit_ack(
            "u",
            "subscribe-session",
            json!({"instance_id": "ventas", "namespace": attacker_ns}),
        )
        .await;
    assert_eq!(ack["error"], "NOT_FOUND", "{ack}");

    // An admin sees both claimed sessions named ventas (409 without ?namespace=), never the
    // planted one; the hub counts it as unclaimed.
    assert_err(
        &get(&format!("{base}/ventas"), Some(&admin)).await,
        409,
        "CONFLICT",
    );
    let (_, all) = get(&base, Some(&admin)).await;
    assert!(
        !all.as_array()
            .unwrap()
            .iter()
            .any(|s| s["namespace"] == attacker_ns.as_str()),
        "the planted session is served to nobody"
    );
    let unclaimed = hub.metric("wa_hub_unclaimed_sessions").await;
    assert!(unclaimed >= 1.0, "{unclaimed}");

    // The claim is the trust anchor: once a cluster admin labels the attacker's namespace for
    // acme, its session is acme's too (and the name becomes ambiguous for acme); unlabelled
    // again, it is gone.
    crds::testing::claim_tenant(&e.client, &attacker_ns, &acme).await;
    wait_for_value(
        "the claimed session listed",
        Duration::from_secs(20),
        || async {
            let (_, list) = get(&base, Some(&user)).await;
            (list.as_array()?.len() == 2).then_some(())
        },
    )
    .await;
    assert_err(
        &get(&format!("{base}/ventas"), Some(&user)).await,
        409,
        "CONFLICT",
    );
    crds::testing::unclaim_tenant(&e.client, &attacker_ns, &acme).await;
    wait_for_value(
        "the unclaimed session gone",
        Duration::from_secs(20),
        || async {
            let (st, _) = get(&format!("{base}/ventas"), Some(&user)).await;
            (st == 200).then_some(())
        },
    )
    .await;
}
