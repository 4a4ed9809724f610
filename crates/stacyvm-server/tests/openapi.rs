//! The OpenAPI document: the committed copy is current, the server serves
//! it, and it describes exactly the routes the server answers.

mod common;

use common::TestServer;
use serde_json::Value;

const REGENERATE: &str = "cargo run -q -p stacyvm -- openapi > docs/openapi.json";

fn committed_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")
}

#[test]
fn committed_document_is_current() {
    let generated = stacyvm_server::api::openapi_json();
    let committed = std::fs::read_to_string(committed_path()).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is stale (the API changed); regenerate it with `{REGENERATE}`"
    );
}

#[test]
fn document_is_openapi_3_1_with_unique_operation_ids() {
    let doc = stacyvm_server::api::openapi();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["servers"][0]["url"], "/api/v1");
    let mut ids = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap().to_string();
            assert!(!ids.contains(&id), "{method} {path}: duplicate id {id}");
            ids.push(id);
            let responses = op["responses"].as_object().unwrap();
            assert!(responses.contains_key("500"), "{method} {path}");
            for (status, r) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let schema = &r["content"]["application/json"]["schema"]["$ref"];
                    // `/ready`'s 503 carries the readiness body itself.
                    if path != "/ready" {
                        assert_eq!(
                            schema, "#/components/schemas/ErrorBody",
                            "{method} {path} {status}"
                        );
                    }
                }
            }
        }
    }
    assert!(ids.len() >= 38, "{ids:?}");
}

fn sample(path: &str) -> String {
    path.replace("{id}", "sb-0123456789")
        .replace("{name}", "no-such-template")
}

/// Every documented operation is routed (not the 404/405 fallback), and
/// what the server answers is a documented status.
#[tokio::test]
async fn every_documented_operation_is_served() {
    let s = TestServer::start().await;
    let (status, served) = s.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(served, stacyvm_server::api::openapi(), "served = generated");
    let doc: Value = served;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let url = s.url(&sample(path));
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut req = s.http.request(m, &url);
            if path.ends_with("/exec") || method == "post" {
                req = req.body("{}");
            }
            let resp = tokio::time::timeout(std::time::Duration::from_secs(20), req.send())
                .await
                .unwrap_or_else(|_| panic!("{method} {path} hangs"))
                .unwrap();
            let code = resp.status().as_u16();
            let ctype = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let documented = op["responses"].as_object().unwrap();
            assert!(
                documented.contains_key(&code.to_string()),
                "{method} {path} answered {code}, not documented"
            );
            if path == "/events" {
                // An endless stream: the status is what matters.
                continue;
            }
            let body = resp.bytes().await.unwrap();
            if code >= 400 {
                let e: Value = serde_json::from_slice(&body).unwrap();
                let fallback = e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("route ") || m.starts_with("method "));
                assert!(
                    !fallback,
                    "{method} {path} is documented but not routed: {e}"
                );
                assert!(ctype.starts_with("application/json"), "{method} {path}");
            }
        }
    }
    s.stop().await;
}
