//! The hub's way to a session's agent for sending messages (docs/design.md §3): the agent's pod
//! (`wa-<name>-0`, found by name in the session's namespace and checked to be the operator's),
//! its message API on the `messages` port, the hub's projected ServiceAccount token as the
//! bearer. etcd is not a message queue: nothing of a message goes through the API server.

use std::net::IpAddr;
use std::time::Duration;

use crds::WhatsAppSession;
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, ResourceExt};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, Code};

/// What a caller sends (`POST …/messages`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SendMessage {
    /// Digits of an international number (8–15, country code first, no `+`) or a WhatsApp id `<digits>@c.us`
    #[schema(example = "5491122334455")]
    pub to: String,
    /// The text, 1 to 65536 characters
    #[schema(example = "Hola")]
    pub text: String,
}

/// The answer once the page handed the message to WhatsApp's server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SentMessage {
    /// WhatsApp's message id as whatsapp-web.js serializes it (`true_<chat>_<id>`)
    pub message_id: String,
    /// The chat it went to (`<digits>@c.us`)
    pub to: String,
    /// Seconds since the epoch, as WhatsApp stamped it
    pub timestamp: i64,
    /// Acknowledgement level: -1 error, 0 pending, 1 server, 2 device, 3 read, 4 played
    pub ack: i8,
}

pub struct Agents {
    http: reqwest::Client,
    token_file: Option<std::path::PathBuf>,
    port: u16,
}

impl Agents {
    pub fn new(token_file: Option<std::path::PathBuf>, port: u16, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(timeout)
            .build()
            .unwrap_or_default();
        Self {
            http,
            token_file,
            port,
        }
    }

    /// Sends through the session's agent; its answer mapped to the hub's.
    pub async fn send(
        &self,
        client: &kube::Client,
        session: &WhatsAppSession,
        message: &SendMessage,
        idempotency_key: Option<&str>,
    ) -> Result<SentMessage, ApiError> {
        // The agent first: a session without one is not ready, whatever the hub's setup.
        let ip = self.agent_ip(client, session).await?;
        let token = self.token()?;
        let url = format!(
            "http://{}/v1/messages",
            std::net::SocketAddr::new(ip, self.port)
        );
        let mut request = self.http.post(url).bearer_auth(token).json(message);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                timeout()
            } else {
                tracing::info!(session = %session.name_any(), error = %e, "the session's agent is unreachable");
                not_ready(session)
            }
        })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = response.bytes().await.map_err(|e| {
            if e.is_timeout() {
                timeout()
            } else {
                ApiError::new(
                    Code::SendFailed,
                    "the session's agent answered incompletely",
                )
            }
        })?;
        answer(status, &body, retry_after)
    }

    fn token(&self) -> Result<String, ApiError> {
        let path = self.token_file.as_ref().ok_or_else(|| {
            ApiError::unavailable("sending messages is not configured on this hub (no agent token)")
        })?;
        std::fs::read_to_string(path)
            .map(|t| t.trim().to_string())
            .map_err(|e| {
                tracing::error!(path = %path.display(), error = %e, "cannot read the agent token");
                ApiError::unavailable("the hub cannot read its token for the session agents")
            })
    }

    async fn agent_ip(
        &self,
        client: &kube::Client,
        session: &WhatsAppSession,
    ) -> Result<IpAddr, ApiError> {
        let namespace = session.namespace().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let name = format!("wa-{}-0", session.name_any());
        let pod = pods.get_opt(&name).await.map_err(|e| match &e {
            kube::Error::Api(s) if s.code == 403 => {
                tracing::error!(error = %e, "the hub's ServiceAccount may not get the session's pod");
                ApiError::internal("the hub is not allowed to find the session's agent")
            }
            _ => ApiError::from(e),
        })?;
        match pod {
            Some(pod) => agent_address(&pod, session).ok_or_else(|| not_ready(session)),
            None => Err(not_ready(session)),
        }
    }
}

/// The pod's address when it is the operator's pod of this session, running.
pub fn agent_address(pod: &Pod, session: &WhatsAppSession) -> Option<IpAddr> {
    let labels = pod.labels();
    let ours = labels.get(crds::labels::MANAGED_BY).map(String::as_str)
        == Some(crds::labels::MANAGED_BY_VALUE)
        && labels.get(crds::labels::INSTANCE) == Some(&session.name_any());
    let owned = pod.owner_references().iter().any(|o| {
        o.controller == Some(true)
            && o.kind == "StatefulSet"
            && o.name == format!("wa-{}", session.name_any())
    });
    let status = pod.status.as_ref()?;
    if !ours || !owned || status.phase.as_deref() != Some("Running") {
        return None;
    }
    status.pod_ip.as_deref()?.parse().ok()
}

fn not_ready(session: &WhatsAppSession) -> ApiError {
    let status = session
        .status
        .as_ref()
        .and_then(|s| s.status)
        .map(|s| format!("{s:?}").to_lowercase())
        .unwrap_or_else(|| "init".into());
    ApiError::new(
        Code::SessionNotReady,
        format!("the session is not ready (status {status}): its agent is not running"),
    )
}

fn timeout() -> ApiError {
    ApiError::new(
        Code::Timeout,
        "the message was not handed over to WhatsApp in time; retrying with the same Idempotency-Key never sends it twice",
    )
    .with_status(reqwest::StatusCode::GATEWAY_TIMEOUT)
}

