//! An in-memory store: the fake for tests of code around the store (the
//! manager's paused-time tests cannot wait on a database thread). It passes
//! the same conformance suite as SQLite.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use stacyvm_core::{ApiKey, OwnerId, Sandbox, SandboxId, SandboxState, Template};

use crate::{
    Admission, AdmissionLimits, Placement, SandboxFilter, Store, StoreError, Usage, UsageScope,
    admission,
};

/// Sandboxes and templates in process memory; nothing survives a restart.
#[derive(Debug, Default)]
pub struct MemoryStore {
    sandboxes: Mutex<BTreeMap<String, Sandbox>>,
    templates: Mutex<BTreeMap<String, Template>>,
    /// API keys by id.
    keys: Mutex<BTreeMap<String, ApiKey>>,
    /// When set, every call fails as if the database were down.
    down: AtomicBool,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Simulates an unreachable database (for readiness tests).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "memory store is marked down".into(),
            ));
        }
        Ok(())
    }
}

/// What the counted sandboxes of `scope` among `all` hold (a fake may scan).
fn usage_of<'a>(all: impl Iterator<Item = &'a Sandbox>, scope: &UsageScope) -> Usage {
    let mut u = Usage::default();
    for s in all.filter(|s| s.state.is_active()) {
        let inside = match scope {
            UsageScope::All => true,
            UsageScope::Owner(o) => s.owner_id.as_ref() == Some(o),
            UsageScope::Node(n) => s.node_id.as_deref() == Some(n.as_str()),
        };
        if inside {
            u.sandboxes += 1;
            u.memory_mb += u64::from(s.memory_mb);
            u.vcpus += u64::from(s.vcpus);
        }
    }
    u
}

