//! `POST /api/auth/login`: users file + argon2 on the bounded password pool, throttled per
//! guesser and per account (`auth::throttle`), with the client address from trusted proxies.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};

use super::JsonBody;
use crate::app::Hub;
use crate::auth::Role;
use crate::error::{ApiError, ErrorBody};

#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    #[schema(min_length = 1, max_length = 128)]
    username: String,
    #[schema(max_length = 1024)]
    password: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginResponse {
    token: String,
    #[schema(format = DateTime)]
    expires_at: String,
    #[schema(inline)]
    user: LoggedInUser,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LoggedInUser {
    username: String,
    tenants: Vec<String>,
    #[schema(inline)]
    role: Role,
}

/// Log in against the users file
#[utoipa::path(
    post,
    path = "/api/auth/login",
    request_body(content = inline(LoginRequest)),
    responses(
        (status = 200, description = "Token", body = LoginResponse),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "Wrong username or password", body = ErrorBody),
        (status = 408, description = "The body did not arrive within the body read timeout", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 429, description = "Too many failed attempts (Retry-After)", body = ErrorBody),
        (status = 503, description = "Login disabled (no users file, or RS256 without private key), or too many logins in progress (Retry-After)", body = ErrorBody),
    )
)]
pub async fn login(
    State(hub): State<Arc<Hub>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let Some(source) = hub.users.as_ref() else {
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
    let client = hub.trusted_proxies.client(peer.ip(), &headers);
    let attempt = hub
        .login_throttle
        .begin(&req.username, client, Instant::now())
        .map_err(|wait| ApiError::rate_limited("too many failed logins; try again later", wait))?;
    let users = source.current();
    let checked = hub
        .passwords
        .check(users.hash_for(&req.username), &req.password)
        .await;
    let user = match checked {
        Err(_busy) => {
            attempt.not_checked();
            return Err(ApiError::unavailable("too many logins in progress; retry").retry_after(1));
        }
        Ok(true) => users.get(&req.username),
        Ok(false) => None,
    };
    let Some(user) = user else {
        attempt.failed();
        tracing::info!(username = %req.username, %client, "login failed");
        return Err(ApiError::unauthenticated("invalid username or password"));
    };
    attempt.succeeded();
    let (token, exp) = hub
        .jwt
        .issue(
            &req.username,
            user.tenants.clone(),
            user.role,
            hub.config.token_ttl_secs,
        )
        .map_err(|e| {
            tracing::error!(error = %e, "issuing token");
            ApiError::internal("could not issue a token")
        })?;
    let expires_at = k8s_openapi::jiff::Timestamp::from_second(exp as i64)
        .map(|t| t.to_string())
        .unwrap_or_default();
    tracing::info!(username = %req.username, %client, "login");
    Ok(Json(LoginResponse {
        token,
        expires_at,
        user: LoggedInUser {
            username: req.username,
            tenants: user.tenants.clone(),
            role: user.role,
        },
    }))
}
