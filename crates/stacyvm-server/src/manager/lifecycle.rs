//! Spawn, admission, listing, extend, destroy, prune and the TTL reaper.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;
use stacyvm_core::{EventType, GoDuration, OwnerId, Sandbox, SandboxId, SandboxState};
use stacyvm_providers::SpawnSpec;
use stacyvm_store::{SandboxFilter, StoreError};

use super::{Manager, ManagerError};
use crate::api::model::{AdmissionDecision, SpawnRequest};
use crate::obs::operations::Operation;

/// A spawn request with templates and defaults applied.
#[derive(Debug, Clone)]
struct Resolved {
    image: String,
    provider: String,
    memory_mb: u32,
    vcpus: u32,
    ttl: GoDuration,
    owner: Option<OwnerId>,
    template: Option<String>,
    metadata: BTreeMap<String, String>,
}

/// Labels recorded on a runtime so it can be re-adopted after a restart.
pub(crate) mod labels {
    pub const OWNER: &str = "owner_id";
    pub const CREATED: &str = "created_at";
    pub const EXPIRES: &str = "expires_at";
    pub const MEMORY: &str = "memory_mb";
    pub const VCPUS: &str = "vcpus";
    pub const TEMPLATE: &str = "template";
    pub const METADATA: &str = "metadata";
}

