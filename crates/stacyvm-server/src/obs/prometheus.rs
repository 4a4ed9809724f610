//! Prometheus text exposition (format 0.0.4) of a [`ScrapeSnapshot`],
//! encoded by `prometheus-client`.
//!
//! Names of API v1 are kept so existing dashboards work. Two groups of them
//! do not follow today's Prometheus conventions, and are typed so that
//! `promtool check metrics` accepts everything else:
//!
//! - `stacyvm_sandboxes_total` is a gauge by meaning; it is exposed as
//!   `untyped` (a gauge may not end in `_total`).
//! - `stacyvm_operation_latency_milliseconds_{sum,count,max}` and
//!   `stacyvm_provider_health_latency_milliseconds` use milliseconds, which
//!   promtool reports as "use base unit seconds". They are the only lint
//!   findings; [`PrometheusOptions::legacy_names`] turns them off. The
//!   `stacyvm_operation_duration_seconds` histogram and
//!   `stacyvm_provider_health_latency_seconds` carry the same data in
//!   seconds.

use std::fmt;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use stacyvm_core::ProviderHealth;

use super::{
    DestroyStats, EventStats, OperationSnapshot, ProcessStats, SandboxCount, SandboxResources,
};

/// `Content-Type` to send with [`render`]'s output (Prometheus text 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Names of the API v1 series that promtool's lint flags (milliseconds);
/// present only with [`PrometheusOptions::legacy_names`].
pub const LEGACY_MILLISECOND_METRICS: [&str; 4] = [
    "stacyvm_operation_latency_milliseconds_sum",
    "stacyvm_operation_latency_milliseconds_count",
    "stacyvm_operation_latency_milliseconds_max",
    "stacyvm_provider_health_latency_milliseconds",
];

/// Everything one scrape shows, gathered by the caller.
#[derive(Debug, Clone, Default)]
pub struct ScrapeSnapshot {
    /// Server version, exported as `stacyvm_build_info{version}`.
    pub version: String,
    /// Time since the server started.
    pub uptime: Duration,
    /// `None` leaves the `process_*` series out.
    pub process: Option<ProcessStats>,
    pub sandboxes: Vec<SandboxCount>,
    pub providers: Vec<ProviderHealth>,
    pub events: EventStats,
    pub operations: Vec<OperationSnapshot>,
    pub sandbox_resources: Vec<SandboxResources>,
    pub destroys: DestroyStats,
}

/// Rendering choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrometheusOptions {
    /// Also export the millisecond series of API v1 (see the module docs).
    pub legacy_names: bool,
}

impl Default for PrometheusOptions {
    fn default() -> Self {
        PrometheusOptions { legacy_names: true }
    }
}

/// Renders `snapshot` with the default options (legacy names included).
pub fn render(snapshot: ScrapeSnapshot) -> Result<String, fmt::Error> {
    render_with(snapshot, PrometheusOptions::default())
}

/// Renders `snapshot` as Prometheus text; send it with [`CONTENT_TYPE`].
/// Fails only if a writer fails, which a `String` does not.
pub fn render_with(
    snapshot: ScrapeSnapshot,
    options: PrometheusOptions,
) -> Result<String, fmt::Error> {
    render_on_node(snapshot, options, None)
}

/// Like [`render_with`]; on a cluster node every series also carries a
/// `node` label with the node's id, so one Prometheus scraping every node
/// tells their series apart (a single host keeps its series unchanged).
pub fn render_on_node(
    snapshot: ScrapeSnapshot,
    options: PrometheusOptions,
    node: Option<&str>,
) -> Result<String, fmt::Error> {
    let estimate = 4096 + snapshot.operations.len() * 3000 + snapshot.sandbox_resources.len() * 300;
    let mut registry = match node {
        Some(id) => Registry::with_labels(std::iter::once((
            std::borrow::Cow::Borrowed("node"),
            std::borrow::Cow::Owned(id.to_string()),
        ))),
        None => Registry::default(),
    };
    registry.register_collector(Box::new(ScrapeCollector { snapshot, options }));
    let mut out = String::with_capacity(estimate);
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
    Ok(out)
}

