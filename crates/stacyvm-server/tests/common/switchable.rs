//! A provider wrapper whose spawns and destroys tests can hold or make
//! fail. Whole-provider outages are the mock's own
//! ([`MockProvider::set_failing`], through [`Switchable::set_broken`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use stacyvm_core::{Capability, SandboxId};
use stacyvm_providers::mock::MockProvider;
use stacyvm_providers::{
    ExecSession, ExecSpec, HealthReport, Provider, ProviderError, RuntimeInfo, RuntimeStatus,
    SandboxFiles, SpawnSpec, StreamOptions,
};

/// Wraps the mock so tests can make it fail on demand.
#[derive(Debug)]
pub struct Switchable {
    name: String,
    pub inner: MockProvider,
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

    /// The whole provider down (spawn, destroy, exec, files, health) or up.
    pub fn set_broken(&self, broken: bool) {
        self.inner.set_failing(broken);
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
        self.inner.spawn(spec).await?;
        if self.hold_spawns.load(Ordering::SeqCst) {
            let released = self.release.notified();
            self.held.fetch_add(1, Ordering::SeqCst);
            released.await;
            self.held.fetch_sub(1, Ordering::SeqCst);
        }
        if self.fail_after_create.load(Ordering::SeqCst) {
            return Err(ProviderError::unavailable(
                "spawn switched to fail by the test",
            ));
        }
        Ok(())
    }
    async fn status(&self, id: &SandboxId) -> Result<RuntimeStatus, ProviderError> {
        self.inner.status(id).await
    }
    async fn pause(&self, id: &SandboxId) -> Result<(), ProviderError> {
        self.inner.pause(id).await
    }
    async fn resume(&self, id: &SandboxId) -> Result<(), ProviderError> {
        self.inner.resume(id).await
    }
    fn hibernate_unavailable(&self) -> Option<String> {
        self.inner.hibernate_unavailable()
    }
    async fn destroy(&self, id: &SandboxId) -> Result<(), ProviderError> {
        if self.broken_destroy.load(Ordering::SeqCst) {
            return Err(ProviderError::unavailable(
                "destroy switched off by the test",
            ));
        }
        self.inner.destroy(id).await
    }
    async fn exec_stream(
        &self,
        id: &SandboxId,
        spec: &ExecSpec,
        o: StreamOptions,
    ) -> Result<ExecSession, ProviderError> {
        self.inner.exec_stream(id, spec, o).await
    }
    fn files(&self) -> &dyn SandboxFiles {
        self.inner.files()
    }
    async fn logs(&self, id: &SandboxId, lines: usize) -> Result<Vec<String>, ProviderError> {
        self.inner.logs(id, lines).await
    }
    async fn health(&self) -> HealthReport {
        self.inner.health().await
    }
    async fn inventory(&self) -> Result<Option<Vec<RuntimeInfo>>, ProviderError> {
        self.inner.inventory().await
    }
}
