//! Helpers shared by the per-provider test support modules (included by
//! `docker_support` and `native_support` through `#[path]`): shell specs,
//! running a script, and cleanup that must run from `Drop`.
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
