//! The OCI runtime CLI (`crun`, `runc`, `runsc`): create, inspect and
//! delete containers. All calls use our own `--root`, so our containers
//! never mix with other users of the same runtime.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::Deserialize;
use tokio::process::Command;

use super::config::NetworkMode;
use super::nsexec::{self, ChildSetup};
use crate::{Private, ProviderError};

/// A runtime binary and its state directory.
#[derive(Debug, Clone)]
pub struct Runtime {
    bin: PathBuf,
    root: PathBuf,
    /// The cgroup2 mount hidden from the runtime on hybrid hosts.
    hide_mount: Option<PathBuf>,
    /// gVisor (`runsc`): no fd passing, its own global flags, and the pid it
    /// records is its sandbox process, not a pid namespace's init.
    gvisor: bool,
    /// Global flags given before every subcommand.
    global_args: Vec<String>,
}

/// A container as `state`/`list` report it.
#[derive(Debug, Clone, Deserialize)]
pub struct ContainerState {
    pub id: String,
    pub status: String,
}

impl Runtime {
    pub fn new(bin: PathBuf, root: PathBuf, network: NetworkMode) -> Self {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let gvisor = bin.file_name().is_some_and(|n| n == "runsc");
        let global_args = if gvisor {
            gvisor_args(network)
        } else {
            Vec::new()
        };
        Runtime {
            bin,
            root,
            hide_mount: nsexec::hybrid_cgroup2_mount(&info),
            gvisor,
            global_args,
        }
    }

    /// Whether the runtime can hand the init an extra fd (`--preserve-fds`).
    pub fn passes_fds(&self) -> bool {
        !self.gvisor
    }

    /// Whether the sandbox's terminals leave ^C, ^\ and ^Z to the agent.
    pub fn needs_tty_signals(&self) -> bool {
        self.gvisor
    }

    /// Whether the pid written by `--pid-file` is the init of the
    /// container's pid namespace (so killing it stops the whole sandbox).
    pub fn pid_file_is_init(&self) -> bool {
        !self.gvisor
    }

    /// The hybrid-host cgroup2 mount being hidden, if any.
    pub fn hidden_mount(&self) -> Option<&Path> {
        self.hide_mount.as_deref()
    }

