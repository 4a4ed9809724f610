//! Extractors that reject in the API's error shape: JSON bodies (an empty
//! body counts as `{}`), query strings, raw bodies and the owner header.

use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use stacyvm_core::OwnerId;

use super::error::ApiError;

fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "request body is too large",
        )
    } else {
        ApiError::bad_request(format!("cannot read request body: {e}"))
    }
}

/// A JSON body. Content-Type is not required (clients send bodyless POSTs);
/// an empty body deserialises as `{}`.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        let slice: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(slice)
            .map(ApiJson)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// A raw body (binary uploads).
#[derive(Debug)]
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(body_error)
    }
}

/// Query parameters.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(q)
            .map(ApiQuery)
            .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))
    }
}

/// The `X-User-ID` owner, validated; `None` when absent.
#[derive(Debug, Clone)]
pub struct HeaderOwner(pub Option<OwnerId>);

impl<S: Send + Sync> FromRequestParts<S> for HeaderOwner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(v) = parts.headers.get("x-user-id") else {
            return Ok(HeaderOwner(None));
        };
        let s = v
            .to_str()
            .map_err(|_| ApiError::bad_request("X-User-ID must be visible ASCII"))?;
        OwnerId::parse(s)
            .map(HeaderOwner)
            .map_err(|e| ApiError::bad_request(format!("invalid X-User-ID: {e}")))
    }
}
