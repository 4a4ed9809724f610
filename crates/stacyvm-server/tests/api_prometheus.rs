//! `/metrics/prometheus` of the real server: names and labels after real
//! operations, and a real Prometheus scraping it
//! (scripts/ci/prom-scrape-check.sh: promtool, a histogram quantile, and
//! every query of deploy/grafana-dashboard.json).
//!
//! The Prometheus part needs `promtool` and `prometheus`
//! (scripts/ci/prometheus.sh): with `CI` set it fails when they are
//! missing; locally it skips with a reason.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::TestServer;
use serde_json::json;

async fn scrape(s: &TestServer) -> (String, String) {
    let resp = s
        .http
        .get(s.url("/metrics/prometheus"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    (ct, resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_endpoint_after_real_operations() {
    let s = TestServer::start().await;
    let id = s.spawn().await;
    s.sh(&id, "echo hi").await;
    let (st, _) = s
        .post(
            &format!("/sandboxes/{id}/exec"),
            json!({"command": "sleep 5", "timeout": "200ms"}),
        )
        .await;
    assert_eq!(st, 408);

    let (ct, text) = scrape(&s).await;
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
    for needle in [
        "stacyvm_uptime_seconds ",
        "stacyvm_sandboxes_total{state=\"running\",provider=\"mock\"} 1\n",
        "stacyvm_provider_healthy{provider=\"mock\",default=\"true\"} ",
        "stacyvm_provider_health_latency_milliseconds{provider=\"mock\"} ",
        "stacyvm_events_total ",
        "stacyvm_event_subscribers ",
        "stacyvm_event_history_size ",
        "stacyvm_operation_success_total{operation=\"spawn\",provider=\"mock\"} 1\n",
        "stacyvm_operation_success_total{operation=\"exec\",provider=\"mock\"} 1\n",
        "stacyvm_operation_failure_total{operation=\"exec\",provider=\"mock\"} 1\n",
        "stacyvm_operation_latency_milliseconds_sum{operation=\"exec\",provider=\"mock\"} ",
        "stacyvm_operation_latency_milliseconds_count{operation=\"exec\",provider=\"mock\"} 2\n",
        "stacyvm_operation_latency_milliseconds_max{operation=\"exec\",provider=\"mock\"} ",
        "stacyvm_operation_duration_seconds_bucket{operation=\"exec\",provider=\"mock\",le=\"+Inf\"} 2\n",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_open_fds ",
        "process_threads ",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }

    if common::prometheus_present() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let script = root.join("scripts/ci/prom-scrape-check.sh");
        let dashboard = root.join("deploy/grafana-dashboard.json");
        let url = s.url("/metrics/prometheus");
        let out = tokio::task::spawn_blocking(move || {
            Command::new("bash")
                .arg(script)
                .arg(url)
                .env("PROM_DASHBOARD", dashboard)
                .output()
                .expect("run prom-scrape-check.sh")
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("{stdout}");
        assert!(
            out.status.success(),
            "prom-scrape-check failed:\n{stdout}\n{stderr}"
        );
    }
    s.stop().await;
}
