//! The error responses each route documents, one type per status, so a
//! route lists the failures it can answer with: `responses((status = 200,
//! ...), BadRequest, NotFound)`. Every body is an [`ErrorBody`].

use utoipa::IntoResponses;

use super::ErrorBody;

/// `bad_request`: malformed JSON or a body that is not an object, a missing or invalid field or parameter, a bad duration, a bad path
#[derive(Debug, IntoResponses)]
#[response(status = 400)]
pub struct BadRequest(pub ErrorBody);

/// `unauthorized`: auth is on and the API key is missing or wrong
#[derive(Debug, IntoResponses)]
#[response(status = 401)]
pub struct Unauthorized(pub ErrorBody);

/// `not_found`: the sandbox (or template, provider, file) does not exist or is destroyed
#[derive(Debug, IntoResponses)]
#[response(status = 404)]
pub struct NotFound(pub ErrorBody);

/// `timeout`: the command ran past its timeout and was killed, or the request body stopped arriving for `server.request_body_timeout`
#[derive(Debug, IntoResponses)]
#[response(status = 408)]
pub struct Timeout(pub ErrorBody);

/// `conflict`: the name is taken, or the sandbox is not in a state that allows this
#[derive(Debug, IntoResponses)]
#[response(status = 409)]
pub struct Conflict(pub ErrorBody);

/// `payload_too_large`: the body (or its declared `Content-Length`) is over `server.max_body_bytes`
#[derive(Debug, IntoResponses)]
#[response(status = 413)]
pub struct PayloadTooLarge(pub ErrorBody);

/// `resource_limit`: a capacity, TTL, size or timeout limit; `Retry-After` where waiting helps
#[derive(Debug, IntoResponses)]
#[response(status = 429)]
pub struct ResourceLimit(pub ErrorBody);

/// `internal` or `provider_error`: an unexpected failure (details in the server log)
#[derive(Debug, IntoResponses)]
#[response(status = 500)]
pub struct Internal(pub ErrorBody);

/// `not_implemented`: neither this server nor the sandbox's provider can do it on this host (the message says why)
#[derive(Debug, IntoResponses)]
#[response(status = 501)]
pub struct NotImplemented(pub ErrorBody);

/// `bad_gateway`: a service the provider depends on (the image registry) failed or cannot be reached
#[derive(Debug, IntoResponses)]
#[response(status = 502)]
pub struct BadGateway(pub ErrorBody);

/// `unavailable`: the provider or the store cannot be reached
#[derive(Debug, IntoResponses)]
#[response(status = 503)]
pub struct Unavailable(pub ErrorBody);
