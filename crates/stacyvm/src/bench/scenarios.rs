//! The single-client scenarios: spawn, spawn → first exec, destroy, exec
//! round trip, streamed exec and file transfer.

use std::time::Instant;

use anyhow::Result;
use indicatif::ProgressBar;

use super::api::BenchClient;
use super::report::{BenchResult, Samples};
use super::select::{Group, Selection};

/// How many measured and discarded iterations each scenario runs.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    pub count: usize,
    pub warmup: usize,
}

impl Counts {
    pub fn total(&self) -> usize {
        self.count + self.warmup
    }
}

/// The command of the exec round trip (it exists in every image).
const TRUE: [&str; 1] = ["true"];
/// A command that writes one line, for the streamed exec.
const ECHO: [&str; 2] = ["echo", "stacyvm-bench"];

/// Spawn, spawn → first `true`, and destroy, timed in the same cycle:
/// each iteration creates a sandbox, runs `true` in it and destroys it.
pub async fn lifecycle(c: &BenchClient, n: Counts, pb: &ProgressBar) -> Vec<BenchResult> {
    let (mut spawn, mut first, mut destroy) =
        (Samples::default(), Samples::default(), Samples::default());
    for i in 0..n.total() {
        let measured = i >= n.warmup;
        pb.set_message(format!("{}: spawn / first exec / destroy", c.provider));
        let t = Instant::now();
        let id = match c.spawn().await {
            Ok(sb) => sb.id.to_string(),
            Err(e) => {
                fail(pb, measured, &mut spawn, &e);
                pb.inc(1);
                continue;
            }
        };
        let spawned = t.elapsed();
        let exec = c.exec(&id, &TRUE).await;
        let first_exec = t.elapsed();
        let t = Instant::now();
        let destroyed = c.destroy(&id).await;
        let destroy_time = t.elapsed();
        if measured {
            spawn.push(spawned);
            match exec {
                Ok(()) => first.push(first_exec),
                Err(e) => fail(pb, true, &mut first, &e),
            }
            match destroyed {
                Ok(()) => destroy.push(destroy_time),
                Err(e) => fail(pb, true, &mut destroy, &e),
            }
        }
        pb.inc(1);
    }
    vec![
        BenchResult::new(&c.provider, "spawn", &spawn),
        BenchResult::new(&c.provider, "spawn_first_exec", &first),
        BenchResult::new(&c.provider, "destroy", &destroy),
    ]
}

/// Exec round trips, streamed execs and file transfers in one sandbox
/// (those of them `select` runs).
pub async fn in_sandbox(
    c: &BenchClient,
    n: Counts,
    select: &Selection,
    pb: &ProgressBar,
) -> Result<Vec<BenchResult>> {
    let sb = c.spawn().await?;
    let id = sb.id.to_string();
    let out = in_sandbox_with(c, &id, n, select, pb).await;
    let destroyed = c.destroy(&id).await;
    destroyed?;
    Ok(out)
}

async fn in_sandbox_with(
    c: &BenchClient,
    id: &str,
    n: Counts,
    select: &Selection,
    pb: &ProgressBar,
) -> Vec<BenchResult> {
    let mut results = Vec::new();
    if select.runs(Group::Exec) {
        results.push(exec_round_trips(c, id, n, pb).await);
    }
    if select.runs(Group::Stream) {
        results.extend(streamed_execs(c, id, n, pb).await);
    }
    let sizes = [
        ("1k", 1024usize, Group::Files1k),
        ("8m", 8 * 1024 * 1024, Group::Files8m),
    ];
    let sizes: Vec<_> = sizes.into_iter().filter(|s| select.runs(s.2)).collect();
    if !sizes.is_empty() {
        results.extend(file_transfers(c, id, n, &sizes, pb).await);
    }
    results
}

