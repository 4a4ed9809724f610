//! Importing local images: an OCI image layout directory (`oci-layout`,
//! `index.json`, `blobs/sha256/...`, as written by umoci or skopeo) and a
//! plain rootfs tarball (becomes a one-layer image with a synthesised
//! config and manifest).

use std::fs;
use std::io::Read;
use std::path::Path;

use super::digest::{Compression, Digest};
use super::error::{ImageError, Result};
use super::index::ImageSource;
use super::layer::{TmpPath, commit_layer, unpack_blob};
use super::manifest::{
    ConfigFile, ContainerConfig, Descriptor, Manifest, OCI_CONFIG, OCI_LAYER_GZIP, OCI_LAYER_TAR,
    OCI_MANIFEST, Parsed, REF_NAME, RootFs,
};
use super::pull::Source;
use super::registry::parse_reference;
use super::{ImageHandle, ImageStore, blocking};

/// `PATH` given to images imported from a bare rootfs (Docker's default).
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl ImageStore {
    /// Imports the image of an OCI layout directory under the reference
    /// `name`. `dir` may end in `:REF` (umoci/skopeo style, `layout:tag`) to
    /// pick the manifest whose `org.opencontainers.image.ref.name` is `REF`;
    /// otherwise the one named like `name`'s tag, else the only one. An
    /// index is resolved to our platform.
    pub async fn import_oci_layout(&self, dir: &Path, name: &str) -> Result<ImageHandle> {
        let (dir, wanted) = split_layout_ref(dir);
        let dir = dir.as_path();
        let r = parse_reference(name)?;
        let key = r.whole();
        let flight = self.flight(&format!("image:{key}"));
        let _g = flight.lock().await;
        let _gc = self.gc_guard().await?;

        let index_path = dir.join("index.json");
        let bytes = tokio::fs::read(&index_path)
            .await
            .map_err(|e| ImageError::io(&index_path, e))?;
        let what = index_path.display().to_string();
        let Parsed::Index(list) = Manifest::parse(&what, &bytes)? else {
            return Err(ImageError::malformed(what, "index.json has no manifests"));
        };
        let tag = r.tag().unwrap_or("latest");
        let named = |d: &&Descriptor| {
            let n = d.annotations.as_ref().and_then(|a| a.get(REF_NAME));
            match (&wanted, n) {
                (Some(w), Some(n)) => n == w,
                (None, Some(n)) => n == tag || n == name || *n == key,
                (_, None) => false,
            }
        };
        let mut desc = match (list.iter().find(named), list.len(), &wanted) {
            (Some(d), _, _) => d.clone(),
            (None, 1, None) => list[0].clone(),
            _ => {
                let names: Vec<_> = list
                    .iter()
                    .filter_map(|d| d.annotations.as_ref()?.get(REF_NAME).cloned())
                    .collect();
                return Err(ImageError::NotFound(format!(
                    "{name} in layout {} (it has: {})",
                    dir.display(),
                    names.join(", ")
                )));
            }
        };
        // Follow nested indexes (bounded) down to our platform's manifest.
        for _ in 0..4 {
            let digest = Digest::parse(&desc.digest)?;
            let path = dir.join("blobs/sha256").join(digest.hex());
            let bytes = tokio::fs::read(&path)
                .await
                .map_err(|e| ImageError::io(&path, e))?;
            digest.verify(&path.display().to_string(), &bytes)?;
            match Manifest::parse(&path.display().to_string(), &bytes)? {
                Parsed::Index(list) => desc = self.pick_platform(&key, &list)?.clone(),
                Parsed::Image { .. } => {
                    return self
                        .install(
                            &key,
                            &bytes,
                            &digest,
                            &Source::Layout(dir),
                            ImageSource::OciLayout,
                            &|_| {},
                        )
                        .await;
                }
            }
        }
        Err(ImageError::malformed(what, "indexes nested too deeply"))
    }

    /// Imports a rootfs tarball (plain, gzip or zstd) as the one-layer image
    /// `name`, with `PATH` set and `/bin/sh` as its command.
    pub async fn import_rootfs_tar(&self, tar: &Path, name: &str) -> Result<ImageHandle> {
        let r = parse_reference(name)?;
        let key = r.whole();
        let flight = self.flight(&format!("image:{key}"));
        let _g = flight.lock().await;
        let _gc = self.gc_guard().await?;

        let root = self.inner.root.clone();
        let tar_path = tar.to_owned();
        let (unpacked, compression) = blocking(move || {
            let compression = sniff(&tar_path)?;
            let dir = TmpPath::new(&root.join("tmp"), "layer");
            fs::create_dir(dir.path()).map_err(|e| ImageError::io(dir.path(), e))?;
            let u = unpack_blob(&tar_path, None, None, dir.path())?;
            commit_layer(dir.path(), &root.join("layers"), &u.diff_id)?;
            Ok((u, compression))
        })
        .await?;
        self.inner
            .layers_unpacked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);

        let (os, arch, _) = &self.inner.platform;
        let cfg = ConfigFile {
            architecture: arch.clone(),
            os: os.clone(),
            config: Some(ContainerConfig {
                env: Some(vec![DEFAULT_PATH.to_owned()]),
                cmd: Some(vec!["/bin/sh".to_owned()]),
                ..Default::default()
            }),
            rootfs: RootFs {
                kind: "layers".to_owned(),
                diff_ids: vec![unpacked.diff_id.to_string()],
            },
        };
        let config = serde_json::to_vec(&cfg).map_err(|e| ImageError::malformed("config", e))?;
        let config_digest = Digest::of(&config);
        let layer = Descriptor {
            media_type: match compression {
                Compression::None => OCI_LAYER_TAR.to_owned(),
                Compression::Gzip => OCI_LAYER_GZIP.to_owned(),
                Compression::Zstd => format!("{OCI_LAYER_TAR}+zstd"),
            },
            digest: unpacked.blob_digest.to_string(),
            size: unpacked.blob_size as i64,
            platform: None,
            annotations: None,
        };
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.to_owned()),
            config: Some(Descriptor {
                media_type: OCI_CONFIG.to_owned(),
                digest: config_digest.to_string(),
                size: config.len() as i64,
                platform: None,
                annotations: None,
            }),
            layers: Some(vec![layer.clone()]),
            manifests: None,
        };
        let manifest =
            serde_json::to_vec(&manifest).map_err(|e| ImageError::malformed("manifest", e))?;
        let manifest_digest = Digest::of(&manifest);
        self.commit_image(
            &key,
            (&manifest, &manifest_digest),
            (&config, &config_digest),
            &cfg,
            &[layer],
            &[unpacked.diff_id],
            ImageSource::RootfsTar,
        )
        .await
    }
}

/// `path/to/layout:ref` → (`path/to/layout`, `Some("ref")`) when the whole
/// is not itself a directory.
fn split_layout_ref(dir: &Path) -> (std::path::PathBuf, Option<String>) {
    if !dir.is_dir()
        && let Some(s) = dir.to_str()
        && let Some((d, r)) = s.rsplit_once(':')
        && !r.is_empty()
        && !r.contains('/')
    {
        return (d.into(), Some(r.to_owned()));
    }
    (dir.to_owned(), None)
}

fn sniff(path: &Path) -> Result<Compression> {
    let mut head = [0u8; 4];
    let mut f = fs::File::open(path).map_err(|e| ImageError::io(path, e))?;
    let n = f.read(&mut head).map_err(|e| ImageError::io(path, e))?;
    Ok(match &head[..n] {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
        _ => Compression::None,
    })
}
