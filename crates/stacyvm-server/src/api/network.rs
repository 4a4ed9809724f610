//! `/sandboxes/{id}/network`: the egress policy of a sandbox.

use axum::Json;
use axum::extract::State;
use stacyvm_core::NetworkPolicy;

use super::AppState;
use super::error::ApiResult;
use super::extract::{ApiJson, ApiPath};
use super::model::errors::{BadRequest, Conflict, NotFound};
use crate::manager::parse_sandbox_id;

/// The egress policy the sandbox runs under, as its provider enforces it.
#[utoipa::path(
    get,
    path = "/sandboxes/{id}/network",
    operation_id = "get_network",
    tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id")),
    responses(
        (status = 200, description = "The policy", body = NetworkPolicy),
        BadRequest, NotFound,
    ),
)]
pub async fn get(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<NetworkPolicy>> {
    let id = parse_sandbox_id(&id)?;
    Ok(Json(app.manager.network(&id).await?))
}

/// Changes the egress policy of a running sandbox: in force for new
/// connections and DNS at once, and open connections it no longer allows
/// are cut. Only the entries of mode `allow` can change; the mode stays.
#[utoipa::path(
    put,
    path = "/sandboxes/{id}/network",
    operation_id = "set_network",
    tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id")),
    request_body(content = NetworkPolicy, description = "The new policy"),
    responses(
        (status = 200, description = "The policy now in force", body = NetworkPolicy),
        BadRequest, NotFound, Conflict,
    ),
)]
pub async fn put(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(policy): ApiJson<NetworkPolicy>,
) -> ApiResult<Json<NetworkPolicy>> {
    let id = parse_sandbox_id(&id)?;
    Ok(Json(app.manager.set_network(&id, &policy).await?))
}
