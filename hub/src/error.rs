//! The error type shared by REST and socket.io: one code vocabulary (docs/design.md §3/§4), mapped
//! to an HTTP status for REST and to a `connection-error` payload for socket.io
//! (`socket::contract::ConnectionError`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Error codes as they appear in `{"error": CODE}` and `connection-error {error: CODE}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Code {
    BadRequest,
    Unauthenticated,
    Forbidden,
    NotFound,
    Conflict,
    PayloadTooLarge,
    RateLimited,
    Timeout,
    Unavailable,
    Internal,
    // Sending messages (docs/design.md §3, `POST …/messages`), as the session's agent answers.
    InvalidTo,
    InvalidMessage,
    InvalidIdempotencyKey,
    IdempotencyKeyReused,
    NotOnWhatsapp,
    SessionNotReady,
    SendFailed,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "BAD_REQUEST",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Forbidden => "FORBIDDEN",
            Self::NotFound => "NOT_FOUND",
            Self::Conflict => "CONFLICT",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::RateLimited => "RATE_LIMITED",
            Self::Timeout => "TIMEOUT",
            Self::Unavailable => "UNAVAILABLE",
            Self::Internal => "INTERNAL",
            Self::InvalidTo => "INVALID_TO",
            Self::InvalidMessage => "INVALID_MESSAGE",
            Self::InvalidIdempotencyKey => "INVALID_IDEMPOTENCY_KEY",
            Self::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            Self::NotOnWhatsapp => "NOT_ON_WHATSAPP",
            Self::SessionNotReady => "SESSION_NOT_READY",
            Self::SendFailed => "SEND_FAILED",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::InvalidTo | Self::InvalidMessage | Self::InvalidIdempotencyKey => {
                StatusCode::BAD_REQUEST
            }
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotOnWhatsapp => StatusCode::NOT_FOUND,
            Self::SessionNotReady => StatusCode::CONFLICT,
            Self::SendFailed => StatusCode::BAD_GATEWAY,
        }
    }
}

/// The REST error body `{"error": CODE, "message": text}`.
// `Error` in the OpenAPI document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    #[schema(inline)]
    pub error: Code,
    pub message: String,
}

/// An error answered to a client. `message` is meant for humans and never contains secrets.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    /// Seconds after which a retry may succeed (429, a busy 503).
    pub retry_after: Option<u64>,
    /// Instead of the code's own status: `TIMEOUT` is 408 for a body that does not arrive and
    /// 504 for a message the session did not hand over in time.
    pub status: Option<StatusCode>,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
            status: None,
        }
    }
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(Code::BadRequest, m)
    }
    pub fn unauthenticated(m: impl Into<String>) -> Self {
        Self::new(Code::Unauthenticated, m)
    }
    pub fn forbidden(m: impl Into<String>) -> Self {
        Self::new(Code::Forbidden, m)
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(Code::NotFound, m)
    }
    pub fn unavailable(m: impl Into<String>) -> Self {
        Self::new(Code::Unavailable, m)
    }
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(Code::Internal, m)
    }
    pub fn rate_limited(m: impl Into<String>, retry_after: u64) -> Self {
        Self::new(Code::RateLimited, m).retry_after(retry_after)
    }
    /// With `Retry-After` (REST) / `retryAfter` (socket.io): seconds after which a retry may
    /// succeed (429, and 503 when the hub is momentarily too busy).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// The REST body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.code,
            message: self.message.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status.unwrap_or(self.code.status());
        let mut resp = (status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
        resp
    }
}

/// Errors from the Kubernetes API become 503 when the API is unreachable, else 500.
impl From<kube::Error> for ApiError {
    fn from(e: kube::Error) -> Self {
        match &e {
            kube::Error::Api(s) if s.code == 404 => ApiError::not_found("session not found"),
            kube::Error::Api(s) if s.code == 403 => {
                tracing::error!(error = %e, "the hub's ServiceAccount may not patch sessions");
                ApiError::internal("the hub is not allowed to update this session")
            }
            kube::Error::Api(s) if s.code == 422 || s.code == 400 => {
                ApiError::bad_request(format!("rejected by Kubernetes: {}", s.message))
            }
            _ => {
                tracing::warn!(error = %e, "Kubernetes API call failed");
                ApiError::unavailable("Kubernetes API unreachable")
            }
        }
    }
}
