//! Provider health, in the one shape every endpoint shows.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a provider can do.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    Spawn,
    Exec,
    ExecStream,
    /// Stdin, PTY, resize and signals for the WebSocket terminal.
    Interactive,
    Files,
    Console,
    Health,
    RuntimeInventory,
    /// Isolation by containers (namespaces, cgroups).
    Container,
    /// Per-sandbox CPU/memory/pids figures.
    ResourceStats,
    /// Freeze and thaw a sandbox in memory (`pause` / `resume`).
    Pause,
    /// Checkpoint a sandbox to disk and restore it (`hibernate`).
    Hibernate,
    /// Network mode `allow`: egress limited to a policy's entries.
    NetworkAllow,
    /// Network mode `host`, enabled by the server's config.
    NetworkHost,
}

impl Capability {
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Spawn => "spawn",
            Capability::Exec => "exec",
            Capability::ExecStream => "exec_stream",
            Capability::Interactive => "interactive",
            Capability::Files => "files",
            Capability::Console => "console",
            Capability::Health => "health",
            Capability::RuntimeInventory => "runtime_inventory",
            Capability::Container => "container",
            Capability::ResourceStats => "resource_stats",
            Capability::Pause => "pause",
            Capability::Hibernate => "hibernate",
            Capability::NetworkAllow => "network_allow",
            Capability::NetworkHost => "network_host",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Provider health detail: the same object in `/ready`, `/metrics`,
/// `/diagnostics`, `/providers` and `/providers/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProviderHealth {
    pub name: String,
    pub healthy: bool,
    pub default: bool,
    pub latency_ms: u64,
    pub last_checked: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub capabilities: Vec<Capability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_count: Option<u64>,
    /// Capabilities the provider lacks on this host, each with why (e.g.
    /// `hibernate`: CRIU does not work here).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub unavailable: std::collections::BTreeMap<String, String>,
}
