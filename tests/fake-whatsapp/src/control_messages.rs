//! The control API's messages (docs/fake-whatsapp.md, "Control API"): numbers that exist on
//! WhatsApp, a contact writing to an account, the account's phone writing, the recipient's
//! acks, and the record of every message.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::messages::MessageError;
use crate::registry::LinkError;
use crate::server::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/_fake/numbers", get(numbers).post(declare))
        .route("/_fake/messages", get(messages))
        .route("/_fake/messages/incoming", post(incoming))
        .route("/_fake/messages/outgoing", post(outgoing))
        .route("/_fake/messages/ack", post(ack))
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (status, Json(json!({"error": code, "message": message}))).into_response()
}

fn link_error(e: LinkError) -> Response {
    match e {
        LinkError::BadRequest(m) => error(StatusCode::BAD_REQUEST, "BAD_REQUEST", m),
        e => error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("no linked device of that account ({e})"),
        ),
    }
}

#[derive(Deserialize)]
struct NumbersBody {
    phones: Vec<String>,
}

async fn declare(State(s): State<AppState>, Json(b): Json<NumbersBody>) -> Response {
    match s.registry().declare_numbers(&b.phones) {
        Ok(added) => Json(json!({"ok": true, "added": added})).into_response(),
        Err(e) => link_error(e),
    }
}

async fn numbers(State(s): State<AppState>) -> Response {
    Json(s.registry().numbers()).into_response()
}

#[derive(Deserialize)]
struct MessagesQuery {
    account: Option<String>,
}

async fn messages(State(s): State<AppState>, Query(q): Query<MessagesQuery>) -> Response {
    let account = q
        .account
        .map(|a| crate::registry::normalize_phone(&a))
        .transpose();
    match account {
        Ok(account) => Json(s.registry().messages(account.as_deref())).into_response(),
        Err(m) => error(StatusCode::BAD_REQUEST, "BAD_REQUEST", m),
    }
}

#[derive(Deserialize)]
struct IncomingBody {
    /// The account (a linked device's phone).
    to: String,
    from: String,
    body: String,
}

async fn incoming(State(s): State<AppState>, Json(b): Json<IncomingBody>) -> Response {
    let result = s.registry().phone_message(&b.to, &b.from, b.body, true);
    told(result)
}

#[derive(Deserialize)]
struct OutgoingBody {
    /// The account whose phone writes.
    phone: String,
    to: String,
    body: String,
}

async fn outgoing(State(s): State<AppState>, Json(b): Json<OutgoingBody>) -> Response {
    let result = s.registry().phone_message(&b.phone, &b.to, b.body, false);
    told(result)
}

fn told(result: Result<(crate::messages::Record, usize), LinkError>) -> Response {
    match result {
        Ok((record, pages)) => {
            tracing::info!(key = %record.key, pages, "message injected");
            Json(json!({"ok": true, "id": record.id, "key": record.key, "pages": pages}))
                .into_response()
        }
        Err(e) => link_error(e),
    }
}

#[derive(Deserialize)]
struct AckBody {
    /// The message id or its serialized key.
    id: String,
    ack: i8,
}

async fn ack(State(s): State<AppState>, Json(b): Json<AckBody>) -> Response {
    match s.registry().ack_message(&b.id, b.ack) {
        Ok((record, pages)) => {
            Json(json!({"ok": true, "key": record.key, "ack": record.ack, "pages": pages}))
                .into_response()
        }
        Err(MessageError::BadRequest(m)) => error(StatusCode::BAD_REQUEST, "BAD_REQUEST", m),
        Err(e @ MessageError::UnknownMessage(_)) => {
            error(StatusCode::NOT_FOUND, "NOT_FOUND", e.to_string())
        }
    }
}
