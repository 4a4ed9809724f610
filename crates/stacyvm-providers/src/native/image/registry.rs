//! Talking to registries through `oci-client`: reference parsing (short
//! names resolve to Docker Hub), mirrors tried before the registry itself,
//! plain HTTP for configured local registries, per-registry credentials.
//! Credentials go only into `RegistryAuth`, whose `Debug` redacts them; no
//! error built here formats them.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tokio::io::AsyncWriteExt;

use super::config::ImageConfig;
use super::digest::Digest;
use super::error::{ImageError, Result};
use super::manifest::{DOCKER_LIST, DOCKER_MANIFEST, Descriptor, OCI_INDEX, OCI_MANIFEST};

/// Counters of network work, for tests and metrics.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub manifests: AtomicU64,
    pub blobs: AtomicU64,
}

/// Parses a user reference; short names resolve to Docker Hub
/// (`alpine` → `docker.io/library/alpine:latest`).
pub fn parse_reference(s: &str) -> Result<Reference> {
    s.trim()
        .parse::<Reference>()
        .map_err(|e| ImageError::InvalidReference {
            reference: s.to_owned(),
            reason: e.to_string(),
        })
}

/// The registry client plus our configuration.
pub(crate) struct Registry {
    client: Client,
    /// For registries on loopback, which speak plain HTTP without being
    /// configured (as Docker treats them).
    loopback: Client,
    config: ImageConfig,
    pub counters: Arc<Counters>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// One reachable endpoint for a reference: the registry or a mirror.
pub(crate) struct Endpoint {
    pub reference: Reference,
    auth: RegistryAuth,
}

impl Registry {
    pub fn new(config: ImageConfig) -> Self {
        // reqwest is built without a bundled crypto provider; use ring, which
        // the workspace already builds. Installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let protocol = if config.insecure_registries.is_empty() {
            ClientProtocol::Https
        } else {
            ClientProtocol::HttpsExcept(config.insecure_registries.clone())
        };
        let client_with = |protocol| {
            Client::new(ClientConfig {
                protocol,
                // We pick the platform ourselves from the raw index.
                platform_resolver: None,
                connect_timeout: Some(std::time::Duration::from_secs(15)),
                read_timeout: Some(std::time::Duration::from_secs(60)),
                user_agent: concat!("stacyvm/", env!("CARGO_PKG_VERSION")),
                ..Default::default()
            })
        };
        Registry {
            client: client_with(protocol),
            loopback: client_with(ClientProtocol::Http),
            config,
            counters: Arc::default(),
        }
    }

    /// The client for `r`'s registry: plain HTTP on loopback, else HTTPS
    /// unless configured insecure.
    fn client(&self, r: &Reference) -> &Client {
        if is_loopback(r.resolve_registry()) {
            &self.loopback
        } else {
            &self.client
        }
    }

