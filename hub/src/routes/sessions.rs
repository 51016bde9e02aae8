//! `/api/session-manager/sessions...` (also without `/api`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;

use super::{Caller, InstanceId};
use crate::app::Hub;
use crate::error::ApiError;
use crate::snapshot::Snapshot;

/// `?namespace=` picks one namespace when the hub serves all of them and a name is ambiguous.
#[derive(Deserialize)]
pub struct Scope {
    namespace: Option<String>,
}

type Q = Result<Query<Scope>, axum::extract::rejection::QueryRejection>;

fn ns(q: &Q) -> Result<Option<&str>, ApiError> {
    match q {
        Ok(Query(s)) => Ok(s.namespace.as_deref()),
        Err(_) => Err(ApiError::bad_request("invalid query string")),
    }
}

pub async fn list(
    State(hub): State<Arc<Hub>>,
    Caller(c): Caller,
) -> Result<Json<Vec<Snapshot>>, ApiError> {
    hub.synced().await;
    hub.list(&c).map(Json)
}

pub async fn get(
    State(hub): State<Arc<Hub>>,
    Caller(c): Caller,
    InstanceId(id): InstanceId,
    q: Q,
) -> Result<Json<Snapshot>, ApiError> {
    hub.synced().await;
    hub.authorize(&c, &id, ns(&q)?)
        .map(|s| Json(Snapshot::of(&s)))
}

pub async fn request_qr(
    State(hub): State<Arc<Hub>>,
    Caller(c): Caller,
    InstanceId(id): InstanceId,
    q: Q,
) -> Result<Json<Snapshot>, ApiError> {
    hub.request_qr(&c, &id, ns(&q)?).await.map(Json)
}

pub async fn disconnect(
    State(hub): State<Arc<Hub>>,
    Caller(c): Caller,
    InstanceId(id): InstanceId,
    q: Q,
) -> Result<Json<serde_json::Value>, ApiError> {
    hub.disconnect(&c, &id, ns(&q)?)
        .await
        .map(|()| Json(serde_json::json!({"ok": true})))
}
