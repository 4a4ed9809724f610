//! The envd surface (`E2B_SANDBOX_URL`): sandbox routing and access
//! tokens, `GET /health`, `GET|POST /files` and the unary
//! `filesystem.Filesystem/*` calls, over the manager's file API.

use std::sync::Arc;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::SecondsFormat;
use futures::TryStreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use stacyvm_core::{FileInfo, FileMode, SandboxId};

use super::E2b;
use super::connect::{Code, ConnectError};
use crate::api::{ApiError, AppState};
use crate::manager::ManagerError;

/// The sandbox an envd request is for, from (in order) the
/// `E2b-Sandbox-Id` header, a `<port>-<id>.<domain>` Host, or the access
/// token. A presented token must belong to that sandbox; with
/// `auth.enabled` a token is required.
pub fn target(app: &AppState, e2b: &E2b, headers: &HeaderMap) -> Result<SandboxId, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let token = header("x-access-token").filter(|t| !t.is_empty());
    let named = header("e2b-sandbox-id")
        .map(str::to_string)
        .or_else(|| header("host").and_then(host_sandbox));
    let by_token = token.and_then(|t| e2b.tokens.verify(t));
    if token.is_some() && by_token.is_none() {
        return Err(ApiError::unauthorized("invalid access token"));
    }
    let id = match (named, by_token) {
        (Some(raw), by_token) => {
            let id = SandboxId::parse(&raw)
                .ok_or_else(|| ApiError::not_found(format!("sandbox {raw} not found")))?;
            if by_token.as_ref().is_some_and(|t| *t != id) {
                return Err(ApiError::unauthorized(format!(
                    "the access token is not the one of sandbox {id}"
                )));
            }
            id
        }
        (None, Some(id)) => id,
        (None, None) => {
            return Err(ApiError::bad_request(
                "no sandbox named: send E2b-Sandbox-Id, a <port>-<sandbox id>.<domain> Host or X-Access-Token",
            ));
        }
    };
    if token.is_none() && app.auth.enabled {
        return Err(ApiError::unauthorized(format!(
            "missing access token for sandbox {id} (send X-Access-Token)"
        )));
    }
    Ok(id)
}

/// The sandbox id of a `<port>-<sandbox id>.<domain>` host.
fn host_sandbox(host: &str) -> Option<String> {
    let first = host.split('.').next()?;
    let (port, id) = first.split_once('-')?;
    (port.parse::<u16>().is_ok() && SandboxId::parse(id).is_some()).then(|| id.to_string())
}

/// An envd HTTP error: `{"code": <status>, "message"}`.
pub struct EnvdError(ApiError);

impl<E: Into<ApiError>> From<E> for EnvdError {
    fn from(e: E) -> Self {
        EnvdError(e.into())
    }
}

impl IntoResponse for EnvdError {
    fn into_response(self) -> Response {
        let status = self.0.status;
        (
            status,
            axum::Json(json!({"code": status.as_u16(), "message": self.0.message})),
        )
            .into_response()
    }
}

