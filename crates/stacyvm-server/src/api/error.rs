//! The one place errors become HTTP responses: `{"code","message"}` with the
//! contract's status for each class of failure.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use stacyvm_core::ErrorChain;
use stacyvm_providers::ProviderError;
use stacyvm_store::StoreError;

use crate::manager::ManagerError;

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// Adds a `Retry-After` to the reply.
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    pub fn payload_too_large(limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body exceeds the limit of {limit} bytes"),
        )
    }

    /// A server-side failure: the detail goes to the log, the client gets
    /// a message without host paths or secrets.
    fn internal(
        code: &'static str,
        status: StatusCode,
        detail: &dyn std::fmt::Display,
        public: &str,
    ) -> Self {
        tracing::error!(error = %detail, "request failed");
        Self::new(status, code, public)
    }

    /// A failure the server cannot fix by itself (its backend or an
    /// upstream): the error's public message to the client, its whole
    /// chain, private causes included, to the log.
    fn logged(
        status: StatusCode,
        code: &'static str,
        e: &(dyn std::error::Error + 'static),
    ) -> Self {
        tracing::warn!(error = %ErrorChain(e), status = status.as_u16(), "request failed");
        Self::new(status, code, e.to_string())
    }
}

impl From<ProviderError> for ApiError {
    fn from(e: ProviderError) -> Self {
        use ProviderError as P;
        match &e {
            P::NotFound(_) | P::Destroyed(_) => ApiError::not_found(e.to_string()),
            P::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            P::InvalidInput(_) | P::Unsupported(_) => ApiError::bad_request(e.to_string()),
            P::ExecTimeout(_) => {
                ApiError::new(StatusCode::REQUEST_TIMEOUT, "timeout", e.to_string())
            }
            P::ResourceLimit(_) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "resource_limit",
                e.to_string(),
            ),
            P::Unavailable { .. } => {
                ApiError::logged(StatusCode::SERVICE_UNAVAILABLE, "unavailable", &e)
            }
            P::Upstream { .. } => ApiError::logged(StatusCode::BAD_GATEWAY, "bad_gateway", &e),
            // The message is already safe for clients (see
            // `ProviderError`); the cause goes to the log.
            P::Other { .. } => {
                ApiError::logged(StatusCode::INTERNAL_SERVER_ERROR, "provider_error", &e)
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::NotFound(_) => ApiError::not_found(e.to_string()),
            StoreError::Conflict(_) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            // The same answer as while the store watch knows it is away.
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "request failed: store unavailable");
                super::store_gate::not_ready()
            }
            StoreError::Corrupt(_) => ApiError::internal(
                "internal",
                StatusCode::INTERNAL_SERVER_ERROR,
                &e,
                "internal error; see the server log for details",
            ),
        }
    }
}

impl From<ManagerError> for ApiError {
    fn from(e: ManagerError) -> Self {
        use ManagerError as M;
        match e {
            M::BadRequest(m) => ApiError::bad_request(m),
            M::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            M::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            M::Paused(m) => ApiError::new(StatusCode::CONFLICT, "sandbox_paused", m),
            M::NotImplemented(m) => {
                ApiError::new(StatusCode::NOT_IMPLEMENTED, "not_implemented", m)
            }
            M::ResourceLimit {
                message,
                retry_after,
            } => ApiError {
                retry_after,
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "resource_limit", message)
            },
            M::ExecTimeout(t) => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!("exec timed out after {t}"),
            ),
            M::Unavailable(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
            M::Provider(p) => p.into(),
            M::Store(s) => s.into(),
            M::Internal { .. } => {
                ApiError::logged(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = super::model::ErrorBody {
            code: self.code.to_string(),
            message: self.message,
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(after) = self.retry_after {
            let secs = after.as_secs().max(1).to_string();
            if let Ok(v) = HeaderValue::from_str(&secs) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    /// A pull the registry answered "unknown" is 404; a registry that
    /// failed or cannot be reached is 502, with the provider's public
    /// message and never its private cause.
    #[test]
    fn image_pull_failures_map_to_404_and_502() {
        let e = ApiError::from(ProviderError::NotFound("image r/x:1".into()));
        assert_eq!((e.status.as_u16(), e.code), (404, "not_found"));
        let e = ApiError::from(ProviderError::upstream(
            "cannot pull image 127.0.0.1:1/x:1: connection refused",
            Some(stacyvm_providers::Private::at(
                "/var/run/docker.sock",
                "refused",
            )),
        ));
        assert_eq!((e.status.as_u16(), e.code), (502, "bad_gateway"));
        assert_eq!(
            e.message,
            "cannot pull image 127.0.0.1:1/x:1: connection refused"
        );
    }
}
