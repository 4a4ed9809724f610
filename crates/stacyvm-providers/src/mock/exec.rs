//! Running a command of a mock sandbox as a host process: its own process
//! group (so a timeout or a dropped stream kills the whole tree), output
//! forwarded in order through one channel, optional stdin and signals.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustix::process::{Pid, Signal, kill_process_group};
use stacyvm_core::StreamKind;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;
use tokio::time::Sleep;

use crate::{ExecEvent, ExecInput, ExecSession, ProviderError, TtySize};

/// After the command exits, output is still collected until its pipes are
/// quiet this long (background children may keep them open)...
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);
/// ...or at most this long.
const DRAIN_MAX: Duration = Duration::from_secs(5);

/// Exit code reported for a command killed by its timeout (128 + SIGKILL).
pub(super) const TIMEOUT_EXIT_CODE: i32 = 137;

const READ_BUF: usize = 32 * 1024;

/// A command ready to start.
#[derive(Debug)]
pub(super) struct Launch {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
    /// `Duration::ZERO` means no timeout.
    pub timeout: Duration,
    pub stdin: bool,
    /// Run under a pseudo-terminal of this size.
    pub tty: Option<TtySize>,
}

/// Called once when the command has finished (exit code, timed out) and
/// when a process group starts or ends, so the sandbox can track both.
pub(super) trait Observer: Send + Sync + 'static {
    fn started(&self, pgid: i32);
    fn finished(&self, pgid: i32, argv0: &str, outcome: Outcome);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Exited(i32),
    TimedOut,
    Abandoned,
}

/// Sends `sig` to the process group `pgid`; a group that is gone is fine.
pub(super) fn signal_group(pgid: i32, sig: Signal) {
    if let Some(pid) = Pid::from_raw(pgid) {
        let _ = kill_process_group(pid, sig);
    }
}

/// Waits (at most 2 s) until every process of `groups` is stopped, read
/// from `/proc/<pid>/stat` (state `T`), so a pause is complete on return.
pub(super) async fn wait_stopped(groups: &[i32]) {
    if groups.is_empty() {
        return;
    }
    let groups = groups.to_vec();
    let _ = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while std::time::Instant::now() < deadline && !all_stopped(&groups) {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    })
    .await;
}

