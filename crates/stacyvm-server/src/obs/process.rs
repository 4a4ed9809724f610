//! Figures about the server process itself, read from `/proc/self` (no
//! `unsafe`, no libc), plus the tokio runtime's own counters.
//!
//! Every figure is optional: off Linux, or when a `/proc` file cannot be
//! read, it is `None` and left out of JSON and Prometheus output rather than
//! reported as a misleading zero.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Clock ticks per second of the times in `/proc/<pid>/stat`. The kernel
/// fixes this `USER_HZ` at 100 for user space on every architecture we
/// target (x86_64, aarch64, riscv64), whatever its internal `HZ`.
const USER_HZ: f64 = 100.0;

/// Process figures at one instant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProcessStats {
    /// Process id.
    pub pid: u32,
    /// Seconds since the process started (from the kernel's start time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_seconds: Option<f64>,
    /// Unix time the process started, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time_unix: Option<f64>,
    /// OS threads of the process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resident_memory_bytes: Option<u64>,
    /// Highest resident memory so far (`VmHWM`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resident_memory_peak_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_fds: Option<u64>,
    /// Soft limit on open file descriptors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fds: Option<u64>,
    /// User plus system CPU time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_user_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_system_seconds: Option<f64>,
    /// Present when collected from inside a tokio runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeStats>,
}

/// Figures of the tokio runtime the caller runs on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RuntimeStats {
    /// Worker threads of the runtime.
    pub workers: u64,
    /// Tasks spawned and not yet finished.
    pub alive_tasks: u64,
    /// Tasks waiting in the global (injection) queue.
    pub global_queue_depth: u64,
}

impl RuntimeStats {
    /// Figures of the current tokio runtime, `None` outside one.
    pub fn current() -> Option<RuntimeStats> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let metrics = handle.metrics();
        Some(RuntimeStats {
            workers: metrics.num_workers() as u64,
            alive_tasks: metrics.num_alive_tasks() as u64,
            global_queue_depth: metrics.global_queue_depth() as u64,
        })
    }
}

impl ProcessStats {
    /// Reads the figures of this process. Cheap (a handful of small `/proc`
    /// reads), so it can run on every scrape.
    pub fn collect() -> ProcessStats {
        Self::collect_from(Path::new("/proc"), "self")
    }

    /// Reads the figures of process `pid` under a procfs mounted at `proc`
    /// (`collect_from("/proc", "self")` is [`collect`](Self::collect)).
    pub fn collect_from(proc: &Path, pid: &str) -> ProcessStats {
        let dir = proc.join(pid);
        let mut out = ProcessStats {
            pid: std::process::id(),
            runtime: RuntimeStats::current(),
            ..ProcessStats::default()
        };
        let stat = fs::read_to_string(dir.join("stat")).ok();
        if let Some(fields) = stat.as_deref().and_then(stat_fields) {
            out.pid = fields.pid;
            out.threads = Some(fields.threads);
            out.cpu_user_seconds = Some(fields.utime_ticks as f64 / USER_HZ);
            out.cpu_system_seconds = Some(fields.stime_ticks as f64 / USER_HZ);
            out.cpu_seconds = Some((fields.utime_ticks + fields.stime_ticks) as f64 / USER_HZ);
            let boot = fs::read_to_string(proc.join("stat"))
                .ok()
                .and_then(|s| boot_time(&s));
            if let Some(boot) = boot {
                let start = boot as f64 + fields.start_ticks as f64 / USER_HZ;
                out.start_time_unix = Some(start);
                out.uptime_seconds = Some((unix_now() - start).max(0.0));
            }
        }
        if let Ok(status) = fs::read_to_string(dir.join("status")) {
            out.resident_memory_bytes = status_kib(&status, "VmRSS:").map(|k| k * 1024);
            out.resident_memory_peak_bytes = status_kib(&status, "VmHWM:").map(|k| k * 1024);
            out.virtual_memory_bytes = status_kib(&status, "VmSize:").map(|k| k * 1024);
            if out.threads.is_none() {
                out.threads = status_kib(&status, "Threads:");
            }
        }
        if let Ok(entries) = fs::read_dir(dir.join("fd")) {
            // The directory handle being read is itself listed when `pid`
            // is this process.
            let n = entries.count() as u64;
            let own = u64::from(pid == "self" || pid == std::process::id().to_string());
            out.open_fds = Some(n.saturating_sub(own));
        }
        if let Ok(limits) = fs::read_to_string(dir.join("limits")) {
            out.max_fds = max_open_files(&limits);
        }
        out
    }

