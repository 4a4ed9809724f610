//! `/templates`: CRUD and spawn-from-template.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;
use stacyvm_core::Template;

use super::AppState;
use super::error::ApiResult;
use super::extract::{ApiJson, HeaderOwner};
use crate::manager::{TemplateRequest, TemplateSpawnRequest};

pub async fn create(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<TemplateRequest>,
) -> ApiResult<impl IntoResponse> {
    let t = app.manager.create_template(req).await?;
    Ok((StatusCode::CREATED, Json(t)))
}

pub async fn list(State(app): State<AppState>) -> ApiResult<Json<Vec<Template>>> {
    Ok(Json(app.manager.list_templates().await?))
}

pub async fn get(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Template>> {
    Ok(Json(app.manager.get_template(&name).await?))
}

pub async fn update(
    State(app): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<TemplateRequest>,
) -> ApiResult<Json<Template>> {
    Ok(Json(app.manager.update_template(&name, req).await?))
}

pub async fn delete(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<impl IntoResponse> {
    app.manager.delete_template(&name).await?;
    Ok(Json(json!({"status": "deleted"})))
}

pub async fn spawn(
    State(app): State<AppState>,
    Path(name): Path<String>,
    HeaderOwner(owner): HeaderOwner,
    ApiJson(req): ApiJson<TemplateSpawnRequest>,
) -> ApiResult<impl IntoResponse> {
    let sb = app
        .manager
        .spawn_template(&name, req, owner.as_ref())
        .await?;
    Ok((StatusCode::CREATED, Json(sb)))
}
