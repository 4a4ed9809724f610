//! Exec results: the synchronous reply, the NDJSON stream records and the
//! WebSocket terminal's messages. The request is `stacyvm_core::ExecRequest`.

use serde::{Deserialize, Serialize};
use stacyvm_core::{ExecRequest, GoDuration, StreamKind};
use utoipa::ToSchema;

/// Reply of a non-streaming `POST /sandboxes/{id}/exec`. A non-zero exit
/// is a normal result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecResponse {
    pub exit_code: i32,
    /// Output as UTF-8 (invalid sequences replaced).
    pub stdout: String,
    pub stderr: String,
    /// Wall time, to the millisecond (`127ms`, `1.52s`).
    pub duration: GoDuration,
    /// Output past `defaults.max_exec_output_bytes` (per stream) was
    /// dropped from `stdout` or `stderr`.
    #[serde(default)]
    pub truncated: bool,
}

/// Which stream a record belongs to; `exit` is always the last record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StreamName {
    Stdout,
    Stderr,
    Exit,
}

impl From<StreamKind> for StreamName {
    fn from(k: StreamKind) -> Self {
        match k {
            StreamKind::Stdout => StreamName::Stdout,
            StreamKind::Stderr => StreamName::Stderr,
        }
    }
}

/// One line of a streamed exec (`application/x-ndjson`). Idle streams
/// also carry blank keep-alive lines, which readers skip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StreamRecord {
    pub stream: StreamName,
    /// Output text; empty on the `exit` record.
    pub data: String,
    /// On `exit`: the command's exit code (-1 when it ended without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// On `exit`: wall time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<GoDuration>,
    /// On `exit`: present (true) when the command was killed by its timeout.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
    /// On `exit`: why there is no exit status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl StreamRecord {
    /// An output record.
    pub fn output(kind: StreamKind, data: String) -> Self {
        StreamRecord {
            stream: kind.into(),
            data,
            exit_code: None,
            duration: None,
            timed_out: false,
            error: None,
        }
    }

    /// The closing record.
    pub fn exit(exit_code: i32, duration: Option<GoDuration>, timed_out: bool) -> Self {
        StreamRecord {
            stream: StreamName::Exit,
            data: String::new(),
            exit_code: Some(exit_code),
            duration,
            timed_out,
            error: None,
        }
    }
}

/// Client → server messages of the WebSocket terminal
/// (`GET /sandboxes/{id}/exec/ws`); the first must be `start`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum WsClientMessage {
    Start {
        #[serde(flatten)]
        request: ExecRequest,
        /// Run under a pseudo-terminal.
        #[serde(default)]
        tty: bool,
        /// Terminal size (0 = 80x24).
        #[serde(default)]
        cols: u16,
        #[serde(default)]
        rows: u16,
    },
    Stdin {
        data: String,
    },
    Resize {
        cols: u16,
        rows: u16,
    },
    Signal {
        /// `SIGINT`, `SIGTERM`, ...
        signal: String,
    },
}

/// Server → client messages of the WebSocket terminal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum WsServerMessage {
    Stdout {
        data: String,
    },
    Stderr {
        data: String,
    },
    Exit {
        exit_code: i32,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        timed_out: bool,
    },
    Error {
        message: String,
    },
}
