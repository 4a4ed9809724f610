//! The native provider's OCI image store: pulls images from registries
//! (Docker Hub for short names, mirrors, plain-HTTP local registries,
//! credentials), imports OCI layouts and rootfs tarballs, and keeps a
//! content-addressed cache the runtime stacks with overlayfs.
//!
//! Layout of the data directory:
//!
//! ```text
//! index.json             reference → manifest digest, config, layers, ...
//! blobs/sha256/<hex>     manifests and image configs, verified
//! layers/<hex>/          one directory per layer, named by its diff_id,
//!                        holding overlayfs whiteouts: usable as a lowerdir
//! leases/<holder>        layers a sandbox has mounted (kept by gc)
//! tmp/<pid>-...          work in progress; renamed into place when complete
//! ```
//!
//! Layers are kept per layer (not flattened per image) so images that share
//! a base share its directories, and a sandbox's rootfs is an overlay of
//! `layers` (lowest first) under its own upper directory. See `docs/images.md`.

mod config;
mod digest;
mod error;
mod import;
mod index;
mod layer;
mod manifest;
mod pull;
mod registry;
mod unpack;

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};

pub use config::{ImageConfig, RegistryCredential};
pub use digest::Digest;
pub use error::ImageError;
pub use index::{ImageRecord, ImageRuntimeConfig, ImageSource, LayerRecord};
pub use registry::parse_reference;
pub use unpack::{UnpackStats, unpack_layer};

use error::Result;
use index::FileLock;
use registry::Registry;

/// What the runtime needs to start a container from a cached image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageHandle {
    /// Normalised reference, e.g. `docker.io/library/alpine:latest`.
    pub reference: String,
    /// Manifest digest (`sha256:...`).
    pub digest: String,
    /// Layer directories, lowest first: overlayfs `lowerdir` wants them in
    /// the reverse order (topmost first).
    pub layers: Vec<PathBuf>,
    /// Layer diff_ids, same order as `layers`.
    pub layer_digests: Vec<String>,
    pub config: ImageRuntimeConfig,
}

/// A step of a pull, for progress bars and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullProgress {
    /// The manifest is known: how many layers, how many bytes to consider.
    Resolved {
        reference: String,
        digest: String,
        layers: usize,
        total_bytes: u64,
    },
    /// A layer was already in the cache.
    LayerCached { digest: String, size: u64 },
    /// Bytes of a layer downloaded so far (cumulative for that layer).
    Downloading {
        digest: String,
        downloaded: u64,
        size: u64,
    },
    /// A layer is being unpacked.
    Unpacking { digest: String },
    /// A layer is unpacked and in the cache.
    LayerDone { digest: String, size: u64 },
    /// The image is in the index.
    Done { reference: String, digest: String },
}

/// Network work done since the store was opened (tests, metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub manifests_fetched: u64,
    pub blobs_fetched: u64,
    pub layers_unpacked: u64,
}

/// What a garbage collection did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    pub layers_removed: usize,
    pub blobs_removed: usize,
    /// True when a pull was running (here or in another process), so
    /// nothing was collected; the next gc will.
    pub skipped: bool,
}

/// The image store; a cheap-clone handle.
#[derive(Clone, Debug)]
pub struct ImageStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    registry: Registry,
    max_concurrent_layers: usize,
    platform: (String, String, Option<String>),
    /// Single-flight locks: one pull per reference, one unpack per layer.
    flights: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
    layers_unpacked: std::sync::atomic::AtomicU64,
}

