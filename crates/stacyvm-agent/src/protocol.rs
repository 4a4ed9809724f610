//! Messages of the agent protocol, version [`PROTOCOL_VERSION`].
//!
//! One connection carries one request. The client sends a
//! [`FrameKind::Request`] frame holding a JSON [`Request`]:
//!
//! - `info`: the agent answers one [`Response::Info`] and closes.
//! - `exec`: the agent answers [`Response::Started`] (or
//!   [`Response::Error`] and closes), then streams `Stdout`/`Stderr` frames
//!   and finally one `Exit` frame holding an [`ExitStatus`]. While the
//!   command runs the client may send `Stdin`, `CloseStdin`, `Resize` and
//!   `Signal` frames. If the connection drops before `Exit`, the agent kills
//!   the command's whole process group: a client that goes away takes its
//!   command with it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change; the agent refuses other versions.
pub const PROTOCOL_VERSION: u32 = 1;

/// A request, the first frame of every connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    Info { protocol: u32 },
    Exec(ExecRequest),
}

/// A command to run in the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ExecRequest {
    pub protocol: u32,
    /// `argv[0]` is looked up in `PATH` (from `env`, else the agent's own).
    pub argv: Vec<String>,
    /// Added to (and overriding) the agent's environment.
    pub env: BTreeMap<String, String>,
    /// Working directory; empty means the agent's (`/`).
    pub workdir: String,
    /// Kill the process group after this many milliseconds; 0 = never.
    pub timeout_ms: u64,
    /// Keep stdin open for `Stdin` frames (otherwise it is `/dev/null`).
    pub stdin: bool,
    /// Run under a pseudo-terminal of this size (stdout and stderr merge).
    pub tty: Option<WindowSize>,
}

/// A terminal size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WindowSize {
    pub cols: u16,
    pub rows: u16,
}

/// A signal for the command's process group, by name (`SIGINT`, `TERM`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalRequest {
    pub signal: String,
}

/// The agent's answer to a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    Info(AgentInfo),
    Started { pid: i32 },
    Error { message: String },
}

/// What `info` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub protocol: u32,
    /// The agent's crate version.
    pub version: String,
    pub pid: i32,
    pub uptime_ms: u64,
}

/// How a command ended, the last frame of an exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The exit code, or 128 + signal number when killed by a signal
    /// (127: command not found, 126: not executable).
    pub exit_code: i32,
    /// The signal that killed the command, if any.
    pub signal: Option<i32>,
    /// The command ran past its timeout and its process group was killed.
    pub timed_out: bool,
    pub duration_ms: u64,
}
