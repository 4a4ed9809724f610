//! API keys as the store keeps them: who a key speaks for, what it may do,
//! and its life (expiry, revocation, last use). The secret itself is never
//! here, only its keyed hash.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::OwnerId;

/// What a key may do.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum KeyScope {
    /// Every owner, quotas, keys and nodes.
    Admin,
    /// The key owner's own sandboxes and templates.
    User,
    /// Get, list, events and metrics only.
    Read,
}

impl KeyScope {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyScope::Admin => "admin",
            KeyScope::User => "user",
            KeyScope::Read => "read",
        }
    }
}

impl fmt::Display for KeyScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyScope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(KeyScope::Admin),
            "user" => Ok(KeyScope::User),
            "read" => Ok(KeyScope::Read),
            other => Err(format!("unknown key scope {other:?} (admin, user or read)")),
        }
    }
}

/// A stored API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Public id (`key_...`), what listings and revocation name.
    pub id: String,
    /// The first characters of the key, enough for a person to recognise it.
    pub prefix: String,
    /// Lowercase hex HMAC-SHA256 of the whole key under the server pepper.
    pub hash: String,
    pub owner: OwnerId,
    pub scope: KeyScope,
    /// A free-form label.
    pub name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// Whether the key may be used at `now`: not revoked, not expired.
    pub fn is_valid_at(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}
