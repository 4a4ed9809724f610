//! Finding the static agent binary on the host, and checking it is static
//! (a dynamically linked agent would not start in a busybox or musl image).

use std::io::Read;
use std::path::{Path, PathBuf};

/// Installed locations, after the configured path, `STACYVM_AGENT` and the
/// directory of the running executable.
const INSTALLED: &[&str] = &[
    "/usr/local/lib/stacyvm/stacyvm-agent",
    "/usr/lib/stacyvm/stacyvm-agent",
];

/// The candidates, in order of preference.
pub fn candidates(configured: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = configured {
        return vec![p.to_path_buf()];
    }
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("STACYVM_AGENT") {
        out.push(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        out.push(dir.join("stacyvm-agent"));
        // Test binaries live in target/<profile>/deps.
        if dir.ends_with("deps")
            && let Some(up) = dir.parent()
        {
            out.push(up.join("stacyvm-agent"));
        }
    }
    out.extend(INSTALLED.iter().map(PathBuf::from));
    out
}

/// The first usable candidate, or a message saying what was tried.
pub fn find(configured: Option<&Path>) -> Result<PathBuf, String> {
    let cands = candidates(configured);
    let mut problems = Vec::new();
    for c in &cands {
        match check(c) {
            Ok(()) => return Ok(c.clone()),
            Err(e) => problems.push(e),
        }
    }
    Err(format!(
        "no usable stacyvm-agent ({}); build it with scripts/ci/native.sh or set providers.native.agent_path",
        problems.join("; ")
    ))
}

/// Checks that `path` is a statically linked ELF executable.
pub fn check(path: &Path) -> Result<(), String> {
    // The ELF and program headers are at the start; no need to read more.
    let mut data = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(64 * 1024).read_to_end(&mut data))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    match has_interpreter(&data) {
        None => Err(format!("{} is not an ELF executable", path.display())),
        Some(true) => Err(format!(
            "{} is dynamically linked; build it with -C target-feature=+crt-static",
            path.display()
        )),
        Some(false) => Ok(()),
    }
}

/// Whether a 64-bit little-endian ELF has a `PT_INTERP` program header
/// (i.e. needs a dynamic loader); `None` if it is not such an ELF.
fn has_interpreter(elf: &[u8]) -> Option<bool> {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?));
    let phoff = u64_at(0x20)? as usize;
    let phentsize = u16_at(0x36)? as usize;
    let phnum = u16_at(0x38)? as usize;
    const PT_INTERP: u32 = 3;
    for i in 0..phnum {
        if u32_at(phoff + i * phentsize)? == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_dynamic_from_non_elf() {
        // The test binary itself is dynamically linked.
        let me = std::env::current_exe().unwrap();
        let data = std::fs::read(&me).unwrap();
        assert_eq!(has_interpreter(&data), Some(true));
        assert_eq!(has_interpreter(b"#!/bin/sh\n"), None);
        assert!(check(Path::new("/nonexistent/agent")).is_err());
    }
}
