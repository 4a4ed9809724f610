//! The install pipeline shared by registry pulls and OCI layout imports:
//! manifest → config → layers (concurrently, each once) → blobs → index.
//! The index entry is written last, so an image is listed only when all of
//! its layers are complete.

use std::fs;
use std::path::Path;
use std::sync::atomic::Ordering;

use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use oci_client::Reference;

use super::digest::Digest;
use super::error::{ImageError, Result};
use super::index::{self, FileLock, ImageRecord, ImageRuntimeConfig, ImageSource, LayerRecord};
use super::layer::{TmpPath, commit_layer, unpack_blob};
use super::manifest::{ConfigFile, Descriptor, Manifest, Parsed, select_platform};
use super::registry::Endpoint;
use super::{ImageHandle, ImageStore, PullProgress, blocking};

/// Where blobs come from.
pub(super) enum Source<'a> {
    Registry(&'a Endpoint),
    /// An OCI layout directory (`blobs/sha256/<hex>`).
    Layout(&'a Path),
}

pub(super) type Progress<'a> = &'a (dyn Fn(PullProgress) + Send + Sync);

impl ImageStore {
    /// Holds the shared side of `gc.lock` while an install runs, so gc never
    /// deletes a layer that is complete but not yet in the index.
    pub(super) async fn gc_guard(&self) -> Result<FileLock> {
        let path = self.inner.root.join("gc.lock");
        blocking(move || FileLock::acquire(&path, false)).await
    }

    /// Pulls under the per-image flight lock (held by the caller).
    pub(super) async fn pull_locked(
        &self,
        r: &Reference,
        progress: Progress<'_>,
    ) -> Result<ImageHandle> {
        let key = r.whole();
        let _gc = self.gc_guard().await?;
        let registry = &self.inner.registry;
        let (ep, bytes, digest) = registry.fetch_manifest(r).await?;
        let what = format!("manifest of {key}");
        let (manifest, manifest_digest) = match Manifest::parse(&what, &bytes)? {
            Parsed::Index(list) => {
                let d = self.pick_platform(&key, &list)?;
                let d = Digest::parse(&d.digest)?;
                (registry.fetch_manifest_by_digest(&ep, &d).await?, d)
            }
            Parsed::Image { .. } => (bytes, digest),
        };
        if let Some(h) = self.cached(&key).await?
            && h.digest == manifest_digest.to_string()
        {
            progress(PullProgress::Done {
                reference: key,
                digest: h.digest.clone(),
            });
            return Ok(h);
        }
        self.install(
            &key,
            &manifest,
            &manifest_digest,
            &Source::Registry(&ep),
            ImageSource::Registry,
            progress,
        )
        .await
    }

    pub(super) fn pick_platform<'a>(
        &self,
        key: &str,
        list: &'a [Descriptor],
    ) -> Result<&'a Descriptor> {
        let (os, arch, variant) = &self.inner.platform;
        select_platform(list, os, arch, variant.as_deref()).ok_or_else(|| ImageError::NoPlatform {
            reference: key.to_owned(),
            platform: format!("{os}/{arch}"),
        })
    }

    /// Installs an image manifest whose blobs `src` provides.
    pub(super) async fn install(
        &self,
        key: &str,
        manifest: &[u8],
        manifest_digest: &Digest,
        src: &Source<'_>,
        kind: ImageSource,
        progress: Progress<'_>,
    ) -> Result<ImageHandle> {
        let what = format!("manifest of {key}");
        let Parsed::Image { config, layers } = Manifest::parse(&what, manifest)? else {
            return Err(ImageError::malformed(what, "an index inside an index"));
        };
        let config_digest = Digest::parse(&config.digest)?;
        let config_bytes = self.blob_bytes(src, &config).await?;
        let cfg_what = format!("config of {key}");
        let cfg = ConfigFile::parse(&cfg_what, &config_bytes)?;
        let diff_ids = cfg.diff_ids(&cfg_what)?;
        if diff_ids.len() != layers.len() {
            return Err(ImageError::malformed(
                cfg_what,
                format!("{} diff_ids for {} layers", diff_ids.len(), layers.len()),
            ));
        }
        progress(PullProgress::Resolved {
            reference: key.to_owned(),
            digest: manifest_digest.to_string(),
            layers: layers.len(),
            total_bytes: layers.iter().map(|l| l.size.max(0) as u64).sum(),
        });
        // Boxed, built in a plain loop: a closure producing these futures
        // trips rustc's higher-ranked `Send` inference (rust#110338) and
        // makes callers' futures unspawnable.
        let mut jobs: Vec<futures::future::BoxFuture<'_, Result<()>>> = Vec::new();
        for (desc, diff) in layers.iter().zip(&diff_ids) {
            jobs.push(Box::pin(self.ensure_layer(src, desc, diff, progress)));
        }
        futures::stream::iter(jobs)
            .buffer_unordered(self.inner.max_concurrent_layers)
            .try_collect::<Vec<()>>()
            .await?;
        let h = self
            .commit_image(
                key,
                (manifest, manifest_digest),
                (&config_bytes, &config_digest),
                &cfg,
                &layers,
                &diff_ids,
                kind,
            )
            .await?;
        progress(PullProgress::Done {
            reference: key.to_owned(),
            digest: h.digest.clone(),
        });
        Ok(h)
    }

    async fn blob_bytes(&self, src: &Source<'_>, desc: &Descriptor) -> Result<Vec<u8>> {
        match src {
            Source::Registry(ep) => self.inner.registry.fetch_blob_bytes(ep, desc).await,
            Source::Layout(dir) => {
                let d = Digest::parse(&desc.digest)?;
                let path = dir.join("blobs/sha256").join(d.hex());
                let bytes = tokio::fs::read(&path)
                    .await
                    .map_err(|e| ImageError::io(&path, e))?;
                d.verify(&path.display().to_string(), &bytes)?;
                Ok(bytes)
            }
        }
    }

    /// Makes sure `layers/<diff hex>` exists, fetching and unpacking once.
    async fn ensure_layer(
        &self,
        src: &Source<'_>,
        desc: &Descriptor,
        diff: &Digest,
        progress: Progress<'_>,
    ) -> Result<()> {
        let root = &self.inner.root;
        let final_dir = root.join("layers").join(diff.hex());
        let size = desc.size.max(0) as u64;
        let cached = || PullProgress::LayerCached {
            digest: desc.digest.clone(),
            size,
        };
        if final_dir.is_dir() {
            progress(cached());
            return Ok(());
        }
        let flight = self.flight(&format!("layer:{}", diff.hex()));
        let _g = flight.lock().await;
        if final_dir.is_dir() {
            progress(cached());
            return Ok(());
        }
        let blob_digest = Digest::parse(&desc.digest)?;
        let tmp_root = root.join("tmp");
        let (blob_path, blob_guard) = match src {
            Source::Registry(ep) => {
                let g = TmpPath::new(&tmp_root, "blob");
                let report = |n| {
                    progress(PullProgress::Downloading {
                        digest: desc.digest.clone(),
                        downloaded: n,
                        size,
                    })
                };
                self.inner
                    .registry
                    .fetch_blob_to_file(ep, desc, g.path(), &report)
                    .await?;
                (g.path().to_owned(), Some(g))
            }
            Source::Layout(dir) => (dir.join("blobs/sha256").join(blob_digest.hex()), None),
        };
        progress(PullProgress::Unpacking {
            digest: desc.digest.clone(),
        });
        let dir_guard = TmpPath::new(&tmp_root, "layer");
        let layers_dir = root.join("layers");
        let diff = diff.clone();
        // The guards move into the blocking task: if this future is dropped
        // mid-unpack, the task still finishes (or cleans up) on its own.
        blocking(move || {
            let _blob_guard = blob_guard;
            let dest = dir_guard.path();
            fs::create_dir(dest).map_err(|e| ImageError::io(dest, e))?;
            unpack_blob(&blob_path, Some(&blob_digest), Some(&diff), dest)?;
            commit_layer(dest, &layers_dir, &diff)?;
            Ok(())
        })
        .await?;
        self.inner.layers_unpacked.fetch_add(1, Ordering::Relaxed);
        progress(PullProgress::LayerDone {
            digest: desc.digest.clone(),
            size,
        });
        Ok(())
    }

    /// Stores manifest and config blobs, then the index entry (last).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn commit_image(
        &self,
        key: &str,
        (manifest, manifest_digest): (&[u8], &Digest),
        (config, config_digest): (&[u8], &Digest),
        cfg: &ConfigFile,
        layers: &[Descriptor],
        diff_ids: &[Digest],
        kind: ImageSource,
    ) -> Result<ImageHandle> {
        let c = cfg.config.clone().unwrap_or_default();
        let record = ImageRecord {
            reference: key.to_owned(),
            manifest_digest: manifest_digest.to_string(),
            config_digest: config_digest.to_string(),
            layers: layers
                .iter()
                .zip(diff_ids)
                .map(|(l, d)| LayerRecord {
                    diff_id: d.to_string(),
                    blob_digest: l.digest.clone(),
                    media_type: l.media_type.clone(),
                    size: l.size.max(0) as u64,
                })
                .collect(),
            config: ImageRuntimeConfig {
                env: c.env.unwrap_or_default(),
                entrypoint: c.entrypoint.unwrap_or_default(),
                cmd: c.cmd.unwrap_or_default(),
                workdir: c.working_dir.filter(|w| !w.is_empty()),
                user: c.user.filter(|u| !u.is_empty()),
            },
            platform: format!("{}/{}", cfg.os, cfg.architecture),
            size: layers.iter().map(|l| l.size.max(0) as u64).sum(),
            pulled_at: Utc::now(),
            source: kind,
        };
        let root = self.inner.root.clone();
        let blobs = [
            (manifest_digest.clone(), manifest.to_vec()),
            (config_digest.clone(), config.to_vec()),
        ];
        let rec = record.clone();
        blocking(move || {
            for (d, bytes) in &blobs {
                index::write_atomic(&root.join("blobs/sha256").join(d.hex()), bytes)?;
            }
            index::update(&root, |idx| {
                idx.images.insert(rec.reference.clone(), rec);
                Ok(())
            })
        })
        .await?;
        self.handle(&record)
    }
}
