//! System endpoints: health, liveness, readiness, metrics (JSON and
//! Prometheus), diagnostics, pool status.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use stacyvm_core::{GoDuration, SandboxState, VERSION};

use super::AppState;
use crate::obs;

fn uptime(app: &AppState) -> String {
    GoDuration(Duration::from_secs(app.manager.uptime().as_secs())).to_string()
}

pub async fn health(State(app): State<AppState>) -> Json<Value> {
    Json(json!({"status": "ok", "version": VERSION, "uptime": uptime(&app)}))
}

/// Answers while the process runs; checks nothing else.
pub async fn live(State(app): State<AppState>) -> Json<Value> {
    Json(json!({"status": "alive", "version": VERSION, "uptime": uptime(&app)}))
}

/// Store health and latency, measured now.
async fn store_health(app: &AppState) -> Value {
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(3), app.manager.store().ping()).await;
    let latency_ms = started.elapsed().as_millis() as u64;
    let error = match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("store ping timed out".to_string()),
    };
    let mut v = json!({"healthy": error.is_none(), "latency_ms": latency_ms, "driver": app.manager.store().driver()});
    if let Some(e) = error {
        tracing::warn!(error = %e, "store unhealthy");
        v["error"] = json!("store did not answer");
    }
    v
}

/// Ready when the store answers and at least one provider is healthy.
pub async fn ready(State(app): State<AppState>) -> Response {
    let store = store_health(&app).await;
    let providers = app.manager.provider_health();
    let ready_providers = providers.iter().filter(|p| p.healthy).count();
    let store_ok = store["healthy"].as_bool().unwrap_or(false);
    let ok = store_ok && ready_providers > 0;
    let body = json!({
        "status": if ok { "ready" } else { "not_ready" },
        "version": VERSION,
        "uptime": uptime(&app),
        "ready_providers": ready_providers,
        "total_providers": providers.len(),
        "store": store,
        "providers": providers,
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Sandbox counts by state and provider (destroyed ones excluded).
async fn sandbox_counts(app: &AppState) -> Value {
    let items = app.manager.list(None).await.unwrap_or_default();
    let mut by_state: BTreeMap<&str, u64> = SandboxState::ALL
        .iter()
        .filter(|s| **s != SandboxState::Destroyed)
        .map(|s| (s.as_str(), 0))
        .collect();
    let mut by_provider: BTreeMap<String, u64> = app
        .manager
        .provider_names()
        .iter()
        .map(|n| (n.clone(), 0))
        .collect();
    let mut active = 0;
    for s in items.iter().filter(|s| s.state != SandboxState::Destroyed) {
        *by_state.entry(s.state.as_str()).or_default() += 1;
        *by_provider.entry(s.provider.clone()).or_default() += 1;
        if s.state.is_active() {
            active += 1;
        }
    }
    json!({"total": by_state.values().sum::<u64>(), "active": active, "by_state": by_state, "by_provider": by_provider})
}

fn provider_summary(app: &AppState) -> Value {
    let items = app.manager.provider_health();
    json!({"total": items.len(), "healthy": items.iter().filter(|p| p.healthy).count(), "items": items})
}

pub async fn metrics(State(app): State<AppState>) -> Json<Value> {
    Json(json!({
        "uptime": uptime(&app),
        "uptime_seconds": app.manager.uptime().as_secs_f64(),
        "process": obs::ProcessStats::collect(),
        "sandboxes": sandbox_counts(&app).await,
        "providers": provider_summary(&app),
        "events": app.manager.events().stats(),
        "operations": app.manager.metrics().snapshot(),
        "destroys": app.manager.destroy_stats(),
    }))
}

/// Prometheus text exposition, rendered by `prometheus-client` from cached
/// figures (no provider is called during a scrape).
pub async fn prometheus(State(app): State<AppState>) -> Response {
    let items = app.manager.list(None).await.unwrap_or_default();
    let mut counts: BTreeMap<(SandboxState, String), u64> = BTreeMap::new();
    for s in items.iter().filter(|s| s.state != SandboxState::Destroyed) {
        *counts.entry((s.state, s.provider.clone())).or_default() += 1;
    }
    let ev = app.manager.events().stats();
    let snapshot = obs::ScrapeSnapshot {
        version: VERSION.to_string(),
        uptime: app.manager.uptime(),
        process: Some(obs::ProcessStats::collect()),
        sandboxes: counts
            .into_iter()
            .map(|((state, provider), count)| obs::SandboxCount {
                state,
                provider,
                count,
            })
            .collect(),
        providers: app.manager.provider_health(),
        events: obs::EventStats {
            subscribers: ev.subscribers as u64,
            history_size: ev.history_size as u64,
            events_total: ev.events_total,
        },
        operations: app.manager.metrics().snapshot(),
        sandbox_resources: app.manager.sandbox_resources(),
        destroys: app.manager.destroy_stats(),
    };
    match obs::prometheus::render(snapshot) {
        Ok(text) => (
            [(header::CONTENT_TYPE, obs::prometheus::CONTENT_TYPE)],
            text,
        )
            .into_response(),
        Err(e) => super::error::ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("cannot render metrics: {e}"),
        )
        .into_response(),
    }
}

/// Redacted support bundle: everything an operator needs to debug, nothing
/// secret.
pub async fn diagnostics(State(app): State<AppState>) -> Json<Value> {
    let l = app.manager.limits();
    Json(json!({
        "generated_at": chrono::Utc::now(),
        "build": {
            "version": VERSION,
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
            "git_commit": option_env!("STACYVM_GIT_COMMIT"),
        },
        "process": obs::ProcessStats::collect(),
        "uptime": uptime(&app),
        "store": store_health(&app).await,
        "limits": {
            "max_sandboxes": l.max_sandboxes,
            "max_sandboxes_per_owner": l.max_sandboxes_per_owner,
            "default_exec_timeout": l.default_exec_timeout,
            "max_exec_timeout": l.max_exec_timeout,
            "max_ttl": l.max_ttl,
            "default_ttl": l.default_ttl,
            "max_memory_mb": l.max_memory_mb,
            "max_vcpus": l.max_vcpus,
        },
        "auth": {"enabled": app.auth.enabled},
        "providers": app.manager.provider_health(),
        "sandboxes": sandbox_counts(&app).await,
        "events": app.manager.events().stats(),
        "operations": app.manager.metrics().snapshot(),
        "redactions": ["provider secrets", "registry credentials", "environment secrets", "API keys"],
    }))
}

pub async fn pool_status() -> Json<Value> {
    Json(json!({"enabled": false}))
}

/// Quotas are not configurable yet: an honest empty summary keeps SDK
/// callers working.
pub async fn quota_summary() -> Json<Value> {
    Json(
        json!({"total": 0, "with_max_sandboxes": 0, "with_max_ttl": 0, "with_max_exec_timeout": 0}),
    )
}
