//! `stacyvm bench`: how fast sandboxes really are on this machine.
//!
//! Runs a fixed set of scenarios against a server (`--server`) or one it
//! starts in-process on a temporary data dir (`--embedded`), per provider,
//! and prints min / p50 / p95 / p99 / max per scenario, or a stable JSON
//! document with `--json`. Every sandbox it creates is tracked, so Ctrl-C
//! destroys them before exiting. See docs/benchmarks.md.

mod api;
mod load;
mod raw;
mod raw_oci;
mod report;
mod scenarios;
mod select;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use stacyvm_server::app;
use stacyvm_server::config::Config;
use tokio::sync::oneshot;

use crate::client::Connection;
use crate::out::println_out;
use api::{BenchClient, Tracker};
use load::MemorySource;
use raw::RawTracker;
use report::{BenchResult, Machine, Report};
use scenarios::Counts;
use select::{Group, Selection};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Start a server in-process on 127.0.0.1 with a temporary data dir
    /// and the requested providers enabled (instead of using --server).
    #[arg(long)]
    pub embedded: bool,
    /// Providers to measure, comma-separated: native, docker, mock.
    #[arg(long, value_delimiter = ',', default_value = "docker")]
    pub provider: Vec<String>,
    /// Only these scenarios, comma-separated (default: all): spawn,
    /// spawn_first_exec, destroy, exec, exec_stream_first_byte,
    /// exec_stream_exit, file_write_1k, file_read_1k, file_write_8m,
    /// file_read_8m, mixed, density, mixed_scaling, spawn_burst,
    /// spawn_empty, spawn_held.
    #[arg(long, value_delimiter = ',')]
    pub scenario: Vec<String>,
    /// Image to spawn (default: the server's default image).
    #[arg(long)]
    pub image: Option<String>,
    /// Small counts for CI: 5 iterations, 1 warm-up, 2 s of mixed load.
    #[arg(long)]
    pub quick: bool,
    /// Print a JSON document instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Measured iterations per scenario [default: 30, quick: 5].
    #[arg(long)]
    pub count: Option<usize>,
    /// Discarded warm-up iterations per scenario [default: 3, quick: 1].
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Concurrent clients of the mixed load [default: 4, quick: 2].
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Seconds the mixed load runs [default: 10, quick: 2].
    #[arg(long)]
    pub duration: Option<f64>,
    /// Idle sandboxes held by the density scenario [default: 20, quick: 5].
    #[arg(long)]
    pub density: Option<usize>,
    /// Spawns sent at once by spawn_burst [default: 50, quick: 10].
    #[arg(long)]
    pub burst: Option<usize>,
    /// Idle sandboxes held while spawn_held measures [default: 200,
    /// quick: 20]; the admission target is taken with 1000.
    #[arg(long)]
    pub hold: Option<usize>,
    /// OCI runtime CLI the native comparison drives directly.
    #[arg(long, default_value = "crun")]
    pub runtime: String,
    /// Also run the same work without the orchestrator (docker: direct
    /// Engine API calls; native: the OCI runtime CLI; always: a bare fork+exec) and print the ratio.
    #[arg(long)]
    pub compare_raw: bool,
}

/// The effective plan after defaults.
#[derive(Debug, Clone)]
struct Plan {
    counts: Counts,
    concurrency: usize,
    duration: Duration,
    density: usize,
    burst: usize,
    hold: usize,
    select: Selection,
}

impl Plan {
    fn from(a: &BenchArgs) -> Result<Self> {
        let q = a.quick;
        Ok(Plan {
            counts: Counts {
                count: a.count.unwrap_or(if q { 5 } else { 30 }).max(1),
                warmup: a.warmup.unwrap_or(if q { 1 } else { 3 }),
            },
            concurrency: a.concurrency.unwrap_or(if q { 2 } else { 4 }).max(1),
            duration: Duration::from_secs_f64(a.duration.unwrap_or(if q { 2.0 } else { 10.0 })),
            density: a.density.unwrap_or(if q { 5 } else { 20 }).max(1),
            burst: a.burst.unwrap_or(if q { 10 } else { 50 }).max(1),
            hold: a.hold.unwrap_or(if q { 20 } else { 200 }),
            select: Selection::parse(&a.scenario)?,
        })
    }

    /// Progress steps per provider of the selected loops.
    fn steps(&self) -> u64 {
        let s = &self.select;
        let loops = [
            Group::Lifecycle,
            Group::Exec,
            Group::Stream,
            Group::Files1k,
            Group::Files8m,
        ]
        .iter()
        .filter(|g| s.runs(**g))
        .count();
        let mut steps = self.counts.total() * loops;
        if s.runs(Group::Mixed) {
            steps += 1;
        }
        if s.runs(Group::Density) {
            steps += self.density;
        }
        for (group, n) in [(Group::Scaling, 2), (Group::Burst, 1), (Group::Held, 1)] {
            if s.runs(group) {
                steps += n;
            }
        }
        steps as u64
    }
}

