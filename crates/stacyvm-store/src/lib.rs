//! Where StacyVM keeps sandboxes and templates: the `Store` trait, the
//! embedded SQLite implementation (default), the PostgreSQL implementation
//! (for clusters and operators who already run PostgreSQL) and a
//! conformance suite every implementation passes (feature `conformance`).
#![forbid(unsafe_code)]

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use stacyvm_core::{ApiKey, OwnerId, Sandbox, SandboxId, SandboxState, Template};

mod admission;
mod cluster;
mod codec;
mod keys;
#[macro_use]
mod sql;
#[cfg(any(test, feature = "conformance"))]
pub mod cluster_conformance;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
#[cfg(any(test, feature = "conformance"))]
mod conformance_keys;
pub mod memory;
pub mod postgres;
pub mod sqlite;

pub use admission::{
    Admission, AdmissionLimits, LimitedResource, Placement, PlacementPolicy, Refusal, RefusedScope,
    ScopeLimits, Unplaced, Usage, UsageScope, refusal,
};
pub use cluster::{ClusterStore, LostNode};
pub use memory::MemoryStore;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// What went wrong in a store call.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    /// The database cannot be reached or answered with an error.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

/// Which sandboxes a listing returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxFilter {
    /// Include sandboxes in state `destroyed`.
    pub include_destroyed: bool,
    pub owner: Option<OwnerId>,
    pub state: Option<SandboxState>,
    pub provider: Option<String>,
    /// Only sandboxes placed on this cluster node.
    pub node_id: Option<String>,
}

/// How many sandboxes are in one (state, provider) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxCount {
    pub state: SandboxState,
    pub provider: String,
    pub count: u64,
}

