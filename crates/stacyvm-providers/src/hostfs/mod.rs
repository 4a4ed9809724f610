//! File operations confined to a host directory that is a sandbox's root.
//!
//! Used by the mock provider (a sandbox is a plain directory) and by the
//! native provider (the root is the sandbox's rootfs on the host). Every
//! operation goes through a [`cap_std::fs::Dir`] opened on the root, so path
//! resolution happens with `openat2(RESOLVE_BENEATH)` (or cap-std's checked
//! component-by-component walk): no `..`, absolute symlink, relative symlink
//! pointing out, or rename race can reach a host file outside the root.
//!
//! Symlink policy: symlinks in the middle of a path are followed only while
//! they stay inside the root (an absolute symlink target counts as leaving
//! it, since this code runs on the host); `stat`, `list`, `delete`, `move`
//! and `glob` describe or act on a final-component symlink itself and never
//! follow it; `write` replaces it with a regular file.

mod glob;
mod path;
#[cfg(any(feature = "mock", feature = "native"))]
mod rooted;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use cap_std::ambient_authority;
use cap_std::fs::PermissionsExt as _;
use cap_std::fs::{Dir, Metadata, MetadataExt, OpenOptions, OpenOptionsExt, Permissions};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use stacyvm_core::{FileInfo, FileMode};

use crate::{ByteStream, ProviderError};

pub use self::glob::MAX_GLOB_RESULTS;
pub use self::path::SandboxPath;
#[cfg(any(feature = "mock", feature = "native"))]
pub(crate) use self::rooted::HostRooted;

/// Size of the chunks a read streams.
pub const READ_CHUNK: usize = 64 * 1024;

/// Mode of a written file when none is given.
pub const DEFAULT_FILE_MODE: u32 = 0o644;

/// File operations beneath one host directory; cheap to clone.
#[derive(Debug, Clone)]
pub struct HostFs {
    root: PathBuf,
}

impl HostFs {
    /// `root` is opened afresh by every operation, so it may be created or
    /// mounted after this handle exists.
    pub fn new(root: PathBuf) -> Self {
        HostFs { root }
    }

    /// The host directory this handle is confined to.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes `content` to `path` (binary-safe), creating parent
    /// directories. The bytes go to a temporary file in the same directory
    /// that is then renamed over the target, so readers never see half a
    /// file and a hard link to a file elsewhere is replaced, not modified.
    pub async fn write(
        &self,
        path: &str,
        content: Bytes,
        mode: Option<u32>,
    ) -> Result<(), ProviderError> {
        let p = SandboxPath::parse(path)?;
        let mode = mode.unwrap_or(DEFAULT_FILE_MODE) & 0o7777;
        self.blocking(move |root| write_sync(root, &p, &content, mode))
            .await
    }

    /// Streams a regular file in [`READ_CHUNK`]-sized pieces.
    pub async fn read(&self, path: &str) -> Result<ByteStream, ProviderError> {
        let p = SandboxPath::parse(path)?;
        let abs = p.abs().to_string();
        let file = self.blocking(move |root| open_regular(root, &p)).await?;
        let file = tokio::fs::File::from_std(file);
        let stream = tokio_util::io::ReaderStream::with_capacity(file, READ_CHUNK)
            .map(move |r| r.map_err(|e| map_io(e, &abs)));
        Ok(Box::pin(stream))
    }