/// A server started in-process for `--embedded`.
struct Embedded {
    url: String,
    manager: stacyvm_server::manager::Manager,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

const PROVIDERS: [&str; 3] = ["native", "docker", "mock"];

async fn start_embedded(providers: &[String]) -> Result<Embedded> {
    let dir = tempfile::Builder::new()
        .prefix("stacyvm-bench-")
        .tempdir()
        .context("cannot create a temporary data dir")?;
    // The user's configuration (file and STACYVM_* variables) still
    // applies, so a bench measures their provider settings; the database,
    // port, limits and provider choice below are the bench's own.
    let (mut c, _) = Config::load(None, std::env::vars())
        .context("cannot load the configuration for the embedded server")?;
    c.database.path = dir.path().join("stacyvm.db");
    c.providers.mock.enabled = providers.iter().any(|p| p == "mock");
    c.providers.mock.base_dir = Some(dir.path().join("mock"));
    c.providers.docker.enabled = providers.iter().any(|p| p == "docker");
    // The native provider keeps its default data dir: its image cache is
    // shared with the installed server, so images need no fresh pull.
    c.providers.native.enabled = providers.iter().any(|p| p == "native");
    c.providers.default = providers[0].clone();
    c.server.port = 0;
    // The bench's client talks to this server without a key.
    c.auth.enabled = false;
    c.auth.api_key.clear();
    // Limits stay set (admission is measured as users run it) but high
    // enough for spawn_held's 1000 held sandboxes and a burst on top.
    c.defaults.max_sandboxes = c.defaults.max_sandboxes.max(10_000);
    c.defaults.max_sandboxes_per_owner = c.defaults.max_sandboxes_per_owner.max(10_000);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot listen on 127.0.0.1")?;
    let addr = listener.local_addr()?;
    let app = app::build(c, Vec::new())
        .await
        .context("cannot start the embedded server")?;
    let manager = app.manager.clone();
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        if let Err(e) = app
            .run(listener, async {
                let _ = rx.await;
            })
            .await
        {
            eprintln!("bench: embedded server: {e}");
        }
    });
    Ok(Embedded {
        url: format!("http://{addr}"),
        manager,
        stop,
        task,
        _dir: dir,
    })
}

