//! Only the hub may call the agent's message API, through the real parts: the agent binary,
//! the devcluster API server reviewing real ServiceAccount tokens (TokenRequest) for the
//! message API's audience.

#[expect(dead_code, reason = "the harness serves every suite of this crate")]
mod support;

use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use support::*;

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
    let mut req = reqwest::Client::new()
        .post(url)
        .json(&json!({"to": PHONE, "text": "hola"}))
        .header("Idempotency-Key", "auth-test");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("the message API answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn only_the_hubs_token_for_the_audience_is_accepted() {
    let c = cluster().await;
    let tenant_ns = c.namespace("msgauth").await;
    let hub_ns = c.namespace("msgauth-hub").await;
    let _api = create_session(c, &tenant_ns, "s1").await;
    service_account(c, &hub_ns, "wa-hub").await;
    service_account(c, &tenant_ns, "intruder").await;
    let fake = fake(Duration::from_secs(20), Duration::from_secs(20), 6).await;

    let port = devcluster_testing::free_port();
    let (_tmp, agent) = wa_session().start_on_empty_profile(
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
    let url = format!("http://127.0.0.1:{port}/v1/messages");
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

    // No token, a forged one, the hub's own token for another audience (the API server's):
    // not authenticated.
    let (s, b) = post(&url, None).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (401, Some("UNAUTHENTICATED")),
        "{b}"
    );
    let (s, b) = post(&url, Some("not-a-token")).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (401, Some("UNAUTHENTICATED")),
        "{b}"
    );
    let api_server_token = token(c, &hub_ns, "wa-hub", &[]).await;
    let (s, b) = post(&url, Some(&api_server_token)).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (401, Some("UNAUTHENTICATED")),
        "{b}"
    );

    // A pod of the tenant's namespace with a valid token for the audience: forbidden.
    let intruder = token(c, &tenant_ns, "intruder", &[AUDIENCE]).await;
    let (s, b) = post(&url, Some(&intruder)).await;
    assert_eq!((s, b["error"].as_str()), (403, Some("FORBIDDEN")), "{b}");
    assert!(b["message"].as_str().unwrap().contains("intruder"), "{b}");

    // The hub's token passes authentication; the session is not linked, so the page
    // answers that (nothing could have been sent either way).
    let hub = token(c, &hub_ns, "wa-hub", &[AUDIENCE]).await;
    let (s, b) = post(&url, Some(&hub)).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (409, Some("SESSION_NOT_READY")),
        "{b}"
    );
    assert!(b["session_status"].is_string(), "{b}");
    // Nothing reached WhatsApp: the fake links no device, so nothing can have been sent.
    drop(agent);
}
