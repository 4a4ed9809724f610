//! `/sandboxes`: spawn, admission, list, detail, extend, prune, logs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use stacyvm_core::{GoDuration, NetworkPolicy, Sandbox};
use utoipa::{IntoParams, ToSchema};

/// Body of `POST /sandboxes` and `POST /sandboxes/admission`; every field
/// is optional and the server's defaults (or the template's) fill the rest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct SpawnRequest {
    #[schema(example = "alpine:latest")]
    pub image: Option<String>,
    /// Provider name (`native`, `docker`, `mock`); default: the server's.
    pub provider: Option<String>,
    pub memory_mb: Option<u32>,
    pub vcpus: Option<u32>,
    pub ttl: Option<GoDuration>,
    /// Owner identity; the `X-User-ID` header overrides it.
    pub owner_id: Option<String>,
    /// Spawn from this template (its values are the defaults).
    pub template: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
    /// Egress policy; default: the provider's configured default (mode
    /// `none` unless the server is configured otherwise). A provider that
    /// cannot give exactly this refuses the spawn with 400.
    pub network: Option<NetworkPolicy>,
}

/// Body of `POST /sandboxes/{id}/extend`: new expiry = now + `ttl`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ExtendRequest {
    /// Default: the server's default TTL.
    pub ttl: Option<GoDuration>,
}

/// Answer of `POST /sandboxes/admission`: whether a spawn would be
/// admitted now, and the figures behind the decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AdmissionDecision {
    pub allowed: bool,
    /// Refused only for capacity, which frees up as sandboxes go.
    pub queueable: bool,
    /// Why not; empty when allowed.
    pub reason: String,
    pub active_sandboxes: u32,
    /// 0 = unlimited.
    pub max_sandboxes: u32,
    pub active_owner_sandboxes: u32,
    /// 0 = unlimited.
    pub max_owner_sandboxes: u32,
    pub max_ttl: GoDuration,
}

/// `GET /sandboxes/{id}`: the sandbox, with its latest resource figures
/// where the provider measures them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SandboxDetail {
    #[serde(flatten)]
    pub sandbox: Sandbox,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_usage: Option<ResourceUsage>,
}

/// Figures from the background prober; `null` where the provider cannot
/// read one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResourceUsage {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
}

/// Answer of `DELETE /sandboxes` (prune expired).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PruneResponse {
    pub pruned: u64,
}

/// Optional filters of `GET /sandboxes` (additions to the contract).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct ListSandboxesQuery {
    /// Only sandboxes in this state.
    #[param(example = "running")]
    pub state: Option<String>,
    /// Only sandboxes of this provider.
    pub provider: Option<String>,
    /// Only sandboxes of this owner (`X-User-ID` takes precedence).
    pub owner_id: Option<String>,
}

/// `GET /sandboxes/{id}/logs?lines=N`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Lines from the end (1 to 10000; default 100).
    #[param(minimum = 0)]
    pub lines: usize,
}

impl Default for LogsQuery {
    fn default() -> Self {
        LogsQuery { lines: 100 }
    }
}
