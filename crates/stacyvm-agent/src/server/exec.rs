//! One exec session: start the command, pump its output into frames, feed
//! it input, enforce its timeout and report how it ended.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use super::reaper::Reaper;
use super::spawn::{self, ChildStdio};
use super::tree;
use crate::codec::{Frame, FrameKind, read_frame};
use crate::log;
use crate::protocol::{ExecRequest, ExitStatus, Response, SignalRequest, WindowSize};

/// How long output may keep flowing after the command exits (a background
/// process that inherited stdout would otherwise hold the exec open).
const OUTPUT_GRACE: Duration = Duration::from_millis(500);
const CHUNK: usize = 32 * 1024;
/// How long the agent waits for a finished command's remaining processes
/// to die and be reaped before it reports the exit anyway.
const TREE_GRACE: Duration = Duration::from_secs(5);

type Writer = Arc<Mutex<UnixStream>>;

/// Whether the agent raises ^C, ^\ and ^Z itself (see [`write_tty`]).
static TTY_SIGNALS: AtomicBool = AtomicBool::new(false);

/// Makes the agent turn a terminal's interrupt, quit and suspend
/// characters into signals itself, for kernels whose terminal passes them
/// through as data (gVisor's, as packaged in Debian 12). Never needed on
/// Linux, where doing it as well would signal twice.
pub fn emulate_tty_signals() {
    TTY_SIGNALS.store(true, Ordering::SeqCst);
}

fn send(w: &Writer, frame: &Frame) -> bool {
    let mut s = w.lock().unwrap_or_else(|e| e.into_inner());
    frame.write_to(&mut *s).is_ok()
}

/// Where the command's input goes.
enum Input {
    None,
    Pipe(File),
    Tty(File),
}

/// Runs `req` on `conn` to the end.
pub fn run(reaper: &Reaper, conn: UnixStream, req: ExecRequest) {
    let started = Instant::now();
    let writer: Writer = match conn.try_clone() {
        Ok(c) => Arc::new(Mutex::new(c)),
        Err(e) => {
            log!("exec: cannot clone connection: {e}");
            return;
        }
    };
    let marker = tree::new_marker();
    let mut env = environment(&req);
    // Last, so a request cannot take it off its command.
    env.insert(tree::MARKER.to_string(), marker.clone());

    // A command that cannot start is reported like a shell would: a message
    // on stderr and 126/127. That includes a sandbox whose /dev/ptmx a
    // command removed: it is the sandbox's state, not a provider failure.
    let not_started = |message: &str, exit_code: i32| {
        send(
            &writer,
            &Frame::json(FrameKind::Response, &Response::Started { pid: 0 }),
        );
        let line = format!("stacyvm-agent: {message}\n");
        send(&writer, &Frame::new(FrameKind::Stderr, line.into_bytes()));
        let exit = ExitStatus {
            exit_code,
            duration_ms: started.elapsed().as_millis() as u64,
            ..Default::default()
        };
        send(&writer, &Frame::json(FrameKind::Exit, &exit));
        let _ = conn.shutdown(Shutdown::Both);
    };

    let (stdio, input, outputs, tty_master) = match plumbing(&req) {
        Ok(p) => p,
        Err(e) => {
            return not_started(
                &format!("cannot set up the command's input and output: {e}"),
                126,
            );
        }
    };

    let child = match spawn::spawn(reaper, &req.argv, &env, &req.workdir, stdio) {
        Ok(c) => c,
        Err(e) => return not_started(&e.message, e.exit_code),
    };
    let pgid = Pid::from_raw(child.pid);
    send(
        &writer,
        &Frame::json(FrameKind::Response, &Response::Started { pid: child.pid }),
    );

    let (done_tx, done_rx) = mpsc::channel::<()>();
    let n_pumps = outputs.len();
    for (kind, fd) in outputs {
        let w = Arc::clone(&writer);
        let tx = done_tx.clone();
        let _ = std::thread::Builder::new()
            .name("pump".into())
            .spawn(move || {
                pump(File::from(fd), kind, &w);
                let _ = tx.send(());
            });
    }
    drop(done_tx);

    let finished = Arc::new(AtomicBool::new(false));
    {
        let finished = Arc::clone(&finished);
        let mut conn = conn;
        let _ = std::thread::Builder::new()
            .name("input".into())
            .spawn(move || feed(&mut conn, input, tty_master, pgid, &finished));
    }

    let mut timed_out = false;
    let status = if req.timeout_ms > 0 {
        match child
            .status
            .recv_timeout(Duration::from_millis(req.timeout_ms))
        {
            Ok(s) => Some(s),
            Err(RecvTimeoutError::Timeout) => {
                timed_out = true;
                let _ = killpg(pgid, Signal::SIGKILL);
                child.status.recv().ok()
            }
            Err(RecvTimeoutError::Disconnected) => None,
        }
    } else {
        child.status.recv().ok()
    };
    // The command is over: so is everything it started (see `tree`).
    if !tree::end(pgid, &marker, TREE_GRACE) {
        log!("exec: processes of a finished command survived SIGKILL for {TREE_GRACE:?}");
    }

    let grace_end = Instant::now() + OUTPUT_GRACE;
    for _ in 0..n_pumps {
        let left = grace_end.saturating_duration_since(Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            break;
        }
    }

    let (exit_code, signal) = match status {
        Some(WaitStatus::Exited(_, code)) => (code, None),
        Some(WaitStatus::Signaled(_, sig, _)) => (128 + sig as i32, Some(sig as i32)),
        _ => (255, None),
    };
    finished.store(true, Ordering::SeqCst);
    let exit = ExitStatus {
        exit_code,
        signal,
        timed_out,
        duration_ms: started.elapsed().as_millis() as u64,
    };
    send(&writer, &Frame::json(FrameKind::Exit, &exit));
    let w = writer.lock().unwrap_or_else(|e| e.into_inner());
    let _ = w.shutdown(Shutdown::Both);
}