/// The whole `/metrics/prometheus` answer: `200` with [`CONTENT_TYPE`], or
/// a logged `500` if encoding failed (it cannot into a `String`).
pub fn into_response(snapshot: ScrapeSnapshot) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    match render(snapshot) {
        Ok(body) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "prometheus encoding failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[derive(Debug)]
struct ScrapeCollector {
    snapshot: ScrapeSnapshot,
    options: PrometheusOptions,
}

impl Collector for ScrapeCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), fmt::Error> {
        let s = &self.snapshot;
        let legacy = self.options.legacy_names;

        let mut m = enc.encode_descriptor(
            "stacyvm_build",
            "StacyVM build information.",
            None,
            MetricType::Info,
        )?;
        m.encode_info(&[("version", s.version.as_str())])?;
        gauge(
            &mut enc,
            "stacyvm_uptime_seconds",
            "Seconds since the server started.",
            s.uptime.as_secs_f64(),
        )?;

        encode_sandboxes(&mut enc, &s.sandboxes)?;
        encode_providers(&mut enc, &s.providers, legacy)?;

        let mut m = enc.encode_descriptor(
            "stacyvm_events",
            "Events published on the event bus since start.",
            None,
            MetricType::Counter,
        )?;
        m.encode_counter::<NoLabelSet, _, u64>(&s.events.events_total, None)?;
        gauge(
            &mut enc,
            "stacyvm_event_subscribers",
            "Live event bus subscribers.",
            s.events.subscribers,
        )?;
        gauge(
            &mut enc,
            "stacyvm_event_history_size",
            "Events kept for Last-Event-ID replay.",
            s.events.history_size,
        )?;

        let mut m = enc.encode_descriptor(
            "stacyvm_destroy_failures",
            "Sandbox destroy attempts that failed (the reaper retries them).",
            None,
            MetricType::Counter,
        )?;
        m.encode_counter::<NoLabelSet, _, u64>(&s.destroys.failures_total, None)?;
        let mut m = enc.encode_descriptor(
            "stacyvm_destroy_retries",
            "Destroy attempts the reaper made again after a failure.",
            None,
            MetricType::Counter,
        )?;
        m.encode_counter::<NoLabelSet, _, u64>(&s.destroys.retries_total, None)?;
        gauge(
            &mut enc,
            "stacyvm_destroy_pending",
            "Sandboxes whose destroy failed and waits for a retry.",
            s.destroys.pending,
        )?;

        encode_operations(&mut enc, &s.operations, legacy)?;
        if let Some(p) = &s.process {
            encode_process(&mut enc, p)?;
        }
        encode_sandbox_resources(&mut enc, &s.sandbox_resources)
    }
}

fn gauge<V: prometheus_client::encoding::EncodeGaugeValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: V,
) -> Result<(), fmt::Error> {
    enc.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&value)
}

fn encode_sandboxes(
    enc: &mut DescriptorEncoder,
    counts: &[SandboxCount],
) -> Result<(), fmt::Error> {
    // Untyped: a gauge by meaning, but the API v1 name ends in `_total`.
    let mut m = enc.encode_descriptor(
        "stacyvm_sandboxes_total",
        "Sandboxes by state and provider (a gauge).",
        None,
        MetricType::Unknown,
    )?;
    for c in counts {
        let labels = [
            ("state", c.state.as_str()),
            ("provider", c.provider.as_str()),
        ];
        m.encode_family(&labels)?.encode_gauge(&c.count)?;
    }
    Ok(())
}

