//! `/api/session-manager/sessions...` (also without `/api`: `routes::router` mounts these
//! under both prefixes).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::openapi::{RefOr, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Caller, InstanceId};
use crate::app::Hub;
use crate::error::ApiError;
use crate::snapshot::Snapshot;

/// The session operations, paths relative to their prefix.
pub fn routes() -> OpenApiRouter<Arc<Hub>> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get))
        .routes(routes!(request_qr))
        .routes(routes!(disconnect))
}

/// `?namespace=` picks one namespace when the hub serves all of them and a name is ambiguous.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Scope {
    /// Disambiguates a name present in several namespaces (a Kubernetes namespace: DNS label, at most 63 characters)
    #[param(
        nullable = false,
        min_length = 1,
        max_length = 63,
        pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    )]
    pub namespace: Option<String>,
}

/// The errors every operation on one session may answer.
struct OneSessionErrors;

impl utoipa::IntoResponses for OneSessionErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        crate::openapi::errors(&[
            (400, "Bad input (invalid id)"),
            (401, "Missing, invalid or revoked token"),
            (
                404,
                "No such session among those the caller may see (another tenant's answers the same)",
            ),
            (
                409,
                "The caller has sessions of that name in several namespaces",
            ),
            (503, "Kubernetes unreachable / view not synced"),
        ])
    }
}

/// The answer to a logout request.
#[derive(Serialize, utoipa::ToSchema)]
pub struct LogoutRequested {
    /// Always `true`.
    #[schema(schema_with = always_true)]
    ok: bool,
}

fn always_true() -> utoipa::openapi::ObjectBuilder {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::Boolean)
        .enum_values(Some([true]))
}

/// The query string, read as [`Scope`] where it is used: a malformed one answers the JSON 400.
pub(super) type ScopeQuery = Result<Query<Scope>, axum::extract::rejection::QueryRejection>;

pub(super) fn namespace(query: &ScopeQuery) -> Result<Option<&str>, ApiError> {
    match query {
        Ok(Query(scope)) => Ok(scope.namespace.as_deref()),
        Err(_) => Err(ApiError::bad_request("invalid query string")),
    }
}

/// Sessions the caller may see
#[utoipa::path(
    get,
    path = "/sessions",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Snapshots", body = Vec<Snapshot>),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
        (status = 503, description = "View not synced", body = crate::error::ErrorBody),
    )
)]
pub async fn list(
    State(hub): State<Arc<Hub>>,
    Caller(caller): Caller,
) -> Result<Json<Vec<Snapshot>>, ApiError> {
    hub.synced().await;
    hub.list(&caller).map(Json)
}

/// Snapshot of one session
#[utoipa::path(
    get,
    path = "/sessions/{instance_id}",
    security(("bearer" = [])),
    params(InstanceId, Scope),
    responses(
        (status = 200, description = "Snapshot", body = Snapshot),
        OneSessionErrors,
    )
)]
pub async fn get(
    State(hub): State<Arc<Hub>>,
    Caller(caller): Caller,
    InstanceId(id): InstanceId,
    query: ScopeQuery,
) -> Result<Json<Snapshot>, ApiError> {
    hub.synced().await;
    hub.authorize(&caller, &id, namespace(&query)?)
        .map(|s| Json(Snapshot::of(&s)))
}

/// Make sure the session runs and ask for a fresh QR when none is valid
///
/// Sets spec.desiredState=Running and spec.qrRequestedAt=now (server-side apply, field manager whatsapp-hub) unless a valid QR exists or a request is pending; at most one new round per session per --qr-rate-limit-secs.
#[utoipa::path(
    post,
    path = "/sessions/{instance_id}/qr",
    security(("bearer" = [])),
    params(InstanceId, Scope),
    responses(
        (status = 200, description = "Snapshot after the request", body = Snapshot),
        (status = 429, description = "A new QR round was started too recently, or the caller's request budget is spent (Retry-After)", body = crate::error::ErrorBody),
        OneSessionErrors,
    )
)]
pub async fn request_qr(
    State(hub): State<Arc<Hub>>,
    Caller(caller): Caller,
    InstanceId(id): InstanceId,
    query: ScopeQuery,
) -> Result<Json<Snapshot>, ApiError> {
    hub.request_qr(&caller, &id, namespace(&query)?)
        .await
        .map(Json)
}

/// Request logout (spec.logoutRequestedAt=now; nothing is written while an earlier request is still unhandled)
#[utoipa::path(
    post,
    path = "/sessions/{instance_id}/disconnect",
    security(("bearer" = [])),
    params(InstanceId, Scope),
    responses(
        (status = 200, description = "Requested", body = inline(LogoutRequested)),
        (status = 429, description = "The caller's request budget is spent (Retry-After)", body = crate::error::ErrorBody),
        OneSessionErrors,
    )
)]
pub async fn disconnect(
    State(hub): State<Arc<Hub>>,
    Caller(caller): Caller,
    InstanceId(id): InstanceId,
    query: ScopeQuery,
) -> Result<Json<LogoutRequested>, ApiError> {
    hub.disconnect(&caller, &id, namespace(&query)?)
        .await
        .map(|()| Json(LogoutRequested { ok: true }))
}