    /// Reads a whole file into memory (for small files and tests).
    pub async fn read_to_vec(&self, path: &str) -> Result<Vec<u8>, ProviderError> {
        let mut stream = self.read(path).await?;
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    /// The entries of a directory, sorted by name; symlinks are described,
    /// never followed.
    pub async fn list(&self, path: &str) -> Result<Vec<FileInfo>, ProviderError> {
        let p = SandboxPath::parse(path)?;
        self.blocking(move |root| list_sync(root, &p)).await
    }

    /// Describes `path` itself (`lstat`: a symlink is not followed).
    pub async fn stat(&self, path: &str) -> Result<FileInfo, ProviderError> {
        let p = SandboxPath::parse(path)?;
        self.blocking(move |root| {
            let md = if p.is_root() {
                root.dir_metadata()
            } else {
                root.symlink_metadata(p.rel())
            };
            Ok(file_info(&p, &md.map_err(|e| map_io(e, p.abs()))?))
        })
        .await
    }

    /// Moves `from` to `to` (creating `to`'s parent directories); a symlink
    /// is moved as a link.
    pub async fn rename(&self, from: &str, to: &str) -> Result<(), ProviderError> {
        let from = SandboxPath::parse(from)?;
        let to = SandboxPath::parse(to)?;
        self.blocking(move |root| rename_sync(root, &from, &to))
            .await
    }

    /// Sets the permission bits of `path`.
    pub async fn chmod(&self, path: &str, mode: u32) -> Result<(), ProviderError> {
        let p = SandboxPath::parse(path)?;
        if mode > 0o7777 {
            return Err(ProviderError::InvalidInput(format!(
                "mode {mode:o} for {p} is not a permission mode"
            )));
        }
        self.blocking(move |root| {
            let target = if p.is_root() { Path::new(".") } else { p.rel() };
            root.set_permissions(target, Permissions::from_mode(mode))
                .map_err(|e| map_io(e, p.abs()))
        })
        .await
    }

    /// Deletes a file or symlink; a directory only if it is empty or
    /// `recursive` is set. The root itself cannot be deleted.
    pub async fn delete(&self, path: &str, recursive: bool) -> Result<(), ProviderError> {
        let p = SandboxPath::parse(path)?;
        self.blocking(move |root| delete_sync(root, &p, recursive))
            .await
    }

    /// Absolute sandbox paths matching `pattern` (`*`, `?`, `[..]`, `**`),
    /// sorted, at most [`MAX_GLOB_RESULTS`]. Symlinks are never followed.
    pub async fn glob(&self, pattern: &str) -> Result<Vec<String>, ProviderError> {
        let pattern = pattern.to_string();
        self.blocking(move |root| glob::glob_sync(root, &pattern))
            .await
    }

    /// Creates a directory and its parents (used for exec working dirs).
    pub async fn create_dir_all(&self, path: &str) -> Result<(), ProviderError> {
        let p = SandboxPath::parse(path)?;
        self.blocking(move |root| {
            if !p.is_root() {
                root.create_dir_all(p.rel())
                    .map_err(|e| map_io(e, p.abs()))?;
            }
            Ok(())
        })
        .await
    }

    /// Runs `f` on a blocking thread with the root opened.
    async fn blocking<T, F>(&self, f: F) -> Result<T, ProviderError>
    where
        T: Send + 'static,
        F: FnOnce(&Dir) -> Result<T, ProviderError> + Send + 'static,
    {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let dir = Dir::open_ambient_dir(&root, ambient_authority()).map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    ProviderError::NotFound("sandbox root".into())
                } else {
                    ProviderError::internal("cannot open the sandbox root", e)
                }
            })?;
            f(&dir)
        })
        .await
        .map_err(|e| ProviderError::internal("the file operation failed", e))?
    }
}

fn write_sync(root: &Dir, p: &SandboxPath, content: &[u8], mode: u32) -> Result<(), ProviderError> {
    let Some((parent, name)) = p.split() else {
        return Err(ProviderError::InvalidInput("/ is a directory".into()));
    };
    let dir = open_dir_creating(root, parent, p)?;
    if let Ok(md) = dir.symlink_metadata(name)
        && md.is_dir()
    {
        return Err(ProviderError::InvalidInput(format!("{p} is a directory")));
    }
    let tmp = temp_name();
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true).mode(0o600);
    let result = (|| -> io::Result<()> {
        let mut file = dir.open_with(&tmp, &opts)?;
        file.write_all(content)?;
        file.set_permissions(Permissions::from_mode(mode))?;
        dir.rename(&tmp, &dir, name)
    })();
    if let Err(e) = result {
        let _ = dir.remove_file(&tmp);
        return Err(map_io(e, p.abs()));
    }
    Ok(())
}

/// Opens (creating as needed) the directory `parent` under `root`.
fn open_dir_creating(root: &Dir, parent: &Path, p: &SandboxPath) -> Result<Dir, ProviderError> {
    if parent.as_os_str().is_empty() {
        return root.try_clone().map_err(|e| map_io(e, p.abs()));
    }
    root.create_dir_all(parent)
        .map_err(|e| map_io(e, p.abs()))?;
    root.open_dir(parent).map_err(|e| map_io(e, p.abs()))
}

/// A name for a temporary file that no other writer of this process uses.
fn temp_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(".stacyvm-{}-{n}-{nanos}.tmp", std::process::id())
}

/// Opens a regular file for reading. `O_NONBLOCK` keeps a FIFO planted by
/// the sandbox from hanging the open; anything but a regular file is refused.
fn open_regular(root: &Dir, p: &SandboxPath) -> Result<std::fs::File, ProviderError> {
    if p.is_root() {
        return Err(ProviderError::InvalidInput("/ is a directory".into()));
    }
    let check = |md: &Metadata| -> Result<(), ProviderError> {
        if md.is_dir() {
            Err(ProviderError::InvalidInput(format!("{p} is a directory")))
        } else if !md.is_file() {
            Err(ProviderError::InvalidInput(format!(
                "{p} is not a regular file"
            )))
        } else {
            Ok(())
        }
    };
    check(&root.metadata(p.rel()).map_err(|e| map_io(e, p.abs()))?)?;
    let mut opts = OpenOptions::new();
    opts.read(true)
        .custom_flags((rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY).bits() as i32);
    let file = root
        .open_with(p.rel(), &opts)
        .map_err(|e| map_io(e, p.abs()))?;
    // The path may have been swapped between the check and the open.
    check(&file.metadata().map_err(|e| map_io(e, p.abs()))?)?;
    Ok(file.into_std())
}

