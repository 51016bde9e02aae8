//! REST routes (docs/design.md §3), `/health`, `/api/openapi.json` and the frontend. `/metrics`
//! is not here: it is served on the metrics listener only (`--metrics-addr`).

mod extract;
mod login;
mod sessions;
mod system;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get, post};

use crate::app::Hub;

pub use extract::{Caller, InstanceId, JsonBody};

pub fn router(hub: Arc<Hub>) -> Router {
    let mut r = Router::new()
        .route("/health", get(system::health))
        // The public listener sits behind the Ingress: metrics (session counts, request
        // patterns) are for in-cluster scrapers only. An explicit 404, or the SPA fallback
        // would answer index.html.
        .route("/metrics", any(system::not_found))
        .route("/api/openapi.json", get(system::openapi))
        .route("/api/auth/login", post(login::login));
    // The session routes are served with and without the /api prefix (docs/design.md §3).
    for prefix in ["/api/session-manager", "/session-manager"] {
        r = r
            .route(&format!("{prefix}/sessions"), get(sessions::list))
            .route(
                &format!("{prefix}/sessions/{{instance_id}}"),
                get(sessions::get),
            )
            .route(
                &format!("{prefix}/sessions/{{instance_id}}/qr"),
                post(sessions::request_qr),
            )
            .route(
                &format!("{prefix}/sessions/{{instance_id}}/disconnect"),
                post(sessions::disconnect),
            );
    }
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
