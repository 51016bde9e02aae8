//! `POST /api/session-manager/sessions/{instance_id}/messages` (also without `/api`): a text
//! through the session's agent (`crate::agents`), with the caller's `Idempotency-Key`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::HeaderMap;
use utoipa::openapi::{RefOr, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::sessions::{Scope, ScopeQuery, namespace};
use super::{Caller, InstanceId, JsonBody};
use crate::agents::{SendMessage, SentMessage};
use crate::app::Hub;
use crate::error::ApiError;

/// A body with WhatsApp's longest text (65536 characters, JSON-escaped at worst).
pub const BODY_LIMIT: usize = 65_536 * 6 + 1024;

pub fn routes() -> OpenApiRouter<Arc<Hub>> {
    OpenApiRouter::new()
        .routes(routes!(send))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

struct SendErrors;

impl utoipa::IntoResponses for SendErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        crate::openapi::errors(&[
            (
                400,
                "INVALID_TO, INVALID_MESSAGE (empty, over 65536 characters, not UTF-8), INVALID_IDEMPOTENCY_KEY, or bad input",
            ),
            (401, "Missing, invalid or revoked token"),
            (
                404,
                "No such session among those the caller may see, or NOT_ON_WHATSAPP: the number is not on WhatsApp",
            ),
            (
                409,
                "SESSION_NOT_READY (the message says the session's status), or CONFLICT: sessions of that name in several namespaces",
            ),
            (413, "Body too large"),
            (
                422,
                "IDEMPOTENCY_KEY_REUSED: the key was used within 24 h for another recipient or text",
            ),
            (429, "RATE_LIMITED: the session's send rate (Retry-After)"),
            (502, "SEND_FAILED"),
            (503, "Kubernetes unreachable, or sending is not configured"),
            (
                504,
                "TIMEOUT: not handed over in time; retrying with the same Idempotency-Key never sends twice",
            ),
        ])
    }
}

