//! An in-memory store: the fake for tests of code around the store (the
//! manager's paused-time tests cannot wait on a database thread). It passes
//! the same conformance suite as SQLite.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use stacyvm_core::{Sandbox, SandboxId, SandboxState, Template};

use crate::{SandboxFilter, Store, StoreError};

/// Sandboxes and templates in process memory; nothing survives a restart.
#[derive(Debug, Default)]
pub struct MemoryStore {
    sandboxes: Mutex<BTreeMap<String, Sandbox>>,
    templates: Mutex<BTreeMap<String, Template>>,
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

#[async_trait]
impl Store for MemoryStore {
    fn driver(&self) -> &'static str {
        "memory"
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

    async fn ping(&self) -> Result<(), StoreError> {
        self.check()
    }
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
