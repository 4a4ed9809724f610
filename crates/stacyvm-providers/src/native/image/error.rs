//! Typed errors of the image store. Messages never carry credentials: registry
//! errors are rendered from oci-client's error kinds, which hold URLs and
//! status texts but never the `Authorization` header or the password.

use std::path::PathBuf;

use crate::ProviderError;

/// What went wrong in the image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The reference does not parse as an image reference.
    #[error("invalid image reference {reference}: {reason}")]
    InvalidReference { reference: String, reason: String },
    /// The image is neither in the cache nor (for `ensure`) pullable.
    #[error("image {0} not found")]
    NotFound(String),
    /// The registry refused or failed the request (after trying mirrors).
    #[error("registry error for {reference}: {message}")]
    Registry { reference: String, message: String },
    /// The registry asked for credentials we do not have, or refused ours.
    #[error("registry denied access to {reference}: {message}")]
    Unauthorized { reference: String, message: String },
    /// Downloaded or imported content does not hash to its digest.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    /// A manifest, index or config is malformed or of an unsupported kind.
    #[error("unsupported or malformed image {what}: {reason}")]
    Malformed { what: String, reason: String },
    /// A manifest list had no entry for our platform.
    #[error("image {reference} has no manifest for platform {platform}")]
    NoPlatform { reference: String, platform: String },
    /// A layer tarball tried to write outside its directory or is corrupt.
    #[error("unsafe or corrupt layer {layer}: entry {entry}: {reason}")]
    UnsafeLayer {
        layer: String,
        entry: String,
        reason: String,
    },
    /// A filesystem operation on the cache failed.
    #[error("image store i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The image store configuration is not valid.
    #[error("invalid image config: {0}")]
    Config(String),
}

impl ImageError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ImageError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn malformed(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        ImageError::Malformed {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

/// Shorthand for image store results.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;

impl From<ImageError> for ProviderError {
    fn from(e: ImageError) -> Self {
        match e {
            ImageError::NotFound(r) => ProviderError::NotFound(format!("image {r}")),
            ImageError::InvalidReference { .. } | ImageError::NoPlatform { .. } => {
                ProviderError::InvalidInput(e.to_string())
            }
            ImageError::Registry { .. } | ImageError::Unauthorized { .. } => {
                ProviderError::upstream(e.to_string(), None)
            }
            // The cache's host paths are for the log.
            ImageError::Io { .. } => ProviderError::internal("the image store failed", e),
            _ => ProviderError::failed(e.to_string()),
        }
    }
}
