//! System endpoints: health, liveness, readiness, metrics (JSON and
//! Prometheus), diagnostics, pool status.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use stacyvm_core::{GoDuration, VERSION};
use stacyvm_store::SandboxFilter;

use super::AppState;
use super::error::ApiResult;
use super::model::{
    AuthSummary, BuildInfo, ClusterSummary, Diagnostics, LimitsSummary, MetricsResponse, NodeLease,
    NodeReadiness, PoolStatus, ProviderSummary, QuotaSummary, ReadyResponse, SandboxCounts,
    ServerStatus, StoreHealth,
};
use super::owner::Viewer;
use crate::obs;

fn uptime(app: &AppState) -> GoDuration {
    GoDuration(Duration::from_secs(app.manager.uptime().as_secs()))
}

fn status(app: &AppState, status: &str) -> ServerStatus {
    ServerStatus {
        status: status.to_string(),
        version: VERSION.to_string(),
        uptime: uptime(app),
    }
}

/// The process answers (kept for existing clients; `/live` and `/ready`
/// are the probes).
#[utoipa::path(
    get,
    path = "/health",
    tag = "system",
    responses((status = 200, description = "`status: ok`", body = ServerStatus)),
)]
pub async fn health(State(app): State<AppState>) -> Json<ServerStatus> {
    Json(status(&app, "ok"))
}

/// Answers while the process runs; checks nothing else.
#[utoipa::path(
    get,
    path = "/live",
    tag = "system",
    responses((status = 200, description = "`status: alive`", body = ServerStatus)),
)]
pub async fn live(State(app): State<AppState>) -> Json<ServerStatus> {
    Json(status(&app, "alive"))
}

/// Store health and latency, measured now.
async fn store_health(app: &AppState) -> StoreHealth {
    let result = app.manager.check_store().await;
    StoreHealth {
        healthy: result.is_ok(),
        latency_ms: result.as_ref().map_or(0, |d| d.as_millis() as u64),
        driver: app.manager.store().driver().to_string(),
        // The detail may name a host; it went to the log.
        error: result.err().map(|_| "store did not answer".to_string()),
    }
}

/// Ready when the store answers and at least one provider is healthy.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "system",
    responses(
        (status = 200, description = "`status: ready`", body = ReadyResponse),
        (status = 503, description = "`status: not_ready`: no provider is healthy or the store is down", body = ReadyResponse),
    ),
)]
pub async fn ready(State(app): State<AppState>) -> Response {
    let store = store_health(&app).await;
    let providers = app.manager.provider_health();
    let ready_providers = providers.iter().filter(|p| p.healthy).count() as u64;
    let node = app.manager.local_node().map(|id| {
        let record = app.manager.local_node_record();
        NodeReadiness {
            id: id.to_string(),
            state: record.as_ref().map(|n| n.state),
            registered: record.is_some(),
        }
    });
    let node_ok = node
        .as_ref()
        .is_none_or(|n| n.registered && n.state != Some(stacyvm_core::NodeState::Lost));
    let ok = store.healthy && ready_providers > 0 && node_ok;
    let body = ReadyResponse {
        status: if ok { "ready" } else { "not_ready" }.to_string(),
        version: VERSION.to_string(),
        uptime: uptime(&app),
        ready_providers,
        total_providers: providers.len() as u64,
        store,
        providers,
        node,
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Sandbox counts by state and provider (destroyed ones excluded), from
/// the store; only the viewer's own with a `read` key. A store that does
/// not answer counts as empty: metrics and diagnostics must still answer
/// then (readiness says the store is down).
async fn tally(app: &AppState, viewer: &Viewer) -> obs::SandboxTally {
    let filter = SandboxFilter {
        owner: viewer.0.clone(),
        ..SandboxFilter::default()
    };
    match app.manager.count_sandboxes(&filter).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "cannot count sandboxes");
            obs::SandboxTally::default()
        }
    }
}

async fn sandbox_counts(app: &AppState, viewer: &Viewer) -> SandboxCounts {
    let tally = tally(app, viewer).await;
    SandboxCounts {
        total: tally.total(),
        active: tally.active(),
        by_state: tally.by_state(),
        by_provider: tally.by_provider(app.manager.provider_names()),
    }
}

fn provider_summary(app: &AppState) -> ProviderSummary {
    let items = app.manager.provider_health();
    ProviderSummary {
        total: items.len() as u64,
        healthy: items.iter().filter(|p| p.healthy).count() as u64,
        items,
    }
}

/// Process, sandbox, provider, event and operation figures as JSON.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "system",
    responses((status = 200, description = "Figures", body = MetricsResponse)),
)]
pub async fn metrics(State(app): State<AppState>, viewer: Viewer) -> Json<MetricsResponse> {
    Json(MetricsResponse {
        uptime: uptime(&app),
        uptime_seconds: app.manager.uptime().as_secs_f64(),
        process: obs::ProcessStats::collect(),
        sandboxes: sandbox_counts(&app, &viewer).await,
        providers: provider_summary(&app),
        events: app.manager.events().stats(),
        operations: app.manager.metrics().snapshot(),
        destroys: app.manager.destroy_stats(),
        cluster: cluster_summary(&app, &viewer).await,
    })
}