/// Resolves an E2B path: relative paths are taken from `/`.
pub fn sandbox_path(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

/// `GET /health`: 204 while the sandbox runs, 502 when it does not (the
/// SDK's `is_running()` reads 502 as "not running").
pub async fn health(
    State(app): State<AppState>,
    Extension(e2b): Extension<Arc<E2b>>,
    headers: HeaderMap,
) -> Response {
    let id = match target(&app, &e2b, &headers) {
        Ok(id) => id,
        Err(e) => return EnvdError(e).into_response(),
    };
    match app.manager.runnable(&id).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            let e = ApiError::from(e);
            EnvdError(ApiError::new(StatusCode::BAD_GATEWAY, "e2b", e.message)).into_response()
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct FileQuery {
    path: Option<String>,
}

/// `GET /files?path=`: the file's bytes.
pub async fn read_file(
    State(app): State<AppState>,
    Extension(e2b): Extension<Arc<E2b>>,
    headers: HeaderMap,
    query: Result<Query<FileQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, EnvdError> {
    let id = target(&app, &e2b, &headers)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let path = sandbox_path(q.path.as_deref().unwrap_or(""));
    let stream = app.manager.read_file(&id, &path).await?;
    let body = Body::from_stream(stream.map_err(std::io::Error::other));
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}

fn written(path: &str) -> Value {
    let name = path.rsplit('/').next().unwrap_or(path);
    json!({"name": name, "type": "file", "path": path})
}

/// `POST /files?path=`: a `multipart/form-data` upload (one `file` part a
/// file, named by `path` or else by the part's file name) or, from envd
/// 0.5.7, an `application/octet-stream` body. Answers the written files.
pub async fn write_file(
    State(app): State<AppState>,
    Extension(e2b): Extension<Arc<E2b>>,
    query: Result<Query<FileQuery>, axum::extract::rejection::QueryRejection>,
    req: Request,
) -> Result<Response, EnvdError> {
    let id = target(&app, &e2b, req.headers())?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if let Some(enc) = req.headers().get(header::CONTENT_ENCODING)
        && enc.as_bytes() != b"identity"
    {
        return Err(ApiError::bad_request(
            "compressed uploads are not served (upload without gzip)",
        )
        .into());
    }
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut out = Vec::new();
    if ct.starts_with("multipart/form-data") {
        let mut form = Multipart::from_request(req, &app)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        let mut parts = 0;
        while let Some(field) = form
            .next_field()
            .await
            .map_err(|e| ApiError::bad_request(format!("invalid multipart body: {e}")))?
        {
            parts += 1;
            let path = match (&q.path, field.file_name()) {
                (Some(p), _) if parts == 1 => p.clone(),
                (_, Some(name)) if !name.is_empty() => name.to_string(),
                _ => {
                    return Err(ApiError::bad_request(
                        "each file part needs a file name, or give ?path= for a single file",
                    )
                    .into());
                }
            };
            let path = sandbox_path(&path);
            let data = field
                .bytes()
                .await
                .map_err(|e| ApiError::bad_request(format!("invalid multipart body: {e}")))?;
            app.manager.write_file(&id, &path, data, None).await?;
            out.push(written(&path));
        }
        if out.is_empty() {
            return Err(ApiError::bad_request("the multipart body has no file part").into());
        }
    } else {
        let Some(path) = q.path.filter(|p| !p.is_empty()) else {
            return Err(ApiError::bad_request("path is required").into());
        };
        let path = sandbox_path(&path);
        let data = Bytes::from_request(req, &app)
            .await
            .map_err(|e| ApiError::new(e.status(), "e2b", e.body_text()))?;
        app.manager.write_file(&id, &path, data, None).await?;
        out.push(written(&path));
    }
    Ok(axum::Json(out).into_response())
}

/// `drwxr-xr-x` for a mode.
fn permissions(info: &FileInfo) -> (u32, String) {
    let bits = FileMode::parse(&info.mode).map(|m| m.0).unwrap_or(0);
    let mut s = String::with_capacity(10);
    s.push(if info.is_symlink {
        'L'
    } else if info.is_dir {
        'd'
    } else {
        '-'
    });
    for shift in [6, 3, 0] {
        let b = (bits >> shift) & 7;
        s.push(if b & 4 != 0 { 'r' } else { '-' });
        s.push(if b & 2 != 0 { 'w' } else { '-' });
        s.push(if b & 1 != 0 { 'x' } else { '-' });
    }
    (bits & 0o777, s)
}

/// An `EntryInfo` in the proto's JSON form.
pub fn entry(info: &FileInfo) -> Value {
    let kind = if info.is_symlink {
        "FILE_TYPE_SYMLINK"
    } else if info.is_dir {
        "FILE_TYPE_DIRECTORY"
    } else {
        "FILE_TYPE_FILE"
    };
    let (mode, perms) = permissions(info);
    json!({
        "name": info.name,
        "type": kind,
        "path": info.path,
        "size": info.size,
        "mode": mode,
        "permissions": perms,
        "owner": "",
        "group": "",
        "modifiedTime": info.mod_time.to_rfc3339_opts(SecondsFormat::Nanos, true),
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PathRequest {
    path: String,
    depth: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MoveRequest {
    source: String,
    destination: String,
}

/// Whether a manager error says the thing does not exist.
pub fn is_not_found(e: &ManagerError) -> bool {
    matches!(
        e,
        ManagerError::NotFound(_)
            | ManagerError::Provider(stacyvm_providers::ProviderError::NotFound(_))
    )
}

/// A manager error as an envd RPC error.
fn rpc_error(e: ManagerError) -> ConnectError {
    ConnectError::from(e)
}

/// Most entries a recursive `ListDir` returns.
const MAX_LIST: usize = 10_000;

/// `POST /filesystem.Filesystem/{method}`: Stat, MakeDir, Move, ListDir,
/// Remove (unary, JSON). The watch calls answer `unimplemented`.
pub async fn filesystem_rpc(
    State(app): State<AppState>,
    Extension(e2b): Extension<Arc<E2b>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let id = match target(&app, &e2b, &headers) {
        Ok(id) => id,
        Err(e) => return ConnectError::from(e).into_response(),
    };
    if super::connect::is_stream(&headers) {
        return ConnectError::new(
            Code::Unimplemented,
            format!("filesystem.Filesystem/{method} is not served"),
        )
        .into_stream_response();
    }
    match filesystem_call(&app, &id, &method, &headers, &body).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn filesystem_call(
    app: &AppState,
    id: &SandboxId,
    method: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, ConnectError> {
    let m = &app.manager;
    match method {
        "Stat" => {
            let r: PathRequest = super::connect::decode_unary(headers, body)?;
            let info = m
                .stat_file(id, &sandbox_path(&r.path))
                .await
                .map_err(rpc_error)?;
            Ok(json!({"entry": entry(&info)}))
        }
        "ListDir" => {
            let r: PathRequest = super::connect::decode_unary(headers, body)?;
            let depth = r.depth.unwrap_or(1).max(1);
            let root = sandbox_path(&r.path);
            let root_info = m.stat_file(id, &root).await.map_err(rpc_error)?;
            if !root_info.is_dir {
                return Err(ConnectError::invalid(format!(
                    "path {root} is not a directory"
                )));
            }
            let mut out = Vec::new();
            let mut level = vec![root];
            for _ in 0..depth {
                let mut next = Vec::new();
                for dir in level {
                    for info in m.list_files(id, &dir).await.map_err(rpc_error)? {
                        if info.is_dir && !info.is_symlink {
                            next.push(info.path.clone());
                        }
                        out.push(entry(&info));
                        if out.len() >= MAX_LIST {
                            return Ok(json!({"entries": out}));
                        }
                    }
                }
                level = next;
            }
            Ok(json!({"entries": out}))
        }
        "MakeDir" => {
            let r: PathRequest = super::connect::decode_unary(headers, body)?;
            let path = sandbox_path(&r.path);
            crate::manager::check_path(&path).map_err(rpc_error)?;
            match m.stat_file(id, &path).await {
                Ok(_) => {
                    return Err(ConnectError::new(
                        Code::AlreadyExists,
                        format!("{path} already exists"),
                    ));
                }
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(rpc_error(e)),
            }
            make_dir(app, id, &path).await?;
            let info = m.stat_file(id, &path).await.map_err(rpc_error)?;
            Ok(json!({"entry": entry(&info)}))
        }
        "Move" => {
            let r: MoveRequest = super::connect::decode_unary(headers, body)?;
            let (from, to) = (sandbox_path(&r.source), sandbox_path(&r.destination));
            m.move_file(id, &from, &to).await.map_err(rpc_error)?;
            let info = m.stat_file(id, &to).await.map_err(rpc_error)?;
            Ok(json!({"entry": entry(&info)}))
        }
        "Remove" => {
            let r: PathRequest = super::connect::decode_unary(headers, body)?;
            m.delete_file(id, &sandbox_path(&r.path), true)
                .await
                .map_err(rpc_error)?;
            Ok(json!({}))
        }
        "WatchDir" | "CreateWatcher" | "GetWatcherEvents" | "RemoveWatcher" => {
            Err(ConnectError::new(
                Code::Unimplemented,
                format!("filesystem.Filesystem/{method} is not served yet"),
            ))
        }
        other => Err(ConnectError::new(
            Code::Unimplemented,
            format!("filesystem.Filesystem/{other} does not exist"),
        )),
    }
}

/// Creates a directory and its parents. The provider file API has no
/// mkdir yet: a write creates the parents, so this writes an empty marker
/// file in the new directory and removes it (confined like every write).
async fn make_dir(app: &AppState, id: &SandboxId, path: &str) -> Result<(), ConnectError> {
    let marker = format!(
        "{}/.stacyvm-mkdir-{:016x}",
        path.trim_end_matches('/'),
        rand::random::<u64>()
    );
    app.manager
        .write_file(id, &marker, Bytes::new(), None)
        .await
        .map_err(rpc_error)?;
    app.manager
        .delete_file(id, &marker, false)
        .await
        .map_err(rpc_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_name_sandboxes() {
        assert_eq!(
            host_sandbox("49983-sb-0123456789abcdef.e2b.local:7423").as_deref(),
            Some("sb-0123456789abcdef")
        );
        assert_eq!(host_sandbox("localhost:7423"), None);
        assert_eq!(host_sandbox("api.example.com"), None);
        assert_eq!(host_sandbox("x-sb-0123456789abcdef.d"), None);
    }

    #[test]
    fn relative_paths_start_at_the_root() {
        assert_eq!(sandbox_path("a/b"), "/a/b");
        assert_eq!(sandbox_path("/a"), "/a");
    }
}
