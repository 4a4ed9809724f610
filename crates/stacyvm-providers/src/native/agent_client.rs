//! The host side of the agent protocol over the sandbox's Unix socket:
//! readiness checks and execs, one connection each.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use stacyvm_agent::codec::read_frame_async;
use stacyvm_agent::{
    AgentInfo, ExitStatus, Frame, FrameKind, PROTOCOL_VERSION, Request, Response, SignalRequest,
    WindowSize,
};
use stacyvm_core::{SandboxId, StreamKind};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

use crate::{ExecEvent, ExecInput, Private, ProviderError};

/// The agent of sandbox `id` did not answer properly. The socket path is
/// for the log only.
fn conn_err(id: &SandboxId, sock: &Path, e: impl std::fmt::Display) -> ProviderError {
    ProviderError::unavailable_from(
        format!("the agent of sandbox {id} did not answer"),
        Private::at(sock.display(), e),
    )
}

/// Connects to the agent's socket without following a link: under runsc
/// the socket sits in a directory the sandbox can write, and a link planted
/// there must not make the host connect to one of its own sockets. The
/// socket is opened `O_PATH | O_NOFOLLOW`, checked to be a socket, and
/// connected through its `/proc/self/fd` entry, so what was checked is
/// what gets connected.
async fn connect(sock: &Path) -> std::io::Result<UnixStream> {
    use rustix::fs::{FileType, Mode, OFlags};
    use std::os::fd::AsRawFd;
    let fd = rustix::fs::open(
        sock,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Socket {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a socket",
        ));
    }
    UnixStream::connect(format!("/proc/self/fd/{}", fd.as_raw_fd())).await
}

async fn send(w: &mut OwnedWriteHalf, frame: &Frame) -> std::io::Result<()> {
    w.write_all(&frame.encode()).await
}

/// Asks the agent who it is.
pub async fn info(id: &SandboxId, sock: &Path) -> Result<AgentInfo, ProviderError> {
    let stream = connect(sock).await.map_err(|e| conn_err(id, sock, e))?;
    let (mut r, mut w) = stream.into_split();
    let req = Request::Info {
        protocol: PROTOCOL_VERSION,
    };
    send(&mut w, &Frame::json(FrameKind::Request, &req))
        .await
        .map_err(|e| conn_err(id, sock, e))?;
    match read_frame_async(&mut r).await {
        Ok(Some(f)) if f.kind == FrameKind::Response => match f.parse::<Response>() {
            Ok(Response::Info(i)) => Ok(i),
            Ok(other) => Err(conn_err(id, sock, format!("unexpected answer {other:?}"))),
            Err(e) => Err(conn_err(id, sock, e)),
        },
        Ok(_) => Err(conn_err(id, sock, "closed without answering")),
        Err(e) => Err(conn_err(id, sock, e)),
    }
}

