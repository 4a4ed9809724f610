//! System routes against the real server: readiness when a provider or the
//! store is down, diagnostics redaction, JSON metrics, and Prometheus output
//! checked by promtool and scraped by a real Prometheus.

mod common;

use std::sync::Arc;

use common::{TestServer, assert_error};
use serde_json::json;
use stacyvm_providers::mock::MockProvider;
use stacyvm_store::MemoryStore;

async fn with_flaky() -> (TestServer, Arc<MockProvider>, Arc<MemoryStore>) {
    let dir = tempfile::tempdir().unwrap();
    let flaky = Arc::new(MockProvider::named("flaky", dir.path().join("m")).unwrap());
    let store = Arc::new(MemoryStore::new());
    let s = TestServer::start_parts(
        |c| {
            c.providers.mock.enabled = false;
            c.providers.default = "flaky".into();
        },
        store.clone(),
        vec![flaky.clone()],
    )
    .await;
    std::mem::forget(dir);
    (s, flaky, store)
}

#[tokio::test]
async fn readiness_follows_providers_and_store() {
    let (s, flaky, store) = with_flaky().await;
    let (st, r) = s.get("/ready").await;
    assert_eq!((st, r["status"].as_str()), (200, Some("ready")));
    assert_eq!(r["store"]["healthy"], true);

    // Provider down: a forced check flips it, /ready says not_ready.
    flaky.set_failing(true);
    let r = s.http.post(s.url("/providers/test")).send().await.unwrap();
    assert_eq!(common::decode(r).await.1, json!({"flaky": false}));
    let (st, r) = s.get("/ready").await;
    assert_eq!((st, r["status"].as_str()), (503, Some("not_ready")));
    assert_eq!(r["ready_providers"], 0);
    assert_eq!(r["providers"][0]["healthy"], false);
    assert!(
        r["providers"][0]["error"]
            .as_str()
            .unwrap()
            .contains("switched off")
    );
    // Liveness does not care.
    assert_eq!(s.get("/live").await.0, 200);
    // Operations answer 503 unavailable, cleanly.
    let (st, e) = s.post("/sandboxes", json!({})).await;
    assert_error(st, &e, 503, "unavailable");
    // The flip was published, and so is the recovery.
    flaky.set_failing(false);
    s.http.post(s.url("/providers/test")).send().await.unwrap();
    assert_eq!(s.get("/ready").await.0, 200);

    // Store down.
    store.set_down(true);
    let (st, r) = s.get("/ready").await;
    assert_eq!((st, r["status"].as_str()), (503, Some("not_ready")));
    assert_eq!(r["store"]["healthy"], false);
    store.set_down(false);
    assert_eq!(s.get("/ready").await.0, 200);
    s.stop().await;
}

