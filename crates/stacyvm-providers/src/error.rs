//! Typed provider errors; the manager and the API map them to statuses.

/// What went wrong in a provider call.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The sandbox (or a file in it) does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The sandbox existed but has been destroyed.
    #[error("sandbox {0} is destroyed")]
    Destroyed(String),
    /// The backend cannot be reached or is not usable right now.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// The command ran past its timeout and was killed.
    #[error("exec timed out after {0:?}")]
    ExecTimeout(std::time::Duration),
    /// A resource limit of the backend or of the sandbox was hit.
    #[error("resource limit: {0}")]
    ResourceLimit(String),
    /// The request is not acceptable (bad path, escape attempt, bad argument).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The provider does not implement this operation.
    #[error("not supported by this provider: {0}")]
    Unsupported(&'static str),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl ProviderError {
    pub fn other(e: impl std::fmt::Display) -> Self {
        ProviderError::Other(e.to_string())
    }

    /// Short machine-friendly kind, for metrics and events.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderError::NotFound(_) => "not_found",
            ProviderError::Destroyed(_) => "destroyed",
            ProviderError::Unavailable(_) => "unavailable",
            ProviderError::ExecTimeout(_) => "timeout",
            ProviderError::ResourceLimit(_) => "resource_limit",
            ProviderError::InvalidInput(_) => "invalid_input",
            ProviderError::Unsupported(_) => "unsupported",
            ProviderError::Other(_) => "other",
        }
    }
}
