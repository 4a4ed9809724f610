//! The eight file operations of [`Provider`](crate::Provider) written once.
//!
//! [`SandboxFiles`] has the file half of the `Provider` signature; a
//! provider whose sandbox root is a host directory gets it for free by
//! implementing [`HostRooted`], and [`provider_impl!`] writes the `Provider`
//! methods that forward to it, so no backend repeats that plumbing.

use async_trait::async_trait;
use bytes::Bytes;
use stacyvm_core::{FileInfo, SandboxId};

use super::HostFs;
use crate::{ByteStream, ProviderError};

/// The file operations of a provider, with the `Provider` signatures.
#[async_trait]
pub(crate) trait SandboxFiles: Send + Sync {
    async fn write_file(
        &self,
        id: &SandboxId,
        path: &str,
        content: Bytes,
        mode: Option<u32>,
    ) -> Result<(), ProviderError>;
    async fn read_file(&self, id: &SandboxId, path: &str) -> Result<ByteStream, ProviderError>;
    async fn list_files(&self, id: &SandboxId, path: &str) -> Result<Vec<FileInfo>, ProviderError>;
    async fn stat_file(&self, id: &SandboxId, path: &str) -> Result<FileInfo, ProviderError>;
    async fn move_file(&self, id: &SandboxId, from: &str, to: &str) -> Result<(), ProviderError>;
    async fn chmod_file(&self, id: &SandboxId, path: &str, mode: u32) -> Result<(), ProviderError>;
    async fn delete_file(
        &self,
        id: &SandboxId,
        path: &str,
        recursive: bool,
    ) -> Result<(), ProviderError>;
    async fn glob(&self, id: &SandboxId, pattern: &str) -> Result<Vec<String>, ProviderError>;
}

/// A provider whose sandboxes' roots are host directories.
pub(crate) trait HostRooted: Send + Sync {
    /// The confined file handle on sandbox `id`'s root, or the error saying
    /// why the sandbox has none (unknown, destroyed, not running).
    fn host_fs(&self, id: &SandboxId) -> Result<HostFs, ProviderError>;
}

#[async_trait]
impl<T: HostRooted> SandboxFiles for T {
    async fn write_file(
        &self,
        id: &SandboxId,
        path: &str,
        content: Bytes,
        mode: Option<u32>,
    ) -> Result<(), ProviderError> {
        self.host_fs(id)?.write(path, content, mode).await
    }
    async fn read_file(&self, id: &SandboxId, path: &str) -> Result<ByteStream, ProviderError> {
        self.host_fs(id)?.read(path).await
    }
    async fn list_files(&self, id: &SandboxId, path: &str) -> Result<Vec<FileInfo>, ProviderError> {
        self.host_fs(id)?.list(path).await
    }
    async fn stat_file(&self, id: &SandboxId, path: &str) -> Result<FileInfo, ProviderError> {
        self.host_fs(id)?.stat(path).await
    }
    async fn move_file(&self, id: &SandboxId, from: &str, to: &str) -> Result<(), ProviderError> {
        self.host_fs(id)?.rename(from, to).await
    }
    async fn chmod_file(&self, id: &SandboxId, path: &str, mode: u32) -> Result<(), ProviderError> {
        self.host_fs(id)?.chmod(path, mode).await
    }
    async fn delete_file(
        &self,
        id: &SandboxId,
        path: &str,
        recursive: bool,
    ) -> Result<(), ProviderError> {
        self.host_fs(id)?.delete(path, recursive).await
    }
    async fn glob(&self, id: &SandboxId, pattern: &str) -> Result<Vec<String>, ProviderError> {
        self.host_fs(id)?.glob(pattern).await
    }
}

/// `#[async_trait] impl Provider for $ty { ... }` with the given items plus
/// the eight file operations, forwarded to the [`SandboxFiles`] that
/// `$files(self)` returns (`std::convert::identity` for a [`HostRooted`]
/// provider).
macro_rules! provider_impl {
    (files = $files:path; impl Provider for $ty:ty { $($body:tt)* }) => {
        #[async_trait::async_trait]
        impl $crate::Provider for $ty {
            $($body)*

            async fn write_file(
                &self,
                id: &stacyvm_core::SandboxId,
                path: &str,
                content: bytes::Bytes,
                mode: Option<u32>,
            ) -> Result<(), $crate::ProviderError> {
                $crate::hostfs::SandboxFiles::write_file($files(self), id, path, content, mode).await
            }

            async fn read_file(
                &self,
                id: &stacyvm_core::SandboxId,
                path: &str,
            ) -> Result<$crate::ByteStream, $crate::ProviderError> {
                $crate::hostfs::SandboxFiles::read_file($files(self), id, path).await
            }

            async fn list_files(
                &self,
                id: &stacyvm_core::SandboxId,
                path: &str,
            ) -> Result<Vec<stacyvm_core::FileInfo>, $crate::ProviderError> {
                $crate::hostfs::SandboxFiles::list_files($files(self), id, path).await
            }

            async fn stat_file(
                &self,
                id: &stacyvm_core::SandboxId,
                path: &str,
            ) -> Result<stacyvm_core::FileInfo, $crate::ProviderError> {
                $crate::hostfs::SandboxFiles::stat_file($files(self), id, path).await
            }

            async fn move_file(
                &self,
                id: &stacyvm_core::SandboxId,
                from: &str,
                to: &str,
            ) -> Result<(), $crate::ProviderError> {
                $crate::hostfs::SandboxFiles::move_file($files(self), id, from, to).await
            }

            async fn chmod_file(
                &self,
                id: &stacyvm_core::SandboxId,
                path: &str,
                mode: u32,
            ) -> Result<(), $crate::ProviderError> {
                $crate::hostfs::SandboxFiles::chmod_file($files(self), id, path, mode).await
            }

            async fn delete_file(
                &self,
                id: &stacyvm_core::SandboxId,
                path: &str,
                recursive: bool,
            ) -> Result<(), $crate::ProviderError> {
                $crate::hostfs::SandboxFiles::delete_file($files(self), id, path, recursive).await
            }

            async fn glob(
                &self,
                id: &stacyvm_core::SandboxId,
                pattern: &str,
            ) -> Result<Vec<String>, $crate::ProviderError> {
                $crate::hostfs::SandboxFiles::glob($files(self), id, pattern).await
            }
        }
    };
}
pub(crate) use provider_impl;