impl ImageStore {
    /// Opens (creating if needed) the store in `dir` and removes what an
    /// interrupted run of a dead process left in `tmp/`.
    pub fn open(dir: impl Into<PathBuf>, config: ImageConfig) -> Result<ImageStore> {
        config.validate().map_err(ImageError::Config)?;
        let root: PathBuf = dir.into();
        for sub in ["blobs/sha256", "layers", "leases", "tmp"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(|e| ImageError::io(&p, e))?;
        }
        layer::sweep_tmp(&root.join("tmp"));
        let (os, arch, variant) = config.platform_parts();
        let platform = (os.to_owned(), arch.to_owned(), variant.map(str::to_owned));
        Ok(ImageStore {
            inner: Arc::new(Inner {
                root,
                max_concurrent_layers: config.max_concurrent_layers,
                platform,
                registry: Registry::new(config),
                flights: Mutex::default(),
                layers_unpacked: Default::default(),
            }),
        })
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Returns the cached image, pulling it first if it is missing (or a
    /// layer directory has gone). Concurrent calls for one image pull once.
    pub async fn ensure(&self, reference: &str) -> Result<ImageHandle> {
        self.ensure_with(reference, |_| {}).await
    }

    /// [`ensure`](Self::ensure), reporting pull progress if it has to pull.
    pub async fn ensure_with(
        &self,
        reference: &str,
        progress: impl Fn(PullProgress) + Send + Sync,
    ) -> Result<ImageHandle> {
        let r = parse_reference(reference)?;
        let key = r.whole();
        if let Some(h) = self.cached(&key).await? {
            return Ok(h);
        }
        let flight = self.flight(&format!("image:{key}"));
        let _g = flight.lock().await;
        if let Some(h) = self.cached(&key).await? {
            return Ok(h);
        }
        self.pull_locked(&r, &progress).await
    }

    /// Pulls `reference` from its registry (through mirrors if configured),
    /// even if cached: a moved tag is updated; unchanged layers are reused.
    pub async fn pull(
        &self,
        reference: &str,
        progress: impl Fn(PullProgress) + Send + Sync,
    ) -> Result<ImageHandle> {
        let r = parse_reference(reference)?;
        let flight = self.flight(&format!("image:{}", r.whole()));
        let _g = flight.lock().await;
        self.pull_locked(&r, &progress).await
    }

    /// All cached images, sorted by reference.
    pub async fn list(&self) -> Result<Vec<ImageRecord>> {
        let path = self.inner.root.join("index.json");
        let index = blocking(move || index::load(&path)).await?;
        Ok(index.images.into_values().collect())
    }

    /// The index entry of one image, if cached.
    pub async fn inspect(&self, reference: &str) -> Result<Option<ImageRecord>> {
        let key = parse_reference(reference)?.whole();
        let path = self.inner.root.join("index.json");
        let mut index = blocking(move || index::load(&path)).await?;
        Ok(index.images.remove(&key))
    }

    /// Removes an image from the index, then collects the layers and blobs
    /// no other image or lease uses.
    pub async fn remove(&self, reference: &str) -> Result<GcReport> {
        let key = parse_reference(reference)?.whole();
        let root = self.inner.root.clone();
        blocking(move || {
            index::update(&root, |idx| {
                idx.images
                    .remove(&key)
                    .map(|_| ())
                    .ok_or(ImageError::NotFound(key.clone()))
            })
        })
        .await?;
        self.gc().await
    }

    /// Deletes layer directories and blobs that no image and no lease
    /// references. Skipped (not blocked) while any pull runs.
    pub async fn gc(&self) -> Result<GcReport> {
        let root = self.inner.root.clone();
        blocking(move || gc_blocking(&root)).await
    }

    /// Records that `holder` (a sandbox id) has `image`'s layers mounted, so
    /// gc keeps them even if the image is removed meanwhile.
    pub async fn lease(&self, holder: &str, image: &ImageHandle) -> Result<()> {
        let path = index::lease_path(&self.inner.root, holder)?;
        let hexes: Vec<String> = image
            .layer_digests
            .iter()
            .filter_map(|d| Digest::parse(d).ok().map(|d| d.hex().to_owned()))
            .collect();
        blocking(move || index::write_json_atomic(&path, &hexes)).await
    }

    /// Drops `holder`'s lease and collects what is no longer used.
    pub async fn release(&self, holder: &str) -> Result<GcReport> {
        self.drop_lease(holder).await?;
        self.gc().await
    }

    /// Drops `holder`'s lease without collecting: layers it kept alive go
    /// at the next [`gc`](Self::gc).
    pub async fn drop_lease(&self, holder: &str) -> Result<()> {
        let path = index::lease_path(&self.inner.root, holder)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ImageError::io(&path, e)),
        }
    }

