//! The provider contract.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::Stream;
use stacyvm_core::{Capability, ExecOutput, FileInfo, NetworkPolicy, SandboxId, StreamKind};
use tokio::sync::mpsc;

use crate::ProviderError;

/// What the manager asks a provider to create. The id is chosen by the
/// manager; providers use it as their runtime's name, hostname and label.
#[derive(Debug, Clone, PartialEq)]
pub struct SpawnSpec {
    pub id: SandboxId,
    pub image: String,
    pub memory_mb: u32,
    pub vcpus: u32,
    pub metadata: BTreeMap<String, String>,
    /// Labels a provider records on its runtime so it can be found and
    /// re-adopted later (owner, created time, expiry, ...).
    pub labels: BTreeMap<String, String>,
    /// The egress policy asked for, already checked by
    /// [`NetworkPolicy::compile`]; `None`: the provider's configured
    /// default. A provider that cannot give exactly the mode asked for
    /// refuses the spawn with `InvalidInput`: it never gives more.
    pub network: Option<NetworkPolicy>,
}

/// A command to run, already resolved to argv by the manager.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecSpec {
    /// `argv[0]` is looked up in the sandbox's `PATH`.
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Working directory inside the sandbox; empty means the default.
    pub workdir: String,
    /// The command and its whole process tree are killed after this.
    pub timeout: Duration,
    /// Most bytes of each of stdout and stderr a synchronous
    /// [`Provider::exec`] keeps (`defaults.max_exec_output_bytes`).
    pub max_output_bytes: usize,
}

impl Default for ExecSpec {
    fn default() -> Self {
        ExecSpec {
            argv: Vec::new(),
            env: BTreeMap::new(),
            workdir: String::new(),
            timeout: Duration::ZERO,
            max_output_bytes: crate::exec::DEFAULT_MAX_OUTPUT_BYTES,
        }
    }
}

/// Terminal options for an interactive exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtySize {
    pub cols: u16,
    pub rows: u16,
}

/// Input sent to an interactive exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecInput {
    Stdin(Bytes),
    /// Closes the command's stdin.
    CloseStdin,
    Resize(TtySize),
    /// A signal by name (`SIGINT`, `SIGTERM`, `SIGKILL`, `SIGHUP`, ...).
    Signal(String),
}

/// Output of a streamed exec, in order; `Exit` is always last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    Output(StreamKind, Bytes),
    Exit {
        exit_code: i32,
        duration: Duration,
        timed_out: bool,
    },
}

/// A running command. Dropping `output` (or the whole session) kills the
/// command and its process tree: a client that goes away takes its command
/// with it.
#[derive(Debug)]
pub struct ExecSession {
    /// Present when the command was started with stdin or a TTY.
    pub input: Option<mpsc::Sender<ExecInput>>,
    pub output: mpsc::Receiver<ExecEvent>,
}

/// Options for [`Provider::exec_stream`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamOptions {
    /// Keep stdin open for [`ExecInput::Stdin`].
    pub stdin: bool,
    /// Run under a pseudo-terminal of this size (implies stdin).
    pub tty: Option<TtySize>,
}

/// A byte stream, for file reads.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, ProviderError>> + Send>>;

/// State of a runtime as its provider sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeStatus {
    Running,
    /// Frozen by [`Provider::pause`]: its processes exist but get no CPU.
    Paused,
    /// Exists but is not running (stopped, dead).
    Stopped,
    /// The provider has no runtime for this id.
    Missing,
}

/// A runtime the provider owns, for startup reconciliation.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeInfo {
    pub id: SandboxId,
    pub status: RuntimeStatus,
    pub image: String,
    pub created_at: Option<DateTime<Utc>>,
    /// The labels recorded at spawn.
    pub labels: BTreeMap<String, String>,
}

