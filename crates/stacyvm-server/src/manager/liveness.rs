//! Runtime liveness: the one condition that makes a sandbox `unhealthy`.
//!
//! A sandbox recorded `running` whose provider (itself healthy) reports its
//! runtime stopped or gone (killed from outside, its init died, the
//! container was stopped or removed) is marked `unhealthy`, the reason in
//! `error`, with a `sandbox.error` event. When the runtime runs again (a
//! `docker start`), it is `running` again with a `sandbox.running` event.
//! An unhealthy sandbox still counts against limits, still expires on its
//! TTL and can still be destroyed; commands reach its provider, which
//! answers for the dead runtime.
//!
//! A sandbox is marked only when two consecutive checks agree, and never
//! while a spawn or destroy of this server works on it; the state changes
//! are compare-and-set in the store, so a destroy, pause or expiry that
//! moves the sandbox meanwhile always wins.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use serde_json::json;
use stacyvm_core::{EventType, Sandbox, SandboxId, SandboxState};
use stacyvm_providers::{Provider, RuntimeStatus};
use stacyvm_store::SandboxFilter;

use super::Manager;
use super::health::HEALTH_TIMEOUT;

/// Status calls at once for a provider without an inventory.
const STATUS_CONCURRENCY: usize = 8;

/// Suspects: running sandboxes whose runtime the last check found not
/// running. Only sandboxes seen in that check are kept, so it is bounded
/// by the number of sandboxes.
#[derive(Debug, Default)]
pub(super) struct Liveness {
    suspects: std::sync::Mutex<HashSet<SandboxId>>,
}

/// What one [`Manager::check_liveness`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LivenessReport {
    /// Running or unhealthy sandboxes whose runtime status was read.
    pub checked: usize,
    /// Marked `unhealthy` now.
    pub unhealthy: usize,
    /// Back to `running` now.
    pub recovered: usize,
}

impl Manager {
    /// Compares every running or unhealthy sandbox of this server's node
    /// with its runtime, for each provider that is healthy, and moves the
    /// sandboxes whose runtime stopped or came back (see the module docs).
    pub async fn check_liveness(&self) -> LivenessReport {
        let mut report = LivenessReport::default();
        let mut seen_down = HashSet::new();
        for (name, provider) in &self.inner.providers {
            if !self.provider_health_of(name).is_some_and(|h| h.healthy) {
                continue;
            }
            // Read the records before the runtimes: a sandbox running here
            // had a runtime by then, so a missing one later really went.
            let filter = SandboxFilter {
                provider: Some(name.clone()),
                node_id: self.local_node().map(str::to_string),
                ..SandboxFilter::default()
            };
            let Ok(mut sandboxes) = self.inner.store.list_sandboxes(&filter).await else {
                continue;
            };
            sandboxes.retain(|s| {
                matches!(s.state, SandboxState::Running | SandboxState::Unhealthy)
                    && !self.is_busy(&s.id)
            });
            if sandboxes.is_empty() {
                continue;
            }
            let statuses = runtime_statuses(provider, &sandboxes).await;
            for sb in sandboxes {
                let Some(&status) = statuses.get(&sb.id) else {
                    continue;
                };
                report.checked += 1;
                match (sb.state, status) {
                    // Paused while this check ran (the record follows).
                    (SandboxState::Running, RuntimeStatus::Running | RuntimeStatus::Paused) => {}
                    (SandboxState::Running, down) => {
                        seen_down.insert(sb.id.clone());
                        if self.was_suspect(&sb.id) {
                            report.unhealthy += usize::from(self.mark_unhealthy(&sb, down).await);
                        }
                    }
                    (SandboxState::Unhealthy, RuntimeStatus::Running) => {
                        report.recovered += usize::from(self.mark_recovered(&sb).await);
                    }
                    _ => {}
                }
            }
        }
        *self
            .inner
            .liveness
            .suspects
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = seen_down;
        report
    }

    fn was_suspect(&self, id: &SandboxId) -> bool {
        let suspects = self.inner.liveness.suspects.lock();
        suspects.unwrap_or_else(|e| e.into_inner()).contains(id)
    }

    async fn mark_unhealthy(&self, sb: &Sandbox, status: RuntimeStatus) -> bool {
        let reason = match status {
            RuntimeStatus::Missing => "the sandbox's runtime is gone",
            _ => "the sandbox's runtime is not running",
        };
        if !self
            .moved(
                sb,
                SandboxState::Running,
                SandboxState::Unhealthy,
                Some(reason),
            )
            .await
        {
            return false;
        }
        tracing::warn!(sandbox_id = %sb.id, provider = %sb.provider, reason, "sandbox unhealthy");
        self.publish(
            EventType::SandboxError,
            Some(&sb.id),
            json!({"operation": "liveness", "provider": sb.provider, "state": "unhealthy", "error": reason}),
        );
        true
    }

    async fn mark_recovered(&self, sb: &Sandbox) -> bool {
        if !self
            .moved(sb, SandboxState::Unhealthy, SandboxState::Running, None)
            .await
        {
            return false;
        }
        tracing::info!(sandbox_id = %sb.id, provider = %sb.provider, "sandbox running again");
        self.publish(
            EventType::SandboxRunning,
            Some(&sb.id),
            json!({"operation": "liveness", "provider": sb.provider, "reason": "runtime running again"}),
        );
        true
    }

    /// Moves `sb` from `from` to `to` in the store; false when it was no
    /// longer in `from` (another caller got there first) or the store failed.
    async fn moved(
        &self,
        sb: &Sandbox,
        from: SandboxState,
        to: SandboxState,
        reason: Option<&str>,
    ) -> bool {
        let moved = self
            .inner
            .store
            .transition(&sb.id, &[from], to, reason)
            .await;
        matches!(moved, Ok(Some(_)))
    }
}

/// The runtime status of each of `sandboxes`: from one inventory where the
/// provider has one, else one status call each (a failed call leaves the
/// sandbox out: unknown is not down), each within the health timeout.
async fn runtime_statuses(
    provider: &Arc<dyn Provider>,
    sandboxes: &[Sandbox],
) -> BTreeMap<SandboxId, RuntimeStatus> {
    match tokio::time::timeout(HEALTH_TIMEOUT, provider.inventory()).await {
        Ok(Ok(Some(runtimes))) => {
            let mut statuses: BTreeMap<SandboxId, RuntimeStatus> =
                runtimes.into_iter().map(|r| (r.id, r.status)).collect();
            for sb in sandboxes {
                statuses
                    .entry(sb.id.clone())
                    .or_insert(RuntimeStatus::Missing);
            }
            statuses
        }
        Ok(Ok(None)) => {
            let reads: Vec<_> = sandboxes
                .iter()
                .map(|sb| {
                    let (provider, id) = (provider.clone(), sb.id.clone());
                    async move {
                        let status = tokio::time::timeout(HEALTH_TIMEOUT, provider.status(&id))
                            .await
                            .ok()?
                            .ok()?;
                        Some((id, status))
                    }
                })
                .collect();
            futures::stream::iter(reads)
                .buffer_unordered(STATUS_CONCURRENCY)
                .filter_map(futures::future::ready)
                .collect()
                .await
        }
        // Failed or timed out: nothing is known this time.
        Ok(Err(_)) | Err(_) => BTreeMap::new(),
    }
}