impl SandboxCount {
    /// Counts `sandboxes` by (state, provider), leaving destroyed ones out;
    /// ordered by state then provider.
    pub fn tally<'a>(sandboxes: impl IntoIterator<Item = &'a Sandbox>) -> Vec<SandboxCount> {
        let mut counts: std::collections::BTreeMap<(SandboxState, &str), u64> =
            std::collections::BTreeMap::new();
        for s in sandboxes {
            if s.state != SandboxState::Destroyed {
                *counts.entry((s.state, s.provider.as_str())).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .map(|((state, provider), count)| SandboxCount {
                state,
                provider: provider.to_string(),
                count,
            })
            .collect()
    }
}

/// Persistent state. Implementations are cheap to share (`Arc<dyn Store>`).
///
/// Lifecycle writes that may race (another request, another node) are
/// conditional: [`Store::transition`] and [`Store::set_expiry`] only apply
/// to a record in an expected state, and [`Store::expire_due`] claims each
/// due sandbox exactly once.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Short driver name (`sqlite`, `postgres`).
    fn driver(&self) -> &'static str;

    /// Inserts `sandbox` if it fits `limits`, atomically with counting what
    /// is already admitted: concurrent callers (on any number of servers
    /// sharing the database) never admit more than the limits allow. One
    /// write transaction; `Conflict` when the id exists.
    ///
    /// With `placement` (a cluster, PostgreSQL only) the same transaction
    /// also picks the node and records it as the sandbox's `node_id`;
    /// without it `sandbox.node_id` is stored as given.
    async fn admit_sandbox(
        &self,
        sandbox: &Sandbox,
        limits: &AdmissionLimits,
        placement: Option<&Placement>,
    ) -> Result<Admission, StoreError>;
    /// What the counted sandboxes of `scope` hold (an indexed read).
    async fn usage(&self, scope: &UsageScope) -> Result<Usage, StoreError>;

    /// `Conflict` when the id exists. Not checked against any limit (for
    /// records rebuilt by reconciliation).
    async fn insert_sandbox(&self, sandbox: &Sandbox) -> Result<(), StoreError>;
    /// Replaces the record; `NotFound` when the id does not exist.
    async fn update_sandbox(&self, sandbox: &Sandbox) -> Result<(), StoreError>;
    /// Moves a sandbox that is in one of `from` to `to` and sets its
    /// `error`; the record after the change, or `None` when it does not
    /// exist or is in another state (someone else moved it first).
    async fn transition(
        &self,
        id: &SandboxId,
        from: &[SandboxState],
        to: SandboxState,
        error: Option<&str>,
    ) -> Result<Option<Sandbox>, StoreError>;
    /// Sets the expiry of a sandbox that is in one of `states`; the record
    /// after the change, or `None` as for [`Store::transition`].
    async fn set_expiry(
        &self,
        id: &SandboxId,
        expires_at: DateTime<Utc>,
        states: &[SandboxState],
    ) -> Result<Option<Sandbox>, StoreError>;
    /// Claims every counted sandbox (of `node_id`, when given) that is not
    /// already being destroyed and expires at or before `now`: each moves to
    /// `destroying` and is returned exactly once, to exactly one caller.
    async fn expire_due(
        &self,
        now: DateTime<Utc>,
        node_id: Option<&str>,
    ) -> Result<Vec<Sandbox>, StoreError>;
    /// The earliest expiry among the sandboxes [`Store::expire_due`] would
    /// claim (an indexed read).
    async fn next_expiry(&self, node_id: Option<&str>)
    -> Result<Option<DateTime<Utc>>, StoreError>;
    async fn get_sandbox(&self, id: &SandboxId) -> Result<Sandbox, StoreError>;
    /// Ordered by creation time, oldest first.
    async fn list_sandboxes(&self, filter: &SandboxFilter) -> Result<Vec<Sandbox>, StoreError>;
    /// Removes the record for good; `NotFound` when absent.
    async fn delete_sandbox(&self, id: &SandboxId) -> Result<(), StoreError>;
    /// Sandboxes matching `filter` counted by (state, provider), ordered by
    /// state then provider; pairs with no sandbox are left out. Destroyed
    /// sandboxes are never counted, whatever the filter says.
    async fn count_sandboxes(
        &self,
        filter: &SandboxFilter,
    ) -> Result<Vec<SandboxCount>, StoreError> {
        Ok(SandboxCount::tally(&self.list_sandboxes(filter).await?))
    }

    /// `Conflict` when the name exists.
    async fn create_template(&self, template: &Template) -> Result<(), StoreError>;
    /// `NotFound` when the name does not exist.
    async fn update_template(&self, template: &Template) -> Result<(), StoreError>;
    async fn get_template(&self, name: &str) -> Result<Template, StoreError>;
    /// Ordered by name.
    async fn list_templates(&self) -> Result<Vec<Template>, StoreError>;
    async fn delete_template(&self, name: &str) -> Result<(), StoreError>;

    /// `Conflict` when the id or the hash exists.
    async fn create_api_key(&self, key: &ApiKey) -> Result<(), StoreError>;
    /// The key whose hash is `hash`, whether valid or not; `None` when no
    /// key has it (an indexed read: the authentication path).
    async fn find_api_key(&self, hash: &str) -> Result<Option<ApiKey>, StoreError>;
    async fn get_api_key(&self, id: &str) -> Result<ApiKey, StoreError>;
    /// Ordered by creation time, then id; only `owner`'s when given.
    async fn list_api_keys(&self, owner: Option<&OwnerId>) -> Result<Vec<ApiKey>, StoreError>;
    /// Marks the key revoked at `at` (an earlier revocation stands); the
    /// record after the change. `NotFound` when the id does not exist.
    async fn revoke_api_key(&self, id: &str, at: DateTime<Utc>) -> Result<ApiKey, StoreError>;
    /// Raises each named key's `last_used_at` to the given time (never
    /// lowers it), in one transaction; unknown ids are ignored.
    async fn record_api_key_use(&self, uses: &[(String, DateTime<Utc>)]) -> Result<(), StoreError>;

    /// A cheap round trip proving the store answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// The node registry, when many servers share this store (PostgreSQL);
    /// `None` on a single host.
    fn cluster(&self) -> Option<&dyn ClusterStore> {
        None
    }
}
