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
use stacyvm_core::{Sandbox, SandboxState};

pub use operations::{Operation, OperationMetrics, OperationSnapshot};
pub use process::{ProcessStats, RuntimeStats};
pub use prometheus::{PrometheusOptions, ScrapeSnapshot};
pub use resources::{RefreshReport, ResourceCache};

/// Event bus figures, as in the `events` object of `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventStats {
    /// Live subscribers (SSE clients and internal listeners).
    pub subscribers: u64,
    /// Events held for `Last-Event-ID` replay.
    pub history_size: u64,
    /// Events published since start.
    pub events_total: u64,
}

impl From<crate::events::EventStats> for EventStats {
    fn from(s: crate::events::EventStats) -> Self {
        EventStats {
            subscribers: s.subscribers as u64,
            history_size: s.history_size as u64,
            events_total: s.events_total,
        }
    }
}

/// Failed sandbox destroys and the reaper's retries of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestroyStats {
    /// Destroy attempts that failed (each failed attempt counts).
    pub failures_total: u64,
    /// Attempts the reaper made again after a failure.
    pub retries_total: u64,
    /// Sandboxes whose destroy failed and waits for its next attempt.
    pub pending: u64,
}

/// Number of sandboxes in one (state, provider) pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxCount {
    pub state: SandboxState,
    pub provider: String,
    pub count: u64,
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

impl SandboxCount {
    /// Counts `sandboxes` by (state, provider), leaving destroyed ones out;
    /// ordered by state then provider.
    pub fn tally<'a>(sandboxes: impl IntoIterator<Item = &'a Sandbox>) -> Vec<SandboxCount> {
        let mut counts: BTreeMap<(SandboxState, &str), u64> = BTreeMap::new();
        for s in sandboxes {
            if s.state != SandboxState::Destroyed {
                *counts.entry((s.state, s.provider.as_str())).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .map(|((state, provider), count)| SandboxCount {
                state,
                provider: provider.to_owned(),
                count,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn event_stats_convert_from_the_bus() {
        let bus = crate::events::EventStats {
            subscribers: 2,
            history_size: 7,
            events_total: 9,
        };
        let s = EventStats::from(bus);
        assert_eq!((s.subscribers, s.history_size, s.events_total), (2, 7, 9));
    }
}
