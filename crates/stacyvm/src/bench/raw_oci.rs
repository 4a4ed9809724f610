//! `--compare-raw` for the native provider: the OCI runtime CLI (`crun`)
//! driven directly on a prepared bundle — create+start, exec `true`,
//! delete -f — with its own `--root`, so nothing mixes with the provider.
//!
//! The bundle is the runtime's default spec (`crun spec`) over a rootfs
//! holding only the host's static busybox: the runtime's own cost, without
//! image layers, overlay mounts or the in-sandbox agent. On hybrid cgroup
//! hosts crun refuses to run while the cgroup2 mount is visible; like the
//! provider, the create runs in a private mount namespace without it
//! (`unshare -m` + `umount`), which adds a few ms to `spawn`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::ProgressBar;
use serde_json::Value;

use super::raw::RawTracker;
use super::report::{BenchResult, Samples};
use super::scenarios::{Counts, fail};

/// The static busybox the rootfs is made of.
const BUSYBOX: &str = "/bin/busybox";

/// The cgroup2 mount a hybrid host has beside its v1 hierarchies.
fn hybrid_cgroup2_mount() -> Option<String> {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        return None;
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        right
            .starts_with("cgroup2 ")
            .then(|| left.split(' ').nth(4).map(str::to_string))?
    })
}

/// A prepared bundle and runtime root in a temporary directory.
#[derive(Debug)]
pub struct Bundle {
    dir: tempfile::TempDir,
    runtime: String,
    hide: Option<String>,
}

impl Bundle {
    pub fn prepare(runtime: &str) -> Result<Self> {
        if !Path::new(BUSYBOX).exists() {
            bail!("{BUSYBOX} is missing (apt-get install busybox-static)");
        }
        let dir = tempfile::Builder::new()
            .prefix("stacyvm-bench-oci-")
            .tempdir()
            .context("cannot create the bundle dir")?;
        let bundle = dir.path().join("bundle");
        let bin = bundle.join("rootfs/bin");
        std::fs::create_dir_all(&bin).context("cannot create the rootfs")?;
        std::fs::copy(BUSYBOX, bin.join("busybox")).context("cannot copy busybox")?;
        for applet in ["sh", "true", "sleep"] {
            std::os::unix::fs::symlink("busybox", bin.join(applet))
                .with_context(|| format!("cannot link {applet}"))?;
        }
        let out = Command::new(runtime)
            .arg("spec")
            .current_dir(&bundle)
            .output()
            .with_context(|| format!("cannot run {runtime} spec"))?;
        if !out.status.success() {
            bail!(
                "{runtime} spec failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let path = bundle.join("config.json");
        let mut spec: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        spec["process"]["args"] = serde_json::json!(["/bin/sleep", "3600"]);
        spec["process"]["terminal"] = Value::Bool(false);
        std::fs::write(&path, serde_json::to_vec(&spec)?)?;
        Ok(Bundle {
            dir,
            runtime: runtime.to_string(),
            hide: hybrid_cgroup2_mount(),
        })
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.runtime);
        cmd.arg("--root").arg(self.root()).args(args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }

    /// `create` (in a mount namespace without the hybrid cgroup2 mount if
    /// needed) then `start`.
    fn spawn(&self, name: &str) -> Result<()> {
        let bundle = self.dir.path().join("bundle");
        let mut create = match &self.hide {
            None => self.command(&["create", "--bundle", &bundle.to_string_lossy(), name]),
            Some(mount) => {
                let mut c = Command::new("unshare");
                c.args(["--mount", "--propagation", "private", "sh", "-c"])
                    .arg(r#"umount "$1" && shift && exec "$@""#)
                    .arg("sh")
                    .arg(mount)
                    .arg(&self.runtime)
                    .arg("--root")
                    .arg(self.root())
                    .args(["create", "--bundle"])
                    .arg(&bundle)
                    .arg(name)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped());
                c
            }
        };
        // The container's init inherits create's stdio: a pipe would never
        // reach EOF, so errors go to a file instead.
        let log = self.dir.path().join("create.log");
        create.stderr(std::fs::File::create(&log).context("cannot create create.log")?);
        let status = create
            .status()
            .with_context(|| format!("oci runtime create {name}: cannot run"))?;
        if !status.success() {
            bail!(
                "oci runtime create {name}: {} ({status})",
                std::fs::read_to_string(&log).unwrap_or_default().trim()
            );
        }
        run(&mut self.command(&["start", name]), "start", name)
    }

    fn exec_true(&self, name: &str) -> Result<()> {
        run(
            &mut self.command(&["exec", name, "/bin/true"]),
            "exec",
            name,
        )
    }

    pub fn delete(&self, name: &str) -> Result<()> {
        run(&mut self.command(&["delete", "-f", name]), "delete", name)
    }
}

fn run(cmd: &mut Command, what: &str, name: &str) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("oci runtime {what} {name}: cannot run"))?;
    if !out.status.success() {
        bail!(
            "oci runtime {what} {name}: {} ({})",
            String::from_utf8_lossy(&out.stderr).trim(),
            out.status
        );
    }
    Ok(())
}

