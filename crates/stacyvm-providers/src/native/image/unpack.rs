//! Unpacks one image layer (a tar stream) into its own directory, in the
//! form overlayfs wants for a `lowerdir`: OCI whiteouts (`.wh.NAME`) become
//! overlay whiteouts (a 0:0 character device named `NAME`) and opaque markers
//! (`.wh..wh..opq`) become the `trusted.overlay.opaque=y` xattr on their
//! directory. Modes, owners, mtimes, symlinks, hardlinks, fifos and (as
//! root) device nodes are kept.
//!
//! Safety: the destination is a private, freshly created directory, so a
//! path checked here cannot change under us. Every entry path is
//! normalised and rejected if absolute or containing `..`; every parent
//! directory on the way to an entry must be a real directory created by this
//! layer (a symlink parent is rejected), so no entry can write outside the
//! layer directory. Symlink targets are stored as they are and never
//! followed. Hardlink targets obey the same rules as entry paths.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps, XattrFlags};

use super::error::{ImageError, Result};

/// Whiteout prefix defined by the OCI image spec.
const WH_PREFIX: &str = ".wh.";
/// Opaque directory marker defined by the OCI image spec.
const WH_OPAQUE: &str = ".wh..wh..opq";
/// Xattr overlayfs reads to treat a lower directory as opaque.
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What an unpack did, for progress and the image index.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UnpackStats {
    /// Tar entries processed.
    pub entries: u64,
    /// Bytes of regular file content written.
    pub bytes: u64,
}

/// Unpacks the tar stream `reader` into `dest`, which must be an existing,
/// empty directory nobody else writes to. `layer` names the layer in errors.
pub fn unpack_layer<R: Read>(reader: R, dest: &Path, layer: &str) -> Result<UnpackStats> {
    let mut u = Unpacker {
        dest,
        layer,
        is_root: rustix::process::geteuid().is_root(),
        dirs: Vec::new(),
        stats: UnpackStats::default(),
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| u.corrupt("<archive>", e.to_string()))?;
    for entry in entries {
        let entry = entry.map_err(|e| u.corrupt("<archive>", e.to_string()))?;
        u.entry(entry)?;
        u.stats.entries += 1;
    }
    // Read the trailer and any padding, so a hashing reader sees every byte.
    io::copy(&mut archive.into_inner(), &mut io::sink())
        .map_err(|e| u.corrupt("<trailer>", e.to_string()))?;
    // Directory modes and mtimes last, deepest first: adding children would
    // otherwise bump the mtimes, and a read-only dir would block them.
    for (path, mode, mtime) in u.dirs.iter().rev() {
        // A later entry may have replaced this directory, or one above it,
        // with a symlink: chmod follows symlinks, so re-check the whole path.
        if !is_real_dir_inside(dest, path) {
            continue;
        }
        set_mode(path, *mode)?;
        set_mtime(path, *mtime);
    }
    Ok(u.stats)
}

struct Unpacker<'a> {
    dest: &'a Path,
    layer: &'a str,
    is_root: bool,
    /// Directories whose mode and mtime are applied at the end.
    dirs: Vec<(PathBuf, u32, u64)>,
    stats: UnpackStats,
}

/// Normalises a tar path to its relative components: `./` and `.` dropped,
/// absolute paths and `..` rejected.
pub(crate) fn normalize(raw: &Path) -> std::result::Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(part) => out.push(part),
            Component::ParentDir => return Err("path contains `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("path is absolute"),
        }
    }
    Ok(out)
}

