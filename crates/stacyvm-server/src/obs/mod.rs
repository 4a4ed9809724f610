//! Observability building blocks the manager and the API call: the
//! operation metrics recorder, process figures, and the Prometheus renderer.
//!
//! Nothing here knows about the manager: callers hand in snapshots, so each
//! piece is testable (and benchmarked) on its own.

pub mod operations;
pub mod process;
pub mod prometheus;
pub mod resources;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use stacyvm_core::SandboxState;

pub use operations::{Operation, OperationMetrics, OperationSnapshot};
pub use process::{ProcessStats, RuntimeStats};
pub use prometheus::{PrometheusOptions, ScrapeSnapshot};
pub use resources::{RefreshReport, ResourceCache};

/// Event bus figures, as in the `events` object of `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventStats {
    /// Live subscribers (SSE clients and internal listeners).
    pub subscribers: u64,
    /// Events held for `Last-Event-ID` replay.
    pub history_size: u64,
    /// Events published since start.
    pub events_total: u64,
}

/// Failed sandbox destroys and the reaper's retries of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DestroyStats {
    /// Destroy attempts that failed (each failed attempt counts).
    pub failures_total: u64,
    /// Attempts the reaper made again after a failure.
    pub retries_total: u64,
    /// Sandboxes whose destroy failed and waits for its next attempt.
    pub pending: u64,
}

/// Resource figures of one sandbox, from cgroups or Docker stats. A figure
/// the provider cannot read is `None` and is not exported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SandboxResources {
    /// Sandbox id (`sb-...`).
    pub sandbox: String,
    pub provider: String,
    /// Owner id; empty when the sandbox has none.
    pub owner: String,
    /// CPU time used (user plus system), in seconds; monotonic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Processes (or tasks) in the sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
}

pub use stacyvm_store::SandboxCount;

/// Sandbox counts by (state, provider), as the store answers them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxTally(pub Vec<SandboxCount>);

impl SandboxTally {
    /// Every sandbox counted.
    pub fn total(&self) -> u64 {
        self.0.iter().map(|c| c.count).sum()
    }

    /// Those that count against capacity limits.
    pub fn active(&self) -> u64 {
        self.0
            .iter()
            .filter(|c| c.state.is_active())
            .map(|c| c.count)
            .sum()
    }

    /// Counts by state: every state but `destroyed`, zeros included.
    pub fn by_state(&self) -> BTreeMap<String, u64> {
        let mut m: BTreeMap<String, u64> = SandboxState::ALL
            .iter()
            .filter(|s| **s != SandboxState::Destroyed)
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
        for c in &self.0 {
            *m.entry(c.state.as_str().to_string()).or_default() += c.count;
        }
        m
    }

    /// Counts by provider: every name in `providers` (zeros included) and
    /// any other provider that still has sandboxes.
    pub fn by_provider(&self, providers: &[String]) -> BTreeMap<String, u64> {
        let mut m: BTreeMap<String, u64> = providers.iter().map(|p| (p.clone(), 0)).collect();
        for c in &self.0 {
            *m.entry(c.provider.clone()).or_default() += c.count;
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stacyvm_core::Sandbox;

    fn sandbox(state: SandboxState, provider: &str) -> Sandbox {
        let now = chrono::Utc::now();
        Sandbox {
            id: stacyvm_core::SandboxId::generate(),
            state,
            provider: provider.to_owned(),
            image: "alpine".to_owned(),
            memory_mb: 64,
            vcpus: 1,
            owner_id: None,
            created_at: now,
            expires_at: now,
            metadata: BTreeMap::new(),
            preview_domain: None,
            template: None,
            error: None,
            node_id: None,
        }
    }

    #[test]
    fn tally_counts_by_state_and_provider_without_destroyed() {
        let all = [
            sandbox(SandboxState::Running, "docker"),
            sandbox(SandboxState::Running, "docker"),
            sandbox(SandboxState::Running, "native"),
            sandbox(SandboxState::Error, "docker"),
            sandbox(SandboxState::Destroyed, "docker"),
        ];
        let counts = SandboxCount::tally(&all);
        let tally = SandboxTally(counts.clone());
        assert_eq!((tally.total(), tally.active()), (4, 3));
        assert_eq!(tally.by_state()["running"], 3);
        assert_eq!(tally.by_state()["creating"], 0);
        assert!(!tally.by_state().contains_key("destroyed"));
        let by_provider = tally.by_provider(&["mock".to_string()]);
        assert_eq!((by_provider["docker"], by_provider["mock"]), (3, 0));
        let flat: Vec<(SandboxState, &str, u64)> = counts
            .iter()
            .map(|c| (c.state, c.provider.as_str(), c.count))
            .collect();
        assert_eq!(
            flat,
            vec![
                (SandboxState::Running, "docker", 2),
                (SandboxState::Running, "native", 1),
                (SandboxState::Error, "docker", 1),
            ]
        );
    }
}
