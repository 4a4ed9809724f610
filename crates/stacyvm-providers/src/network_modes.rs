//! The one refusal every provider gives for a network mode it cannot
//! provide exactly: a clear `InvalidInput` (400), never more access.

use stacyvm_core::{NetworkMode, NetworkPolicy};

use crate::ProviderError;

/// Refuses `requested` unless `supports` says the provider gives its mode.
/// `None` (the provider's configured default) is always accepted.
pub(crate) fn refuse_unsupported(
    provider: &str,
    requested: Option<&NetworkPolicy>,
    supports: impl Fn(NetworkMode) -> Result<(), String>,
) -> Result<(), ProviderError> {
    let Some(policy) = requested else {
        return Ok(());
    };
    policy
        .compile()
        .map_err(|e| ProviderError::InvalidInput(e.to_string()))?;
    supports(policy.mode).map_err(|why| {
        ProviderError::InvalidInput(format!(
            "provider {provider} cannot give network mode {:?}: {why}",
            policy.mode.as_str()
        ))
    })
}
