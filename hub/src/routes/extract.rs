//! Extractors answering with the hub's error body: the caller's verified token and JSON
//! bodies (malformed → 400, too large → 413).

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::app::Hub;
use crate::auth::Claims;
use crate::error::{ApiError, Code};

/// The verified claims of `Authorization: Bearer <JWT>`.
pub struct Caller(pub Claims);

impl FromRequestParts<Arc<Hub>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, hub: &Arc<Hub>) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthenticated("missing Authorization: Bearer token"))?;
        let value = header
            .to_str()
            .map_err(|_| ApiError::unauthenticated("malformed Authorization header"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| ApiError::unauthenticated("Authorization must be 'Bearer <token>'"))?;
        hub.authenticate(token).map(Caller)
    }
}

/// The `{instance_id}` path segment. axum's `Path` answers a segment that does not decode
/// (`%FF`: not UTF-8) in plain text; this answers the JSON 400. What the id may contain is
/// checked where it is used (`crate::ids`); the document states it.
#[derive(utoipa::IntoParams)]
#[into_params(names("instance_id"), parameter_in = Path)]
pub struct InstanceId(
    /// The WhatsAppSession name (DNS label, at most 52 characters)
    #[param(
        example = "acme-ventas",
        min_length = 1,
        max_length = 52,
        pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    )]
    pub String,
);

impl<S: Send + Sync> FromRequestParts<S> for InstanceId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(id)) => Ok(InstanceId(id)),
            Err(_) => Err(ApiError::bad_request(
                "instance_id in the path is not valid percent-encoded UTF-8",
            )),
        }
    }
}

pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        use axum::extract::rejection::JsonRejection;
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(JsonBody(v)),
            Err(rej) if rej.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => Err(
                ApiError::new(Code::PayloadTooLarge, "request body too large"),
            ),
            // The server's body read deadline (crate::server) passed before the body was whole.
            Err(rej) if crate::server::is_body_timeout(&rej) => Err(ApiError::new(
                Code::Timeout,
                "the request body did not arrive in time",
            )),
            // Messages are generic on purpose: serde's text may quote the offending value
            // (a password sent as a number, say), which must not be echoed or logged.
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::bad_request(
                "expected Content-Type: application/json",
            )),
            Err(JsonRejection::JsonSyntaxError(_)) => {
                Err(ApiError::bad_request("malformed JSON body"))
            }
            Err(JsonRejection::JsonDataError(_)) => Err(ApiError::bad_request(
                "JSON body does not have the expected fields",
            )),
            Err(_) => Err(ApiError::bad_request("unreadable request body")),
        }
    }
}
