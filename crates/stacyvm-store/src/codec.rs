//! How domain records become SQL column values and back, shared by every SQL
//! driver so they all store the same representation.
//!
//! Timestamps are RFC 3339 UTC text with exactly nine fractional digits:
//! fixed width, so ordering by the text column is ordering by time, and
//! nanoseconds round-trip exactly (unlike Postgres `timestamptz`, which
//! keeps microseconds). Maps are JSON objects; TTLs are Go duration strings.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use stacyvm_core::{GoDuration, OwnerId, Sandbox, SandboxId, SandboxState, Template};

use crate::{SandboxCount, SandboxFilter, StoreError};

/// A `sandboxes` row as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct SandboxRow {
    pub id: String,
    pub state: String,
    pub provider: String,
    pub image: String,
    pub memory_mb: i64,
    pub vcpus: i64,
    pub owner_id: Option<String>,
    pub created_at: String,
    pub expires_at: String,
    pub metadata: String,
    pub preview_domain: Option<String>,
    pub template: Option<String>,
    pub error: Option<String>,
    pub node_id: Option<String>,
    /// 1 while the sandbox counts against limits (`SandboxState::is_active`);
    /// written for the usage triggers, never read back.
    #[sqlx(default)]
    pub counted: i64,
}

/// A `sandbox_usage` row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct UsageRow {
    pub sandboxes: i64,
    pub memory_mb: i64,
    pub vcpus: i64,
}

impl From<UsageRow> for crate::Usage {
    fn from(r: UsageRow) -> Self {
        crate::Usage {
            sandboxes: crate::admission::total(r.sandboxes),
            memory_mb: crate::admission::total(r.memory_mb),
            vcpus: crate::admission::total(r.vcpus),
        }
    }
}

/// A `sandbox_usage` row with its scope.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct ScopedUsageRow {
    pub scope: String,
    pub sandboxes: i64,
    pub memory_mb: i64,
    pub vcpus: i64,
}

impl ScopedUsageRow {
    pub fn usage(&self) -> crate::Usage {
        crate::Usage {
            sandboxes: crate::admission::total(self.sandboxes),
            memory_mb: crate::admission::total(self.memory_mb),
            vcpus: crate::admission::total(self.vcpus),
        }
    }
}

/// One expiry timestamp.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct ExpiryRow {
    pub expires_at: String,
}

impl ExpiryRow {
    pub fn decode(self) -> Result<DateTime<Utc>, StoreError> {
        decode_time(&self.expires_at)
            .map_err(|e| StoreError::Corrupt(format!("sandbox expiry: {e}")))
    }
}

/// One group of a sandbox count.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct CountRow {
    pub state: String,
    pub provider: String,
    pub count: i64,
}

impl CountRow {
    /// Decodes and orders the groups as `SandboxCount::tally` does (by
    /// state, then provider), leaving out a destroyed group.
    pub fn decode_all(rows: Vec<CountRow>) -> Result<Vec<SandboxCount>, StoreError> {
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let state: SandboxState = r
                .state
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("sandbox count: field state: {e}")))?;
            if state == SandboxState::Destroyed {
                continue;
            }
            out.push(SandboxCount {
                state,
                provider: r.provider,
                count: u64::try_from(r.count).unwrap_or(0),
            });
        }
        out.sort_by(|a, b| (a.state, &a.provider).cmp(&(b.state, &b.provider)));
        Ok(out)
    }
}

/// A `templates` row as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct TemplateRow {
    pub name: String,
    pub image: String,
    pub provider: String,
    pub memory_mb: i64,
    pub vcpus: i64,
    pub ttl: Option<String>,
    pub metadata: String,
    pub created_at: String,
    pub updated_at: String,
}

/// The `counted` column of a sandbox in `state`.
pub(crate) fn counted(state: SandboxState) -> i64 {
    i64::from(state.is_active())
}

/// Fixed-width text form of a timestamp (see the module docs).
pub(crate) fn encode_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn encode_map(map: &BTreeMap<String, String>) -> String {
    // Serialising a map of strings cannot fail.
    serde_json::to_string(map).unwrap_or_else(|_| "{}".to_string())
}

impl SandboxRow {
    pub fn encode(s: &Sandbox) -> Self {
        SandboxRow {
            id: s.id.to_string(),
            state: s.state.as_str().to_string(),
            provider: s.provider.clone(),
            image: s.image.clone(),
            memory_mb: i64::from(s.memory_mb),
            vcpus: i64::from(s.vcpus),
            owner_id: s.owner_id.as_ref().map(|o| o.as_str().to_string()),
            created_at: encode_time(&s.created_at),
            expires_at: encode_time(&s.expires_at),
            metadata: encode_map(&s.metadata),
            preview_domain: s.preview_domain.clone(),
            template: s.template.clone(),
            error: s.error.clone(),
            node_id: s.node_id.clone(),
            counted: counted(s.state),
        }
    }

    pub fn decode(self) -> Result<Sandbox, StoreError> {
        let what = format!("sandbox {}", self.id);
        let bad = |field: &str, detail: String| {
            StoreError::Corrupt(format!("{what}: field {field}: {detail}"))
        };
        let id =
            SandboxId::parse(&self.id).ok_or_else(|| bad("id", "not a sandbox id".to_string()))?;
        let state: SandboxState = self.state.parse().map_err(|e| bad("state", e))?;
        let owner_id = match self.owner_id {
            None => None,
            Some(raw) => Some(decode_owner(&raw).map_err(|e| bad("owner_id", e))?),
        };
        Ok(Sandbox {
            id,
            state,
            provider: self.provider,
            image: self.image,
            memory_mb: decode_u32(self.memory_mb).map_err(|e| bad("memory_mb", e))?,
            vcpus: decode_u32(self.vcpus).map_err(|e| bad("vcpus", e))?,
            owner_id,
            created_at: decode_time(&self.created_at).map_err(|e| bad("created_at", e))?,
            expires_at: decode_time(&self.expires_at).map_err(|e| bad("expires_at", e))?,
            metadata: decode_map(&self.metadata).map_err(|e| bad("metadata", e))?,
            preview_domain: self.preview_domain,
            template: self.template,
            error: self.error,
            node_id: self.node_id,
        })
    }
}

