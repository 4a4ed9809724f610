//! Who is calling: API-key authentication (`X-API-Key`, `X-Admin-API-Key`
//! or `Authorization: Bearer`) and the [`Principal`] every handler runs as.
//!
//! Keys are the configured `auth.api_key` and `auth.admin_api_key` (both
//! admin keys, compared in constant time) or keys kept in the store
//! ([`crate::keys::Keyring`]). With a stored `user` or `read` key the owner
//! comes from the key: the middleware replaces any `X-User-ID` the client
//! sent, so every route acts for the key's owner only. An admin key acts
//! for the owner named by `X-User-ID`, if any.
//!
//! Probes (`/live`, `/health`, `/ready`) and the dashboard's static files
//! stay open. Browsers cannot set headers on WebSocket and EventSource
//! requests, so those two routes also take `?api_key=`.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use stacyvm_core::KeyScope;
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;
use crate::keys::Principal;

/// Auth settings; the keys never appear in Debug output.
#[derive(Clone, Default)]
pub struct AuthSettings {
    pub enabled: bool,
    pub api_key: String,
    pub admin_api_key: String,
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

/// The key a request presents: `X-API-Key`, else `X-Admin-API-Key`, else
/// `Authorization: Bearer` (Prometheus cannot send custom headers), else
/// `?api_key=` on the two browser routes.
fn presented_key(req: &Request) -> Option<String> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    header("x-api-key")
        .or_else(|| header("x-admin-api-key"))
        .map(str::to_string)
        .or_else(|| {
            header("authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(|v| v.trim().to_string())
        })
        .or_else(|| query_key(req))
}

/// Whether `presented` equals a configured key (constant time; an unset
/// key matches nothing).
fn is_configured(presented: &str, configured: &str) -> bool {
    !configured.is_empty() && bool::from(presented.as_bytes().ct_eq(configured.as_bytes()))
}

/// Routes only an admin key may call.
fn admin_only(method: &Method, path: &str) -> bool {
    let rest = path.strip_prefix("/api/v1").unwrap_or(path);
    rest == "/keys"
        || rest.starts_with("/keys/")
        || rest.starts_with("/nodes")
        || rest == "/quotas"
        || (rest.starts_with("/quotas/") && *method != Method::GET)
}

/// Operator views, which only an admin or read key may call: they count
/// every owner's sandboxes.
fn operator_view(path: &str) -> bool {
    let rest = path.strip_prefix("/api/v1").unwrap_or(path);
    rest.starts_with("/metrics") || rest == "/diagnostics"
}

/// What `principal` may not do on `method path`, if anything.
fn refusal(principal: &Principal, method: &Method, path: &str) -> Option<ApiError> {
    let forbidden = |m: &str| Some(ApiError::forbidden(m.to_string()));
    match principal.scope {
        KeyScope::Admin => None,
        _ if admin_only(method, path) => forbidden("this route needs an admin key"),
        KeyScope::Read => {
            let reads = matches!(*method, Method::GET | Method::HEAD)
                && !path.ends_with("/exec/ws")
                && !path.contains("/files");
            if reads {
                None
            } else {
                forbidden("a read key may only get and list")
            }
        }
        KeyScope::User if operator_view(path) => forbidden("this route needs an admin or read key"),
        KeyScope::User => None,
    }
}

/// The principal `presented` stands for: a configured key (admin), else a
/// stored key; 401 for an unknown key, 503 when the store cannot answer.
/// Shared with the E2B surface, which reads its own headers.
pub(crate) async fn principal(
    app: &AppState,
    presented: &str,
    path: &str,
) -> Result<Principal, ApiError> {
    let configured = is_configured(presented, &app.auth.api_key)
        || is_configured(presented, &app.auth.admin_api_key);
    if configured {
        return Ok(Principal {
            owner: None,
            scope: KeyScope::Admin,
            key_id: None,
        });
    }
    match app.keys.verify(presented).await {
        Ok(Some(p)) => Ok(p),
        Ok(None) => {
            tracing::warn!(path, "rejected request with a wrong API key");
            Err(ApiError::unauthorized("invalid API key"))
        }
        Err(e) => {
            tracing::error!(error = %e, "verifying an api key failed");
            Err(super::store_gate::not_ready())
        }
    }
}

pub async fn require_key(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if !app.auth.enabled || !path.starts_with("/api/") || OPEN_PATHS.contains(&path.as_str()) {
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
    let Some(presented) = presented_key(&req) else {
        return ApiError::unauthorized("missing API key (send the X-API-Key header)")
            .into_response();
    };
    let principal = match principal(&app, &presented, &path).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if let Some(err) = refusal(&principal, req.method(), &path) {
        return err.into_response();
    }
    if principal.scope != KeyScope::Admin
        && let Some(owner) = &principal.owner
    {
        // The key's owner, whatever the client claimed: every handler that
        // reads X-User-ID now acts for this owner only.
        match HeaderValue::from_str(owner.as_str()) {
            Ok(v) => {
                req.headers_mut().insert("x-user-id", v);
            }
            Err(_) => return ApiError::unauthorized("invalid API key").into_response(),
        }
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(scope: KeyScope) -> Principal {
        Principal {
            owner: None,
            scope,
            key_id: None,
        }
    }

    #[test]
    fn scopes_gate_routes() {
        let user = p(KeyScope::User);
        let read = p(KeyScope::Read);
        let admin = p(KeyScope::Admin);
        assert!(refusal(&user, &Method::POST, "/api/v1/sandboxes").is_none());
        assert!(refusal(&user, &Method::GET, "/api/v1/keys").is_some());
        assert!(refusal(&user, &Method::PUT, "/api/v1/quotas/alice").is_some());
        assert!(refusal(&user, &Method::GET, "/api/v1/metrics").is_some());
        assert!(refusal(&user, &Method::GET, "/api/v1/diagnostics").is_some());
        assert!(refusal(&read, &Method::GET, "/api/v1/metrics").is_none());
        assert!(refusal(&read, &Method::GET, "/api/v1/sandboxes").is_none());
        assert!(refusal(&read, &Method::POST, "/api/v1/sandboxes").is_some());
        assert!(refusal(&read, &Method::GET, "/api/v1/sandboxes/sb-1/files").is_some());
        assert!(refusal(&read, &Method::GET, "/api/v1/sandboxes/sb-1/exec/ws").is_some());
        assert!(refusal(&admin, &Method::POST, "/api/v1/keys").is_none());
    }
}
