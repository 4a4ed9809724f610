//! The sandbox record, as stored and as sent on the wire.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{OwnerId, SandboxId};

/// Lifecycle state of a sandbox.
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
#[serde(rename_all = "lowercase")]
pub enum SandboxState {
    Creating,
    Running,
    /// Frozen by `POST /sandboxes/{id}/pause`: processes and memory are
    /// kept, no CPU is used; `resume` (or, per `defaults.auto_resume`, the
    /// next exec, file or terminal call) thaws it.
    Paused,
    Unhealthy,
    Expired,
    Destroying,
    Destroyed,
    Error,
}

impl SandboxState {
    pub const ALL: [SandboxState; 8] = [
        SandboxState::Creating,
        SandboxState::Running,
        SandboxState::Paused,
        SandboxState::Unhealthy,
        SandboxState::Expired,
        SandboxState::Destroying,
        SandboxState::Destroyed,
        SandboxState::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SandboxState::Creating => "creating",
            SandboxState::Running => "running",
            SandboxState::Paused => "paused",
            SandboxState::Unhealthy => "unhealthy",
            SandboxState::Expired => "expired",
            SandboxState::Destroying => "destroying",
            SandboxState::Destroyed => "destroyed",
            SandboxState::Error => "error",
        }
    }

    /// Counts against capacity limits: everything that may still hold a
    /// runtime.
    pub fn is_active(self) -> bool {
        !matches!(
            self,
            SandboxState::Destroyed | SandboxState::Error | SandboxState::Expired
        )
    }
}

impl fmt::Display for SandboxState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SandboxState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SandboxState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown sandbox state {s:?}"))
    }
}

/// A sandbox as the store keeps it and the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Sandbox {
    pub id: SandboxId,
    pub state: SandboxState,
    pub provider: String,
    pub image: String,
    pub memory_mb: u32,
    pub vcpus: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<OwnerId>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_domain: Option<String>,
    /// Name of the template it was spawned from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Last error seen for this sandbox (state `error`), for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The cluster node that runs it; absent on a single host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
}

impl Sandbox {
    pub fn is_expired_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at <= now
    }
}
