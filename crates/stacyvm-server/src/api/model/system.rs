//! System endpoints: probes, metrics, diagnostics, providers, events.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use stacyvm_core::{GoDuration, ProviderHealth};
use utoipa::{IntoParams, ToSchema};

use crate::obs::{DestroyStats, EventStats, OperationSnapshot, ProcessStats};

/// `GET /health` and `GET /live`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServerStatus {
    /// `ok` (health) or `alive` (live).
    #[schema(example = "ok")]
    pub status: String,
    pub version: String,
    pub uptime: GoDuration,
}

/// `GET /ready`: 200 when the store answers and a provider is healthy,
/// else 503 with `status: not_ready`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReadyResponse {
    /// `ready` or `not_ready`.
    pub status: String,
    pub version: String,
    pub uptime: GoDuration,
    pub ready_providers: u64,
    pub total_providers: u64,
    pub store: StoreHealth,
    pub providers: Vec<ProviderHealth>,
    /// This server as a cluster node; absent on a single host. A node is
    /// ready only while registered and not `lost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeReadiness>,
}

/// The `node` object of `/ready`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeReadiness {
    pub id: String,
    /// `ready`, `draining` or `lost`; absent before registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<stacyvm_core::NodeState>,
    pub registered: bool,
}

/// The store's health, measured on the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StoreHealth {
    pub healthy: bool,
    pub latency_ms: u64,
    /// `sqlite` or `postgres`.
    pub driver: String,
    /// Present when unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Sandboxes that are not destroyed, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SandboxCounts {
    pub total: u64,
    /// Those that count against capacity limits.
    pub active: u64,
    /// Every state but `destroyed`, with zeros.
    pub by_state: BTreeMap<String, u64>,
    /// Every configured provider, with zeros.
    pub by_provider: BTreeMap<String, u64>,
}

/// The `providers` object of `/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProviderSummary {
    pub total: u64,
    pub healthy: u64,
    pub items: Vec<ProviderHealth>,
}

/// `GET /metrics` (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MetricsResponse {
    pub uptime: GoDuration,
    pub uptime_seconds: f64,
    pub process: ProcessStats,
    pub sandboxes: SandboxCounts,
    pub providers: ProviderSummary,
    pub events: EventStats,
    pub operations: Vec<OperationSnapshot>,
    /// Failed destroys and the reaper's retries of them.
    pub destroys: DestroyStats,
    /// Cluster mode only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterSummary>,
}

/// The `cluster` section of `/metrics` and `/diagnostics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClusterSummary {
    /// This node.
    pub node_id: String,
    pub nodes: Vec<NodeLease>,
    /// Absent when `cluster.secret` is not set (no forwarding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarding: Option<crate::cluster::forward::ForwardStats>,
}

/// A node's lease as this node sees it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeLease {
    pub id: String,
    pub state: stacyvm_core::NodeState,
    pub sandboxes: u64,
    /// Since its last heartbeat.
    pub heartbeat_age_ms: i64,
    /// Until its lease lapses (negative: lapsed).
    pub lease_remaining_ms: i64,
}

/// Build facts of the running binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BuildInfo {
    pub version: String,
    pub os: String,
    pub arch: String,
    /// `null` when the build did not record it.
    pub git_commit: Option<String>,
}

/// The limits in force (`defaults.*` of the configuration; 0 = unlimited).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LimitsSummary {
    pub max_sandboxes: u32,
    pub max_sandboxes_per_owner: u32,
    pub default_exec_timeout: GoDuration,
    pub max_exec_timeout: GoDuration,
    pub max_ttl: GoDuration,
    pub default_ttl: GoDuration,
    pub max_memory_mb: u32,
    pub max_vcpus: u32,
}

/// Whether API-key authentication is on (never the key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuthSummary {
    pub enabled: bool,
}

/// `GET /diagnostics`: a redacted support bundle. It never holds an API
/// key, registry credential, provider secret or sandbox env value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Diagnostics {
    pub generated_at: DateTime<Utc>,
    pub build: BuildInfo,
    pub process: ProcessStats,
    pub uptime: GoDuration,
    pub store: StoreHealth,
    pub limits: LimitsSummary,
    pub auth: AuthSummary,
    pub providers: Vec<ProviderHealth>,
    pub sandboxes: SandboxCounts,
    pub events: EventStats,
    pub operations: Vec<OperationSnapshot>,
    /// What was left out.
    pub redactions: Vec<String>,
    /// Cluster mode only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterSummary>,
}

/// `GET /providers/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProviderDetail {
    pub name: String,
    pub healthy: bool,
    pub default: bool,
    /// Sandboxes of this provider that are not destroyed.
    pub sandbox_count: u64,
    /// `null` until the first health check.
    pub health: Option<ProviderHealth>,
    /// Non-secret settings.
    pub config: serde_json::Value,
}

/// `GET /pool/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PoolStatus {
    pub enabled: bool,
}

/// `GET /quotas/summary`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuotaSummary {
    pub total: u64,
    pub with_max_sandboxes: u64,
    pub with_max_ttl: u64,
    pub with_max_exec_timeout: u64,
}

/// Filters and resume point of `GET /events`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Comma-separated event types (`sandbox.created,exec.failed`).
    pub types: String,
    /// Only events of this sandbox.
    pub sandbox_id: String,
    /// Resume after this event id, for clients that cannot send
    /// `Last-Event-ID`.
    pub last_event_id: String,
}

/// One Server-Sent Event of `GET /events`: `id:` is the event id and
/// `data:` one [`stacyvm_core::Event`] as JSON.
#[derive(Debug, Clone, Copy)]
pub struct EventStreamItem;

impl utoipa::PartialSchema for EventStreamItem {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let text = || ObjectBuilder::new().schema_type(Type::String);
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "One event: `id` is the event id (`evt-N`), `data` an Event as JSON",
            ))
            .property("id", text())
            .property("event", text())
            .property(
                "data",
                text()
                    .content_media_type("application/json")
                    .description(Some("An Event (see the Event schema) as JSON")),
            )
            .property("retry", ObjectBuilder::new().schema_type(Type::Integer))
            .required("data")
            .into()
    }
}

impl utoipa::ToSchema for EventStreamItem {}