    fn command(&self, pass_fd: Option<&OwnedFd>) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--root").arg(&self.root).args(&self.global_args);
        cmd.kill_on_drop(true);
        ChildSetup {
            hide_mount: self.hide_mount.clone(),
            pass_fd: pass_fd.map(|f| f.as_raw_fd()),
        }
        .apply(&mut cmd);
        cmd
    }

    /// Creates and starts container `id` from `bundle`, detached. `listener`
    /// (only where [`Runtime::passes_fds`]) becomes the init's fd 3;
    /// `console` its stdout and stderr (also where the runtime reports
    /// errors, so they end up in the console log). The init's host pid is
    /// written to `pid_file`.
    pub async fn run_detached(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        listener: Option<&OwnedFd>,
        console: std::fs::File,
    ) -> Result<(), String> {
        let err = console.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = self.command(listener);
        cmd.args(["run", "--detach"]);
        if listener.is_some() {
            cmd.args(["--preserve-fds", "1"]);
        }
        cmd.arg("--pid-file")
            .arg(pid_file)
            .arg("--bundle")
            .arg(bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::from(console))
            .stderr(Stdio::from(err));
        let status = cmd
            .status()
            .await
            .map_err(|e| format!("cannot run {}: {e}", self.bin.display()))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("{} run {id} failed ({status})", self.bin.display()))
        }
    }

    /// Removes container `id` (with `force`, killing it first); succeeds if
    /// it does not exist.
    pub async fn delete(&self, id: &str, force: bool) -> Result<(), ProviderError> {
        let mut cmd = self.command(None);
        cmd.arg("delete");
        if force {
            cmd.arg("--force");
        }
        let out = cmd
            .arg(id)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| self.spawn_error(e))?;
        if out.status.success() {
            return Ok(());
        }
        let msg = String::from_utf8_lossy(&out.stderr);
        if not_found(&msg) {
            return Ok(());
        }
        Err(self.failed(format!("could not remove sandbox {id}"), "delete", &msg))
    }

    /// Freezes (`pause`) or thaws (`resume`) container `id`: crun and runc
    /// use the cgroup freezer (v1 `freezer.state` or v2 `cgroup.freeze`)
    /// and return once every task is frozen; runsc stops its sandbox's
    /// threads. The runtime records the result, so `state` says `paused`.
    pub async fn set_frozen(&self, id: &str, frozen: bool) -> Result<(), ProviderError> {
        let sub = if frozen { "pause" } else { "resume" };
        let out = self
            .command(None)
            .args([sub, id])
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| self.spawn_error(e))?;
        if out.status.success() {
            return Ok(());
        }
        let msg = String::from_utf8_lossy(&out.stderr);
        if not_found(&msg) {
            return Err(ProviderError::NotFound(format!("sandbox {id}")));
        }
        Err(self.failed(format!("could not {sub} sandbox {id}"), sub, &msg))
    }

    /// Under gVisor (no host freezer cgroup to read): whether the runtime
    /// says container `id` is paused. Always false for crun and runc.
    pub async fn gvisor_paused(&self, id: &stacyvm_core::SandboxId) -> bool {
        self.gvisor && matches!(self.state(id.as_str()).await, Ok(Some(s)) if s.status == "paused")
    }

    /// The state of container `id`, `None` if the runtime does not know it.
    pub async fn state(&self, id: &str) -> Result<Option<ContainerState>, ProviderError> {
        let out = self
            .command(None)
            .args(["state", id])
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| self.spawn_error(e))?;
        if !out.status.success() {
            let msg = String::from_utf8_lossy(&out.stderr);
            if not_found(&msg) {
                return Ok(None);
            }
            return Err(self.failed(
                format!("could not read the state of sandbox {id}"),
                "state",
                &msg,
            ));
        }
        serde_json::from_slice(&out.stdout).map(Some).map_err(|e| {
            self.failed(
                format!("could not read the state of sandbox {id}"),
                "state",
                &e,
            )
        })
    }

    /// All containers under our root.
    pub async fn list(&self) -> Result<Vec<ContainerState>, ProviderError> {
        let out = self
            .command(None)
            .args(["list", "--format", "json"])
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| self.spawn_error(e))?;
        if !out.status.success() {
            let msg = String::from_utf8_lossy(&out.stderr);
            return Err(self.failed("could not list the sandboxes", "list", &msg));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim().is_empty() || text.trim() == "null" {
            return Ok(Vec::new());
        }
        serde_json::from_str(&text)
            .map_err(|e| self.failed("could not list the sandboxes", "list", &e))
    }

    /// The runtime binary could not be run at all.
    fn spawn_error(&self, e: std::io::Error) -> ProviderError {
        ProviderError::unavailable_from(
            "the OCI runtime (providers.native.runtime) cannot be run",
            Private::at(self.bin.display(), e),
        )
    }

    /// A runtime call failed: `public` for clients, the runtime's own
    /// words (with its paths) for the log.
    fn failed(
        &self,
        public: impl Into<String>,
        subcommand: &str,
        why: &dyn std::fmt::Display,
    ) -> ProviderError {
        let why = why.to_string();
        ProviderError::internal(
            public,
            Private(format!(
                "{} {subcommand}: {}",
                self.bin.display(),
                why.trim()
            )),
        )
    }
}

/// runsc's global flags for our sandboxes: the agent binds its socket in
/// a host directory (`create`); the host writes files into the root
/// filesystem behind gVisor's back (`shared`); the network follows ours.
/// The spec's seccomp profile is not applied inside gVisor's kernel
/// (`--oci-seccomp` makes every thread creation fail with this runsc, and
/// the sandbox's system calls never reach the host kernel anyway).
fn gvisor_args(network: NetworkMode) -> Vec<String> {
    let net = match network {
        // gVisor's own stack with only loopback (its `sandbox` mode needs
        // a prepared network namespace with interfaces to copy).
        NetworkMode::None => "none",
        NetworkMode::Host => "host",
    };
    vec![
        "--host-uds=create".into(),
        "--file-access=shared".into(),
        format!("--network={net}"),
    ]
}

fn not_found(stderr: &str) -> bool {
    let m = stderr.to_ascii_lowercase();
    m.contains("does not exist") || m.contains("not found") || m.contains("no such file")
}