async fn exec_round_trips(c: &BenchClient, id: &str, n: Counts, pb: &ProgressBar) -> BenchResult {
    pb.set_message(format!("{}: exec round trip", c.provider));
    let mut exec = Samples::default();
    for i in 0..n.total() {
        let t = Instant::now();
        let r = c.exec(id, &TRUE).await;
        record(pb, i >= n.warmup, &mut exec, t, r);
        pb.inc(1);
    }
    BenchResult::new(&c.provider, "exec", &exec)
}

async fn streamed_execs(
    c: &BenchClient,
    id: &str,
    n: Counts,
    pb: &ProgressBar,
) -> Vec<BenchResult> {
    pb.set_message(format!("{}: streamed exec", c.provider));
    let (mut ttfb, mut exit) = (Samples::default(), Samples::default());
    for i in 0..n.total() {
        let measured = i >= n.warmup;
        match c.exec_stream(id, &ECHO).await {
            Ok(t) if measured => {
                ttfb.push(t.first_byte);
                exit.push(t.exit);
            }
            Ok(_) => {}
            Err(e) => {
                fail(pb, measured, &mut ttfb, &e);
                if measured {
                    exit.error();
                }
            }
        }
        pb.inc(1);
    }
    vec![
        BenchResult::new(&c.provider, "exec_stream_first_byte", &ttfb),
        BenchResult::new(&c.provider, "exec_stream_exit", &exit),
    ]
}

/// Writes then reads a file of each size, `n` times.
async fn file_transfers(
    c: &BenchClient,
    id: &str,
    n: Counts,
    sizes: &[(&str, usize, Group)],
    pb: &ProgressBar,
) -> Vec<BenchResult> {
    let mut results = Vec::new();
    for &(label, size, _) in sizes {
        pb.set_message(format!("{}: files {label}", c.provider));
        let data = bytes::Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        let path = format!("/tmp/stacyvm-bench-{label}");
        let (mut write, mut read) = (Samples::default(), Samples::default());
        for i in 0..n.total() {
            let measured = i >= n.warmup;
            let t = Instant::now();
            let r = c.put_file(id, &path, data.clone()).await;
            record(pb, measured, &mut write, t, r);
            let t = Instant::now();
            let r = c.get_file(id, &path, size).await;
            record(pb, measured, &mut read, t, r);
            pb.inc(1);
        }
        let bytes = size as u64;
        results.push(
            BenchResult::new(&c.provider, &format!("file_write_{label}"), &write)
                .with("size_bytes", bytes),
        );
        results.push(
            BenchResult::new(&c.provider, &format!("file_read_{label}"), &read)
                .with("size_bytes", bytes),
        );
    }
    results
}

fn record(pb: &ProgressBar, measured: bool, s: &mut Samples, t: Instant, r: Result<()>) {
    let elapsed = t.elapsed();
    match r {
        Ok(()) if measured => s.push(elapsed),
        Ok(()) => {}
        Err(e) => fail(pb, measured, s, &e),
    }
}

/// Counts a failure (when measured) and shows it without breaking the bar.
pub fn fail(pb: &ProgressBar, measured: bool, s: &mut Samples, e: &anyhow::Error) {
    if measured {
        s.error();
    }
    pb.suspend(|| eprintln!("bench: {e:#}"));
}

/// `mixed_scaling`: the mixed cycle with one client, then with `clients`;
/// the row holds the `clients`-run latencies and both rates.
pub async fn mixed_scaling(
    c: &BenchClient,
    clients: usize,
    duration: std::time::Duration,
    pb: &ProgressBar,
) -> (BenchResult, String) {
    let one = super::load::mixed(c, 1, duration, pb).await;
    let many = super::load::mixed(c, clients, duration, pb).await;
    let rate = |r: &BenchResult| r.extra["cycles_per_sec"].as_f64().unwrap_or(0.0);
    let (r1, rn) = (rate(&one), rate(&many));
    let ratio = if r1 > 0.0 { rn / r1 } else { 0.0 };
    let ratio = (ratio * 100.0).round() / 100.0;
    let mut row = many
        .with("cycles_per_sec_1_client", r1)
        .with("scaling", ratio);
    row.scenario = "mixed_scaling".to_string();
    let note = format!(
        "{}: mixed cycles/s with {clients} clients {rn:.2} = {ratio:.2}x 1 client ({r1:.2})",
        c.provider
    );
    (row, note)
}

