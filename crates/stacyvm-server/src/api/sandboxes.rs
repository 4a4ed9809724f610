//! `/sandboxes`: spawn, list, get, destroy, extend, prune, admission, logs.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use stacyvm_core::{OwnerId, Sandbox, SandboxState};
use stacyvm_store::SandboxFilter;

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, ApiQuery, HeaderOwner};
use super::model::errors::{
    BadGateway, BadRequest, Conflict, NotFound, ResourceLimit, Unavailable,
};
use super::model::{
    AdmissionDecision, ExtendRequest, ListSandboxesQuery, LogsQuery, OwnerHeader, PruneResponse,
    ResourceUsage, SandboxDetail, SpawnRequest, StatusResponse,
};
use super::owner::Viewer;
use crate::manager::parse_sandbox_id;

/// Creates a sandbox and waits until it can run commands.
#[utoipa::path(
    post,
    path = "/sandboxes",
    tag = "sandboxes",
    params(OwnerHeader),
    request_body(content = Option<SpawnRequest>, description = "Every field optional; server and template defaults apply"),
    responses(
        (status = 201, description = "The sandbox, running", body = Sandbox),
        BadRequest, NotFound, ResourceLimit, BadGateway, Unavailable,
    ),
)]
pub async fn spawn(
    State(app): State<AppState>,
    HeaderOwner(owner): HeaderOwner,
    ApiJson(req): ApiJson<SpawnRequest>,
) -> ApiResult<(StatusCode, Json<Sandbox>)> {
    let sb = app.manager.spawn(&req, owner.as_ref()).await?;
    Ok((StatusCode::CREATED, Json(sb)))
}

/// Decides whether a spawn would be admitted now, without creating anything.
#[utoipa::path(
    post,
    path = "/sandboxes/admission",
    tag = "sandboxes",
    params(OwnerHeader),
    request_body(content = Option<SpawnRequest>, description = "The body a spawn would send"),
    responses(
        (status = 200, description = "The decision", body = AdmissionDecision),
        BadRequest, NotFound,
    ),
)]
pub async fn admission(
    State(app): State<AppState>,
    HeaderOwner(owner): HeaderOwner,
    ApiJson(req): ApiJson<SpawnRequest>,
) -> ApiResult<Json<AdmissionDecision>> {
    Ok(Json(app.manager.admission(&req, owner.as_ref()).await?))
}

/// Sandboxes that are not destroyed, oldest first.
#[utoipa::path(
    get,
    path = "/sandboxes",
    tag = "sandboxes",
    params(OwnerHeader, ListSandboxesQuery),
    responses(
        (status = 200, description = "Sandboxes, oldest first", body = Vec<Sandbox>),
        BadRequest,
    ),
)]
pub async fn list(
    State(app): State<AppState>,
    HeaderOwner(header_owner): HeaderOwner,
    ApiQuery(q): ApiQuery<ListSandboxesQuery>,
) -> ApiResult<Json<Vec<Sandbox>>> {
    let owner = match header_owner {
        Some(o) => Some(o),
        None => OwnerId::parse(q.owner_id.as_deref().unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("invalid owner_id: {e}")))?,
    };
    let state = match q.state.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(s.parse().map_err(ApiError::bad_request)?),
        None => None,
    };
    let filter = SandboxFilter {
        owner,
        state,
        provider: q.provider.filter(|p| !p.is_empty()),
        ..SandboxFilter::default()
    };
    Ok(Json(app.manager.list_filtered(&filter).await?))
}

/// One sandbox, with its latest resource figures where measured.
#[utoipa::path(
    get,
    path = "/sandboxes/{id}",
    tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id")),
    responses(
        (status = 200, description = "The sandbox", body = SandboxDetail),
        BadRequest, NotFound,
    ),
)]
pub async fn get(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<SandboxDetail>> {
    let id = parse_sandbox_id(&id)?;
    let sandbox = app.manager.get(&id).await?;
    if sandbox.state == SandboxState::Destroyed {
        return Err(ApiError::not_found(format!(
            "sandbox {id} not found (destroyed)"
        )));
    }
    let resource_usage = app
        .manager
        .sandbox_resources()
        .into_iter()
        .find(|r| r.sandbox == id.as_str())
        .map(|r| ResourceUsage {
            cpu_seconds: r.cpu_seconds,
            memory_bytes: r.memory_bytes,
            pids: r.pids,
        });
    Ok(Json(SandboxDetail {
        sandbox,
        resource_usage,
    }))
}

/// Destroys a sandbox.
#[utoipa::path(
    delete,
    path = "/sandboxes/{id}",
    tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id")),
    responses(
        (status = 200, description = "`{\"status\":\"destroyed\"}`", body = StatusResponse),
        BadRequest, NotFound, Unavailable,
    ),
)]
pub async fn destroy(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<StatusResponse>> {
    let id = parse_sandbox_id(&id)?;
    app.manager.destroy(&id).await?;
    Ok(Json(StatusResponse::new("destroyed")))
}

/// Expires and destroys every sandbox past its expiry (with a `user` key,
/// only the owner's).
#[utoipa::path(
    delete,
    path = "/sandboxes",
    tag = "sandboxes",
    responses((status = 200, description = "How many were pruned", body = PruneResponse)),
)]
pub async fn prune(State(app): State<AppState>, viewer: Viewer) -> ApiResult<Json<PruneResponse>> {
    let pruned = match &viewer.0 {
        Some(owner) => app.manager.prune_owner(owner).await?,
        None => app.manager.prune().await?,
    };
    Ok(Json(PruneResponse {
        pruned: pruned as u64,
    }))
}

/// Sets a new expiry of now + ttl, capped by the maximum TTL.
#[utoipa::path(
    post,
    path = "/sandboxes/{id}/extend",
    tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id")),
    request_body(content = Option<ExtendRequest>),
    responses(
        (status = 200, description = "The sandbox with its new expiry", body = Sandbox),
        BadRequest, NotFound, Conflict, ResourceLimit,
    ),
)]
pub async fn extend(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<ExtendRequest>,
) -> ApiResult<Json<Sandbox>> {
    let id = parse_sandbox_id(&id)?;
    Ok(Json(app.manager.extend(&id, req.ttl).await?))
}

/// The last lines of the sandbox's console log.
#[utoipa::path(
    get,
    path = "/sandboxes/{id}/logs",
    tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id"), LogsQuery),
    responses(
        (status = 200, description = "Log lines, oldest first", body = Vec<String>),
        BadRequest, NotFound, Conflict, Unavailable,
    ),
)]
pub async fn logs(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> ApiResult<Json<Vec<String>>> {
    let id = parse_sandbox_id(&id)?;
    let lines = q.lines.clamp(1, 10_000);
    Ok(Json(app.manager.logs(&id, lines).await?))
}
