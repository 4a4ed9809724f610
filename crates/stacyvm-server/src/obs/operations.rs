//! Operation metrics recorder: success/failure counts, latency summary and a
//! latency histogram per (operation, provider).
//!
//! Recording is on the hot path of every manager call, so it is lock-free
//! for successes: the provider table is a fixed array of `OnceLock` slots
//! found by a short linear scan, and every figure of a cell is an atomic.
//! Only a failure takes a per-cell mutex, to store its error message; only
//! the first record for a new provider name takes the registration mutex.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Upper bounds of the latency histogram buckets, in seconds (an implicit
/// `+Inf` bucket follows). Sub-millisecond buckets make in-process providers
/// and file operations readable; the top buckets cover long execs.
pub const LATENCY_BUCKETS_SECONDS: [f64; 19] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Number of histogram buckets including the final `+Inf` bucket.
pub const LATENCY_BUCKET_COUNT: usize = LATENCY_BUCKETS_SECONDS.len() + 1;

/// The same bounds in nanoseconds, for the integer comparison on record.
const BUCKET_BOUNDS_NS: [u64; 19] = {
    let mut out = [0u64; 19];
    let mut i = 0;
    while i < out.len() {
        out[i] = (LATENCY_BUCKETS_SECONDS[i] * 1e9) as u64;
        i += 1;
    }
    out
};

/// Distinct provider names the recorder keeps apart; further names share
/// the [`OVERFLOW_PROVIDER`] slot. Providers come from configuration, so a
/// server has a handful.
pub const MAX_PROVIDERS: usize = 32;

/// Provider label used once [`MAX_PROVIDERS`] names are in use.
pub const OVERFLOW_PROVIDER: &str = "_other";

/// Longest stored error message, in bytes (cut on a char boundary).
pub const MAX_ERROR_LEN: usize = 512;

/// An operation the manager measures. Serialises as its API name (`exec_stream`).
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
pub enum Operation {
    Spawn,
    Exec,
    ExecStream,
    Destroy,
    FileWrite,
    FileRead,
    FileList,
    FileDelete,
    FileMove,
    FileChmod,
    FileStat,
    FileGlob,
    Pause,
    Resume,
}

impl Operation {
    /// Every operation, in API order.
    pub const ALL: [Operation; 14] = [
        Operation::Spawn,
        Operation::Exec,
        Operation::ExecStream,
        Operation::Destroy,
        Operation::FileWrite,
        Operation::FileRead,
        Operation::FileList,
        Operation::FileDelete,
        Operation::FileMove,
        Operation::FileChmod,
        Operation::FileStat,
        Operation::FileGlob,
        Operation::Pause,
        Operation::Resume,
    ];

