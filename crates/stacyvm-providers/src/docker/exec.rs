//! Commands through the Engine exec API, and killing their process trees.
//!
//! Docker can start an exec but cannot kill one, and killing only the exec'd
//! process would leave its children (a `sleep` behind a shell) running and
//! holding the output pipe open. So every exec carries a unique token in
//! its environment (`STACYVM_EXEC_ID`), which all its descendants inherit,
//! even those that start a new session. To signal "the tree", a second exec
//! signals every process in the container whose environment holds that
//! token. This runs inside the container, works under runc and gVisor, and
//! needs only `sh`, `tr`, `grep` and `kill` in the image.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bytes::Bytes;
use futures::StreamExt;
use stacyvm_core::{ExecOutput, SandboxId, StreamKind};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::client::{is_no_such_container, is_not_running};
use super::{Inner, container_name};
use crate::{ExecEvent, ExecInput, ExecSession, ExecSpec, ProviderError, StreamOptions, TtySize};

/// Environment variable that marks every process of one exec.
pub const EXEC_TOKEN_VAR: &str = "STACYVM_EXEC_ID";

/// How long output may keep flowing after a tree was killed (a process
/// that escaped the kill could hold the stream open forever).
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(15);

/// Signals every process whose environment holds `$1` (the token) with
/// signal `$2`, repeating up to `$3` rounds while any was found (a tree
/// that forks while being killed is caught by the next round). Lower pids
/// first: the command's own shell is signalled before its children, so a
/// `trap` runs before the `wait` it sits in returns.
const SIGNAL_TREE_SCRIPT: &str = r#"tok="STACYVM_EXEC_ID=$1"; sig=$2; rounds=$3
while [ "$rounds" -gt 0 ]; do
  pids=""
  for d in /proc/[0-9]*; do
    if tr '\0' '\n' <"$d/environ" 2>/dev/null | grep -qxF "$tok"; then
      pids="$pids ${d#/proc/}"
    fi
  done
  [ -z "$pids" ] && break
  kill -s "$sig" $(for p in $pids; do echo "$p"; done | sort -n) 2>/dev/null
  rounds=$((rounds-1))
done"#;

/// A started exec, before its output is pumped.
struct Started {
    exec_id: String,
    output: Output,
    input: Pin<Box<dyn AsyncWrite + Send>>,
}

fn new_token() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..24)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
        .collect()
}

/// Runs a command to completion, collecting its output (the file helper
/// scripts use it).
pub(crate) async fn run(
    inner: &Arc<Inner>,
    id: &SandboxId,
    spec: &ExecSpec,
) -> Result<ExecOutput, ProviderError> {
    let session = start(inner, id, spec, StreamOptions::default()).await?;
    crate::exec::collect(session, spec)
        .await
        .unwrap_or_else(|| {
            Err(ProviderError::unavailable(format!(
                "lost the exec stream of sandbox {id} before the command ended"
            )))
        })
}

/// Starts a command and spawns the task that pumps its output, enforces
/// its timeout and forwards its input.
pub(crate) async fn start(
    inner: &Arc<Inner>,
    id: &SandboxId,
    spec: &ExecSpec,
    options: StreamOptions,
) -> Result<ExecSession, ProviderError> {
    if spec.argv.is_empty() || spec.argv[0].is_empty() {
        return Err(ProviderError::InvalidInput("empty command".into()));
    }
    if !spec.workdir.is_empty() && !spec.workdir.starts_with('/') {
        return Err(ProviderError::InvalidInput(format!(
            "workdir {} is not an absolute path",
            spec.workdir
        )));
    }
    let mut env = Vec::with_capacity(spec.env.len() + 1);
    for (k, v) in &spec.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(ProviderError::InvalidInput(format!(
                "invalid environment variable name {k:?}"
            )));
        }
        env.push(format!("{k}={v}"));
    }
    let token = new_token();
    env.push(format!("{EXEC_TOKEN_VAR}={token}"));

    let docker = inner.client.get()?;
    let container = container_name(id);
    let interactive = options.stdin || options.tty.is_some();
    let cmd = match options.tty {
        Some(size) => tty_argv(size, &spec.argv),
        None => spec.argv.clone(),
    };
    let config = ExecConfig {
        attach_stdin: Some(interactive),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(options.tty.is_some()),
        env: Some(env),
        cmd: Some(cmd),
        working_dir: (!spec.workdir.is_empty()).then(|| spec.workdir.clone()),
        ..Default::default()
    };
    let started = start_exec(
        inner,
        &docker,
        id,
        &container,
        config,
        options.tty.is_some(),
    )
    .await?;
    if let Some(size) = options.tty {
        resize(&docker, &started.exec_id, size).await;
    }

    let (tx, rx) = mpsc::channel(64);
    let (in_tx, in_rx) = if interactive {
        let (t, r) = mpsc::channel(64);
        (Some(t), Some(r))
    } else {
        (None, None)
    };
    let pump = Pump {
        docker,
        container,
        token,
        timeout: spec.timeout,
        began: Instant::now(),
        tx,
    };
    tokio::spawn(pump.run(started, in_rx));
    Ok(ExecSession {
        input: in_tx,
        output: rx,
    })
}