impl Unpacker<'_> {
    fn corrupt(&self, entry: &str, reason: impl Into<String>) -> ImageError {
        ImageError::UnsafeLayer {
            layer: self.layer.to_owned(),
            entry: entry.to_owned(),
            reason: reason.into(),
        }
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<()> {
        let raw = entry
            .path()
            .map_err(|e| self.corrupt("<path>", e.to_string()))?
            .into_owned();
        let shown = raw.display().to_string();
        let rel = normalize(&raw).map_err(|r| self.corrupt(&shown, r))?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader | tar::EntryType::GNULongName
        ) {
            return Ok(());
        }

        let Some(name) = rel.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            // The layer root itself (`./`): only its metadata matters.
            if kind.is_dir() {
                let (mode, mtime) = self.meta(&entry, &shown)?;
                self.chown(self.dest, &entry, &shown)?;
                self.dirs.push((self.dest.to_owned(), mode, mtime));
            }
            return Ok(());
        };
        let parent_rel = rel.parent().unwrap_or(Path::new(""));

        if let Some(hidden) = name.strip_prefix(WH_PREFIX) {
            let parent = self.ensure_parent_dirs(parent_rel, &shown)?;
            return self.whiteout(&parent, hidden, &shown);
        }

        let parent = self.ensure_parent_dirs(parent_rel, &shown)?;
        let path = parent.join(&name);
        let existing = fs::symlink_metadata(&path).ok();
        if let Some(meta) = &existing
            && !(kind.is_dir() && meta.is_dir())
        {
            remove_any(&path, meta.is_dir())?;
        }

        match kind {
            tar::EntryType::Directory => {
                if existing.as_ref().is_none_or(|m| !m.is_dir()) {
                    fs::DirBuilder::new()
                        .mode(0o700)
                        .create(&path)
                        .map_err(|e| ImageError::io(&path, e))?;
                }
                let (mode, mtime) = self.meta(&entry, &shown)?;
                self.chown(&path, &entry, &shown)?;
                self.xattrs(&path, &mut entry, &shown)?;
                self.dirs.push((path, mode, mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| ImageError::io(&path, e))?;
                let n = io::copy(&mut entry, &mut file)
                    .map_err(|e| self.corrupt(&shown, format!("reading content: {e}")))?;
                self.stats.bytes += n;
                drop(file);
                self.finish_node(&path, &mut entry, &shown)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| self.corrupt(&shown, e.to_string()))?
                    .ok_or_else(|| self.corrupt(&shown, "symlink without target"))?;
                std::os::unix::fs::symlink(&target, &path).map_err(|e| ImageError::io(&path, e))?;
                self.chown(&path, &entry, &shown)?;
                let (_, mtime) = self.meta(&entry, &shown)?;
                set_mtime(&path, mtime);
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| self.corrupt(&shown, e.to_string()))?
                    .ok_or_else(|| self.corrupt(&shown, "hardlink without target"))?;
                let target_rel = normalize(&target)
                    .map_err(|r| self.corrupt(&shown, format!("hardlink target: {r}")))?;
                let source = self.existing_inside(&target_rel, &shown)?;
                fs::hard_link(&source, &path).map_err(|e| ImageError::io(&path, e))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                self.node(kind, &path, &mut entry, &shown)?;
            }
            other => {
                tracing::debug!(layer = self.layer, entry = %shown, kind = ?other, "skipping tar entry of unsupported type");
            }
        }
        Ok(())
    }

    /// Creates a device node or fifo. Device nodes need root; without it they
    /// are skipped (a rootless runtime could not use them anyway).
    fn node<R: Read>(
        &mut self,
        kind: tar::EntryType,
        path: &Path,
        entry: &mut tar::Entry<'_, R>,
        shown: &str,
    ) -> Result<()> {
        let h = entry.header();
        let (ft, dev) = match kind {
            tar::EntryType::Fifo => (FileType::Fifo, 0),
            _ => {
                if !self.is_root {
                    tracing::debug!(layer = self.layer, entry = %shown, "skipping device node: not root");
                    return Ok(());
                }
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                let ft = if kind == tar::EntryType::Char {
                    FileType::CharacterDevice
                } else {
                    FileType::BlockDevice
                };
                (ft, rustix::fs::makedev(major, minor))
            }
        };
        rustix::fs::mknodat(CWD, path, ft, Mode::from_raw_mode(0o600), dev)
            .map_err(|e| ImageError::io(path, e.into()))?;
        self.finish_node(path, entry, shown)
    }

    /// Owner, xattrs, mode, mtime of a freshly created non-directory.
    fn finish_node<R: Read>(
        &mut self,
        path: &Path,
        entry: &mut tar::Entry<'_, R>,
        shown: &str,
    ) -> Result<()> {
        let (mode, mtime) = self.meta(entry, shown)?;
        // chown before chmod: chown clears set-id bits.
        self.chown(path, entry, shown)?;
        self.xattrs(path, entry, shown)?;
        set_mode(path, mode)?;
        set_mtime(path, mtime);
        Ok(())
    }

    fn meta<R: Read>(&self, entry: &tar::Entry<'_, R>, shown: &str) -> Result<(u32, u64)> {
        let h = entry.header();
        let mode = h
            .mode()
            .map_err(|e| self.corrupt(shown, format!("mode: {e}")))?;
        let mtime = h.mtime().unwrap_or(0);
        Ok((mode & 0o7777, mtime))
    }

    fn chown<R: Read>(&self, path: &Path, entry: &tar::Entry<'_, R>, shown: &str) -> Result<()> {
        if !self.is_root {
            return Ok(());
        }
        let h = entry.header();
        // Empty owner fields mean 0, as in Go's archive/tar (which wrote
        // most layers in the wild).
        let uid = h.uid().unwrap_or(0);
        let gid = h.gid().unwrap_or(0);
        let (uid, gid) = (
            u32::try_from(uid).map_err(|_| self.corrupt(shown, "uid out of range"))?,
            u32::try_from(gid).map_err(|_| self.corrupt(shown, "gid out of range"))?,
        );
        std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(|e| ImageError::io(path, e))
    }

    /// Applies the PAX xattrs worth keeping: file capabilities (e.g. ping's)
    /// and `user.*`. Anything in `trusted.*` is dropped: a layer must not be
    /// able to forge overlayfs metadata (whiteouts, redirects).
    fn xattrs<R: Read>(
        &self,
        path: &Path,
        entry: &mut tar::Entry<'_, R>,
        shown: &str,
    ) -> Result<()> {
        let Ok(Some(exts)) = entry.pax_extensions() else {
            return Ok(());
        };
        for ext in exts {
            let ext = ext.map_err(|e| self.corrupt(shown, format!("pax header: {e}")))?;
            let Ok(key) = ext.key() else { continue };
            let Some(name) = key.strip_prefix("SCHILY.xattr.") else {
                continue;
            };
            if name != "security.capability" && !name.starts_with("user.") {
                continue;
            }
            if let Err(e) =
                rustix::fs::lsetxattr(path, name, ext.value_bytes(), XattrFlags::empty())
            {
                tracing::debug!(layer = self.layer, entry = %shown, xattr = name, error = %e, "could not set xattr");
            }
        }
        Ok(())
    }

    /// `.wh.NAME` in `parent` → overlay whiteout `parent/NAME`;
    /// `.wh..wh..opq` → `parent` is opaque.
    fn whiteout(&mut self, parent: &Path, hidden: &str, shown: &str) -> Result<()> {
        if format!("{WH_PREFIX}{hidden}") == WH_OPAQUE {
            rustix::fs::lsetxattr(parent, OVERLAY_OPAQUE_XATTR, b"y", XattrFlags::empty())
                .map_err(|e| ImageError::io(parent, e.into()))?;
            return Ok(());
        }
        if hidden.starts_with(".wh.") {
            // Other aufs metadata (`.wh..wh.plnk`, ...): meaningless here.
            return Ok(());
        }
        if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.contains('/') {
            return Err(self.corrupt(shown, "invalid whiteout name"));
        }
        let target = parent.join(hidden);
        if fs::symlink_metadata(&target).is_ok() {
            // The spec: a whiteout never hides an entry of its own layer.
            return Ok(());
        }
        rustix::fs::mknodat(
            CWD,
            &target,
            FileType::CharacterDevice,
            Mode::empty(),
            rustix::fs::makedev(0, 0),
        )
        .map_err(|e| ImageError::io(&target, e.into()))
    }

    /// Makes sure every directory on `rel` exists as a real directory of this
    /// layer, creating missing ones; rejects a path through a symlink.
    fn ensure_parent_dirs(&mut self, rel: &Path, shown: &str) -> Result<PathBuf> {
        let mut cur = self.dest.to_path_buf();
        for part in rel.components() {
            cur.push(part);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(self.corrupt(shown, "parent directory is a symlink"));
                }
                Ok(m) => {
                    // A whiteout or file of this layer replaced by a directory.
                    remove_any(&cur, m.is_dir())?;
                    mkdir_default(&cur)?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => mkdir_default(&cur)?,
                Err(e) => return Err(ImageError::io(&cur, e)),
            }
        }
        Ok(cur)
    }

    /// Resolves a hardlink target that must already exist in this layer,
    /// reached through real directories only, and not be a directory.
    fn existing_inside(&self, rel: &Path, shown: &str) -> Result<PathBuf> {
        let mut cur = self.dest.to_path_buf();
        let n = rel.components().count();
        if n == 0 {
            return Err(self.corrupt(shown, "hardlink to the layer root"));
        }
        for (i, part) in rel.components().enumerate() {
            cur.push(part);
            let meta = fs::symlink_metadata(&cur)
                .map_err(|_| self.corrupt(shown, "hardlink target not in this layer"))?;
            let last = i + 1 == n;
            if !last && !meta.is_dir() {
                return Err(self.corrupt(shown, "hardlink target path is not through directories"));
            }
            if last && (meta.is_dir() || is_whiteout(&meta)) {
                return Err(self.corrupt(shown, "hardlink target is a directory or whiteout"));
            }
        }
        Ok(cur)
    }
}

