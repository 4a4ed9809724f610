//! A provider wrapper that tests can switch to failing.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use stacyvm_core::{Capability, ExecOutput, FileInfo, SandboxId};
use stacyvm_providers::mock::MockProvider;
use stacyvm_providers::{
    ByteStream, ExecSession, ExecSpec, HealthReport, Provider, ProviderError, RuntimeInfo,
    RuntimeStatus, SpawnSpec, StreamOptions,
};

/// Wraps the mock so tests can make it fail on demand.
#[derive(Debug)]
pub struct Switchable {
    name: String,
    pub inner: MockProvider,
    pub broken: AtomicBool,
    /// Only destroys fail (with `Unavailable`).
    pub broken_destroy: AtomicBool,
    /// Spawns create the runtime, then fail.
    pub fail_after_create: AtomicBool,
    /// Spawns wait here (after creating the runtime) until released.
    pub hold_spawns: AtomicBool,
    pub release: tokio::sync::Notify,
    /// Spawns waiting at the hold.
    pub held: AtomicUsize,
}

impl Switchable {
    pub fn new(name: &str, inner: MockProvider) -> Self {
        Switchable {
            name: name.to_string(),
            inner,
            broken: AtomicBool::new(false),
            broken_destroy: AtomicBool::new(false),
            fail_after_create: AtomicBool::new(false),
            hold_spawns: AtomicBool::new(false),
            release: tokio::sync::Notify::new(),
            held: AtomicUsize::new(0),
        }
    }

    /// Waits until `n` spawns are held.
    pub async fn wait_held(&self, n: usize) {
        for _ in 0..500 {
            if self.held.load(Ordering::SeqCst) >= n {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("{n} spawns never reached the hold");
    }

    pub fn set_broken(&self, broken: bool) {
        self.broken.store(broken, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), ProviderError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(ProviderError::Unavailable(
                "switched off by the test".into(),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Provider for Switchable {
    fn name(&self) -> &str {
        &self.name
    }
    fn capabilities(&self) -> Vec<Capability> {
        self.inner.capabilities()
    }
    async fn spawn(&self, spec: &SpawnSpec) -> Result<(), ProviderError> {
        self.check()?;
        self.inner.spawn(spec).await?;
        if self.hold_spawns.load(Ordering::SeqCst) {
            let released = self.release.notified();
            self.held.fetch_add(1, Ordering::SeqCst);
            released.await;
            self.held.fetch_sub(1, Ordering::SeqCst);
        }
        if self.fail_after_create.load(Ordering::SeqCst) {
            return Err(ProviderError::Unavailable(
                "spawn switched to fail by the test".into(),
            ));
        }
        Ok(())
    }
    async fn status(&self, id: &SandboxId) -> Result<RuntimeStatus, ProviderError> {
        self.inner.status(id).await
    }
    async fn destroy(&self, id: &SandboxId) -> Result<(), ProviderError> {
        self.check()?;
        if self.broken_destroy.load(Ordering::SeqCst) {
            return Err(ProviderError::Unavailable(
                "destroy switched off by the test".into(),
            ));
        }
        self.inner.destroy(id).await
    }
    async fn exec(&self, id: &SandboxId, spec: &ExecSpec) -> Result<ExecOutput, ProviderError> {
        self.check()?;
        self.inner.exec(id, spec).await
    }
    async fn exec_stream(
        &self,
        id: &SandboxId,
        spec: &ExecSpec,
        o: StreamOptions,
    ) -> Result<ExecSession, ProviderError> {
        self.check()?;
        self.inner.exec_stream(id, spec, o).await
    }
    async fn write_file(
        &self,
        id: &SandboxId,
        path: &str,
        c: Bytes,
        mode: Option<u32>,
    ) -> Result<(), ProviderError> {
        self.check()?;
        self.inner.write_file(id, path, c, mode).await
    }
    async fn read_file(&self, id: &SandboxId, path: &str) -> Result<ByteStream, ProviderError> {
        self.check()?;
        self.inner.read_file(id, path).await
    }
    async fn list_files(&self, id: &SandboxId, path: &str) -> Result<Vec<FileInfo>, ProviderError> {
        self.inner.list_files(id, path).await
    }
    async fn stat_file(&self, id: &SandboxId, path: &str) -> Result<FileInfo, ProviderError> {
        self.inner.stat_file(id, path).await
    }
    async fn move_file(&self, id: &SandboxId, from: &str, to: &str) -> Result<(), ProviderError> {
        self.inner.move_file(id, from, to).await
    }
    async fn chmod_file(&self, id: &SandboxId, path: &str, mode: u32) -> Result<(), ProviderError> {
        self.inner.chmod_file(id, path, mode).await
    }
    async fn delete_file(
        &self,
        id: &SandboxId,
        path: &str,
        recursive: bool,
    ) -> Result<(), ProviderError> {
        self.inner.delete_file(id, path, recursive).await
    }
    async fn glob(&self, id: &SandboxId, pattern: &str) -> Result<Vec<String>, ProviderError> {
        self.inner.glob(id, pattern).await
    }
    async fn logs(&self, id: &SandboxId, lines: usize) -> Result<Vec<String>, ProviderError> {
        self.inner.logs(id, lines).await
    }
    async fn health(&self) -> HealthReport {
        match self.check() {
            Ok(()) => HealthReport::ok(),
            Err(e) => HealthReport::failed(e.to_string()),
        }
    }
    async fn inventory(&self) -> Result<Option<Vec<RuntimeInfo>>, ProviderError> {
        self.inner.inventory().await
    }
}
