//! Startup reconciliation: make the store agree with what the providers
//! actually run. Persisted sandboxes whose runtime is gone become
//! `destroyed`; those whose provider is unavailable become `error`;
//! runtimes a provider owns but the store does not know are adopted. Every
//! action publishes `reconcile.action`.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use stacyvm_core::{EventType, OwnerId, Sandbox, SandboxState};
use stacyvm_providers::{RuntimeInfo, RuntimeStatus};
use stacyvm_store::SandboxFilter;

use super::lifecycle::labels;
use super::{Manager, ManagerError};

/// What reconciliation did, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    pub kept: usize,
    pub destroyed: usize,
    pub errored: usize,
    pub adopted: usize,
}

impl Manager {
    pub(super) fn reconcile_event(&self, sb: &Sandbox, action: &str, reason: &str) {
        tracing::info!(sandbox_id = %sb.id, provider = %sb.provider, action, reason, "reconcile");
        self.publish(
            EventType::ReconcileAction,
            Some(&sb.id),
            json!({"operation": "reconcile", "provider": sb.provider, "action": action, "reason": reason}),
        );
    }

    /// Runs reconciliation once (at startup, after the first health check).
    pub async fn reconcile(&self) -> Result<ReconcileReport, ManagerError> {
        let mut report = ReconcileReport::default();
        let persisted = self
            .inner
            .store
            .list_sandboxes(&SandboxFilter {
                node_id: self.local_node().map(str::to_string),
                ..SandboxFilter::default()
            })
            .await?;
        let health: BTreeMap<String, bool> = self
            .provider_health()
            .into_iter()
            .map(|h| (h.name, h.healthy))
            .collect();
        for name in self.inner.provider_order.clone() {
            let provider = self.inner.providers[&name].clone();
            let mine: Vec<&Sandbox> = persisted
                .iter()
                .filter(|s| s.provider == name && s.state.is_active())
                .collect();
            if !health.get(&name).copied().unwrap_or(false) {
                for sb in mine {
                    if sb.state == SandboxState::Destroying {
                        // Its destroy is retried once the provider answers.
                        self.schedule_retry(&sb.id);
                        continue;
                    }
                    self.mark(sb, SandboxState::Error, "provider unavailable at startup")
                        .await?;
                    report.errored += 1;
                }
                continue;
            }
            let inventory = match provider.inventory().await {
                Ok(inv) => inv,
                Err(e) => {
                    self.publish(
                        EventType::ReconcileAction,
                        None,
                        json!({"operation": "inventory", "provider": name, "action": "inventory_failed", "error": e.to_string()}),
                    );
                    None
                }
            };
            let known: HashSet<String> = persisted.iter().map(|s| s.id.to_string()).collect();
            let running: BTreeMap<String, &RuntimeInfo> = inventory
                .iter()
                .flatten()
                .map(|r| (r.id.to_string(), r))
                .collect();
            for sb in mine {
                if sb.state == SandboxState::Destroying {
                    // A destroy the last run did not finish.
                    match self.teardown(sb.clone(), Some("reconciled")).await {
                        Ok(_) => report.destroyed += 1,
                        Err(e) => {
                            tracing::warn!(sandbox_id = %sb.id, error = %stacyvm_core::ErrorChain(&e), "destroy after restart failed; retrying later")
                        }
                    }
                    continue;
                }
                let status = match &inventory {
                    Some(_) => running
                        .get(sb.id.as_str())
                        .map(|r| r.status)
                        .unwrap_or(RuntimeStatus::Missing),
                    None => provider
                        .status(&sb.id)
                        .await
                        .unwrap_or(RuntimeStatus::Missing),
                };
                match (status, sb.state) {
                    (RuntimeStatus::Running, SandboxState::Running) => {
                        // The record and its runtime agree: nothing to write.
                        self.reconcile_event(sb, "adopted", "runtime still running");
                        report.kept += 1;
                    }
                    (RuntimeStatus::Running, _) => {
                        // Re-adopted: the record and its runtime agree again.
                        self.mark(sb, SandboxState::Running, "runtime still running")
                            .await?;
                        report.kept += 1;
                    }
                    (RuntimeStatus::Paused, SandboxState::Paused) => {
                        self.reconcile_event(sb, "adopted", "runtime still paused");
                        report.kept += 1;
                    }
                    (RuntimeStatus::Paused, SandboxState::Creating) => {
                        // The spawn was cut short; nobody paused it.
                        let _ = provider.destroy(&sb.id).await;
                        self.inner.store.delete_sandbox(&sb.id).await.ok();
                        self.reconcile_event(sb, "removed", "spawn never completed");
                        report.destroyed += 1;
                    }
                    (RuntimeStatus::Paused, _) => {
                        // Frozen (a pause cut short before its record
                        // was written): the runtime is the truth.
                        self.mark(sb, SandboxState::Paused, "runtime is paused")
                            .await?;
                        report.kept += 1;
                    }
                    (_, SandboxState::Creating) => {
                        // The spawn was cut short before its runtime ran.
                        let _ = provider.destroy(&sb.id).await;
                        self.inner.store.delete_sandbox(&sb.id).await.ok();
                        self.reconcile_event(sb, "removed", "spawn never completed");
                        report.destroyed += 1;
                    }
                    (RuntimeStatus::Stopped | RuntimeStatus::Missing, _) => {
                        // A stopped runtime cannot serve commands; remove it.
                        let _ = provider.destroy(&sb.id).await;
                        self.mark(sb, SandboxState::Destroyed, "runtime is gone")
                            .await?;
                        report.destroyed += 1;
                    }
                }
            }
            for rt in running.values() {
                if let Some(sb) = persisted.iter().find(|s| s.id == rt.id)
                    && sb.state == SandboxState::Error
                    && sb.error.as_deref() == Some(super::nodes::NODE_LOST)
                {
                    // The cluster gave it up while this node was lost: its
                    // runtime must not run on (no sandbox runs twice).
                    let _ = provider.destroy(&rt.id).await;
                    self.reconcile_event(sb, "destroyed", "node was lost; the cluster gave it up");
                    report.destroyed += 1;
                    continue;
                }
                if known.contains(rt.id.as_str()) {
                    continue;
                }
                if self.local_node().is_some()
                    && let Ok(sb) = self.inner.store.get_sandbox(&rt.id).await
                {
                    // On a cluster a record this node does not hold as
                    // active (destroyed by a survivor, or another node's)
                    // means the runtime is no longer wanted here.
                    let _ = provider.destroy(&rt.id).await;
                    self.reconcile_event(&sb, "destroyed", "the cluster no longer wants it here");
                    report.destroyed += 1;
                    continue;
                }
                if !matches!(rt.status, RuntimeStatus::Running | RuntimeStatus::Paused) {
                    let _ = provider.destroy(&rt.id).await;
                    continue;
                }
                let mut sb = self.adopted_record(&name, rt);
                if rt.status == RuntimeStatus::Paused {
                    sb.state = SandboxState::Paused;
                }
                self.inner.store.insert_sandbox(&sb).await?;
                self.reconcile_event(&sb, "adopted", "runtime unknown to the store");
                report.adopted += 1;
            }
        }
        self.inner.reaper_wake.notify_one();
        Ok(report)
    }

