//! `health`: what the native provider needs from the host, and precisely
//! what is missing when something is.

use std::path::{Path, PathBuf};

use super::{agent_path, cgroup};

/// Finds an executable `name` in `PATH` (or takes `name` as a path).
pub fn find_binary(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    let path = std::env::var("PATH")
        .unwrap_or_else(|_| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// How to install runtime `name`.
pub fn install_hint(name: &str) -> String {
    match name {
        "crun" => "install the Debian/Ubuntu package crun (apt-get install crun)".into(),
        "runc" => "install the Debian/Ubuntu package runc (apt-get install runc)".into(),
        "runsc" => "install gVisor's runsc (https://gvisor.dev/docs/user_guide/install/)".into(),
        other => format!("install {other} or set providers.native.runtime to crun"),
    }
}

/// Whether we are root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Why an unprivileged user could not run sandboxes.
pub fn not_root_problem() -> String {
    let max = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let clone = std::fs::read_to_string("/proc/sys/kernel/unprivileged_userns_clone")
        .ok()
        .map(|s| s.trim().to_string());
    if max == Some(0) || clone.as_deref() == Some("0") {
        "not running as root and user namespaces are disabled \
         (kernel.unprivileged_userns_clone=0 or user.max_user_namespaces=0): run stacyvm as root"
            .into()
    } else {
        "not running as root: the native provider needs root (rootless sandboxes are not supported yet); \
         run stacyvm as root or use the docker provider"
            .into()
    }
}

/// Whether the kernel knows overlayfs.
pub fn has_overlayfs() -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .map(|s| s.lines().any(|l| l.trim_end().ends_with("overlay")))
        .unwrap_or(false)
}

/// One thing the host lacks: what clients are told (names config keys and
/// packages, never host paths) and, for the log, the host specifics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub public: String,
    pub detail: Option<String>,
}

impl Problem {
    fn new(public: impl Into<String>) -> Self {
        Problem {
            public: public.into(),
            detail: None,
        }
    }

    fn with_detail(public: impl Into<String>, detail: impl Into<String>) -> Self {
        Problem {
            public: public.into(),
            detail: Some(detail.into()),
        }
    }
}

/// Every problem found, in the order an admin should fix them.
pub fn problems(runtime: &str, agent: Option<&Path>, data_dir: &Path) -> Vec<Problem> {
    let mut out = Vec::new();
    if !is_root() {
        out.push(Problem::new(not_root_problem()));
    }
    let name = runtime.rsplit('/').next().unwrap_or(runtime);
    if find_binary(runtime).is_none() {
        out.push(Problem::with_detail(
            format!(
                "OCI runtime {name} (providers.native.runtime) not found: {}",
                install_hint(name)
            ),
            format!("runtime {runtime} not found"),
        ));
    }
    if !has_overlayfs() {
        out.push(Problem::new(
            "the kernel has no overlayfs: load it with `modprobe overlay`",
        ));
    }
    if let Some(p) = cgroup::problem() {
        out.push(Problem::new(p));
    }
    if let Err(e) = agent_path::find(agent) {
        out.push(Problem::with_detail(
            "no usable static stacyvm-agent: install it or set providers.native.agent_path (see docs/native.md)",
            e,
        ));
    }
    if let Err(e) = std::fs::create_dir_all(data_dir) {
        out.push(Problem::with_detail(
            format!(
                "the data directory (providers.native.data_dir) cannot be created: {}",
                e.kind()
            ),
            format!("{}: {e}", data_dir.display()),
        ));
    }
    out
}
