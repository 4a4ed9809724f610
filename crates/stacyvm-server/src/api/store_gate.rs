//! While the store is away, requests that need it get 503 `not_ready`
//! at once (with `Retry-After`), instead of each waiting for the pool's
//! connect timeout. Probes, metrics, diagnostics and the event stream stay
//! open: they say what is wrong.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};

/// The routes that read or write the store.
const GATED: &[&str] = &["/api/v1/sandboxes", "/api/v1/templates", "/api/v1/nodes"];

/// The error of a request refused because the store is away.
pub(crate) fn not_ready() -> ApiError {
    ApiError {
        retry_after: Some(Duration::from_secs(1)),
        ..ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the store is unavailable; retry shortly",
        )
    }
}

pub(super) async fn require_store(
    State(app): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    let gated = GATED
        .iter()
        .any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')));
    if gated && !app.manager.store_ready() {
        return not_ready().into_response();
    }
    next.run(req).await
}
