//! The multi-sandbox scenarios: a mixed load of concurrent clients, and
//! density (memory held per idle sandbox).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use indicatif::ProgressBar;
use tokio::sync::Mutex;

use super::api::BenchClient;
use super::report::{BenchResult, Samples};
use super::scenarios::fail;

/// Where memory figures come from.
#[derive(Debug, Clone)]
pub enum MemorySource {
    /// The server runs in this process: read `/proc/self/status`, and ask
    /// providers for their sandboxes' cgroup usage directly.
    Embedded(stacyvm_server::manager::Manager),
    /// A remote server: `/metrics` and `/metrics/prometheus`.
    Remote,
}

/// One full cycle: spawn, `true`, write and read 1 KiB, destroy.
async fn cycle(c: &BenchClient, data: &bytes::Bytes) -> Result<()> {
    let sb = c.spawn().await?;
    let id = sb.id.to_string();
    let work = async {
        c.exec(&id, &["true"]).await?;
        c.put_file(&id, "/tmp/stacyvm-bench-mixed", data.clone())
            .await?;
        c.get_file(&id, "/tmp/stacyvm-bench-mixed", data.len())
            .await
    }
    .await;
    let destroyed = c.destroy(&id).await;
    work.and(destroyed)
}

/// `clients` concurrent clients doing full cycles for `duration`.
pub async fn mixed(
    c: &BenchClient,
    clients: usize,
    duration: Duration,
    pb: &ProgressBar,
) -> BenchResult {
    pb.set_message(format!(
        "{}: mixed load, {clients} clients for {}s",
        c.provider,
        duration.as_secs_f64()
    ));
    let samples = Arc::new(Mutex::new(Samples::default()));
    let data = bytes::Bytes::from(vec![b'x'; 1024]);
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients.max(1) {
        let (c, samples, data, pb) = (c.clone(), samples.clone(), data.clone(), pb.clone());
        tasks.spawn(async move {
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = cycle(&c, &data).await;
                let mut s = samples.lock().await;
                match r {
                    Ok(()) => s.push(t.elapsed()),
                    Err(e) => fail(&pb, true, &mut s, &e),
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed().as_secs_f64();
    pb.inc(1);
    let s = samples.lock().await;
    let rate = s.len() as f64 / elapsed;
    BenchResult::new(&c.provider, "mixed", &s)
        .with("clients", clients as u64)
        .with("duration_s", (elapsed * 100.0).round() / 100.0)
        .with("cycles_per_sec", (rate * 100.0).round() / 100.0)
}

/// Resident memory of this process (`VmRSS`), in bytes.
fn self_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}

async fn server_rss(c: &BenchClient, src: &MemorySource) -> Option<u64> {
    match src {
        MemorySource::Embedded(_) => self_rss(),
        MemorySource::Remote => c.server_rss().await.ok().flatten(),
    }
}

/// Memory the provider accounts to the sandboxes (cgroups), summed.
async fn sandbox_memory(c: &BenchClient, src: &MemorySource, ids: &[String]) -> Option<u64> {
    match src {
        MemorySource::Embedded(m) => {
            let p = m.provider(&c.provider).ok()?;
            let mut total = None;
            for id in ids {
                let id = stacyvm_core::SandboxId::parse(id)?;
                if let Ok(Some(u)) = p.resource_usage(&id).await {
                    *total.get_or_insert(0) += u.memory_bytes;
                }
            }
            total
        }
        MemorySource::Remote => c.sandbox_memory(ids).await.ok().flatten(),
    }
}

/// Spawns `n` sandboxes, keeps them idle, measures memory, destroys them.
/// The latency figures are the spawns while the host fills up.
pub async fn density(
    c: &BenchClient,
    n: usize,
    src: &MemorySource,
    pb: &ProgressBar,
) -> BenchResult {
    pb.set_message(format!("{}: density, holding {n} sandboxes", c.provider));
    let before = server_rss(c, src).await;
    let mut spawns = Samples::default();
    let mut held = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        match c.spawn().await {
            Ok(sb) => {
                spawns.push(t.elapsed());
                held.push(sb.id.to_string());
            }
            Err(e) => fail(pb, true, &mut spawns, &e),
        }
        pb.inc(1);
    }
    // Let the sandboxes settle into idleness before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server_rss(c, src).await;
    let cgroup = sandbox_memory(c, src, &held).await;
    for id in &held {
        if let Err(e) = c.destroy(id).await {
            fail(pb, true, &mut spawns, &e);
        }
    }
    let mut r = BenchResult::new(&c.provider, "density", &spawns).with("held", held.len() as u64);
    if let Some(a) = after {
        r = r.with("server_rss_bytes", a);
    }
    if let (Some(b), Some(a)) = (before, after)
        && !held.is_empty()
    {
        let delta = a.saturating_sub(b) / held.len() as u64;
        r = r.with("server_rss_per_sandbox_bytes", delta);
    }
    if let Some(m) = cgroup
        && !held.is_empty()
    {
        r = r.with("cgroup_per_sandbox_bytes", m / held.len() as u64);
    }
    r
}