    fn auth_for(&self, host: &str) -> RegistryAuth {
        let aliases: &[&str] = match host {
            "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
                &["docker.io", "index.docker.io", "registry-1.docker.io"]
            }
            _ => &[],
        };
        let found = self
            .config
            .credentials
            .get(host)
            .or_else(|| aliases.iter().find_map(|a| self.config.credentials.get(*a)));
        match found {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            None => RegistryAuth::Anonymous,
        }
    }

    /// Fetches the manifest (or index) for `reference`, trying each mirror
    /// of its registry in order, then the registry. Returns the endpoint that
    /// answered (blobs come from the same place), the bytes and their digest.
    pub async fn fetch_manifest(
        &self,
        reference: &Reference,
    ) -> Result<(Endpoint, Vec<u8>, Digest)> {
        let mut endpoints = Vec::new();
        for mirror in self
            .config
            .mirrors
            .get(reference.registry())
            .into_iter()
            .flatten()
        {
            let mut r = reference.clone();
            r.set_mirror_registry(mirror.clone());
            endpoints.push(Endpoint {
                reference: r,
                auth: self.auth_for(mirror),
            });
        }
        endpoints.push(Endpoint {
            reference: reference.clone(),
            auth: self.auth_for(reference.registry()),
        });
        let n = endpoints.len();
        let mut last = None;
        for (i, ep) in endpoints.into_iter().enumerate() {
            match self.manifest_at(&ep, &ep.reference).await {
                Ok((bytes, digest)) => return Ok((ep, bytes, digest)),
                Err(e) if i + 1 < n => {
                    tracing::warn!(
                        reference = %reference,
                        mirror = ep.reference.resolve_registry(),
                        error = %e,
                        "mirror failed, trying next"
                    );
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| ImageError::NotFound(reference.whole())))
    }

    /// Fetches a manifest by digest from an endpoint chosen earlier.
    pub async fn fetch_manifest_by_digest(
        &self,
        ep: &Endpoint,
        digest: &Digest,
    ) -> Result<Vec<u8>> {
        let r = ep.reference.clone_with_digest(digest.to_string());
        let (bytes, got) = self.manifest_at(ep, &r).await?;
        if &got != digest {
            return Err(ImageError::DigestMismatch {
                what: format!("manifest of {}", ep.reference.whole()),
                expected: digest.to_string(),
                actual: got.to_string(),
            });
        }
        Ok(bytes)
    }

    async fn manifest_at(&self, ep: &Endpoint, r: &Reference) -> Result<(Vec<u8>, Digest)> {
        self.counters.manifests.fetch_add(1, Ordering::Relaxed);
        let accepted = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];
        let (bytes, _) = self
            .client(r)
            .pull_manifest_raw(r, &ep.auth, &accepted)
            .await
            .map_err(|e| map_err(r, e))?;
        // Our own digest of the exact bytes: the canonical manifest digest.
        let digest = Digest::of(&bytes);
        if let Some(want) = r.digest()
            && want != digest.to_string()
        {
            return Err(ImageError::DigestMismatch {
                what: format!("manifest of {}", r.whole()),
                expected: want.to_owned(),
                actual: digest.to_string(),
            });
        }
        Ok((bytes.to_vec(), digest))
    }

    /// Streams a blob into `out`, verifying its digest, reporting bytes.
    pub async fn fetch_blob_to_file(
        &self,
        ep: &Endpoint,
        desc: &Descriptor,
        out: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<u64> {
        let digest = Digest::parse(&desc.digest)?;
        self.counters.blobs.fetch_add(1, Ordering::Relaxed);
        let oci_desc = OciDescriptor {
            media_type: desc.media_type.clone(),
            digest: desc.digest.clone(),
            size: desc.size,
            ..Default::default()
        };
        // Make sure a token is cached for this endpoint (blob requests reuse it).
        let client = self.client(&ep.reference);
        client
            .store_auth_if_needed(ep.reference.resolve_registry(), &ep.auth)
            .await;
        let mut stream = client
            .pull_blob_stream(&ep.reference, &oci_desc)
            .await
            .map_err(|e| map_err(&ep.reference, e))?;
        let mut file = tokio::fs::File::create(out)
            .await
            .map_err(|e| ImageError::io(out, e))?;
        let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ImageError::Registry {
                reference: ep.reference.whole(),
                message: format!("reading blob {}: {e}", desc.digest),
            })?;
            sha2::Digest::update(&mut hasher, &chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| ImageError::io(out, e))?;
            n += chunk.len() as u64;
            progress(n);
        }
        file.sync_all().await.map_err(|e| ImageError::io(out, e))?;
        let actual = hex::encode(sha2::Digest::finalize(hasher));
        if actual != digest.hex() {
            return Err(ImageError::DigestMismatch {
                what: format!("blob of {}", ep.reference.whole()),
                expected: digest.to_string(),
                actual: format!("sha256:{actual}"),
            });
        }
        Ok(n)
    }

    /// Fetches a small blob (a config) into memory, verifying its digest.
    pub async fn fetch_blob_bytes(&self, ep: &Endpoint, desc: &Descriptor) -> Result<Vec<u8>> {
        let digest = Digest::parse(&desc.digest)?;
        self.counters.blobs.fetch_add(1, Ordering::Relaxed);
        let oci_desc = OciDescriptor {
            media_type: desc.media_type.clone(),
            digest: desc.digest.clone(),
            size: desc.size,
            ..Default::default()
        };
        let mut buf = Vec::new();
        self.client(&ep.reference)
            .pull_blob(&ep.reference, &oci_desc, &mut buf)
            .await
            .map_err(|e| map_err(&ep.reference, e))?;
        digest.verify(&format!("config of {}", ep.reference.whole()), &buf)?;
        Ok(buf)
    }
}

/// Whether a registry `host[:port]` is on loopback: `localhost`,
/// `127.0.0.0/8` or `[::1]`.
pub(crate) fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => registry.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Maps oci-client errors. Their texts hold URLs and registry messages,
/// never credentials (oci-client keeps those in `RegistryAuth` only).
fn map_err(r: &Reference, e: OciDistributionError) -> ImageError {
    let reference = r.whole();
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => ImageError::NotFound(reference),
        OciDistributionError::AuthenticationFailure(_)
        | OciDistributionError::UnauthorizedError { .. } => ImageError::Unauthorized {
            reference,
            message: e.to_string(),
        },
        OciDistributionError::ServerError {
            code: 401 | 403, ..
        } => ImageError::Unauthorized {
            reference,
            message: e.to_string(),
        },
        OciDistributionError::ServerError { code: 404, .. } => ImageError::NotFound(reference),
        OciDistributionError::RegistryError { ref envelope, .. } => {
            use oci_client::errors::OciErrorCode as C;
            let codes: Vec<_> = envelope.errors.iter().map(|x| &x.code).collect();
            if codes
                .iter()
                .any(|c| matches!(c, C::ManifestUnknown | C::NameUnknown | C::BlobUnknown))
            {
                ImageError::NotFound(reference)
            } else if codes
                .iter()
                .any(|c| matches!(c, C::Unauthorized | C::Denied))
            {
                ImageError::Unauthorized {
                    reference,
                    message: e.to_string(),
                }
            } else {
                ImageError::Registry {
                    reference,
                    message: e.to_string(),
                }
            }
        }
        other => ImageError::Registry {
            reference,
            message: other.to_string(),
        },
    }
}
