//! Cache of per-sandbox resource figures (CPU seconds, memory, pids).
//!
//! Measuring is slow for some providers (a Docker stats call, a cgroup walk
//! per sandbox), so a scrape must never measure: a background task calls
//! [`ResourceCache::refresh`] on an interval with bounded concurrency and a
//! timeout per sandbox, and `/metrics/prometheus` reads
//! [`ResourceCache::snapshot`].

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::RwLock;
use std::time::Duration;

use futures::StreamExt;
use stacyvm_core::{Sandbox, SandboxState};
use stacyvm_providers::ResourceUsage;

use super::SandboxResources;

/// A measurement: `None` when it timed out, the error rendered otherwise.
type Outcome = Option<Result<Option<ResourceUsage>, String>>;

/// Latest figures of each measured sandbox.
#[derive(Debug, Default)]
pub struct ResourceCache {
    by_sandbox: RwLock<HashMap<String, SandboxResources>>,
}

/// What one [`ResourceCache::refresh`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefreshReport {
    /// Sandboxes measured now.
    pub measured: usize,
    /// Sandboxes whose provider cannot measure them (left out).
    pub unsupported: usize,
    /// Failed or timed-out measurements; their previous figures are kept.
    pub failed: usize,
}

impl ResourceCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Figures of every cached sandbox, ordered by sandbox id.
    pub fn snapshot(&self) -> Vec<SandboxResources> {
        let map = self
            .by_sandbox
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut out: Vec<SandboxResources> = map.values().cloned().collect();
        out.sort_by(|a, b| a.sandbox.cmp(&b.sandbox));
        out
    }

    /// Measures every live sandbox of `sandboxes` (active and not being
    /// destroyed) with `measure`, at most `concurrency` at a time and each
    /// within `timeout`, then replaces the cache: sandboxes no longer listed
    /// are dropped, a failed or timed-out measurement keeps its previous
    /// figures, `Ok(None)` (provider cannot measure) drops the sandbox.
    pub async fn refresh<F, Fut, E>(
        &self,
        sandboxes: Vec<Sandbox>,
        measure: F,
        concurrency: usize,
        timeout: Duration,
    ) -> RefreshReport
    where
        F: Fn(Sandbox) -> Fut,
        Fut: Future<Output = Result<Option<ResourceUsage>, E>>,
        E: fmt::Display,
    {
        let live = sandboxes
            .into_iter()
            .filter(|s| s.state.is_active() && s.state != SandboxState::Destroying);
        let results: Vec<(Sandbox, Outcome)> = futures::stream::iter(live.map(|sb| {
            let fut = measure(sb.clone());
            async move {
                let outcome = tokio::time::timeout(timeout, fut)
                    .await
                    .ok()
                    .map(|r| r.map_err(|e| e.to_string()));
                (sb, outcome)
            }
        }))
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;

        let mut report = RefreshReport::default();
        let mut map = self
            .by_sandbox
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut next = HashMap::with_capacity(results.len());
        for (sb, outcome) in results {
            let id = sb.id.as_str().to_owned();
            match outcome {
                Some(Ok(Some(usage))) => {
                    report.measured += 1;
                    next.insert(id, SandboxResources::new(&sb, usage));
                }
                Some(Ok(None)) => report.unsupported += 1,
                failure => {
                    report.failed += 1;
                    match &failure {
                        Some(Err(e)) => {
                            tracing::debug!(sandbox_id = %sb.id, provider = %sb.provider, error = %e, "resource usage failed")
                        }
                        _ => {
                            tracing::debug!(sandbox_id = %sb.id, provider = %sb.provider, "resource usage timed out")
                        }
                    }
                    if let Some(previous) = map.remove(&id) {
                        next.insert(id, previous);
                    }
                }
            }
        }
        *map = next;
        report
    }
}

