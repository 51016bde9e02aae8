//! QR requests (REST `POST …/qr`, socket.io `request-qr`) and QR pushes (docs/design.md §3, §4).

use base64::Engine;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use crate::support::bridge::Bridge;
use crate::support::*;

const QR1: &str = "2@ref-one,key,adv,secret";

/// Asks for a QR of `a-main` as `token`, then plays the agent showing `qr` for that request;
/// returns the request's time.
pub async fn show_qr(e: &Env, hub: &HubProc, token: &str, qr: &str) -> Time {
    let (st, snap) = post(
        &format!("{}/a-main/qr", sessions_url(hub, true)),
        Some(token),
        None,
    )
    .await;
    assert_eq!(st, 200, "{snap}");
    let requested = e
        .sessions()
        .get("a-main")
        .await
        .unwrap()
        .spec
        .qr_requested_at
        .expect("qrRequestedAt set");
    agent_status(&e.client, &e.ns, "a-main", json!({
        "status": "qr_required", "qrStatus": "generated", "qr": qr,
        "qrGeneratedAt": rfc3339_in(0), "qrExpiresAt": rfc3339_in(60), "updatedAt": rfc3339_in(0),
        "handled": {"qrRequestedAt": requested},
    })).await;
    requested
}

/// Plays the agent letting the QR of `a-main` expire (the request stays handled).
pub async fn expire_qr(e: &Env, requested: &Time) {
    agent_status(&e.client, &e.ns, "a-main", json!({"status": "qr_required", "qrStatus": "expired", "updatedAt": rfc3339_in(1), "handled": {"qrRequestedAt": requested}})).await;
}

/// No valid QR: the hub applies `desiredState: Running` and `qrRequestedAt` as field manager
/// whatsapp-hub, owning nothing else; a second request while that one is pending starts no
/// new round.
#[tokio::test]
async fn a_qr_request_applies_only_the_hubs_fields_and_a_pending_one_starts_no_new_round() {
    let e = env("hub-qr-apply").await;
    e.session("a-main", "a").await;
    let hub = e.hub().await;
    let ana = login(&hub, "ana").await;
    let (st, snap) = post(
        &format!("{}/a-main/qr", sessions_url(&hub, true)),
        Some(&ana),
        None,
    )
    .await;
    assert_eq!(st, 200, "{snap}");
    let cr = e.sessions().get("a-main").await.unwrap();
    let requested = cr.spec.qr_requested_at.clone().expect("qrRequestedAt set");
    let mf = cr.metadata.managed_fields.clone().unwrap_or_default();
    let hub_mf = mf
        .iter()
        .find(|m| m.manager.as_deref() == Some("whatsapp-hub"))
        .expect("whatsapp-hub manages fields");
    let fields = serde_json::to_value(&hub_mf.fields_v1).unwrap();
    let spec_keys: Vec<&String> = fields["f:spec"].as_object().unwrap().keys().collect();
    assert_eq!(
        spec_keys,
        ["f:desiredState", "f:qrRequestedAt"],
        "hub owns only its fields: {fields}"
    );
    assert!(fields.get("f:status").is_none());

    let (st, _) = post(
        &format!("{}/a-main/qr", sessions_url(&hub, false)),
        Some(&ana),
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        e.sessions()
            .get("a-main")
            .await
            .unwrap()
            .spec
            .qr_requested_at,
        Some(requested)
    );
}

/// The agent shows a QR: subscribers get `session-status` and a rendered `qr-code`; a QR
/// request is answered with it; a late subscriber gets it at once.
#[tokio::test]
async fn a_new_qr_is_pushed_rendered_and_given_to_late_subscribers() {
    let e = env("hub-qr-push").await;
    e.session("a-main", "a").await;
    let hub = e.hub().await;
    let ana = login(&hub, "ana").await;
    let mut b = Bridge::start().await;
    b.subscribed("ana", &hub.url, &ana, "a-main").await;

    show_qr(&e, &hub, &ana, QR1).await;
    let s = b
        .expect("qr_required status", |m| {
            m["client"] == "ana"
                && m["event"] == "session-status"
                && m["data"]["status"] == "qr_required"
        })
        .await["data"]
        .clone();
    assert_eq!(
        (s["status"].as_str(), s["qr_status"].as_str()),
        (Some("qr_required"), Some("generated"))
    );
    for k in ["connectedAt", "phoneNumber", "updatedAt"] {
        assert!(s.get(k).is_some(), "session-status lacks {k}");
    }
    let q = b.event("ana", "qr-code", Some("a-main")).await;
    assert_eq!(q["qr_string"], QR1);
    assert!(q["expiresAt"].is_string());
    let png = base64::engine::general_purpose::STANDARD
        .decode(
            q["qr"]
                .as_str()
                .unwrap()
                .strip_prefix("data:image/png;base64,")
                .unwrap(),
        )
        .unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    // With a valid QR, POST qr returns it and writes nothing.
    let before = e.sessions().get("a-main").await.unwrap();
    let (st, snap) = post(
        &format!("{}/a-main/qr", sessions_url(&hub, true)),
        Some(&ana),
        None,
    )
    .await;
    assert_eq!((st, snap["qr_string"].as_str()), (200, Some(QR1)));
    let after = e.sessions().get("a-main").await.unwrap();
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "a request answered with a valid QR writes nothing"
    );

    b.connect(
        "ana2",
        &hub.url,
        Some(json!({"token": ana})),
        vec![("subscribe-session".into(), json!({"instance_id": "a-main"}))],
    )
    .await;
    assert_eq!(
        b.event("ana2", "qr-code", Some("a-main")).await["qr_string"],
        QR1
    );
}

/// The QR expires: subscribers get `qr-expired` with the Spanish message; a new round within
/// the interval is refused with 429 over REST and RATE_LIMITED over socket.io.
#[tokio::test]
async fn an_expired_qr_is_announced_and_a_new_round_within_the_interval_is_rate_limited() {
    let e = env("hub-qr-expired").await;
    e.session("a-main", "a").await;
    let hub = e.hub().await;
    let ana = login(&hub, "ana").await;
    let mut b = Bridge::start().await;
    b.subscribed("ana", &hub.url, &ana, "a-main").await;
    let requested = show_qr(&e, &hub, &ana, QR1).await;
    b.event("ana", "qr-code", Some("a-main")).await;

    expire_qr(&e, &requested).await;
    let x = b.event("ana", "qr-expired", Some("a-main")).await;
    assert_eq!(x["message"], "QR expirado, genere uno nuevo");
    let r = post(
        &format!("{}/a-main/qr", sessions_url(&hub, true)),
        Some(&ana),
        None,
    )
    .await;
    assert_err(&r, 429, "RATE_LIMITED");
    let ack = b
        .emit_ack("ana", "request-qr", json!({"instance_id": "a-main"}))
        .await;
    assert_eq!(ack["error"], "RATE_LIMITED", "{ack}");
    b.event("ana", "connection-error", Some("a-main")).await;
}
