//! `/providers`: cached health detail, per-provider detail, forced checks.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use stacyvm_core::ProviderHealth;
use stacyvm_store::SandboxFilter;

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::ApiPath;
use super::model::ProviderDetail;
use super::model::errors::{BadRequest, NotFound};

/// Health of every provider, from the background prober's cache.
#[utoipa::path(
    get,
    path = "/providers",
    tag = "providers",
    responses((status = 200, description = "Health objects, in preference order", body = Vec<ProviderHealth>)),
)]
pub async fn list(State(app): State<AppState>) -> Json<Vec<ProviderHealth>> {
    Json(app.manager.provider_health())
}

/// One provider: health, sandbox count and non-secret settings.
#[utoipa::path(
    get,
    path = "/providers/{name}",
    tag = "providers",
    params(("name" = String, Path, description = "Provider name")),
    responses(
        (status = 200, description = "The provider", body = ProviderDetail),
        BadRequest, NotFound,
    ),
)]
pub async fn get(
    State(app): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<ProviderDetail>> {
    let provider = app
        .manager
        .provider(&name)
        .map_err(|_| ApiError::not_found(format!("provider {name} not found")))?;
    let health = app.manager.provider_health_of(&name);
    let filter = SandboxFilter {
        provider: Some(name.clone()),
        ..SandboxFilter::default()
    };
    let sandbox_count = app.manager.count_sandboxes(&filter).await?.total();
    Ok(Json(ProviderDetail {
        healthy: health.as_ref().is_some_and(|h| h.healthy),
        default: app.manager.default_provider() == name,
        sandbox_count,
        health,
        config: provider.config_summary(),
        name,
    }))
}

/// Forces a fresh check of every provider.
#[utoipa::path(
    post,
    path = "/providers/test",
    tag = "providers",
    responses((status = 200, description = "Provider name → healthy", body = BTreeMap<String, bool>)),
)]
pub async fn test(State(app): State<AppState>) -> Json<BTreeMap<String, bool>> {
    let fresh = app.manager.refresh_health().await;
    Json(fresh.into_iter().map(|h| (h.name, h.healthy)).collect())
}
