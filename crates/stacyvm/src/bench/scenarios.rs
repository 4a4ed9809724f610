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
