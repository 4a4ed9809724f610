//! A manager over the switchable mock provider and a memory store, for
//! manager-level tests.

use std::sync::Arc;
use std::time::Duration;

use stacyvm_core::EventType;
use stacyvm_core::GoDuration;
use stacyvm_providers::mock::MockProvider;
use stacyvm_server::config::DefaultsConfig;
use stacyvm_server::events::EventBus;
use stacyvm_server::manager::{Clock, Manager, ManagerOptions, SystemClock};
use stacyvm_store::{MemoryStore, Store};

use super::switchable::Switchable;

pub struct Fixture {
    pub manager: Manager,
    pub provider: Arc<Switchable>,
    pub store: Arc<dyn Store>,
    pub dir: tempfile::TempDir,
}

pub fn limits() -> DefaultsConfig {
    DefaultsConfig {
        image: "busybox".into(),
        ttl: GoDuration::from_secs(600),
        memory_mb: 128,
        vcpus: 1,
        max_ttl: GoDuration::from_secs(3600),
        default_exec_timeout: GoDuration::from_secs(30),
        max_exec_timeout: GoDuration::from_secs(120),
        max_sandboxes: 0,
        max_sandboxes_per_owner: 0,
        max_memory_mb: 0,
        max_vcpus: 0,
        max_exec_output_bytes: 1024 * 1024,
        ..DefaultsConfig::default()
    }
}

pub async fn fixture_with(
    limits: DefaultsConfig,
    clock: Arc<dyn Clock>,
    store: Option<Arc<dyn Store>>,
    dir: Option<tempfile::TempDir>,
) -> Fixture {
    let dir = dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
    let provider = Arc::new(Switchable::new(
        "mock",
        MockProvider::new(dir.path().join("mock")).unwrap(),
    ));
    let store: Arc<dyn Store> = store.unwrap_or_else(|| Arc::new(MemoryStore::new()));
    let manager = Manager::new(ManagerOptions {
        store: store.clone(),
        providers: vec![provider.clone()],
        default_provider: "mock".into(),
        limits,
        events: EventBus::new(1000),
        clock,
        health_interval: Duration::from_secs(3600),
        reaper_interval: Duration::from_secs(3600),
        preview_domain: None,
        node: None,
    })
    .unwrap();
    manager.refresh_health().await;
    Fixture {
        manager,
        provider,
        store,
        dir,
    }
}

pub async fn fixture(limits: DefaultsConfig) -> Fixture {
    fixture_with(limits, Arc::new(SystemClock), None, None).await
}

pub fn kinds(m: &Manager) -> Vec<EventType> {
    m.events()
        .recent(1000)
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

/// A running sandbox record of `provider` with placeholder values.
pub fn record(provider: &str) -> stacyvm_core::Sandbox {
    let now = chrono::Utc::now();
    stacyvm_core::Sandbox {
        id: stacyvm_core::SandboxId::generate(),
        state: stacyvm_core::SandboxState::Running,
        provider: provider.to_string(),
        image: "busybox".into(),
        memory_mb: 128,
        vcpus: 1,
        owner_id: None,
        created_at: now,
        expires_at: now + chrono::Duration::minutes(10),
        metadata: Default::default(),
        preview_domain: None,
        template: None,
        error: None,
        node_id: None,
    }
}

/// The spawn spec of `sb`.
pub fn spec(sb: &stacyvm_core::Sandbox) -> stacyvm_providers::SpawnSpec {
    stacyvm_providers::SpawnSpec {
        id: sb.id.clone(),
        image: sb.image.clone(),
        memory_mb: sb.memory_mb,
        vcpus: sb.vcpus,
        metadata: Default::default(),
        labels: Default::default(),
        network: None,
    }
}
