//! E2B's control plane (`E2B_API_URL`): create, list, get, kill, timeout,
//! connect, pause and templates, each one call into the manager. Errors
//! take E2B's shape, `{"code": <HTTP status>, "message"}`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use stacyvm_core::{GoDuration, KeyScope, OwnerId, Sandbox, SandboxId, SandboxState};
use stacyvm_store::{SandboxFilter, StoreError};

use super::{CLIENT_ID, E2b, ENVD_VERSION};
use crate::api::{ApiError, AppState};
use crate::manager::{ManagerError, SpawnRequest};

/// An error in E2B's control-plane shape.
#[derive(Debug)]
pub struct E2bError(pub ApiError);

impl E2bError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        E2bError(ApiError::new(status, "e2b", message))
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl<E: Into<ApiError>> From<E> for E2bError {
    fn from(e: E) -> Self {
        E2bError(e.into())
    }
}

impl IntoResponse for E2bError {
    fn into_response(self) -> Response {
        let status = self.0.status;
        let mut resp = (
            status,
            axum::Json(json!({"code": status.as_u16(), "message": self.0.message})),
        )
            .into_response();
        if let Some(after) = self.0.retry_after
            && let Ok(v) = HeaderValue::from_str(&after.as_secs().max(1).to_string())
        {
            resp.headers_mut().insert("retry-after", v);
        }
        resp
    }
}

type E2bResult<T> = Result<T, E2bError>;

/// Who calls the control plane.
#[derive(Debug, Clone, Default)]
struct Caller {
    /// The owner the call acts for: a stored key's owner, or `X-User-ID`
    /// under an admin key (or with auth off). Sandboxes of other owners are
    /// not found.
    owner: Option<OwnerId>,
}

/// Checks the API key (`X-API-Key`, or `Authorization: Bearer`) when
/// `auth.enabled`, as API v1 does: the configured keys and stored keys
/// (an `e2b_<hex>` key minted with `"format": "e2b"` is what the SDK
/// accepts). A `user` or `read` key acts for its owner whatever
/// `X-User-ID` says; a `read` key may only get and list.
async fn authorize(app: &AppState, headers: &HeaderMap, reads: bool) -> E2bResult<Caller> {
    if !app.auth.enabled {
        return Ok(Caller {
            owner: header_owner(headers)?,
        });
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let presented = header("x-api-key").map(str::to_string).or_else(|| {
        header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|v| v.trim().to_string())
    });
    let Some(presented) = presented else {
        return Err(E2bError::new(
            StatusCode::UNAUTHORIZED,
            "missing API key (send the X-API-Key header)",
        ));
    };
    let p = crate::api::auth::principal(app, &presented, "e2b").await?;
    match p.scope {
        KeyScope::Admin => Ok(Caller {
            owner: header_owner(headers)?,
        }),
        KeyScope::Read if !reads => Err(E2bError::new(
            StatusCode::FORBIDDEN,
            "a read key may only get and list",
        )),
        KeyScope::Read | KeyScope::User => Ok(Caller { owner: p.owner }),
    }
}

fn header_owner(headers: &HeaderMap) -> E2bResult<Option<OwnerId>> {
    let Some(v) = headers.get("x-user-id") else {
        return Ok(None);
    };
    let s = v
        .to_str()
        .map_err(|_| E2bError::bad_request("X-User-ID must be visible ASCII"))?;
    OwnerId::parse(s).map_err(|e| E2bError::bad_request(format!("invalid X-User-ID: {e}")))
}

/// A sandbox id from the path; E2B's SDK may append `-<clientID>`.
fn sandbox_id(raw: &str) -> E2bResult<SandboxId> {
    let raw = raw.strip_suffix(&format!("-{CLIENT_ID}")).unwrap_or(raw);
    SandboxId::parse(raw)
        .ok_or_else(|| E2bError::new(StatusCode::NOT_FOUND, format!("sandbox {raw} not found")))
}

/// A JSON object body; an empty body is `{}`.
fn object_body<T: for<'de> Deserialize<'de> + Default>(body: &Bytes) -> E2bResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| E2bError::bad_request(format!("invalid body: {e}")))
}

/// A `{string: string}` map, or 400 naming the field.
fn string_map(v: Option<Value>, field: &str) -> E2bResult<BTreeMap<String, String>> {
    match v {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k, s)),
                _ => Err(E2bError::bad_request(format!(
                    "{field}.{k} must be a string"
                ))),
            })
            .collect(),
        Some(_) => Err(E2bError::bad_request(format!(
            "{field} must be an object of strings"
        ))),
    }
}

