//! Shared set-up of the Docker provider tests: the gate (real daemon
//! required in CI, optional locally), provider construction and sandbox
//! helpers.
#![allow(dead_code)]

#[path = "../common/mod.rs"]
pub mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use stacyvm_core::SandboxId;
use stacyvm_providers::docker::{DockerConfig, DockerProvider};
use stacyvm_providers::{ExecSpec, Provider, SpawnSpec};

/// The image `scripts/ci/docker.sh` builds locally.
pub const IMAGE: &str = "stacyvm-test/busybox:latest";

/// Whether real-daemon tests must run: in CI (then a missing daemon is a
/// failure) or when asked with `STACYVM_TEST_DOCKER=1`.
pub fn required() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
        || std::env::var("STACYVM_TEST_DOCKER").is_ok_and(|v| v == "1")
}

/// A provider on the local daemon with `runtime`, or `None` (with the
/// reason printed) when the tests are not required here. Panics when they
/// are required and the daemon or runtime is unusable.
pub async fn provider_with(config: DockerConfig) -> Option<DockerProvider> {
    if !required() {
        eprintln!(
            "skipping docker test: set STACYVM_TEST_DOCKER=1 (after scripts/ci/docker.sh) to run it"
        );
        return None;
    }
    let p = DockerProvider::new(config).expect("docker config is valid");
    let h = p.health().await;
    assert!(
        h.healthy,
        "docker provider tests need a running dockerd with runtime {} and image {IMAGE} \
         (run scripts/ci/docker.sh): {}",
        p.config().runtime,
        h.error.unwrap_or_default()
    );
    Some(p)
}

/// What a client must never see from `p`: the daemon's address and socket.
pub fn private_strings(p: &DockerProvider) -> Vec<String> {
    let addr = p.config().socket_address();
    let mut out = vec![addr.clone()];
    if let Some(path) = addr.strip_prefix("unix://") {
        out.push(path.to_string());
    }
    out
}

pub async fn provider(runtime: &str) -> Option<DockerProvider> {
    provider_with(DockerConfig {
        runtime: runtime.to_string(),
        ..Default::default()
    })
    .await
}

pub fn spawn_spec(id: &SandboxId) -> SpawnSpec {
    SpawnSpec {
        id: id.clone(),
        image: IMAGE.into(),
        memory_mb: 128,
        vcpus: 1,
        metadata: BTreeMap::from([("purpose".into(), "test".into())]),
        labels: BTreeMap::from([("owner".into(), "tester".into())]),
        network: None,
    }
}

/// Destroys the sandbox when dropped, so failed tests leave nothing behind.
pub struct Guard {
    pub provider: DockerProvider,
    pub id: SandboxId,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let p = self.provider.clone();
        let id = self.id.clone();
        common::block_on_thread(async move {
            let _ = p.destroy(&id).await;
        });
    }
}

pub async fn spawn(p: &DockerProvider) -> Guard {
    let id = SandboxId::generate();
    p.spawn(&spawn_spec(&id)).await.expect("spawn");
    Guard {
        provider: p.clone(),
        id,
    }
}

pub fn sh(script: &str) -> ExecSpec {
    common::sh(script, Duration::from_secs(60))
}

/// Runs a shell script; returns (exit code, stdout, stderr).
pub async fn run(p: &DockerProvider, id: &SandboxId, script: &str) -> (i32, String, String) {
    common::run(p, id, &sh(script)).await
}
