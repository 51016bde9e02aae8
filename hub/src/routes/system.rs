//! `/health`, `/api/openapi.json`, JSON 404s, and per-request metrics and logs.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::Hub;
use crate::error::{ApiError, Code, ErrorBody};
use crate::metrics::HttpLabels;

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Live {
    status: &'static str,
}

/// 200 when the watch of WhatsAppSessions is live, else 503
#[utoipa::path(
    get,
    path = "/health",
    responses(
        (status = 200, description = "Live", body = inline(Live)),
        (status = 503, description = "Watch not live", body = ErrorBody),
    )
)]
pub async fn health(State(hub): State<Arc<Hub>>) -> Result<axum::Json<Live>, ApiError> {
    if !hub.tenancy.is_synced() {
        return Err(ApiError::unavailable(
            "namespaces (tenant claims) not listed yet",
        ));
    }
    if hub.view.is_live() {
        Ok(axum::Json(Live { status: "ok" }))
    } else {
        Err(ApiError::unavailable(
            "watch of WhatsAppSessions is not live",
        ))
    }
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// Counts every request by route template and status, logs it (path template only: query
/// strings and headers may carry tokens), and gives axum's body-less 405 the JSON error body.
pub async fn observe(State(hub): State<Arc<Hub>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| {
            if req.uri().path().starts_with("/socket.io") {
                "/socket.io".into()
            } else {
                "<static>".into()
            }
        });
    let mut resp = next.run(req).await;
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED
        && resp.headers().get(header::CONTENT_TYPE).is_none()
    {
        let allow = resp.headers().get(header::ALLOW).cloned();
        resp = ApiError::new(
            Code::BadRequest,
            format!("method {method} not allowed here"),
        )
        .into_response();
        *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        if let Some(a) = allow {
            resp.headers_mut().insert(header::ALLOW, a);
        }
    }
    let status = resp.status();
    hub.metrics
        .http_requests
        .get_or_create(&HttpLabels {
            method: method.to_string(),
            route: route.clone(),
            status: status.as_u16().to_string(),
        })
        .inc();
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    if status.is_server_error() && route != "/health" {
        tracing::warn!(%method, %route, status = status.as_u16(), ms, "request");
    } else {
        tracing::debug!(%method, %route, status = status.as_u16(), ms, "request");
    }
    resp
}