impl TemplateRow {
    pub fn encode(t: &Template) -> Self {
        TemplateRow {
            name: t.name.clone(),
            image: t.image.clone(),
            provider: t.provider.clone(),
            memory_mb: i64::from(t.memory_mb),
            vcpus: i64::from(t.vcpus),
            ttl: t.ttl.map(|d| d.to_string()),
            metadata: encode_map(&t.metadata),
            created_at: encode_time(&t.created_at),
            updated_at: encode_time(&t.updated_at),
        }
    }

    pub fn decode(self) -> Result<Template, StoreError> {
        let what = format!("template {}", self.name);
        let bad = |field: &str, detail: String| {
            StoreError::Corrupt(format!("{what}: field {field}: {detail}"))
        };
        let ttl = match self.ttl {
            None => None,
            Some(raw) => Some(GoDuration::parse(&raw).map_err(|e| bad("ttl", e.to_string()))?),
        };
        Ok(Template {
            memory_mb: decode_u32(self.memory_mb).map_err(|e| bad("memory_mb", e))?,
            vcpus: decode_u32(self.vcpus).map_err(|e| bad("vcpus", e))?,
            ttl,
            metadata: decode_map(&self.metadata).map_err(|e| bad("metadata", e))?,
            created_at: decode_time(&self.created_at).map_err(|e| bad("created_at", e))?,
            updated_at: decode_time(&self.updated_at).map_err(|e| bad("updated_at", e))?,
            name: self.name,
            image: self.image,
            provider: self.provider,
        })
    }
}

pub(crate) fn decode_time(raw: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("invalid timestamp {raw:?}: {e}"))
}

fn decode_u32(raw: i64) -> Result<u32, String> {
    u32::try_from(raw).map_err(|_| format!("{raw} is out of range"))
}

fn decode_map(raw: &str) -> Result<BTreeMap<String, String>, String> {
    serde_json::from_str(raw).map_err(|e| format!("invalid json object: {e}"))
}

/// Only an id that `OwnerId::parse` would produce unchanged is accepted:
/// anything else was not written by a store.
pub(crate) fn decode_owner(raw: &str) -> Result<OwnerId, String> {
    match OwnerId::parse(raw) {
        Ok(Some(owner)) if owner.as_str() == raw => Ok(owner),
        Ok(_) => Err(format!("invalid owner id {raw:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Maps a driver error to a store error: a unique violation is a conflict on
/// `what`, a column that cannot be decoded is corruption, anything else means
/// the database is unavailable.
pub(crate) fn db_error(operation: &str, what: &str, err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(what.to_string())
        }
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::Decode(_) => StoreError::Corrupt(format!("{what}: {err}")),
        _ => StoreError::Unavailable(format!("{operation} {what}: {err}")),
    }
}

/// Appends the `WHERE` clause for `filter`. An explicit `state` filter wins
/// over `include_destroyed`: asking for destroyed sandboxes returns them.
pub(crate) fn push_filter<'a, DB>(qb: &mut sqlx::QueryBuilder<'a, DB>, filter: &SandboxFilter)
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    qb.push(" WHERE 1 = 1");
    match filter.state {
        Some(state) => {
            qb.push(" AND state = ")
                .push_bind(state.as_str().to_string());
        }
        None if !filter.include_destroyed => {
            qb.push(" AND state <> ")
                .push_bind(SandboxState::Destroyed.as_str().to_string());
        }
        None => {}
    }
    if let Some(owner) = &filter.owner {
        qb.push(" AND owner_id = ")
            .push_bind(owner.as_str().to_string());
    }
    if let Some(provider) = &filter.provider {
        qb.push(" AND provider = ").push_bind(provider.clone());
    }
    if let Some(node) = &filter.node_id {
        qb.push(" AND node_id = ").push_bind(node.clone());
    }
}

/// Appends ` AND state IN (...)` for `states` (nothing matches when empty).
pub(crate) fn push_states<'a, DB>(qb: &mut sqlx::QueryBuilder<'a, DB>, states: &[SandboxState])
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    if states.is_empty() {
        qb.push(" AND 1 = 0");
        return;
    }
    qb.push(" AND state IN (");
    let mut list = qb.separated(", ");
    for s in states {
        list.push_bind(s.as_str().to_string());
    }
    qb.push(")");
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn timestamps_are_fixed_width_and_exact() {
        let a = Utc.timestamp_opt(1_780_000_000, 5).unwrap();
        let b = Utc.timestamp_opt(1_780_000_000, 999_999_999).unwrap();
        let (ea, eb) = (encode_time(&a), encode_time(&b));
        assert_eq!(ea, "2026-05-28T20:26:40.000000005Z");
        assert_eq!(ea.len(), eb.len());
        assert!(ea < eb);
        assert_eq!(decode_time(&ea).unwrap(), a);
        assert_eq!(decode_time(&eb).unwrap(), b);
    }

    #[test]
    fn rejects_values_a_store_never_writes() {
        assert!(decode_u32(-1).is_err());
        assert!(decode_u32(i64::from(u32::MAX) + 1).is_err());
        assert!(decode_map("[1]").is_err());
        assert!(decode_owner(" alice").is_err());
        assert!(decode_owner("").is_err());
        assert!(decode_time("yesterday").is_err());
    }
}