/// A timeout in seconds; `None` or 0 is the server default.
fn seconds(v: Option<i64>, field: &str) -> E2bResult<Option<GoDuration>> {
    match v {
        None | Some(0) => Ok(None),
        Some(s) if s < 0 => Err(E2bError::bad_request(format!(
            "{field} must not be negative"
        ))),
        Some(s) => Ok(Some(GoDuration::from_secs(
            u64::try_from(s).unwrap_or(u64::MAX).min(100 * 365 * 86_400),
        ))),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NewSandbox {
    #[serde(rename = "templateID")]
    template_id: Option<String>,
    timeout: Option<i64>,
    metadata: Option<Value>,
    #[serde(rename = "envVars")]
    env_vars: Option<Value>,
}

/// E2B's `templateID`: a StacyVM template by that name, else `base` (E2B's
/// default) for the default image, else an image reference.
async fn spawn_request(
    app: &AppState,
    template_id: &str,
) -> E2bResult<(Option<String>, Option<String>)> {
    match app.manager.store().get_template(template_id).await {
        Ok(t) => Ok((Some(t.name), None)),
        Err(StoreError::NotFound(_)) if template_id == "base" => Ok((None, None)),
        Err(StoreError::NotFound(_)) => Ok((None, Some(template_id.to_string()))),
        Err(e) => Err(e.into()),
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn template_of(sb: &Sandbox) -> String {
    sb.template.clone().unwrap_or_else(|| sb.image.clone())
}

/// The create/connect reply.
fn created(e2b: &E2b, sb: &Sandbox) -> Value {
    let template = template_of(sb);
    json!({
        "sandboxID": sb.id.as_str(),
        "templateID": template,
        "alias": template,
        "clientID": CLIENT_ID,
        "envdVersion": ENVD_VERSION,
        "envdAccessToken": e2b.tokens.issue(&sb.id),
        "domain": e2b.domain,
    })
}

fn e2b_state(s: SandboxState) -> Option<&'static str> {
    match s {
        SandboxState::Creating | SandboxState::Running | SandboxState::Unhealthy => Some("running"),
        _ => None,
    }
}

/// A sandbox as `GET /v2/sandboxes` lists it.
fn listed(sb: &Sandbox, state: &str) -> Value {
    let template = template_of(sb);
    json!({
        "sandboxID": sb.id.as_str(),
        "templateID": template,
        "alias": template,
        "clientID": CLIENT_ID,
        "startedAt": rfc3339(sb.created_at),
        "endAt": rfc3339(sb.expires_at),
        "cpuCount": sb.vcpus,
        "memoryMB": sb.memory_mb,
        "diskSizeMB": 0,
        "envdVersion": ENVD_VERSION,
        "state": state,
        "metadata": sb.metadata,
    })
}

/// `POST /sandboxes` and `POST /v2/sandboxes` (2.51 and later).
pub async fn create(
    State(app): State<AppState>,
    Extension(e2b): Extension<Arc<E2b>>,
    headers: HeaderMap,
    body: Bytes,
) -> E2bResult<(StatusCode, axum::Json<Value>)> {
    let owner = authorize(&app, &headers, false).await?.owner;
    let req: NewSandbox = object_body(&body)?;
    let template_id = req
        .template_id
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| "base".into());
    let metadata = string_map(req.metadata, "metadata")?;
    let envs = string_map(req.env_vars, "envVars")?;
    for k in envs.keys() {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(E2bError::bad_request(format!(
                "invalid environment variable name {k:?}"
            )));
        }
    }
    let ttl = seconds(req.timeout, "timeout")?;
    let (template, image) = spawn_request(&app, &template_id).await?;
    let spawn = SpawnRequest {
        image,
        template,
        ttl,
        metadata: Some(metadata),
        ..SpawnRequest::default()
    };
    let sb = app.manager.spawn(&spawn, owner.as_ref()).await?;
    if !envs.is_empty() {
        // Kept in the store so commands still get them after a restart; a
        // sandbox whose envVars cannot be kept is not handed out.
        if let Err(e) = app.manager.store().set_sandbox_env(&sb.id, &envs).await {
            tracing::error!(sandbox_id = %sb.id, error = %e, "storing the E2B envVars failed");
            if let Err(d) = app.manager.destroy(&sb.id).await {
                tracing::error!(sandbox_id = %sb.id, error = %d, "destroying it failed too");
            }
            return Err(e.into());
        }
        e2b.envs
            .lock()
            .expect("envs lock")
            .insert(sb.id.clone(), envs);
    }
    Ok((StatusCode::CREATED, axum::Json(created(&e2b, &sb))))
}

/// The metadata filter as the SDK sends it: `urlencode({quote(k): quote(v)})`
/// as one query value, so each key and value is percent-encoded once more
/// after the query string itself is decoded.
fn metadata_filter(raw: &str) -> E2bResult<BTreeMap<String, String>> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw)
        .map_err(|e| E2bError::bad_request(format!("invalid metadata filter: {e}")))?;
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| E2bError::bad_request("metadata filter is not UTF-8"))
    };
    pairs
        .into_iter()
        .map(|(k, v)| Ok((decode(&k)?, decode(&v)?)))
        .collect()
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ListQuery {
    metadata: Option<String>,
    state: Option<String>,
    #[serde(rename = "nextToken")]
    next_token: Option<String>,
    limit: Option<String>,
}