#[tokio::test]
async fn json_metrics_shape() {
    let s = TestServer::start().await;
    let id = s.spawn().await;
    s.sh(&id, "true").await;
    let (st, m) = s.get("/metrics").await;
    assert_eq!(st, 200);
    assert!(m["uptime"].is_string());
    assert!(m["process"]["resident_memory_bytes"].as_u64().unwrap() > 0);
    assert!(m["process"]["threads"].as_u64().unwrap() > 0);
    assert!(m["process"]["open_fds"].as_u64().unwrap() > 0);
    assert_eq!(m["sandboxes"]["by_state"]["running"], 1);
    assert_eq!(m["sandboxes"]["by_provider"]["mock"], 1);
    assert_eq!(
        (
            m["providers"]["total"].as_u64(),
            m["providers"]["healthy"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert!(m["events"]["events_total"].as_u64().unwrap() >= 3);
    let ops = m["operations"].as_array().unwrap();
    let exec = ops.iter().find(|o| o["operation"] == "exec").unwrap();
    assert_eq!(
        (exec["provider"].as_str(), exec["success_total"].as_u64()),
        (Some("mock"), Some(1))
    );
    for key in [
        "failure_total",
        "latency_count",
        "latency_total_ms",
        "latency_min_ms",
        "latency_max_ms",
        "latency_avg_ms",
        "last_observed_unix",
    ] {
        assert!(exec.get(key).is_some(), "{key} missing: {exec}");
    }
    s.stop().await;
}

#[tokio::test]
async fn diagnostics_never_contain_secrets() {
    const API_KEY: &str = "api-key-SECRET-1";
    const ADMIN_KEY: &str = "admin-key-SECRET-2";
    const REG_PASS: &str = "registry-pass-SECRET-3";
    const IMG_PASS: &str = "image-cred-SECRET-4";
    const ENV_VAL: &str = "env-value-SECRET-5";
    let s = TestServer::start_with(|c| {
        c.auth.enabled = true;
        c.auth.api_key = API_KEY.into();
        c.auth.admin_api_key = ADMIN_KEY.into();
        c.providers.docker.registry = Some(
            serde_yaml::from_str(&format!("{{username: reguser, password: {REG_PASS}}}")).unwrap(),
        );
        c.images.credentials.insert(
            "registry.example:5000".into(),
            serde_yaml::from_str(&format!("{{username: imguser, password: {IMG_PASS}}}")).unwrap(),
        );
    })
    .await;
    let auth = |r: reqwest::RequestBuilder| r.header("x-api-key", API_KEY);
    let (_, sb) = common::decode(
        auth(s.http.post(s.url("/sandboxes")))
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let id = sb["id"].as_str().unwrap();
    let r = auth(s.http.post(s.url(&format!("/sandboxes/{id}/exec"))))
        .json(&json!({"command": "echo -n $TOKEN | wc -c", "env": {"TOKEN": ENV_VAL}}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        common::decode(r).await.1["stdout"].as_str().map(str::trim),
        Some("18")
    );
    // A failing exec too, so errors appear in operations and events.
    let r = auth(s.http.post(s.url(&format!("/sandboxes/{id}/exec"))))
        .json(&json!({"command": "sleep 3", "timeout": "100ms", "env": {"TOKEN": ENV_VAL}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 408);
    let (st, diag) = common::decode(
        auth(s.http.get(s.url("/diagnostics")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 200);
    for key in [
        "generated_at",
        "build",
        "process",
        "store",
        "limits",
        "providers",
        "sandboxes",
        "events",
        "operations",
    ] {
        assert!(diag.get(key).is_some(), "diagnostics lacks {key}");
    }
    assert_eq!(
        diag["redactions"],
        json!([
            "provider secrets",
            "registry credentials",
            "environment secrets",
            "API keys"
        ])
    );
    assert!(diag["limits"]["max_ttl"].is_string());
    // Everything an operator can read: none of it holds a secret.
    let mut bodies = vec![diag.to_string()];
    for path in [
        "/metrics",
        "/metrics/prometheus",
        "/providers",
        "/providers/mock",
        "/ready",
        "/health",
    ] {
        let r = auth(s.http.get(s.url(path))).send().await.unwrap();
        bodies.push(r.text().await.unwrap());
    }
    let events = s
        .http
        .get(s.url(&format!("/events?api_key={API_KEY}&last_event_id=evt-0")))
        .send()
        .await
        .unwrap();
    let mut stream = futures::StreamExt::boxed(events.bytes_stream());
    let chunk = futures::StreamExt::next(&mut stream)
        .await
        .unwrap()
        .unwrap();
    bodies.push(String::from_utf8_lossy(&chunk).into_owned());
    for body in &bodies {
        for secret in [API_KEY, ADMIN_KEY, REG_PASS, IMG_PASS, ENV_VAL] {
            assert!(!body.contains(secret), "a response leaked {secret}: {body}");
        }
    }
    s.stop().await;
}

/// promtool and a real Prometheus against the server's own endpoint. (The
/// dashboard's queries are checked in `prom_scrape.rs`, with per-sandbox
/// series the mock provider cannot produce.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_endpoint_passes_promtool_and_real_scrape() {
    if !common::prometheus_present() {
        return;
    }
    let s = TestServer::start_with(|c| {
        c.auth.enabled = true;
        c.auth.api_key = "scrape-key".into();
    })
    .await;
    let r = s
        .http
        .get(s.url("/metrics/prometheus"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the endpoint is behind auth like the rest");
    let r = s
        .http
        .get(s.url("/metrics/prometheus"))
        .bearer_auth("scrape-key")
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    // Traffic while Prometheus scrapes, so rate() has data.
    let base = s.base.clone();
    let traffic = tokio::spawn(async move {
        let http = reqwest::Client::new();
        let sb: serde_json::Value = http
            .post(format!("{base}/sandboxes"))
            .header("x-api-key", "scrape-key")
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = sb["id"].as_str().unwrap().to_string();
        loop {
            let _ = http
                .post(format!("{base}/sandboxes/{id}/exec"))
                .header("x-api-key", "scrape-key")
                .json(&json!({"command": "true"}))
                .send()
                .await;
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/ci/prom-scrape-check.sh"
    );
    let url = s.url("/metrics/prometheus");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("bash")
            .arg(script)
            .arg(url)
            .env("STACYVM_API_KEY", "scrape-key")
            .env("PROM_REQUIRE_RATE", "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    traffic.abort();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "prom-scrape-check failed:\n{stdout}\n{stderr}"
    );
    s.stop().await;
}
