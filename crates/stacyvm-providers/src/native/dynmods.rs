//! `favordynmods` on the host's cgroup2 mount.
//!
//! Moving a process into a cgroup (what the runtime does once per sandbox)
//! takes the kernel's global threadgroup lock for writing, which by default
//! waits for an RCU grace period: ~12 ms per sandbox on our 2-core hosts,
//! about half of a crun create+start. The cgroup2 mount option
//! `favordynmods` (Linux 6.0+) keeps that lock in the mode where writers do
//! not wait, making the move ~0.15 ms, at a small cost to fork and exit.
//! The lock is global, so setting it on the one cgroup2 mount helps cgroup
//! v1 hierarchies too (hybrid hosts such as ours).
//!
//! We remount with the mount's existing flags and cgroup options plus
//! `favordynmods`, so nothing else changes (`nsdelegate`,
//! `memory_recursiveprot`, `nosuid`... are kept). Switched off with
//! `providers.native.cgroup_favor_dynmods: false`.

use std::path::PathBuf;

use rustix::mount::{MountFlags, mount_remount};

/// The host's cgroup2 mount, its per-mount flags and its cgroup options,
/// from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup2Mount {
    pub path: PathBuf,
    pub mount_options: Vec<String>,
    pub super_options: Vec<String>,
}

impl Cgroup2Mount {
    /// Whether the option is already on.
    pub fn favors_dynmods(&self) -> bool {
        self.super_options.iter().any(|o| o == "favordynmods")
    }

    /// Per-mount flags to pass again on remount.
    fn flags(&self) -> MountFlags {
        let mut f = MountFlags::empty();
        for o in &self.mount_options {
            f |= match o.as_str() {
                "ro" => MountFlags::RDONLY,
                "nosuid" => MountFlags::NOSUID,
                "nodev" => MountFlags::NODEV,
                "noexec" => MountFlags::NOEXEC,
                "noatime" => MountFlags::NOATIME,
                "nodiratime" => MountFlags::NODIRATIME,
                "relatime" => MountFlags::RELATIME,
                "strictatime" => MountFlags::STRICTATIME,
                _ => MountFlags::empty(),
            };
        }
        f
    }

    /// The cgroup options to remount with: the current ones (minus the
    /// `rw`/`ro` that are mount flags) plus `favordynmods`.
    fn data(&self) -> String {
        let mut opts: Vec<&str> = self
            .super_options
            .iter()
            .map(String::as_str)
            .filter(|o| !matches!(*o, "rw" | "ro"))
            .collect();
        opts.push("favordynmods");
        opts.join(",")
    }
}

/// Finds the first cgroup2 mount in `mountinfo` text.
pub fn find(mountinfo: &str) -> Option<Cgroup2Mount> {
    mountinfo.lines().find_map(|line| {
        // id parent dev root mountpoint mount-options [optional...] - fstype source super-options
        let fields: Vec<&str> = line.split_whitespace().collect();
        let dash = fields.iter().position(|f| *f == "-")?;
        if fields.get(dash + 1) != Some(&"cgroup2") {
            return None;
        }
        let split = |s: &str| s.split(',').map(str::to_string).collect::<Vec<_>>();
        Some(Cgroup2Mount {
            path: PathBuf::from(fields.get(4)?),
            mount_options: split(fields.get(5)?),
            super_options: split(fields.get(dash + 3).copied().unwrap_or("")),
        })
    })
}

/// What [`ensure`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    AlreadyOn(PathBuf),
    TurnedOn(PathBuf),
    /// No cgroup2 mount, or not root: nothing to do here.
    Unavailable(String),
    /// The kernel refused the remount (older than 6.0, or a locked mount).
    Refused(String),
}

/// Turns `favordynmods` on for the host's cgroup2 mount when it is off.
pub fn ensure() -> Outcome {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let Some(m) = find(&info) else {
        return Outcome::Unavailable("no cgroup2 mount".into());
    };
    if m.favors_dynmods() {
        return Outcome::AlreadyOn(m.path);
    }
    if !rustix::process::geteuid().is_root() {
        return Outcome::Unavailable("not root".into());
    }
    match mount_remount(&m.path, m.flags(), m.data().as_str()) {
        Ok(()) => Outcome::TurnedOn(m.path),
        Err(e) => Outcome::Refused(format!("remount {}: {e}", m.path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const SYSTEMD_V2: &str = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";

    #[test]
    fn finds_the_cgroup2_mount_and_keeps_its_options() {
        let m = find(HYBRID).unwrap();
        assert_eq!(m.path, PathBuf::from("/sys/fs/cgroup/unified"));
        assert!(!m.favors_dynmods());
        assert_eq!(m.data(), "favordynmods");
        assert_eq!(m.flags(), MountFlags::RELATIME);

        let m = find(SYSTEMD_V2).unwrap();
        assert_eq!(m.path, PathBuf::from("/sys/fs/cgroup"));
        assert_eq!(m.data(), "nsdelegate,memory_recursiveprot,favordynmods");
        assert_eq!(
            m.flags(),
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC | MountFlags::RELATIME
        );
    }

    #[test]
    fn sees_when_it_is_already_on_or_absent() {
        let on =
            "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,favordynmods\n";
        assert!(find(on).unwrap().favors_dynmods());
        assert_eq!(
            find("32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"),
            None
        );
    }
}
