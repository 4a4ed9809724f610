//! The image index (`index.json`): reference → manifest digest, config,
//! layers, size, pulled-at. It is small, so every read loads it from disk
//! (another process, e.g. the CLI, may have changed it) and every change is a
//! read-modify-write under an exclusive `flock`, written to a temp file and
//! renamed so a crash never leaves half a file.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};

use super::error::{ImageError, Result};

/// What the runtime needs from an image's config to build a process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRuntimeConfig {
    /// `KEY=value` pairs.
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// Working directory; `None` means `/`.
    pub workdir: Option<String>,
    /// `user[:group]`, names or ids; `None` means root.
    pub user: Option<String>,
}

/// One layer of a cached image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Digest of the uncompressed tar; names the directory `layers/<hex>`.
    pub diff_id: String,
    /// Digest of the blob as distributed (compressed).
    pub blob_digest: String,
    pub media_type: String,
    /// Size of the distributed blob in bytes.
    pub size: u64,
}

/// Where a cached image came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageSource {
    Registry,
    OciLayout,
    RootfsTar,
}

/// One entry of the image index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Normalised reference, e.g. `docker.io/library/alpine:latest`.
    pub reference: String,
    /// Digest of the platform image manifest.
    pub manifest_digest: String,
    pub config_digest: String,
    /// Lowest layer first.
    pub layers: Vec<LayerRecord>,
    pub config: ImageRuntimeConfig,
    /// `os/arch` of the image.
    pub platform: String,
    /// Sum of the distributed layer sizes in bytes.
    pub size: u64,
    pub pulled_at: DateTime<Utc>,
    pub source: ImageSource,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct IndexFile {
    pub version: u32,
    pub images: BTreeMap<String, ImageRecord>,
}

pub(crate) fn load(path: &Path) -> Result<IndexFile> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::malformed(format!("index {}", path.display()), e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(IndexFile {
            version: 1,
            images: BTreeMap::new(),
        }),
        Err(e) => Err(ImageError::io(path, e)),
    }
}

/// Writes `value` as JSON to `path` atomically (temp file, fsync, rename).
pub(crate) fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| ImageError::malformed(path.display().to_string(), e))?;
    write_atomic(path, &bytes)
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp.{}.{n}", std::process::id()));
    let mut f = fs::File::create(&tmp).map_err(|e| ImageError::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| ImageError::io(&tmp, e))?;
    f.sync_all().map_err(|e| ImageError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| ImageError::io(path, e))
}

/// An advisory lock on a file, released on drop.
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: fs::File,
}

impl FileLock {
    fn open(path: &Path) -> Result<fs::File> {
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| ImageError::io(path, e))
    }

    /// Blocks until the lock is held (exclusive or shared).
    pub fn acquire(path: &Path, exclusive: bool) -> Result<Self> {
        let file = Self::open(path)?;
        let op = if exclusive {
            FlockOperation::LockExclusive
        } else {
            FlockOperation::LockShared
        };
        rustix::fs::flock(&file, op).map_err(|e| ImageError::io(path, e.into()))?;
        Ok(FileLock { _file: file })
    }

    /// Takes the exclusive lock if nobody holds it, else `None`.
    pub fn try_exclusive(path: &Path) -> Result<Option<Self>> {
        let file = Self::open(path)?;
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(FileLock { _file: file })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(ImageError::io(path, e.into())),
        }
    }
}

/// Read-modify-write of the index under its lock. Blocking: call from
/// `spawn_blocking`.
pub(crate) fn update<T>(root: &Path, f: impl FnOnce(&mut IndexFile) -> Result<T>) -> Result<T> {
    let _lock = FileLock::acquire(&root.join("index.lock"), true)?;
    let path = root.join("index.json");
    let mut index = load(&path)?;
    index.version = 1;
    let out = f(&mut index)?;
    write_json_atomic(&path, &index)?;
    Ok(out)
}

/// Lease files: `leases/<holder>` lists the layer hexes a holder (a sandbox)
/// has mounted, so garbage collection keeps them even after `remove`.
pub(crate) fn lease_path(root: &Path, holder: &str) -> Result<PathBuf> {
    let ok = !holder.is_empty()
        && holder.len() <= 128
        && !holder.starts_with('.')
        && holder
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        return Err(ImageError::Config(format!(
            "lease holder {holder:?} must be 1-128 characters of [A-Za-z0-9._-]"
        )));
    }
    Ok(root.join("leases").join(holder))
}