/// Times `f` on a blocking thread.
async fn timed<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<(Duration, T)> {
    tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        f().map(|v| (t.elapsed(), v))
    })
    .await
    .context("runtime task failed")?
}

/// Spawn, exec round trip and destroy with the runtime CLI directly.
pub async fn native(
    runtime: &str,
    n: Counts,
    tracker: &RawTracker,
    pb: &ProgressBar,
) -> Result<Vec<BenchResult>> {
    let b = std::sync::Arc::new(Bundle::prepare(runtime)?);
    let label = format!("{runtime}-raw");
    let (mut spawn, mut exec, mut destroy) =
        (Samples::default(), Samples::default(), Samples::default());
    let pid = std::process::id();
    for i in 0..n.total() {
        pb.set_message(format!("{label}: create+start / exec / delete"));
        let measured = i >= n.warmup;
        let name = format!("stacyvm-bench-raw-{pid}-{i}");
        tracker.add_oci(b.clone(), &name);
        let (b1, n1) = (b.clone(), name.clone());
        match timed(move || b1.spawn(&n1)).await {
            Ok((d, ())) if measured => spawn.push(d),
            Ok(_) => {}
            Err(e) => fail(pb, measured, &mut spawn, &e),
        }
        let (b1, n1) = (b.clone(), name.clone());
        match timed(move || b1.exec_true(&n1)).await {
            Ok((d, ())) if measured => exec.push(d),
            Ok(_) => {}
            Err(e) => fail(pb, measured, &mut exec, &e),
        }
        let (b1, n1) = (b.clone(), name.clone());
        match timed(move || b1.delete(&n1)).await {
            Ok((d, ())) => {
                tracker.remove_oci(&name);
                if measured {
                    destroy.push(d);
                }
            }
            Err(e) => fail(pb, measured, &mut destroy, &e),
        }
        pb.inc(1);
    }
    Ok(vec![
        BenchResult::new(&label, "spawn", &spawn),
        BenchResult::new(&label, "exec", &exec),
        BenchResult::new(&label, "destroy", &destroy),
    ])
}

/// `spawn_burst` with the runtime CLI: `n` create+start at once (each on
/// its own blocking thread), then delete; `wall_ms` as for the provider.
pub async fn burst(
    runtime: &str,
    n: usize,
    tracker: &RawTracker,
    pb: &ProgressBar,
) -> Result<BenchResult> {
    let b = std::sync::Arc::new(Bundle::prepare(runtime)?);
    let label = format!("{runtime}-raw");
    pb.set_message(format!("{label}: burst of {n} create+start"));
    let pid = std::process::id();
    let names: Vec<String> = (0..n)
        .map(|i| format!("stacyvm-bench-burst-{pid}-{i}"))
        .collect();
    for name in &names {
        tracker.add_oci(b.clone(), name);
    }
    let start = Instant::now();
    let creates = names.iter().map(|name| {
        let (b, name) = (b.clone(), name.clone());
        timed(move || b.spawn(&name))
    });
    let outcomes = futures::future::join_all(creates).await;
    let wall = start.elapsed();
    let mut s = Samples::default();
    for r in outcomes {
        match r {
            Ok((d, ())) => s.push(d),
            Err(e) => fail(pb, true, &mut s, &e),
        }
    }
    let deletes = names.iter().map(|name| {
        let (b, name) = (b.clone(), name.clone());
        timed(move || b.delete(&name))
    });
    for (name, r) in names.iter().zip(futures::future::join_all(deletes).await) {
        if r.is_ok() {
            tracker.remove_oci(name);
        }
    }
    pb.inc(1);
    Ok(BenchResult::new(&label, "spawn_burst", &s)
        .with("sandboxes", n as u64)
        .with("wall_ms", (wall.as_secs_f64() * 100_000.0).round() / 100.0))
}
