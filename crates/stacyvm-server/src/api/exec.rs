//! Exec over HTTP: sync JSON, NDJSON streaming and the WebSocket terminal.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use stacyvm_core::{ExecRequest, GoDuration};
use stacyvm_providers::{ExecEvent, ExecInput, TtySize};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath};
use super::model::errors::{
    BadRequest, Conflict, NotFound, PayloadTooLarge, ResourceLimit, Timeout, Unavailable,
};
use super::model::{ExecResponse, StreamRecord, WsClientMessage, WsServerMessage};
use crate::manager::{ExecStreamHandle, InteractiveRequest, parse_sandbox_id};

/// A blank line is sent after this much silence so idle streams are not cut
/// by client read timeouts (NDJSON readers skip empty lines).
const KEEPALIVE: Duration = Duration::from_secs(15);

/// Runs a command. With `stream: true` the reply is NDJSON
/// ([`StreamRecord`] lines, the last one `exit`); otherwise the whole
/// result at once.
#[utoipa::path(
    post,
    path = "/sandboxes/{id}/exec",
    tag = "exec",
    params(("id" = String, Path, description = "Sandbox id")),
    request_body = ExecRequest,
    responses(
        (status = 200, description = "The result; with `stream: true`, NDJSON records", content(
            (ExecResponse = "application/json"),
            (StreamRecord = "application/x-ndjson"),
        )),
        BadRequest, NotFound, Timeout, Conflict, PayloadTooLarge, ResourceLimit, Unavailable,
    ),
)]
pub async fn exec(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<ExecRequest>,
) -> ApiResult<Response> {
    let id = parse_sandbox_id(&id)?;
    if req.stream {
        let handle = app.manager.exec_stream(&id, &req, None).await?;
        return Ok(ndjson_response(handle));
    }
    let out = app.manager.exec(&id, &req).await?.output;
    Ok(Json(ExecResponse {
        exit_code: out.exit_code,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        duration: round_ms(out.duration),
        truncated: out.truncated,
    })
    .into_response())
}

/// Durations in results are shown to the millisecond (`127ms`, `1.52s`).
fn round_ms(d: Duration) -> GoDuration {
    GoDuration(Duration::from_millis(d.as_millis() as u64))
}

fn ndjson_line(rec: &StreamRecord) -> Bytes {
    let mut line = serde_json::to_vec(rec).unwrap_or_default();
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
            Ok(Some(ExecEvent::Output(kind, data))) => ndjson_line(&StreamRecord::output(
                kind,
                String::from_utf8_lossy(&data).into_owned(),
            )),
            Ok(Some(ExecEvent::Exit {
                exit_code,
                duration,
                timed_out,
            })) => {
                let rec = StreamRecord::exit(exit_code, Some(round_ms(duration)), timed_out);
                return Some((Ok::<_, std::io::Error>(ndjson_line(&rec)), None));
            }
            Ok(None) => {
                // The provider ended without an exit status: still close
                // with an exit record so clients see an end.
                let rec = StreamRecord {
                    error: Some("exec ended without exit status".to_string()),
                    ..StreamRecord::exit(-1, None, false)
                };
                return Some((Ok(ndjson_line(&rec)), None));
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

/// The interactive terminal over WebSocket: JSON text messages
/// ([`WsClientMessage`] in, [`WsServerMessage`] out). An unknown sandbox
/// is a 404 before any handshake check.
#[utoipa::path(
    get,
    path = "/sandboxes/{id}/exec/ws",
    tag = "exec",
    params(("id" = String, Path, description = "Sandbox id")),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "`bad_request`: not a valid WebSocket handshake", body = super::model::ErrorBody),
        NotFound, Conflict,
    ),
)]
pub async fn exec_ws(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let id = parse_sandbox_id(&id)?;
    // Resource checks come before protocol checks: an unknown (or
    // destroyed) sandbox is a 404 whatever the handshake looks like.
    app.manager.runnable(&id).await?;
    let ws = ws.map_err(|e| {
        ApiError::bad_request(format!(
            "a WebSocket handshake is required: {}",
            e.body_text().to_lowercase()
        ))
    })?;
    Ok(ws.on_upgrade(move |socket| async move {
        run_ws(app, id, socket).await;
    }))
}

fn ws_json(m: &WsServerMessage) -> Message {
    Message::Text(serde_json::to_string(m).unwrap_or_default().into())
}

fn ws_error(message: impl Into<String>) -> Message {
    ws_json(&WsServerMessage::Error {
        message: message.into(),
    })
}

async fn run_ws(app: AppState, id: stacyvm_core::SandboxId, socket: WebSocket) {
    let (mut sink, mut source) = socket.split();
    // The first message must be `start`.
    let start = loop {
        match source.next().await {
            Some(Ok(Message::Text(t))) => break serde_json::from_str::<WsClientMessage>(&t),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            _ => return,
        }
    };
    let (request, tty) = match start {
        Ok(WsClientMessage::Start {
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
                .send(ws_error("the first message must be of type start"))
                .await;
            return;
        }
        Err(e) => {
            let _ = sink.send(ws_error(format!("invalid message: {e}"))).await;
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
            let e: ApiError = e.into();
            let _ = sink.send(ws_error(e.message)).await;
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
                    let data = String::from_utf8_lossy(&data).into_owned();
                    let msg = match kind {
                        stacyvm_core::StreamKind::Stdout => WsServerMessage::Stdout { data },
                        stacyvm_core::StreamKind::Stderr => WsServerMessage::Stderr { data },
                    };
                    if sink.send(ws_json(&msg)).await.is_err() { return; }
                }
                Some(ExecEvent::Exit { exit_code, timed_out, .. }) => {
                    let _ = sink.send(ws_json(&WsServerMessage::Exit { exit_code, timed_out })).await;
                    let _ = sink.send(Message::Close(None)).await;
                    return;
                }
                None => {
                    let _ = sink.send(ws_error("exec ended without exit status")).await;
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
                let input_msg = match serde_json::from_str::<WsClientMessage>(&text) {
                    Ok(WsClientMessage::Stdin { data }) => ExecInput::Stdin(Bytes::from(data)),
                    Ok(WsClientMessage::Resize { cols, rows }) => ExecInput::Resize(TtySize { cols, rows }),
                    Ok(WsClientMessage::Signal { signal }) => ExecInput::Signal(signal),
                    Ok(WsClientMessage::Start { .. }) => {
                        let _ = sink.send(ws_error("command already started")).await;
                        continue;
                    }
                    Err(e) => {
                        let _ = sink.send(ws_error(format!("invalid message: {e}"))).await;
                        continue;
                    }
                };
                match &input {
                    Some(tx) => { let _ = tx.send(input_msg).await; }
                    None => {
                        let _ = sink.send(ws_error("this provider does not accept input")).await;
                    }
                }
            }
        }
    }
}