    /// Uptime as a `Duration`, when known.
    pub fn uptime(&self) -> Option<Duration> {
        self.uptime_seconds.map(Duration::from_secs_f64)
    }
}

struct StatFields {
    pid: u32,
    utime_ticks: u64,
    stime_ticks: u64,
    threads: u64,
    start_ticks: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses
/// and may itself hold spaces and `)`, so fields are counted after the last
/// `)`.
fn stat_fields(stat: &str) -> Option<StatFields> {
    let pid = stat.split_whitespace().next()?.parse().ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts at field 3 (state); field N is rest[N - 3].
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(StatFields {
        pid,
        utime_ticks: field(14)?,
        stime_ticks: field(15)?,
        threads: field(20)?,
        start_ticks: field(22)?,
    })
}

/// `btime` (boot time, unix seconds) from `/proc/stat`.
fn boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// A `Key:   123 kB` (or plain number) line of `/proc/<pid>/status`.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// Soft limit of the `Max open files` line of `/proc/<pid>/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_command_names() {
        let stat = "4242 (my ) (srv) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 75 0 0 20 0 9 0 123456 1000000 500 18446744073709551615";
        let f = stat_fields(stat).unwrap();
        assert_eq!(f.pid, 4242);
        assert_eq!(f.utime_ticks, 250);
        assert_eq!(f.stime_ticks, 75);
        assert_eq!(f.threads, 9);
        assert_eq!(f.start_ticks, 123456);
        assert!(stat_fields("garbage").is_none());
    }

    #[test]
    fn parses_status_and_limits_lines() {
        let status = "Name:\tstacyvm\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t7\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(10240));
        assert_eq!(status_kib(status, "Threads:"), Some(7));
        assert_eq!(status_kib(status, "VmSize:"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert_eq!(
            boot_time("cpu 1 2 3\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn reads_a_fake_procfs() {
        let dir = tempfile::tempdir().unwrap();
        let pid = dir.path().join("77");
        fs::create_dir_all(pid.join("fd")).unwrap();
        for fd in ["0", "1", "2"] {
            fs::write(pid.join("fd").join(fd), "").unwrap();
        }
        fs::write(
            pid.join("stat"),
            "77 (x) S 1 1 1 0 -1 0 0 0 0 0 300 100 0 0 20 0 4 0 500 0 0",
        )
        .unwrap();
        fs::write(pid.join("status"), "VmRSS:\t2 kB\nVmSize:\t8 kB\n").unwrap();
        fs::write(dir.path().join("stat"), "btime 1000\n").unwrap();
        let s = ProcessStats::collect_from(dir.path(), "77");
        assert_eq!(s.pid, 77);
        assert_eq!(s.threads, Some(4));
        assert_eq!(s.cpu_seconds, Some(4.0));
        assert_eq!(s.cpu_user_seconds, Some(3.0));
        assert_eq!(s.start_time_unix, Some(1005.0));
        assert_eq!(s.resident_memory_bytes, Some(2048));
        assert_eq!(s.virtual_memory_bytes, Some(8192));
        assert_eq!(s.open_fds, Some(3));
        assert_eq!(s.max_fds, None);
        assert!(s.runtime.is_none(), "no tokio runtime in a plain test");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let file = fs::File::open("/proc/self/stat").unwrap();
        let s = ProcessStats::collect();
        drop(file);
        assert_eq!(s.pid, std::process::id());
        assert!(s.threads.unwrap() >= 1);
        assert!(s.resident_memory_bytes.unwrap() > 1024 * 1024);
        assert!(s.virtual_memory_bytes.unwrap() >= s.resident_memory_bytes.unwrap());
        let open = s.open_fds.unwrap();
        assert!(open >= 4, "stdio plus the file held open: {open}");
        assert!(s.max_fds.unwrap() >= open);
        assert!(s.cpu_seconds.unwrap() >= 0.0);
        let up = s.uptime_seconds.unwrap();
        assert!((0.0..3600.0).contains(&up), "uptime {up}");
        let json = serde_json::to_value(&s).unwrap();
        assert!(json["resident_memory_bytes"].is_u64());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reports_the_tokio_runtime() {
        let task = tokio::spawn(std::future::pending::<()>());
        let rt = ProcessStats::collect().runtime.unwrap();
        assert_eq!(rt.workers, 2);
        assert!(rt.alive_tasks >= 1);
        task.abort();
    }
}
