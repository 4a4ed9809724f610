//! Provider health: a background prober refreshes a cache on an interval,
//! so `/ready`, `/metrics` and friends read it without touching a runtime.
//! A provider that flips publishes `provider.failed` / `provider.recovered`.

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use serde_json::json;
use stacyvm_core::{Capability, EventType, ProviderHealth, Sandbox};

use crate::obs::SandboxResources;
use stacyvm_providers::Provider;

use super::Manager;

/// How long one health check may take before it counts as failed.
pub(super) const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// Sandboxes measured at once by a resource refresh.
const RESOURCE_CONCURRENCY: usize = 8;

/// Latest health per provider.
#[derive(Debug)]
pub struct HealthCache {
    items: RwLock<BTreeMap<String, ProviderHealth>>,
}

impl HealthCache {
    pub(super) fn new(names: &[String], default: &str) -> Self {
        let now = chrono::Utc::now();
        let items = names
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    ProviderHealth {
                        name: n.clone(),
                        healthy: false,
                        default: n == default,
                        latency_ms: 0,
                        last_checked: now,
                        error: Some("not checked yet".into()),
                        capabilities: Vec::new(),
                        runtime_count: None,
                        unavailable: Default::default(),
                    },
                )
            })
            .collect();
        HealthCache {
            items: RwLock::new(items),
        }
    }
}

/// Checks one provider: health, then its runtime count where it can list
/// runtimes.
pub async fn check_provider(provider: &dyn Provider, default: bool) -> ProviderHealth {
    check_provider_detailed(provider, default).await.0
}

/// [`check_provider`] plus the report's private detail (host paths,
/// addresses) for the log.
async fn check_provider_detailed(
    provider: &dyn Provider,
    default: bool,
) -> (ProviderHealth, Option<String>) {
    let started = Instant::now();
    let capabilities = provider.capabilities();
    let report = tokio::time::timeout(HEALTH_TIMEOUT, provider.health()).await;
    let latency_ms = started.elapsed().as_millis() as u64;
    let (healthy, error, detail) = match report {
        Ok(r) => (r.healthy, r.error.filter(|_| !r.healthy), r.detail),
        Err(_) => (
            false,
            Some(format!("health check timed out after {HEALTH_TIMEOUT:?}")),
            None,
        ),
    };
    let runtime_count = if healthy && capabilities.contains(&Capability::RuntimeInventory) {
        match tokio::time::timeout(HEALTH_TIMEOUT, provider.inventory()).await {
            Ok(Ok(Some(list))) => Some(list.len() as u64),
            _ => None,
        }
    } else {
        None
    };
    let mut unavailable = std::collections::BTreeMap::new();
    if !capabilities.contains(&Capability::Hibernate)
        && let Some(why) = provider.hibernate_unavailable()
    {
        unavailable.insert(Capability::Hibernate.as_str().to_string(), why);
    }
    let health = ProviderHealth {
        name: provider.name().to_string(),
        healthy,
        default,
        latency_ms,
        last_checked: chrono::Utc::now(),
        error,
        capabilities,
        runtime_count,
        unavailable,
    };
    (health, detail.filter(|_| !healthy))
}

impl Manager {
    /// Cached health of every provider, in preference order.
    pub fn provider_health(&self) -> Vec<ProviderHealth> {
        let items = self
            .inner
            .health
            .items
            .read()
            .unwrap_or_else(|e| e.into_inner());
        self.inner
            .provider_order
            .iter()
            .filter_map(|n| items.get(n).cloned())
            .collect()
    }

    /// Cached health of one provider.
    pub fn provider_health_of(&self, name: &str) -> Option<ProviderHealth> {
        let items = self
            .inner
            .health
            .items
            .read()
            .unwrap_or_else(|e| e.into_inner());
        items.get(name).cloned()
    }

    /// Checks every provider now (concurrently), updates the cache and
    /// publishes health flips.
    pub async fn refresh_health(&self) -> Vec<ProviderHealth> {
        let checks = self.inner.provider_order.iter().map(|name| {
            let provider = self.inner.providers[name].clone();
            let default = *name == self.inner.default_provider;
            async move { check_provider_detailed(provider.as_ref(), default).await }
        });
        let (fresh, details): (Vec<ProviderHealth>, Vec<Option<String>>) =
            futures::future::join_all(checks).await.into_iter().unzip();
        for (h, detail) in fresh.iter().zip(details) {
            let previous = {
                let mut items = self
                    .inner
                    .health
                    .items
                    .write()
                    .unwrap_or_else(|e| e.into_inner());
                items.insert(h.name.clone(), h.clone())
            };
            // A provider starts as "not checked yet"; its first result is a
            // flip only when it is a failure.
            let first =
                previous.as_ref().and_then(|p| p.error.as_deref()) == Some("not checked yet");
            let was_healthy = previous.is_some_and(|p| p.healthy);
            if !h.healthy && (first || was_healthy) {
                tracing::warn!(provider = %h.name, error = h.error.as_deref().unwrap_or(""), detail = detail.as_deref().unwrap_or(""), "provider unhealthy");
                self.publish(
                    EventType::ProviderFailed,
                    None,
                    json!({"operation": "health", "provider": h.name, "error": h.error}),
                );
            } else if h.healthy && !first && !was_healthy {
                tracing::info!(provider = %h.name, "provider recovered");
                self.publish(
                    EventType::ProviderRecovered,
                    None,
                    json!({"operation": "health", "provider": h.name, "latency_ms": h.latency_ms}),
                );
            }
        }
        fresh
    }

    /// Cached per-sandbox resource figures (refreshed with health).
    pub fn sandbox_resources(&self) -> Vec<SandboxResources> {
        self.inner.resources.snapshot()
    }

    /// Measures CPU, memory and pids of every live sandbox whose provider
    /// can ([`crate::obs::ResourceCache::refresh`]: bounded concurrency, a timeout per
    /// sandbox, figures kept through a failed reading) and caches them for
    /// scrapes and `GET /sandboxes/{id}`.
    pub async fn refresh_resources(&self) {
        let Ok(items) = self.list(None).await else {
            return;
        };
        let measure = |s: Sandbox| {
            let provider = self
                .inner
                .providers
                .get(&s.provider)
                .filter(|p| p.capabilities().contains(&Capability::ResourceStats))
                .cloned();
            async move {
                match provider {
                    Some(p) => p.resource_usage(&s.id).await,
                    None => Ok(None),
                }
            }
        };
        let report = self
            .inner
            .resources
            .refresh(items, measure, RESOURCE_CONCURRENCY, HEALTH_TIMEOUT)
            .await;
        tracing::debug!(?report, "resource figures refreshed");
    }

    pub(super) async fn health_loop(self) {
        loop {
            self.refresh_resources().await;
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.inner.health_interval) => {}
            }
            self.refresh_health().await;
            let report = self.check_liveness().await;
            tracing::debug!(?report, "runtime liveness checked");
        }
    }
}
