//! `/sandboxes/{id}/files`: JSON and raw-bytes writes, streamed reads, and
//! list/stat/move/chmod/delete/glob.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::Response;
use base64::Engine;
use bytes::Bytes;
use stacyvm_core::{FileInfo, FileMode};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, ApiQuery, RawBody};
use super::model::errors::{BadRequest, Conflict, NotFound, PayloadTooLarge, Timeout, Unavailable};
use super::model::{
    Binary, ChmodRequest, DeleteFileQuery, FilePathQuery, GlobQuery, ListFilesQuery, MoveRequest,
    StatusResponse, WriteFileQuery, WriteFileRequest,
};
use crate::manager::parse_sandbox_id;

fn parse_mode(mode: Option<&str>) -> Result<Option<u32>, ApiError> {
    match mode.map(str::trim).filter(|m| !m.is_empty()) {
        None => Ok(None),
        Some(m) => FileMode::parse(m).map(|m| Some(m.0)).ok_or_else(|| {
            ApiError::bad_request(format!("invalid mode {m:?} (octal, e.g. \"644\")"))
        }),
    }
}

/// Writes a text (or base64) file; parent directories are created.
#[utoipa::path(
    post,
    path = "/sandboxes/{id}/files",
    tag = "files",
    params(("id" = String, Path, description = "Sandbox id")),
    request_body = WriteFileRequest,
    responses(
        (status = 200, description = "`{\"status\":\"written\"}`", body = StatusResponse),
        BadRequest, NotFound, Conflict, PayloadTooLarge, Timeout, Unavailable,
    ),
)]
pub async fn write_json(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<WriteFileRequest>,
) -> ApiResult<Json<StatusResponse>> {
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
    Ok(Json(StatusResponse::new("written")))
}

/// Uploads raw bytes (binary-safe).
#[utoipa::path(
    put,
    path = "/sandboxes/{id}/files",
    tag = "files",
    params(("id" = String, Path, description = "Sandbox id"), WriteFileQuery),
    request_body(content = Binary, content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "`{\"status\":\"written\"}`", body = StatusResponse),
        BadRequest, NotFound, Conflict, PayloadTooLarge, Timeout, Unavailable,
    ),
)]
pub async fn write_raw(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<WriteFileQuery>,
    RawBody(body): RawBody,
) -> ApiResult<Json<StatusResponse>> {
    let id = parse_sandbox_id(&id)?;
    let mode = parse_mode(q.mode.as_deref())?;
    app.manager.write_file(&id, &q.path, body, mode).await?;
    Ok(Json(StatusResponse::new("written")))
}

/// Downloads a file as raw bytes.
#[utoipa::path(
    get,
    path = "/sandboxes/{id}/files",
    tag = "files",
    params(("id" = String, Path, description = "Sandbox id"), FilePathQuery),
    responses(
        (status = 200, description = "The file's bytes", content_type = "application/octet-stream", body = Binary),
        BadRequest, NotFound, Conflict, Unavailable,
    ),
)]
pub async fn read(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<FilePathQuery>,
) -> ApiResult<Response> {
    let id = parse_sandbox_id(&id)?;
    let stream = app.manager.read_file(&id, &q.path).await?;
    let stream = futures::StreamExt::map(stream, |r| r.map_err(std::io::Error::other));
    let name: String = q
        .path
        .rsplit('/')
        .next()
        .unwrap_or("file")
        .chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect();
    let mut resp = Response::builder().header(header::CONTENT_TYPE, "application/octet-stream");
    // A name that is not a valid header value is simply not offered.
    if let Ok(v) = header::HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        resp = resp.header(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| Response::new(Body::empty())))
}

/// Deletes a file, or a directory with `recursive=true`.
#[utoipa::path(
    delete,
    path = "/sandboxes/{id}/files",
    tag = "files",
    params(("id" = String, Path, description = "Sandbox id"), DeleteFileQuery),
    responses(
        (status = 200, description = "`{\"status\":\"deleted\"}`", body = StatusResponse),
        BadRequest, NotFound, Conflict, Unavailable,
    ),
)]
pub async fn delete(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<DeleteFileQuery>,
) -> ApiResult<Json<StatusResponse>> {
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
    Ok(Json(StatusResponse::new("deleted")))
}