/// Sets the terminal size before the command starts: API 1.41 (Docker
/// 20.10) cannot pass it at creation, and a resize after the start races
/// with a command that reads the size at once.
fn tty_argv(size: TtySize, argv: &[String]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "/bin/sh".into(),
        "-c".into(),
        r#"stty cols "$1" rows "$2" 2>/dev/null; shift 2; exec "$@""#.into(),
        "stacyvm-tty".into(),
        size.cols.max(1).to_string(),
        size.rows.max(1).to_string(),
    ];
    v.extend(argv.iter().cloned());
    v
}

async fn start_exec(
    inner: &Inner,
    docker: &Docker,
    id: &SandboxId,
    container: &str,
    config: ExecConfig,
    tty: bool,
) -> Result<Started, ProviderError> {
    let what = format!("sandbox {id}");
    let created = docker
        .create_exec(container, config)
        .await
        .map_err(|e| exec_error(inner, e, id))?;
    let opts = StartExecOptions {
        detach: false,
        tty,
        output_capacity: None,
    };
    match docker.start_exec(&created.id, Some(opts)).await {
        Ok(StartExecResults::Attached { output, input }) => Ok(Started {
            exec_id: created.id,
            output,
            input,
        }),
        Ok(StartExecResults::Detached) => Err(ProviderError::failed(format!(
            "{what}: exec started detached"
        ))),
        Err(e) => Err(exec_error(inner, e, id)),
    }
}

fn exec_error(inner: &Inner, e: bollard::errors::Error, id: &SandboxId) -> ProviderError {
    if is_no_such_container(&e) {
        return ProviderError::NotFound(format!("sandbox {id}"));
    }
    if is_not_running(&e) {
        return ProviderError::Conflict(format!("sandbox {id} is not running"));
    }
    inner.client.map(e, &format!("sandbox {id}"))
}

async fn resize(docker: &Docker, exec_id: &str, size: TtySize) {
    let opts = bollard::query_parameters::ResizeExecOptions {
        h: i32::from(size.rows.max(1)),
        w: i32::from(size.cols.max(1)),
    };
    if let Err(e) = docker.resize_exec(exec_id, opts).await {
        tracing::debug!(exec_id, error = %e, "resizing exec tty failed");
    }
}

/// Maps a signal name (`SIGINT`, `INT`, `sigterm`) to the name `kill -s`
/// takes, refusing anything else so it can be passed to a shell safely.
pub(crate) fn signal_name(name: &str) -> Option<&'static str> {
    const KNOWN: [&str; 12] = [
        "HUP", "INT", "QUIT", "KILL", "TERM", "USR1", "USR2", "STOP", "CONT", "ALRM", "WINCH",
        "TSTP",
    ];
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    KNOWN.iter().copied().find(|k| *k == bare)
}

/// Sends `signal` to every process of the exec marked with `token`.
pub(crate) async fn signal_tree(docker: &Docker, container: &str, token: &str, signal: &str) {
    let rounds = if signal == "KILL" { "10" } else { "1" };
    let config = ExecConfig {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            SIGNAL_TREE_SCRIPT.into(),
            "stacyvm-signal".into(),
            token.into(),
            signal.into(),
            rounds.into(),
        ]),
        ..Default::default()
    };
    let run = async {
        let created = docker.create_exec(container, config).await?;
        if let StartExecResults::Attached { mut output, .. } =
            docker.start_exec(&created.id, None).await?
        {
            while output.next().await.is_some() {}
        }
        Ok::<_, bollard::errors::Error>(())
    };
    match tokio::time::timeout(Duration::from_secs(30), run).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(container, signal, error = %e, "signalling exec tree failed"),
        Err(_) => tracing::warn!(container, signal, "signalling exec tree timed out"),
    }
}

