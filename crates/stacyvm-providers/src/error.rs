//! Typed provider errors; the manager and the API map them to statuses.
//!
//! An error has two readers. Its `Display` is the message for the client:
//! it names the sandbox, the sandbox path or the config key involved, and
//! never a host path, socket path, daemon address or runtime command line.
//! What the operator needs to find the cause (the host path, the runtime's
//! stderr, the underlying I/O error) goes in the private `source`, which
//! only logs show (see [`stacyvm_core::ErrorChain`]).

use std::fmt;

/// The private cause of an error, for logs only.
pub type Detail = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong in a provider call.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The sandbox (or a file in it, or an image) does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The sandbox existed but has been destroyed.
    #[error("sandbox {0} is destroyed")]
    Destroyed(String),
    /// The sandbox exists but cannot do this now (not running, being
    /// destroyed).
    #[error("{0}")]
    Conflict(String),
    /// The backend cannot be reached or is not usable right now.
    #[error("provider unavailable: {message}")]
    Unavailable {
        message: String,
        #[source]
        source: Option<Detail>,
    },
    /// A service the provider depends on, such as an image registry,
    /// failed or could not be reached.
    #[error("{message}")]
    Upstream {
        message: String,
        #[source]
        source: Option<Detail>,
    },
    /// The command ran past its timeout and was killed.
    #[error("exec timed out after {0:?}")]
    ExecTimeout(std::time::Duration),
    /// A resource limit of the backend or of the sandbox was hit.
    #[error("resource limit: {0}")]
    ResourceLimit(String),
    /// The request is not acceptable (bad path, escape attempt, bad argument,
    /// over a size limit).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The provider does not implement this operation.
    #[error("not supported by this provider: {0}")]
    Unsupported(&'static str),
    /// Anything else: a failure of the provider itself.
    #[error("{message}")]
    Other {
        message: String,
        #[source]
        source: Option<Detail>,
    },
}

impl ProviderError {
    /// The backend is unusable; `message` is shown to clients.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ProviderError::Unavailable {
            message: message.into(),
            source: None,
        }
    }

    /// [`ProviderError::unavailable`] with a private cause for the log.
    pub fn unavailable_from(message: impl Into<String>, source: impl Into<Detail>) -> Self {
        ProviderError::Unavailable {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// An upstream (registry) failure; `message` is shown to clients.
    pub fn upstream(message: impl Into<String>, source: Option<Detail>) -> Self {
        ProviderError::Upstream {
            message: message.into(),
            source,
        }
    }

    /// A failure of the provider itself: `message` for the client, the
    /// cause (host paths and all) for the log.
    pub fn internal(message: impl Into<String>, source: impl Into<Detail>) -> Self {
        ProviderError::Other {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A failure of the provider itself with nothing more to say.
    pub fn failed(message: impl Into<String>) -> Self {
        ProviderError::Other {
            message: message.into(),
            source: None,
        }
    }

    /// Short machine-friendly kind, for metrics and events.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderError::NotFound(_) => "not_found",
            ProviderError::Destroyed(_) => "destroyed",
            ProviderError::Conflict(_) => "conflict",
            ProviderError::Unavailable { .. } => "unavailable",
            ProviderError::Upstream { .. } => "upstream",
            ProviderError::ExecTimeout(_) => "timeout",
            ProviderError::ResourceLimit(_) => "resource_limit",
            ProviderError::InvalidInput(_) => "invalid_input",
            ProviderError::Unsupported(_) => "unsupported",
            ProviderError::Other { .. } => "other",
        }
    }
}

/// A private detail made of text (a host path and an error, a runtime's
/// stderr), usable as a [`Detail`].
#[derive(Debug)]
pub struct Private(pub String);

impl fmt::Display for Private {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Private {}

impl Private {
    /// `what: error`, typically a host path and what happened to it.
    pub fn at(what: impl fmt::Display, e: impl fmt::Display) -> Detail {
        Box::new(Private(format!("{what}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stacyvm_core::ErrorChain;

    #[test]
    fn display_is_public_and_the_chain_keeps_the_cause() {
        let e = ProviderError::internal(
            "cannot create sandbox sb-1",
            Private::at("/var/lib/stacyvm/native/sandboxes/sb-1", "No space left"),
        );
        assert_eq!(e.to_string(), "cannot create sandbox sb-1");
        assert_eq!(
            ErrorChain(&e).to_string(),
            "cannot create sandbox sb-1: /var/lib/stacyvm/native/sandboxes/sb-1: No space left"
        );
        let e =
            ProviderError::unavailable_from("cannot reach the docker daemon", "unix:///x: nope");
        assert_eq!(
            e.to_string(),
            "provider unavailable: cannot reach the docker daemon"
        );
        assert!(ErrorChain(&e).to_string().ends_with("unix:///x: nope"));
    }
}
