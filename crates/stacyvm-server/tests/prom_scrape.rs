//! A real Prometheus scrapes a live HTTP endpoint serving
//! `obs::prometheus::render` while operations are being recorded, and
//! answers a histogram quantile (scripts/ci/prom-scrape-check.sh); every
//! query of deploy/grafana-dashboard.json runs against it.
//!
//! Needs `promtool` and `prometheus` (scripts/ci/prometheus.sh): with `CI`
//! set it fails when they are missing; locally it skips with a reason.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use stacyvm_core::{Capability, ProviderHealth, SandboxState};
use stacyvm_server::obs::prometheus::{CONTENT_TYPE, ScrapeSnapshot, render};
use stacyvm_server::obs::{
    EventStats, Operation, OperationMetrics, ProcessStats, SandboxCount, SandboxResources,
};

fn tools_present() -> bool {
    let missing: Vec<&str> = ["promtool", "prometheus"]
        .into_iter()
        .filter(|t| Command::new(t).arg("--version").output().is_err())
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{missing:?} required in CI: run scripts/ci/prometheus.sh"
    );
    eprintln!("skipping: {missing:?} not installed (scripts/ci/prometheus.sh)");
    false
}

async fn metrics(State(m): State<Arc<OperationMetrics>>) -> impl IntoResponse {
    let snapshot = ScrapeSnapshot {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime: Duration::from_secs(1),
        process: Some(ProcessStats::collect()),
        events: EventStats {
            subscribers: 1,
            history_size: 10,
            events_total: 42,
        },
        operations: m.snapshot(),
        sandboxes: vec![SandboxCount {
            state: SandboxState::Running,
            provider: "mock".to_owned(),
            count: 1,
        }],
        providers: vec![ProviderHealth {
            name: "mock".to_owned(),
            healthy: true,
            default: true,
            latency_ms: 1,
            last_checked: chrono::Utc::now(),
            error: None,
            capabilities: vec![Capability::Spawn],
            runtime_count: Some(1),
            unavailable: Default::default(),
        }],
        sandbox_resources: vec![SandboxResources {
            sandbox: "sb-0123abcd".to_owned(),
            provider: "mock".to_owned(),
            owner: "alice".to_owned(),
            cpu_seconds: Some(0.5),
            memory_bytes: Some(1 << 20),
            pids: Some(2),
        }],
        destroys: Default::default(),
    };
    let body = render(snapshot).expect("rendering into a String cannot fail");
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_scrapes_and_answers_a_quantile() {
    if !tools_present() {
        return;
    }
    let recorder = Arc::new(OperationMetrics::new());
    let traffic = {
        let m = Arc::clone(&recorder);
        tokio::spawn(async move {
            let mut i = 0u64;
            loop {
                let op = Operation::ALL[(i % 3) as usize];
                m.record(
                    op,
                    "mock",
                    Duration::from_micros(300 + (i % 50) * 200),
                    Ok(()),
                );
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let app = Router::new()
        .route("/api/v1/metrics/prometheus", get(metrics))
        .with_state(Arc::clone(&recorder));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/api/v1/metrics/prometheus",
        listener.local_addr().unwrap()
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("scripts/ci/prom-scrape-check.sh");
    let dashboard = root.join("deploy/grafana-dashboard.json");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg(script)
            .arg(&url)
            .env("PROM_REQUIRE_RATE", "1")
            .env("PROM_DASHBOARD", dashboard)
            .output()
            .expect("run prom-scrape-check.sh")
    })
    .await
    .unwrap();
    traffic.abort();
    server.abort();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "prom-scrape-check failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("prom-scrape-check: ok"), "{stdout}");
}
