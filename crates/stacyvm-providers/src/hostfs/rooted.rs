//! [`SandboxFiles`] for every provider whose sandbox root is a host
//! directory: it implements [`HostRooted`] and gets the eight file
//! operations, confined by [`HostFs`], for free.

use async_trait::async_trait;
use bytes::Bytes;
use stacyvm_core::{FileInfo, SandboxId};

use super::HostFs;
use crate::{ByteStream, ProviderError, SandboxFiles};

/// A provider whose sandboxes' roots are host directories.
pub(crate) trait HostRooted: Send + Sync {
    /// The confined file handle on sandbox `id`'s root, or the error saying
    /// why the sandbox has none (unknown, destroyed, not running).
    fn host_fs(&self, id: &SandboxId) -> Result<HostFs, ProviderError>;
}

#[async_trait]
impl<T: HostRooted> SandboxFiles for T {
    async fn write(
        &self,
        id: &SandboxId,
        path: &str,
        content: Bytes,
        mode: Option<u32>,
    ) -> Result<(), ProviderError> {
        self.host_fs(id)?.write(path, content, mode).await
    }

    async fn read(&self, id: &SandboxId, path: &str) -> Result<ByteStream, ProviderError> {
        self.host_fs(id)?.read(path).await
    }

    async fn list(&self, id: &SandboxId, path: &str) -> Result<Vec<FileInfo>, ProviderError> {
        self.host_fs(id)?.list(path).await
    }

    async fn stat(&self, id: &SandboxId, path: &str) -> Result<FileInfo, ProviderError> {
        self.host_fs(id)?.stat(path).await
    }

    async fn rename(&self, id: &SandboxId, from: &str, to: &str) -> Result<(), ProviderError> {
        self.host_fs(id)?.rename(from, to).await
    }

    async fn chmod(&self, id: &SandboxId, path: &str, mode: u32) -> Result<(), ProviderError> {
        self.host_fs(id)?.chmod(path, mode).await
    }

    async fn delete(
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
