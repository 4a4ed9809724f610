//! `process.Process/*`: commands started through the manager's streamed
//! exec, with E2B's pids (the server's own numbering) in a process table
//! so they can be listed, signalled and fed stdin while they run.
//!
//! `Start` streams `start`, `data` and `end` events, a keepalive every
//! `Keepalive-Ping-Interval` seconds (and at least every half deadline),
//! and ends the stream with
//! `deadline_exceeded` at its `Connect-Timeout-Ms` (the command is then
//! killed, as envd does). A command outlives its starting stream: `Connect`
//! (by pid or tag) streams its events again from then on.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::{Value, json};
use stacyvm_core::{ExecRequest, GoDuration, SandboxId, StreamKind};
use stacyvm_providers::{ExecEvent, ExecInput, TtySize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::E2b;
use super::connect::{self, Code, ConnectError};
use super::envd::{sandbox_path, target};
use crate::api::AppState;
use crate::manager::InteractiveRequest;

/// Running processes by pid.
#[derive(Debug, Default)]
pub struct Table {
    next: AtomicU32,
    procs: Mutex<HashMap<u32, Proc>>,
}

#[derive(Debug)]
struct Proc {
    sandbox: SandboxId,
    tag: Option<String>,
    config: Value,
    input: Option<mpsc::Sender<ExecInput>>,
    kill: CancellationToken,
    /// Streams joining the command (`Connect`): the relay sends them its
    /// events from then on.
    attach: mpsc::UnboundedSender<mpsc::Sender<Frame>>,
}

/// What the relay sends each stream: an event, or the stream's last
/// frames.
#[derive(Debug, Clone)]
enum Frame {
    Msg(Bytes),
    Last(Vec<Bytes>),
}

impl Table {
    fn insert(&self, p: Proc) -> u32 {
        let pid = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.procs.lock().expect("process table").insert(pid, p);
        pid
    }

    fn remove(&self, pid: u32) {
        self.procs.lock().expect("process table").remove(&pid);
    }

    pub fn forget_sandbox(&self, id: &SandboxId) {
        self.procs
            .lock()
            .expect("process table")
            .retain(|_, p| p.sandbox != *id);
    }

    /// The pid a selector names in sandbox `id`.
    fn select(&self, id: &SandboxId, sel: &Selector) -> Result<u32, ConnectError> {
        let procs = self.procs.lock().expect("process table");
        let found = match (sel.pid, sel.tag.as_deref()) {
            (Some(pid), _) => procs.get(&pid).filter(|p| p.sandbox == *id).map(|_| pid),
            (None, Some(tag)) => procs
                .iter()
                .find(|(_, p)| p.sandbox == *id && p.tag.as_deref() == Some(tag))
                .map(|(pid, _)| *pid),
            (None, None) => {
                return Err(ConnectError::invalid("process selector needs pid or tag"));
            }
        };
        found.ok_or_else(|| {
            ConnectError::new(
                Code::NotFound,
                match (sel.pid, &sel.tag) {
                    (Some(pid), _) => format!("process with pid {pid} not found"),
                    (_, tag) => format!(
                        "process with tag {} not found",
                        tag.as_deref().unwrap_or("")
                    ),
                },
            )
        })
    }

    fn with<T>(&self, pid: u32, f: impl FnOnce(&Proc) -> T) -> Option<T> {
        self.procs.lock().expect("process table").get(&pid).map(f)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ProcessConfig {
    cmd: String,
    args: Vec<String>,
    envs: BTreeMap<String, String>,
    cwd: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Size {
    cols: u32,
    rows: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Pty {
    size: Option<Size>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StartRequest {
    process: Option<ProcessConfig>,
    pty: Option<Pty>,
    tag: Option<String>,
    stdin: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Selector {
    pid: Option<u32>,
    tag: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Input {
    stdin: Option<String>,
    pty: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SelectorRequest {
    process: Option<Selector>,
    signal: Option<Value>,
    input: Option<Input>,
    pty: Option<Pty>,
}

/// `POST /process.Process/{method}`.
pub async fn rpc(
    State(app): State<AppState>,
    Extension(e2b): Extension<Arc<E2b>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let stream = connect::is_stream(&headers);
    let id = match target(&app, &e2b, &headers) {
        Ok(id) => id,
        Err(e) if stream => return ConnectError::from(e).into_stream_response(),
        Err(e) => return ConnectError::from(e).into_response(),
    };
    match (method.as_str(), stream) {
        ("Start", true) => match start(&app, &e2b, &id, &headers, &body).await {
            Ok(r) => r,
            Err(e) => e.into_stream_response(),
        },
        ("Connect", true) => match connect_stream(&app, &e2b, &id, &headers, &body).await {
            Ok(r) => r,
            Err(e) => e.into_stream_response(),
        },
        (_, true) => ConnectError::new(
            Code::Unimplemented,
            format!("process.Process/{method} is not a server stream"),
        )
        .into_stream_response(),
        (_, false) => match unary(&app, &e2b, &id, &method, &headers, &body).await {
            Ok(v) => axum::Json(v).into_response(),
            Err(e) => e.into_response(),
        },
    }
}

async fn unary(
    app: &AppState,
    e2b: &E2b,
    id: &SandboxId,
    method: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, ConnectError> {
    if method == "List" {
        let _: Value = connect::decode_unary(headers, body)?;
        app.manager.runnable(id).await?;
        let procs = e2b.processes.procs.lock().expect("process table");
        let mut list: Vec<_> = procs
            .iter()
            .filter(|(_, p)| p.sandbox == *id)
            .map(|(pid, p)| {
                let mut v = json!({"pid": pid, "config": p.config});
                if let Some(tag) = &p.tag {
                    v["tag"] = json!(tag);
                }
                v
            })
            .collect();
        list.sort_by_key(|v| v["pid"].as_u64());
        return Ok(json!({"processes": list}));
    }
    if !matches!(method, "SendSignal" | "SendInput" | "CloseStdin" | "Update") {
        return Err(ConnectError::new(
            Code::Unimplemented,
            format!("process.Process/{method} is not served"),
        ));
    }
    let r: SelectorRequest = connect::decode_unary(headers, body)?;
    let sel = r.process.unwrap_or_default();
    let pid = e2b.processes.select(id, &sel)?;
    let input = match method {
        "SendSignal" => {
            let signal = match &r.signal {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => match n.as_u64() {
                    Some(9) => "SIGNAL_SIGKILL".into(),
                    Some(15) => "SIGNAL_SIGTERM".into(),
                    _ => String::new(),
                },
                _ => String::new(),
            };
            match signal.as_str() {
                // Ending the stream's exec kills the command's process tree.
                "SIGNAL_SIGKILL" | "SIGNAL_SIGTERM" => {
                    e2b.processes.with(pid, |p| p.kill.cancel());
                    return Ok(json!({}));
                }
                other => {
                    return Err(ConnectError::invalid(format!(
                        "unknown signal {other:?} (use SIGNAL_SIGKILL or SIGNAL_SIGTERM)"
                    )));
                }
            }
        }
        "SendInput" => {
            let input = r.input.unwrap_or_default();
            let (data, _pty) = match (input.stdin, input.pty) {
                (Some(d), _) => (d, false),
                (None, Some(d)) => (d, true),
                (None, None) => return Err(ConnectError::invalid("input needs stdin or pty")),
            };
            let bytes = B64
                .decode(data.as_bytes())
                .map_err(|e| ConnectError::invalid(format!("input is not base64: {e}")))?;
            ExecInput::Stdin(Bytes::from(bytes))
        }
        "CloseStdin" => ExecInput::CloseStdin,
        _ => {
            let Some(size) = r.pty.and_then(|p| p.size) else {
                return Ok(json!({}));
            };
            ExecInput::Resize(tty_size(&size))
        }
    };
    let sender = e2b.processes.with(pid, |p| p.input.clone()).flatten();
    let Some(sender) = sender else {
        return Err(ConnectError::new(
            Code::FailedPrecondition,
            format!("process {pid} was started without stdin"),
        ));
    };
    sender.send(input).await.map_err(|_| {
        ConnectError::new(Code::NotFound, format!("process with pid {pid} not found"))
    })?;
    Ok(json!({}))
}

fn tty_size(s: &Size) -> TtySize {
    TtySize {
        cols: u16::try_from(s.cols.clamp(1, 1000)).unwrap_or(80),
        rows: u16::try_from(s.rows.clamp(1, 1000)).unwrap_or(24),
    }
}

/// Whether the sandbox has `/bin/bash` (asked once per sandbox).
async fn has_bash(app: &AppState, e2b: &E2b, id: &SandboxId) -> bool {
    if let Some(b) = e2b.has_bash.lock().expect("has_bash lock").get(id) {
        return *b;
    }
    let found = match app.manager.stat_file(id, "/bin/bash").await {
        Ok(_) => true,
        Err(e) if super::envd::is_not_found(&e) => false,
        // Unknown: keep bash, and ask again next time.
        Err(_) => return true,
    };
    e2b.has_bash
        .lock()
        .expect("has_bash lock")
        .insert(id.clone(), found);
    found
}

/// Default keepalive interval when the client names none.
const KEEPALIVE: Duration = Duration::from_secs(30);

fn keepalive_interval(headers: &HeaderMap) -> Duration {
    headers
        .get("keepalive-ping-interval")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map(|s| Duration::from_secs(s.min(3600)))
        .unwrap_or(KEEPALIVE)
}

fn event(e: Value) -> Bytes {
    connect::message(&json!({"event": e}))
}

async fn start(
    app: &AppState,
    e2b: &Arc<E2b>,
    id: &SandboxId,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ConnectError> {
    // The deadline counts from the request's arrival, as the client's does.
    let arrived = tokio::time::Instant::now();
    let req: StartRequest = connect::decode_stream_request(headers, body)?;
    let Some(process) = req.process else {
        return Err(ConnectError::invalid("process is required"));
    };
    if process.cmd.trim().is_empty() {
        return Err(ConnectError::invalid("process.cmd is required"));
    }
    let config = json!({
        "cmd": process.cmd, "args": process.args, "envs": process.envs, "cwd": process.cwd,
    });
    let (mut cmd, mut args) = (process.cmd, process.args);
    if cmd == "/bin/bash" && !has_bash(app, e2b, id).await {
        // Images without bash (busybox, alpine): the same script under sh.
        cmd = "/bin/sh".into();
        args.retain(|a| a != "-l");
    }
    let mut env = e2b.default_envs(id);
    env.extend(process.envs);
    let deadline = connect::timeout(headers);
    let max = app.manager.limits().max_exec_timeout;
    // The stream's deadline ends the command (below); the exec timeout is a
    // backstop past it, within the configured maximum.
    let backstop = deadline
        .map(|d| d + Duration::from_secs(5))
        .unwrap_or(Duration::from_secs(24 * 3600));
    let backstop = if max.is_zero() {
        backstop
    } else {
        backstop.min(max.0)
    };
    let exec = ExecRequest {
        command: cmd,
        args,
        mode: "argv".into(),
        env,
        workdir: process.cwd.as_deref().map(sandbox_path).unwrap_or_default(),
        timeout: Some(GoDuration(backstop)),
        stream: true,
    };
    let tty = req.pty.as_ref().map(|p| match &p.size {
        Some(s) => tty_size(s),
        None => TtySize { cols: 80, rows: 24 },
    });
    let interactive =
        (tty.is_some() || req.stdin == Some(true)).then_some(InteractiveRequest { tty });
    let handle = app.manager.exec_stream(id, &exec, interactive).await?;
    let kill = CancellationToken::new();
    let (attach, attached) = mpsc::unbounded_channel();
    let pid = e2b.processes.insert(Proc {
        sandbox: id.clone(),
        tag: req.tag,
        config,
        input: handle.input.clone(),
        kill: kill.clone(),
        attach,
    });
    let keepalive = keepalive_interval(headers);
    let deadline = deadline.map(|d| arrived + d);
    // The starting stream's deadline ends the command, as envd does; the
    // command outlives the stream otherwise (a client that goes away
    // leaves it running, to be reconnected by pid or tag).
    let (first, resp) = stream_out(deadline, keepalive, Some(kill.clone()));
    let e2b = e2b.clone();
    let pty = tty.is_some();
    let shutdown = app.manager.shutdown_token();
    tokio::spawn(async move {
        relay(handle, first, attached, pid, pty, kill, shutdown).await;
        e2b.processes.remove(pid);
    });
    Ok(resp)
}

/// `Process.Connect`: a new stream of a running command's events, from
/// its `start` on (earlier output is not replayed, as with envd). Its
/// deadline ends the stream only.
async fn connect_stream(
    app: &AppState,
    e2b: &E2b,
    id: &SandboxId,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ConnectError> {
    let arrived = tokio::time::Instant::now();
    let r: SelectorRequest = connect::decode_stream_request(headers, body)?;
    app.manager.runnable(id).await?;
    let sel = r.process.unwrap_or_default();
    let pid = e2b.processes.select(id, &sel)?;
    let deadline = connect::timeout(headers).map(|d| arrived + d);
    let (sub, resp) = stream_out(deadline, keepalive_interval(headers), None);
    let attached = e2b
        .processes
        .with(pid, |p| p.attach.send(sub).is_ok())
        .unwrap_or(false);
    if !attached {
        return Err(ConnectError::new(
            Code::NotFound,
            format!("process with pid {pid} not found"),
        ));
    }
    Ok(resp)
}

/// One client stream: a task that forwards the relay's frames, sends
/// keepalives (at least every half deadline: older Python SDKs read a
/// stream with a read timeout equal to its deadline, counted from the last
/// chunk) and ends the stream with `deadline_exceeded` at its
/// `Connect-Timeout-Ms`, cancelling `on_deadline` if given.
fn stream_out(
    deadline: Option<tokio::time::Instant>,
    keepalive: Duration,
    on_deadline: Option<CancellationToken>,
) -> (mpsc::Sender<Frame>, Response) {
    let (frames, mut rx) = mpsc::channel::<Frame>(64);
    let (tx, out) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let now = tokio::time::Instant::now();
        let sleep = tokio::time::sleep_until(
            deadline.unwrap_or(now + Duration::from_secs(100 * 365 * 86_400)),
        );
        tokio::pin!(sleep);
        let keepalive = match deadline {
            Some(d) => keepalive
                .min(d.saturating_duration_since(now) / 2)
                .max(Duration::from_millis(10)),
            None => keepalive,
        };
        let mut ticks = tokio::time::interval_at(now + keepalive, keepalive);
        loop {
            tokio::select! {
                f = rx.recv() => match f {
                    Some(Frame::Msg(b)) => {
                        if tx.send(b).await.is_err() {
                            return;
                        }
                    }
                    Some(Frame::Last(bs)) => {
                        for b in bs {
                            let _ = tx.send(b).await;
                        }
                        return;
                    }
                    None => {
                        let err = ConnectError::new(Code::Unavailable, "the command's stream ended without an exit status");
                        let _ = tx.send(connect::end_stream(Some(&err))).await;
                        return;
                    }
                },
                _ = &mut sleep => {
                    let msg = if on_deadline.is_some() {
                        "the command ran past its timeout (Connect-Timeout-Ms) and was killed"
                    } else {
                        "the stream ran past its timeout (Connect-Timeout-Ms); the command goes on"
                    };
                    let err = ConnectError::new(Code::DeadlineExceeded, msg);
                    let _ = tx.send(connect::end_stream(Some(&err))).await;
                    if let Some(kill) = on_deadline {
                        kill.cancel();
                    }
                    return;
                }
                _ = ticks.tick() => {
                    if tx.send(event(json!({"keepalive": {}}))).await.is_err() {
                        return;
                    }
                }
                _ = tx.closed() => return,
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(out).map(Ok::<_, Infallible>);
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static(connect::STREAM_CONTENT_TYPE),
    );
    (frames, resp)
}

use futures::StreamExt;

/// Sends `f` to every stream; drops the streams that are gone.
async fn fan_out(streams: &mut Vec<mpsc::Sender<Frame>>, f: Frame) {
    let mut live = Vec::with_capacity(streams.len());
    for s in streams.drain(..) {
        if s.send(f.clone()).await.is_ok() {
            live.push(s);
        }
    }
    *streams = live;
}

/// Relays one command's events to its streams (the starting one, then any
/// that `Connect`) until it ends, is killed or the server shuts down.
/// With no stream left the command goes on and its output is dropped.
async fn relay(
    mut handle: crate::manager::ExecStreamHandle,
    first: mpsc::Sender<Frame>,
    mut attached: mpsc::UnboundedReceiver<mpsc::Sender<Frame>>,
    pid: u32,
    pty: bool,
    kill: CancellationToken,
    shutdown: CancellationToken,
) {
    let start = || Frame::Msg(event(json!({"start": {"pid": pid}})));
    let mut streams = vec![first];
    fan_out(&mut streams, start()).await;
    loop {
        tokio::select! {
            ev = handle.output.recv() => match ev {
                Some(ExecEvent::Output(kind, data)) => {
                    let field = match (pty, kind) {
                        (true, _) => "pty",
                        (false, StreamKind::Stdout) => "stdout",
                        (false, StreamKind::Stderr) => "stderr",
                    };
                    let msg = event(json!({"data": {field: B64.encode(&data)}}));
                    fan_out(&mut streams, Frame::Msg(msg)).await;
                }
                Some(ExecEvent::Exit { exit_code, timed_out, .. }) => {
                    let mut end = json!({
                        "exitCode": exit_code,
                        "exited": !timed_out,
                        "status": if timed_out { "signal: killed".to_string() } else { format!("exit status {exit_code}") },
                    });
                    if timed_out {
                        end["error"] = json!("the command ran past the server's exec timeout");
                    }
                    let last = Frame::Last(vec![event(json!({"end": end})), connect::end_stream(None)]);
                    fan_out(&mut streams, last).await;
                    return;
                }
                None => {
                    let err = ConnectError::new(Code::Unavailable, "the command's stream ended without an exit status");
                    fan_out(&mut streams, Frame::Last(vec![connect::end_stream(Some(&err))])).await;
                    return;
                }
            },
            Some(s) = attached.recv() => {
                if s.send(start()).await.is_ok() {
                    streams.push(s);
                }
            }
            _ = kill.cancelled() => {
                let end = json!({"exitCode": -1, "exited": false, "status": "signal: killed"});
                let last = Frame::Last(vec![event(json!({"end": end})), connect::end_stream(None)]);
                fan_out(&mut streams, last).await;
                return;
            }
            _ = shutdown.cancelled() => {
                let err = ConnectError::new(Code::Unavailable, "the server is shutting down");
                fan_out(&mut streams, Frame::Last(vec![connect::end_stream(Some(&err))])).await;
                return;
            }
        }
    }
}
