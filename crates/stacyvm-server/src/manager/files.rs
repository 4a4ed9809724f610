//! File operations: validated paths, metrics and audit events around the
//! provider's confined file API.

use std::time::Instant;

use bytes::Bytes;
use serde_json::json;
use stacyvm_core::{EventType, FileInfo, SandboxId};
use stacyvm_providers::{ByteStream, ProviderError};

use super::{Manager, ManagerError};
use crate::obs::operations::Operation;

/// Longest accepted path, in bytes.
const MAX_PATH_LEN: usize = 4096;

/// Checks the shape of a sandbox path; confinement itself is the
/// provider's job.
pub fn check_path(path: &str) -> Result<(), ManagerError> {
    if path.is_empty() {
        return Err(ManagerError::BadRequest("path is required".into()));
    }
    if !path.starts_with('/') {
        return Err(ManagerError::BadRequest(format!(
            "path {path:?} must be absolute"
        )));
    }
    if path.len() > MAX_PATH_LEN || path.contains('\0') {
        return Err(ManagerError::BadRequest(format!("invalid path {path:?}")));
    }
    if path.split('/').any(|c| c == "..") {
        return Err(ManagerError::BadRequest(format!(
            "path {path:?} may not contain '..'"
        )));
    }
    Ok(())
}

impl Manager {
    /// Runs one file operation with its bookkeeping.
    async fn file_op<T, F>(
        &self,
        id: &SandboxId,
        op: Operation,
        f: impl FnOnce(std::sync::Arc<dyn stacyvm_providers::Provider>) -> F,
    ) -> Result<T, ManagerError>
    where
        F: std::future::Future<Output = Result<T, ProviderError>>,
    {
        let (sb, provider) = self.active_sandbox(id).await?;
        let started = Instant::now();
        let result = f(provider).await;
        Ok(self.observe(op, &sb.provider, Some(id), started, result)?)
    }

    pub async fn write_file(
        &self,
        id: &SandboxId,
        path: &str,
        content: Bytes,
        mode: Option<u32>,
    ) -> Result<(), ManagerError> {
        check_path(path)?;
        let size = content.len();
        self.file_op(id, Operation::FileWrite, |p| async move {
            p.files().write(id, path, content, mode).await
        })
        .await?;
        self.publish(
            EventType::FileWritten,
            Some(id),
            json!({"path": path, "size": size}),
        );
        Ok(())
    }

    pub async fn read_file(&self, id: &SandboxId, path: &str) -> Result<ByteStream, ManagerError> {
        check_path(path)?;
        let stream = self
            .file_op(id, Operation::FileRead, |p| async move {
                p.files().read(id, path).await
            })
            .await?;
        self.publish(EventType::FileRead, Some(id), json!({"path": path}));
        Ok(stream)
    }

    pub async fn list_files(
        &self,
        id: &SandboxId,
        path: &str,
    ) -> Result<Vec<FileInfo>, ManagerError> {
        check_path(path)?;
        self.file_op(id, Operation::FileList, |p| async move {
            p.files().list(id, path).await
        })
        .await
    }

    pub async fn stat_file(&self, id: &SandboxId, path: &str) -> Result<FileInfo, ManagerError> {
        check_path(path)?;
        self.file_op(id, Operation::FileStat, |p| async move {
            p.files().stat(id, path).await
        })
        .await
    }

    pub async fn move_file(
        &self,
        id: &SandboxId,
        from: &str,
        to: &str,
    ) -> Result<(), ManagerError> {
        check_path(from)?;
        check_path(to)?;
        self.file_op(id, Operation::FileMove, |p| async move {
            p.files().rename(id, from, to).await
        })
        .await
    }

    pub async fn chmod_file(
        &self,
        id: &SandboxId,
        path: &str,
        mode: u32,
    ) -> Result<(), ManagerError> {
        check_path(path)?;
        self.file_op(id, Operation::FileChmod, |p| async move {
            p.files().chmod(id, path, mode).await
        })
        .await
    }

    pub async fn delete_file(
        &self,
        id: &SandboxId,
        path: &str,
        recursive: bool,
    ) -> Result<(), ManagerError> {
        check_path(path)?;
        if path.trim_end_matches('/').is_empty() {
            return Err(ManagerError::BadRequest(
                "refusing to delete the sandbox root".into(),
            ));
        }
        self.file_op(id, Operation::FileDelete, |p| async move {
            p.files().delete(id, path, recursive).await
        })
        .await
    }

    pub async fn glob(&self, id: &SandboxId, pattern: &str) -> Result<Vec<String>, ManagerError> {
        check_path(pattern)?;
        self.file_op(id, Operation::FileGlob, |p| async move {
            p.files().glob(id, pattern).await
        })
        .await
    }

    /// The last `lines` console lines.
    pub async fn logs(&self, id: &SandboxId, lines: usize) -> Result<Vec<String>, ManagerError> {
        let sb = self.get(id).await?;
        let provider = self.provider(&sb.provider)?;
        match provider.logs(id, lines).await {
            Ok(l) => Ok(l),
            // A destroyed sandbox has no console left; say so plainly.
            Err(ProviderError::NotFound(_) | ProviderError::Destroyed(_)) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }
}
