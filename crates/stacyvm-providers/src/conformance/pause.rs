//! Pause and resume (capability `pause`): a frozen sandbox keeps its
//! processes, which do not run until it is resumed.

use std::time::Duration;

use stacyvm_core::Capability;

use super::{Harness, sh_ok, spec, with_sandbox};
use crate::{RuntimeStatus, StreamOptions};

/// Ticks the counter counts while unfrozen, per second (sleep 0.1).
const TICKS_PER_SEC: u64 = 10;

async fn ticks(h: &Harness, id: &stacyvm_core::SandboxId) -> u64 {
    let out = sh_ok(h, id, "/tmp", "cat pause-ticks 2>/dev/null | wc -l").await;
    out.trim().parse().unwrap_or(0)
}

/// A counter process keeps running across pause and resume, does not
/// advance while paused, and advances again after; status and inventory
/// say `Paused` meanwhile; pause and resume are idempotent. A provider
/// without the capability answers `Unsupported`. A paused sandbox can be
/// destroyed.
pub async fn case_pause_keeps_a_counter_frozen(h: &Harness) {
    let p = h.provider.clone();
    let name = p.name().to_string();
    with_sandbox(h, |id| async move {
        if !p.capabilities().contains(&Capability::Pause) {
            let err = p
                .pause(&id)
                .await
                .expect_err("pause without the capability");
            assert!(
                matches!(err, crate::ProviderError::Unsupported(_)),
                "[{name}] {err}"
            );
            return;
        }
        let counter = "while true; do echo x >> pause-ticks; sleep 0.1; done";
        let session = p
            .exec_stream(
                &id,
                &spec(
                    &["/bin/sh", "-c", counter],
                    "/tmp",
                    Duration::from_secs(300),
                ),
                StreamOptions::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("[{name}] starting the counter: {e}"));
        tokio::time::sleep(Duration::from_millis(800)).await;
        let before = ticks(h, &id).await;
        assert!(before > 0, "[{name}] the counter runs");

        p.pause(&id)
            .await
            .unwrap_or_else(|e| panic!("[{name}] pause: {e}"));
        p.pause(&id)
            .await
            .unwrap_or_else(|e| panic!("[{name}] pause again: {e}"));
        assert_eq!(
            p.status(&id).await.expect("status"),
            RuntimeStatus::Paused,
            "[{name}] status while paused"
        );
        if let Some(list) = p.inventory().await.expect("inventory") {
            let me = list.iter().find(|r| r.id == id).expect("listed");
            assert_eq!(
                me.status,
                RuntimeStatus::Paused,
                "[{name}] inventory while paused"
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        p.resume(&id)
            .await
            .unwrap_or_else(|e| panic!("[{name}] resume: {e}"));
        p.resume(&id)
            .await
            .unwrap_or_else(|e| panic!("[{name}] resume again: {e}"));
        assert_eq!(p.status(&id).await.expect("status"), RuntimeStatus::Running);
        let after_pause = ticks(h, &id).await;
        // Two seconds unfrozen would be ~20 ticks; frozen, only the few of
        // the moments around the calls.
        assert!(
            after_pause >= before && after_pause - before < TICKS_PER_SEC,
            "[{name}] the counter advanced while paused: {before} -> {after_pause}"
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let later = ticks(h, &id).await;
        assert!(
            later >= after_pause + 5,
            "[{name}] the same counter advances after resume: {after_pause} -> {later}"
        );
        drop(session);
        // A paused sandbox can be destroyed (frozen tasks take no signal
        // until thawed, so the provider must see to it).
        p.pause(&id)
            .await
            .unwrap_or_else(|e| panic!("[{name}] pause: {e}"));
        p.destroy(&id)
            .await
            .unwrap_or_else(|e| panic!("[{name}] destroy while paused: {e}"));
        assert_eq!(
            p.status(&id).await.expect("status"),
            RuntimeStatus::Missing,
            "[{name}] destroyed while paused"
        );
    })
    .await;
}
