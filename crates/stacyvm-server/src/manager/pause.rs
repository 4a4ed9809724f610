//! Pause and resume: a sandbox frozen in memory by its provider (capability
//! `pause`), recorded as `paused`, and thawed by `resume` or, per
//! `defaults.auto_resume`, by the next exec, file or terminal call.
//!
//! The runtime changes first and the record follows: a crash between the
//! two leaves a frozen runtime under a `running` record, which startup
//! reconciliation turns into `paused` (the runtime is the truth). Pause and
//! resume of one sandbox are serialized on this server; against a destroy
//! the record's conditional transitions decide (a destroyed sandbox is never
//! brought back to `paused` or `running`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::json;
use stacyvm_core::{Capability, EventType, Sandbox, SandboxId, SandboxState};
use stacyvm_providers::{Provider, ProviderError};

use super::{Manager, ManagerError};
use crate::obs::operations::Operation;

/// One lock per sandbox being paused or resumed.
#[derive(Debug, Default)]
pub(super) struct PauseLocks(Mutex<HashMap<SandboxId, Arc<tokio::sync::Mutex<()>>>>);

impl PauseLocks {
    async fn lock(&self, id: &SandboxId) -> PauseGuard<'_> {
        let m = {
            let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(id.clone()).or_default().clone()
        };
        let guard = m.clone().lock_owned().await;
        PauseGuard {
            locks: self,
            id: id.clone(),
            lock: m,
            _guard: guard,
        }
    }
}

struct PauseGuard<'a> {
    locks: &'a PauseLocks,
    id: SandboxId,
    lock: Arc<tokio::sync::Mutex<()>>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for PauseGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.locks.0.lock().unwrap_or_else(|e| e.into_inner());
        // The map's reference, ours and the held guard's: nobody waits.
        if Arc::strong_count(&self.lock) <= 3 {
            map.remove(&self.id);
        }
    }
}

/// States a sandbox can be paused from.
const PAUSABLE: [SandboxState; 2] = [SandboxState::Running, SandboxState::Unhealthy];

impl Manager {
    /// Freezes a running sandbox; pausing a paused one returns it as is.
    pub async fn pause(&self, id: &SandboxId) -> Result<Sandbox, ManagerError> {
        let _lock = self.inner.pause_locks.lock(id).await;
        let _busy = self.busy(id);
        let sb = self.get(id).await?;
        match sb.state {
            SandboxState::Paused => return Ok(sb),
            SandboxState::Running | SandboxState::Unhealthy => {}
            SandboxState::Destroyed | SandboxState::Expired => {
                return Err(ManagerError::NotFound(format!("sandbox {id}")));
            }
            other => {
                return Err(ManagerError::Conflict(format!(
                    "sandbox {id} is {other}, cannot pause"
                )));
            }
        }
        self.ensure_local(&sb)?;
        let provider = self.pausing_provider(&sb)?;
        let started = Instant::now();
        let result = provider.pause(id).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        self.observe(Operation::Pause, &sb.provider, Some(id), started, result)
            .map_err(|e| self.gone_or(id, e))?;
        let moved = self
            .inner
            .store
            .transition(id, &PAUSABLE, SandboxState::Paused, None)
            .await;
        let paused = match moved {
            Ok(Some(p)) => p,
            Ok(None) => {
                // Destroyed (or moved) meanwhile: leave nothing frozen.
                let _ = provider.resume(id).await;
                return Err(self.lost_race(id).await);
            }
            Err(e) => {
                // The record could not follow: thaw so both agree again.
                let _ = provider.resume(id).await;
                return Err(e.into());
            }
        };
        let paused = self.cap_paused_expiry(paused).await;
        self.publish(
            EventType::SandboxPaused,
            Some(id),
            json!({"provider": paused.provider, "pause_ms": elapsed_ms}),
        );
        tracing::info!(sandbox_id = %id, provider = %paused.provider, elapsed_ms, "sandbox paused");
        Ok(paused)
    }

    /// Thaws a paused sandbox; resuming a running one returns it as is.
    pub async fn resume(&self, id: &SandboxId) -> Result<Sandbox, ManagerError> {
        self.resume_because(id, "requested").await
    }