fn all_stopped(groups: &[i32]) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    for e in entries.flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp ...`; comm may hold spaces.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let (Some(state), _, Some(pgrp)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let Ok(pgrp) = pgrp.parse::<i32>() else {
            continue;
        };
        if groups.contains(&pgrp) && !matches!(state, "T" | "t" | "Z" | "X") {
            return false;
        }
    }
    true
}

/// Whether any process of group `pgid` is still alive.
pub(super) fn group_alive(pgid: i32) -> bool {
    Pid::from_raw(pgid).is_some_and(|pid| rustix::process::test_kill_process_group(pid).is_ok())
}

/// A signal from its name (`SIGINT`, `INT`, `sigterm`, ...).
pub(super) fn parse_signal(name: &str) -> Option<Signal> {
    let upper = name.trim().to_ascii_uppercase();
    let short = upper.strip_prefix("SIG").unwrap_or(&upper);
    Some(match short {
        "HUP" => Signal::HUP,
        "INT" => Signal::INT,
        "QUIT" => Signal::QUIT,
        "KILL" => Signal::KILL,
        "TERM" => Signal::TERM,
        "USR1" => Signal::USR1,
        "USR2" => Signal::USR2,
        "ALRM" => Signal::ALARM,
        "STOP" => Signal::STOP,
        "CONT" => Signal::CONT,
        "TSTP" => Signal::TSTP,
        "WINCH" => Signal::WINCH,
        "PIPE" => Signal::PIPE,
        _ => return None,
    })
}

/// Gives the command default signal dispositions. A server started in the
/// background (`nohup`, `&` in a script, some CI runners) ignores SIGINT and
/// SIGQUIT, and ignored signals survive exec: without this, a client's
/// ^C or `SIGINT` would never reach the command.
#[allow(unsafe_code)]
fn default_signals(cmd: &mut tokio::process::Command) {
    // SAFETY: the closure runs between fork and exec and calls only
    // `signal`, which is async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            for sig in 1..32 {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                    libc::signal(sig, libc::SIG_DFL);
                }
            }
            Ok(())
        });
    }
}

/// Starts `launch` and returns its session; the command runs on a task that
/// owns it until it ends or the output receiver goes away.
pub(super) fn start(
    launch: Launch,
    observer: std::sync::Arc<dyn Observer>,
) -> Result<ExecSession, ProviderError> {
    let Some(program) = launch.argv.first().cloned() else {
        return Err(ProviderError::InvalidInput("command is empty".into()));
    };
    let (tx, rx) = mpsc::channel(64);
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(&launch.argv[1..])
        .env_clear()
        .envs(&launch.env)
        .current_dir(&launch.cwd)
        .kill_on_drop(true);
    default_signals(&mut cmd);
    let started = Instant::now();
    let spawned = match launch.tty {
        Some(size) => spawn_tty(cmd, size),
        None => spawn_piped(cmd, launch.stdin),
    };
    let Spawned {
        mut child,
        stdout,
        stderr,
        stdin,
    } = match spawned {
        Ok(s) => s,
        Err(e) => {
            // Like a shell: a missing or unrunnable program is a result
            // (127/126 with a message), not a provider failure.
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            let msg = format!("{program}: {e}\n");
            let _ = tx.try_send(ExecEvent::Output(StreamKind::Stderr, Bytes::from(msg)));
            let _ = tx.try_send(ExecEvent::Exit {
                exit_code: code,
                duration: started.elapsed(),
                timed_out: false,
            });
            observer.finished(0, &program, Outcome::Exited(code));
            return Ok(ExecSession {
                input: (launch.stdin || launch.tty.is_some()).then(|| mpsc::channel(1).0),
                output: rx,
            });
        }
    };
    let pgid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| ProviderError::failed(format!("{program}: exited before it started")))?;
    observer.started(pgid);

    let (input, input_task) = match stdin {
        Some(stdin) => {
            let (in_tx, in_rx) = mpsc::channel(16);
            let task = tokio::spawn(forward_input(in_rx, stdin, pgid, tx.downgrade()));
            (Some(in_tx), Some(task))
        }
        None => (None, None),
    };
    tokio::spawn(async move {
        let outcome = drive(
            &mut child,
            stdout,
            stderr,
            tx,
            pgid,
            launch.timeout,
            started,
        )
        .await;
        // The command is over: stop feeding it (a signal now could hit a
        // reused process group).
        if let Some(task) = input_task {
            task.abort();
        }
        observer.finished(pgid, &program, outcome);
    });
    Ok(ExecSession { input, output: rx })
}

type Reader = Box<dyn AsyncRead + Send + Unpin>;

/// Where a command's input goes.
enum Stdin {
    Pipe(ChildStdin),
    Tty(pty_process::OwnedWritePty),
}

struct Spawned {
    child: Child,
    stdout: Option<Reader>,
    stderr: Option<Reader>,
    stdin: Option<Stdin>,
}

/// Pipes for stdout/stderr (and stdin when asked), in a new process group.
fn spawn_piped(mut cmd: tokio::process::Command, stdin: bool) -> std::io::Result<Spawned> {
    cmd.process_group(0)
        .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    Ok(Spawned {
        stdout: child.stdout.take().map(|r| Box::new(r) as Reader),
        stderr: child.stderr.take().map(|r| Box::new(r) as Reader),
        stdin: child.stdin.take().map(Stdin::Pipe),
        child,
    })
}

/// A pseudo-terminal as stdin/stdout/stderr; the command leads a new
/// session (hence its own process group) with the terminal as its
/// controlling terminal, so ^C typed into it reaches it. Terminal output
/// arrives as stdout.
fn spawn_tty(mut cmd: tokio::process::Command, size: TtySize) -> std::io::Result<Spawned> {
    let pty_err = |e: pty_process::Error| match e {
        pty_process::Error::Io(e) => e,
        other => std::io::Error::other(other.to_string()),
    };
    cmd.env("TERM", "xterm-256color");
    let (pty, pts) = pty_process::open().map_err(pty_err)?;
    pty.resize(pty_process::Size::new(size.rows, size.cols))
        .map_err(pty_err)?;
    let child = pty_process::Command::from(cmd)
        .spawn(pts)
        .map_err(pty_err)?;
    let (read, write) = pty.into_split();
    Ok(Spawned {
        child,
        stdout: Some(Box::new(read)),
        stderr: None,
        stdin: Some(Stdin::Tty(write)),
    })
}

/// Feeds stdin and delivers signals and resizes until the sender side goes
/// away.
async fn forward_input(
    mut rx: mpsc::Receiver<ExecInput>,
    stdin: Stdin,
    pgid: i32,
    // Weak, so the output channel closes right after `Exit`.
    tx: mpsc::WeakSender<ExecEvent>,
) {
    let mut stdin = Some(stdin);
    while let Some(msg) = rx.recv().await {
        match msg {
            ExecInput::Stdin(data) => {
                let ok = match stdin.as_mut() {
                    Some(Stdin::Pipe(p)) => p.write_all(&data).await.is_ok(),
                    Some(Stdin::Tty(t)) => t.write_all(&data).await.is_ok(),
                    None => true,
                };
                if !ok {
                    stdin = None;
                }
            }
            ExecInput::CloseStdin => match stdin.as_mut() {
                // A terminal is never closed by its user: end-of-file is ^D.
                Some(Stdin::Tty(t)) => {
                    let _ = t.write_all(b"\x04").await;
                }
                _ => stdin = None,
            },
            ExecInput::Resize(size) => {
                if let Some(Stdin::Tty(t)) = &stdin {
                    let _ = t.resize(pty_process::Size::new(size.rows, size.cols));
                }
            }
            ExecInput::Signal(name) => match parse_signal(&name) {
                Some(sig) => signal_group(pgid, sig),
                None => {
                    if let Some(tx) = tx.upgrade() {
                        let msg = format!("unknown signal {name}\n");
                        let _ = tx
                            .send(ExecEvent::Output(StreamKind::Stderr, Bytes::from(msg)))
                            .await;
                    }
                }
            },
        }
    }
}

enum Sent {
    Ok,
    Closed,
    TimedOut,
}

/// Sends `ev`, but gives up when the deadline passes first: a client that
/// stops reading must not keep a command alive past its timeout.
async fn send(
    tx: &mpsc::Sender<ExecEvent>,
    ev: ExecEvent,
    deadline: &mut Option<Pin<Box<Sleep>>>,
) -> Sent {
    match deadline {
        Some(d) => tokio::select! {
            r = tx.send(ev) => if r.is_ok() { Sent::Ok } else { Sent::Closed },
            _ = d.as_mut() => Sent::TimedOut,
        },
        None => match tx.send(ev).await {
            Ok(()) => Sent::Ok,
            Err(_) => Sent::Closed,
        },
    }
}

async fn read_opt<R: AsyncRead + Unpin>(
    r: &mut Option<R>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    match r {
        Some(r) => r.read(buf).await,
        None => std::future::pending().await,
    }
}

async fn drive(
    child: &mut Child,
    mut stdout: Option<Reader>,
    mut stderr: Option<Reader>,
    tx: mpsc::Sender<ExecEvent>,
    pgid: i32,
    timeout: Duration,
    started: Instant,
) -> Outcome {
    let mut deadline = (!timeout.is_zero()).then(|| Box::pin(tokio::time::sleep(timeout)));
    let mut out_buf = vec![0u8; READ_BUF];
    let mut err_buf = vec![0u8; READ_BUF];
    let mut status: Option<ExitStatus> = None;
    // Armed when the command exits.
    let drain = tokio::time::sleep(Duration::from_secs(86_400));
    let drain_max = tokio::time::sleep(Duration::from_secs(86_400));
    tokio::pin!(drain, drain_max);

    let kill = |child: &mut Child| {
        signal_group(pgid, Signal::KILL);
        let _ = child.start_kill();
    };

    loop {
        if status.is_some() && stdout.is_none() && stderr.is_none() {
            break;
        }
        // Biased: pending output is read before the drain timer can end
        // the loop.
        let event = tokio::select! {
            biased;
            _ = tx.closed() => {
                kill(child);
                let _ = child.wait().await;
                return Outcome::Abandoned;
            }
            _ = async { deadline.as_mut().expect("guarded").as_mut().await },
                if deadline.is_some() && status.is_none() => {
                return timed_out(child, &tx, pgid, timeout, started).await;
            }
            _ = &mut drain_max, if status.is_some() => break,
            r = read_opt(&mut stdout, &mut out_buf) => match r {
                Ok(n) if n > 0 => Some(ExecEvent::Output(StreamKind::Stdout, Bytes::copy_from_slice(&out_buf[..n]))),
                _ => { stdout = None; None }
            },
            r = read_opt(&mut stderr, &mut err_buf) => match r {
                Ok(n) if n > 0 => Some(ExecEvent::Output(StreamKind::Stderr, Bytes::copy_from_slice(&err_buf[..n]))),
                _ => { stderr = None; None }
            },
            st = child.wait(), if status.is_none() => {
                match st {
                    Ok(st) => status = Some(st),
                    Err(e) => {
                        tracing::warn!(pgid, error = %e, "mock exec: wait failed");
                        kill(child);
                        return Outcome::Abandoned;
                    }
                }
                let now = tokio::time::Instant::now();
                drain.as_mut().reset(now + DRAIN_AFTER_EXIT);
                drain_max.as_mut().reset(now + DRAIN_MAX);
                None
            }
            _ = &mut drain, if status.is_some() => break,
        };
        if let Some(ev) = event {
            if status.is_some() {
                drain
                    .as_mut()
                    .reset(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
            }
            match send(&tx, ev, &mut deadline).await {
                Sent::Ok => {}
                Sent::Closed => {
                    kill(child);
                    let _ = child.wait().await;
                    return Outcome::Abandoned;
                }
                Sent::TimedOut if status.is_none() => {
                    return timed_out(child, &tx, pgid, timeout, started).await;
                }
                // The command already exited; only its leftovers remain.
                Sent::TimedOut => break,
            }
        }
    }
    let exit_code = status.map(exit_code).unwrap_or(-1);
    let _ = tx
        .send(ExecEvent::Exit {
            exit_code,
            duration: started.elapsed(),
            timed_out: false,
        })
        .await;
    Outcome::Exited(exit_code)
}

async fn timed_out(
    child: &mut Child,
    tx: &mpsc::Sender<ExecEvent>,
    pgid: i32,
    timeout: Duration,
    started: Instant,
) -> Outcome {
    signal_group(pgid, Signal::KILL);
    let _ = child.start_kill();
    let _ = child.wait().await;
    let msg = format!("exec timed out after {timeout:?}; process group killed\n");
    let exit = ExecEvent::Exit {
        exit_code: TIMEOUT_EXIT_CODE,
        duration: started.elapsed(),
        timed_out: true,
    };
    // The receiver may have stopped reading: do not wait on it forever.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        tx.send(ExecEvent::Output(StreamKind::Stderr, Bytes::from(msg)))
            .await?;
        tx.send(exit).await
    })
    .await;
    Outcome::TimedOut
}

fn exit_code(st: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    st.code()
        .or_else(|| st.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}
