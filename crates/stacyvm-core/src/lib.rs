//! Domain types shared by every StacyVM crate: sandbox and template records,
//! ids, states, network policies, exec requests and results, file info, provider health, audit
//! events and Go-style durations. Nothing here does I/O.
#![forbid(unsafe_code)]

pub mod apikey;
pub mod duration;
pub mod error_chain;
pub mod event;
pub mod exec;
pub mod files;
pub mod health;
pub mod id;
pub mod network;
pub mod node;
pub mod owner;
pub mod sandbox;
mod schema;
pub mod template;

pub use apikey::{ApiKey, KeyScope};
pub use duration::{DurationError, GoDuration};
pub use error_chain::ErrorChain;
pub use event::{Event, EventType};
pub use exec::{ExecMode, ExecOutput, ExecRequest, OutputChunk, StreamKind};
pub use files::{FileInfo, FileMode};
pub use health::{Capability, ProviderHealth};
pub use id::SandboxId;
pub use network::{CompiledPolicy, NetworkMode, NetworkPolicy, NetworkPolicyError};
pub use node::{Node, NodeProvider, NodeRegistration, NodeState};
pub use owner::{OwnerError, OwnerId};
pub use sandbox::{Sandbox, SandboxState};
pub use template::Template;

/// Version of this build, shown by `/health`, `/live`, `/ready` and the CLI.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
