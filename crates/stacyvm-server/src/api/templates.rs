//! `/templates`: CRUD and spawn-from-template.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use stacyvm_core::{Sandbox, Template};

use super::AppState;
use super::error::ApiResult;
use super::extract::{ApiJson, ApiPath, HeaderOwner};
use super::model::errors::{
    BadGateway, BadRequest, Conflict, NotFound, ResourceLimit, Unavailable,
};
use super::model::{OwnerHeader, StatusResponse, TemplateRequest, TemplateSpawnRequest};

/// Creates a template.
#[utoipa::path(
    post,
    path = "/templates",
    tag = "templates",
    request_body = TemplateRequest,
    responses(
        (status = 201, description = "The template", body = Template),
        BadRequest, Conflict, ResourceLimit,
    ),
)]
pub async fn create(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<TemplateRequest>,
) -> ApiResult<(StatusCode, Json<Template>)> {
    let t = app.manager.create_template(req).await?;
    Ok((StatusCode::CREATED, Json(t)))
}

/// Every template, by name.
#[utoipa::path(
    get,
    path = "/templates",
    tag = "templates",
    responses((status = 200, description = "Templates by name", body = Vec<Template>)),
)]
pub async fn list(State(app): State<AppState>) -> ApiResult<Json<Vec<Template>>> {
    Ok(Json(app.manager.list_templates().await?))
}

/// One template.
#[utoipa::path(
    get,
    path = "/templates/{name}",
    tag = "templates",
    params(("name" = String, Path, description = "Template name")),
    responses(
        (status = 200, description = "The template", body = Template),
        BadRequest, NotFound,
    ),
)]
pub async fn get(
    State(app): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Template>> {
    Ok(Json(app.manager.get_template(&name).await?))
}

/// Replaces a template (the name in the path wins over the body's).
#[utoipa::path(
    put,
    path = "/templates/{name}",
    tag = "templates",
    params(("name" = String, Path, description = "Template name")),
    request_body = TemplateRequest,
    responses(
        (status = 200, description = "The template", body = Template),
        BadRequest, NotFound, ResourceLimit,
    ),
)]
pub async fn update(
    State(app): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<TemplateRequest>,
) -> ApiResult<Json<Template>> {
    Ok(Json(app.manager.update_template(&name, req).await?))
}

/// Deletes a template.
#[utoipa::path(
    delete,
    path = "/templates/{name}",
    tag = "templates",
    params(("name" = String, Path, description = "Template name")),
    responses(
        (status = 200, description = "`{\"status\":\"deleted\"}`", body = StatusResponse),
        BadRequest, NotFound,
    ),
)]
pub async fn delete(
    State(app): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<StatusResponse>> {
    app.manager.delete_template(&name).await?;
    Ok(Json(StatusResponse::new("deleted")))
}

/// Spawns a sandbox from a template, with optional overrides.
#[utoipa::path(
    post,
    path = "/templates/{name}/spawn",
    tag = "templates",
    params(("name" = String, Path, description = "Template name"), OwnerHeader),
    request_body(content = Option<TemplateSpawnRequest>),
    responses(
        (status = 201, description = "The sandbox, running", body = Sandbox),
        BadRequest, NotFound, ResourceLimit, BadGateway, Unavailable,
    ),
)]
pub async fn spawn(
    State(app): State<AppState>,
    ApiPath(name): ApiPath<String>,
    HeaderOwner(owner): HeaderOwner,
    ApiJson(req): ApiJson<TemplateSpawnRequest>,
) -> ApiResult<(StatusCode, Json<Sandbox>)> {
    let sb = app
        .manager
        .spawn_template(&name, req, owner.as_ref())
        .await?;
    Ok((StatusCode::CREATED, Json(sb)))
}