impl SandboxResources {
    /// Labels from `sandbox`, figures from `usage`.
    pub fn new(sandbox: &Sandbox, usage: ResourceUsage) -> Self {
        SandboxResources {
            sandbox: sandbox.id.as_str().to_owned(),
            provider: sandbox.provider.clone(),
            owner: sandbox
                .owner_id
                .as_ref()
                .map(|o| o.as_str().to_owned())
                .unwrap_or_default(),
            cpu_seconds: Some(usage.cpu_seconds),
            memory_bytes: Some(usage.memory_bytes),
            pids: Some(usage.pids),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use stacyvm_core::{OwnerId, SandboxId};

    use super::*;

    fn sandbox(id: &str, state: SandboxState, owner: Option<&str>) -> Sandbox {
        let now = chrono::Utc::now();
        Sandbox {
            id: SandboxId::parse(id).unwrap(),
            state,
            provider: "docker".to_owned(),
            image: "alpine".to_owned(),
            memory_mb: 64,
            vcpus: 1,
            owner_id: owner.and_then(|o| OwnerId::parse(o).unwrap()),
            created_at: now,
            expires_at: now,
            metadata: BTreeMap::new(),
            preview_domain: None,
            template: None,
            error: None,
            node_id: None,
        }
    }

    fn usage(cpu: f64) -> ResourceUsage {
        ResourceUsage {
            cpu_seconds: cpu,
            memory_bytes: 4096,
            pids: 2,
        }
    }

    #[tokio::test]
    async fn measures_live_sandboxes_only_with_their_labels() {
        let cache = ResourceCache::new();
        let all = vec![
            sandbox("sb-0000000b", SandboxState::Running, Some("alice")),
            sandbox("sb-0000000a", SandboxState::Creating, None),
            sandbox("sb-0000000c", SandboxState::Destroyed, None),
            sandbox("sb-0000000d", SandboxState::Error, None),
        ];
        let report = cache
            .refresh(
                all,
                |_sb| async { Ok::<_, String>(Some(usage(1.5))) },
                4,
                Duration::from_secs(1),
            )
            .await;
        assert_eq!(
            report,
            RefreshReport {
                measured: 2,
                unsupported: 0,
                failed: 0
            }
        );
        let snap = cache.snapshot();
        assert_eq!(snap.len(), 2);
        assert_eq!(snap[0].sandbox, "sb-0000000a");
        assert_eq!(snap[0].owner, "");
        assert_eq!(snap[1].owner, "alice");
        assert_eq!(snap[1].provider, "docker");
        assert_eq!(snap[1].cpu_seconds, Some(1.5));
        assert_eq!(snap[1].memory_bytes, Some(4096));
        assert_eq!(snap[1].pids, Some(2));
    }

    #[tokio::test]
    async fn failures_keep_previous_figures_and_gone_sandboxes_are_dropped() {
        let cache = ResourceCache::new();
        let a = sandbox("sb-0000000a", SandboxState::Running, None);
        let b = sandbox("sb-0000000b", SandboxState::Running, None);
        let c = sandbox("sb-0000000c", SandboxState::Running, None);
        cache
            .refresh(
                vec![a.clone(), b.clone(), c.clone()],
                |_| async { Ok::<_, String>(Some(usage(1.0))) },
                2,
                Duration::from_secs(1),
            )
            .await;
        assert_eq!(cache.snapshot().len(), 3);

        // a errors, b hangs past the timeout, c is gone, d cannot be measured.
        let d = sandbox("sb-0000000d", SandboxState::Running, None);
        let report = cache
            .refresh(
                vec![a, b, d],
                |sb| async move {
                    match sb.id.as_str() {
                        "sb-0000000a" => Err("docker stats failed".to_owned()),
                        "sb-0000000b" => {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            Ok(Some(usage(9.0)))
                        }
                        _ => Ok(None),
                    }
                },
                2,
                Duration::from_millis(50),
            )
            .await;
        assert_eq!(
            report,
            RefreshReport {
                measured: 0,
                unsupported: 1,
                failed: 2
            }
        );
        let ids: Vec<String> = cache.snapshot().into_iter().map(|s| s.sandbox).collect();
        assert_eq!(ids, ["sb-0000000a", "sb-0000000b"]);
        assert!(cache.snapshot().iter().all(|s| s.cpu_seconds == Some(1.0)));
    }

    #[tokio::test]
    async fn concurrency_is_bounded() {
        let cache = ResourceCache::new();
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let all: Vec<Sandbox> = (0..20)
            .map(|i| sandbox(&format!("sb-{i:08x}"), SandboxState::Running, None))
            .collect();
        let report = cache
            .refresh(
                all,
                |_| {
                    let running = Arc::clone(&running);
                    let peak = Arc::clone(&peak);
                    async move {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        running.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, String>(Some(usage(0.0)))
                    }
                },
                3,
                Duration::from_secs(5),
            )
            .await;
        assert_eq!(report.measured, 20);
        assert!(
            peak.load(Ordering::SeqCst) <= 3,
            "peak {}",
            peak.load(Ordering::SeqCst)
        );
        assert!(peak.load(Ordering::SeqCst) >= 2);
    }
}
