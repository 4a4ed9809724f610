//! `/keys`: the admin API for API keys (admin keys only; the auth
//! middleware refuses every other scope with 403).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use stacyvm_core::{KeyScope, OwnerId};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::model::errors::{BadRequest, NotFound};
use super::model::{CreateKeyRequest, CreatedKey, KeyInfo, ListKeysQuery};
use crate::keys::{KeyError, KeyForm};

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Store(s) => s.into(),
            KeyError::PepperNotShared => {
                ApiError::new(StatusCode::CONFLICT, "key_pepper_required", e.to_string())
            }
            KeyError::Pepper(_) => {
                tracing::error!(error = %e, "api key pepper unavailable");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the server log for details",
                )
            }
        }
    }
}

/// The longest `expires_in` a key may have. Beyond it the expiry would
/// leave the four-digit years every store's timestamps are written in.
const MAX_KEY_LIFETIME: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 24 * 3600);

/// Mints a key for an owner. The answer holds the key; it is never shown
/// again.
#[utoipa::path(
    post,
    path = "/keys",
    tag = "keys",
    request_body = CreateKeyRequest,
    responses(
        (status = 201, description = "The new key, shown once", body = CreatedKey),
        BadRequest,
        (status = 409, description = "The database is shared and `auth.key_pepper` is not set (`key_pepper_required`)", body = super::model::ErrorBody),
    ),
)]
pub async fn create(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<CreateKeyRequest>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    let form = match req.format.as_deref() {
        None | Some("stacyvm") => KeyForm::Stacyvm,
        Some("e2b") => KeyForm::E2b,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown key format {other:?} (stacyvm or e2b)"
            )));
        }
    };
    let expires_at = match req.expires_in {
        None => None,
        Some(d) if d.0 > MAX_KEY_LIFETIME => {
            return Err(ApiError::bad_request(
                "expires_in is longer than 100 years; omit it for a key that does not expire",
            ));
        }
        Some(d) => Some(
            chrono::Duration::from_std(d.0)
                .ok()
                .and_then(|d| chrono::Utc::now().checked_add_signed(d))
                .ok_or_else(|| ApiError::bad_request("expires_in is too long"))?,
        ),
    };
    let name = req.name.filter(|n| !n.trim().is_empty());
    if name.as_ref().is_some_and(|n| n.chars().count() > 200) {
        return Err(ApiError::bad_request("name is longer than 200 characters"));
    }
    let scope = req.scope.unwrap_or(KeyScope::User);
    let (key, secret) = app
        .keys
        .create(req.owner, scope, name, expires_at, form)
        .await?;
    tracing::info!(key_id = %key.id, owner = %key.owner, scope = %key.scope, "api key created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key: secret,
            info: key.into(),
        }),
    ))
}

/// Every key (of one owner with `?owner=`), oldest first; never the keys
/// themselves.
#[utoipa::path(
    get,
    path = "/keys",
    tag = "keys",
    params(ListKeysQuery),
    responses((status = 200, description = "The keys", body = Vec<KeyInfo>), BadRequest),
)]
pub async fn list(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<ListKeysQuery>,
) -> ApiResult<Json<Vec<KeyInfo>>> {
    let owner = match q.owner.as_deref() {
        None => None,
        Some(raw) => {
            OwnerId::parse(raw).map_err(|e| ApiError::bad_request(format!("invalid owner: {e}")))?
        }
    };
    let keys = app.keys.list(owner.as_ref()).await?;
    Ok(Json(keys.into_iter().map(KeyInfo::from).collect()))
}

/// One key.
#[utoipa::path(
    get,
    path = "/keys/{id}",
    tag = "keys",
    params(("id" = String, Path, description = "Key id")),
    responses((status = 200, description = "The key", body = KeyInfo), NotFound),
)]
pub async fn get(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<KeyInfo>> {
    Ok(Json(app.keys.get(&id).await?.into()))
}

/// Revokes a key: every server refuses it within a second. Revoking a
/// revoked key keeps its first revocation time.
#[utoipa::path(
    delete,
    path = "/keys/{id}",
    tag = "keys",
    params(("id" = String, Path, description = "Key id")),
    responses((status = 200, description = "The key, revoked", body = KeyInfo), NotFound),
)]
pub async fn revoke(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<KeyInfo>> {
    let key = app.keys.revoke(&id).await?;
    tracing::info!(key_id = %key.id, "api key revoked");
    Ok(Json(key.into()))
}
