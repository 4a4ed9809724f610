//! The HTTP API v1 (`/api/v1/...`): routes, middleware and the server loop.
//! Every handler is a thin shell: parse, call one `Manager` method, render.
//! Routes are registered once, through `utoipa_axum`, so the router and the
//! OpenAPI document (`openapi`) are built from the same list.

mod auth;
pub mod e2b;
mod error;
mod events;
mod exec;
mod extract;
mod files;
mod keys;
mod listen;
pub mod model;
mod network;
mod nodes;
mod openapi;
mod owner;
mod pause;
mod providers;
mod sandboxes;
mod store_gate;
mod system;
mod templates;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::AuthSettings;
pub use error::{ApiError, ApiResult};
pub use listen::{ServeOptions, serve};
pub use openapi::{openapi, openapi_json};

use crate::manager::Manager;

/// Shared state of every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    pub manager: Manager,
    pub auth: Arc<AuthSettings>,
    /// Stored API keys (verified by the auth middleware, managed by `/keys`).
    pub keys: crate::keys::Keyring,
    /// Cluster forwarding (a node with `cluster.secret`); `None` otherwise.
    pub forwarder: Option<Arc<crate::cluster::forward::Forwarder>>,
}

/// HTTP settings of the router.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub max_body_bytes: u64,
    /// Longest silence while a request body is read (408 after it).
    pub body_timeout: Duration,
    pub cors_origins: Vec<String>,
}

/// Every API v1 route, each with its OpenAPI description. New surfaces
/// add their routes here (or merge an `OpenApiRouter` of their own).
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sandboxes::spawn, sandboxes::list, sandboxes::prune))
        .routes(routes!(sandboxes::admission))
        .routes(routes!(sandboxes::get, sandboxes::destroy))
        .routes(routes!(sandboxes::extend))
        .routes(routes!(pause::pause))
        .routes(routes!(pause::resume))
        .routes(routes!(pause::hibernate))
        .routes(routes!(sandboxes::logs))
        .routes(routes!(network::get, network::put))
        .routes(routes!(exec::exec))
        .routes(routes!(exec::exec_ws))
        .routes(routes!(
            files::write_json,
            files::write_raw,
            files::read,
            files::delete
        ))
        .routes(routes!(files::list))
        .routes(routes!(files::stat))
        .routes(routes!(files::move_file))
        .routes(routes!(files::chmod))
        .routes(routes!(files::glob))
        .routes(routes!(templates::create, templates::list))
        .routes(routes!(
            templates::get,
            templates::update,
            templates::delete
        ))
        .routes(routes!(templates::spawn))
        .routes(routes!(providers::list))
        .routes(routes!(providers::test))
        .routes(routes!(providers::get))
        .routes(routes!(keys::create, keys::list))
        .routes(routes!(keys::get, keys::revoke))
        .routes(routes!(nodes::list))
        .routes(routes!(nodes::get))
        .routes(routes!(nodes::drain))
        .routes(routes!(system::health))
        .routes(routes!(system::live))
        .routes(routes!(system::ready))
        .routes(routes!(system::metrics))
        .routes(routes!(system::prometheus))
        .routes(routes!(system::diagnostics))
        .routes(routes!(events::stream))
        .routes(routes!(system::pool_status))
        .routes(routes!(system::quota_summary))
        .routes(routes!(openapi::document))
}

/// The API router (under `/api/v1`) with its middleware.
pub fn router(state: AppState, http: &HttpOptions) -> Router {
    router_with(state, http, Router::new())
}

/// [`router`] with `extra` routes (the E2B surface) merged at the root,
/// under the same middleware.
pub fn router_with(state: AppState, http: &HttpOptions, extra: Router<AppState>) -> Router {
    let (api, _) = routes().split_for_parts();
    let api = api
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);

    let request_id = HeaderName::from_static("x-request-id");
    let max_body = http.max_body_bytes;
    let body_timeout = http.body_timeout;
    Router::new()
        .nest("/api/v1", api)
        .merge(crate::web::router())
        .merge(extra)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::cluster::forward::forward,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            owner::own_sandboxes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            store_gate::require_store,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_key))
        .layer(DefaultBodyLimit::max(usize::try_from(max_body).unwrap_or(usize::MAX)))
        .layer(axum::middleware::from_fn(move |req, next| {
            extract::guard_body(max_body, body_timeout, req, next)
        }))
        .layer(cors(&http.cors_origins))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("route {} not found", uri.path()))
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("method {method} is not allowed on {}", uri.path()),
    )
}

fn cors(origins: &[String]) -> CorsLayer {
    if origins.is_empty() {
        return CorsLayer::new();
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            HeaderName::from_static("content-type"),
            HeaderName::from_static("x-api-key"),
            HeaderName::from_static("x-user-id"),
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([HeaderName::from_static("x-request-id")])
        .max_age(Duration::from_secs(600))
}
