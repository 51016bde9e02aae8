//! REST (docs/design.md §3): login, lists, snapshots, disconnect, and what the hub documents
//! and measures about itself.

use serde_json::json;

use crate::support::bridge::Bridge;
use crate::support::*;

#[tokio::test]
async fn login_issues_a_token_for_the_users_tenants_and_refuses_a_wrong_password() {
    let e = env("hub-login").await;
    let hub = e.hub().await;
    let (st, body) = get(&format!("{}/health", hub.url), None).await;
    assert_eq!((st, body["status"].as_str()), (200, Some("ok")));

    let (st, body) = post(
        &format!("{}/api/auth/login", hub.url),
        None,
        Some(json!({"username": "ana", "password": PASSWORD})),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        body["user"],
        json!({"username": "ana", "tenants": ["a"], "role": "user"})
    );
    assert!(body["expiresAt"].as_str().unwrap().ends_with('Z'));
    assert!(body["token"].as_str().is_some_and(|t| !t.is_empty()));
    assert_err(
        &post(
            &format!("{}/api/auth/login", hub.url),
            None,
            Some(json!({"username": "ana", "password": "nope"})),
        )
        .await,
        401,
        "UNAUTHENTICATED",
    );
}

#[tokio::test]
async fn lists_show_a_user_its_tenant_and_an_admin_everything_with_and_without_api() {
    let e = env("hub-lists").await;
    e.session("a-main", "a").await;
    e.session("b-main", "b").await;
    let hub = e.hub().await;
    let ana = login(&hub, "ana").await;
    let admin = login(&hub, "admin").await;
    for api in [true, false] {
        let (st, list) = get(&sessions_url(&hub, api), Some(&ana)).await;
        assert_eq!(st, 200);
        let names: Vec<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["instance_id"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a-main"]);
        let (_, list) = get(&sessions_url(&hub, api), Some(&admin)).await;
        assert_eq!(list.as_array().unwrap().len(), 2);
    }
}

#[tokio::test]
async fn a_snapshot_carries_every_documented_field() {
    let e = env("hub-snapshot").await;
    e.session("a-main", "a").await;
    let hub = e.hub().await;
    let ana = login(&hub, "ana").await;
    let (st, snap) = get(&format!("{}/a-main", sessions_url(&hub, true)), Some(&ana)).await;
    assert_eq!(st, 200);
    for k in [
        "instance_id",
        "tenant",
        "status",
        "qr_status",
        "qr_string",
        "qr_expires_at",
        "phone_number",
        "connected_at",
        "updated_at",
        "last_error",
    ] {
        assert!(snap.get(k).is_some(), "snapshot lacks {k}: {snap}");
    }
    assert_eq!(
        (
            snap["tenant"].as_str(),
            snap["status"].as_str(),
            snap["qr_status"].as_str()
        ),
        (Some("a"), Some("init"), Some("none"))
    );
}

#[tokio::test]
async fn disconnect_requests_logout_and_keeps_the_qr_request() {
    let e = env("hub-disconnect").await;
    e.session("a-main", "a").await;
    let hub = e.hub().await;
    let ana = login(&hub, "ana").await;
    let (st, _) = post(
        &format!("{}/a-main/qr", sessions_url(&hub, true)),
        Some(&ana),
        None,
    )
    .await;
    assert_eq!(st, 200);
    let requested = e
        .sessions()
        .get("a-main")
        .await
        .unwrap()
        .spec
        .qr_requested_at;
    assert!(requested.is_some());

    let (st, body) = post(
        &format!("{}/a-main/disconnect", sessions_url(&hub, false)),
        Some(&ana),
        None,
    )
    .await;
    assert_eq!((st, body), (200, json!({"ok": true})));
    let cr = e.sessions().get("a-main").await.unwrap();
    assert!(cr.spec.logout_requested_at.is_some());
    // Server-side apply drops a field its manager omits: the hub must send it again.
    assert_eq!(cr.spec.qr_requested_at, requested);
}

#[tokio::test]
async fn repeated_logouts_write_once_and_each_caller_has_a_request_budget() {
    let e = env("hub-logout-storm").await;
    e.session("a-main", "a").await;
    // 6 a minute, 5 at once.
    let hub = e.hub_with(&["--session-requests-per-minute", "6"]).await;
    let ana = login(&hub, "ana").await;
    let admin = login(&hub, "admin").await;
    let url = format!("{}/a-main/disconnect", sessions_url(&hub, true));
    assert_eq!(post(&url, Some(&ana), None).await.0, 200);
    let first = e.sessions().get("a-main").await.unwrap();
    assert!(first.spec.logout_requested_at.is_some());
    // No agent runs: the request stays pending, and asking again changes nothing.
    for _ in 0..4 {
        assert_eq!(
            post(&url, Some(&ana), None).await,
            (200, json!({"ok": true}))
        );
    }
    let after = e.sessions().get("a-main").await.unwrap();
    assert_eq!(
        after.metadata.resource_version, first.metadata.resource_version,
        "repeated logouts of a pending request wrote nothing"
    );
    let limited = post(&url, Some(&ana), None).await;
    assert_err(&limited, 429, "RATE_LIMITED");
    let qr = post(
        &format!("{}/a-main/qr", sessions_url(&hub, true)),
        Some(&ana),
        None,
    )
    .await;
    assert_err(&qr, 429, "RATE_LIMITED");
    // The budget is per caller: the admin's is untouched.
    assert_eq!(post(&url, Some(&admin), None).await.0, 200);
}

/// Every operation of the served `/api/openapi.json` is routed with its method: answered by
/// its handler, not by the router's JSON 404 (`no such route`) or a 405.
#[tokio::test]
async fn the_served_openapi_document_matches_the_routes() {
    let e = env("hub-openapi").await;
    e.session("a-main", "a").await;
    let hub = e.hub().await;
    let (st, doc) = get(&format!("{}/api/openapi.json", hub.url), None).await;
    assert_eq!(st, 200);
    for p in [
        "/api/auth/login",
        "/api/session-manager/sessions/{instance_id}/qr",
        "/session-manager/sessions/{instance_id}/disconnect",
        "/health",
    ] {
        assert!(doc["paths"].get(p).is_some(), "openapi lacks {p}");
    }
    // Metrics live on their own listener, not on the public API this document describes.
    assert!(
        doc["paths"].get("/metrics").is_none(),
        "openapi lists /metrics"
    );
    // The constraints the handlers enforce are in the document (issue 28 item 11).
    let ns_param = doc["paths"]["/api/session-manager/sessions/{instance_id}"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "namespace")
        .unwrap()["schema"]
        .clone();
    assert_eq!(
        (&ns_param["maxLength"], &ns_param["pattern"]),
        (&json!(63), &json!("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")),
        "{ns_param}"
    );
    let login = &doc["paths"]["/api/auth/login"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"];
    assert_eq!(
        login["required"],
        json!(["username", "password"]),
        "{login}"
    );
    assert_eq!(
        (
            &login["properties"]["username"]["minLength"],
            &login["properties"]["username"]["maxLength"]
        ),
        (&json!(1), &json!(128)),
        "{login}"
    );
    let ana = token("ana", &["a"], "user", 600);
    let mut checked = 0;
    for (template, ops) in doc["paths"].as_object().unwrap() {
        let path = template.replace("{instance_id}", "a-main");
        for method in ops.as_object().unwrap().keys() {
            let m: reqwest::Method = method.to_uppercase().parse().unwrap();
            let body = (m == reqwest::Method::POST).then(|| json!({}));
            let (st, resp) = call(m, &format!("{}{path}", hub.url), Some(&ana), body).await;
            let unrouted = st == 405 || (st == 404 && resp["message"] == "no such route");
            assert!(!unrouted, "{method} {template}: {st} {resp}");
            let documented = ops[method]["responses"]
                .as_object()
                .unwrap()
                .contains_key(&st.to_string());
            assert!(
                documented,
                "{method} {template} answered an undocumented {st}: {resp}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} operations documented");
}

/// The series the docs advertise, after two sockets (one subscribed), a pushed QR and a 429.
#[tokio::test]
async fn metrics_carry_the_advertised_series() {
    let e = env("hub-metrics").await;
    e.session("a-main", "a").await;
    let hub = e.hub().await;
    let ana = login(&hub, "ana").await;
    let mut b = Bridge::start().await;
    b.subscribed("ana", &hub.url, &ana, "a-main").await;
    b.connect("ana2", &hub.url, Some(json!({"token": ana})), vec![])
        .await;
    b.event("ana2", "authenticated", None).await;
    let requested = crate::qr::show_qr(&e, &hub, &ana, "2@ref-one,key,adv,secret").await;
    b.event("ana", "qr-code", Some("a-main")).await;
    crate::qr::expire_qr(&e, &requested).await;
    b.event("ana", "qr-expired", Some("a-main")).await;
    let r = post(
        &format!("{}/a-main/qr", sessions_url(&hub, true)),
        Some(&ana),
        None,
    )
    .await;
    assert_err(&r, 429, "RATE_LIMITED");

    // Metrics are on the metrics listener only: the public one (behind the Ingress) answers a
    // JSON 404.
    let (st, body) = get(&format!("{}/metrics", hub.url), None).await;
    assert_eq!((st, &body["error"]), (404, &json!("NOT_FOUND")), "{body}");
    let metrics = hub.metrics_page().await;
    for m in [
        "wa_hub_sockets_connected 2",
        "wa_hub_subscriptions 1",
        "wa_hub_events_pushed_total{event=\"qr-code\"}",
        "wa_hub_push_latency_seconds_bucket",
        "wa_hub_http_requests_total{method=\"POST\",route=\"/api/session-manager/sessions/{instance_id}/qr\",status=\"429\"} 1",
        "wa_hub_qr_renders_total 1",
    ] {
        assert!(metrics.contains(m), "metrics lack {m}:\n{metrics}");
    }
}

/// Issue 13: `/metrics` is served on `--metrics-addr` only. The public listener is what the
/// Ingress exposes; with a frontend configured its SPA fallback would otherwise answer
/// index.html there, so this hub serves one.
#[tokio::test]
async fn metrics_are_off_the_public_listener() {
    let e = env("hub-metrics").await;
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "<html>spa</html>").unwrap();
    let hub = e
        .hub_with(&["--static-dir", &site.path().display().to_string()])
        .await;

    let spa = reqwest::get(format!("{}/some/page", hub.url))
        .await
        .unwrap();
    assert_eq!(spa.status(), 200);
    assert_eq!(spa.text().await.unwrap(), "<html>spa</html>");
    let (st, body) = get(&format!("{}/metrics", hub.url), None).await;
    assert_eq!(st, 404, "public /metrics: {body}");
    assert_eq!(body["error"], "NOT_FOUND", "public /metrics: {body}");

    let scraped = reqwest::get(format!("{}/metrics", hub.metrics_url))
        .await
        .unwrap();
    assert_eq!(scraped.status(), 200);
    assert_eq!(
        scraped.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = scraped.text().await.unwrap();
    // the public 404s above were counted, under their route template
    assert!(
        text.contains(
            "wa_hub_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"404\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("wa_hub_watch_live 1"), "{text}");
    // the metrics listener serves nothing else
    let other = reqwest::get(format!("{}/api/openapi.json", hub.metrics_url))
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}

/// Issue 28 items 8 and 11: with the UI served, `/api` and `/api/` are JSON 404s (they were
/// the SPA page), and every answer carries the security headers: the UI's CSP on the page, the
/// empty one and `no-store` on JSON.
#[tokio::test]
async fn api_prefixes_answer_json_and_every_answer_carries_the_security_headers() {
    let e = env("hub-headers").await;
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "<html>spa</html>").unwrap();
    std::fs::create_dir(site.path().join("assets")).unwrap();
    std::fs::write(site.path().join("assets/app.js"), "export {};").unwrap();
    let hub = e
        .hub_with(&["--static-dir", &site.path().display().to_string()])
        .await;

    for path in ["/api", "/api/", "/session-manager", "/session-manager/"] {
        let (st, body) = get(&format!("{}{path}", hub.url), None).await;
        assert_eq!(
            (st, &body["error"]),
            (404, &json!("NOT_FOUND")),
            "{path}: {body}"
        );
    }

    let headers = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let admin = token("root", &[], "admin", 600);
    let c = reqwest::Client::new();
    let page = c
        .get(format!("{}/some/page", hub.url))
        .send()
        .await
        .unwrap();
    let asset = c
        .get(format!("{}/assets/app.js", hub.url))
        .send()
        .await
        .unwrap();
    let api = c
        .get(sessions_url(&hub, true))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    let error = c
        .get(format!("{}/api/nothing", hub.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        [&page, &asset, &api, &error].map(|r| r.status().as_u16()),
        [200, 200, 200, 404]
    );
    for r in [&page, &asset, &api, &error] {
        assert_eq!(
            headers(r, "x-content-type-options"),
            "nosniff",
            "{}",
            r.url()
        );
        assert_eq!(headers(r, "x-frame-options"), "DENY", "{}", r.url());
        assert_eq!(headers(r, "referrer-policy"), "no-referrer", "{}", r.url());
        assert!(
            headers(r, "content-security-policy").contains("frame-ancestors 'none'"),
            "{}",
            r.url()
        );
    }
    let csp = headers(&page, "content-security-policy");
    assert_eq!(csp, hub::security_headers::APP_CSP);
    assert!(!csp.contains("unsafe"), "{csp}");
    for r in [&api, &error] {
        assert_eq!(
            headers(r, "content-security-policy"),
            "default-src 'none'; frame-ancestors 'none'"
        );
        assert_eq!(headers(r, "cache-control"), "no-store", "{}", r.url());
    }
}