    pub(super) async fn resume_because(
        &self,
        id: &SandboxId,
        reason: &str,
    ) -> Result<Sandbox, ManagerError> {
        let _lock = self.inner.pause_locks.lock(id).await;
        let _busy = self.busy(id);
        let sb = self.get(id).await?;
        match sb.state {
            SandboxState::Paused => {}
            SandboxState::Running | SandboxState::Unhealthy => return Ok(sb),
            SandboxState::Destroyed | SandboxState::Expired => {
                return Err(ManagerError::NotFound(format!("sandbox {id}")));
            }
            other => {
                return Err(ManagerError::Conflict(format!(
                    "sandbox {id} is {other}, cannot resume"
                )));
            }
        }
        self.ensure_local(&sb)?;
        let provider = self.pausing_provider(&sb)?;
        let started = Instant::now();
        let result = provider.resume(id).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        self.observe(Operation::Resume, &sb.provider, Some(id), started, result)
            .map_err(|e| self.gone_or(id, e))?;
        match self
            .inner
            .store
            .transition(id, &[SandboxState::Paused], SandboxState::Running, None)
            .await?
        {
            Some(running) => {
                self.publish(
                    EventType::SandboxResumed,
                    Some(id),
                    json!({"provider": running.provider, "resume_ms": elapsed_ms, "reason": reason}),
                );
                tracing::info!(sandbox_id = %id, provider = %running.provider, elapsed_ms, reason, "sandbox resumed");
                Ok(running)
            }
            None => Err(self.lost_race(id).await),
        }
    }

    /// A sandbox that can take commands, resumed first when paused and
    /// `defaults.auto_resume` allows; 409 `sandbox_paused` when not.
    pub(super) async fn resumed_if_paused(&self, sb: Sandbox) -> Result<Sandbox, ManagerError> {
        if sb.state != SandboxState::Paused {
            return Ok(sb);
        }
        if !self.inner.limits.auto_resume {
            return Err(ManagerError::Paused(format!(
                "sandbox {} is paused; resume it first (POST /sandboxes/{}/resume)",
                sb.id, sb.id
            )));
        }
        self.resume_because(&sb.id, "auto").await
    }

    /// `POST /sandboxes/{id}/hibernate`: no provider checkpoints here, and
    /// the answer says why (501).
    pub async fn hibernate(&self, id: &SandboxId) -> Result<Sandbox, ManagerError> {
        let sb = self.get(id).await?;
        if matches!(sb.state, SandboxState::Destroyed | SandboxState::Expired) {
            return Err(ManagerError::NotFound(format!("sandbox {id}")));
        }
        let provider = self.provider(&sb.provider)?;
        let why = provider
            .hibernate_unavailable()
            .unwrap_or_else(|| "this provider cannot hibernate sandboxes".into());
        Err(ManagerError::NotImplemented(format!(
            "provider {} cannot hibernate sandbox {id}: {why}",
            sb.provider
        )))
    }

    fn pausing_provider(&self, sb: &Sandbox) -> Result<Arc<dyn Provider>, ManagerError> {
        let provider = self.provider(&sb.provider)?.clone();
        if !provider.capabilities().contains(&Capability::Pause) {
            return Err(ManagerError::NotImplemented(format!(
                "provider {} cannot pause sandboxes (no `pause` capability)",
                sb.provider
            )));
        }
        Ok(provider)
    }

    /// A provider that no longer has the runtime: not found, as for exec.
    fn gone_or(&self, id: &SandboxId, e: ProviderError) -> ManagerError {
        match e {
            ProviderError::Destroyed(_) | ProviderError::NotFound(_) => {
                ManagerError::NotFound(format!("sandbox {id}"))
            }
            other => other.into(),
        }
    }

    /// Someone else moved the record between our read and our write.
    async fn lost_race(&self, id: &SandboxId) -> ManagerError {
        match self.get(id).await {
            Ok(sb) if sb.state.is_active() && sb.state != SandboxState::Destroying => {
                ManagerError::Conflict(format!("sandbox {id} is {}", sb.state))
            }
            _ => ManagerError::NotFound(format!("sandbox {id}")),
        }
    }

    /// With `defaults.paused_ttl`, a pause brings the expiry forward to at
    /// most pause time + `paused_ttl`.
    async fn cap_paused_expiry(&self, sb: Sandbox) -> Sandbox {
        let cap = self.inner.limits.paused_ttl;
        if cap.is_zero() {
            return sb;
        }
        let limit = self.inner.clock.now() + chrono::Duration::from_std(cap.0).unwrap_or_default();
        if sb.expires_at <= limit {
            return sb;
        }
        match self
            .inner
            .store
            .set_expiry(&sb.id, limit, &[SandboxState::Paused])
            .await
        {
            Ok(Some(capped)) => {
                self.inner.reaper_wake.notify_one();
                capped
            }
            _ => sb,
        }
    }
}
