//! The agent's message API (docs/design.md §6 "The agent's message API"), on its own listener
//! (`WA_MESSAGES_ADDR`, container port `messages`), apart from the probes and `/metrics`:
//! `POST /v1/messages {to, text}` with an optional `Idempotency-Key` answers
//! `{message_id, to, timestamp, ack}` once the page handed the message to WhatsApp's server.
//! Errors are the hub's shape, `{"error": CODE, "message": text}`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
use serde_json::{Value, json};

use super::auth::{Auth, Refused};
use super::input::MAX_TEXT_CHARS;
use super::page::{Ack, SentMessage};
use super::send::{Request, SendError, Sender};

/// A body with the longest text (4 bytes a character at worst) and JSON's escaping of it.
pub const MAX_BODY_BYTES: usize = MAX_TEXT_CHARS * 6 + 1024;

/// A body must arrive within this (the caller is the hub, on the cluster's network).
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Api {
    pub sender: Arc<Sender>,
    pub auth: Arc<dyn Auth>,
}

/// The answer of a send.
#[derive(Debug, Serialize)]
pub struct Sent {
    pub message_id: String,
    pub to: String,
    pub timestamp: i64,
    pub ack: Ack,
}

impl From<SentMessage> for Sent {
    fn from(m: SentMessage) -> Self {
        Self {
            message_id: m.id,
            to: m.to,
            timestamp: m.timestamp,
            ack: m.ack,
        }
    }
}

pub fn router(api: Api) -> Router {
    Router::new()
        .route("/v1/messages", post(send))
        .fallback(|| async {
            Failure::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route".into())
        })
        .with_state(api)
}

/// Serves the API until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    api: Api,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "message API listening");
    axum::serve(listener, router(api))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn send(State(api): State<Api>, headers: HeaderMap, body: Body) -> Response {
    if let Err(refused) = api.auth.check(&headers).await {
        return refusal(refused);
    }
    let bytes = match tokio::time::timeout(
        BODY_READ_TIMEOUT,
        axum::body::to_bytes(body, MAX_BODY_BYTES),
    )
    .await
    {
        Err(_) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                "TIMEOUT",
                format!(
                    "the body did not arrive within {} s",
                    BODY_READ_TIMEOUT.as_secs()
                ),
            );
        }
        Ok(Err(_)) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!("the body is over {MAX_BODY_BYTES} bytes"),
            );
        }
        Ok(Ok(b)) => b,
    };
    let request = match parse(&bytes, &headers) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    // The send runs to its end even if the caller goes away, so its result reaches the journal
    // (and a retry with the same key gets it).
    let sender = api.sender.clone();
    match tokio::spawn(async move { sender.send(request).await }).await {
        Ok(Ok(sent)) => {
            let mut r = (StatusCode::OK, axum::Json(Sent::from(sent))).into_response();
            no_store(&mut r);
            r
        }
        Ok(Err(e)) => send_error(e),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            format!("the send task failed: {e}"),
        ),
    }
}

/// `{to, text}`: each field's problem answered with its own code.
fn parse(bytes: &[u8], headers: &HeaderMap) -> Result<Request, Failure> {
    let text = std::str::from_utf8(bytes).map_err(|_| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "INVALID_MESSAGE",
            "the body is not UTF-8".into(),
        )
    })?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            format!("the body is not JSON: {e}"),
        )
    })?;
    let field = |name: &str, code: &'static str| match value.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(Failure::new(
            StatusCode::BAD_REQUEST,
            code,
            format!("{name} must be a string"),
        )),
    };
    let to = field("to", "INVALID_TO")?;
    let text = field("text", "INVALID_MESSAGE")?;
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(v.to_str().map(str::to_string).map_err(|_| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                "INVALID_IDEMPOTENCY_KEY",
                "Idempotency-Key must be printable ASCII".into(),
            )
        })?),
    };
    Ok(Request {
        to,
        text,
        idempotency_key,
    })
}

fn send_error(e: SendError) -> Response {
    let message = e.to_string();
    match e {
        SendError::InvalidTo(_) => error(StatusCode::BAD_REQUEST, "INVALID_TO", message),
        SendError::InvalidMessage(_) => error(StatusCode::BAD_REQUEST, "INVALID_MESSAGE", message),
        SendError::InvalidKey(_) => {
            error(StatusCode::BAD_REQUEST, "INVALID_IDEMPOTENCY_KEY", message)
        }
        SendError::KeyReused => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "IDEMPOTENCY_KEY_REUSED",
            message,
        ),
        SendError::NotOnWhatsApp(_) => error(StatusCode::NOT_FOUND, "NOT_ON_WHATSAPP", message),
        SendError::NotReady { status } => Failure {
            session_status: Some(status),
            ..Failure::new(StatusCode::CONFLICT, "SESSION_NOT_READY", message)
        }
        .into_response(),
        SendError::RateLimited { retry_after } => Failure {
            retry_after: Some(retry_after.as_secs_f64().ceil().max(1.0) as u64),
            ..Failure::new(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", message)
        }
        .into_response(),
        SendError::Timeout => error(StatusCode::GATEWAY_TIMEOUT, "TIMEOUT", message),
        SendError::Failed(_) => error(StatusCode::BAD_GATEWAY, "SEND_FAILED", message),
        SendError::Journal(ref j) => {
            tracing::error!(error = %j, "the idempotency journal failed; nothing was sent");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "the idempotency journal could not be written; nothing was sent".into(),
            )
        }
    }
}

fn refusal(r: Refused) -> Response {
    match r {
        Refused::Unauthenticated(m) => error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", m),
        Refused::Forbidden(m) => error(StatusCode::FORBIDDEN, "FORBIDDEN", m),
        Refused::Unavailable(m) => error(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", m),
    }
}

fn error(status: StatusCode, code: &'static str, message: String) -> Response {
    Failure::new(status, code, message).into_response()
}

/// An error answer: `{"error": CODE, "message": text}`, with the session's status on 409 and
/// `Retry-After` on 429.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    code: &'static str,
    message: String,
    session_status: Option<String>,
    retry_after: Option<u64>,
}

impl Failure {
    fn new(status: StatusCode, code: &'static str, message: String) -> Self {
        Self {
            status,
            code,
            message,
            session_status: None,
            retry_after: None,
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.code, "message": self.message });
        if let Some(s) = self.session_status {
            body["session_status"] = Value::String(s);
        }
        let mut r = (self.status, axum::Json(body)).into_response();
        no_store(&mut r);
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}

fn no_store(r: &mut Response) {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}
