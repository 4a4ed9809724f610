//! `/sandboxes/{id}/files`: JSON and raw-bytes writes, streamed reads, and
//! list/stat/move/chmod/delete/glob.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use stacyvm_core::{FileInfo, FileMode};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiQuery, RawBody};
use crate::manager::parse_sandbox_id;

fn parse_mode(mode: Option<&str>) -> Result<Option<u32>, ApiError> {
    match mode.map(str::trim).filter(|m| !m.is_empty()) {
        None => Ok(None),
        Some(m) => FileMode::parse(m).map(|m| Some(m.0)).ok_or_else(|| {
            ApiError::bad_request(format!("invalid mode {m:?} (octal, e.g. \"644\")"))
        }),
    }
}

/// Body of `POST /files`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct WriteBody {
    path: String,
    content: String,
    mode: Option<String>,
    /// `base64` for binary content (addition to the contract).
    encoding: Option<String>,
}

pub async fn write_json(
    State(app): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<WriteBody>,
) -> ApiResult<impl IntoResponse> {
    let id = parse_sandbox_id(&id)?;
    let mode = parse_mode(body.mode.as_deref())?;
    let content = match body.encoding.as_deref().unwrap_or("") {
        "" | "utf-8" | "utf8" | "text" => Bytes::from(body.content),
        "base64" => Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(body.content.as_bytes())
                .map_err(|e| ApiError::bad_request(format!("invalid base64 content: {e}")))?,
        ),
        other => return Err(ApiError::bad_request(format!("unknown encoding {other:?}"))),
    };
    app.manager
        .write_file(&id, &body.path, content, mode)
        .await?;
    Ok(Json(json!({"status": "written"})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PathQuery {
    path: String,
    mode: Option<String>,
    recursive: Option<String>,
}

pub async fn write_raw(
    State(app): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PathQuery>,
    RawBody(body): RawBody,
) -> ApiResult<impl IntoResponse> {
    let id = parse_sandbox_id(&id)?;
    let mode = parse_mode(q.mode.as_deref())?;
    app.manager.write_file(&id, &q.path, body, mode).await?;
    Ok(Json(json!({"status": "written"})))
}

pub async fn read(
    State(app): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PathQuery>,
) -> ApiResult<Response> {
    let id = parse_sandbox_id(&id)?;
    let stream = app.manager.read_file(&id, &q.path).await?;
    let stream = futures::StreamExt::map(stream, |r| r.map_err(std::io::Error::other));
    let name = q.path.rsplit('/').next().unwrap_or("file").replace('"', "");
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        )
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| Response::new(Body::empty())))
}

pub async fn delete(
    State(app): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PathQuery>,
) -> ApiResult<impl IntoResponse> {
    let id = parse_sandbox_id(&id)?;
    let recursive = match q.recursive.as_deref().unwrap_or("") {
        "" | "false" | "0" => false,
        "true" | "1" => true,
        other => {
            return Err(ApiError::bad_request(format!(
                "invalid recursive value {other:?}"
            )));
        }
    };
    app.manager.delete_file(&id, &q.path, recursive).await?;
    Ok(Json(json!({"status": "deleted"})))
}

pub async fn list(
    State(app): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PathQuery>,
) -> ApiResult<Json<Vec<FileInfo>>> {
    let id = parse_sandbox_id(&id)?;
    let path = if q.path.is_empty() {
        "/"
    } else {
        q.path.as_str()
    };
    Ok(Json(app.manager.list_files(&id, path).await?))
}

pub async fn stat(
    State(app): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PathQuery>,
) -> ApiResult<Json<FileInfo>> {
    let id = parse_sandbox_id(&id)?;
    Ok(Json(app.manager.stat_file(&id, &q.path).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct MoveBody {
    old_path: String,
    new_path: String,
}

pub async fn move_file(
    State(app): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<MoveBody>,
) -> ApiResult<impl IntoResponse> {
    let id = parse_sandbox_id(&id)?;
    app.manager
        .move_file(&id, &body.old_path, &body.new_path)
        .await?;
    Ok(Json(json!({"status": "moved"})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ChmodBody {
    path: String,
    mode: serde_json::Value,
}

pub async fn chmod(
    State(app): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ChmodBody>,
) -> ApiResult<impl IntoResponse> {
    let id = parse_sandbox_id(&id)?;
    // The contract sends an octal string; a JSON number is read as the
    // same digits ("mode": 755).
    let text = match &body.mode {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    let mode = parse_mode(Some(&text))?.ok_or_else(|| ApiError::bad_request("mode is required"))?;
    app.manager.chmod_file(&id, &body.path, mode).await?;
    Ok(Json(json!({"status": "chmod applied"})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct GlobQuery {
    pattern: String,
}

pub async fn glob(
    State(app): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<GlobQuery>,
) -> ApiResult<Json<Vec<String>>> {
    let id = parse_sandbox_id(&id)?;
    Ok(Json(app.manager.glob(&id, &q.pattern).await?))
}
