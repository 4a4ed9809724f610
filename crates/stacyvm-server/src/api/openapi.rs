//! The OpenAPI 3.1 document of API v1, generated from the route list
//! (`api::routes`) and the types of `api::model`. Served at
//! `GET /api/v1/openapi.json` and committed as `docs/openapi.json`; a test
//! fails when that copy is stale, and `stacyvm openapi > docs/openapi.json`
//! regenerates it.
//!
//! utoipa writes the paths and schemas; [`finish`] then adds what holds for
//! every route (the 401/500 answers, the API-key schemes), gives each
//! operation a unique id, marks the bodies the server reads as `{}` when
//! absent as optional, and links the id of a created sandbox or template to
//! the operations that take it (which also lets schemathesis chain them).

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Map, Value, json};
use utoipa::OpenApi;

use super::model::{ErrorBody, Event, StreamRecord, WsClientMessage, WsServerMessage};

/// The document's head and the schemas no route names directly (stream
/// records, WebSocket messages, events).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "StacyVM API v1",
        description = "Self-hosted sandboxes for AI agents and developer tools. Every error is `{\"code\",\"message\"}` with the status that tells its class; see docs/api.md.",
    ),
    servers((url = "/api/v1")),
    components(schemas(ErrorBody, StreamRecord, WsClientMessage, WsServerMessage, Event)),
    tags(
        (name = "sandboxes", description = "Sandbox lifecycle"),
        (name = "exec", description = "Commands in a sandbox"),
        (name = "files", description = "Files in a sandbox"),
        (name = "templates", description = "Named spawn presets"),
        (name = "providers", description = "Isolation backends"),
        (name = "nodes", description = "Cluster nodes (cluster mode)"),
        (name = "system", description = "Probes, metrics, diagnostics, events"),
    )
)]
struct Head;

/// Routes that answer without an API key even when auth is on.
const OPEN_PATHS: [&str; 3] = ["/live", "/health", "/ready"];

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    let mut s = serde_json::to_string_pretty(&openapi()).unwrap_or_default();
    s.push('\n');
    s
});

/// The document.
pub fn openapi() -> Value {
    let mut doc = Head::openapi();
    doc.merge(super::routes().into_openapi());
    doc.info.version = stacyvm_core::VERSION.to_string();
    let mut doc = serde_json::to_value(doc).unwrap_or_default();
    finish(&mut doc);
    doc
}

/// The document as pretty JSON with a final newline (the committed form).
pub fn openapi_json() -> String {
    DOCUMENT.clone()
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    })
}

/// Operations with their path, as `(path, method, operation)`.
fn operations(doc: &mut Value) -> Vec<(String, &'static str, &mut Map<String, Value>)> {
    let mut out = Vec::new();
    let Some(paths) = doc["paths"].as_object_mut() else {
        return out;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            let Some(m) = METHODS.iter().find(|m| **m == method.as_str()) else {
                continue;
            };
            if let Some(op) = op.as_object_mut() {
                out.push((path.clone(), *m, op));
            }
        }
    }
    out
}

fn finish(doc: &mut Value) {
    doc["components"]["securitySchemes"] = json!({
        "api_key": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        "bearer": {"type": "http", "scheme": "bearer"},
    });
    // (operation id, path) of the routes that take a sandbox id or a
    // template name, for the links below.
    let mut takes_id = Vec::new();
    let mut takes_name = Vec::new();
    for (path, _, op) in operations(doc) {
        // Unique ids: `sandboxes_list`, `templates_list`, `exec_ws`, ...
        let tag = op["tags"][0].as_str().unwrap_or("api").to_string();
        let id = op["operationId"].as_str().unwrap_or("").to_string();
        let id = if id == tag || id.starts_with(&format!("{tag}_")) {
            id
        } else {
            format!("{tag}_{id}")
        };
        op.insert("operationId".into(), json!(id));
        if path.starts_with("/sandboxes/{id}") {
            takes_id.push(id);
        } else if path.starts_with("/templates/{name}") {
            takes_name.push(id);
        }
        let responses = op
            .entry("responses")
            .or_insert_with(|| json!({}))
            .as_object_mut();
        if let Some(responses) = responses {
            responses.entry("500").or_insert_with(|| {
                error_response("`internal` or `provider_error`: an unexpected failure (details in the server log)")
            });
            if !OPEN_PATHS.contains(&path.as_str()) {
                responses.entry("401").or_insert_with(|| {
                    error_response("`unauthorized`: auth is on and the API key is missing or wrong")
                });
            }
        }
        if !OPEN_PATHS.contains(&path.as_str()) {
            // No key is needed when auth is off (the default).
            op.insert(
                "security".into(),
                json!([{}, {"api_key": []}, {"bearer": []}]),
            );
        }
        optional_body(op);
    }
    for (_, _, op) in operations(doc) {
        for (status, response) in op["responses"].as_object_mut().into_iter().flatten() {
            if !status.starts_with('2') {
                continue;
            }
            let schema = &response["content"]["application/json"]["schema"]["$ref"];
            let (targets, param, pointer) = match schema.as_str() {
                Some("#/components/schemas/Sandbox") => (&takes_id, "id", "$response.body#/id"),
                Some("#/components/schemas/Template") => {
                    (&takes_name, "name", "$response.body#/name")
                }
                _ => continue,
            };
            let links: Map<String, Value> = targets
                .iter()
                .map(|t| {
                    (
                        t.clone(),
                        json!({"operationId": t, "parameters": {param: pointer}}),
                    )
                })
                .collect();
            response["links"] = Value::Object(links);
        }
    }
}

/// The server reads a missing body as `{}`: a body documented as
/// `Option<T>` (utoipa's `oneOf [null, T]`) is an optional `T`.
fn optional_body(op: &mut Map<String, Value>) {
    let Some(body) = op.get_mut("requestBody") else {
        return;
    };
    let Some(content) = body["content"].as_object_mut() else {
        return;
    };
    let mut optional = false;
    for media in content.values_mut() {
        let items = media["schema"]["oneOf"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let [a, b] = items.as_slice()
            && a == &json!({"type": "null"})
        {
            media["schema"] = b.clone();
            optional = true;
        }
    }
    if optional {
        body["required"] = json!(false);
    }
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "system",
    operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object)),
)]
pub async fn document() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
}