/// Send a text message through the session
///
/// Answers once WhatsApp Web handed the message to WhatsApp's server (ack 1). With an Idempotency-Key, the same key within 24 h answers the first result and never sends twice.
#[utoipa::path(
    post,
    path = "/sessions/{instance_id}/messages",
    security(("bearer" = [])),
    params(
        InstanceId,
        Scope,
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 printable ASCII characters; the same key within 24 h never sends twice", min_length = 1, max_length = 255, pattern = "^[!-~]+$"),
    ),
    request_body = SendMessage,
    responses(
        (status = 200, description = "Handed over to WhatsApp", body = SentMessage),
        SendErrors,
    )
)]
pub async fn send(
    State(hub): State<Arc<Hub>>,
    Caller(caller): Caller,
    InstanceId(id): InstanceId,
    query: ScopeQuery,
    headers: HeaderMap,
    JsonBody(message): JsonBody<SendMessage>,
) -> Result<Json<SentMessage>, ApiError> {
    let namespace = namespace(&query)?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            ApiError::new(
                crate::error::Code::InvalidIdempotencyKey,
                "Idempotency-Key must be printable ASCII",
            )
        })?),
    };
    hub.send_message(&caller, &id, namespace, &message, key)
        .await
        .map(Json)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use crate::agents::Agents;
    use crate::app::Hub;
    use crate::auth::Role;
    use crate::fixtures::*;

    /// The operator's running pod of `s1`, at the loopback address (the stub agent's).
    fn agent_pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "wa-s1-0", "namespace": NAMESPACE,
                "labels": {"app.kubernetes.io/managed-by": "whatsapp-operator",
                           "app.kubernetes.io/instance": "s1"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                    "name": "wa-s1", "uid": "u", "controller": true}]
            },
            "status": {"phase": "Running", "podIP": "127.0.0.1"}
        })
    }

    /// What the stub agent saw: (authorization, idempotency key, body).
    type Seen = Arc<Mutex<Vec<(String, Option<String>, Value)>>>;

    /// A stand-in agent answering `status` and `body`, on a free loopback port.
    async fn stub_agent(
        status: u16,
        body: Value,
        retry_after: Option<&'static str>,
    ) -> (u16, Seen) {
        let seen: Seen = Arc::default();
        let log = seen.clone();
        let app = axum::Router::new().route(
            "/v1/messages",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, axum::Json(b): axum::Json<Value>| {
                    let log = log.clone();
                    let body = body.clone();
                    async move {
                        let h = |n: &str| {
                            headers
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .map(String::from)
                        };
                        log.lock().unwrap().push((
                            h("authorization").unwrap_or_default(),
                            h("idempotency-key"),
                            b,
                        ));
                        let mut r = axum::response::IntoResponse::into_response((
                            StatusCode::from_u16(status).unwrap(),
                            axum::Json(body),
                        ));
                        if let Some(s) = retry_after {
                            r.headers_mut().insert("retry-after", s.parse().unwrap());
                        }
                        r
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (port, seen)
    }

    fn hub_with_agent(
        client: kube::Client,
        port: u16,
        token: &tempfile::NamedTempFile,
    ) -> Arc<Hub> {
        let hub = Hub::test(client, vec![session("s1")]);
        let mut hub = Arc::try_unwrap(hub).ok().expect("the only reference");
        hub.agents = Agents::new(
            Some(token.path().to_path_buf()),
            port,
            Duration::from_secs(5),
        );
        Arc::new(hub)
    }

    async fn call(
        hub: &Arc<Hub>,
        tenant: &str,
        body: Value,
        key: Option<&str>,
    ) -> (StatusCode, Option<String>, Value) {
        let (token, _) = hub
            .jwt
            .issue("ana", vec![tenant.into()], Role::User, 60)
            .unwrap();
        let mut req = Request::post("/api/session-manager/sessions/s1/messages")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json");
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        let resp = crate::routes::router(hub.clone())
            .oneshot(req.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            retry,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn token_file() -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), "hub-token\n").unwrap();
        f
    }

    /// One send of `tenant`'s user to `s1` through a hub whose agent is the stub on `port`,
    /// the mocked API server serving `scenario`.
    async fn send_via(
        port: u16,
        scenario: Scenario,
        tenant: &str,
        body: Value,
        key: Option<&str>,
    ) -> (StatusCode, Option<String>, Value) {
        let token = token_file();
        let (client, server) = api_server();
        let hub = hub_with_agent(client, port, &token);
        let scenario = server.run(scenario);
        let answer = call(&hub, tenant, body, key).await;
        timeout(scenario).await;
        answer
    }

    fn at_the_pod() -> Scenario {
        Scenario::ReadPod("wa-s1-0".into(), Some(agent_pod()))
    }

    #[tokio::test]
    async fn a_send_reaches_the_sessions_agent_with_the_hubs_token_and_the_key() {
        let sent = json!({"message_id": "true_5491122334455@c.us_3EB0AA",
            "to": "5491122334455@c.us", "timestamp": 1, "ack": 1});
        let (port, seen) = stub_agent(200, sent.clone(), None).await;
        let hola = json!({"to": "5491122334455", "text": "hola"});
        let (status, _, body) =
            send_via(port, at_the_pod(), TENANT, hola.clone(), Some("k1")).await;
        assert_eq!((status, &body), (StatusCode::OK, &sent));
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![("Bearer hub-token".to_string(), Some("k1".to_string()), hola)]
        );
    }

    #[tokio::test]
    async fn the_agents_refusals_keep_their_codes() {
        for (status, code, retry, expected) in [
            (400, "INVALID_TO", None, StatusCode::BAD_REQUEST),
            (404, "NOT_ON_WHATSAPP", None, StatusCode::NOT_FOUND),
            (409, "SESSION_NOT_READY", None, StatusCode::CONFLICT),
            (
                422,
                "IDEMPOTENCY_KEY_REUSED",
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                429,
                "RATE_LIMITED",
                Some("42"),
                StatusCode::TOO_MANY_REQUESTS,
            ),
            (504, "TIMEOUT", None, StatusCode::GATEWAY_TIMEOUT),
            (502, "SEND_FAILED", None, StatusCode::BAD_GATEWAY),
            (403, "FORBIDDEN", None, StatusCode::BAD_GATEWAY),
        ] {
            let (port, _) = stub_agent(status, json!({"error": code, "message": "m"}), retry).await;
            let x = json!({"to": "5491122334455", "text": "x"});
            let (s, retry_after, body) = send_via(port, at_the_pod(), TENANT, x, None).await;
            assert_eq!(s, expected, "{code}: {body}");
            let want = if code == "FORBIDDEN" {
                "SEND_FAILED"
            } else {
                code
            };
            assert_eq!(body["error"], want, "{code}");
            assert_eq!(retry_after.as_deref(), retry, "{code}");
        }
    }

    #[tokio::test]
    async fn no_agent_is_a_session_not_ready_and_another_tenant_sees_no_session() {
        let (port, seen) = stub_agent(200, json!({}), None).await;
        let x = json!({"to": "5491122334455", "text": "x"});
        for (scenario, tenant, body, status, code) in [
            // no pod: the session has no running agent
            (
                Scenario::ReadPod("wa-s1-0".into(), None),
                TENANT,
                x.clone(),
                StatusCode::CONFLICT,
                Some("SESSION_NOT_READY"),
            ),
            // another tenant: 404 as for no session, nothing asked of the API server
            (
                Scenario::Nothing,
                "globex",
                x,
                StatusCode::NOT_FOUND,
                Some("NOT_FOUND"),
            ),
            // bad JSON: refused by the hub itself
            (
                Scenario::Nothing,
                TENANT,
                json!({"to": 5}),
                StatusCode::BAD_REQUEST,
                Some("BAD_REQUEST"),
            ),
        ] {
            let (s, _, b) = send_via(port, scenario, tenant, body, None).await;
            assert_eq!((s, b["error"].as_str()), (status, code), "{b}");
        }
        assert!(
            seen.lock().unwrap().is_empty(),
            "the agent was never called"
        );
    }
}