const MAX_PAGE: usize = 1000;

/// `GET /v2/sandboxes`: metadata and state filters, `X-Next-Token` paging
/// (the token is the position after the last sandbox sent, oldest first).
pub async fn list(
    State(app): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> E2bResult<Response> {
    let caller = authorize(&app, &headers, true).await?;
    let q: ListQuery = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| E2bError::bad_request(format!("invalid query: {e}")))?;
    let metadata = match q.metadata.as_deref() {
        Some(m) if !m.is_empty() => metadata_filter(m)?,
        _ => BTreeMap::new(),
    };
    let states: Vec<String> = q
        .state
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    for s in &states {
        if s != "running" && s != "paused" {
            return Err(E2bError::bad_request(format!(
                "invalid state {s:?} (use running or paused)"
            )));
        }
    }
    let limit = match q.limit.as_deref() {
        None | Some("") => 100,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_PAGE).contains(l))
            .ok_or_else(|| {
                E2bError::bad_request(format!("limit must be between 1 and {MAX_PAGE}"))
            })?,
    };
    let after = match q.next_token.as_deref() {
        None | Some("") => None,
        Some(t) => Some(parse_token(t)?),
    };
    let filter = SandboxFilter {
        owner: caller.owner,
        ..SandboxFilter::default()
    };
    let mut all: Vec<(Sandbox, &'static str)> = app
        .manager
        .list_filtered(&filter)
        .await?
        .into_iter()
        .filter_map(|sb| e2b_state(sb.state).map(|st| (sb, st)))
        .filter(|(_, st)| states.is_empty() || states.iter().any(|s| s == st))
        .filter(|(sb, _)| {
            metadata
                .iter()
                .all(|(k, v)| sb.metadata.get(k).is_some_and(|x| x == v))
        })
        .collect();
    all.sort_by(|(a, _), (b, _)| (a.created_at, a.id.as_str()).cmp(&(b.created_at, b.id.as_str())));
    if let Some((micros, id)) = &after {
        all.retain(|(sb, _)| {
            (sb.created_at.timestamp_micros(), sb.id.as_str()) > (*micros, id.as_str())
        });
    }
    let more = all.len() > limit;
    all.truncate(limit);
    let body: Vec<Value> = all.iter().map(|(sb, st)| listed(sb, st)).collect();
    let mut resp = axum::Json(body).into_response();
    if more && let Some((last, _)) = all.last() {
        let token = format!(
            "{}_{}",
            last.created_at.timestamp_micros(),
            last.id.as_str()
        );
        if let Ok(v) = HeaderValue::from_str(&token) {
            resp.headers_mut().insert("x-next-token", v);
        }
    }
    Ok(resp)
}

fn parse_token(t: &str) -> E2bResult<(i64, String)> {
    t.split_once('_')
        .and_then(|(m, id)| Some((m.parse().ok()?, id.to_string())))
        .ok_or_else(|| E2bError::bad_request("invalid nextToken"))
}