/// True when every component from `dest` down to `path` is a real
/// directory (no symlink anywhere on the way).
fn is_real_dir_inside(dest: &Path, path: &Path) -> bool {
    let Ok(rel) = path.strip_prefix(dest) else {
        return false;
    };
    let mut cur = dest.to_path_buf();
    for part in rel.components() {
        cur.push(part);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            _ => return false,
        }
    }
    true
}

fn is_whiteout(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn mkdir_default(path: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .mode(0o755)
        .create(path)
        .map_err(|e| ImageError::io(path, e))
}

fn remove_any(path: &Path, is_dir: bool) -> Result<()> {
    // remove_dir_all does not follow symlinks; remove_file removes the link.
    let r = if is_dir {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    r.map_err(|e| ImageError::io(path, e))
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| ImageError::io(path, e))
}

fn set_mtime(path: &Path, mtime: u64) {
    let t = Timespec {
        tv_sec: i64::try_from(mtime).unwrap_or(0),
        tv_nsec: 0,
    };
    let ts = Timestamps {
        last_access: t,
        last_modification: t,
    };
    // Best effort: mtimes are cosmetic, some filesystems refuse them on links.
    let _ = rustix::fs::utimensat(CWD, path, &ts, AtFlags::SYMLINK_NOFOLLOW);
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