fn encode_providers(
    enc: &mut DescriptorEncoder,
    providers: &[ProviderHealth],
    legacy: bool,
) -> Result<(), fmt::Error> {
    let mut m = enc.encode_descriptor(
        "stacyvm_provider_healthy",
        "1 when the provider's latest health check passed.",
        None,
        MetricType::Gauge,
    )?;
    for p in providers {
        let default = if p.default { "true" } else { "false" };
        let labels = [("provider", p.name.as_str()), ("default", default)];
        m.encode_family(&labels)?
            .encode_gauge(&u64::from(p.healthy))?;
    }
    if legacy {
        let mut m = enc.encode_descriptor(
            "stacyvm_provider_health_latency_milliseconds",
            "Latency of the latest health check in milliseconds (API v1 name).",
            None,
            MetricType::Gauge,
        )?;
        for p in providers {
            m.encode_family(&[("provider", p.name.as_str())])?
                .encode_gauge(&p.latency_ms)?;
        }
    }
    let mut m = enc.encode_descriptor(
        "stacyvm_provider_health_latency_seconds",
        "Latency of the latest health check.",
        None,
        MetricType::Gauge,
    )?;
    for p in providers {
        m.encode_family(&[("provider", p.name.as_str())])?
            .encode_gauge(&(p.latency_ms as f64 / 1000.0))?;
    }
    let mut m = enc.encode_descriptor(
        "stacyvm_provider_last_check_timestamp_seconds",
        "Unix time of the latest health check.",
        None,
        MetricType::Gauge,
    )?;
    for p in providers {
        let ts = p.last_checked.timestamp_millis() as f64 / 1000.0;
        m.encode_family(&[("provider", p.name.as_str())])?
            .encode_gauge(&ts)?;
    }
    let mut m = enc.encode_descriptor(
        "stacyvm_provider_runtime_sandboxes",
        "Sandboxes the provider's runtime reports (providers with runtime inventory).",
        None,
        MetricType::Gauge,
    )?;
    for p in providers {
        if let Some(n) = p.runtime_count {
            m.encode_family(&[("provider", p.name.as_str())])?
                .encode_gauge(&n)?;
        }
    }
    Ok(())
}

