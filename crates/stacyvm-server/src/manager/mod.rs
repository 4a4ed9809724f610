//! The orchestrator: every API action goes route → `Manager` → `Provider`.
//! The manager owns sandbox lifecycle (spawn, TTL, destroy), limits,
//! audit events, operation metrics, provider health and startup
//! reconciliation. It is a cheap-clone handle over shared state; no lock is
//! held across an `.await`. Admission is exact without a lock here: the
//! store counts and inserts in one transaction (`Store::admit_sandbox`).

mod clock;
mod error;
mod exec;
mod files;
mod health;
mod lifecycle;
mod liveness;
mod nodes;
mod pause;
mod reaper;
mod reconcile;
mod store_watch;
mod templates;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use stacyvm_core::{EventType, Sandbox, SandboxId, SandboxState};
use stacyvm_providers::{Provider, ProviderError};
use stacyvm_store::Store;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use clock::{Clock, SystemClock, TokioClock};
pub use error::ManagerError;
pub use exec::{ExecResult, ExecStreamHandle, InteractiveRequest};
pub use files::check_path;
pub use health::{HealthCache, check_provider};
pub use liveness::LivenessReport;
pub use nodes::NodeSettings;
pub use reconcile::ReconcileReport;
// The wire types the manager takes and returns (defined with the rest of
// the contract in `api::model`).
pub use crate::api::model::{
    AdmissionDecision, ExtendRequest, SpawnRequest, TemplateRequest, TemplateSpawnRequest,
};

use crate::config::DefaultsConfig;
use crate::events::EventBus;
use crate::obs::operations::{Operation, OperationMetrics};

/// Everything the manager is built from.
#[derive(Debug)]
pub struct ManagerOptions {
    pub store: Arc<dyn Store>,
    /// Providers by name, in preference order.
    pub providers: Vec<Arc<dyn Provider>>,
    /// Name of the default provider (already resolved from `auto`).
    pub default_provider: String,
    /// Spawn defaults and limits: `defaults.*` of the configuration
    /// (0 = unlimited).
    pub limits: DefaultsConfig,
    pub events: EventBus,
    pub clock: Arc<dyn Clock>,
    pub health_interval: Duration,
    pub reaper_interval: Duration,
    pub preview_domain: Option<String>,
    /// This server as a cluster node; `None` on a single host.
    pub node: Option<NodeSettings>,
}

/// Cheap-clone handle to the orchestrator.
#[derive(Debug, Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    providers: BTreeMap<String, Arc<dyn Provider>>,
    provider_order: Vec<String>,
    default_provider: String,
    limits: DefaultsConfig,
    events: EventBus,
    metrics: OperationMetrics,
    health: HealthCache,
    /// Per-sandbox resource figures, refreshed in the background.
    resources: crate::obs::ResourceCache,
    clock: Arc<dyn Clock>,
    /// Spawns and destroys in flight, and failed destroys to retry.
    reaping: reaper::Reaping,
    /// Running sandboxes whose runtime the last liveness check found down.
    liveness: liveness::Liveness,
    /// Serializes pause and resume of each sandbox.
    pause_locks: pause::PauseLocks,
    /// Whether the store answered its last ping.
    store_watch: store_watch::StoreWatch,
    /// The cluster node this server is (`None` on a single host): it
    /// expires and reconciles only that node's sandboxes.
    node_id: Option<String>,
    /// This server's node record and settings (cluster mode).
    local_node: Option<nodes::LocalNode>,
    /// Wakes the reaper when an expiry moves earlier.
    reaper_wake: Notify,
    health_interval: Duration,
    reaper_interval: Duration,
    preview_domain: Option<String>,
    started: Instant,
    shutdown: CancellationToken,
}

impl Manager {
    pub fn new(opts: ManagerOptions) -> Result<Self, ManagerError> {
        let provider_order: Vec<String> = opts
            .providers
            .iter()
            .map(|p| p.name().to_string())
            .collect();
        let providers: BTreeMap<_, _> = opts
            .providers
            .into_iter()
            .map(|p| (p.name().to_string(), p))
            .collect();
        if !providers.contains_key(&opts.default_provider) {
            return Err(ManagerError::BadRequest(format!(
                "default provider {:?} is not configured",
                opts.default_provider
            )));
        }
        Ok(Manager {
            inner: Arc::new(Inner {
                health: HealthCache::new(&provider_order, &opts.default_provider),
                store: opts.store,
                providers,
                provider_order,
                default_provider: opts.default_provider,
                limits: opts.limits,
                events: opts.events,
                metrics: OperationMetrics::new(),
                resources: crate::obs::ResourceCache::new(),
                clock: opts.clock,
                reaping: reaper::Reaping::default(),
                liveness: liveness::Liveness::default(),
                pause_locks: pause::PauseLocks::default(),
                store_watch: store_watch::StoreWatch::default(),
                node_id: opts.node.as_ref().map(|n| n.id.clone()),
                local_node: opts.node.map(nodes::LocalNode::new),
                reaper_wake: Notify::new(),
                health_interval: opts.health_interval,
                reaper_interval: opts.reaper_interval,
                preview_domain: opts.preview_domain,
                started: Instant::now(),
                shutdown: CancellationToken::new(),
            }),
        })
    }

    pub fn events(&self) -> &EventBus {
        &self.inner.events
    }

