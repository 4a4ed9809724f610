//! Spawn (admission, runtime, record), listing, extend and destroy. The
//! reaper that expires sandboxes and retries failed destroys is in
//! `reaper.rs`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use stacyvm_core::{
    Capability, ErrorChain, EventType, GoDuration, NetworkMode, NetworkPolicy, OwnerId, Sandbox,
    SandboxId, SandboxState,
};
use stacyvm_providers::{ProviderError, SpawnSpec};
use stacyvm_store::{
    Admission, AdmissionLimits, SandboxFilter, ScopeLimits, StoreError, Usage, UsageScope,
};

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
    /// `None`: the provider's default.
    network: Option<NetworkPolicy>,
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
        let network = match &req.network {
            Some(policy) => {
                policy
                    .compile()
                    .map_err(|e| ManagerError::BadRequest(e.to_string()))?;
                self.check_network_mode(&provider, policy.mode)?;
                Some(policy.clone())
            }
            None => None,
        };
        Ok(Resolved {
            network,
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

    /// Refuses a network mode the provider does not list among its
    /// capabilities, before anything is admitted or created.
    fn check_network_mode(&self, provider: &str, mode: NetworkMode) -> Result<(), ManagerError> {
        let needed = match mode {
            NetworkMode::None => return Ok(()),
            NetworkMode::Allow => Capability::NetworkAllow,
            NetworkMode::Host => Capability::NetworkHost,
        };
        if self.provider(provider)?.capabilities().contains(&needed) {
            return Ok(());
        }
        Err(ManagerError::BadRequest(format!(
            "provider {provider} does not offer network mode {:?} here (its capabilities lack {needed}; see docs/network.md)",
            mode.as_str()
        )))
    }

    /// The egress policy sandbox `id` runs under, as its provider enforces it.
    pub async fn network(&self, id: &SandboxId) -> Result<NetworkPolicy, ManagerError> {
        let sb = self.get(id).await?;
        if !sb.state.is_active() || sb.state == SandboxState::Destroying {
            return Err(ManagerError::NotFound(format!("sandbox {id}")));
        }
        let provider = self.provider(&sb.provider)?.clone();
        provider.network(id).await.map_err(|e| match e {
            ProviderError::NotFound(_) | ProviderError::Destroyed(_) => {
                ManagerError::NotFound(format!("sandbox {id}"))
            }
            other => other.into(),
        })
    }

    /// Changes the egress policy of running sandbox `id`; returns the
    /// policy now in force.
    pub async fn set_network(
        &self,
        id: &SandboxId,
        policy: &NetworkPolicy,
    ) -> Result<NetworkPolicy, ManagerError> {
        policy
            .compile()
            .map_err(|e| ManagerError::BadRequest(e.to_string()))?;
        let sb = self.get(id).await?;
        if !sb.state.is_active() || sb.state == SandboxState::Destroying {
            return Err(ManagerError::NotFound(format!("sandbox {id}")));
        }
        if sb.state != SandboxState::Running {
            return Err(ManagerError::Conflict(format!(
                "sandbox {id} is {}, not running",
                sb.state
            )));
        }
        let provider = self.provider(&sb.provider)?.clone();
        let started = std::time::Instant::now();
        provider
            .set_network(id, policy)
            .await
            .map_err(|e| match e {
                ProviderError::NotFound(_) | ProviderError::Destroyed(_) => {
                    ManagerError::NotFound(format!("sandbox {id}"))
                }
                ProviderError::InvalidInput(m) => ManagerError::BadRequest(m),
                other => other.into(),
            })?;
        tracing::info!(sandbox_id = %id, mode = %policy.mode, elapsed_ms = started.elapsed().as_millis() as u64, "network policy changed");
        Ok(policy.clone())
    }

    /// The store-level limits of a spawn (`defaults.max_sandboxes`,
    /// `defaults.max_sandboxes_per_owner`).
    pub(super) fn admission_limits(&self) -> AdmissionLimits {
        let l = &self.inner.limits;
        AdmissionLimits {
            all: ScopeLimits {
                max_sandboxes: u64::from(l.max_sandboxes),
                ..ScopeLimits::default()
            },
            owner: ScopeLimits {
                max_sandboxes: u64::from(l.max_sandboxes_per_owner),
                ..ScopeLimits::default()
            },
        }
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
        let store = &self.inner.store;
        let total = store.usage(&UsageScope::All).await?;
        let mine = match &resolved_owner {
            Some(o) => store.usage(&UsageScope::Owner(o.clone())).await?,
            None => Usage::default(),
        };
        // The same decision the store makes when admitting, for a sandbox
        // that holds nothing yet.
        let probe = Sandbox {
            owner_id: resolved_owner.clone(),
            memory_mb: 0,
            vcpus: 0,
            ..placeholder_sandbox()
        };
        let capacity = stacyvm_store::refusal(&probe, &self.admission_limits(), total, mine)
            .map(|r| r.to_string());
        let queueable = reason.is_empty() && capacity.is_some();
        if reason.is_empty() {
            reason = capacity.unwrap_or_default();
        }
        let count = |u: Usage| u32::try_from(u.sandboxes).unwrap_or(u32::MAX);
        Ok(AdmissionDecision {
            allowed: reason.is_empty(),
            // Capacity frees up as sandboxes go; a TTL or size over the
            // maximum never will.
            queueable,
            reason,
            active_sandboxes: count(total),
            max_sandboxes: l.max_sandboxes,
            active_owner_sandboxes: count(mine),
            max_owner_sandboxes: l.max_sandboxes_per_owner,
            max_ttl: l.max_ttl,
        })
    }

    /// Creates a sandbox and waits until it can run commands.
    ///
    /// Admission, the runtime and the record's last write run in a task of
    /// their own: a caller that goes away (a dropped HTTP request) cannot
    /// stop a spawn half-way, so it either completes and the sandbox is
    /// listed, or it fails and nothing is left behind.
    pub async fn spawn(
        &self,
        req: &SpawnRequest,
        header_owner: Option<&OwnerId>,
    ) -> Result<Sandbox, ManagerError> {
        let r = self
            .resolve(req, header_owner)
            .await
            .map_err(|e| self.limit_hit(e, header_owner))?;
        let manager = self.clone();
        tokio::spawn(async move { manager.admit_and_start(r).await })
            .await
            .map_err(|e| ManagerError::internal("the spawn task failed", e))?
    }

    /// Admits the resolved request (one store write) and starts it.
    async fn admit_and_start(&self, r: Resolved) -> Result<Sandbox, ManagerError> {
        let now = self.inner.clock.now();
        let record = Sandbox {
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
            node_id: self.local_node().map(str::to_string),
        };
        let sandbox = match self
            .inner
            .store
            .admit_sandbox(&record, &self.admission_limits(), None)
            .await?
        {
            Admission::Admitted(sb) => sb,
            Admission::Refused(refusal) => {
                let err = ManagerError::ResourceLimit {
                    message: refusal.to_string(),
                    retry_after: Some(Duration::from_secs(5)),
                };
                return Err(self.limit_hit(err, r.owner.as_ref()));
            }
            Admission::Unplaced(why) => {
                return Err(ManagerError::Unavailable(format!(
                    "no node can take the sandbox: {why:?}"
                )));
            }
        };
        self.publish(
            EventType::SandboxCreated,
            Some(&sandbox.id),
            json!({"provider": sandbox.provider, "image": sandbox.image, "owner_id": sandbox.owner_id}),
        );
        self.start_runtime(sandbox, r.network).await
    }

    /// Creates the runtime of an admitted `creating` record and records the
    /// outcome: `running` (the spawn's second and last store write), or,
    /// when the provider fails, nothing at all once the provider has cleaned
    /// up (the error reply and a `sandbox.error` event report it).
    pub(crate) async fn start_runtime(
        &self,
        sandbox: Sandbox,
        network: Option<NetworkPolicy>,
    ) -> Result<Sandbox, ManagerError> {
        let _busy = self.busy(&sandbox.id);
        let provider = self.provider(&sandbox.provider)?.clone();
        let spec = SpawnSpec {
            id: sandbox.id.clone(),
            image: sandbox.image.clone(),
            memory_mb: sandbox.memory_mb,
            vcpus: sandbox.vcpus,
            metadata: sandbox.metadata.clone(),
            labels: runtime_labels(&sandbox),
            network,
        };
        let started = Instant::now();
        let result = provider.spawn(&spec).await;
        let result = self.observe(
            Operation::Spawn,
            &sandbox.provider,
            Some(&sandbox.id),
            started,
            result,
        );
        let e = match result {
            Ok(()) => return self.runtime_started(sandbox, started).await,
            Err(e) => e,
        };
        tracing::warn!(sandbox_id = %sandbox.id, provider = %sandbox.provider, error = %ErrorChain(&e), "spawn failed");
        self.publish(
            EventType::SandboxError,
            Some(&sandbox.id),
            json!({"operation": "spawn", "provider": sandbox.provider, "error": e.to_string()}),
        );
        if let ProviderError::ResourceLimit(msg) = &e {
            self.publish(
                EventType::ResourceLimit,
                Some(&sandbox.id),
                json!({"operation": "spawn", "provider": sandbox.provider, "error": msg}),
            );
        }
        // Whatever the provider half-made must not linger. Once it is gone
        // so is the record; if it cannot be removed, the record stays
        // (counted) in `destroying` and the reaper retries.
        match provider.destroy(&sandbox.id).await {
            Ok(()) => match self.inner.store.delete_sandbox(&sandbox.id).await {
                Ok(()) | Err(StoreError::NotFound(_)) => {}
                // The reaper removes a stale `creating` record.
                Err(store) => {
                    tracing::warn!(sandbox_id = %sandbox.id, error = %store, "cannot remove the record of a failed spawn")
                }
            },
            Err(cleanup) => {
                let why = format!("spawn failed: {e}; cleanup failed: {cleanup}");
                if let Ok(Some(sb)) = self
                    .inner
                    .store
                    .transition(
                        &sandbox.id,
                        &[SandboxState::Creating],
                        SandboxState::Destroying,
                        Some(&why),
                    )
                    .await
                {
                    self.destroy_failed(&sb);
                }
            }
        }
        Err(e.into())
    }

    /// Records a started runtime as `running`, unless the sandbox was
    /// destroyed while it was being created: then the runtime goes too.
    async fn runtime_started(
        &self,
        sandbox: Sandbox,
        started: Instant,
    ) -> Result<Sandbox, ManagerError> {
        let id = &sandbox.id;
        let running = self
            .inner
            .store
            .transition(id, &[SandboxState::Creating], SandboxState::Running, None)
            .await;
        match running {
            Ok(Some(sb)) => {
                self.publish(
                    EventType::SandboxRunning,
                    Some(id),
                    json!({"provider": sb.provider, "spawn_ms": started.elapsed().as_millis() as u64}),
                );
                self.inner.reaper_wake.notify_one();
                tracing::info!(sandbox_id = %id, provider = %sb.provider, image = %sb.image, "sandbox running");
                Ok(sb)
            }
            Ok(None) => {
                tracing::info!(sandbox_id = %id, "sandbox destroyed while it was being created");
                if let Ok(p) = self.provider(&sandbox.provider) {
                    let _ = p.destroy(id).await;
                }
                Err(ManagerError::NotFound(format!("sandbox {id}")))
            }
            // The runtime runs but the store did not take the change: the
            // record stays `creating` and reconciliation or the reaper's
            // sweep settles it.
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get(&self, id: &SandboxId) -> Result<Sandbox, ManagerError> {
        self.inner.store.get_sandbox(id).await.map_err(|e| match e {
            StoreError::NotFound(_) => ManagerError::NotFound(format!("sandbox {id}")),
            other => other.into(),
        })
    }

    /// The sandbox `id` if `owner` owns it. Another owner's sandbox is
    /// answered exactly as one that does not exist, so a caller learns
    /// nothing of sandboxes that are not its own.
    pub async fn owned_sandbox(
        &self,
        id: &SandboxId,
        owner: &OwnerId,
    ) -> Result<Sandbox, ManagerError> {
        match self.get(id).await {
            Ok(sb) if sb.owner_id.as_ref() == Some(owner) => Ok(sb),
            Ok(_) => Err(ManagerError::NotFound(format!("sandbox {id}"))),
            Err(e) => Err(e),
        }
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

    /// Sets a new expiry of now + ttl (capped by the max TTL): one
    /// conditional write, so it never revives a sandbox being destroyed.
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
        let expires_at =
            self.inner.clock.now() + chrono::Duration::from_std(ttl.0).unwrap_or_default();
        let extendable = [
            SandboxState::Running,
            SandboxState::Paused,
            SandboxState::Unhealthy,
            SandboxState::Creating,
        ];
        match self
            .inner
            .store
            .set_expiry(id, expires_at, &extendable)
            .await?
        {
            Some(sb) => {
                self.inner.reaper_wake.notify_one();
                Ok(sb)
            }
            None => {
                let sb = self.get(id).await?;
                Err(if sb.state == SandboxState::Destroyed {
                    ManagerError::NotFound(format!("sandbox {id}"))
                } else {
                    ManagerError::Conflict(format!("sandbox {id} is {}, cannot extend", sb.state))
                })
            }
        }
    }

    /// Destroys a sandbox's runtime and marks it destroyed. Unknown or
    /// already destroyed → not found.
    pub async fn destroy(&self, id: &SandboxId) -> Result<Sandbox, ManagerError> {
        let sb = self.get(id).await?;
        if sb.state == SandboxState::Destroyed {
            return Err(ManagerError::NotFound(format!("sandbox {id}")));
        }
        if self.foreign_node(&sb).is_some() {
            if sb.state.is_active() {
                self.ensure_local(&sb)?;
            }
            // No runtime is wanted any more (its node was lost): only the
            // record goes; the node destroys the runtime when it returns.
            let done = self
                .inner
                .store
                .transition(id, &[sb.state], SandboxState::Destroyed, None)
                .await?
                .ok_or_else(|| ManagerError::Conflict(format!("sandbox {id} changed meanwhile")))?;
            self.publish(
                EventType::SandboxDestroyed,
                Some(id),
                json!({"provider": done.provider, "reason": "record of a lost node"}),
            );
            return Ok(done);
        }
        self.teardown(sb, None).await
    }

    /// Moves a sandbox to `destroying`, destroys the runtime and records
    /// `destroyed`. When the provider fails the record stays `destroying`
    /// (still counted: its runtime may hold resources) with the error, and
    /// the reaper retries with backoff.
    pub(super) async fn teardown(
        &self,
        sb: Sandbox,
        reason: Option<&str>,
    ) -> Result<Sandbox, ManagerError> {
        let id = sb.id.clone();
        let _busy = self.busy(&id);
        let from = [
            SandboxState::Creating,
            SandboxState::Running,
            SandboxState::Paused,
            SandboxState::Unhealthy,
            SandboxState::Expired,
            SandboxState::Error,
            SandboxState::Destroying,
        ];
        let keep_error = (sb.state == SandboxState::Destroying)
            .then_some(sb.error.as_deref())
            .flatten();
        let Some(sb) = self
            .inner
            .store
            .transition(&id, &from, SandboxState::Destroying, keep_error)
            .await?
        else {
            // Destroyed (or removed) by someone else meanwhile.
            return Err(ManagerError::NotFound(format!("sandbox {id}")));
        };
        let started = Instant::now();
        let result = match self.inner.providers.get(&sb.provider) {
            Some(p) => p.destroy(&id).await,
            // The provider is gone from config: nothing left to remove here.
            None => Ok(()),
        };
        match self.observe(Operation::Destroy, &sb.provider, Some(&id), started, result) {
            Ok(()) => {
                self.retry_done(&id);
                let done = self
                    .inner
                    .store
                    .transition(
                        &id,
                        &[SandboxState::Destroying],
                        SandboxState::Destroyed,
                        None,
                    )
                    .await?
                    .unwrap_or(Sandbox {
                        state: SandboxState::Destroyed,
                        error: None,
                        ..sb
                    });
                self.publish(
                    EventType::SandboxDestroyed,
                    Some(&id),
                    json!({"provider": done.provider, "reason": reason.unwrap_or("requested")}),
                );
                tracing::info!(sandbox_id = %id, provider = %done.provider, "sandbox destroyed");
                Ok(done)
            }
            Err(e) => {
                tracing::warn!(sandbox_id = %id, provider = %sb.provider, error = %ErrorChain(&e), "destroy failed");
                let why = format!("destroy failed: {e}");
                let kept = self
                    .inner
                    .store
                    .transition(
                        &id,
                        &[SandboxState::Destroying],
                        SandboxState::Destroying,
                        Some(&why),
                    )
                    .await?
                    .unwrap_or(sb);
                self.publish(
                    EventType::SandboxError,
                    Some(&id),
                    json!({"operation": "destroy", "provider": kept.provider, "error": e.to_string()}),
                );
                self.destroy_failed(&kept);
                Err(e.into())
            }
        }
    }
}

/// A sandbox record with placeholder values, for admission probes.
fn placeholder_sandbox() -> Sandbox {
    let now = Utc::now();
    Sandbox {
        id: SandboxId::generate(),
        state: SandboxState::Creating,
        provider: String::new(),
        image: String::new(),
        memory_mb: 0,
        vcpus: 0,
        owner_id: None,
        created_at: now,
        expires_at: now,
        metadata: BTreeMap::new(),
        preview_domain: None,
        template: None,
        error: None,
        node_id: None,
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
