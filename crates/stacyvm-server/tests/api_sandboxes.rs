//! HTTP API v1 against the real server: sandboxes, templates, system
//! endpoints and error cases.

mod common;

use common::{TestServer, assert_error};
use serde_json::json;

#[tokio::test]
async fn system_endpoints_answer() {
    let s = TestServer::start().await;
    let (st, h) = s.get("/health").await;
    assert_eq!((st, h["status"].as_str()), (200, Some("ok")));
    assert!(h["version"].is_string() && h["uptime"].is_string());
    let (st, l) = s.get("/live").await;
    assert_eq!((st, l["status"].as_str()), (200, Some("alive")));
    let (st, r) = s.get("/ready").await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["status"], "ready");
    assert_eq!(r["ready_providers"], 1);
    assert_eq!(r["providers"][0]["name"], "mock");
    assert_eq!(r["providers"][0]["default"], true);
    assert_eq!(s.get("/pool/status").await.1, json!({"enabled": false}));
    let (st, q) = s.get("/quotas/summary").await;
    assert_eq!(st, 200);
    assert_eq!(q["total"], 0);
    s.stop().await;
}

#[tokio::test]
async fn request_id_is_echoed_or_generated() {
    let s = TestServer::start().await;
    let r = s
        .http
        .get(s.url("/health"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let r = s.http.get(s.url("/health")).send().await.unwrap();
    assert!(!r.headers()["x-request-id"].is_empty());
    // Errors carry it too.
    let r = s
        .http
        .get(s.url("/sandboxes/sb-00000000"))
        .header("x-request-id", "e-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-request-id"], "e-1");
    s.stop().await;
}

#[tokio::test]
async fn sandbox_lifecycle() {
    let s = TestServer::start().await;
    let (st, sb) = s
        .post(
            "/sandboxes",
            json!({"image": "busybox", "ttl": "10m", "memory_mb": 256, "vcpus": 2, "owner_id": "alice", "metadata": {"team": "a"}}),
        )
        .await;
    assert_eq!(st, 201, "{sb}");
    let id = sb["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("sb-") && id.len() >= 11);
    assert_eq!(sb["state"], "running");
    assert_eq!(sb["provider"], "mock");
    assert_eq!(sb["image"], "busybox");
    assert_eq!(
        (sb["memory_mb"].as_u64(), sb["vcpus"].as_u64()),
        (Some(256), Some(2))
    );
    assert_eq!(sb["owner_id"], "alice");
    assert_eq!(sb["metadata"]["team"], "a");
    assert_eq!(sb["preview_domain"], "localhost");
    let created = chrono::DateTime::parse_from_rfc3339(sb["created_at"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(sb["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!((expires - created).num_seconds(), 600);

    let (st, got) = s.get(&format!("/sandboxes/{id}")).await;
    assert_eq!((st, &got["id"]), (200, &sb["id"]));
    let (_, list) = s.get("/sandboxes").await;
    assert!(list.as_array().unwrap().iter().any(|x| x["id"] == sb["id"]));

    let (st, ext) = s
        .post(&format!("/sandboxes/{id}/extend"), json!({"ttl": "1h"}))
        .await;
    assert_eq!(st, 200, "{ext}");
    let new_exp =
        chrono::DateTime::parse_from_rfc3339(ext["expires_at"].as_str().unwrap()).unwrap();
    assert!(new_exp > expires);

    let (st, logs) = s.get(&format!("/sandboxes/{id}/logs?lines=10")).await;
    assert_eq!(st, 200);
    assert!(logs.is_array());

    let (st, d) = s.delete(&format!("/sandboxes/{id}")).await;
    assert_eq!((st, d), (200, json!({"status": "destroyed"})));
    let (st, e) = s.delete(&format!("/sandboxes/{id}")).await;
    assert_error(st, &e, 404, "not_found");
    let (st, e) = s.get(&format!("/sandboxes/{id}")).await;
    assert_error(st, &e, 404, "not_found");
    let (_, list) = s.get("/sandboxes").await;
    assert!(!list.as_array().unwrap().iter().any(|x| x["id"] == sb["id"]));
    s.stop().await;
}

#[tokio::test]
async fn owner_header_overrides_body_and_filters_list() {
    let s = TestServer::start().await;
    let r = s
        .http
        .post(s.url("/sandboxes"))
        .header("x-user-id", " bob ")
        .json(&json!({"owner_id": "alice"}))
        .send()
        .await
        .unwrap();
    let (st, sb) = common::decode(r).await;
    assert_eq!(st, 201);
    assert_eq!(sb["owner_id"], "bob");
    s.spawn().await;
    let r = s
        .http
        .get(s.url("/sandboxes"))
        .header("x-user-id", "bob")
        .send()
        .await
        .unwrap();
    let (_, mine) = common::decode(r).await;
    assert_eq!(mine.as_array().unwrap().len(), 1);
    for bad in ["a b", "a/b", &"x".repeat(129)] {
        let r = s
            .http
            .post(s.url("/sandboxes"))
            .json(&json!({"owner_id": bad}))
            .send()
            .await
            .unwrap();
        let (st, e) = common::decode(r).await;
        assert_error(st, &e, 400, "bad_request");
    }
    s.stop().await;
}

#[tokio::test]
async fn bad_input_gets_contract_errors() {
    let s = TestServer::start_with(|c| c.server.max_body_bytes = 1024).await;
    // Malformed JSON.
    let r = s
        .http
        .post(s.url("/sandboxes"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (st, e) = common::decode(r).await;
    assert_error(st, &e, 400, "bad_request");
    // Bad duration.
    let (st, e) = s.post("/sandboxes", json!({"ttl": "soon"})).await;
    assert_error(st, &e, 400, "bad_request");
    assert!(e["message"].as_str().unwrap().contains("soon"));
    // Unknown id and malformed id.
    let (st, e) = s.get("/sandboxes/sb-deadbeef00").await;
    assert_error(st, &e, 404, "not_found");
    let (st, e) = s.get("/sandboxes/nope").await;
    assert_error(st, &e, 404, "not_found");
    // Unknown route, wrong method.
    let (st, e) = s.get("/nothing/here").await;
    assert_error(st, &e, 404, "not_found");
    let r = s.http.patch(s.url("/sandboxes")).send().await.unwrap();
    let (st, e) = common::decode(r).await;
    assert_error(st, &e, 405, "method_not_allowed");
    // Oversized body.
    let id = s.spawn().await;
    let r = s
        .http
        .put(s.url(&format!("/sandboxes/{id}/files?path=/big")))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    let (st, e) = common::decode(r).await;
    assert_error(st, &e, 413, "payload_too_large");
    // Unknown provider.
    let (st, e) = s.post("/sandboxes", json!({"provider": "nope"})).await;
    assert_error(st, &e, 400, "bad_request");
    s.stop().await;
}

#[tokio::test]
async fn api_key_auth() {
    let s = TestServer::start_with(|c| {
        c.auth.enabled = true;
        c.auth.api_key = "k3y-s3cret".into();
    })
    .await;
    let (st, e) = s.get("/sandboxes").await;
    assert_error(st, &e, 401, "unauthorized");
    let r = s
        .http
        .get(s.url("/sandboxes"))
        .header("x-api-key", "wrong")
        .send()
        .await
        .unwrap();
    let (st, e) = common::decode(r).await;
    assert_error(st, &e, 401, "unauthorized");
    assert!(!e.to_string().contains("k3y-s3cret"));
    let r = s
        .http
        .get(s.url("/sandboxes"))
        .header("x-api-key", "k3y-s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Probes stay open.
    assert_eq!(s.get("/live").await.0, 200);
    assert_eq!(s.get("/ready").await.0, 200);
    s.stop().await;
}

#[tokio::test]
async fn templates_crud_and_spawn() {
    let s = TestServer::start().await;
    let body = json!({"name": "py", "image": "python:3.12", "provider": "", "memory_mb": 256, "vcpus": 1, "ttl": "30m", "metadata": {"k": "v"}});
    let (st, t) = s.post("/templates", body.clone()).await;
    assert_eq!(st, 201, "{t}");
    assert_eq!(
        (t["name"].as_str(), t["image"].as_str(), t["ttl"].as_str()),
        (Some("py"), Some("python:3.12"), Some("30m0s"))
    );
    let (st, e) = s.post("/templates", body).await;
    assert_error(st, &e, 409, "conflict");
    let (st, list) = s.get("/templates").await;
    assert_eq!((st, list.as_array().unwrap().len()), (200, 1));
    let r = s
        .http
        .put(s.url("/templates/py"))
        .json(&json!({"image": "python:3.13", "memory_mb": 512, "metadata": {"k": "v"}}))
        .send()
        .await
        .unwrap();
    let (st, t) = common::decode(r).await;
    assert_eq!((st, t["image"].as_str()), (200, Some("python:3.13")));
    let r = s
        .http
        .put(s.url("/templates/missing"))
        .json(&json!({"image": "x"}))
        .send()
        .await
        .unwrap();
    let (st, e) = common::decode(r).await;
    assert_error(st, &e, 404, "not_found");
    // Bodyless spawn, as the Python SDK sends it.
    let r = s
        .http
        .post(s.url("/templates/py/spawn"))
        .send()
        .await
        .unwrap();
    let (st, sb) = common::decode(r).await;
    assert_eq!(st, 201, "{sb}");
    assert_eq!(
        (sb["image"].as_str(), sb["memory_mb"].as_u64()),
        (Some("python:3.13"), Some(512))
    );
    assert_eq!(sb["metadata"]["k"], "v");
    let (st, sb) = s
        .post("/sandboxes", json!({"template": "py", "ttl": "5m"}))
        .await;
    assert_eq!((st, sb["image"].as_str()), (201, Some("python:3.13")));
    let (st, e) = s.post("/sandboxes", json!({"template": "nope"})).await;
    assert_error(st, &e, 404, "not_found");
    let (st, d) = s.delete("/templates/py").await;
    assert_eq!((st, d), (200, json!({"status": "deleted"})));
    let (st, e) = s.get("/templates/py").await;
    assert_error(st, &e, 404, "not_found");
    let (st, e) = s
        .post("/templates", json!({"name": "../x", "image": "a"}))
        .await;
    assert_error(st, &e, 400, "bad_request");
    s.stop().await;
}

#[tokio::test]
async fn providers_endpoints() {
    let s = TestServer::start().await;
    let (st, list) = s.get("/providers").await;
    assert_eq!(st, 200);
    let mock = &list[0];
    assert_eq!(mock["name"], "mock");
    assert_eq!(mock["healthy"], true);
    assert!(mock["latency_ms"].is_u64());
    assert!(mock["last_checked"].is_string());
    assert!(
        mock["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "exec")
    );
    assert!(mock.get("error").is_none());
    let (st, one) = s.get("/providers/mock").await;
    assert_eq!(st, 200);
    assert_eq!(one["default"], true);
    assert_eq!(one["health"]["name"], "mock");
    assert!(one["sandbox_count"].is_u64());
    let (st, e) = s.get("/providers/nope").await;
    assert_error(st, &e, 404, "not_found");
    let r = s.http.post(s.url("/providers/test")).send().await.unwrap();
    let (st, t) = common::decode(r).await;
    assert_eq!((st, t), (200, json!({"mock": true})));
    s.stop().await;
}

#[tokio::test]
async fn admission_and_limits() {
    let s = TestServer::start_with(|c| {
        c.defaults.max_sandboxes = 2;
        c.defaults.max_sandboxes_per_owner = 1;
        c.defaults.max_ttl = stacyvm_core::GoDuration::from_secs(3600);
    })
    .await;
    let (st, d) = s
        .post("/sandboxes/admission", json!({"owner_id": "al"}))
        .await;
    assert_eq!(st, 200);
    let keys: Vec<_> = d.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys.len(),
        8,
        "admission must carry exactly the contract's keys: {keys:?}"
    );
    assert_eq!(
        (d["allowed"].as_bool(), d["max_ttl"].as_str()),
        (Some(true), Some("1h0m0s"))
    );
    let (st, _) = s.post("/sandboxes", json!({"owner_id": "al"})).await;
    assert_eq!(st, 201);
    let r = s
        .http
        .post(s.url("/sandboxes"))
        .json(&json!({"owner_id": "al"}))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("retry-after").is_some());
    let (st, e) = common::decode(r).await;
    assert_error(st, &e, 429, "resource_limit");
    let (_, d) = s
        .post("/sandboxes/admission", json!({"owner_id": "al"}))
        .await;
    assert_eq!(
        (d["allowed"].as_bool(), d["queueable"].as_bool()),
        (Some(false), Some(true))
    );
    assert_eq!(d["active_owner_sandboxes"], 1);
    let (st, e) = s.post("/sandboxes", json!({"ttl": "2h"})).await;
    assert_error(st, &e, 429, "resource_limit");
    let (_, d) = s.post("/sandboxes/admission", json!({"ttl": "2h"})).await;
    assert_eq!(
        (d["allowed"].as_bool(), d["queueable"].as_bool()),
        (Some(false), Some(false))
    );
    s.spawn().await;
    let (st, e) = s.post("/sandboxes", json!({})).await;
    assert_error(st, &e, 429, "resource_limit");
    let id = s.get("/sandboxes").await.1[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, e) = s
        .post(&format!("/sandboxes/{id}/extend"), json!({"ttl": "3h"}))
        .await;
    assert_error(st, &e, 429, "resource_limit");
    s.stop().await;
}

#[tokio::test]
async fn state_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), |_| {}).await;
    let id = s.spawn().await;
    let (st, _) = s
        .post("/templates", json!({"name": "keep", "image": "busybox"}))
        .await;
    assert_eq!(st, 201);
    s.stop().await;

    let s = TestServer::start_in(dir.path(), |_| {}).await;
    // Templates persist in the store.
    assert_eq!(s.get("/templates/keep").await.0, 200);
    let (st, sb) = s.get(&format!("/sandboxes/{id}")).await;
    if st == 200 && sb["state"] == "running" {
        // The runtime survived: the sandbox is still usable.
        let (code, out) = s.sh(&id, "echo alive").await;
        assert_eq!((code, out.as_str()), (0, "alive\n"));
    } else {
        // The runtime went away: reconciliation said so with an event.
        assert_eq!(st, 404, "{sb}");
        let r = s
            .http
            .get(s.url("/events?types=reconcile.action"))
            .header("last-event-id", "evt-0")
            .send()
            .await
            .unwrap();
        let mut stream = futures::StreamExt::boxed(r.bytes_stream());
        let chunk = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            futures::StreamExt::next(&mut stream),
        )
        .await
        .unwrap()
        .unwrap()
        .unwrap();
        let text = String::from_utf8_lossy(&chunk);
        assert!(text.contains(&id) && text.contains("destroyed"), "{text}");
    }
    s.stop().await;
}

#[tokio::test]
async fn cors_follows_config() {
    let s = TestServer::start_with(|c| c.server.cors_origins = vec!["http://dash.example".into()])
        .await;
    let r = s
        .http
        .request(reqwest::Method::OPTIONS, s.url("/sandboxes"))
        .header("origin", "http://dash.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "x-api-key,content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://dash.example"
    );
    let r = s
        .http
        .get(s.url("/health"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    s.stop().await;
    // No origins configured: no CORS headers at all.
    let s = TestServer::start().await;
    let r = s
        .http
        .get(s.url("/health"))
        .header("origin", "http://dash.example")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    s.stop().await;
}