/// Result of a health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    pub healthy: bool,
    /// Precisely what is wrong when unhealthy (what is missing, what to
    /// install, which config key); shown to clients, so never a secret,
    /// host path or daemon address.
    pub error: Option<String>,
    /// The same with the host specifics (paths, addresses), for the log
    /// only.
    pub detail: Option<String>,
}

impl HealthReport {
    pub fn ok() -> Self {
        HealthReport {
            healthy: true,
            error: None,
            detail: None,
        }
    }

    pub fn failed(error: impl Into<String>) -> Self {
        HealthReport {
            healthy: false,
            error: Some(error.into()),
            detail: None,
        }
    }

    /// Adds the private detail the log shows.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// Per-sandbox resource figures, where a provider can measure them.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ResourceUsage {
    pub cpu_seconds: f64,
    pub memory_bytes: u64,
    pub pids: u64,
}

/// A sandbox backend: lifecycle, exec and health here, file operations
/// through [`Provider::files`]. Methods taking an id return
/// `NotFound`/`Destroyed` for unknown or destroyed sandboxes.
#[async_trait]
pub trait Provider: Send + Sync + std::fmt::Debug + 'static {
    /// The configured name (`native`, `docker`, `mock`, ...).
    fn name(&self) -> &str;

    fn capabilities(&self) -> Vec<Capability>;

    /// Non-secret settings, shown by `/providers/{name}`: no host paths,
    /// socket paths or daemon addresses either.
    fn config_summary(&self) -> serde_json::Value {
        serde_json::Value::Object(Default::default())
    }

    /// Creates and starts a sandbox; returns when it can run commands.
    async fn spawn(&self, spec: &SpawnSpec) -> Result<(), ProviderError>;

    async fn status(&self, id: &SandboxId) -> Result<RuntimeStatus, ProviderError>;

    /// Removes the runtime and everything it held, every process of the
    /// sandbox included. Idempotent: destroying an unknown or
    /// already-destroyed sandbox succeeds.
    async fn destroy(&self, id: &SandboxId) -> Result<(), ProviderError>;

    /// Runs a command to completion. A non-zero exit is `Ok`; running past
    /// the timeout kills the process tree and returns `ExecTimeout`. Each
    /// of stdout and stderr keeps at most `spec.max_output_bytes`; the rest
    /// is read and dropped, and the result says `truncated`.
    ///
    /// Built on [`Provider::exec_stream`]; a provider has no reason to
    /// write its own.
    async fn exec(&self, id: &SandboxId, spec: &ExecSpec) -> Result<ExecOutput, ProviderError> {
        let session = self.exec_stream(id, spec, StreamOptions::default()).await?;
        match crate::exec::collect(session, spec).await {
            Some(out) => out,
            // The session ended without an exit status: the connection to
            // the sandbox was lost. Destroyed under the command is the
            // usual reason, and then it is what the caller should hear.
            None => Err(match self.status(id).await {
                Ok(RuntimeStatus::Missing) => ProviderError::Destroyed(id.to_string()),
                _ => ProviderError::unavailable(format!(
                    "lost the connection to sandbox {id} before the command ended"
                )),
            }),
        }
    }

    /// Starts a command and streams its output. On timeout the tree is
    /// killed, a stderr chunk says so, and `Exit` has `timed_out: true`.
    /// A session that ends without `Exit` lost its sandbox.
    async fn exec_stream(
        &self,
        id: &SandboxId,
        spec: &ExecSpec,
        options: StreamOptions,
    ) -> Result<ExecSession, ProviderError>;

    /// The file operations on this provider's sandboxes.
    fn files(&self) -> &dyn SandboxFiles;

    /// The last `lines` console/log lines of the sandbox.
    async fn logs(&self, id: &SandboxId, lines: usize) -> Result<Vec<String>, ProviderError>;

    /// Fast, side-effect-free check that the backend can work.
    async fn health(&self) -> HealthReport;

    /// The runtimes this provider owns, for reconciliation; `None` when the
    /// provider cannot list them.
    async fn inventory(&self) -> Result<Option<Vec<RuntimeInfo>>, ProviderError> {
        Ok(None)
    }

    /// Freezes every process of the sandbox (capability `pause`): memory,
    /// open files and sockets are kept, no CPU is used, and
    /// [`Provider::status`] then reports [`RuntimeStatus::Paused`], also to
    /// a new server process. Returns once the freeze is complete. Pausing a
    /// paused sandbox succeeds.
    async fn pause(&self, _id: &SandboxId) -> Result<(), ProviderError> {
        Err(ProviderError::Unsupported("pause"))
    }

    /// Thaws a sandbox frozen by [`Provider::pause`]; resuming a running
    /// sandbox succeeds.
    async fn resume(&self, _id: &SandboxId) -> Result<(), ProviderError> {
        Err(ProviderError::Unsupported("resume"))
    }

    /// Why this provider cannot hibernate sandboxes on this host (capability
    /// `hibernate` missing), for health and capability listings; `None`
    /// when it can or does not try.
    fn hibernate_unavailable(&self) -> Option<String> {
        None
    }

    /// The egress policy a sandbox runs under. The default suits providers
    /// that only give mode `none`.
    async fn network(&self, id: &SandboxId) -> Result<NetworkPolicy, ProviderError> {
        match self.status(id).await? {
            RuntimeStatus::Missing => Err(ProviderError::NotFound(id.to_string())),
            _ => Ok(NetworkPolicy::none()),
        }
    }

    /// Changes the egress policy of a running sandbox (already checked by
    /// [`NetworkPolicy::compile`]): in force for new connections at once,
    /// and connections it no longer allows are cut. Providers that cannot
    /// refuse with `InvalidInput`; asking for the policy already in force
    /// is always fine.
    async fn set_network(
        &self,
        id: &SandboxId,
        policy: &NetworkPolicy,
    ) -> Result<(), ProviderError> {
        if &self.network(id).await? == policy {
            return Ok(());
        }
        Err(ProviderError::InvalidInput(format!(
            "provider {} cannot change the network of a running sandbox",
            self.name()
        )))
    }

    /// CPU, memory and pids of a sandbox; `None` when not measurable.
    async fn resource_usage(
        &self,
        _id: &SandboxId,
    ) -> Result<Option<ResourceUsage>, ProviderError> {
        Ok(None)
    }
}