#[async_trait]
impl Store for MemoryStore {
    fn driver(&self) -> &'static str {
        "memory"
    }

    async fn admit_sandbox(
        &self,
        sandbox: &Sandbox,
        limits: &AdmissionLimits,
        placement: Option<&Placement>,
    ) -> Result<Admission, StoreError> {
        self.check()?;
        if placement.is_some() {
            return Err(StoreError::Unavailable(
                "the memory store cannot place sandboxes on nodes".into(),
            ));
        }
        let mut m = self.sandboxes.lock().unwrap_or_else(|e| e.into_inner());
        if m.contains_key(sandbox.id.as_str()) {
            return Err(StoreError::Conflict(format!("sandbox {}", sandbox.id)));
        }
        let all = usage_of(m.values(), &UsageScope::All);
        let owner = match &sandbox.owner_id {
            Some(o) => usage_of(m.values(), &UsageScope::Owner(o.clone())),
            None => Usage::default(),
        };
        if let Some(refusal) = admission::refusal(sandbox, limits, all, owner) {
            return Ok(Admission::Refused(refusal));
        }
        m.insert(sandbox.id.to_string(), sandbox.clone());
        Ok(Admission::Admitted(sandbox.clone()))
    }

    async fn usage(&self, scope: &UsageScope) -> Result<Usage, StoreError> {
        self.check()?;
        let m = self.sandboxes.lock().unwrap_or_else(|e| e.into_inner());
        Ok(usage_of(m.values(), scope))
    }

    async fn transition(
        &self,
        id: &SandboxId,
        from: &[SandboxState],
        to: SandboxState,
        error: Option<&str>,
    ) -> Result<Option<Sandbox>, StoreError> {
        self.check()?;
        let mut m = self.sandboxes.lock().unwrap_or_else(|e| e.into_inner());
        Ok(m.get_mut(id.as_str())
            .filter(|s| from.contains(&s.state))
            .map(|s| {
                s.state = to;
                s.error = error.map(str::to_string);
                s.clone()
            }))
    }

    async fn set_expiry(
        &self,
        id: &SandboxId,
        expires_at: DateTime<Utc>,
        states: &[SandboxState],
    ) -> Result<Option<Sandbox>, StoreError> {
        self.check()?;
        let mut m = self.sandboxes.lock().unwrap_or_else(|e| e.into_inner());
        Ok(m.get_mut(id.as_str())
            .filter(|s| states.contains(&s.state))
            .map(|s| {
                s.expires_at = expires_at;
                s.clone()
            }))
    }

    async fn expire_due(
        &self,
        now: DateTime<Utc>,
        node_id: Option<&str>,
    ) -> Result<Vec<Sandbox>, StoreError> {
        self.check()?;
        let mut m = self.sandboxes.lock().unwrap_or_else(|e| e.into_inner());
        let mut due: Vec<Sandbox> = m
            .values_mut()
            .filter(|s| expirable(s, node_id) && s.expires_at <= now)
            .map(|s| {
                s.state = SandboxState::Destroying;
                s.error = None;
                s.clone()
            })
            .collect();
        due.sort_by(|a, b| {
            a.expires_at
                .cmp(&b.expires_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(due)
    }

    async fn next_expiry(
        &self,
        node_id: Option<&str>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.check()?;
        let m = self.sandboxes.lock().unwrap_or_else(|e| e.into_inner());
        Ok(m.values()
            .filter(|s| expirable(s, node_id))
            .map(|s| s.expires_at)
            .min())
    }

    async fn insert_sandbox(&self, sandbox: &Sandbox) -> Result<(), StoreError> {
        self.check()?;
        let mut m = self.sandboxes.lock().unwrap_or_else(|e| e.into_inner());
        if m.contains_key(sandbox.id.as_str()) {
            return Err(StoreError::Conflict(format!("sandbox {}", sandbox.id)));
        }
        m.insert(sandbox.id.to_string(), sandbox.clone());
        Ok(())
    }

    async fn update_sandbox(&self, sandbox: &Sandbox) -> Result<(), StoreError> {
        self.check()?;
        let mut m = self.sandboxes.lock().unwrap_or_else(|e| e.into_inner());
        match m.get_mut(sandbox.id.as_str()) {
            Some(slot) => {
                *slot = sandbox.clone();
                Ok(())
            }
            None => Err(StoreError::NotFound(format!("sandbox {}", sandbox.id))),
        }
    }

    async fn get_sandbox(&self, id: &SandboxId) -> Result<Sandbox, StoreError> {
        self.check()?;
        let m = self.sandboxes.lock().unwrap_or_else(|e| e.into_inner());
        m.get(id.as_str())
            .cloned()
            .ok_or_else(|| StoreError::NotFound(format!("sandbox {id}")))
    }

    async fn list_sandboxes(&self, f: &SandboxFilter) -> Result<Vec<Sandbox>, StoreError> {
        self.check()?;
        let m = self.sandboxes.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<Sandbox> = m
            .values()
            // An explicit state filter wins over `include_destroyed`, as in SQL.
            .filter(|s| {
                f.state.is_some() || f.include_destroyed || s.state != SandboxState::Destroyed
            })
            .filter(|s| {
                f.owner
                    .as_ref()
                    .is_none_or(|o| s.owner_id.as_ref() == Some(o))
            })
            .filter(|s| f.state.is_none_or(|st| s.state == st))
            .filter(|s| f.provider.as_ref().is_none_or(|p| &s.provider == p))
            .filter(|s| f.node_id.is_none() || s.node_id == f.node_id)
            .cloned()
            .collect();
        v.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(v)
    }

    async fn delete_sandbox(&self, id: &SandboxId) -> Result<(), StoreError> {
        self.check()?;
        let mut m = self.sandboxes.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(id.as_str())
            .map(|_| ())
            .ok_or_else(|| StoreError::NotFound(format!("sandbox {id}")))
    }

    async fn create_template(&self, t: &Template) -> Result<(), StoreError> {
        self.check()?;
        let mut m = self.templates.lock().unwrap_or_else(|e| e.into_inner());
        if m.contains_key(&t.name) {
            return Err(StoreError::Conflict(format!("template {}", t.name)));
        }
        m.insert(t.name.clone(), t.clone());
        Ok(())
    }

    async fn update_template(&self, t: &Template) -> Result<(), StoreError> {
        self.check()?;
        let mut m = self.templates.lock().unwrap_or_else(|e| e.into_inner());
        match m.get_mut(&t.name) {
            Some(slot) => {
                *slot = t.clone();
                Ok(())
            }
            None => Err(StoreError::NotFound(format!("template {}", t.name))),
        }
    }

    async fn get_template(&self, name: &str) -> Result<Template, StoreError> {
        self.check()?;
        let m = self.templates.lock().unwrap_or_else(|e| e.into_inner());
        m.get(name)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(format!("template {name}")))
    }

    async fn list_templates(&self) -> Result<Vec<Template>, StoreError> {
        self.check()?;
        let m = self.templates.lock().unwrap_or_else(|e| e.into_inner());
        Ok(m.values().cloned().collect())
    }

    async fn delete_template(&self, name: &str) -> Result<(), StoreError> {
        self.check()?;
        let mut m = self.templates.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(name)
            .map(|_| ())
            .ok_or_else(|| StoreError::NotFound(format!("template {name}")))
    }

    async fn create_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        self.check()?;
        let mut m = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if m.contains_key(&key.id) || m.values().any(|k| k.hash == key.hash) {
            return Err(StoreError::Conflict(format!("api key {}", key.id)));
        }
        m.insert(key.id.clone(), key.clone());
        Ok(())
    }

    async fn find_api_key(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        self.check()?;
        let m = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        Ok(m.values().find(|k| k.hash == hash).cloned())
    }

    async fn get_api_key(&self, id: &str) -> Result<ApiKey, StoreError> {
        self.check()?;
        let m = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        m.get(id)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(format!("api key {id}")))
    }

    async fn list_api_keys(&self, owner: Option<&OwnerId>) -> Result<Vec<ApiKey>, StoreError> {
        self.check()?;
        let m = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<ApiKey> = m
            .values()
            .filter(|k| owner.is_none_or(|o| &k.owner == o))
            .cloned()
            .collect();
        v.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(v)
    }

    async fn revoke_api_key(&self, id: &str, at: DateTime<Utc>) -> Result<ApiKey, StoreError> {
        self.check()?;
        let mut m = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let k = m
            .get_mut(id)
            .ok_or_else(|| StoreError::NotFound(format!("api key {id}")))?;
        k.revoked_at.get_or_insert(at);
        Ok(k.clone())
    }

    async fn record_api_key_use(&self, uses: &[(String, DateTime<Utc>)]) -> Result<(), StoreError> {
        self.check()?;
        let mut m = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        for (id, at) in uses {
            if let Some(k) = m.get_mut(id)
                && k.last_used_at.is_none_or(|t| t < *at)
            {
                k.last_used_at = Some(*at);
            }
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.check()
    }
}

/// Whether `expire_due` may claim `s`: counted, not already being
/// destroyed, on `node_id` when given.
fn expirable(s: &Sandbox, node_id: Option<&str>) -> bool {
    s.state.is_active()
        && s.state != SandboxState::Destroying
        && node_id.is_none_or(|n| s.node_id.as_deref() == Some(n))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn passes_the_store_conformance_suite() {
        crate::conformance::run_all(Arc::new(MemoryStore::new())).await;
    }
}
