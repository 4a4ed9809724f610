//! `/nodes`: the cluster's node registry (cluster mode only; a single
//! host answers 404 `not_found`).

use axum::Json;
use axum::extract::State;
use stacyvm_core::Node;

use super::AppState;
use super::error::ApiResult;
use super::extract::ApiPath;
use super::model::errors::{Conflict, NotFound};

/// Every node of the cluster, ordered by id: state, version, providers,
/// capacity, sandboxes and last heartbeat.
#[utoipa::path(
    get,
    path = "/nodes",
    tag = "nodes",
    responses(
        (status = 200, description = "The nodes", body = Vec<Node>),
        NotFound,
    ),
)]
pub async fn list(State(app): State<AppState>) -> ApiResult<Json<Vec<Node>>> {
    Ok(Json(app.manager.nodes().await?))
}

/// One node.
#[utoipa::path(
    get,
    path = "/nodes/{id}",
    tag = "nodes",
    params(("id" = String, Path, description = "Node id")),
    responses((status = 200, description = "The node", body = Node), NotFound),
)]
pub async fn get(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Node>> {
    Ok(Json(app.manager.node(&id).await?))
}

/// Stops placement on a node (`ready` → `draining`); its sandboxes keep
/// running and being served. Draining a draining node is a no-op.
#[utoipa::path(
    post,
    path = "/nodes/{id}/drain",
    tag = "nodes",
    params(("id" = String, Path, description = "Node id")),
    responses(
        (status = 200, description = "The node, now draining", body = Node),
        NotFound, Conflict,
    ),
)]
pub async fn drain(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Node>> {
    Ok(Json(app.manager.drain_node(&id).await?))
}
