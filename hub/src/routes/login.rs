//! `POST /api/auth/login`: users file + argon2, throttled per username and per client address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use serde::Deserialize;

use super::JsonBody;
use crate::app::Hub;
use crate::error::ApiError;

#[derive(Deserialize)]
pub struct LoginRequest {
    username: String,
    password: String,
}

pub async fn login(
    State(hub): State<Arc<Hub>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(req): JsonBody<LoginRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Some(users) = hub.users.as_ref() else {
        return Err(ApiError::unavailable(
            "login is disabled: the hub has no --users-file",
        ));
    };
    if !hub.jwt.can_issue() {
        return Err(ApiError::unavailable(
            "login is disabled: RS256 mode without --jwt-private-key-file",
        ));
    }
    if req.username.is_empty() || req.username.len() > 128 || req.password.len() > 1024 {
        return Err(ApiError::bad_request(
            "username and password are required (at most 128 / 1024 bytes)",
        ));
    }
    let now = Instant::now();
    let user_key = format!("u:{}", req.username);
    let ip_key = format!("ip:{}", peer.ip());
    for key in [&user_key, &ip_key] {
        let limited = if key.starts_with("u:") {
            hub.user_throttle.check(key, now)
        } else {
            hub.ip_throttle.check(key, now)
        };
        if let Err(wait) = limited {
            return Err(ApiError::rate_limited(
                "too many failed logins; try again later",
                wait,
            ));
        }
    }
    // argon2 takes tens of milliseconds of CPU: keep it off the async workers.
    let hub2 = hub.clone();
    let (username, password) = (req.username.clone(), req.password);
    let user = tokio::task::spawn_blocking(move || {
        hub2.users
            .as_ref()
            .and_then(|u| u.verify(&username, &password))
            .map(|u| (u.tenants.clone(), u.role))
    })
    .await
    .map_err(|_| ApiError::internal("login failed"))?;
    let _ = users;
    let Some((tenants, role)) = user else {
        hub.user_throttle.record_failure(&user_key, now);
        hub.ip_throttle.record_failure(&ip_key, now);
        tracing::info!(username = %req.username, client = %peer.ip(), "login failed");
        return Err(ApiError::unauthenticated("invalid username or password"));
    };
    hub.user_throttle.reset(&user_key);
    let (token, exp) = hub
        .jwt
        .issue(
            &req.username,
            tenants.clone(),
            role,
            hub.config.token_ttl_secs,
        )
        .map_err(|e| {
            tracing::error!(error = %e, "issuing token");
            ApiError::internal("could not issue a token")
        })?;
    let expires_at = k8s_openapi::jiff::Timestamp::from_second(exp as i64)
        .map(|t| t.to_string())
        .unwrap_or_default();
    tracing::info!(username = %req.username, client = %peer.ip(), "login");
    Ok(Json(serde_json::json!({
        "token": token,
        "expiresAt": expires_at,
        "user": {"username": req.username, "tenants": tenants, "role": role},
    })))
}