/// Lists a directory.
#[utoipa::path(
    get,
    path = "/sandboxes/{id}/files/list",
    tag = "files",
    params(("id" = String, Path, description = "Sandbox id"), ListFilesQuery),
    responses(
        (status = 200, description = "Entries of the directory", body = Vec<FileInfo>),
        BadRequest, NotFound, Conflict, Unavailable,
    ),
)]
pub async fn list(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListFilesQuery>,
) -> ApiResult<Json<Vec<FileInfo>>> {
    let id = parse_sandbox_id(&id)?;
    let path = if q.path.is_empty() {
        "/"
    } else {
        q.path.as_str()
    };
    Ok(Json(app.manager.list_files(&id, path).await?))
}

/// Describes one file (a symbolic link is described, never followed).
#[utoipa::path(
    get,
    path = "/sandboxes/{id}/files/stat",
    tag = "files",
    params(("id" = String, Path, description = "Sandbox id"), FilePathQuery),
    responses(
        (status = 200, description = "The file", body = FileInfo),
        BadRequest, NotFound, Conflict, Unavailable,
    ),
)]
pub async fn stat(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<FilePathQuery>,
) -> ApiResult<Json<FileInfo>> {
    let id = parse_sandbox_id(&id)?;
    Ok(Json(app.manager.stat_file(&id, &q.path).await?))
}

/// Moves or renames a file.
#[utoipa::path(
    post,
    path = "/sandboxes/{id}/files/move",
    tag = "files",
    params(("id" = String, Path, description = "Sandbox id")),
    request_body = MoveRequest,
    responses(
        (status = 200, description = "`{\"status\":\"moved\"}`", body = StatusResponse),
        BadRequest, NotFound, Conflict, PayloadTooLarge, Timeout, Unavailable,
    ),
)]
pub async fn move_file(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<MoveRequest>,
) -> ApiResult<Json<StatusResponse>> {
    let id = parse_sandbox_id(&id)?;
    app.manager
        .move_file(&id, &body.old_path, &body.new_path)
        .await?;
    Ok(Json(StatusResponse::new("moved")))
}

/// Changes a file's permission bits.
#[utoipa::path(
    post,
    path = "/sandboxes/{id}/files/chmod",
    tag = "files",
    params(("id" = String, Path, description = "Sandbox id")),
    request_body = ChmodRequest,
    responses(
        (status = 200, description = "`{\"status\":\"chmod applied\"}`", body = StatusResponse),
        BadRequest, NotFound, Conflict, PayloadTooLarge, Timeout, Unavailable,
    ),
)]
pub async fn chmod(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ChmodRequest>,
) -> ApiResult<Json<StatusResponse>> {
    let id = parse_sandbox_id(&id)?;
    let text = body.mode.as_ref().map(|m| m.digits()).unwrap_or_default();
    let mode = parse_mode(Some(&text))?.ok_or_else(|| ApiError::bad_request("mode is required"))?;
    app.manager.chmod_file(&id, &body.path, mode).await?;
    Ok(Json(StatusResponse::new("chmod applied")))
}

/// Paths matching a glob pattern (`**` crosses directories).
#[utoipa::path(
    get,
    path = "/sandboxes/{id}/files/glob",
    tag = "files",
    params(("id" = String, Path, description = "Sandbox id"), GlobQuery),
    responses(
        (status = 200, description = "Matching absolute paths", body = Vec<String>),
        BadRequest, NotFound, Conflict, Unavailable,
    ),
)]
pub async fn glob(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<GlobQuery>,
) -> ApiResult<Json<Vec<String>>> {
    let id = parse_sandbox_id(&id)?;
    Ok(Json(app.manager.glob(&id, &q.pattern).await?))
}
