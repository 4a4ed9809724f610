//! The StacyVM in-sandbox agent: its wire protocol (used by the host-side
//! providers) and, in [`server`], the agent itself (the `stacyvm-agent`
//! binary, PID 1 of every native sandbox).
//!
//! The protocol is transport-neutral: any stream socket works (a Unix socket
//! for containers today, vsock for a future microVM provider). See
//! [`protocol`] for the frame layout and the message flow.

pub mod codec;
pub mod protocol;
pub mod server;

pub use codec::{CodecError, Frame, FrameKind};
pub use protocol::*;