/// The agent's environment overlaid with the request's.
fn environment(req: &ExecRequest) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = std::env::vars().collect();
    env.entry("PATH".into())
        .or_insert_with(|| spawn::DEFAULT_PATH.into());
    if req.tty.is_some() {
        env.entry("TERM".into())
            .or_insert_with(|| "xterm-256color".into());
    }
    env.extend(req.env.clone());
    env
}

type Plumbing = (ChildStdio, Input, Vec<(FrameKind, OwnedFd)>, Option<File>);

/// The child's stdio and our ends of it.
fn plumbing(req: &ExecRequest) -> std::io::Result<Plumbing> {
    if let Some(WindowSize { cols, rows }) = req.tty {
        let (master, slave) = spawn::open_pty(cols.max(1), rows.max(1))?;
        let stdio = ChildStdio {
            stdin: slave.try_clone()?,
            stdout: slave.try_clone()?,
            stderr: slave,
            tty: true,
        };
        let input = Input::Tty(File::from(master.try_clone()?));
        let resize = File::from(master.try_clone()?);
        return Ok((
            stdio,
            input,
            vec![(FrameKind::Stdout, master)],
            Some(resize),
        ));
    }
    let (stdin, input) = if req.stdin {
        let (r, w) = spawn::pipe()?;
        (r, Input::Pipe(File::from(w)))
    } else {
        (spawn::empty_input()?, Input::None)
    };
    let (out_r, out_w) = spawn::pipe()?;
    let (err_r, err_w) = spawn::pipe()?;
    let stdio = ChildStdio {
        stdin,
        stdout: out_w,
        stderr: err_w,
        tty: false,
    };
    Ok((
        stdio,
        input,
        vec![(FrameKind::Stdout, out_r), (FrameKind::Stderr, err_r)],
        None,
    ))
}

/// Copies one output stream into frames until it ends (EOF, or EIO on a
/// pty master once the terminal is gone).
fn pump(mut src: File, kind: FrameKind, w: &Writer) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match src.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if !send(w, &Frame::new(kind, buf[..n].to_vec())) {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Applies client frames until the connection ends; a connection that ends
/// before the command does kills the command's process group.
fn feed(
    conn: &mut UnixStream,
    mut input: Input,
    tty_master: Option<File>,
    pgid: Pid,
    finished: &AtomicBool,
) {
    while let Ok(Some(frame)) = read_frame(conn) {
        match frame.kind {
            FrameKind::Stdin => {
                let ok = match &mut input {
                    Input::Tty(f) if TTY_SIGNALS.load(Ordering::Relaxed) => {
                        write_tty(f, &frame.payload, pgid).is_ok()
                    }
                    Input::Pipe(f) | Input::Tty(f) => f.write_all(&frame.payload).is_ok(),
                    Input::None => true,
                };
                if !ok {
                    input = Input::None;
                }
            }
            FrameKind::CloseStdin => {
                if let Input::Tty(f) = &mut input {
                    // EOF on a terminal is ^D at the start of a line.
                    let _ = f.write_all(&[4]);
                } else {
                    input = Input::None;
                }
            }
            FrameKind::Resize => {
                if let (Some(m), Ok(ws)) = (&tty_master, frame.parse::<WindowSize>()) {
                    let _ = spawn::set_window_size(m.as_raw_fd(), ws.cols, ws.rows);
                }
            }
            FrameKind::Signal => {
                if let Ok(req) = frame.parse::<SignalRequest>() {
                    match parse_signal(&req.signal) {
                        Some(sig) if !finished.load(Ordering::SeqCst) => {
                            let _ = killpg(pgid, sig);
                        }
                        Some(_) => {}
                        None => log!("exec: unknown signal {}", req.signal),
                    }
                }
            }
            _ => {}
        }
    }
    if !finished.load(Ordering::SeqCst) {
        let _ = killpg(pgid, Signal::SIGKILL);
    }
}

/// Writes terminal input, doing the line discipline's signal part: with
/// `ISIG` on, each interrupt/quit/suspend character is dropped and its
/// signal sent to the terminal's foreground process group (the command's
/// group when the terminal cannot say).
fn write_tty(f: &mut File, data: &[u8], pgid: Pid) -> std::io::Result<()> {
    use nix::sys::termios::{LocalFlags, SpecialCharacterIndices as Cc, tcgetattr};
    let Ok(t) = tcgetattr(&*f) else {
        return f.write_all(data);
    };
    if !t.local_flags.contains(LocalFlags::ISIG) {
        return f.write_all(data);
    }
    let cc = t.control_chars;
    let keys = [
        (cc[Cc::VINTR as usize], Signal::SIGINT),
        (cc[Cc::VQUIT as usize], Signal::SIGQUIT),
        (cc[Cc::VSUSP as usize], Signal::SIGTSTP),
    ];
    let mut start = 0;
    for (i, b) in data.iter().enumerate() {
        let Some((_, sig)) = keys.iter().find(|(c, _)| *c != 0 && c == b) else {
            continue;
        };
        f.write_all(&data[start..i])?;
        start = i + 1;
        // Never group 0 or 1: that would be the agent's own.
        let group = nix::unistd::tcgetpgrp(&*f)
            .ok()
            .filter(|g| g.as_raw() > 1)
            .unwrap_or(pgid);
        let _ = killpg(group, *sig);
    }
    f.write_all(&data[start..])
}

/// `SIGINT`, `INT` or `2`.
pub fn parse_signal(name: &str) -> Option<Signal> {
    if let Ok(n) = name.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse().ok()
}