/// Polls [`info`] until the agent answers or `timeout` passes.
pub async fn wait_ready(
    id: &SandboxId,
    sock: &Path,
    timeout: Duration,
) -> Result<AgentInfo, ProviderError> {
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(1);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let err = match tokio::time::timeout(left, info(id, sock)).await {
            Ok(Ok(i)) => return Ok(i),
            Ok(Err(e)) => e,
            Err(_) => conn_err(id, sock, "no answer"),
        };
        if Instant::now() >= deadline {
            return Err(err);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}

/// An exec that the agent has started.
#[derive(Debug)]
pub struct Started {
    pub read: OwnedReadHalf,
    pub write: OwnedWriteHalf,
}

/// Connects and starts `req`.
pub async fn start(
    id: &SandboxId,
    sock: &Path,
    req: stacyvm_agent::ExecRequest,
) -> Result<Started, ProviderError> {
    let stream = connect(sock).await.map_err(|e| conn_err(id, sock, e))?;
    let (mut read, mut write) = stream.into_split();
    send(
        &mut write,
        &Frame::json(FrameKind::Request, &Request::Exec(req)),
    )
    .await
    .map_err(|e| conn_err(id, sock, e))?;
    match read_frame_async(&mut read).await {
        Ok(Some(f)) if f.kind == FrameKind::Response => match f.parse::<Response>() {
            Ok(Response::Started { .. }) => Ok(Started { read, write }),
            Ok(Response::Error { message }) => Err(ProviderError::failed(format!(
                "the agent of sandbox {id} refused the command: {message}"
            ))),
            Ok(other) => Err(conn_err(id, sock, format!("unexpected answer {other:?}"))),
            Err(e) => Err(conn_err(id, sock, e)),
        },
        Ok(_) => Err(conn_err(id, sock, "closed without answering")),
        Err(e) => Err(conn_err(id, sock, e)),
    }
}

/// Pumps an exec between the agent and a session's channels until `Exit`,
/// or until the session's output receiver is dropped (which drops the
/// connection, and the agent then kills the command).
pub async fn pump(
    s: Started,
    mut input: Option<mpsc::Receiver<ExecInput>>,
    out: mpsc::Sender<ExecEvent>,
    timeout: Duration,
) {
    let Started {
        mut read,
        mut write,
    } = s;
    loop {
        tokio::select! {
            frame = read_frame_async(&mut read) => {
                let event = match frame {
                    Ok(Some(f)) => match f.kind {
                        FrameKind::Stdout => ExecEvent::Output(StreamKind::Stdout, Bytes::from(f.payload)),
                        FrameKind::Stderr => ExecEvent::Output(StreamKind::Stderr, Bytes::from(f.payload)),
                        FrameKind::Exit => {
                            let exit: ExitStatus = f.parse().unwrap_or(ExitStatus { exit_code: -1, ..Default::default() });
                            if exit.timed_out {
                                let note = format!("command timed out after {timeout:?} and was killed\n");
                                let _ = out.send(ExecEvent::Output(StreamKind::Stderr, Bytes::from(note))).await;
                            }
                            let _ = out.send(ExecEvent::Exit {
                                exit_code: exit.exit_code,
                                duration: Duration::from_millis(exit.duration_ms),
                                timed_out: exit.timed_out,
                            }).await;
                            return;
                        }
                        _ => continue,
                    },
                    // No exit status: the session just ends (see
                    // `Provider::exec_stream`), so a sandbox destroyed under
                    // the command is told apart from a command that failed.
                    Ok(None) | Err(_) => {
                        let note = Bytes::from_static(b"lost the connection to the sandbox agent\n");
                        let _ = out.send(ExecEvent::Output(StreamKind::Stderr, note)).await;
                        return;
                    }
                };
                if out.send(event).await.is_err() {
                    return;
                }
            }
            msg = recv(&mut input) => {
                let frame = match msg {
                    Some(ExecInput::Stdin(b)) => Frame::new(FrameKind::Stdin, b.to_vec()),
                    Some(ExecInput::CloseStdin) => Frame::new(FrameKind::CloseStdin, Vec::new()),
                    Some(ExecInput::Resize(sz)) => Frame::json(FrameKind::Resize, &WindowSize { cols: sz.cols, rows: sz.rows }),
                    Some(ExecInput::Signal(name)) => Frame::json(FrameKind::Signal, &SignalRequest { signal: name }),
                    None => { input = None; continue; }
                };
                if send(&mut write, &frame).await.is_err() {
                    input = None;
                }
            }
            _ = out.closed() => return,
        }
    }
}

/// Next input, or pending forever when there is no input channel.
async fn recv(input: &mut Option<mpsc::Receiver<ExecInput>>) -> Option<ExecInput> {
    match input {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connects_to_a_socket_but_never_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("agent.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&real).unwrap();
        connect(&real).await.expect("the socket itself");

        let link = dir.path().join("planted.sock");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(connect(&link).await.is_err(), "followed a symlink");

        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let err = connect(&file).await.unwrap_err();
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert!(connect(&dir.path().join("missing")).await.is_err());
    }
}
