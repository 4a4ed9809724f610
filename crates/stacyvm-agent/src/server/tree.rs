//! Ending a command's whole process tree when the command ends.
//!
//! Every command gets a marker in its environment ([`MARKER`]), which all
//! its descendants inherit. When the command's first process exits, the
//! agent kills its process group (one atomic `kill`, so a fork bomb in the
//! group cannot outrun it) and then every process still carrying the
//! marker (descendants that started their own session), and waits until
//! they are reaped. Only then is the exit reported, so the command's
//! processes no longer hold the sandbox's pids limit and the next call has
//! the headroom to start.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// The environment variable naming the exec a process belongs to.
pub const MARKER: &str = "STACYVM_EXEC_ID";

static NEXT: AtomicU64 = AtomicU64::new(1);

/// A marker value unique on the host, not only within this agent: an agent
/// run outside a sandbox (tests, development) shares `/proc` with others.
pub fn new_marker() -> String {
    static BOOT: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let boot = BOOT.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{}-{boot:x}-{n}", std::process::id())
}

/// Kills group `pgid` and every process marked with `marker`, and waits
/// (at most `within`) until none is left alive. Returns whether none is.
pub fn end(pgid: Pid, marker: &str, within: Duration) -> bool {
    let needle = format!("{MARKER}={marker}\0").into_bytes();
    let deadline = Instant::now() + within;
    loop {
        // One atomic kill of the group first: a fork bomb cannot outrun it.
        if killpg(pgid, Signal::SIGKILL) == Err(Errno::ESRCH)
            && marked_alive(pgid, &needle).is_empty()
        {
            return true;
        }
        let left = marked_alive(pgid, &needle);
        for pid in &left {
            let _ = kill(*pid, Signal::SIGKILL);
        }
        if left.is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Live (not zombie) processes in group `pgid` or whose environment holds
/// `needle` (`NAME=value\0`). A zombie holds no resource but a pid that
/// its reaper frees (the agent itself, as the sandbox's init).
fn marked_alive(pgid: Pid, needle: &[u8]) -> Vec<Pid> {
    let own = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != own)
        .filter(|pid| {
            let Some((state, pgrp)) = stat(*pid) else {
                return false;
            };
            if state == 'Z' || state == 'X' {
                return false;
            }
            pgrp == pgid.as_raw()
                || std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split_inclusive(|b| *b == 0).any(|v| v == needle))
        })
        .map(Pid::from_raw)
        .collect()
}

/// The state letter and process group of `pid`, from `/proc/PID/stat`.
fn stat(pid: i32) -> Option<(char, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after
    // the last ')'.
    let mut fields = text.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}
