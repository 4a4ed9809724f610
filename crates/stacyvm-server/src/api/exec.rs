//! Exec over HTTP: sync JSON, NDJSON streaming and the WebSocket terminal.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use stacyvm_core::{ExecRequest, GoDuration, StreamKind};
use stacyvm_providers::{ExecEvent, ExecInput, TtySize};

use super::AppState;
use super::error::ApiResult;
use super::extract::ApiJson;
use crate::manager::{ExecStreamHandle, InteractiveRequest, parse_sandbox_id};

/// A blank line is sent after this much silence so idle streams are not cut
/// by client read timeouts (NDJSON readers skip empty lines).
const KEEPALIVE: Duration = Duration::from_secs(15);

pub async fn exec(
    State(app): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ExecRequest>,
) -> ApiResult<Response> {
    let id = parse_sandbox_id(&id)?;
    if req.stream {
        let handle = app.manager.exec_stream(&id, &req, None).await?;
        return Ok(ndjson_response(handle));
    }
    let out = app.manager.exec(&id, &req).await?.output;
    Ok(Json(json!({
        "exit_code": out.exit_code,
        "stdout": String::from_utf8_lossy(&out.stdout),
        "stderr": String::from_utf8_lossy(&out.stderr),
        "duration": GoDuration(round_ms(out.duration)).to_string(),
    }))
    .into_response())
}

/// Durations in results are shown to the millisecond (`127ms`, `1.52s`).
fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

fn ndjson_line(v: serde_json::Value) -> Bytes {
    let mut line = serde_json::to_vec(&v).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// Streams the exec as NDJSON; the last line is always the `exit` record.
/// Dropping the body (client gone) drops the handle, killing the command.
fn ndjson_response(handle: ExecStreamHandle) -> Response {
    let stream = futures::stream::unfold(Some(handle), |state| async move {
        let mut handle = state?;
        let line = match tokio::time::timeout(KEEPALIVE, handle.output.recv()).await {
            Err(_) => Bytes::from_static(b"\n"),
            Ok(Some(ExecEvent::Output(kind, data))) => ndjson_line(json!({
                "stream": stream_name(kind),
                "data": String::from_utf8_lossy(&data),
            })),
            Ok(Some(ExecEvent::Exit {
                exit_code,
                duration,
                timed_out,
            })) => {
                let mut rec = json!({
                    "stream": "exit", "data": "", "exit_code": exit_code,
                    "duration": GoDuration(round_ms(duration)).to_string(),
                });
                if timed_out {
                    rec["timed_out"] = json!(true);
                }
                return Some((Ok::<_, std::io::Error>(ndjson_line(rec)), None));
            }
            Ok(None) => {
                // The provider ended without an exit status: still close
                // with an exit record so clients see an end.
                let rec = json!({"stream": "exit", "data": "", "exit_code": -1, "error": "exec ended without exit status"});
                return Some((Ok(ndjson_line(rec)), None));
            }
        };
        Some((Ok(line), Some(handle)))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn stream_name(kind: StreamKind) -> &'static str {
    match kind {
        StreamKind::Stdout => "stdout",
        StreamKind::Stderr => "stderr",
    }
}

/// Client → server WebSocket messages.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ClientMessage {
    Start {
        #[serde(flatten)]
        request: ExecRequest,
        #[serde(default)]
        tty: bool,
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
        signal: String,
    },
}

pub async fn exec_ws(
    State(app): State<AppState>,
    Path(id): Path<String>,
    ws: WebSocketUpgrade,
) -> ApiResult<Response> {
    let id = parse_sandbox_id(&id)?;
    // Fail before the upgrade when the sandbox cannot take commands.
    app.manager.get(&id).await?;
    Ok(ws.on_upgrade(move |socket| async move {
        run_ws(app, id, socket).await;
    }))
}

fn ws_json(v: serde_json::Value) -> Message {
    Message::Text(v.to_string().into())
}

async fn run_ws(app: AppState, id: stacyvm_core::SandboxId, socket: WebSocket) {
    let (mut sink, mut source) = socket.split();
    // The first message must be `start`.
    let start = loop {
        match source.next().await {
            Some(Ok(Message::Text(t))) => break serde_json::from_str::<ClientMessage>(&t),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            _ => return,
        }
    };
    let (request, tty) = match start {
        Ok(ClientMessage::Start {
            request,
            tty,
            cols,
            rows,
        }) => {
            let size = tty.then_some(TtySize {
                cols: if cols == 0 { 80 } else { cols },
                rows: if rows == 0 { 24 } else { rows },
            });
            (request, size)
        }
        Ok(_) => {
            let _ = sink
                .send(ws_json(
                    json!({"type": "error", "message": "the first message must be of type start"}),
                ))
                .await;
            return;
        }
        Err(e) => {
            let _ = sink
                .send(ws_json(
                    json!({"type": "error", "message": format!("invalid message: {e}")}),
                ))
                .await;
            return;
        }
    };
    let handle = match app
        .manager
        .exec_stream(&id, &request, Some(InteractiveRequest { tty }))
        .await
    {
        Ok(h) => h,
        Err(e) => {
            let e: super::error::ApiError = e.into();
            let _ = sink
                .send(ws_json(json!({"type": "error", "message": e.message})))
                .await;
            return;
        }
    };
    let ExecStreamHandle {
        input, mut output, ..
    } = handle;
    loop {
        tokio::select! {
            ev = output.recv() => match ev {
                Some(ExecEvent::Output(kind, data)) => {
                    let msg = json!({"type": stream_name(kind), "data": String::from_utf8_lossy(&data)});
                    if sink.send(ws_json(msg)).await.is_err() { return; }
                }
                Some(ExecEvent::Exit { exit_code, timed_out, .. }) => {
                    let mut msg = json!({"type": "exit", "exit_code": exit_code});
                    if timed_out { msg["timed_out"] = json!(true); }
                    let _ = sink.send(ws_json(msg)).await;
                    let _ = sink.send(Message::Close(None)).await;
                    return;
                }
                None => {
                    let _ = sink.send(ws_json(json!({"type": "error", "message": "exec ended without exit status"}))).await;
                    return;
                }
            },
            msg = source.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Binary(b))) => {
                        if let Some(tx) = &input { let _ = tx.send(ExecInput::Stdin(b)).await; }
                        continue;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    // Closed or broken: returning drops the handle and kills the command.
                    _ => return,
                };
                let input_msg = match serde_json::from_str::<ClientMessage>(&text) {
                    Ok(ClientMessage::Stdin { data }) => ExecInput::Stdin(Bytes::from(data)),
                    Ok(ClientMessage::Resize { cols, rows }) => ExecInput::Resize(TtySize { cols, rows }),
                    Ok(ClientMessage::Signal { signal }) => ExecInput::Signal(signal),
                    Ok(ClientMessage::Start { .. }) => {
                        let _ = sink.send(ws_json(json!({"type": "error", "message": "command already started"}))).await;
                        continue;
                    }
                    Err(e) => {
                        let _ = sink.send(ws_json(json!({"type": "error", "message": format!("invalid message: {e}")}))).await;
                        continue;
                    }
                };
                match &input {
                    Some(tx) => { let _ = tx.send(input_msg).await; }
                    None => {
                        let _ = sink.send(ws_json(json!({"type": "error", "message": "this provider does not accept input"}))).await;
                    }
                }
            }
        }
    }
}
