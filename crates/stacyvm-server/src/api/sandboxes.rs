//! `/sandboxes`: spawn, list, get, destroy, extend, prune, admission, logs.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;
use stacyvm_core::{OwnerId, Sandbox, SandboxState};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiQuery, HeaderOwner};
use crate::manager::{ExtendRequest, SpawnRequest, parse_sandbox_id};

pub async fn spawn(
    State(app): State<AppState>,
    HeaderOwner(owner): HeaderOwner,
    ApiJson(req): ApiJson<SpawnRequest>,
) -> ApiResult<impl IntoResponse> {
    let sb = app.manager.spawn(&req, owner.as_ref()).await?;
    Ok((StatusCode::CREATED, Json(sb)))
}

pub async fn admission(
    State(app): State<AppState>,
    HeaderOwner(owner): HeaderOwner,
    ApiJson(req): ApiJson<SpawnRequest>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(app.manager.admission(&req, owner.as_ref()).await?))
}

/// Optional list filters (additions to the contract).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    state: Option<String>,
    provider: Option<String>,
    owner_id: Option<String>,
}

pub async fn list(
    State(app): State<AppState>,
    HeaderOwner(header_owner): HeaderOwner,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Vec<Sandbox>>> {
    let owner = match header_owner {
        Some(o) => Some(o),
        None => OwnerId::parse(q.owner_id.as_deref().unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("invalid owner_id: {e}")))?,
    };
    let state: Option<SandboxState> = match q.state.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(s.parse().map_err(ApiError::bad_request)?),
        None => None,
    };
    let mut items = app.manager.list(owner.as_ref()).await?;
    items.retain(|s| {
        s.state != SandboxState::Destroyed
            && state.is_none_or(|st| s.state == st)
            && q.provider
                .as_deref()
                .filter(|p| !p.is_empty())
                .is_none_or(|p| s.provider == p)
    });
    Ok(Json(items))
}

pub async fn get(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let id = parse_sandbox_id(&id)?;
    let sb = app.manager.get(&id).await?;
    if sb.state == SandboxState::Destroyed {
        return Err(ApiError::not_found(format!(
            "sandbox {id} not found (destroyed)"
        )));
    }
    let mut v = serde_json::to_value(&sb).map_err(|e| ApiError::bad_request(e.to_string()))?;
    // Latest figures from the background prober, where the provider has them.
    if let Some(r) = app
        .manager
        .sandbox_resources()
        .into_iter()
        .find(|r| r.sandbox == id.as_str())
    {
        v["resource_usage"] =
            json!({"cpu_seconds": r.cpu_seconds, "memory_bytes": r.memory_bytes, "pids": r.pids});
    }
    Ok(Json(v))
}

pub async fn destroy(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let id = parse_sandbox_id(&id)?;
    app.manager.destroy(&id).await?;
    Ok(Json(json!({"status": "destroyed"})))
}

pub async fn prune(State(app): State<AppState>) -> ApiResult<impl IntoResponse> {
    let pruned = app.manager.prune().await?;
    Ok(Json(json!({"pruned": pruned})))
}

pub async fn extend(
    State(app): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ExtendRequest>,
) -> ApiResult<Json<Sandbox>> {
    let id = parse_sandbox_id(&id)?;
    Ok(Json(app.manager.extend(&id, req.ttl).await?))
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct LogsQuery {
    lines: usize,
}

impl Default for LogsQuery {
    fn default() -> Self {
        LogsQuery { lines: 100 }
    }
}

pub async fn logs(
    State(app): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> ApiResult<Json<Vec<String>>> {
    let id = parse_sandbox_id(&id)?;
    let lines = q.lines.clamp(1, 10_000);
    Ok(Json(app.manager.logs(&id, lines).await?))
}