/// Exit code of a finished exec; waits briefly for Docker to record it.
/// `None`: Docker no longer knows the exec (its container was removed).
async fn exit_code(docker: &Docker, exec_id: &str) -> Option<i32> {
    for _ in 0..250 {
        match docker.inspect_exec(exec_id).await {
            Ok(info) if info.running != Some(true) => {
                return Some(info.exit_code.map_or(-1, |c| c as i32));
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(_) => return None,
        }
    }
    Some(-1)
}

/// The task that owns a running exec.
struct Pump {
    docker: Docker,
    container: String,
    token: String,
    timeout: Duration,
    began: Instant,
    tx: mpsc::Sender<ExecEvent>,
}

fn event(chunk: LogOutput) -> Option<ExecEvent> {
    match chunk {
        LogOutput::StdOut { message } | LogOutput::Console { message } => {
            Some(ExecEvent::Output(StreamKind::Stdout, message))
        }
        LogOutput::StdErr { message } => Some(ExecEvent::Output(StreamKind::Stderr, message)),
        LogOutput::StdIn { .. } => None,
    }
}

async fn recv_input(rx: &mut Option<mpsc::Receiver<ExecInput>>) -> Option<ExecInput> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

type Output =
    Pin<Box<dyn futures::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;

/// How long a timed-out command's remaining output may wait for a reader.
const FORWARD_GRACE: Duration = Duration::from_millis(200);

/// Why the pump stopped forwarding.
enum End {
    Finished,
    TimedOut,
    Abandoned,
}

impl Pump {
    /// Kills the tree while still reading its output. Docker handles the
    /// exits of one container's execs in order, and an exec's exit waits
    /// until its output is delivered: an unread stream would stall the
    /// kill exec itself (and every later exec) behind it.
    async fn kill_and_drain(&self, output: &mut Output, forward: bool) {
        let kill = signal_tree(&self.docker, &self.container, &self.token, "KILL");
        let drain = async {
            while let Some(Ok(chunk)) = output.next().await {
                if forward && let Some(ev) = event(chunk) {
                    let _ = tokio::time::timeout(FORWARD_GRACE, self.tx.send(ev)).await;
                }
            }
        };
        let _ = tokio::join!(kill, tokio::time::timeout(DRAIN_AFTER_KILL, drain));
    }

    /// Sends a signal from a task of its own, so output keeps flowing
    /// while the signalling exec runs (see [`Pump::kill_and_drain`]).
    fn signal(&self, sig: &'static str) {
        let (docker, container, token) = (
            self.docker.clone(),
            self.container.clone(),
            self.token.clone(),
        );
        tokio::spawn(async move { signal_tree(&docker, &container, &token, sig).await });
    }

    async fn run(self, started: Started, mut in_rx: Option<mpsc::Receiver<ExecInput>>) {
        let Started {
            exec_id,
            mut output,
            mut input,
        } = started;
        // A zero timeout means none.
        let limit = if self.timeout.is_zero() {
            Duration::from_secs(100 * 365 * 24 * 3600)
        } else {
            self.timeout
        };
        let deadline = tokio::time::sleep(limit);
        tokio::pin!(deadline);
        let end = loop {
            tokio::select! {
                biased;
                // The caller went away: its command goes with it.
                _ = self.tx.closed() => break End::Abandoned,
                _ = &mut deadline => break End::TimedOut,
                msg = recv_input(&mut in_rx) => match msg {
                    Some(ExecInput::Stdin(b)) => {
                        if input.write_all(&b).await.is_ok() {
                            let _ = input.flush().await;
                        }
                    }
                    Some(ExecInput::CloseStdin) => {
                        let _ = input.shutdown().await;
                    }
                    Some(ExecInput::Resize(size)) => resize(&self.docker, &exec_id, size).await,
                    Some(ExecInput::Signal(name)) => match signal_name(&name) {
                        Some(sig) => self.signal(sig),
                        None => tracing::debug!(signal = %name, "ignoring unknown signal"),
                    },
                    None => in_rx = None,
                },
                item = output.next() => match item {
                    Some(Ok(chunk)) => {
                        let Some(ev) = event(chunk) else { continue };
                        // A reader that stops reading must not keep the
                        // command alive past its deadline.
                        tokio::select! {
                            sent = self.tx.send(ev) => if sent.is_err() {
                                break End::Abandoned;
                            },
                            _ = &mut deadline => break End::TimedOut,
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(container = %self.container, error = %e, "exec output stream failed");
                        break End::Finished;
                    }
                    None => break End::Finished,
                },
            }
        };
        let timed_out = match end {
            End::Abandoned => {
                self.kill_and_drain(&mut output, false).await;
                return;
            }
            End::TimedOut => {
                self.kill_and_drain(&mut output, true).await;
                let note = format!(
                    "stacyvm: command timed out after {:?}; its process tree was killed\n",
                    self.timeout
                );
                let _ = self
                    .tx
                    .send(ExecEvent::Output(StreamKind::Stderr, Bytes::from(note)))
                    .await;
                true
            }
            End::Finished => false,
        };
        drop(input);
        drop(output);
        // Without an exit status the session just ends: the sandbox went
        // away under the command (see `Provider::exec_stream`).
        let Some(exit_code) = exit_code(&self.docker, &exec_id).await else {
            return;
        };
        let _ = self
            .tx
            .send(ExecEvent::Exit {
                exit_code,
                duration: self.began.elapsed(),
                timed_out,
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_signal_names() {
        assert_eq!(signal_name("SIGINT"), Some("INT"));
        assert_eq!(signal_name("term"), Some("TERM"));
        assert_eq!(signal_name("SIGKILL"), Some("KILL"));
        assert_eq!(signal_name("KILL; rm -rf /"), None);
        assert_eq!(signal_name(""), None);
    }

    #[test]
    fn tokens_are_unique_hex() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
