//! Helpers shared by the per-provider test support modules (included by
//! `docker_support` and `native_support` through `#[path]`): shell specs,
//! running a script, cleanup that must run from `Drop`, and the settings
//! of the test registries.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use stacyvm_core::SandboxId;
use stacyvm_providers::{ExecSpec, Provider};

/// `/bin/sh -c script` with `timeout`.
pub fn sh(script: &str, timeout: Duration) -> ExecSpec {
    ExecSpec {
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        timeout,
        ..Default::default()
    }
}

/// Runs `spec`; returns (exit code, stdout, stderr).
pub async fn run(p: &impl Provider, id: &SandboxId, spec: &ExecSpec) -> (i32, String, String) {
    let out = p.exec(id, spec).await.expect("exec");
    (
        out.exit_code,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `cleanup` to completion on a fresh runtime in another thread, so a
/// `Drop` can do async cleanup even inside (or after) a test's runtime.
pub fn block_on_thread(cleanup: impl Future<Output = ()> + Send + 'static) {
    let _ = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(cleanup);
        }
    })
    .join();
}

/// Settings from the environment, else from the file registry.sh writes
/// (`$STACYVM_CI_STATE/registry.env`, default `/var/lib/stacyvm-ci`).
pub fn registry_settings() -> std::collections::HashMap<String, String> {
    let mut map = std::collections::HashMap::new();
    let state = std::env::var("STACYVM_CI_STATE").unwrap_or_else(|_| "/var/lib/stacyvm-ci".into());
    if let Ok(text) = std::fs::read_to_string(std::path::Path::new(&state).join("registry.env")) {
        for line in text.lines() {
            let line = line.trim().trim_start_matches("export ").trim();
            if let Some((k, v)) = line.split_once('=') {
                map.insert(k.to_owned(), v.to_owned());
            }
        }
    }
    for (k, v) in std::env::vars() {
        if k.starts_with("STACYVM_TEST_") && !v.is_empty() {
            map.insert(k, v);
        }
    }
    map
}

/// A spawn whose image the registry (`registry`, a loopback `host:port`)
/// does not know fails `NotFound`, one whose registry cannot be reached
/// fails `Upstream`, each saying which image, and neither leaves a runtime.
pub async fn assert_pull_failures(
    p: &impl Provider,
    registry: &str,
    spec: impl Fn(&SandboxId, &str) -> stacyvm_providers::SpawnSpec,
) {
    use stacyvm_providers::{ProviderError, RuntimeStatus};
    // Port 1 on loopback: nothing listens there.
    let cases = [
        (
            format!("{registry}/stacyvm-test/no-such-image:latest"),
            "not_found",
        ),
        (
            "127.0.0.1:1/stacyvm-test/busybox:latest".to_owned(),
            "upstream",
        ),
    ];
    for (image, kind) in cases {
        let id = SandboxId::generate();
        let e = p
            .spawn(&spec(&id, &image))
            .await
            .expect_err("the spawn fails");
        assert_eq!(e.kind(), kind, "[{}] {image}: {e:?}", p.name());
        assert!(
            e.to_string().contains(&image) || matches!(e, ProviderError::NotFound(_)),
            "[{}] the message names the image: {e}",
            p.name()
        );
        assert_eq!(
            p.status(&id).await.expect("status"),
            RuntimeStatus::Missing,
            "[{}] {image}: nothing left",
            p.name()
        );
    }
}
