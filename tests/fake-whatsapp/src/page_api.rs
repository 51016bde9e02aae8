//! What the page itself talks to: the app HTML/JS and `/_page/*` (hello, long poll, actions).
//! Not part of the control contract; the page script is the only client.

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;

use crate::registry::{PageAction, PageError};
use crate::server::AppState;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(app_js))
        .route("/_page/hello", post(hello))
        .route("/_page/poll", get(poll))
        .route("/_page/action", post(action))
        .route("/_page/bye", post(bye))
}

async fn index() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-store")], Html(INDEX_HTML))
}

async fn app_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        APP_JS,
    )
}

fn page_error(e: PageError) -> Response {
    let status = match e {
        PageError::UnknownPage => StatusCode::NOT_FOUND,
        PageError::WrongState(_) => StatusCode::CONFLICT,
        PageError::BadRequest(_) => StatusCode::BAD_REQUEST,
    };
    (status, Json(json!({"error": e.to_string()}))).into_response()
}

#[derive(Deserialize)]
struct Hello {
    credential: Option<String>,
}

async fn hello(State(s): State<AppState>, Json(body): Json<Hello>) -> Response {
    let now = Instant::now();
    let restoring = body.credential.is_some();
    let mut reg = s.registry();
    let id = reg.open_page(body.credential, now);
    tracing::info!(page = %id, restoring, "page opened");
    let snapshot = reg.snapshot(&id, 0);
    drop(reg);
    s.wake.notify_one();
    match snapshot {
        Ok(snap) => Json(json!({
            "page": id,
            "generation": s.page.generation.as_str(),
            "withoutModules": s.page.without_modules,
            "snapshot": snap,
        }))
        .into_response(),
        Err(e) => page_error(e),
    }
}

#[derive(Deserialize)]
struct PollQuery {
    page: String,
    since: u64,
}

/// Decrements the page's in-flight count even when the browser drops the request.
struct InFlight {
    shared: AppState,
    page: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.shared
            .registry()
            .poll_finished(&self.page, Instant::now());
    }
}

async fn poll(State(s): State<AppState>, Query(q): Query<PollQuery>) -> Response {
    let (mut rx, version, hold) = {
        let mut reg = s.registry();
        let version = match reg.poll_started(&q.page, Instant::now()) {
            Ok(v) => v,
            Err(e) => return page_error(e),
        };
        match reg.subscribe(&q.page) {
            Ok(rx) => (rx, version, reg.timings().poll_hold),
            Err(e) => return page_error(e),
        }
    };
    let _guard = InFlight {
        shared: s.clone(),
        page: q.page.clone(),
    };
    if version <= q.since {
        // Nothing new: hold the request until the page changes or the hold time passes, or a
        // test outage starts (a held poll would keep the page "alive" through it).
        let since = q.since;
        let mut outage = s.outage.subscribe();
        tokio::select! {
            _ = tokio::time::timeout(hold, rx.wait_for(|v| *v > since)) => {}
            _ = outage.changed() => {}
        }
        if s.outage.active(Instant::now()) {
            return crate::outage::unreachable_response();
        }
    }
    match s.registry().snapshot(&q.page, q.since) {
        Ok(snap) => Json(snap).into_response(),
        Err(e) => page_error(e),
    }
}

#[derive(Deserialize)]
struct ActionBody {
    page: String,
    action: String,
    phone: Option<String>,
    /// `sendMessage`: the message id, chat and text.
    id: Option<String>,
    chat: Option<String>,
    body: Option<String>,
}

async fn action(State(s): State<AppState>, Json(body): Json<ActionBody>) -> Response {
    match body.action.as_str() {
        "queryExists" => {
            let phone = body.phone.unwrap_or_default();
            return match s.registry().number_exists(&body.page, &phone) {
                Ok(exists) => Json(json!({"ok": true, "exists": exists})).into_response(),
                Err(e) => page_error(e),
            };
        }
        "sendMessage" => {
            let (id, chat, text) = (
                body.id.unwrap_or_default(),
                body.chat.unwrap_or_default(),
                body.body.unwrap_or_default(),
            );
            let sent = s.registry().page_send(&body.page, id, &chat, text);
            return match sent {
                Ok(r) => {
                    tracing::info!(page = %body.page, key = %r.key, "message sent");
                    Json(json!({"ok": true, "ack": r.ack, "t": r.t})).into_response()
                }
                Err(e) => page_error(e),
            };
        }
        _ => {}
    }
    let action = match body.action.as_str() {
        "refreshQR" => PageAction::RefreshQr,
        "logout" => PageAction::Logout,
        "takeover" => PageAction::Takeover,
        "startAltLinkingFlow" => PageAction::AltLinking {
            phone: body.phone.unwrap_or_default(),
        },
        other => return page_error(PageError::BadRequest(format!("unknown action {other}"))),
    };
    tracing::info!(page = %body.page, action = %body.action, "page action");
    let result = s.registry().page_action(&body.page, action, Instant::now());
    s.wake.notify_one();
    match result {
        Ok(code) => Json(json!({"ok": true, "code": code})).into_response(),
        Err(e) => page_error(e),
    }
}

#[derive(Deserialize)]
struct ByeQuery {
    page: String,
}

/// `navigator.sendBeacon` on `pagehide`: the tab is going away (reload, navigation, close).
async fn bye(State(s): State<AppState>, Query(q): Query<ByeQuery>) -> StatusCode {
    s.registry().close_page(&q.page);
    StatusCode::NO_CONTENT
}
