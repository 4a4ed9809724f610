//! A sandbox's root filesystem: an overlay of the image's cached layers
//! (read-only, shared by every sandbox of the image) under the sandbox's own
//! upper directory, mounted on the host so the file API can reach it.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, UnmountFlags, mount, unmount};

use super::nsexec::is_mounted;

/// Mounts `layers` (lowest first) with `upper`/`work` on `target`.
pub fn mount_overlay(
    layers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), String> {
    if layers.is_empty() {
        return Err("image has no layers".into());
    }
    for p in layers.iter().map(PathBuf::as_path).chain([upper, work]) {
        let s = p.as_os_str().as_bytes();
        if s.iter().any(|b| matches!(b, b',' | b':' | b'\\')) {
            return Err(format!(
                "path {} cannot be used in overlay options",
                p.display()
            ));
        }
    }
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    if data.len() >= 4000 {
        return Err(format!(
            "overlay options for {} are too long ({} layers)",
            target.display(),
            layers.len()
        ));
    }
    // `volatile` skips the syncs a sandbox's throwaway layer does not need
    // (faster writes, and unmount does not flush); kernels before 5.10 lack
    // it, so fall back to a plain mount.
    let volatile = CString::new(format!("{data},volatile")).map_err(|e| e.to_string())?;
    let plain = CString::new(data).map_err(|e| e.to_string())?;
    let try_mount = |d: &CString| {
        mount(
            "overlay",
            target,
            "overlay",
            MountFlags::NODEV,
            Some(d.as_c_str()),
        )
    };
    try_mount(&volatile)
        .or_else(|_| try_mount(&plain))
        .map_err(|e| format!("mount overlay on {}: {e}", target.display()))
}

/// Unmounts `target` if it is mounted. Lazily: the container is gone, and
/// the mount leaves the tree at once, so the directory below can be
/// removed without waiting for the kernel to tear the overlay down.
pub fn unmount_overlay(target: &Path) -> Result<(), String> {
    if !is_mounted(target) {
        return Ok(());
    }
    match unmount(target, UnmountFlags::DETACH) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::INVAL) if !is_mounted(target) => Ok(()),
        Err(e) => Err(format!("unmount {}: {e}", target.display())),
    }
}