    /// Counters of network and unpack work since `open`.
    pub fn stats(&self) -> StoreStats {
        let c = &self.inner.registry.counters;
        StoreStats {
            manifests_fetched: c.manifests.load(Ordering::Relaxed),
            blobs_fetched: c.blobs.load(Ordering::Relaxed),
            layers_unpacked: self.inner.layers_unpacked.load(Ordering::Relaxed),
        }
    }

    fn flight(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.inner.flights.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        if let Some(a) = map.get(key).and_then(Weak::upgrade) {
            return a;
        }
        let a = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(key.to_owned(), Arc::downgrade(&a));
        a
    }

    /// The handle of a cached image whose layers are all present.
    async fn cached(&self, key: &str) -> Result<Option<ImageHandle>> {
        let path = self.inner.root.join("index.json");
        let mut index = blocking(move || index::load(&path)).await?;
        let Some(rec) = index.images.remove(key) else {
            return Ok(None);
        };
        let h = self.handle(&rec)?;
        if h.layers.iter().all(|p| p.is_dir()) {
            Ok(Some(h))
        } else {
            tracing::warn!(
                reference = key,
                "cached image lost a layer directory; fetching again"
            );
            Ok(None)
        }
    }

    fn handle(&self, rec: &ImageRecord) -> Result<ImageHandle> {
        let mut layers = Vec::with_capacity(rec.layers.len());
        for l in &rec.layers {
            let d = Digest::parse(&l.diff_id)?;
            layers.push(self.inner.root.join("layers").join(d.hex()));
        }
        Ok(ImageHandle {
            reference: rec.reference.clone(),
            digest: rec.manifest_digest.clone(),
            layers,
            layer_digests: rec.layers.iter().map(|l| l.diff_id.clone()).collect(),
            config: rec.config.clone(),
        })
    }
}

/// Runs blocking filesystem work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ImageError::io("<blocking task>", std::io::Error::other(e.to_string())))?
}

fn gc_blocking(root: &Path) -> Result<GcReport> {
    let Some(_gc) = FileLock::try_exclusive(&root.join("gc.lock"))? else {
        return Ok(GcReport {
            skipped: true,
            ..Default::default()
        });
    };
    let _idx = FileLock::acquire(&root.join("index.lock"), true)?;
    let index = index::load(&root.join("index.json"))?;
    let mut live_layers = BTreeSet::new();
    let mut live_blobs = BTreeSet::new();
    for rec in index.images.values() {
        for l in &rec.layers {
            if let Ok(d) = Digest::parse(&l.diff_id) {
                live_layers.insert(d.hex().to_owned());
            }
        }
        for b in [&rec.manifest_digest, &rec.config_digest] {
            if let Ok(d) = Digest::parse(b) {
                live_blobs.insert(d.hex().to_owned());
            }
        }
    }
    let leases = root.join("leases");
    for entry in fs::read_dir(&leases)
        .map_err(|e| ImageError::io(&leases, e))?
        .flatten()
    {
        let hexes: Vec<String> = fs::read(entry.path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        live_layers.extend(hexes);
    }
    let mut report = GcReport::default();
    let layers = root.join("layers");
    let tmp = root.join("tmp");
    for entry in fs::read_dir(&layers)
        .map_err(|e| ImageError::io(&layers, e))?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if live_layers.contains(&name) {
            continue;
        }
        // Move out of `layers/` first: a half-deleted directory must never
        // be mistaken for a complete layer.
        let doomed = layer::TmpPath::new(&tmp, &format!("gc-{name}"));
        fs::rename(entry.path(), doomed.path()).map_err(|e| ImageError::io(entry.path(), e))?;
        drop(doomed);
        report.layers_removed += 1;
    }
    let blobs = root.join("blobs/sha256");
    for entry in fs::read_dir(&blobs)
        .map_err(|e| ImageError::io(&blobs, e))?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !live_blobs.contains(&name) {
            let _ = fs::remove_file(entry.path());
            report.blobs_removed += 1;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod unit_tests;
