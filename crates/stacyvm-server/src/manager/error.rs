//! Manager errors: what went wrong, in terms the API can map to a status.

use std::time::Duration;

use stacyvm_providers::ProviderError;
use stacyvm_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
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
    #[error("{0}")]
    Internal(String),
}

impl ManagerError {
    pub fn limit(message: impl Into<String>) -> Self {
        ManagerError::ResourceLimit {
            message: message.into(),
            retry_after: None,
        }
    }
}
