//! `/sandboxes/{id}/network`: the egress policy of a sandbox.

use axum::Json;
use axum::extract::State;
use stacyvm_core::NetworkPolicy;

use super::AppState;
use super::error::ApiResult;
use super::extract::ApiPath;
use super::model::errors::{BadRequest, NotFound};
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
