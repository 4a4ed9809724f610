//! One layer's way into the cache: blob file → (decompress, verify both
//! digests) → private temp directory → atomic rename to `layers/<hex>`.
//! A layer directory therefore exists only once complete and verified.

use std::fs;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::digest::{Digest, HashingReader, decompress};
use super::error::{ImageError, Result};
use super::unpack::unpack_layer;

/// What unpacking a blob established.
#[derive(Debug)]
pub(crate) struct Unpacked {
    pub blob_digest: Digest,
    pub blob_size: u64,
    pub diff_id: Digest,
}

/// Unpacks `blob` into the empty directory `dest`. Each expected digest, when
/// given, must match (the blob as stored, and the uncompressed tar).
pub(crate) fn unpack_blob(
    blob: &Path,
    expect_blob: Option<&Digest>,
    expect_diff: Option<&Digest>,
    dest: &Path,
) -> Result<Unpacked> {
    let name = expect_diff
        .or(expect_blob)
        .map(|d| d.to_string())
        .unwrap_or_else(|| blob.display().to_string());
    let file = fs::File::open(blob).map_err(|e| ImageError::io(blob, e))?;
    let mut outer = HashingReader::new(BufReader::new(file));
    let diff_id = {
        let (_, plain) = decompress(&mut outer).map_err(|e| ImageError::io(blob, e))?;
        let mut inner = HashingReader::new(plain);
        unpack_layer(&mut inner, dest, &name)?;
        // Anything after the tar trailer still belongs to the diff_id.
        io::copy(&mut inner, &mut io::sink()).map_err(|e| ImageError::io(blob, e))?;
        inner.finish().0
    };
    io::copy(&mut outer, &mut io::sink()).map_err(|e| ImageError::io(blob, e))?;
    let (blob_digest, blob_size) = outer.finish();
    for (what, expected, actual) in [
        ("layer blob", expect_blob, &blob_digest),
        ("layer diff_id", expect_diff, &diff_id),
    ] {
        if let Some(expected) = expected
            && expected != actual
        {
            return Err(ImageError::DigestMismatch {
                what: format!("{what} {name}"),
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
    }
    Ok(Unpacked {
        blob_digest,
        blob_size,
        diff_id,
    })
}

/// Moves a finished layer from `tmp` to `layers/<hex>`. If another pull got
/// there first, ours is dropped and theirs (identical by digest) is kept.
pub(crate) fn commit_layer(tmp: &Path, layers: &Path, diff_id: &Digest) -> Result<PathBuf> {
    let target = layers.join(diff_id.hex());
    match fs::rename(tmp, &target) {
        Ok(()) => Ok(target),
        Err(e)
            if target.is_dir()
                && [rustix::io::Errno::NOTEMPTY, rustix::io::Errno::EXIST]
                    .iter()
                    .any(|x| Some(x.raw_os_error()) == e.raw_os_error()) =>
        {
            let _ = fs::remove_dir_all(tmp);
            Ok(target)
        }
        Err(e) => Err(ImageError::io(&target, e)),
    }
}

/// A path under `tmp/` removed (file or tree) when dropped, so failed or
/// cancelled work leaves nothing behind. Names start with our pid so a
/// later start can sweep what a killed process left.
#[derive(Debug)]
pub(crate) struct TmpPath {
    path: PathBuf,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

impl TmpPath {
    pub fn new(tmp_root: &Path, suffix: &str) -> Self {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        TmpPath {
            path: tmp_root.join(format!("{}-{n}-{suffix}", std::process::id())),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TmpPath {
    fn drop(&mut self) {
        match fs::symlink_metadata(&self.path) {
            Ok(m) if m.is_dir() => {
                let _ = fs::remove_dir_all(&self.path);
            }
            Ok(_) => {
                let _ = fs::remove_file(&self.path);
            }
            Err(_) => {}
        }
    }
}

/// Removes what dead processes left in `tmp/` (entries named `<pid>-...`
/// whose pid no longer runs).
pub(crate) fn sweep_tmp(tmp_root: &Path) {
    let Ok(rd) = fs::read_dir(tmp_root) else {
        return;
    };
    let me = std::process::id();
    for entry in rd.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name.split('-').next().and_then(|p| p.parse::<u32>().ok());
        let stale = match pid {
            Some(pid) => pid != me && !Path::new(&format!("/proc/{pid}")).exists(),
            None => true,
        };
        if stale {
            let p = entry.path();
            tracing::info!(path = %p.display(), "removing leftover of an interrupted image operation");
            drop(TmpPath { path: p });
        }
    }
}