    /// The name used in JSON, Prometheus labels and event data.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Spawn => "spawn",
            Operation::Exec => "exec",
            Operation::ExecStream => "exec_stream",
            Operation::Destroy => "destroy",
            Operation::FileWrite => "file_write",
            Operation::FileRead => "file_read",
            Operation::FileList => "file_list",
            Operation::FileDelete => "file_delete",
            Operation::FileMove => "file_move",
            Operation::FileChmod => "file_chmod",
            Operation::FileStat => "file_stat",
            Operation::FileGlob => "file_glob",
            Operation::Pause => "pause",
            Operation::Resume => "resume",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of [`Operation::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown operation {0:?}")]
pub struct UnknownOperation(pub String);

impl FromStr for Operation {
    type Err = UnknownOperation;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Operation::ALL
            .into_iter()
            .find(|op| op.as_str() == s)
            .ok_or_else(|| UnknownOperation(s.to_owned()))
    }
}

/// Figures of one (operation, provider) pair. Aligned so that two cells
/// never share a cache line between threads recording different pairs.
#[repr(align(128))]
struct Cell {
    success: AtomicU64,
    failure: AtomicU64,
    total_ns: AtomicU64,
    /// `u64::MAX` until the first record.
    min_ns: AtomicU64,
    max_ns: AtomicU64,
    last_observed_unix: AtomicU64,
    buckets: [AtomicU64; LATENCY_BUCKET_COUNT],
    last_error: Mutex<Option<String>>,
}

impl Cell {
    fn new() -> Self {
        Cell {
            success: AtomicU64::new(0),
            failure: AtomicU64::new(0),
            total_ns: AtomicU64::new(0),
            min_ns: AtomicU64::new(u64::MAX),
            max_ns: AtomicU64::new(0),
            last_observed_unix: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            last_error: Mutex::new(None),
        }
    }
}

struct ProviderSlot {
    name: Box<str>,
    cells: Box<[Cell; Operation::ALL.len()]>,
}

/// Recorder of operation metrics, shared by the manager (usually behind an
/// `Arc`). See the module docs for the cost model.
pub struct OperationMetrics {
    slots: [OnceLock<ProviderSlot>; MAX_PROVIDERS],
    /// Serialises the first registration of a provider name.
    register: Mutex<()>,
}

impl fmt::Debug for OperationMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let providers: Vec<&str> = self.slots().map(|s| &*s.name).collect();
        f.debug_struct("OperationMetrics")
            .field("providers", &providers)
            .finish()
    }
}

impl Default for OperationMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl OperationMetrics {
    pub fn new() -> Self {
        OperationMetrics {
            slots: std::array::from_fn(|_| OnceLock::new()),
            register: Mutex::new(()),
        }
    }

    /// Records one finished operation. `result` carries the error message of
    /// a failure; it must already be free of secrets (it is shown by
    /// `/metrics` and `/diagnostics`).
    pub fn record(
        &self,
        op: Operation,
        provider: &str,
        latency: Duration,
        result: Result<(), &str>,
    ) {
        let cell = &self.slot(provider).cells[op.index()];
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        match result {
            Ok(()) => cell.success.fetch_add(1, Ordering::Relaxed),
            Err(message) => {
                let message = truncate(message, MAX_ERROR_LEN).to_owned();
                // A poisoned lock only means another recorder panicked
                // mid-assignment of an Option<String>: the value is usable.
                *cell
                    .last_error
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(message);
                cell.failure.fetch_add(1, Ordering::Relaxed)
            }
        };
        cell.total_ns.fetch_add(ns, Ordering::Relaxed);
        let bucket = BUCKET_BOUNDS_NS.partition_point(|&bound| bound < ns);
        cell.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        // Extremes and the clock change rarely: a plain load first keeps
        // the common case free of writes to the shared cache line.
        if ns < cell.min_ns.load(Ordering::Relaxed) {
            cell.min_ns.fetch_min(ns, Ordering::Relaxed);
        }
        if ns > cell.max_ns.load(Ordering::Relaxed) {
            cell.max_ns.fetch_max(ns, Ordering::Relaxed);
        }
        let now = unix_now();
        if now > cell.last_observed_unix.load(Ordering::Relaxed) {
            cell.last_observed_unix.fetch_max(now, Ordering::Relaxed);
        }
    }

    /// Records the outcome of `result`, rendering its error with `Display`.
    pub fn record_result<T, E: fmt::Display>(
        &self,
        op: Operation,
        provider: &str,
        latency: Duration,
        result: &Result<T, E>,
    ) {
        match result {
            Ok(_) => self.record(op, provider, latency, Ok(())),
            Err(e) => self.record(op, provider, latency, Err(&e.to_string())),
        }
    }

    /// Every (operation, provider) pair that has at least one record,
    /// ordered by operation (API order) then provider name.
    pub fn snapshot(&self) -> Vec<OperationSnapshot> {
        let mut out = Vec::new();
        for op in Operation::ALL {
            let mut row: Vec<OperationSnapshot> = self
                .slots()
                .filter_map(|slot| snapshot_cell(op, &slot.name, &slot.cells[op.index()]))
                .collect();
            row.sort_by(|a, b| a.provider.cmp(&b.provider));
            out.extend(row);
        }
        out
    }

    /// The figures of one pair, `None` when it has no record.
    pub fn get(&self, op: Operation, provider: &str) -> Option<OperationSnapshot> {
        let slot = self.slots().find(|s| &*s.name == provider)?;
        snapshot_cell(op, &slot.name, &slot.cells[op.index()])
    }

    fn slots(&self) -> impl Iterator<Item = &ProviderSlot> {
        self.slots.iter().map_while(OnceLock::get)
    }

    fn slot(&self, provider: &str) -> &ProviderSlot {
        // Slots fill in order and never empty: a scan that meets an empty
        // slot has seen every name; a full table sends unknown names to the
        // overflow slot without taking the registration lock.
        for cell in &self.slots {
            match cell.get() {
                Some(slot) if &*slot.name == provider => return slot,
                Some(_) => {}
                None => return self.register(provider),
            }
        }
        self.overflow_slot()
    }

    #[cold]
    fn register(&self, provider: &str) -> &ProviderSlot {
        let _guard = self
            .register
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (i, cell) in self.slots.iter().enumerate() {
            let name = if i == MAX_PROVIDERS - 1 {
                OVERFLOW_PROVIDER
            } else {
                provider
            };
            let slot = cell.get_or_init(|| ProviderSlot {
                name: name.into(),
                cells: Box::new(std::array::from_fn(|_| Cell::new())),
            });
            if &*slot.name == provider {
                return slot;
            }
        }
        self.overflow_slot()
    }

    fn overflow_slot(&self) -> &ProviderSlot {
        self.slots[MAX_PROVIDERS - 1]
            .get()
            .expect("the overflow slot is filled once every other slot is")
    }
}

fn snapshot_cell(op: Operation, provider: &str, cell: &Cell) -> Option<OperationSnapshot> {
    let success_total = cell.success.load(Ordering::Relaxed);
    let failure_total = cell.failure.load(Ordering::Relaxed);
    let latency_count = success_total + failure_total;
    if latency_count == 0 {
        return None;
    }
    let total_ns = cell.total_ns.load(Ordering::Relaxed);
    let min_ns = cell.min_ns.load(Ordering::Relaxed);
    // A concurrent first record may have bumped a count before its minimum.
    let min_ns = if min_ns == u64::MAX { 0 } else { min_ns };
    let max_ns = cell.max_ns.load(Ordering::Relaxed);
    let avg_ns = total_ns / latency_count;
    let latency_buckets: Vec<u64> = cell
        .buckets
        .iter()
        .map(|b| b.load(Ordering::Relaxed))
        .collect();
    let last_error = cell
        .last_error
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    let mut snap = OperationSnapshot {
        operation: op,
        provider: provider.to_owned(),
        success_total,
        failure_total,
        latency_count,
        latency_total_ms: total_ns / 1_000_000,
        latency_min_ms: min_ns / 1_000_000,
        latency_max_ms: max_ns / 1_000_000,
        latency_avg_ms: avg_ns / 1_000_000,
        last_error,
        last_observed_unix: cell.last_observed_unix.load(Ordering::Relaxed),
        latency_total_us: total_ns / 1_000,
        latency_min_us: min_ns / 1_000,
        latency_max_us: max_ns / 1_000,
        latency_avg_us: avg_ns / 1_000,
        latency_p50_ms: 0.0,
        latency_p90_ms: 0.0,
        latency_p99_ms: 0.0,
        latency_buckets,
    };
    snap.latency_p50_ms = snap.quantile_ms(0.5).unwrap_or(0.0);
    snap.latency_p90_ms = snap.quantile_ms(0.9).unwrap_or(0.0);
    snap.latency_p99_ms = snap.quantile_ms(0.99).unwrap_or(0.0);
    Some(snap)
}

/// Figures of one (operation, provider) pair. The first eleven fields are the
/// API v1 operation item; the rest are additions (finer units, quantiles,
/// histogram). Millisecond fields are truncated integers, as in API v1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OperationSnapshot {
    pub operation: Operation,
    pub provider: String,
    pub success_total: u64,
    pub failure_total: u64,
    pub latency_count: u64,
    pub latency_total_ms: u64,
    pub latency_min_ms: u64,
    pub latency_max_ms: u64,
    pub latency_avg_ms: u64,
    /// Message of the latest failure (at most [`MAX_ERROR_LEN`] bytes);
    /// absent until one fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Unix time (seconds) of the latest record.
    pub last_observed_unix: u64,
    pub latency_total_us: u64,
    pub latency_min_us: u64,
    pub latency_max_us: u64,
    pub latency_avg_us: u64,
    /// Quantile estimates from the histogram (0 without records).
    pub latency_p50_ms: f64,
    pub latency_p90_ms: f64,
    pub latency_p99_ms: f64,
    /// Non-cumulative bucket counts, one per bound of
    /// [`LATENCY_BUCKETS_SECONDS`] plus a final `+Inf` bucket.
    pub latency_buckets: Vec<u64>,
}

impl OperationSnapshot {
    /// Estimates the `q` quantile (0..=1) of latency in milliseconds, by
    /// linear interpolation inside the bucket that holds it (as PromQL's
    /// `histogram_quantile`), clamped to the observed minimum and maximum.
    /// `None` without records or when `q` is out of range.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total: u64 = self.latency_buckets.iter().sum();
        if total == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let min_ms = self.latency_min_us as f64 / 1_000.0;
        let max_ms = self.latency_max_us as f64 / 1_000.0;
        let rank = q * total as f64;
        let mut cumulative = 0u64;
        for (i, &count) in self.latency_buckets.iter().enumerate() {
            if count == 0 || ((cumulative + count) as f64) < rank {
                cumulative += count;
                continue;
            }
            let lower = if i == 0 {
                0.0
            } else {
                LATENCY_BUCKETS_SECONDS[i - 1] * 1_000.0
            };
            // The +Inf bucket has no upper bound: the maximum is one.
            let upper = LATENCY_BUCKETS_SECONDS
                .get(i)
                .map_or(max_ms, |s| s * 1_000.0);
            let within = (rank - cumulative as f64) / count as f64;
            let estimate = lower + (upper - lower) * within;
            return Some(estimate.clamp(min_ms, max_ms.max(min_ms)));
        }
        Some(max_ms)
    }

    /// Bucket upper bounds in seconds with their non-cumulative counts, the
    /// last one `f64::INFINITY` (the shape Prometheus encoders take).
    pub fn buckets_seconds(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        LATENCY_BUCKETS_SECONDS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.latency_buckets.iter().copied())
    }

    /// Sum of latencies in seconds, at microsecond precision.
    pub fn latency_sum_seconds(&self) -> f64 {
        self.latency_total_us as f64 / 1e6
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
#[path = "operations_tests.rs"]
mod tests;
