//! The Engine API connection and the mapping of its errors to
//! [`ProviderError`].
//!
//! The connection is made lazily and kept: bollard opens a fresh socket
//! connection per request (no idle pool on unix sockets), so a daemon that
//! went away and came back is used again without any reconnect logic here.

use std::sync::Mutex;

use bollard::errors::Error as DockerError;
use bollard::{ClientVersion, Docker};

use crate::{Private, ProviderError};

/// API version spoken: Docker 20.10 (Debian 12) tops out at 1.41, and newer
/// daemons still accept it. Everything the provider uses exists in 1.41.
const API_VERSION: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};

/// A lazily-connected Engine API client.
pub(crate) struct Client {
    socket: String,
    timeout_secs: u64,
    docker: Mutex<Option<Docker>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub(crate) fn new(socket: String, timeout_secs: u64) -> Self {
        Client {
            socket,
            timeout_secs,
            docker: Mutex::new(None),
        }
    }

    pub(crate) fn socket(&self) -> &str {
        &self.socket
    }

    /// The client, connecting first if needed. Connecting only fails when
    /// the unix socket does not exist (daemon not started).
    pub(crate) fn get(&self) -> Result<Docker, ProviderError> {
        let mut slot = self.docker.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = slot.as_ref() {
            return Ok(d.clone());
        }
        let s = self.socket.as_str();
        let made = if let Some(path) = s.strip_prefix("unix://") {
            Docker::connect_with_unix(path, self.timeout_secs, &API_VERSION)
        } else if s.starts_with('/') {
            Docker::connect_with_unix(s, self.timeout_secs, &API_VERSION)
        } else {
            Docker::connect_with_http(s, self.timeout_secs, &API_VERSION)
        };
        let d = made.map_err(|e| self.unavailable(&e))?;
        *slot = Some(d.clone());
        Ok(d)
    }

    /// The daemon cannot be talked to. Its address is for the log only.
    pub(crate) fn unavailable(&self, e: &dyn std::fmt::Display) -> ProviderError {
        ProviderError::unavailable_from(
            "cannot reach the docker daemon (providers.docker.socket)",
            Private::at(&self.socket, e),
        )
    }

    /// Maps an Engine API error; `what` names the object a 404 is about
    /// (`sandbox sb-..`, a path, an image).
    pub(crate) fn map(&self, e: DockerError, what: &str) -> ProviderError {
        match e {
            DockerError::DockerResponseServerError {
                status_code,
                message,
            } => {
                let message = message.trim().to_string();
                match status_code {
                    404 => ProviderError::NotFound(what.to_string()),
                    400 | 403 => ProviderError::InvalidInput(format!("{what}: {message}")),
                    409 => ProviderError::Conflict(format!("{what}: {message}")),
                    503 => self.unavailable(&message),
                    _ => ProviderError::internal(
                        format!("the docker daemon failed on {what}"),
                        Private(format!("{status_code}: {message}")),
                    ),
                }
            }
            e if is_connection_error(&e) => self.unavailable(&e),
            e => ProviderError::internal(format!("the docker daemon failed on {what}"), e),
        }
    }
}

/// Whether the error means the daemon could not be talked to at all.
pub(crate) fn is_connection_error(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::HyperLegacyError { .. }
            | DockerError::IOError { .. }
            | DockerError::SocketNotFoundError(_)
            | DockerError::RequestTimeoutError
            | DockerError::HyperResponseError { .. }
            | DockerError::HttpClientError { .. }
    )
}

/// Whether a 404 is about the container itself rather than a path in it.
pub(crate) fn is_no_such_container(e: &DockerError) -> bool {
    matches!(e, DockerError::DockerResponseServerError { status_code: 404, message }
        if message.to_ascii_lowercase().contains("no such container"))
}

/// Whether the container exists but is not running (409 from exec).
pub(crate) fn is_not_running(e: &DockerError) -> bool {
    matches!(e, DockerError::DockerResponseServerError { status_code: 409, message }
        if message.to_ascii_lowercase().contains("not running")
            || message.to_ascii_lowercase().contains("is paused"))
}