/// `GET /sandboxes` (the list before `/v2`): the same, unpaged.
pub async fn list_v1(
    state: State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> E2bResult<Response> {
    let mut q = query.unwrap_or_default();
    if !q.contains("limit=") {
        if !q.is_empty() {
            q.push('&');
        }
        q.push_str(&format!("limit={MAX_PAGE}"));
    }
    list(state, headers, RawQuery(Some(q))).await
}

/// Loads a sandbox E2B can see: a destroyed or expired one is not found.
/// A sandbox of another owner is not found either.
async fn visible(
    app: &AppState,
    caller: &Caller,
    id: &SandboxId,
) -> E2bResult<(Sandbox, &'static str)> {
    let sb = app.manager.get(id).await.map_err(not_found_as_404)?;
    let owned = caller.owner.is_none() || sb.owner_id == caller.owner;
    match e2b_state(sb.state) {
        Some(st) if owned => Ok((sb, st)),
        _ => Err(E2bError::new(
            StatusCode::NOT_FOUND,
            format!("sandbox {id} not found"),
        )),
    }
}

fn not_found_as_404(e: ManagerError) -> E2bError {
    e.into()
}

/// `GET /sandboxes/{id}`.
pub async fn get(
    State(app): State<AppState>,
    Extension(e2b): Extension<Arc<E2b>>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> E2bResult<axum::Json<Value>> {
    let caller = authorize(&app, &headers, true).await?;
    let id = sandbox_id(&raw)?;
    let (sb, st) = visible(&app, &caller, &id).await?;
    let mut v = listed(&sb, st);
    v["envdAccessToken"] = json!(e2b.tokens.issue(&sb.id));
    v["domain"] = json!(e2b.domain);
    Ok(axum::Json(v))
}

/// `DELETE /sandboxes/{id}`: 204, or 404 when there is no such sandbox.
pub async fn kill(
    State(app): State<AppState>,
    Extension(e2b): Extension<Arc<E2b>>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> E2bResult<StatusCode> {
    let caller = authorize(&app, &headers, false).await?;
    let id = sandbox_id(&raw)?;
    visible(&app, &caller, &id).await?;
    app.manager.destroy(&id).await?;
    e2b.forget(&id);
    if let Err(e) = app
        .manager
        .store()
        .set_sandbox_env(&id, &BTreeMap::new())
        .await
    {
        tracing::warn!(sandbox_id = %id, error = %e, "clearing the E2B envVars failed");
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TimeoutBody {
    timeout: Option<i64>,
    duration: Option<i64>,
}

/// `POST /sandboxes/{id}/timeout`: the sandbox now ends `timeout` seconds
/// from now.
pub async fn set_timeout(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    body: Bytes,
) -> E2bResult<StatusCode> {
    let caller = authorize(&app, &headers, false).await?;
    let id = sandbox_id(&raw)?;
    let b: TimeoutBody = object_body(&body)?;
    let Some(ttl) = seconds(b.timeout, "timeout")? else {
        return Err(E2bError::bad_request("timeout is required"));
    };
    visible(&app, &caller, &id).await?;
    app.manager.extend(&id, Some(ttl)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /sandboxes/{id}/refreshes`: keeps the sandbox for `duration`
/// more seconds (60 by default) unless it already lives longer.
pub async fn refresh(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    body: Bytes,
) -> E2bResult<StatusCode> {
    let caller = authorize(&app, &headers, false).await?;
    let id = sandbox_id(&raw)?;
    let b: TimeoutBody = object_body(&body)?;
    let ttl = seconds(b.duration, "duration")?.unwrap_or(GoDuration::from_secs(60));
    let (sb, _) = visible(&app, &caller, &id).await?;
    extend_at_least(&app, &sb, ttl).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn extend_at_least(app: &AppState, sb: &Sandbox, ttl: GoDuration) -> E2bResult<()> {
    let wanted = Utc::now() + chrono::Duration::from_std(ttl.0).unwrap_or_default();
    if wanted > sb.expires_at {
        app.manager.extend(&sb.id, Some(ttl)).await?;
    }
    Ok(())
}

/// `POST /sandboxes/{id}/connect` (and `/v2/...`, `/resume`): a running
/// sandbox is returned with its timeout raised to at least `timeout`.
pub async fn connect(
    State(app): State<AppState>,
    Extension(e2b): Extension<Arc<E2b>>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    body: Bytes,
) -> E2bResult<(StatusCode, axum::Json<Value>)> {
    let caller = authorize(&app, &headers, false).await?;
    let id = sandbox_id(&raw)?;
    let b: TimeoutBody = object_body(&body)?;
    let (sb, _) = visible(&app, &caller, &id).await?;
    if let Some(ttl) = seconds(b.timeout, "timeout")? {
        extend_at_least(&app, &sb, ttl).await?;
    }
    Ok((StatusCode::OK, axum::Json(created(&e2b, &sb))))
}

/// `POST /sandboxes/{id}/pause`: not yet mapped onto the manager's pause
/// (API v1 has it), so 501 (the SDK raises it as a `SandboxException`), or
/// 404 for an unknown sandbox.
pub async fn pause(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> E2bResult<StatusCode> {
    let caller = authorize(&app, &headers, false).await?;
    let id = sandbox_id(&raw)?;
    visible(&app, &caller, &id).await?;
    Err(E2bError::new(
        StatusCode::NOT_IMPLEMENTED,
        format!(
            "pause is not supported on the E2B API yet; \
             POST /api/v1/sandboxes/{id}/pause pauses sandbox {id}"
        ),
    ))
}

/// `GET /sandboxes/{id}/metrics`: one sample, now, from the figures the
/// server measures for every sandbox (`GET /api/v1/sandboxes/{id}`):
/// `cpuUsedPct` is the average since the sandbox started (StacyVM keeps
/// cumulative CPU time, not a history), disk figures are 0. `start` and
/// `end` are accepted and ignored.
pub async fn metrics(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> E2bResult<axum::Json<Value>> {
    let caller = authorize(&app, &headers, true).await?;
    let id = sandbox_id(&raw)?;
    let (sb, _) = visible(&app, &caller, &id).await?;
    let r = app
        .manager
        .sandbox_resources()
        .into_iter()
        .find(|r| r.sandbox == id.as_str());
    let now = Utc::now();
    let up = (now - sb.created_at).as_seconds_f64().max(0.001);
    let cpus = f64::from(sb.vcpus.max(1));
    let cpu_pct = r
        .as_ref()
        .and_then(|r| r.cpu_seconds)
        .map(|c| (c / up / cpus * 100.0).clamp(0.0, 100.0))
        .unwrap_or(0.0);
    let mem_used = r.as_ref().and_then(|r| r.memory_bytes).unwrap_or(0);
    Ok(axum::Json(json!([{
        "timestamp": rfc3339(now),
        "timestampUnix": now.timestamp(),
        "cpuCount": sb.vcpus,
        "cpuUsedPct": cpu_pct,
        "memUsed": mem_used,
        "memTotal": u64::from(sb.memory_mb) * 1024 * 1024,
        "memCache": 0,
        "diskUsed": 0,
        "diskTotal": 0,
    }])))
}

/// `GET /templates`: StacyVM's templates in E2B's shape.
pub async fn templates(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> E2bResult<axum::Json<Vec<Value>>> {
    authorize(&app, &headers, true).await?;
    let list = app.manager.list_templates().await?;
    Ok(axum::Json(
        list.into_iter()
            .map(|t| {
                json!({
                    "templateID": t.name,
                    "buildID": t.name,
                    "aliases": [t.name],
                    "names": [t.name],
                    "cpuCount": t.vcpus,
                    "memoryMB": t.memory_mb,
                    "diskSizeMB": 0,
                    "public": false,
                    "envdVersion": ENVD_VERSION,
                    "buildStatus": "ready",
                    "createdAt": rfc3339(t.created_at),
                    "updatedAt": rfc3339(t.updated_at),
                    "lastSpawnedAt": null,
                    "spawnCount": 0,
                    "buildCount": 1,
                    "createdBy": null,
                })
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SDK sends `urlencode({quote(k): quote(v)})`: `a b=c&d` becomes
    /// `a%2520b%3Dc%2526d` in the query string.
    #[test]
    fn metadata_filter_decodes_as_the_sdk_encodes() {
        // What reaches us after the query string is decoded once.
        let m = metadata_filter("a%20b=c%26d&user=x%3Dy").unwrap();
        assert_eq!(m.get("a b").map(String::as_str), Some("c&d"));
        assert_eq!(m.get("user").map(String::as_str), Some("x=y"));
        assert!(metadata_filter("").unwrap().is_empty());
    }

    #[test]
    fn timeouts_and_maps_are_validated() {
        assert!(seconds(Some(-1), "timeout").is_err());
        assert_eq!(seconds(Some(0), "timeout").unwrap(), None);
        assert!(string_map(Some(json!({"a": 1})), "metadata").is_err());
        assert!(string_map(Some(json!([1])), "metadata").is_err());
        assert_eq!(string_map(Some(json!({"a": "b"})), "m").unwrap().len(), 1);
    }
}
