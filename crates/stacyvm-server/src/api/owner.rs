//! Owner isolation: with a `user` or `read` key a request sees only its
//! owner's sandboxes. Routes about one sandbox (`/sandboxes/{id}/...`,
//! WebSocket included) are checked here, once, before any handler or the
//! cluster forwarding layer runs: another owner's sandbox answers exactly
//! as an unknown one (404 `not_found`), so its existence does not leak.
//! Listings, counts, metrics and the event stream take the [`Viewer`] and
//! filter in the store.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use stacyvm_core::{KeyScope, OwnerId, SandboxId};

use super::AppState;
use super::error::ApiError;
use crate::keys::Principal;

/// Whose sandboxes a request may see: `None` for every owner's (an admin
/// key, auth off, or a request another node signed after checking it).
#[derive(Debug, Clone, Default)]
pub struct Viewer(pub Option<OwnerId>);

impl Viewer {
    pub fn of(principal: Option<&Principal>) -> Result<Viewer, ApiError> {
        match principal {
            None => Ok(Viewer(None)),
            Some(p) if p.scope == KeyScope::Admin => Ok(Viewer(None)),
            Some(p) => match &p.owner {
                Some(o) => Ok(Viewer(Some(o.clone()))),
                // Stored keys always name an owner; refuse rather than
                // show everything.
                None => Err(ApiError::forbidden("this key has no owner")),
            },
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Viewer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Viewer::of(parts.extensions.get::<Principal>())
    }
}

/// The sandbox a path is about: the first segment after `/sandboxes/`,
/// percent-decoded as the router decodes it. `None` for the collection
/// routes (`/sandboxes`, `/sandboxes/admission`).
fn target(path: &str) -> Option<SandboxId> {
    let rest = path.strip_prefix("/api/v1/sandboxes/")?;
    let raw = rest.split('/').next()?;
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()?;
    // A segment that is not a sandbox id names nobody's sandbox; the
    // handler answers it (404, or the admission route).
    SandboxId::parse(&decoded)
}

pub async fn own_sandboxes(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let viewer = match Viewer::of(req.extensions().get::<Principal>()) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let Some(owner) = viewer.0 else {
        return next.run(req).await;
    };
    let Some(id) = target(req.uri().path()) else {
        return next.run(req).await;
    };
    match app.manager.owned_sandbox(&id, &owner).await {
        Ok(_) => next.run(req).await,
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_is_decoded_as_the_router_decodes_it() {
        let id = SandboxId::generate();
        let plain = format!("/api/v1/sandboxes/{id}/exec");
        assert_eq!(target(&plain), Some(id.clone()));
        let encoded: String = id.as_str().bytes().map(|b| format!("%{b:02X}")).collect();
        assert_eq!(
            target(&format!("/api/v1/sandboxes/{encoded}/files/list")),
            Some(id.clone())
        );
        assert_eq!(target(&format!("/api/v1/sandboxes/{id}")), Some(id));
        assert_eq!(target("/api/v1/sandboxes/admission"), None);
        assert_eq!(target("/api/v1/sandboxes"), None);
    }
}