#[derive(Deserialize)]
struct AgentError {
    error: String,
    message: String,
}

/// The agent's answer as the hub's: its codes pass through; what the hub cannot vouch for (its
/// own credentials refused, an answer it cannot read) is `SEND_FAILED`.
pub fn answer(status: u16, body: &[u8], retry_after: Option<u64>) -> Result<SentMessage, ApiError> {
    if status == 200 {
        return serde_json::from_slice(body).map_err(|_| {
            ApiError::new(
                Code::SendFailed,
                "the session's agent answered an unreadable message",
            )
        });
    }
    let Ok(AgentError { error, message }) = serde_json::from_slice(body) else {
        return Err(ApiError::new(
            Code::SendFailed,
            format!("the session's agent answered {status}"),
        ));
    };
    let code = match error.as_str() {
        "INVALID_TO" => Code::InvalidTo,
        "INVALID_MESSAGE" => Code::InvalidMessage,
        "INVALID_IDEMPOTENCY_KEY" => Code::InvalidIdempotencyKey,
        "IDEMPOTENCY_KEY_REUSED" => Code::IdempotencyKeyReused,
        "NOT_ON_WHATSAPP" => Code::NotOnWhatsapp,
        "SESSION_NOT_READY" => Code::SessionNotReady,
        "RATE_LIMITED" => Code::RateLimited,
        "PAYLOAD_TOO_LARGE" => Code::PayloadTooLarge,
        "BAD_REQUEST" => Code::BadRequest,
        "TIMEOUT" => return Err(timeout()),
        "UNAUTHENTICATED" | "FORBIDDEN" => {
            tracing::error!(status, code = %error, "the session's agent refused the hub's token");
            return Err(ApiError::new(
                Code::SendFailed,
                "the session's agent refused the hub (its token or ServiceAccount is not the one the operator names)",
            ));
        }
        _ => Code::SendFailed,
    };
    let mut e = ApiError::new(code, message);
    if code == Code::RateLimited {
        e = e.retry_after(retry_after.unwrap_or(1));
    }
    Err(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn pod(name: &str, owner: &str, phase: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some(format!("{name}-0"));
        p.metadata.labels = Some(
            [
                (
                    crds::labels::MANAGED_BY.to_string(),
                    crds::labels::MANAGED_BY_VALUE.to_string(),
                ),
                (crds::labels::INSTANCE.to_string(), "s1".to_string()),
            ]
            .into(),
        );
        p.metadata.owner_references = Some(vec![OwnerReference {
            kind: "StatefulSet".into(),
            name: owner.into(),
            controller: Some(true),
            ..Default::default()
        }]);
        p.status = Some(PodStatus {
            phase: Some(phase.into()),
            pod_ip: Some("10.244.50.7".into()),
            ..Default::default()
        });
        p
    }

    #[test]
    fn only_the_operators_running_pod_is_the_agent() {
        let s = crate::fixtures::session("s1");
        assert_eq!(
            agent_address(&pod("wa-s1", "wa-s1", "Running"), &s),
            Some("10.244.50.7".parse().unwrap())
        );
        assert_eq!(agent_address(&pod("wa-s1", "wa-s1", "Pending"), &s), None);
        assert_eq!(agent_address(&pod("wa-s1", "planted", "Running"), &s), None);
        let mut unlabelled = pod("wa-s1", "wa-s1", "Running");
        unlabelled.metadata.labels = None;
        assert_eq!(agent_address(&unlabelled, &s), None);
    }

    #[test]
    fn the_agents_answers_keep_their_codes() {
        let ok = br#"{"message_id":"true_5491122334455@c.us_3EB0AA","to":"5491122334455@c.us","timestamp":1,"ack":1}"#;
        assert_eq!(answer(200, ok, None).unwrap().ack, 1);
        for (status, code, expected, http) in [
            (400, "INVALID_TO", Code::InvalidTo, 400),
            (400, "INVALID_MESSAGE", Code::InvalidMessage, 400),
            (404, "NOT_ON_WHATSAPP", Code::NotOnWhatsapp, 404),
            (409, "SESSION_NOT_READY", Code::SessionNotReady, 409),
            (
                422,
                "IDEMPOTENCY_KEY_REUSED",
                Code::IdempotencyKeyReused,
                422,
            ),
            (429, "RATE_LIMITED", Code::RateLimited, 429),
            (502, "SEND_FAILED", Code::SendFailed, 502),
            (504, "TIMEOUT", Code::Timeout, 504),
            (401, "UNAUTHENTICATED", Code::SendFailed, 502),
            (403, "FORBIDDEN", Code::SendFailed, 502),
        ] {
            let body = format!(r#"{{"error":"{code}","message":"m"}}"#);
            let e = answer(status, body.as_bytes(), Some(7)).unwrap_err();
            assert_eq!(e.code, expected, "{code}");
            assert_eq!(e.status.unwrap_or(e.code.status()).as_u16(), http, "{code}");
            if expected == Code::RateLimited {
                assert_eq!(e.retry_after, Some(7));
            }
        }
        assert_eq!(
            answer(500, b"oops", None).unwrap_err().code,
            Code::SendFailed
        );
        assert_eq!(answer(200, b"{}", None).unwrap_err().code, Code::SendFailed);
    }
}
