//! Cost of observability on the hot path and on scrape:
//! - `record/*`: one `OperationMetrics::record`, alone and with threads
//!   recording the same and other pairs concurrently;
//! - `render/*`: Prometheus text for a server with N sandboxes (target:
//!   1,000 sandboxes in at most 20 ms).
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use stacyvm_core::{Capability, ProviderHealth, Sandbox, SandboxId, SandboxState};
use stacyvm_providers::ResourceUsage;
use stacyvm_server::obs::prometheus::{ScrapeSnapshot, render};
use stacyvm_server::obs::{
    EventStats, Operation, OperationMetrics, ProcessStats, ResourceCache, SandboxCount,
    SandboxResources,
};

fn record_single(c: &mut Criterion) {
    let m = OperationMetrics::new();
    for p in ["mock", "native", "docker"] {
        m.record(Operation::Exec, p, Duration::from_millis(1), Ok(()));
    }
    let mut g = c.benchmark_group("record");
    g.bench_function("success", |b| {
        b.iter(|| {
            m.record(
                black_box(Operation::Exec),
                black_box("docker"),
                black_box(Duration::from_micros(850)),
                Ok(()),
            )
        })
    });
    g.bench_function("failure", |b| {
        b.iter(|| {
            m.record(
                black_box(Operation::FileRead),
                black_box("docker"),
                black_box(Duration::from_micros(850)),
                Err(black_box("no such file: /tmp/x")),
            )
        })
    });
    g.finish();
}

/// Measures the recording thread while `others` threads hammer the recorder,
/// on the same (op, provider) pair or on different pairs.
fn record_contended(c: &mut Criterion) {
    let mut g = c.benchmark_group("record_contended");
    for (label, same_pair) in [("same_pair", true), ("other_pairs", false)] {
        let m = Arc::new(OperationMetrics::new());
        let stop = Arc::new(AtomicBool::new(false));
        let others: Vec<_> = (0..3)
            .map(|t| {
                let m = Arc::clone(&m);
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let op = if same_pair {
                        Operation::Exec
                    } else {
                        Operation::ALL[t + 2]
                    };
                    while !stop.load(Ordering::Relaxed) {
                        m.record(op, "docker", Duration::from_micros(500), Ok(()));
                    }
                })
            })
            .collect();
        g.bench_function(label, |b| {
            b.iter(|| {
                m.record(
                    Operation::Exec,
                    black_box("docker"),
                    Duration::from_micros(850),
                    Ok(()),
                )
            })
        });
        stop.store(true, Ordering::Relaxed);
        for t in others {
            t.join().expect("recorder thread");
        }
    }
    g.finish();
}

fn snapshot(sandboxes: usize) -> ScrapeSnapshot {
    let metrics = OperationMetrics::new();
    let providers = ["docker", "native", "mock"];
    for p in providers {
        for op in Operation::ALL {
            for i in 0..100u64 {
                metrics.record(op, p, Duration::from_micros(100 + i * 37), Ok(()));
            }
        }
    }
    ScrapeSnapshot {
        version: "0.1.0".to_owned(),
        uptime: Duration::from_secs(3600),
        process: Some(ProcessStats::collect()),
        sandboxes: SandboxState::ALL
            .iter()
            .flat_map(|s| {
                providers.iter().map(move |p| SandboxCount {
                    state: *s,
                    provider: (*p).to_owned(),
                    count: 10,
                })
            })
            .collect(),
        providers: providers
            .iter()
            .map(|p| ProviderHealth {
                name: (*p).to_owned(),
                healthy: true,
                default: *p == "docker",
                latency_ms: 2,
                last_checked: Utc::now(),
                error: None,
                capabilities: vec![Capability::Spawn],
                runtime_count: Some(sandboxes as u64 / 3),
                unavailable: Default::default(),
            })
            .collect(),
        events: EventStats {
            subscribers: 3,
            history_size: 1000,
            events_total: 1_000_000,
        },
        operations: metrics.snapshot(),
        sandbox_resources: (0..sandboxes)
            .map(|i| SandboxResources {
                sandbox: format!("sb-{i:012x}"),
                provider: providers[i % 3].to_owned(),
                owner: format!("owner-{}", i % 50),
                cpu_seconds: Some(i as f64 * 1.5),
                memory_bytes: Some(50_000_000 + i as u64),
                pids: Some(4),
            })
            .collect(),
        destroys: Default::default(),
    }
}

