//! The parts of OCI / Docker v2 manifests, indexes and image configs the
//! store reads. Both formats share these JSON shapes; Docker schema 1 is
//! refused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::error::{ImageError, Result};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Annotation naming a manifest inside an OCI layout's index.json.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A content descriptor.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlatformSpec {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// Either an image manifest (config + layers) or an index (manifests).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<Descriptor>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifests: Option<Vec<Descriptor>>,
}

/// A parsed document: which of the two it is.
#[derive(Debug)]
pub enum Parsed {
    Image {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
    Index(Vec<Descriptor>),
}

impl Manifest {
    pub fn parse(what: &str, bytes: &[u8]) -> Result<Parsed> {
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| ImageError::malformed(what, e))?;
        if m.schema_version != 2 {
            return Err(ImageError::malformed(
                what,
                format!("schema version {} is not supported", m.schema_version),
            ));
        }
        if let Some(list) = m.manifests {
            return Ok(Parsed::Index(list));
        }
        let config = m
            .config
            .ok_or_else(|| ImageError::malformed(what, "manifest has no config"))?;
        let layers = m.layers.unwrap_or_default();
        for l in &layers {
            if l.media_type.contains("encrypted") {
                return Err(ImageError::malformed(
                    what,
                    "encrypted layers are not supported",
                ));
            }
        }
        Ok(Parsed::Image { config, layers })
    }
}

/// Picks the manifest for `os/arch[/variant]` from an index.
pub fn select_platform<'a>(
    list: &'a [Descriptor],
    os: &str,
    arch: &str,
    variant: Option<&str>,
) -> Option<&'a Descriptor> {
    let matches = |d: &&Descriptor| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == os && p.architecture == arch)
    };
    let exact = list.iter().filter(matches).find(|d| {
        let v = d.platform.as_ref().and_then(|p| p.variant.as_deref());
        variant.is_none() || v == variant
    });
    exact.or_else(|| list.iter().find(matches))
}

/// The image configuration blob (OCI and Docker agree on these keys).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigFile {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

impl ConfigFile {
    pub fn parse(what: &str, bytes: &[u8]) -> Result<ConfigFile> {
        let c: ConfigFile =
            serde_json::from_slice(bytes).map_err(|e| ImageError::malformed(what, e))?;
        if c.rootfs.kind != "layers" {
            return Err(ImageError::malformed(what, "rootfs.type is not \"layers\""));
        }
        Ok(c)
    }

    pub fn diff_ids(&self, what: &str) -> Result<Vec<Digest>> {
        self.rootfs
            .diff_ids
            .iter()
            .map(|d| Digest::parse(d).map_err(|e| ImageError::malformed(what, e)))
            .collect()
    }
}