fn encode_operations(
    enc: &mut DescriptorEncoder,
    ops: &[OperationSnapshot],
    legacy: bool,
) -> Result<(), fmt::Error> {
    fn labels(o: &OperationSnapshot) -> [(&'static str, &str); 2] {
        [
            ("operation", o.operation.as_str()),
            ("provider", o.provider.as_str()),
        ]
    }
    let mut m = enc.encode_descriptor(
        "stacyvm_operation_success",
        "Operations that succeeded.",
        None,
        MetricType::Counter,
    )?;
    for o in ops {
        m.encode_family(&labels(o))?
            .encode_counter::<NoLabelSet, _, u64>(&o.success_total, None)?;
    }
    let mut m = enc.encode_descriptor(
        "stacyvm_operation_failure",
        "Operations that failed.",
        None,
        MetricType::Counter,
    )?;
    for o in ops {
        m.encode_family(&labels(o))?
            .encode_counter::<NoLabelSet, _, u64>(&o.failure_total, None)?;
    }
    if legacy {
        // Untyped: `_sum`/`_count` are reserved for histograms and summaries.
        type Series = (
            &'static str,
            &'static str,
            MetricType,
            fn(&OperationSnapshot) -> u64,
        );
        let legacy_series: [Series; 3] = [
            (
                "stacyvm_operation_latency_milliseconds_sum",
                "Total operation latency in milliseconds (API v1 name).",
                MetricType::Unknown,
                |o| o.latency_total_ms,
            ),
            (
                "stacyvm_operation_latency_milliseconds_count",
                "Operations timed (API v1 name).",
                MetricType::Unknown,
                |o| o.latency_count,
            ),
            (
                "stacyvm_operation_latency_milliseconds_max",
                "Longest operation latency in milliseconds (API v1 name).",
                MetricType::Gauge,
                |o| o.latency_max_ms,
            ),
        ];
        for (name, help, kind, value) in legacy_series {
            let mut m = enc.encode_descriptor(name, help, None, kind)?;
            for o in ops {
                m.encode_family(&labels(o))?.encode_gauge(&value(o))?;
            }
        }
    }
    let mut m = enc.encode_descriptor(
        "stacyvm_operation_duration_seconds",
        "Operation latency.",
        None,
        MetricType::Histogram,
    )?;
    let mut buckets = Vec::with_capacity(super::operations::LATENCY_BUCKET_COUNT);
    for o in ops {
        buckets.clear();
        buckets.extend(o.buckets_seconds());
        // The bucket sum, not latency_count: a scrape racing a record must
        // still have count == the +Inf bucket.
        let count = buckets.iter().map(|(_, n)| n).sum();
        m.encode_family(&labels(o))?
            .encode_histogram::<NoLabelSet>(o.latency_sum_seconds(), count, &buckets, None)?;
    }
    Ok(())
}

fn encode_process(enc: &mut DescriptorEncoder, p: &ProcessStats) -> Result<(), fmt::Error> {
    if let Some(v) = p.cpu_seconds {
        enc.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            MetricType::Counter,
        )?
        .encode_counter::<NoLabelSet, _, u64>(&v, None)?;
    }
    let gauges: [(&str, &str, Option<f64>); 6] = [
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            p.resident_memory_bytes.map(|v| v as f64),
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            p.virtual_memory_bytes.map(|v| v as f64),
        ),
        (
            "process_open_fds",
            "Number of open file descriptors.",
            p.open_fds.map(|v| v as f64),
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors.",
            p.max_fds.map(|v| v as f64),
        ),
        (
            "process_threads",
            "Number of OS threads in the process.",
            p.threads.map(|v| v as f64),
        ),
        (
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            p.start_time_unix,
        ),
    ];
    for (name, help, value) in gauges {
        if let Some(v) = value {
            gauge(enc, name, help, v)?;
        }
    }
    if let Some(rt) = &p.runtime {
        gauge(
            enc,
            "stacyvm_runtime_workers",
            "Tokio runtime worker threads.",
            rt.workers,
        )?;
        gauge(
            enc,
            "stacyvm_runtime_alive_tasks",
            "Tokio tasks spawned and not finished.",
            rt.alive_tasks,
        )?;
        gauge(
            enc,
            "stacyvm_runtime_global_queue_depth",
            "Tokio tasks waiting in the global queue.",
            rt.global_queue_depth,
        )?;
    }
    Ok(())
}

fn encode_sandbox_resources(
    enc: &mut DescriptorEncoder,
    sandboxes: &[SandboxResources],
) -> Result<(), fmt::Error> {
    // The families are declared even without sandboxes, so scrapers and
    // dashboards see the names from the start.
    fn labels(s: &SandboxResources) -> [(&'static str, &str); 3] {
        [
            ("sandbox", s.sandbox.as_str()),
            ("provider", s.provider.as_str()),
            ("owner", s.owner.as_str()),
        ]
    }
    let mut m = enc.encode_descriptor(
        "stacyvm_sandbox_cpu_seconds",
        "CPU time used by the sandbox in seconds.",
        None,
        MetricType::Counter,
    )?;
    for s in sandboxes {
        if let Some(v) = s.cpu_seconds {
            m.encode_family(&labels(s))?
                .encode_counter::<NoLabelSet, _, u64>(&v, None)?;
        }
    }
    let mut m = enc.encode_descriptor(
        "stacyvm_sandbox_memory_bytes",
        "Memory used by the sandbox in bytes.",
        None,
        MetricType::Gauge,
    )?;
    for s in sandboxes {
        if let Some(v) = s.memory_bytes {
            m.encode_family(&labels(s))?.encode_gauge(&v)?;
        }
    }
    let mut m = enc.encode_descriptor(
        "stacyvm_sandbox_pids",
        "Processes in the sandbox.",
        None,
        MetricType::Gauge,
    )?;
    for s in sandboxes {
        if let Some(v) = s.pids {
            m.encode_family(&labels(s))?.encode_gauge(&v)?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "prometheus_tests.rs"]
mod tests;
