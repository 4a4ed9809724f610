//! Extractors that reject in the API's error shape: JSON bodies (an empty
//! body counts as `{}`; anything but an object is refused), path
//! parameters, query strings, raw bodies and the owner header.

use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use stacyvm_core::OwnerId;
use tower_http::timeout::{TimeoutBody, TimeoutError};

use super::error::ApiError;

fn body_error(e: BytesRejection) -> ApiError {
    if timed_out(&e) {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            "the request body stopped arriving (server.request_body_timeout)",
        )
    } else if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "request body is too large",
        )
    } else {
        ApiError::bad_request(format!("cannot read request body: {e}"))
    }
}

/// Whether reading the body failed because it went silent for longer than
/// the idle timeout `guard_body` put on it.
fn timed_out(e: &BytesRejection) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<TimeoutError>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// A JSON object body. Content-Type is not required (clients send bodyless
/// POSTs); an empty body deserialises as `{}`. Every API body is an
/// object, so `[]`, `1` or `"x"` is a 400 rather than being read as `{}`
/// by a struct whose fields all have defaults.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        parse_object(&bytes).map(ApiJson)
    }
}

/// Parses a JSON object body (blank = `{}`).
pub fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    let slice: &[u8] = match start {
        None => b"{}",
        Some(i) if bytes[i] == b'{' => bytes,
        Some(_) => {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
    };
    serde_json::from_slice(slice)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// Path parameters; a segment that does not decode (invalid UTF-8 after
/// percent-decoding) is a 400 in the error shape, not axum's plain text.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(e) => Err(ApiError::bad_request(format!(
                "invalid path {:?}: {}",
                parts.uri.path(),
                e.body_text().to_lowercase()
            ))),
        }
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

/// Guards every request body before a handler sees it. A declared
/// `Content-Length` over `limit` is refused at once, so the server never
/// waits for (or buffers) bytes it would refuse anyway; bodies without a
/// length are still cut at the limit by `DefaultBodyLimit` when read. A
/// body that goes silent for `idle` fails its read, which the extractors
/// answer with 408, so a client that declares more than it sends does not
/// hold a handler forever.
pub async fn guard_body(
    limit: u64,
    idle: Duration,
    req: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > limit => ApiError::payload_too_large(limit).into_response(),
        _ => {
            next.run(req.map(|body| Body::new(TimeoutBody::new(idle, body))))
                .await
        }
    }
}
