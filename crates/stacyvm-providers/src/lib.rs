//! The `Provider` contract every sandbox backend implements, its typed
//! errors, and the implementations (mock, native, docker) behind modules.
//! The conformance suite in [`conformance`] is written once and run against
//! every implementation.
#![deny(unsafe_code)]

#[cfg(any(feature = "mock", feature = "native", feature = "docker"))]
mod capabilities;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod error;
mod exec;
pub mod hostfs;
#[cfg(any(feature = "mock", feature = "native", feature = "docker"))]
mod lifecycle_marks;
#[cfg(feature = "mock")]
pub mod mock;
#[cfg(feature = "native")]
pub mod native;
#[cfg(any(feature = "mock", feature = "native", feature = "docker"))]
mod network_modes;
mod provider;

#[cfg(feature = "docker")]
pub mod docker;

pub use error::{Detail, Private, ProviderError};
pub use exec::{DEFAULT_MAX_OUTPUT_BYTES, MAX_ARG_BYTES, MAX_EXEC_INPUT_BYTES};
pub use provider::*;

#[cfg(feature = "mock")]
pub use mock::MockProvider;