    /// Moves `sb` from the state it was read in to `state` and says so.
    async fn mark(
        &self,
        sb: &Sandbox,
        state: SandboxState,
        reason: &str,
    ) -> Result<(), ManagerError> {
        let error = (state == SandboxState::Error).then_some(reason);
        let moved = self
            .inner
            .store
            .transition(&sb.id, &[sb.state], state, error)
            .await?;
        if moved.is_none() {
            // Someone else changed it meanwhile (on a cluster: another node).
            return Ok(());
        }
        let action = match state {
            SandboxState::Destroyed => "destroyed",
            SandboxState::Error => "error",
            _ => "adopted",
        };
        self.reconcile_event(sb, action, reason);
        Ok(())
    }

    /// Rebuilds a sandbox record from a runtime's labels.
    fn adopted_record(&self, provider: &str, rt: &RuntimeInfo) -> Sandbox {
        let now = self.inner.clock.now();
        let label = |k: &str| rt.labels.get(k).map(String::as_str);
        let time = |k: &str| {
            label(k)
                .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        let created_at = time(labels::CREATED).or(rt.created_at).unwrap_or(now);
        let expires_at = time(labels::EXPIRES).unwrap_or_else(|| {
            now + chrono::Duration::from_std(self.inner.limits.ttl.0).unwrap_or_default()
        });
        Sandbox {
            id: rt.id.clone(),
            state: SandboxState::Running,
            provider: provider.to_string(),
            image: rt.image.clone(),
            memory_mb: label(labels::MEMORY)
                .and_then(|v| v.parse().ok())
                .unwrap_or(self.inner.limits.memory_mb),
            vcpus: label(labels::VCPUS)
                .and_then(|v| v.parse().ok())
                .unwrap_or(self.inner.limits.vcpus),
            owner_id: label(labels::OWNER).and_then(|o| OwnerId::parse(o).ok().flatten()),
            created_at,
            expires_at,
            metadata: label(labels::METADATA)
                .and_then(|m| serde_json::from_str(m).ok())
                .unwrap_or_default(),
            preview_domain: self.inner.preview_domain.clone(),
            template: label(labels::TEMPLATE).map(str::to_string),
            error: None,
            node_id: self.local_node().map(str::to_string),
        }
    }
}