    pub fn metrics(&self) -> &OperationMetrics {
        &self.inner.metrics
    }

    pub fn limits(&self) -> &DefaultsConfig {
        &self.inner.limits
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn default_provider(&self) -> &str {
        &self.inner.default_provider
    }

    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// Provider names in preference order.
    pub fn provider_names(&self) -> &[String] {
        &self.inner.provider_order
    }

    pub fn provider(&self, name: &str) -> Result<&Arc<dyn Provider>, ManagerError> {
        self.inner
            .providers
            .get(name)
            .ok_or_else(|| ManagerError::NotFound(format!("provider {name}")))
    }

    /// Starts the background tasks (TTL reaper, health prober, store
    /// watch). They stop
    /// when [`Manager::shutdown`] is called.
    pub fn start_background(&self) -> Vec<tokio::task::JoinHandle<()>> {
        vec![
            tokio::spawn(self.clone().reaper_loop()),
            tokio::spawn(self.clone().health_loop()),
            tokio::spawn(self.clone().store_watch_loop()),
            tokio::spawn(self.clone().heartbeat_loop()),
        ]
    }

    /// Stops background tasks and ends event streams. Sandboxes are left
    /// running for the next start's reconciliation.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    /// Cancelled when the server shuts down (long-lived streams end then).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Destroys every active sandbox (used when `server.destroy_on_shutdown`).
    pub async fn destroy_all(&self) -> usize {
        let mut n = 0;
        for sb in self.list(None).await.unwrap_or_default() {
            if self.destroy(&sb.id).await.is_ok() {
                n += 1;
            }
        }
        n
    }

    fn publish(&self, kind: EventType, sandbox_id: Option<&SandboxId>, data: serde_json::Value) {
        self.inner
            .events
            .publish(kind, sandbox_id.map(SandboxId::as_str), data);
    }

    /// Records an operation's outcome and, on failure, publishes
    /// `operation.failed`. Returns the result unchanged.
    fn observe<T>(
        &self,
        op: Operation,
        provider: &str,
        sandbox_id: Option<&SandboxId>,
        started: Instant,
        result: Result<T, ProviderError>,
    ) -> Result<T, ProviderError> {
        let elapsed = started.elapsed();
        match &result {
            Ok(_) => self.inner.metrics.record(op, provider, elapsed, Ok(())),
            Err(e) => {
                let msg = e.to_string();
                self.inner.metrics.record(op, provider, elapsed, Err(&msg));
                // Expected outcomes of a caller's request (a missing file, a
                // rejected path) are not operational failures.
                if !matches!(
                    e,
                    ProviderError::NotFound(_) | ProviderError::InvalidInput(_)
                ) {
                    self.publish(
                        EventType::OperationFailed,
                        sandbox_id,
                        json!({"operation": op.as_str(), "provider": provider, "error": msg}),
                    );
                }
            }
        }
        result
    }

    /// The sandbox, if it can take commands now: not found when it is
    /// unknown, destroyed or expired; a conflict while it is not running.
    pub async fn runnable(&self, id: &SandboxId) -> Result<Sandbox, ManagerError> {
        self.active_sandbox(id).await.map(|(sb, _)| sb)
    }

    /// Loads a sandbox that can take commands: running (or unhealthy), or
    /// paused and resumed first (`defaults.auto_resume`).
    async fn active_sandbox(
        &self,
        id: &SandboxId,
    ) -> Result<(Sandbox, Arc<dyn Provider>), ManagerError> {
        let sb = self.get(id).await?;
        let sb = self.resumed_if_paused(sb).await?;
        match sb.state {
            SandboxState::Running | SandboxState::Unhealthy => {}
            SandboxState::Destroyed | SandboxState::Expired => {
                return Err(ManagerError::NotFound(format!("sandbox {id}")));
            }
            other => {
                return Err(ManagerError::Conflict(format!(
                    "sandbox {id} is {other}, not running"
                )));
            }
        }
        self.ensure_local(&sb)?;
        let provider = self
            .inner
            .providers
            .get(&sb.provider)
            .cloned()
            .ok_or_else(|| {
                ManagerError::Unavailable(format!(
                    "provider {} of sandbox {id} is not configured",
                    sb.provider
                ))
            })?;
        Ok((sb, provider))
    }
}

impl Manager {
    /// The other cluster node that runs `sb`, if it is not this one.
    pub fn foreign_node<'a>(&self, sb: &'a Sandbox) -> Option<&'a str> {
        match (self.local_node(), sb.node_id.as_deref()) {
            (Some(local), Some(owner)) if local != owner => Some(owner),
            _ => None,
        }
    }

    /// Refuses to touch the runtime of a sandbox another node runs: its
    /// provider is there, not here.
    fn ensure_local(&self, sb: &Sandbox) -> Result<(), ManagerError> {
        match self.foreign_node(sb) {
            Some(owner) => Err(ManagerError::Conflict(format!(
                "sandbox {} runs on node {owner}; send the request to that node",
                sb.id
            ))),
            None => Ok(()),
        }
    }
}

/// Parses a sandbox id from a path segment; a malformed id is simply not
/// found.
pub fn parse_sandbox_id(raw: &str) -> Result<SandboxId, ManagerError> {
    SandboxId::parse(raw).ok_or_else(|| ManagerError::NotFound(format!("sandbox {raw}")))
}
