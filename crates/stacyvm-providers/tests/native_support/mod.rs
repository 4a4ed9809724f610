//! Shared set-up for the native provider's tests: they need root, an OCI
//! runtime (`crun`), overlayfs and the static agent. With `CI` set a missing
//! piece fails the test; otherwise the test is skipped with a reason.

#![allow(dead_code)]

#[path = "../common/mod.rs"]
pub mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use stacyvm_core::SandboxId;
use stacyvm_providers::native::image::{ImageConfig, ImageStore};
use stacyvm_providers::native::{NativeConfig, NativeProvider};
use stacyvm_providers::{ExecSpec, HealthReport, Provider, SpawnSpec};

pub const IMAGE: &str = "stacyvm-test/busybox:latest";

/// Skips (locally) or fails (in CI) when the host cannot run sandboxes.
pub fn require(what: &str) -> bool {
    if std::env::var_os("CI").is_some() {
        panic!("native provider test needs {what} (CI is set, so this is a failure)");
    }
    eprintln!("skipping native provider test: needs {what}");
    false
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The busybox rootfs tarball, built once by scripts/ci/busybox-rootfs.sh.
pub fn busybox_tar() -> Option<PathBuf> {
    static TAR: OnceLock<Option<PathBuf>> = OnceLock::new();
    TAR.get_or_init(|| {
        let out = std::env::var_os("STACYVM_TEST_ROOTFS_TAR")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("stacyvm-test-busybox.tar"));
        let ok = Command::new("bash")
            .arg(repo_root().join("scripts/ci/busybox-rootfs.sh"))
            .arg(&out)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(out)
    })
    .clone()
}

/// A provider on a fresh data dir, with the busybox image imported; `None`
/// when skipped.
pub struct Env {
    pub provider: NativeProvider,
    pub dir: tempfile::TempDir,
}

impl Drop for Env {
    /// Destroys what a failed (panicking) test left running, so mounts and
    /// containers never outlive the test.
    fn drop(&mut self) {
        let p = self.provider.clone();
        common::block_on_thread(async move {
            if let Ok(Some(left)) = p.inventory().await {
                for r in left {
                    let _ = p.destroy(&r.id).await;
                }
            }
        });
    }
}

/// What a client must never see from `p`: its data directory (sandboxes,
/// agent sockets, runtime state), the runtime binary and the agent binary.
pub fn private_strings(p: &NativeProvider) -> Vec<String> {
    let c = p.config();
    let mut out = vec![c.data_dir.display().to_string()];
    out.extend(
        stacyvm_providers::native::find_runtime_binary(&c.runtime).map(|b| b.display().to_string()),
    );
    if let Ok(agent) = stacyvm_providers::native::find_agent(c.agent_path.as_deref()) {
        out.push(agent.display().to_string());
    }
    out
}

pub async fn env_with(config: impl FnOnce(&mut NativeConfig)) -> Option<Env> {
    env_with_images(ImageConfig::default(), config).await
}

/// [`env_with`] with image pull settings (e.g. the local test registry).
pub async fn env_with_images(
    images: ImageConfig,
    config: impl FnOnce(&mut NativeConfig),
) -> Option<Env> {
    let dir = tempfile::Builder::new()
        .prefix("svn")
        .tempdir_in("/var/tmp")
        .ok()?;
    let provider = provider_with(dir.path(), images, config).await?;
    Some(Env { provider, dir })
}

/// The local test registry (`scripts/ci/registry.sh`): its address, and
/// whether it holds the Debian image.
pub fn test_registry() -> Option<(String, bool)> {
    let s = common::registry_settings();
    let registry = s.get("STACYVM_TEST_REGISTRY")?.clone();
    Some((
        registry,
        s.get("STACYVM_TEST_DEBIAN").is_some_and(|v| v == "1"),
    ))
}

/// A provider with its data under `dir`, the busybox image imported.
pub async fn provider_at(
    dir: &Path,
    config: impl FnOnce(&mut NativeConfig),
) -> Option<NativeProvider> {
    provider_with(dir, ImageConfig::default(), config).await
}

async fn provider_with(
    dir: &Path,
    image_config: ImageConfig,
    config: impl FnOnce(&mut NativeConfig),
) -> Option<NativeProvider> {
    if !rustix::process::geteuid().is_root() {
        require("root");
        return None;
    }
    let mut cfg = NativeConfig {
        data_dir: dir.join("d"),
        ..Default::default()
    };
    // Lets the same tests run on runc or runsc.
    if let Ok(rt) = std::env::var("STACYVM_NATIVE_RUNTIME") {
        cfg.runtime = rt;
    }
    config(&mut cfg);
    let images = ImageStore::open(dir.join("images"), image_config).unwrap();
    let provider = NativeProvider::new(cfg, images.clone()).unwrap();
    let HealthReport { healthy, error, .. } = provider.health().await;
    if !healthy {
        require(&error.unwrap_or_default());
        return None;
    }
    let Some(tar) = busybox_tar() else {
        require("a busybox rootfs (scripts/ci/busybox-rootfs.sh)");
        return None;
    };
    images.import_rootfs_tar(&tar, IMAGE).await.unwrap();
    Some(provider)
}

pub async fn env() -> Option<Env> {
    env_with(|_| {}).await
}

pub fn spawn_spec(id: &SandboxId) -> SpawnSpec {
    SpawnSpec {
        id: id.clone(),
        image: IMAGE.into(),
        memory_mb: 128,
        vcpus: 1,
        metadata: Default::default(),
        labels: [("owner".to_string(), "test".to_string())].into(),
        network: None,
    }
}

pub fn sh(script: &str) -> ExecSpec {
    common::sh(script, Duration::from_secs(30))
}

/// Runs a shell script; returns (exit code, stdout, stderr).
pub async fn run(p: &NativeProvider, id: &SandboxId, script: &str) -> (i32, String, String) {
    common::run(p, id, &sh(script)).await
}

/// Lines of /proc/mounts mentioning `needle`.
pub fn mounts_with(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}
