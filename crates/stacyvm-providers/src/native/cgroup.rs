//! Reading a sandbox's cgroup figures (v1 or v2) for `resource_usage`, and
//! checking the controllers we need for `health`.

use std::path::{Path, PathBuf};

use crate::ResourceUsage;

const ROOT: &str = "/sys/fs/cgroup";

/// Whether the host uses the unified (v2) hierarchy at `/sys/fs/cgroup`.
pub fn is_v2() -> bool {
    Path::new(ROOT).join("cgroup.controllers").exists()
}

/// The cgroup path we give a sandbox (relative to each hierarchy's root).
pub fn path_for(id: &str) -> String {
    format!("/stacyvm/{id}")
}

fn read_u64(p: PathBuf) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// CPU seconds, memory bytes and pids of cgroup `rel`, if it exists.
pub fn usage(rel: &str) -> Option<ResourceUsage> {
    let rel = rel.trim_start_matches('/');
    let root = Path::new(ROOT);
    if is_v2() {
        let dir = root.join(rel);
        if !dir.exists() {
            return None;
        }
        let cpu_usec = std::fs::read_to_string(dir.join("cpu.stat"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("usage_usec ")?.trim().parse::<u64>().ok())
            })
            .unwrap_or(0);
        return Some(ResourceUsage {
            cpu_seconds: cpu_usec as f64 / 1e6,
            memory_bytes: read_u64(dir.join("memory.current")).unwrap_or(0),
            pids: read_u64(dir.join("pids.current")).unwrap_or(0),
        });
    }
    let mem = root.join("memory").join(rel);
    if !mem.exists() {
        return None;
    }
    let cpu_ns = read_u64(root.join("cpuacct").join(rel).join("cpuacct.usage"))
        .or_else(|| read_u64(root.join("cpu,cpuacct").join(rel).join("cpuacct.usage")))
        .unwrap_or(0);
    Some(ResourceUsage {
        cpu_seconds: cpu_ns as f64 / 1e9,
        memory_bytes: read_u64(mem.join("memory.usage_in_bytes")).unwrap_or(0),
        pids: read_u64(root.join("pids").join(rel).join("pids.current")).unwrap_or(0),
    })
}

/// Whether cgroup `rel` is frozen or freezing: v1 `freezer.state`, or v2
/// `cgroup.freeze` (unified root or a hybrid host's `unified` mount).
pub fn is_frozen(rel: &str) -> bool {
    let rel = rel.trim_start_matches('/');
    let root = Path::new(ROOT);
    let v1 = std::fs::read_to_string(root.join("freezer").join(rel).join("freezer.state"))
        .is_ok_and(|s| s.trim() != "THAWED");
    v1 || [root.join(rel), root.join("unified").join(rel)]
        .into_iter()
        .any(|d| std::fs::read_to_string(d.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1"))
}

/// The cgroup directories of `rel` that exist (for leak checks).
pub fn existing_dirs(rel: &str) -> Vec<PathBuf> {
    let rel = rel.trim_start_matches('/');
    let root = Path::new(ROOT);
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(root) {
        for e in entries.flatten() {
            let p = e.path().join(rel);
            if p.exists() {
                out.push(p);
            }
        }
    }
    let p = root.join(rel);
    if p.exists() && !out.contains(&p) {
        out.push(p);
    }
    out
}

/// What is missing for limits to work, if anything.
pub fn problem() -> Option<String> {
    let root = Path::new(ROOT);
    if !root.exists() {
        return Some(format!(
            "no cgroup filesystem at {ROOT}: mount cgroup2 there"
        ));
    }
    if is_v2() {
        let have = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        let missing: Vec<&str> = ["cpu", "memory", "pids"]
            .into_iter()
            .filter(|c| !have.split_whitespace().any(|h| h == *c))
            .collect();
        return (!missing.is_empty()).then(|| {
            format!(
                "cgroup v2 controllers missing: {} (enable them in {ROOT}/cgroup.controllers)",
                missing.join(", ")
            )
        });
    }
    let missing: Vec<&str> = ["memory", "pids", "cpu"]
        .into_iter()
        .filter(|c| !root.join(c).join("tasks").exists())
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "cgroup v1 controllers not mounted: {} (mount them under {ROOT})",
            missing.join(", ")
        )
    })
}
