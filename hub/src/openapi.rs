//! The OpenAPI 3.1 document of the REST API, written by hand next to the routes it describes.
//! The contract test `the_served_openapi_document_matches_the_routes` (hub/tests/contract)
//! sends every documented operation to a real hub: each must be routed with its method and
//! answer a status documented for it.

use serde_json::{Value, json};

fn err(desc: &str) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn session_ops(prefix: &str, paths: &mut serde_json::Map<String, Value>) {
    let id = json!({"name": "instance_id", "in": "path", "required": true, "description": "The WhatsAppSession name (DNS label, at most 52 characters)", "example": "acme-ventas", "schema": {"type": "string", "minLength": 1, "maxLength": 52, "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}});
    let ns = json!({"name": "namespace", "in": "query", "required": false, "description": "Disambiguates a name present in several namespaces (a Kubernetes namespace: DNS label, at most 63 characters)", "schema": {"type": "string", "minLength": 1, "maxLength": 63, "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}});
    let common = json!({"400": err("Bad input (invalid id)"), "401": err("Missing, invalid or revoked token"), "404": err("No such session among those the caller may see (another tenant's answers the same)"), "409": err("The caller has sessions of that name in several namespaces"), "503": err("Kubernetes unreachable / view not synced")});
    let with = |extra: Value| {
        let mut m = common.as_object().cloned().unwrap_or_default();
        if let Value::Object(e) = extra {
            m.extend(e);
        }
        Value::Object(m)
    };
    paths.insert(format!("{prefix}/sessions"), json!({"get": {
        "summary": "Sessions the caller may see", "security": [{"bearer": []}],
        "responses": {"200": {"description": "Snapshots", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Snapshot"}}}}},
                      "401": err("Missing or invalid token"), "503": err("View not synced")}}}));
    paths.insert(format!("{prefix}/sessions/{{instance_id}}"), json!({"get": {
        "summary": "Snapshot of one session", "security": [{"bearer": []}], "parameters": [id, ns],
        "responses": with(json!({"200": {"description": "Snapshot", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Snapshot"}}}}}))}}));
    paths.insert(format!("{prefix}/sessions/{{instance_id}}/qr"), json!({"post": {
        "summary": "Make sure the session runs and ask for a fresh QR when none is valid",
        "description": "Sets spec.desiredState=Running and spec.qrRequestedAt=now (server-side apply, field manager whatsapp-hub) unless a valid QR exists or a request is pending; at most one new round per session per --qr-rate-limit-secs.",
        "security": [{"bearer": []}], "parameters": [id, ns],
        "responses": with(json!({"200": {"description": "Snapshot after the request", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Snapshot"}}}}, "429": err("A new QR round was started too recently, or the caller's request budget is spent (Retry-After)")}))}}));
    paths.insert(format!("{prefix}/sessions/{{instance_id}}/disconnect"), json!({"post": {
        "summary": "Request logout (spec.logoutRequestedAt=now; nothing is written while an earlier request is still unhandled)", "security": [{"bearer": []}], "parameters": [id, ns],
        "responses": with(json!({"200": {"description": "Requested", "content": {"application/json": {"schema": {"type": "object", "properties": {"ok": {"type": "boolean", "const": true}}, "required": ["ok"]}}}}, "429": err("The caller's request budget is spent (Retry-After)")}))}}));
}

pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    paths.insert("/health".into(), json!({"get": {"summary": "200 when the watch of WhatsAppSessions is live, else 503",
        "responses": {"200": {"description": "Live", "content": {"application/json": {"schema": {"type": "object", "properties": {"status": {"type": "string"}}}}}}, "503": err("Watch not live")}}}));
    paths.insert("/api/auth/login".into(), json!({"post": {"summary": "Log in against the users file",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["username", "password"], "properties": {"username": {"type": "string", "minLength": 1, "maxLength": 128}, "password": {"type": "string", "maxLength": 1024}}}}}},
        "responses": {"200": {"description": "Token", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LoginResponse"}}}},
            "400": err("Malformed body"), "401": err("Wrong username or password"), "408": err("The body did not arrive within the body read timeout"), "413": err("Body too large"), "429": err("Too many failed attempts (Retry-After)"), "503": err("Login disabled (no users file, or RS256 without private key), or too many logins in progress (Retry-After)")}}}));
    session_ops("/api/session-manager", &mut paths);
    session_ops("/session-manager", &mut paths);
    // /metrics is not here: it is served on the separate metrics listener (--metrics-addr).
    json!({
        "openapi": "3.1.0",
        "info": {"title": "wa-hub", "version": env!("CARGO_PKG_VERSION"), "description": "REST API of the WhatsApp session hub. Realtime events are on socket.io at /socket.io (see docs/design.md §4)."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error", "message"], "properties": {
                    "error": {"type": "string", "enum": ["BAD_REQUEST", "UNAUTHENTICATED", "FORBIDDEN", "NOT_FOUND", "CONFLICT", "PAYLOAD_TOO_LARGE", "RATE_LIMITED", "TIMEOUT", "UNAVAILABLE", "INTERNAL"]},
                    "message": {"type": "string"}}},
                "Snapshot": {"type": "object", "required": ["instance_id", "namespace", "tenant", "status", "qr_status"], "properties": {
                    "instance_id": {"type": "string"}, "namespace": {"type": "string"}, "tenant": {"type": "string"},
                    "display_name": {"type": ["string", "null"]},
                    "status": {"type": "string", "enum": ["init", "qr_required", "connecting", "connected", "disconnected", "error"]},
                    "qr_status": {"type": "string", "enum": ["none", "generated", "expired", "used"]},
                    "qr_string": {"type": ["string", "null"]}, "qr_expires_at": {"type": ["string", "null"], "format": "date-time"},
                    "phone_number": {"type": ["string", "null"]}, "connected_at": {"type": ["string", "null"], "format": "date-time"},
                    "updated_at": {"type": ["string", "null"], "format": "date-time"},
                    "last_error": {"oneOf": [{"type": "null"}, {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "at": {"type": "string", "format": "date-time"}}}]}}},
                "LoginResponse": {"type": "object", "required": ["token", "expiresAt", "user"], "properties": {
                    "token": {"type": "string"}, "expiresAt": {"type": "string", "format": "date-time"},
                    "user": {"type": "object", "properties": {"username": {"type": "string"}, "tenants": {"type": "array", "items": {"type": "string"}}, "role": {"type": "string", "enum": ["admin", "user"]}}}}}
            }
        }
    })
}