/// `spawn_burst`: `n` spawns sent at once; `wall_ms` is the time until the
/// last one answered (the latencies are each spawn's own). They are
/// destroyed afterwards, outside the timing.
pub async fn spawn_burst(c: &BenchClient, n: usize, pb: &ProgressBar) -> BenchResult {
    pb.set_message(format!("{}: burst of {n} spawns", c.provider));
    let start = Instant::now();
    let spawns = (0..n).map(|_| async move {
        let t = Instant::now();
        (c.spawn().await, t.elapsed())
    });
    let outcomes = futures::future::join_all(spawns).await;
    let wall = start.elapsed();
    let mut s = Samples::default();
    let mut ids = Vec::new();
    for (r, d) in outcomes {
        match r {
            Ok(sb) => {
                s.push(d);
                ids.push(sb.id.to_string());
            }
            Err(e) => fail(pb, true, &mut s, &e),
        }
    }
    futures::future::join_all(ids.iter().map(|id| c.destroy(id))).await;
    pb.inc(1);
    BenchResult::new(&c.provider, "spawn_burst", &s)
        .with("sandboxes", n as u64)
        .with("wall_ms", (wall.as_secs_f64() * 100_000.0).round() / 100.0)
}

/// `spawn_empty` and `spawn_held`: spawn latency (each spawn destroyed
/// again) with nothing else, then with `held` idle sandboxes held.
pub async fn spawn_held(
    c: &BenchClient,
    n: Counts,
    held: usize,
    pb: &ProgressBar,
) -> (Vec<BenchResult>, String) {
    async fn spawns(c: &BenchClient, n: Counts, pb: &ProgressBar) -> Samples {
        let mut s = Samples::default();
        for i in 0..n.total() {
            let measured = i >= n.warmup;
            let t = Instant::now();
            match c.spawn().await {
                Ok(sb) => {
                    if measured {
                        s.push(t.elapsed());
                    }
                    if let Err(e) = c.destroy(sb.id.as_str()).await {
                        fail(pb, false, &mut Samples::default(), &e);
                    }
                }
                Err(e) => fail(pb, measured, &mut s, &e),
            }
        }
        s
    }
    pb.set_message(format!("{}: spawn with nothing held", c.provider));
    let empty = BenchResult::new(&c.provider, "spawn_empty", &spawns(c, n, pb).await);
    pb.set_message(format!("{}: holding {held} sandboxes", c.provider));
    let mut ids = Vec::new();
    let mut filling = Samples::default();
    // Filled by a few clients at once: the point is the number held, not
    // how fast they came.
    for chunk in (0..held).collect::<Vec<_>>().chunks(8) {
        let made = futures::future::join_all(chunk.iter().map(|_| c.spawn())).await;
        for r in made {
            match r {
                Ok(sb) => ids.push(sb.id.to_string()),
                Err(e) => fail(pb, true, &mut filling, &e),
            }
        }
    }
    pb.set_message(format!("{}: spawn with {} held", c.provider, ids.len()));
    let full = BenchResult::new(&c.provider, "spawn_held", &spawns(c, n, pb).await)
        .with("held", ids.len() as u64)
        .with("hold_errors", filling.errors);
    for chunk in ids.chunks(8) {
        futures::future::join_all(chunk.iter().map(|id| c.destroy(id))).await;
    }
    pb.inc(1);
    let ratio = if empty.p50_ms > 0.0 {
        full.p50_ms / empty.p50_ms
    } else {
        0.0
    };
    let note = format!(
        "{}: spawn p50 with {} held {:.2} ms = {ratio:.2}x empty ({:.2} ms)",
        c.provider,
        ids.len(),
        full.p50_ms,
        empty.p50_ms
    );
    (vec![empty, full], note)
}
