//! Runs the OCI runtime with two adjustments made in the child between
//! `fork` and `exec`:
//!
//! - **Hybrid cgroup hosts.** On a cgroup v1 host that also mounts cgroup2
//!   with a controller in it (here `/sys/fs/cgroup/unified` holds `hugetlb`),
//!   crun refuses to run ("cgroups in hybrid mode not supported"). The child
//!   enters a private mount namespace and lazily unmounts that cgroup2 mount
//!   there, so crun sees a plain v1 host; the host's mounts are untouched,
//!   and on v1-only or v2 hosts nothing is done. Doing it in code (rather
//!   than asking admins to remount) keeps one behaviour here and in CI.
//! - **The agent's socket.** The listening socket the agent serves on is
//!   passed to the container as fd 3 (`--preserve-fds 1`), so the socket
//!   file lives in a host-only directory the sandbox cannot tamper with.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Child set-up for one runtime invocation.
#[derive(Debug, Clone, Default)]
pub struct ChildSetup {
    /// A cgroup2 mount to hide from the runtime (hybrid hosts only).
    pub hide_mount: Option<PathBuf>,
    /// A descriptor to pass as fd 3.
    pub pass_fd: Option<RawFd>,
}

impl ChildSetup {
    /// Installs the set-up on `cmd`.
    pub fn apply(&self, cmd: &mut tokio::process::Command) {
        if self.hide_mount.is_none() && self.pass_fd.is_none() {
            return;
        }
        let hide: Option<CString> = self
            .hide_mount
            .as_deref()
            .and_then(|p| CString::new(p.as_os_str().as_bytes()).ok());
        let pass_fd = self.pass_fd;
        let root = c"/";
        // SAFETY: the closure runs in the forked child before exec and only
        // makes async-signal-safe system calls (unshare, mount, umount2,
        // dup2, fcntl) on memory prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(path) = &hide {
                    if libc::unshare(libc::CLONE_NEWNS) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // Private first, so the unmount does not propagate back
                    // to the host.
                    if libc::mount(
                        std::ptr::null(),
                        root.as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    ) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    if libc::umount2(path.as_ptr(), libc::MNT_DETACH) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if let Some(fd) = pass_fd {
                    let target = super::spec::LISTEN_FD as RawFd;
                    let r = if fd == target {
                        libc::fcntl(target, libc::F_SETFD, 0)
                    } else {
                        libc::dup2(fd, target)
                    };
                    if r < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
}

/// The cgroup2 mount a hybrid host has beside its v1 hierarchies, when it
/// holds controllers (the case crun rejects).
pub fn hybrid_cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    let mut v1 = false;
    let mut v2: Option<PathBuf> = None;
    for line in mountinfo.lines() {
        // ... mountpoint ... - fstype source options
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(mp), Some(fstype)) = (fields.get(4), fields.get(dash + 1)) else {
            continue;
        };
        match *fstype {
            "cgroup" => v1 = true,
            "cgroup2" => v2 = Some(PathBuf::from(mp)),
            _ => {}
        }
    }
    let v2 = v2?;
    if !v1 {
        return None;
    }
    let controllers = std::fs::read_to_string(v2.join("cgroup.controllers")).unwrap_or_default();
    (!controllers.trim().is_empty()).then_some(v2)
}

/// Whether `path` is a mount point, from `/proc/self/mountinfo`.
pub fn is_mounted(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = path.as_os_str().as_bytes();
    info.lines().any(|l| {
        l.split_whitespace()
            .nth(4)
            .is_some_and(|mp| unescape(mp).as_slice() == want)
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_no_hybrid_mount_on_pure_hosts() {
        let v2_only = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(hybrid_cgroup2_mount(v2_only), None);
        let v1_only = "31 23 0:28 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n";
        assert_eq!(hybrid_cgroup2_mount(v1_only), None);
    }

    #[test]
    fn unescapes_mount_points() {
        assert_eq!(unescape(r"/a\040b"), b"/a b");
        assert_eq!(unescape("/plain"), b"/plain");
    }
}