impl Manager {
    /// Applies template, request and configured defaults, then validates.
    async fn resolve(
        &self,
        req: &SpawnRequest,
        header_owner: Option<&OwnerId>,
    ) -> Result<Resolved, ManagerError> {
        let template =
            match req.template.as_deref().filter(|t| !t.is_empty()) {
                Some(name) => Some(self.inner.store.get_template(name).await.map_err(
                    |e| match e {
                        StoreError::NotFound(_) => {
                            ManagerError::NotFound(format!("template {name}"))
                        }
                        other => other.into(),
                    },
                )?),
                None => None,
            };
        let l = &self.inner.limits;
        let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.trim().is_empty());
        let image = nonempty(&req.image)
            .or_else(|| {
                template
                    .as_ref()
                    .map(|t| t.image.clone())
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| l.image.clone());
        let provider = nonempty(&req.provider)
            .or_else(|| {
                template
                    .as_ref()
                    .map(|t| t.provider.clone())
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| self.inner.default_provider.clone());
        if !self.inner.providers.contains_key(&provider) {
            return Err(ManagerError::BadRequest(format!(
                "provider {provider:?} is not configured (available: {})",
                self.inner.provider_order.join(", ")
            )));
        }
        let memory_mb = req
            .memory_mb
            .filter(|m| *m > 0)
            .or_else(|| template.as_ref().map(|t| t.memory_mb).filter(|m| *m > 0))
            .unwrap_or(l.memory_mb);
        let vcpus = req
            .vcpus
            .filter(|v| *v > 0)
            .or_else(|| template.as_ref().map(|t| t.vcpus).filter(|v| *v > 0))
            .unwrap_or(l.vcpus);
        let ttl = req
            .ttl
            .filter(|t| !t.is_zero())
            .or_else(|| {
                template
                    .as_ref()
                    .and_then(|t| t.ttl)
                    .filter(|t| !t.is_zero())
            })
            .unwrap_or(l.ttl);
        let owner = match header_owner {
            Some(o) => Some(o.clone()),
            None => OwnerId::parse(req.owner_id.as_deref().unwrap_or(""))
                .map_err(|e| ManagerError::BadRequest(e.to_string()))?,
        };
        let mut metadata = template
            .as_ref()
            .map(|t| t.metadata.clone())
            .unwrap_or_default();
        metadata.extend(req.metadata.clone().unwrap_or_default());
        if image.len() > 512 || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ManagerError::BadRequest(format!(
                "invalid image reference {image:?}"
            )));
        }
        if l.max_memory_mb > 0 && memory_mb > l.max_memory_mb {
            return Err(ManagerError::limit(format!(
                "memory_mb {memory_mb} exceeds the maximum of {}",
                l.max_memory_mb
            )));
        }
        if l.max_vcpus > 0 && vcpus > l.max_vcpus {
            return Err(ManagerError::limit(format!(
                "vcpus {vcpus} exceeds the maximum of {}",
                l.max_vcpus
            )));
        }
        if !l.max_ttl.is_zero() && ttl > l.max_ttl {
            return Err(ManagerError::limit(format!(
                "ttl {ttl} exceeds the maximum of {}",
                l.max_ttl
            )));
        }
        Ok(Resolved {
            image,
            provider,
            memory_mb,
            vcpus,
            ttl,
            owner,
            template: template.map(|t| t.name),
            metadata,
        })
    }

    /// Counts active sandboxes, in total and for `owner`.
    async fn active_counts(&self, owner: Option<&OwnerId>) -> Result<(u32, u32), ManagerError> {
        let all = self
            .inner
            .store
            .list_sandboxes(&SandboxFilter::default())
            .await?;
        let active = all.iter().filter(|s| s.state.is_active());
        let (mut total, mut mine) = (0u32, 0u32);
        for s in active {
            total += 1;
            if owner.is_some() && s.owner_id.as_ref() == owner {
                mine += 1;
            }
        }
        Ok((total, mine))
    }

    fn limit_reason(&self, total: u32, mine: u32, owner: Option<&OwnerId>) -> Option<String> {
        let l = &self.inner.limits;
        if l.max_sandboxes > 0 && total >= l.max_sandboxes {
            return Some(format!(
                "sandbox limit reached: {total} of {} active",
                l.max_sandboxes
            ));
        }
        if let Some(owner) = owner
            && l.max_sandboxes_per_owner > 0
            && mine >= l.max_sandboxes_per_owner
        {
            return Some(format!(
                "sandbox limit for owner {owner} reached: {mine} of {} active",
                l.max_sandboxes_per_owner
            ));
        }
        None
    }

    /// Publishes `resource.limit` and returns the error.
    fn limit_hit(&self, err: ManagerError, owner: Option<&OwnerId>) -> ManagerError {
        if let ManagerError::ResourceLimit { message, .. } = &err {
            self.publish(
                EventType::ResourceLimit,
                None,
                json!({"operation": "spawn", "error": message, "owner_id": owner.map(OwnerId::as_str)}),
            );
        }
        err
    }

    /// Decides whether a spawn would be admitted, without creating anything.
    pub async fn admission(
        &self,
        req: &SpawnRequest,
        header_owner: Option<&OwnerId>,
    ) -> Result<AdmissionDecision, ManagerError> {
        let l = &self.inner.limits;
        let (resolved_owner, mut reason) = match self.resolve(req, header_owner).await {
            Ok(r) => (r.owner, String::new()),
            Err(ManagerError::ResourceLimit { message, .. }) => (header_owner.cloned(), message),
            Err(e) => return Err(e),
        };
        let (total, mine) = self.active_counts(resolved_owner.as_ref()).await?;
        let capacity = self.limit_reason(total, mine, resolved_owner.as_ref());
        let queueable = reason.is_empty() && capacity.is_some();
        if reason.is_empty() {
            reason = capacity.unwrap_or_default();
        }
        Ok(AdmissionDecision {
            allowed: reason.is_empty(),
            // Capacity frees up as sandboxes go; a TTL or size over the
            // maximum never will.
            queueable,
            reason,
            active_sandboxes: total,
            max_sandboxes: l.max_sandboxes,
            active_owner_sandboxes: mine,
            max_owner_sandboxes: l.max_sandboxes_per_owner,
            max_ttl: l.max_ttl,
        })
    }

    /// Creates a sandbox and waits until it can run commands.
    pub async fn spawn(
        &self,
        req: &SpawnRequest,
        header_owner: Option<&OwnerId>,
    ) -> Result<Sandbox, ManagerError> {
        let r = self
            .resolve(req, header_owner)
            .await
            .map_err(|e| self.limit_hit(e, header_owner))?;
        let now = self.inner.clock.now();
        let mut sandbox = Sandbox {
            id: SandboxId::generate(),
            state: SandboxState::Creating,
            provider: r.provider.clone(),
            image: r.image.clone(),
            memory_mb: r.memory_mb,
            vcpus: r.vcpus,
            owner_id: r.owner.clone(),
            created_at: now,
            expires_at: now + chrono::Duration::from_std(r.ttl.0).unwrap_or_default(),
            metadata: r.metadata.clone(),
            preview_domain: self.inner.preview_domain.clone(),
            template: r.template.clone(),
            error: None,
        };
        {
            let _admit = self.inner.admission.lock().await;
            let (total, mine) = self.active_counts(r.owner.as_ref()).await?;
            if let Some(reason) = self.limit_reason(total, mine, r.owner.as_ref()) {
                return Err(self.limit_hit(
                    ManagerError::ResourceLimit {
                        message: reason,
                        retry_after: Some(Duration::from_secs(5)),
                    },
                    r.owner.as_ref(),
                ));
            }
            self.inner.store.insert_sandbox(&sandbox).await?;
        }
        self.publish(
            EventType::SandboxCreated,
            Some(&sandbox.id),
            json!({"provider": sandbox.provider, "image": sandbox.image, "owner_id": sandbox.owner_id}),
        );
        let provider = self.provider(&r.provider)?.clone();
        let spec = SpawnSpec {
            id: sandbox.id.clone(),
            image: r.image,
            memory_mb: r.memory_mb,
            vcpus: r.vcpus,
            metadata: r.metadata,
            labels: runtime_labels(&sandbox),
        };
        let started = Instant::now();
        let result = provider.spawn(&spec).await;
        match self.observe(
            Operation::Spawn,
            &r.provider,
            Some(&sandbox.id),
            started,
            result,
        ) {
            Ok(()) => {
                sandbox.state = SandboxState::Running;
                self.inner.store.update_sandbox(&sandbox).await?;
                self.publish(
                    EventType::SandboxRunning,
                    Some(&sandbox.id),
                    json!({"provider": sandbox.provider, "spawn_ms": started.elapsed().as_millis() as u64}),
                );
                self.inner.reaper_wake.notify_one();
                tracing::info!(sandbox_id = %sandbox.id, provider = %sandbox.provider, image = %sandbox.image, "sandbox running");
                Ok(sandbox)
            }
            Err(e) => {
                tracing::warn!(sandbox_id = %sandbox.id, provider = %sandbox.provider, error = %e, "spawn failed");
                sandbox.state = SandboxState::Error;
                sandbox.error = Some(e.to_string());
                self.inner.store.update_sandbox(&sandbox).await?;
                self.publish(
                    EventType::SandboxError,
                    Some(&sandbox.id),
                    json!({"operation": "spawn", "provider": sandbox.provider, "error": e.to_string()}),
                );
                if let stacyvm_providers::ProviderError::ResourceLimit(msg) = &e {
                    self.publish(
                        EventType::ResourceLimit,
                        Some(&sandbox.id),
                        json!({"operation": "spawn", "provider": sandbox.provider, "error": msg}),
                    );
                }
                // Whatever the provider half-made must not linger.
                let _ = provider.destroy(&sandbox.id).await;
                Err(e.into())
            }
        }
    }

    pub async fn get(&self, id: &SandboxId) -> Result<Sandbox, ManagerError> {
        self.inner.store.get_sandbox(id).await.map_err(|e| match e {
            StoreError::NotFound(_) => ManagerError::NotFound(format!("sandbox {id}")),
            other => other.into(),
        })
    }

    /// Sandboxes that are not destroyed, optionally of one owner.
    pub async fn list(&self, owner: Option<&OwnerId>) -> Result<Vec<Sandbox>, ManagerError> {
        let filter = SandboxFilter {
            owner: owner.cloned(),
            ..SandboxFilter::default()
        };
        self.list_filtered(&filter).await
    }

    /// Sandboxes matching `filter`, filtered by the store.
    pub async fn list_filtered(
        &self,
        filter: &SandboxFilter,
    ) -> Result<Vec<Sandbox>, ManagerError> {
        Ok(self.inner.store.list_sandboxes(filter).await?)
    }

    /// Sandboxes matching `filter` (never destroyed ones), counted by the
    /// store by state and provider.
    pub async fn count_sandboxes(
        &self,
        filter: &SandboxFilter,
    ) -> Result<crate::obs::SandboxTally, ManagerError> {
        Ok(crate::obs::SandboxTally(
            self.inner.store.count_sandboxes(filter).await?,
        ))
    }

    /// Sets a new expiry of now + ttl (capped by the max TTL).
    pub async fn extend(
        &self,
        id: &SandboxId,
        ttl: Option<GoDuration>,
    ) -> Result<Sandbox, ManagerError> {
        let ttl = ttl
            .filter(|t| !t.is_zero())
            .unwrap_or(self.inner.limits.ttl);
        let max = self.inner.limits.max_ttl;
        if !max.is_zero() && ttl > max {
            let err = ManagerError::limit(format!("ttl {ttl} exceeds the maximum of {max}"));
            return Err(self.limit_hit(err, None));
        }
        let mut sb = self.get(id).await?;
        if !matches!(
            sb.state,
            SandboxState::Running | SandboxState::Unhealthy | SandboxState::Creating
        ) {
            return Err(if sb.state == SandboxState::Destroyed {
                ManagerError::NotFound(format!("sandbox {id}"))
            } else {
                ManagerError::Conflict(format!("sandbox {id} is {}, cannot extend", sb.state))
            });
        }
        sb.expires_at =
            self.inner.clock.now() + chrono::Duration::from_std(ttl.0).unwrap_or_default();
        self.inner.store.update_sandbox(&sb).await?;
        self.inner.reaper_wake.notify_one();
        Ok(sb)
    }

    /// Destroys a sandbox's runtime and marks it destroyed. Unknown or
    /// already destroyed → not found.
    pub async fn destroy(&self, id: &SandboxId) -> Result<Sandbox, ManagerError> {
        let sb = self.get(id).await?;
        if sb.state == SandboxState::Destroyed {
            return Err(ManagerError::NotFound(format!("sandbox {id}")));
        }
        self.teardown(sb, None).await
    }

    /// Moves a sandbox to `destroying`, destroys the runtime and records
    /// `destroyed` (or `error` when the provider fails).
    async fn teardown(
        &self,
        mut sb: Sandbox,
        reason: Option<&str>,
    ) -> Result<Sandbox, ManagerError> {
        sb.state = SandboxState::Destroying;
        self.inner.store.update_sandbox(&sb).await?;
        let started = Instant::now();
        let result = match self.inner.providers.get(&sb.provider) {
            Some(p) => p.destroy(&sb.id).await,
            // The provider is gone from config: nothing left to remove here.
            None => Ok(()),
        };
        match self.observe(
            Operation::Destroy,
            &sb.provider,
            Some(&sb.id),
            started,
            result,
        ) {
            Ok(()) => {
                sb.state = SandboxState::Destroyed;
                sb.error = None;
                self.inner.store.update_sandbox(&sb).await?;
                self.publish(
                    EventType::SandboxDestroyed,
                    Some(&sb.id),
                    json!({"provider": sb.provider, "reason": reason.unwrap_or("requested")}),
                );
                tracing::info!(sandbox_id = %sb.id, provider = %sb.provider, "sandbox destroyed");
                Ok(sb)
            }
            Err(e) => {
                tracing::warn!(sandbox_id = %sb.id, provider = %sb.provider, error = %e, "destroy failed");
                sb.state = SandboxState::Error;
                sb.error = Some(format!("destroy failed: {e}"));
                self.inner.store.update_sandbox(&sb).await?;
                self.publish(
                    EventType::SandboxError,
                    Some(&sb.id),
                    json!({"operation": "destroy", "provider": sb.provider, "error": e.to_string()}),
                );
                Err(e.into())
            }
        }
    }

    /// Expires and destroys every sandbox past its expiry; returns how many.
    pub async fn prune(&self) -> Result<usize, ManagerError> {
        let now = self.inner.clock.now();
        let mut pruned = 0;
        for sb in self.list(None).await? {
            let due = sb.state == SandboxState::Expired
                || (sb.state.is_active() && sb.is_expired_at(now));
            if due && self.expire(sb).await.is_ok() {
                pruned += 1;
            }
        }
        Ok(pruned)
    }

    async fn expire(&self, mut sb: Sandbox) -> Result<Sandbox, ManagerError> {
        if sb.state != SandboxState::Expired {
            sb.state = SandboxState::Expired;
            self.inner.store.update_sandbox(&sb).await?;
            self.publish(
                EventType::SandboxExpired,
                Some(&sb.id),
                json!({"provider": sb.provider, "expires_at": sb.expires_at}),
            );
        }
        self.teardown(sb, Some("expired")).await
    }

    /// Next expiry among active sandboxes.
    async fn next_expiry(&self) -> Option<DateTime<Utc>> {
        self.list(None)
            .await
            .ok()?
            .iter()
            .filter(|s| s.state.is_active() && s.state != SandboxState::Destroying)
            .map(|s| s.expires_at)
            .min()
    }

    /// Sleeps until the next expiry (or the safety interval, or a wake-up)
    /// and expires what is due.
    pub(super) async fn reaper_loop(self) {
        let interval = self.inner.reaper_interval;
        loop {
            let wait = match self.next_expiry().await {
                Some(at) => (at - self.inner.clock.now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .min(interval),
                None => interval,
            };
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
                _ = self.inner.reaper_wake.notified() => continue,
            }
            match self.prune().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(expired = n, "reaper expired sandboxes"),
                Err(e) => tracing::warn!(error = %e, "reaper sweep failed"),
            }
        }
    }
}

/// Labels a runtime carries so that reconciliation can rebuild the record.
fn runtime_labels(sb: &Sandbox) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    if let Some(o) = &sb.owner_id {
        l.insert(labels::OWNER.into(), o.to_string());
    }
    l.insert(labels::CREATED.into(), sb.created_at.to_rfc3339());
    l.insert(labels::EXPIRES.into(), sb.expires_at.to_rfc3339());
    l.insert(labels::MEMORY.into(), sb.memory_mb.to_string());
    l.insert(labels::VCPUS.into(), sb.vcpus.to_string());
    if let Some(t) = &sb.template {
        l.insert(labels::TEMPLATE.into(), t.clone());
    }
    if !sb.metadata.is_empty() {
        l.insert(
            labels::METADATA.into(),
            serde_json::to_string(&sb.metadata).unwrap_or_default(),
        );
    }
    l
}
