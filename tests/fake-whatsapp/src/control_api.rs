//! The control API (docs/design.md §7): the phone's side (scan, unlink, conflict, devices) plus test
//! hooks (pages, hang, crash, bloat, pair by code).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;

use crate::registry::{LinkError, PageSelector};
use crate::server::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/_fake/scan", post(scan))
        .route("/_fake/pair", post(pair))
        .route("/_fake/unlink", post(unlink))
        .route("/_fake/conflict", post(conflict))
        .route("/_fake/devices", get(devices))
        .route("/_fake/pages", get(pages))
        .route("/_fake/hang", post(hang))
        .route("/_fake/crash", post(crash))
        .route("/_fake/bloat", post(bloat))
        .route("/_fake/offline", post(offline))
}

fn link_error(e: LinkError) -> Response {
    let (status, code) = match &e {
        LinkError::BadRequest(_) => (StatusCode::BAD_REQUEST, "BAD_REQUEST"),
        LinkError::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
        LinkError::Expired => (StatusCode::GONE, "EXPIRED"),
    };
    (
        status,
        Json(json!({"error": code, "message": e.to_string()})),
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScanBody {
    qr: String,
    phone: String,
    push_name: Option<String>,
}

async fn scan(State(s): State<AppState>, Json(b): Json<ScanBody>) -> Response {
    let result = s
        .registry()
        .scan(&b.qr, &b.phone, b.push_name, Instant::now());
    s.wake.notify_one();
    match result {
        Ok(page) => {
            tracing::info!(%page, "QR scanned");
            Json(json!({"ok": true, "page": page})).into_response()
        }
        Err(e) => link_error(e),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PairBody {
    code: String,
    push_name: Option<String>,
}

async fn pair(State(s): State<AppState>, Json(b): Json<PairBody>) -> Response {
    let result = s
        .registry()
        .pair_with_code(&b.code, b.push_name, Instant::now());
    s.wake.notify_one();
    match result {
        Ok(page) => Json(json!({"ok": true, "page": page})).into_response(),
        Err(e) => link_error(e),
    }
}

#[derive(Deserialize)]
struct PhoneBody {
    phone: String,
}

async fn unlink(State(s): State<AppState>, Json(b): Json<PhoneBody>) -> Response {
    match s.registry().unlink(&b.phone) {
        Ok(0) => link_error(LinkError::NotFound),
        Ok(n) => Json(json!({"ok": true, "devices": n})).into_response(),
        Err(e) => link_error(e),
    }
}

async fn conflict(State(s): State<AppState>, Json(b): Json<PhoneBody>) -> Response {
    match s.registry().conflict(&b.phone) {
        Ok(0) => link_error(LinkError::NotFound),
        Ok(n) => Json(json!({"ok": true, "pages": n})).into_response(),
        Err(e) => link_error(e),
    }
}

async fn devices(State(s): State<AppState>) -> Response {
    Json(s.registry().devices(Instant::now())).into_response()
}

async fn pages(State(s): State<AppState>) -> Response {
    Json(s.registry().pages(Instant::now())).into_response()
}

/// `/_fake/hang {ms?, page?, ref?, phone?}`: without `ms` for good, with it for that long.
#[derive(Deserialize, Default)]
struct HangBody {
    ms: Option<u64>,
    #[serde(flatten)]
    sel: PageSelector,
}

async fn hang(State(s): State<AppState>, body: Option<Json<HangBody>>) -> Response {
    let b = body.map(|Json(b)| b).unwrap_or_default();
    let busy = b.ms.map(std::time::Duration::from_millis);
    let n = s.registry().hang(&b.sel, busy, Instant::now());
    Json(json!({"ok": true, "pages": n})).into_response()
}

async fn crash(State(s): State<AppState>, body: Option<Json<PageSelector>>) -> Response {
    let sel = body.map(|Json(b)| b).unwrap_or_default();
    let n = s.registry().crash(&sel, Instant::now());
    Json(json!({"ok": true, "pages": n})).into_response()
}

#[derive(Deserialize)]
struct BloatBody {
    mb: u32,
    #[serde(flatten)]
    sel: PageSelector,
}

async fn bloat(State(s): State<AppState>, Json(b): Json<BloatBody>) -> Response {
    let n = s.registry().bloat(&b.sel, b.mb, Instant::now());
    Json(json!({"ok": true, "pages": n})).into_response()
}

#[derive(Deserialize)]
struct OfflineBody {
    secs: f64,
}

/// Test hook: the page's side of the service is unreachable for `secs` (0 ends an outage).
async fn offline(State(s): State<AppState>, Json(b): Json<OfflineBody>) -> Response {
    if !b.secs.is_finite() || b.secs < 0.0 || b.secs > 3600.0 {
        return link_error(LinkError::BadRequest("secs must be within 0..=3600".into()));
    }
    let now = Instant::now();
    s.outage
        .begin(std::time::Duration::from_secs_f64(b.secs), now);
    tracing::info!(
        secs = b.secs,
        "test outage: the page's routes are unreachable"
    );
    Json(json!({"ok": true, "remainingSecs": s.outage.remaining(now)})).into_response()
}
