//! Manager errors: what went wrong, in terms the API can map to a status.
//! As with [`ProviderError`], `Display` is for the client (no host paths,
//! no secrets) and the private cause is the `source`, for logs.

use std::time::Duration;

use stacyvm_providers::{Detail, ProviderError};
use stacyvm_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The sandbox is paused and `defaults.auto_resume` is off.
    #[error("{0}")]
    Paused(String),
    /// This server or provider cannot do it here (hibernate without CRIU).
    #[error("{0}")]
    NotImplemented(String),
    /// A capacity, TTL or timeout limit; `retry_after` when waiting helps.
    #[error("{message}")]
    ResourceLimit {
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("exec timed out after {0}")]
    ExecTimeout(stacyvm_core::GoDuration),
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{message}")]
    Internal {
        message: String,
        #[source]
        source: Option<Detail>,
    },
}

impl ManagerError {
    pub fn limit(message: impl Into<String>) -> Self {
        ManagerError::ResourceLimit {
            message: message.into(),
            retry_after: None,
        }
    }

    /// A failure of the server itself: `message` for the client, the cause
    /// for the log.
    pub fn internal(message: impl Into<String>, source: impl Into<Detail>) -> Self {
        ManagerError::Internal {
            message: message.into(),
            source: Some(source.into()),
        }
    }
}
