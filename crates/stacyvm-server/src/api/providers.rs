//! `/providers`: cached health detail, per-provider detail, forced checks.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use serde_json::json;
use stacyvm_core::{ProviderHealth, SandboxState};

use super::AppState;
use super::error::{ApiError, ApiResult};

pub async fn list(State(app): State<AppState>) -> Json<Vec<ProviderHealth>> {
    Json(app.manager.provider_health())
}

pub async fn get(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let provider = app
        .manager
        .provider(&name)
        .map_err(|_| ApiError::not_found(format!("provider {name} not found")))?;
    let health = app.manager.provider_health_of(&name);
    let sandbox_count = app
        .manager
        .list(None)
        .await?
        .iter()
        .filter(|s| s.provider == name && s.state != SandboxState::Destroyed)
        .count();
    Ok(Json(json!({
        "name": name,
        "healthy": health.as_ref().is_some_and(|h| h.healthy),
        "default": app.manager.default_provider() == name,
        "sandbox_count": sandbox_count,
        "health": health,
        "config": provider.config_summary(),
    })))
}

/// Forces a fresh check of every provider.
pub async fn test(State(app): State<AppState>) -> Json<BTreeMap<String, bool>> {
    let fresh = app.manager.refresh_health().await;
    Json(fresh.into_iter().map(|h| (h.name, h.healthy)).collect())
}
