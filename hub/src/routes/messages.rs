//! `POST /api/session-manager/sessions/{instance_id}/messages` (also without `/api`): a text
//! through the session's agent (`crate::agents`), with the caller's `Idempotency-Key`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::HeaderMap;
use utoipa::openapi::{RefOr, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::sessions::Scope;
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
    query: Result<Query<Scope>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    JsonBody(message): JsonBody<SendMessage>,
) -> Result<Json<SentMessage>, ApiError> {
    let namespace = match &query {
        Ok(Query(scope)) => scope.namespace.clone(),
        Err(_) => return Err(ApiError::bad_request("invalid query string")),
    };
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            ApiError::new(
                crate::error::Code::InvalidIdempotencyKey,
                "Idempotency-Key must be printable ASCII",
            )
        })?),
    };
    hub.synced().await;
    let session = hub.authorize(&caller, &id, namespace.as_deref())?;
    hub.agents
        .send(&hub.client, &session, &message, key)
        .await
        .map(Json)
}
