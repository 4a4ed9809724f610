//! The Connect protocol with the JSON codec, as envd speaks it: unary calls
//! are `application/json` bodies; server streams are `application/connect+json`
//! envelopes (one flags byte, a 4-byte big-endian length, the message),
//! the last one flagged end-of-stream with an optional error. Errors are
//! `{"code","message"}` with Connect's code names.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::api::ApiError;

pub const STREAM_CONTENT_TYPE: &str = "application/connect+json";
const FLAG_COMPRESSED: u8 = 0x01;
const FLAG_END_STREAM: u8 = 0x02;
/// Largest request message accepted on a stream.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// A Connect error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Unimplemented,
    Internal,
    Unavailable,
    Unauthenticated,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidArgument => "invalid_argument",
            Code::DeadlineExceeded => "deadline_exceeded",
            Code::NotFound => "not_found",
            Code::AlreadyExists => "already_exists",
            Code::PermissionDenied => "permission_denied",
            Code::ResourceExhausted => "resource_exhausted",
            Code::FailedPrecondition => "failed_precondition",
            Code::Unimplemented => "unimplemented",
            Code::Internal => "internal",
            Code::Unavailable => "unavailable",
            Code::Unauthenticated => "unauthenticated",
        }
    }

    /// The HTTP status of a unary error with this code (Connect spec).
    pub fn http_status(self) -> StatusCode {
        match self {
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Code::InvalidArgument | Code::FailedPrecondition => StatusCode::BAD_REQUEST,
            Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::AlreadyExists => StatusCode::CONFLICT,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        }
    }
}

/// An error on its way to an envd RPC client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectError {
    pub code: Code,
    pub message: String,
}

impl ConnectError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ConnectError {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }

    fn json(&self) -> serde_json::Value {
        json!({"code": self.code.as_str(), "message": self.message})
    }

    /// The error as the end of a server stream (HTTP 200, as Connect sends
    /// stream errors).
    pub fn into_stream_response(self) -> Response {
        stream_response(end_stream(Some(&self)))
    }
}

impl From<ApiError> for ConnectError {
    fn from(e: ApiError) -> Self {
        let code = match e.status.as_u16() {
            400 => Code::InvalidArgument,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::NotFound,
            408 | 504 => Code::DeadlineExceeded,
            409 => Code::FailedPrecondition,
            413 | 429 => Code::ResourceExhausted,
            501 => Code::Unimplemented,
            502 | 503 => Code::Unavailable,
            _ => Code::Internal,
        };
        ConnectError::new(code, e.message)
    }
}

impl From<crate::manager::ManagerError> for ConnectError {
    fn from(e: crate::manager::ManagerError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for ConnectError {
    /// A unary error.
    fn into_response(self) -> Response {
        (self.code.http_status(), axum::Json(self.json())).into_response()
    }
}

/// One envelope.
pub fn envelope(flags: u8, message: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(flags);
    out.extend_from_slice(
        &u32::try_from(message.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(message);
    Bytes::from(out)
}

/// A message envelope holding `value` as JSON.
pub fn message(value: &serde_json::Value) -> Bytes {
    envelope(0, value.to_string().as_bytes())
}

/// The end-of-stream envelope, with the error if the stream failed.
pub fn end_stream(err: Option<&ConnectError>) -> Bytes {
    let body = match err {
        Some(e) => json!({"error": e.json()}),
        None => json!({}),
    };
    envelope(FLAG_END_STREAM, body.to_string().as_bytes())
}

/// A complete stream response made of `bytes`.
pub fn stream_response(bytes: Bytes) -> Response {
    let mut resp = Response::new(axum::body::Body::from(bytes));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(STREAM_CONTENT_TYPE),
    );
    resp
}

/// Whether the request is a streaming call (by its content type).
pub fn is_stream(headers: &HeaderMap) -> bool {
    content_type(headers).starts_with("application/connect+")
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Decodes the single request message of a server-streaming call.
pub fn decode_stream_request<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, ConnectError> {
    let ct = content_type(headers);
    if ct != STREAM_CONTENT_TYPE {
        return Err(ConnectError::invalid(format!(
            "content type {ct:?} is not served: use {STREAM_CONTENT_TYPE} (the JSON codec)"
        )));
    }
    if body.len() < 5 {
        return Err(ConnectError::invalid("the request has no message envelope"));
    }
    let flags = body[0];
    if flags & FLAG_COMPRESSED != 0 {
        return Err(ConnectError::new(
            Code::Unimplemented,
            "compressed messages are not served",
        ));
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    if len > MAX_MESSAGE {
        return Err(ConnectError::new(
            Code::ResourceExhausted,
            format!("request message of {len} bytes exceeds the limit of {MAX_MESSAGE}"),
        ));
    }
    let msg = body
        .get(5..5 + len)
        .ok_or_else(|| ConnectError::invalid("the request message envelope is truncated"))?;
    parse(msg)
}

/// Decodes the request message of a unary call.
pub fn decode_unary<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, ConnectError> {
    let ct = content_type(headers);
    if ct != "application/json" {
        return Err(ConnectError::invalid(format!(
            "content type {ct:?} is not served: use application/json (the JSON codec)"
        )));
    }
    parse(body)
}

fn parse<T: DeserializeOwned>(msg: &[u8]) -> Result<T, ConnectError> {
    let msg = if msg.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        msg
    };
    serde_json::from_slice(msg)
        .map_err(|e| ConnectError::invalid(format!("invalid request message: {e}")))
}

/// The `Connect-Timeout-Ms` deadline of a call, if any.
pub fn timeout(headers: &HeaderMap) -> Option<Duration> {
    let ms: u64 = headers
        .get("connect-timeout-ms")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (ms > 0).then(|| Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip() {
        let env = message(&json!({"a": 1}));
        assert_eq!(env[0], 0);
        assert_eq!(u32::from_be_bytes([env[1], env[2], env[3], env[4]]), 7);
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(STREAM_CONTENT_TYPE),
        );
        let v: serde_json::Value = decode_stream_request(&h, &env).unwrap();
        assert_eq!(v, json!({"a": 1}));
        let end = end_stream(Some(&ConnectError::new(Code::DeadlineExceeded, "late")));
        assert_eq!(end[0], FLAG_END_STREAM);
        let body: serde_json::Value = serde_json::from_slice(&end[5..]).unwrap();
        assert_eq!(body["error"]["code"], "deadline_exceeded");
    }

    #[test]
    fn bad_envelopes_are_invalid_argument() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(STREAM_CONTENT_TYPE),
        );
        for body in [
            &b""[..],
            &[0, 0, 0, 0, 9, b'{'][..],
            &[0, 0, 0, 0, 1, b'x'][..],
        ] {
            let e = decode_stream_request::<serde_json::Value>(&h, body).unwrap_err();
            assert_eq!(e.code, Code::InvalidArgument, "{body:?}");
        }
        let e = decode_stream_request::<serde_json::Value>(&h, &[1, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(e.code, Code::Unimplemented);
    }
}
