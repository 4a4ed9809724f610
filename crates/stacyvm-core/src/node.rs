//! Cluster nodes: every `stacyvm serve` sharing one PostgreSQL store is a
//! node, registered in the store with a lease it renews by heartbeat.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a node stands in the cluster.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Holds a lease and takes new sandboxes.
    Ready,
    /// Holds a lease and serves its sandboxes, but takes no new ones.
    Draining,
    /// Its lease lapsed; a surviving node gave up its sandboxes.
    Lost,
}

impl NodeState {
    pub const ALL: [NodeState; 3] = [NodeState::Ready, NodeState::Draining, NodeState::Lost];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Ready => "ready",
            NodeState::Draining => "draining",
            NodeState::Lost => "lost",
        }
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NodeState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown node state {s:?}"))
    }
}

/// A provider as a node last reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeProvider {
    pub name: String,
    pub healthy: bool,
}

/// A node as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Node {
    pub id: String,
    pub state: NodeState,
    /// How other nodes reach its API (`http://10.0.0.5:7423`).
    pub advertise_url: String,
    pub version: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub providers: Vec<NodeProvider>,
    /// Most sandboxes it takes; 0 = unlimited.
    pub max_sandboxes: u64,
    /// Memory it offers to sandboxes, in MiB; 0 = unlimited.
    pub memory_mb: u64,
    pub registered_at: DateTime<Utc>,
    pub last_heartbeat: DateTime<Utc>,
    /// Until when its lease holds (the database's clock).
    pub lease_expires_at: DateTime<Utc>,
    /// Sandboxes placed on it that count against capacity.
    pub sandboxes: u64,
    /// Memory those sandboxes hold, in MiB.
    pub memory_used_mb: u64,
}

/// What a node registers and renews.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeRegistration {
    pub id: String,
    pub advertise_url: String,
    pub version: String,
    pub labels: BTreeMap<String, String>,
    pub providers: Vec<NodeProvider>,
    pub max_sandboxes: u64,
    pub memory_mb: u64,
}
