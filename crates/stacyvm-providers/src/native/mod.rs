//! The native provider: sandboxes as OCI containers run by `crun` (or
//! `runc`/`runsc`) from cached images, each with our static agent as init.
//!
//! A sandbox is, on the host, `data_dir/sandboxes/<id>/`:
//!
//! ```text
//! meta.json      image, labels, limits: what inventory reports
//! bundle/        the OCI bundle (config.json)
//! upper/ work/   the overlay's writable layer
//! rootfs/        the overlay mount (image layers + upper): the file API
//!                works here, confined by `HostFs`
//! agent.sock     the agent's listening socket (host-only: the agent got
//!                the listening fd, the sandbox cannot see or replace it)
//! console.log    the agent's and the runtime's output, for `logs`
//! network.json   network mode `allow`: the link's slot and the policy
//! init.pid       the init's host pid, written by the runtime (destroy kills
//!                it through a pidfd)
//! ```
//!
//! The runtime keeps its own state in `data_dir/runtime` (`--root`), so
//! sandboxes survive a server restart and are found again by `inventory`.
//! See `docs/native.md`.

mod agent_client;
mod agent_path;
mod cgroup;
mod config;
mod dynmods;
mod health;
pub mod image;
mod init;
pub mod network;
mod nsexec;
mod provider;
mod rootfs;
mod runtime;
mod seccomp;
mod spec;

pub use agent_path::{candidates as agent_candidates, find as find_agent};
pub use cgroup::existing_dirs as cgroup_dirs;
pub use config::{NativeConfig, NetworkMode};
pub use health::find_binary as find_runtime_binary;
pub use provider::NativeProvider;