fn list_sync(root: &Dir, p: &SandboxPath) -> Result<Vec<FileInfo>, ProviderError> {
    let dir = if p.is_root() {
        root.try_clone()
    } else {
        let md = root.metadata(p.rel()).map_err(|e| map_io(e, p.abs()))?;
        if !md.is_dir() {
            return Err(ProviderError::InvalidInput(format!(
                "{p} is not a directory"
            )));
        }
        root.open_dir(p.rel())
    }
    .map_err(|e| map_io(e, p.abs()))?;
    let mut out = Vec::new();
    for entry in dir.entries().map_err(|e| map_io(e, p.abs()))? {
        let entry = entry.map_err(|e| map_io(e, p.abs()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            // The API speaks UTF-8 paths; a name that is not cannot be
            // addressed through it, so it is not listed.
            continue;
        };
        let child = p.join(name);
        match entry.metadata() {
            Ok(md) => out.push(file_info(&child, &md)),
            // Removed while we were listing.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(map_io(e, child.abs())),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn rename_sync(root: &Dir, from: &SandboxPath, to: &SandboxPath) -> Result<(), ProviderError> {
    let (Some((from_parent, from_name)), Some((to_parent, to_name))) = (from.split(), to.split())
    else {
        return Err(ProviderError::InvalidInput(
            "cannot move the sandbox root".into(),
        ));
    };
    let src = if from_parent.as_os_str().is_empty() {
        root.try_clone()
    } else {
        root.open_dir(from_parent)
    }
    .map_err(|e| map_io(e, from.abs()))?;
    // Report a missing source before creating the destination's parents.
    src.symlink_metadata(from_name)
        .map_err(|e| map_io(e, from.abs()))?;
    let dst = open_dir_creating(root, to_parent, to)?;
    src.rename(from_name, &dst, to_name)
        .map_err(|e| map_io(e, to.abs()))
}

fn delete_sync(root: &Dir, p: &SandboxPath, recursive: bool) -> Result<(), ProviderError> {
    let Some((parent, name)) = p.split() else {
        return Err(ProviderError::InvalidInput(
            "cannot delete the sandbox root".into(),
        ));
    };
    let dir = if parent.as_os_str().is_empty() {
        root.try_clone()
    } else {
        root.open_dir(parent)
    }
    .map_err(|e| map_io(e, p.abs()))?;
    let md = dir.symlink_metadata(name).map_err(|e| map_io(e, p.abs()))?;
    let result = if !md.is_dir() {
        dir.remove_file(name)
    } else if recursive {
        dir.remove_dir_all(name)
    } else {
        dir.remove_dir(name)
    };
    result.map_err(|e| map_io(e, p.abs()))
}

/// Describes an entry from its (not followed) metadata.
fn file_info(p: &SandboxPath, md: &Metadata) -> FileInfo {
    let mod_time = md
        .modified()
        .map(|t| DateTime::<Utc>::from(t.into_std()))
        .unwrap_or_default();
    FileInfo {
        name: p.name().to_string(),
        path: p.abs().to_string(),
        size: md.len(),
        is_dir: md.is_dir(),
        mod_time,
        mode: FileMode::render(md.mode()),
        is_symlink: md.file_type().is_symlink(),
    }
}

/// Maps an I/O error on sandbox path `path` to a provider error. Messages
/// name the sandbox path, never the host path.
pub(crate) fn map_io(e: io::Error, path: &str) -> ProviderError {
    use io::ErrorKind as K;
    match e.kind() {
        K::NotFound => ProviderError::NotFound(path.to_string()),
        // cap-std reports every escape (absolute symlink, `..` out of the
        // root, openat2's EXDEV) as PermissionDenied.
        K::PermissionDenied if e.to_string().contains("outside of the filesystem") => {
            ProviderError::InvalidInput(format!("path {path} leads outside the sandbox"))
        }
        K::PermissionDenied => ProviderError::InvalidInput(format!("permission denied: {path}")),
        K::NotADirectory => {
            ProviderError::InvalidInput(format!("a parent of {path} is not a directory"))
        }
        K::IsADirectory => ProviderError::InvalidInput(format!("{path} is a directory")),
        K::DirectoryNotEmpty => {
            ProviderError::InvalidInput(format!("directory {path} is not empty"))
        }
        K::AlreadyExists => ProviderError::InvalidInput(format!("{path} already exists")),
        K::InvalidInput | K::InvalidFilename => {
            ProviderError::InvalidInput(format!("invalid path {path}: {e}"))
        }
        K::StorageFull | K::QuotaExceeded | K::FileTooLarge => {
            ProviderError::ResourceLimit(format!("{path}: {e}"))
        }
        _ => match e.raw_os_error() {
            Some(code) if code == rustix::io::Errno::LOOP.raw_os_error() => {
                ProviderError::InvalidInput(format!("too many symlinks in {path}"))
            }
            Some(code) if code == rustix::io::Errno::XDEV.raw_os_error() => {
                ProviderError::InvalidInput(format!("path {path} leads outside the sandbox"))
            }
            Some(code) if code == rustix::io::Errno::INVAL.raw_os_error() => {
                ProviderError::InvalidInput(format!("invalid operation on {path}"))
            }
            _ => ProviderError::internal(format!("file operation on {path} failed"), e),
        },
    }
}

#[cfg(test)]
mod tests;