/// The file operations of a provider. Paths are absolute paths inside the
/// sandbox; an implementation must never let one reach a host file outside
/// it (`..`, symlinks, races).
#[async_trait]
pub trait SandboxFiles: Send + Sync {
    /// Writes a file, creating parent directories; `mode` defaults to 0644.
    async fn write(
        &self,
        id: &SandboxId,
        path: &str,
        content: Bytes,
        mode: Option<u32>,
    ) -> Result<(), ProviderError>;

    /// Streams a regular file.
    async fn read(&self, id: &SandboxId, path: &str) -> Result<ByteStream, ProviderError>;

    /// The entries of a directory, sorted by name.
    async fn list(&self, id: &SandboxId, path: &str) -> Result<Vec<FileInfo>, ProviderError>;

    /// Describes `path` itself (a final symlink is not followed).
    async fn stat(&self, id: &SandboxId, path: &str) -> Result<FileInfo, ProviderError>;

    /// Moves `from` to `to`, creating `to`'s parent directories.
    async fn rename(&self, id: &SandboxId, from: &str, to: &str) -> Result<(), ProviderError>;

    async fn chmod(&self, id: &SandboxId, path: &str, mode: u32) -> Result<(), ProviderError>;

    /// Deletes a file, or a directory (recursively only when asked).
    async fn delete(
        &self,
        id: &SandboxId,
        path: &str,
        recursive: bool,
    ) -> Result<(), ProviderError>;

    /// Absolute paths matching `pattern` (`*`, `?`, `[..]`, `**`).
    async fn glob(&self, id: &SandboxId, pattern: &str) -> Result<Vec<String>, ProviderError>;
}