fn progress(hidden: bool, len: u64) -> ProgressBar {
    let target = if hidden || !std::io::stderr().is_terminal() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let pb = ProgressBar::with_draw_target(Some(len), target);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
    {
        pb.set_style(style);
    }
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// Runs every scenario for every provider.
async fn run_all(
    conn: &Connection,
    a: &BenchArgs,
    plan: &Plan,
    mem: &MemorySource,
    tracker: &Tracker,
    raw_tracker: &RawTracker,
    pb: &ProgressBar,
) -> Result<Report> {
    let mut results: Vec<BenchResult> = Vec::new();
    let mut notes = Vec::new();
    for p in &a.provider {
        let c = BenchClient::new(conn, p, a.image.clone(), tracker.clone())?;
        // Fail fast with the server's own message if the provider is unusable.
        let probe = c.spawn().await.with_context(|| format!("provider {p}"))?;
        c.destroy(probe.id.as_str()).await?;
        let s = &plan.select;
        if s.runs(Group::Lifecycle) {
            results.extend(scenarios::lifecycle(&c, plan.counts, pb).await);
        }
        if [Group::Exec, Group::Stream, Group::Files1k, Group::Files8m]
            .iter()
            .any(|g| s.runs(*g))
        {
            results.extend(scenarios::in_sandbox(&c, plan.counts, s, pb).await?);
        }
        if s.runs(Group::Mixed) {
            results.push(load::mixed(&c, plan.concurrency, plan.duration, pb).await);
        }
        if s.runs(Group::Density) {
            results.push(load::density(&c, plan.density, mem, pb).await);
        }
        if s.runs(Group::Scaling) {
            let (row, note) =
                scenarios::mixed_scaling(&c, plan.concurrency, plan.duration, pb).await;
            results.push(row);
            notes.push(note);
        }
        if s.runs(Group::Burst) {
            let row = scenarios::spawn_burst(&c, plan.burst, pb).await;
            if a.compare_raw && p == "native" {
                match raw_oci::burst(&a.runtime, plan.burst, raw_tracker, pb).await {
                    Ok(raw) => {
                        let wall = |r: &BenchResult| r.extra["wall_ms"].as_f64().unwrap_or(0.0);
                        let (ours, theirs) = (wall(&row), wall(&raw));
                        if theirs > 0.0 {
                            notes.push(format!(
                                "native: burst of {} spawns {ours:.1} ms = {:.2}x {} ({theirs:.1} ms)",
                                plan.burst,
                                ours / theirs,
                                raw.provider
                            ));
                        }
                        results.push(raw);
                    }
                    Err(e) => notes.push(format!(
                        "native: the burst comparison against the OCI runtime CLI is not available: {e:#}"
                    )),
                }
            }
            results.push(row);
        }
        if s.runs(Group::Held) {
            let (rows, note) = scenarios::spawn_held(&c, plan.counts, plan.hold, pb).await;
            results.extend(rows);
            notes.push(note);
        }
        if a.compare_raw && s.compares_raw() {
            match p.as_str() {
                "docker" => {
                    let image = probe.image.as_str();
                    let mem_mb = u64::from(probe.memory_mb);
                    let vcpus = u64::from(probe.vcpus);
                    pb.inc_length(2 * plan.counts.total() as u64);
                    let raw =
                        raw::docker(image, mem_mb, vcpus, plan.counts, raw_tracker, pb).await?;
                    results.extend(raw);
                    notes.extend(raw::ratios(&mut results, "docker", "docker-raw"));
                }
                "native" => {
                    pb.inc_length(plan.counts.total() as u64);
                    let runtime = a.runtime.as_str();
                    match raw_oci::native(runtime, plan.counts, raw_tracker, pb).await {
                        Ok(raw) => {
                            results.extend(raw);
                            notes.extend(raw::ratios(&mut results, "native", &format!("{runtime}-raw")));
                        }
                        Err(e) => notes.push(format!(
                            "native: the comparison against the OCI runtime CLI is not available: {e:#}"
                        )),
                    }
                }
                _ => {}
            }
        }
    }
    if a.compare_raw && plan.select.keeps("exec") {
        pb.inc_length(plan.counts.total() as u64);
        results.push(raw::fork_floor(plan.counts, pb).await);
        for p in &a.provider {
            notes.extend(raw::ratios(&mut results, p, "fork"));
        }
    }
    // Loops measure their scenarios together; report only those asked for.
    results.retain(|r| plan.select.keeps(&r.scenario));
    Ok(Report {
        machine: Machine::detect(),
        date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        results,
        notes,
    })
}

pub async fn run(conn: &Connection, a: BenchArgs) -> Result<ExitCode> {
    for p in &a.provider {
        if !PROVIDERS.contains(&p.as_str()) {
            bail!("unknown provider {p:?} (use native, docker or mock)");
        }
    }
    if a.provider.is_empty() {
        bail!("--provider needs at least one provider");
    }
    let plan = Plan::from(&a)?;
    let embedded = if a.embedded {
        Some(start_embedded(&a.provider).await?)
    } else {
        None
    };
    let mut conn = conn.clone();
    let mem = match &embedded {
        Some(e) => {
            conn.server = e.url.clone();
            MemorySource::Embedded(e.manager.clone())
        }
        None => MemorySource::Remote,
    };
    let tracker = Tracker::default();
    let raw_tracker = RawTracker::default();
    let pb = progress(a.json, plan.steps() * a.provider.len() as u64);
    let outcome = tokio::select! {
        r = run_all(&conn, &a, &plan, &mem, &tracker, &raw_tracker, &pb) => Some(r),
        _ = tokio::signal::ctrl_c() => None,
    };
    pb.finish_and_clear();
    let leftovers = cleanup(&conn, &tracker, &raw_tracker).await;
    if let Some(e) = embedded {
        let _ = e.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(30), e.task).await;
    }
    let Some(report) = outcome else {
        eprintln!(
            "error: interrupted; destroyed {leftovers} sandbox(es) the benchmark had created"
        );
        // The shell convention for death by SIGINT.
        return Ok(ExitCode::from(130));
    };
    let report = report?;
    if a.json {
        println_out(&serde_json::to_string_pretty(&report)?);
    } else {
        println_out(report::table(&report).trim_end());
    }
    Ok(ExitCode::SUCCESS)
}

/// Destroys whatever the run created and did not destroy (interruption or
/// a failed scenario); returns how many were removed.
async fn cleanup(conn: &Connection, tracker: &Tracker, raw: &RawTracker) -> usize {
    let ids = tracker.ids();
    let mut n = raw.cleanup().await;
    if ids.is_empty() {
        return n;
    }
    let Ok(c) = BenchClient::new(conn, "", None, tracker.clone()) else {
        return n;
    };
    for id in ids {
        match c.destroy(&id).await {
            Ok(()) => n += 1,
            Err(e) => eprintln!("bench: cleanup: {e:#}"),
        }
    }
    n
}