/// Nodes and their leases, and this node's forwarding figures; not for
/// an owner's `read` key (node totals count every owner's sandboxes).
async fn cluster_summary(app: &AppState, viewer: &Viewer) -> Option<ClusterSummary> {
    if viewer.0.is_some() {
        return None;
    }
    let node_id = app.manager.local_node()?.to_string();
    let now = chrono::Utc::now();
    let nodes = match app.manager.nodes().await {
        Ok(nodes) => nodes,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list nodes");
            Vec::new()
        }
    };
    Some(ClusterSummary {
        node_id,
        nodes: nodes
            .into_iter()
            .map(|n| NodeLease {
                heartbeat_age_ms: (now - n.last_heartbeat).num_milliseconds(),
                lease_remaining_ms: (n.lease_expires_at - now).num_milliseconds(),
                id: n.id,
                state: n.state,
                sandboxes: n.sandboxes,
            })
            .collect(),
        forwarding: app.forwarder.as_ref().map(|f| f.stats()),
    })
}

/// Prometheus text exposition, rendered by `prometheus-client` from cached
/// figures (no provider is called during a scrape).
#[utoipa::path(
    get,
    path = "/metrics/prometheus",
    tag = "system",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
    ),
)]
pub async fn prometheus(State(app): State<AppState>, viewer: Viewer) -> ApiResult<Response> {
    let tally = tally(&app, &viewer).await;
    let mut sandbox_resources = app.manager.sandbox_resources();
    if let Some(owner) = &viewer.0 {
        // Per-sandbox series carry the sandbox id: only the owner's own.
        let own: std::collections::HashSet<String> = match app.manager.list(Some(owner)).await {
            Ok(list) => list.into_iter().map(|s| s.id.to_string()).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the owner's sandboxes");
                Default::default()
            }
        };
        sandbox_resources.retain(|r| own.contains(r.sandbox.as_str()));
    }
    let snapshot = obs::ScrapeSnapshot {
        version: VERSION.to_string(),
        uptime: app.manager.uptime(),
        process: Some(obs::ProcessStats::collect()),
        sandboxes: tally.0,
        providers: app.manager.provider_health(),
        events: app.manager.events().stats(),
        operations: app.manager.metrics().snapshot(),
        sandbox_resources,
        destroys: app.manager.destroy_stats(),
    };
    let options = obs::PrometheusOptions::default();
    match obs::prometheus::render_on_node(snapshot, options, app.manager.local_node()) {
        Ok(text) => Ok((
            [(header::CONTENT_TYPE, obs::prometheus::CONTENT_TYPE)],
            text,
        )
            .into_response()),
        Err(e) => Err(super::error::ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("cannot render metrics: {e}"),
        )),
    }
}

/// Redacted support bundle: everything an operator needs to debug, nothing
/// secret.
#[utoipa::path(
    get,
    path = "/diagnostics",
    tag = "system",
    responses((status = 200, description = "The redacted bundle", body = Diagnostics)),
)]
pub async fn diagnostics(State(app): State<AppState>, viewer: Viewer) -> Json<Diagnostics> {
    let l = app.manager.limits();
    Json(Diagnostics {
        generated_at: chrono::Utc::now(),
        build: BuildInfo {
            version: VERSION.to_string(),
            os: std::env::consts::OS.to_string(),
            arch: std::env::consts::ARCH.to_string(),
            git_commit: option_env!("STACYVM_GIT_COMMIT").map(str::to_string),
        },
        process: obs::ProcessStats::collect(),
        uptime: uptime(&app),
        store: store_health(&app).await,
        limits: LimitsSummary {
            max_sandboxes: l.max_sandboxes,
            max_sandboxes_per_owner: l.max_sandboxes_per_owner,
            default_exec_timeout: l.default_exec_timeout,
            max_exec_timeout: l.max_exec_timeout,
            max_ttl: l.max_ttl,
            default_ttl: l.ttl,
            max_memory_mb: l.max_memory_mb,
            max_vcpus: l.max_vcpus,
        },
        auth: AuthSummary {
            enabled: app.auth.enabled,
        },
        providers: app.manager.provider_health(),
        sandboxes: sandbox_counts(&app, &viewer).await,
        events: app.manager.events().stats(),
        operations: app.manager.metrics().snapshot(),
        redactions: [
            "provider secrets",
            "registry credentials",
            "environment secrets",
            "API keys",
        ]
        .map(str::to_string)
        .to_vec(),
        cluster: cluster_summary(&app, &viewer).await,
    })
}

/// Warm pools do not exist yet.
#[utoipa::path(
    get,
    path = "/pool/status",
    tag = "system",
    responses((status = 200, description = "`enabled: false`", body = PoolStatus)),
)]
pub async fn pool_status() -> Json<PoolStatus> {
    Json(PoolStatus { enabled: false })
}

/// Quotas are not configurable yet: an honest empty summary keeps SDK
/// callers working.
#[utoipa::path(
    get,
    path = "/quotas/summary",
    tag = "system",
    responses((status = 200, description = "Zeros until quotas exist", body = QuotaSummary)),
)]
pub async fn quota_summary() -> Json<QuotaSummary> {
    Json(QuotaSummary::default())
}
