//! The `Provider` contract every sandbox backend implements, its typed
//! errors, and the implementations (mock, native, docker) behind modules.
//! The conformance suite in [`conformance`] is written once and run against
//! every implementation.
#![deny(unsafe_code)]

mod error;
pub mod hostfs;
#[cfg(feature = "native")]
pub mod native;
mod provider;

pub use error::ProviderError;
pub use provider::*;
