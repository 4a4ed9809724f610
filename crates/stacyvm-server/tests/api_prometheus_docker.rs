//! Per-sandbox resource gauges of `/metrics/prometheus` from a real Docker
//! daemon: a sandbox running a busy process shows CPU seconds, memory and
//! pids, labelled by sandbox, provider and owner.
//!
//! Needs dockerd and the local image `stacyvm-test/busybox:latest`
//! (scripts/ci/docker.sh): with `CI` set it fails when they are missing;
//! locally it skips with a reason.

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use serde_json::json;
use stacyvm_core::GoDuration;

const IMAGE: &str = "stacyvm-test/busybox:latest";

/// Value of the first sample of `name` whose label set contains `labels`.
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_sandbox_resource_gauges() {
    if !common::docker_image_present(IMAGE) {
        return;
    }
    let s = TestServer::start_with(|c| {
        c.providers.docker.enabled = true;
        c.providers.default = "docker".into();
        c.providers.health_interval = GoDuration::from_secs(1);
        c.defaults.image = IMAGE.into();
    })
    .await;
    let (st, sb) = s
        .post(
            "/sandboxes",
            json!({"provider": "docker", "owner_id": "obs-test"}),
        )
        .await;
    assert_eq!(st, 201, "{sb}");
    let id = sb["id"].as_str().unwrap().to_owned();
    // Burn CPU in the background so cpu_seconds moves.
    s.sh(&id, "(while :; do :; done) >/dev/null 2>&1 &").await;

    let labels = format!("sandbox=\"{id}\",provider=\"docker\",owner=\"obs-test\"");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut cpu, mut mem, mut pids) = (None, None, None);
    let mut first_cpu = None;
    let mut last = String::new();
    while Instant::now() < deadline {
        let text = s
            .http
            .get(s.url("/metrics/prometheus"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        cpu = sample(&text, "stacyvm_sandbox_cpu_seconds_total", &labels);
        last = text.clone();
        mem = sample(&text, "stacyvm_sandbox_memory_bytes", &labels);
        pids = sample(&text, "stacyvm_sandbox_pids", &labels);
        if let Some(c) = cpu {
            let first = *first_cpu.get_or_insert(c);
            if c > first && mem.is_some() && pids.is_some() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (cpu, mem, pids) = (
        cpu.unwrap_or_else(|| {
            let lines: Vec<&str> = last
                .lines()
                .filter(|l| l.contains("sandbox") || l.contains("provider_healthy"))
                .collect();
            panic!("no cpu series for {labels}:\n{}", lines.join("\n"))
        }),
        mem.expect("memory series"),
        pids.expect("pids series"),
    );
    assert!(cpu > first_cpu.unwrap(), "cpu_seconds did not grow: {cpu}");
    assert!(mem > 0.0, "memory {mem}");
    assert!(
        pids >= 2.0,
        "pids {pids}: the shell loop and the sandbox's init"
    );

    let (st, _) = s.delete(&format!("/sandboxes/{id}")).await;
    assert!(st == 200 || st == 204, "destroy {st}");
    s.stop().await;
}
