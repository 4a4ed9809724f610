//! Stopping a sandbox's init (our agent, pid 1 of its pid namespace)
//! directly, through a pidfd, before the runtime removes the container.
//!
//! `crun delete --force` signals the init and then freezes, lists and
//! re-kills the cgroup while the processes are still exiting; that costs
//! about as much again as the runtime call itself. Killing through a pidfd
//! and waiting for it to become readable is a fraction of a millisecond:
//! when a pid namespace's init exits, the kernel kills every other process
//! in the namespace and waits for them before the init itself is reported
//! as exited, so once the pidfd is readable the whole sandbox is gone and a
//! plain `delete` only has state to remove.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use rustix::process::{Pid, PidfdFlags, Signal};
use tokio::io::unix::AsyncFd;

/// What became of the init when we tried to stop it.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// It exited (killed now, or gone before): the container is stopped.
    Exited,
    /// We cannot tell which process it is (no pid file: the runtime never
    /// started it, or it was started by an older version); the runtime
    /// has to find and kill it.
    Unknown,
}

/// Kills the init whose pid the runtime wrote to `pid_file` and waits up to
/// `timeout` for it to exit. The pid is only trusted while it is a member
/// of the sandbox's cgroup `cgroup_rel` (a recycled pid belongs to some
/// other process, which is never signalled).
pub async fn kill(pid_file: &Path, cgroup_rel: &str, timeout: Duration) -> io::Result<Stopped> {
    let pid = match std::fs::read_to_string(pid_file) {
        Ok(text) => text
            .trim()
            .parse::<i32>()
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: not a pid", pid_file.display()),
                )
            })?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Stopped::Unknown),
        Err(e) => return Err(e),
    };
    // Open first, then check identity: the pidfd cannot be redirected to
    // another process afterwards, so the check holds for the signal.
    let pidfd = match rustix::process::pidfd_open(pid, PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::SRCH) => return Ok(Stopped::Exited),
        Err(e) => return Err(e.into()),
    };
    match std::fs::read_to_string(format!("/proc/{}/cgroup", pid.as_raw_nonzero())) {
        Ok(text) if in_cgroup(&text, cgroup_rel) => {}
        // Exited (and reaped) between the open and the read, or a recycled
        // pid outside the sandbox: either way the init is gone.
        Ok(_) => return Ok(Stopped::Exited),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Stopped::Exited),
        Err(e) => return Err(e),
    }
    match rustix::process::pidfd_send_signal(&pidfd, Signal::KILL) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => {}
        Err(e) => return Err(e.into()),
    }
    wait_exited(pidfd, timeout).await?;
    Ok(Stopped::Exited)
}

/// Waits until `pidfd` reports its process exited (readable), which for a
/// process we are not the parent of happens at exit, before any reaping.
#[allow(unsafe_code)]
async fn wait_exited(pidfd: OwnedFd, timeout: Duration) -> io::Result<()> {
    // SAFETY: `OwnedFd` owns its descriptor and always returns the same
    // one; it stays open until the `AsyncFd` (which owns it) is dropped.
    let fd = unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }?;
    match tokio::time::timeout(timeout, fd.readable()).await {
        Ok(ready) => ready.map(|_| ()),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "init still running {} ms after SIGKILL",
                timeout.as_millis()
            ),
        )),
    }
}

/// Whether a `/proc/<pid>/cgroup` listing puts the process in `rel` in any
/// hierarchy (v2 `0::/path`, or a v1 `N:controllers:/path` line).
fn in_cgroup(listing: &str, rel: &str) -> bool {
    listing
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .any(|path| path == rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_membership_in_v1_and_v2_listings() {
        let v2 = "0::/stacyvm/sb-1\n";
        assert!(in_cgroup(v2, "/stacyvm/sb-1"));
        assert!(!in_cgroup(v2, "/stacyvm/sb-2"));
        let hybrid = "9:name=systemd:/\n4:memory:/stacyvm/sb-1\n0::/\n";
        assert!(in_cgroup(hybrid, "/stacyvm/sb-1"));
        // A prefix or a child is not membership.
        assert!(!in_cgroup("0::/stacyvm/sb-10\n", "/stacyvm/sb-1"));
        assert!(!in_cgroup("0::/stacyvm/sb-1/x\n", "/stacyvm/sb-1"));
        assert!(!in_cgroup("", "/stacyvm/sb-1"));
    }

    #[tokio::test]
    async fn no_pid_file_means_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let got = kill(&dir.path().join("init.pid"), "/x", Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(got, Stopped::Unknown);
    }

    #[tokio::test]
    async fn garbage_pid_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("init.pid");
        std::fs::write(&f, "not a pid").unwrap();
        assert!(kill(&f, "/x", Duration::from_secs(1)).await.is_err());
    }

    /// A `sleep` child and a pid file naming it.
    fn sleeper() -> (std::process::Child, tempfile::TempDir, std::path::PathBuf) {
        let child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("init.pid");
        std::fs::write(&f, child.id().to_string()).unwrap();
        (child, dir, f)
    }

    #[tokio::test]
    async fn a_process_outside_the_cgroup_is_left_alone() {
        let (mut child, _dir, f) = sleeper();
        let got = kill(&f, "/stacyvm/sb-not-this-one", Duration::from_secs(1))
            .await
            .unwrap();
        // Reported gone (it is not the sandbox's init), and not signalled.
        assert_eq!(got, Stopped::Exited);
        assert!(child.try_wait().unwrap().is_none(), "sleep was killed");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[tokio::test]
    async fn kills_a_member_and_waits_for_its_exit() {
        // Our own cgroup stands in for the sandbox's: the child inherits it.
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let rel = own
            .lines()
            .filter_map(|l| l.splitn(3, ':').nth(2))
            .next()
            .unwrap()
            .to_string();
        let (mut child, _dir, f) = sleeper();
        let got = kill(&f, &rel, Duration::from_secs(5)).await.unwrap();
        assert_eq!(got, Stopped::Exited);
        // Exited by SIGKILL, observed before we reaped it.
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
}
