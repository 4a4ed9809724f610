//! `/sandboxes/{id}/pause`, `/resume` and `/hibernate`.

use axum::Json;
use axum::extract::State;
use stacyvm_core::Sandbox;

use super::AppState;
use super::error::ApiResult;
use super::extract::ApiPath;
use super::model::errors::{BadRequest, Conflict, NotFound, NotImplemented, Unavailable};
use crate::manager::parse_sandbox_id;

/// Freezes a sandbox in memory: its processes, memory, open files and
/// sockets are kept, and it uses no CPU until resumed. Pausing a paused
/// sandbox returns it unchanged.
#[utoipa::path(
    post,
    path = "/sandboxes/{id}/pause",
    tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id")),
    responses(
        (status = 200, description = "The sandbox, `paused`", body = Sandbox),
        BadRequest, NotFound, Conflict, NotImplemented, Unavailable,
    ),
)]
pub async fn pause(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Sandbox>> {
    let id = parse_sandbox_id(&id)?;
    Ok(Json(app.manager.pause(&id).await?))
}

/// Thaws a paused sandbox exactly as it was. Resuming a running sandbox
/// returns it unchanged.
#[utoipa::path(
    post,
    path = "/sandboxes/{id}/resume",
    tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id")),
    responses(
        (status = 200, description = "The sandbox, `running`", body = Sandbox),
        BadRequest, NotFound, Conflict, NotImplemented, Unavailable,
    ),
)]
pub async fn resume(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Sandbox>> {
    let id = parse_sandbox_id(&id)?;
    Ok(Json(app.manager.resume(&id).await?))
}

/// Checkpoints a sandbox to disk (CRIU). No provider can on the hosts
/// StacyVM supports today: the answer is 501 `not_implemented` saying why
/// (the provider's health detail says the same); pause keeps the sandbox in
/// memory instead.
#[utoipa::path(
    post,
    path = "/sandboxes/{id}/hibernate",
    tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id")),
    responses(
        (status = 200, description = "The sandbox, hibernated", body = Sandbox),
        BadRequest, NotFound, NotImplemented,
    ),
)]
pub async fn hibernate(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Sandbox>> {
    let id = parse_sandbox_id(&id)?;
    Ok(Json(app.manager.hibernate(&id).await?))
}
