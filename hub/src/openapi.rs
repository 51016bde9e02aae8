//! The OpenAPI 3.1 document of the REST API, served at `/api/openapi.json`. It is derived with
//! utoipa from each handler's `#[utoipa::path]` attribute and the types the handler reads and
//! answers; `routes::router` registers every documented handler from that same attribute
//! (utoipa-axum's `routes!`), so the document cannot name a route the router lacks, nor miss
//! one it serves. `/metrics` is not in it: it is served on the metrics listener only.

use std::collections::BTreeMap;

use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ObjectBuilder, OpenApi, RefOr, Response, ResponseBuilder, Type};

use crate::error::ErrorBody;

/// What the document says besides its operations: title, description, the error body, the
/// `bearer` scheme the session operations require.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "wa-hub",
        description = "REST API of the WhatsApp session hub. Realtime events are on socket.io at /socket.io (see docs/design.md §4)."
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerScheme)
)]
pub struct ApiDoc;

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, api: &mut OpenApi) {
        api.components.get_or_insert_default().add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The document the hub serves, from the same routes it serves them with.
pub fn document() -> OpenApi {
    finish(crate::routes::documented().split_for_parts().1)
}

/// The last touches on the derived document. utoipa names each operation after its handler;
/// the session handlers are mounted under two prefixes, and an `operationId` must be unique,
/// so none is given (clients address operations by path and method).
pub fn finish(mut api: OpenApi) -> OpenApi {
    for item in api.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            op.operation_id = None;
        }
    }
    api
}

/// A string schema listing the values of `T` as serde writes them, taken from `T`'s schemars
/// schema: crds' status enums derive `JsonSchema` (for the CRD), not utoipa's `ToSchema`.
pub fn string_enum<T: schemars::JsonSchema>() -> ObjectBuilder {
    let schema = schemars::schema_for!(T);
    let values = schema
        .get("enum")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
}

/// Error answers `(status, description)`, each with the error body.
pub fn errors(list: &[(u16, &str)]) -> BTreeMap<String, RefOr<Response>> {
    list.iter()
        .map(|(status, description)| {
            let response = ResponseBuilder::new()
                .description(*description)
                .content(
                    "application/json",
                    utoipa::openapi::ContentBuilder::new()
                        .schema(Some(utoipa::openapi::Ref::from_schema_name(
                            <ErrorBody as utoipa::ToSchema>::name(),
                        )))
                        .build(),
                )
                .build();
            (status.to_string(), RefOr::T(response))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_every_route_with_its_method_and_no_operation_ids() {
        let doc = serde_json::to_value(document()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let mut ops: Vec<String> = paths
            .iter()
            .flat_map(|(path, item)| {
                let item = item.as_object().unwrap();
                item.keys()
                    .map(|method| format!("{method} {path}"))
                    .collect::<Vec<_>>()
            })
            .collect();
        ops.sort();
        let mut want = vec![
            "get /health".to_string(),
            "post /api/auth/login".to_string(),
        ];
        for prefix in ["/api/session-manager", "/session-manager"] {
            want.push(format!("get {prefix}/sessions"));
            want.push(format!("get {prefix}/sessions/{{instance_id}}"));
            want.push(format!("post {prefix}/sessions/{{instance_id}}/qr"));
            want.push(format!("post {prefix}/sessions/{{instance_id}}/disconnect"));
            want.push(format!("post {prefix}/sessions/{{instance_id}}/messages"));
        }
        want.sort();
        assert_eq!(ops, want);
        assert!(!doc.to_string().contains("operationId"));
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"],
            serde_json::json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
        );
    }

    #[test]
    fn the_snapshot_states_are_the_crds_values() {
        let doc = serde_json::to_value(document()).unwrap();
        let snapshot = &doc["components"]["schemas"]["Snapshot"]["properties"];
        assert_eq!(
            snapshot["status"]["enum"],
            serde_json::json!([
                "init",
                "qr_required",
                "connecting",
                "connected",
                "disconnected",
                "error"
            ])
        );
        assert_eq!(
            snapshot["qr_status"]["enum"],
            serde_json::json!(["none", "generated", "expired", "used"])
        );
    }
}
