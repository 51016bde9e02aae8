//! REST routes (docs/design.md §3), `/health`, `/api/openapi.json` and the frontend. `/metrics`
//! is not here: it is served on the metrics listener only (`--metrics-addr`).

mod extract;
mod login;
mod messages;
mod sessions;
mod system;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get};
use axum::{Json, Router};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::Hub;

pub use extract::{Caller, InstanceId, JsonBody};

/// The operations of the OpenAPI document, each registered from its handler's
/// `#[utoipa::path]`. The session routes are served with and without the /api prefix
/// (docs/design.md §3).
pub fn documented() -> OpenApiRouter<Arc<Hub>> {
    OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .routes(routes!(system::health))
        .routes(routes!(login::login))
        .nest("/api/session-manager", sessions::routes())
        .nest("/session-manager", sessions::routes())
        .nest("/api/session-manager", messages::routes())
        .nest("/session-manager", messages::routes())
}

pub fn router(hub: Arc<Hub>) -> Router {
    let (r, document) = documented().split_for_parts();
    let document = Json(crate::openapi::finish(document));
    let mut r = r
        // The public listener sits behind the Ingress: metrics (session counts, request
        // patterns) are for in-cluster scrapers only. An explicit 404, or the SPA fallback
        // would answer index.html.
        .route("/metrics", any(system::not_found))
        .route("/api/openapi.json", get(move || async move { document }));
    // Unknown API paths (e.g. an id containing '/') answer a JSON 404, never the SPA page; the
    // prefixes themselves too (a wildcard matches no empty rest).
    for prefix in ["/api", "/session-manager"] {
        r = r
            .route(prefix, any(system::not_found))
            .route(&format!("{prefix}/"), any(system::not_found))
            .route(&format!("{prefix}/{{*rest}}"), any(system::not_found));
    }
    r = match hub.config.static_dir() {
        Some(dir) => {
            let index = dir.join("index.html");
            r.fallback_service(
                tower_http::services::ServeDir::new(dir)
                    .fallback(tower_http::services::ServeFile::new(index)),
            )
        }
        None => r.fallback(system::not_found),
    };
    r.layer(DefaultBodyLimit::max(hub.config.body_limit_bytes))
        .layer(axum::middleware::from_fn_with_state(
            hub.clone(),
            system::observe,
        ))
        .with_state(hub)
}
