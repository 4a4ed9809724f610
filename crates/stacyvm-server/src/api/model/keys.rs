//! `/keys`: API keys as the admin API shows them. The key itself appears
//! once, in [`CreatedKey`]; its hash never leaves the store.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use stacyvm_core::{ApiKey, GoDuration, KeyScope, OwnerId};
use utoipa::ToSchema;

/// `POST /keys`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// The owner the key speaks for.
    pub owner: OwnerId,
    /// `admin`, `user` (the default) or `read`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<KeyScope>,
    /// A label for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Lifetime from now (`720h`, at most 100 years); none: the key does
    /// not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<GoDuration>,
    /// `stacyvm` (default, `svm_<id>_<secret>`) or `e2b` (`e2b_<hex>`, for
    /// the E2B SDK).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "stacyvm")]
    pub format: Option<String>,
}

/// A key as listed: never the key or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyInfo {
    #[schema(example = "key_0123abcd4567ef89")]
    pub id: String,
    /// The first characters of the key.
    #[schema(example = "svm_0123abcd")]
    pub prefix: String,
    pub owner: OwnerId,
    pub scope: KeyScope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<ApiKey> for KeyInfo {
    fn from(k: ApiKey) -> Self {
        KeyInfo {
            id: k.id,
            prefix: k.prefix,
            owner: k.owner,
            scope: k.scope,
            name: k.name,
            created_at: k.created_at,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
            last_used_at: k.last_used_at,
        }
    }
}

/// The answer of `POST /keys`: the only time the key is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    /// The key; store it now, it cannot be shown again.
    pub key: String,
    #[serde(flatten)]
    pub info: KeyInfo,
}

/// `GET /keys` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListKeysQuery {
    /// Only this owner's keys.
    #[serde(default)]
    pub owner: Option<String>,
}