fn render_scrape(c: &mut Criterion) {
    let mut g = c.benchmark_group("render");
    for n in [0usize, 1_000, 5_000] {
        let snap = snapshot(n);
        let bytes = render(snap.clone()).expect("render").len();
        eprintln!("render/{n}_sandboxes: {bytes} bytes");
        g.bench_function(format!("{n}_sandboxes"), |b| {
            b.iter_batched(
                || snap.clone(),
                |s| render(s).expect("render"),
                BatchSize::LargeInput,
            )
        });
    }
    g.bench_function("1000_sandboxes_including_snapshot_clone", |b| {
        let snap = snapshot(1_000);
        b.iter(|| render(snap.clone()).expect("render"))
    });
    g.finish();

    // The whole scrape path minus HTTP and the manager's sandbox list: read
    // the resource cache and the recorder, read /proc, render.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let cache = ResourceCache::new();
    let template = snapshot(1_000);
    let sandboxes: Vec<Sandbox> = template
        .sandbox_resources
        .iter()
        .map(|r| sandbox_record(&r.sandbox, &r.provider))
        .collect();
    rt.block_on(cache.refresh(
        sandboxes,
        |_| async {
            Ok::<_, String>(Some(ResourceUsage {
                cpu_seconds: 12.5,
                memory_bytes: 50_000_000,
                pids: 4,
            }))
        },
        16,
        Duration::from_secs(1),
    ));
    let metrics = OperationMetrics::new();
    for p in ["docker", "native", "mock"] {
        for op in Operation::ALL {
            metrics.record(op, p, Duration::from_micros(700), Ok(()));
        }
    }
    g_scrape(c, &template, &cache, &metrics);

    // Gathering process figures is part of every scrape too.
    c.bench_function("process_stats_collect", |b| b.iter(ProcessStats::collect));
    let start = Instant::now();
    black_box(snapshot(1_000));
    eprintln!(
        "building a 1000-sandbox snapshot (bench setup) took {:?}",
        start.elapsed()
    );
}

fn sandbox_record(id: &str, provider: &str) -> Sandbox {
    let now = Utc::now();
    Sandbox {
        id: SandboxId::parse(id).expect("valid id"),
        state: SandboxState::Running,
        provider: provider.to_owned(),
        image: "alpine".to_owned(),
        memory_mb: 64,
        vcpus: 1,
        owner_id: None,
        created_at: now,
        expires_at: now,
        metadata: BTreeMap::new(),
        preview_domain: None,
        template: None,
        error: None,
        node_id: None,
    }
}

fn g_scrape(
    c: &mut Criterion,
    template: &ScrapeSnapshot,
    cache: &ResourceCache,
    metrics: &OperationMetrics,
) {
    c.bench_function("scrape_path/1000_sandboxes", |b| {
        b.iter(|| {
            let snap = ScrapeSnapshot {
                version: template.version.clone(),
                uptime: template.uptime,
                process: Some(ProcessStats::collect()),
                sandboxes: template.sandboxes.clone(),
                providers: template.providers.clone(),
                events: template.events,
                operations: metrics.snapshot(),
                sandbox_resources: cache.snapshot(),
                destroys: Default::default(),
            };
            render(snap).expect("render")
        })
    });
}

criterion_group!(benches, record_single, record_contended, render_scrape);
criterion_main!(benches);
