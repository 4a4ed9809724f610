//! How API keys become `api_keys` rows and back (shared by the SQL
//! drivers), and the columns they are read with.

use stacyvm_core::{ApiKey, KeyScope};

use crate::StoreError;
use crate::codec::{decode_owner, decode_time, encode_time};
use crate::sql::{Record, Value};

/// The columns of an `api_keys` row, in table order.
pub(crate) const KEY_COLUMNS: &str =
    "id, hash, prefix, owner_id, scope, name, created_at, expires_at, revoked_at, last_used_at";

/// An `api_keys` row as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct KeyRow {
    pub id: String,
    pub hash: String,
    pub prefix: String,
    pub owner_id: String,
    pub scope: String,
    pub name: Option<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
}

impl Record for KeyRow {
    const TABLE: &'static str = "api_keys";
    const KEY: &'static str = "id";
    fn into_values(self) -> (String, Vec<(&'static str, Value)>) {
        use Value::{MaybeText, Text};
        let columns = vec![
            ("hash", Text(self.hash)),
            ("prefix", Text(self.prefix)),
            ("owner_id", Text(self.owner_id)),
            ("scope", Text(self.scope)),
            ("name", MaybeText(self.name)),
            ("created_at", Text(self.created_at)),
            ("expires_at", MaybeText(self.expires_at)),
            ("revoked_at", MaybeText(self.revoked_at)),
            ("last_used_at", MaybeText(self.last_used_at)),
        ];
        (self.id, columns)
    }
}

impl KeyRow {
    pub fn encode(k: &ApiKey) -> Self {
        KeyRow {
            id: k.id.clone(),
            hash: k.hash.clone(),
            prefix: k.prefix.clone(),
            owner_id: k.owner.as_str().to_string(),
            scope: k.scope.as_str().to_string(),
            name: k.name.clone(),
            created_at: encode_time(&k.created_at),
            expires_at: k.expires_at.as_ref().map(encode_time),
            revoked_at: k.revoked_at.as_ref().map(encode_time),
            last_used_at: k.last_used_at.as_ref().map(encode_time),
        }
    }

    pub fn decode(self) -> Result<ApiKey, StoreError> {
        let what = format!("api key {}", self.id);
        let bad = |field: &str, detail: String| {
            StoreError::Corrupt(format!("{what}: field {field}: {detail}"))
        };
        let time = |field: &str, raw: Option<String>| match raw {
            None => Ok(None),
            Some(raw) => decode_time(&raw).map(Some).map_err(|e| bad(field, e)),
        };
        Ok(ApiKey {
            owner: decode_owner(&self.owner_id).map_err(|e| bad("owner_id", e))?,
            scope: self
                .scope
                .parse::<KeyScope>()
                .map_err(|e| bad("scope", e))?,
            created_at: decode_time(&self.created_at).map_err(|e| bad("created_at", e))?,
            expires_at: time("expires_at", self.expires_at)?,
            revoked_at: time("revoked_at", self.revoked_at)?,
            last_used_at: time("last_used_at", self.last_used_at)?,
            id: self.id,
            hash: self.hash,
            prefix: self.prefix,
            name: self.name,
        })
    }
}
