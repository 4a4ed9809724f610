//! Observability building blocks the manager and the API call: the
//! operation metrics recorder, process figures, and the Prometheus renderer.
//!
//! Nothing here knows about the manager: callers hand in snapshots, so each
//! piece is testable (and benchmarked) on its own.

pub mod operations;
pub mod process;
pub mod prometheus;

use serde::{Deserialize, Serialize};
use stacyvm_core::SandboxState;

pub use operations::{Operation, OperationMetrics, OperationSnapshot};
pub use process::{ProcessStats, RuntimeStats};
pub use prometheus::{PrometheusOptions, ScrapeSnapshot};

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
