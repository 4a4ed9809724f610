//! Optional API-key authentication (`X-API-Key` or `Authorization: Bearer`,
//! constant-time compare).
//! Probes (`/live`, `/health`, `/ready`) and the dashboard's static files
//! stay open. Browsers cannot set headers on WebSocket and EventSource
//! requests, so those two routes also take `?api_key=`.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;

/// Auth settings; the key never appears in Debug output.
#[derive(Clone, Default)]
pub struct AuthSettings {
    pub enabled: bool,
    pub api_key: String,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

const OPEN_PATHS: [&str; 3] = ["/api/v1/live", "/api/v1/health", "/api/v1/ready"];

fn query_key(req: &Request) -> Option<String> {
    let path = req.uri().path();
    if !(path.ends_with("/exec/ws") || path == "/api/v1/events") {
        return None;
    }
    let q = req.uri().query()?;
    serde_urlencoded::from_str::<Vec<(String, String)>>(q)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == "api_key")
        .map(|(_, v)| v)
}

/// The key a request presents: `X-API-Key`, else `Authorization: Bearer`
/// (Prometheus cannot send custom headers), else `?api_key=` on the two
/// browser routes.
fn presented_key(req: &Request) -> Option<String> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    header("x-api-key")
        .map(str::to_string)
        .or_else(|| {
            header("authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(|v| v.trim().to_string())
        })
        .or_else(|| query_key(req))
}

pub async fn require_key(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if !app.auth.enabled || !path.starts_with("/api/") || OPEN_PATHS.contains(&path) {
        return next.run(req).await;
    }
    // A call another node signed with cluster.secret stands in for the
    // key; the forwarding layer (inside this one) verifies it or refuses.
    if req
        .headers()
        .contains_key(crate::cluster::forward::SIGNATURE)
    {
        return next.run(req).await;
    }
    let presented = presented_key(&req);
    let Some(presented) = presented else {
        return ApiError::unauthorized("missing API key (send the X-API-Key header)")
            .into_response();
    };
    let ok: bool = presented
        .as_bytes()
        .ct_eq(app.auth.api_key.as_bytes())
        .into();
    if !ok {
        tracing::warn!(path, "rejected request with a wrong API key");
        return ApiError::unauthorized("invalid API key").into_response();
    }
    next.run(req).await
}
