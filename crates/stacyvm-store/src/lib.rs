//! Where StacyVM keeps sandboxes and templates: the `Store` trait, the
//! embedded SQLite implementation (default), a Postgres implementation
//! (feature `postgres`) and a conformance suite every implementation passes
//! (feature `conformance`).
#![forbid(unsafe_code)]

use async_trait::async_trait;
use stacyvm_core::{OwnerId, Sandbox, SandboxId, SandboxState, Template};

mod codec;
#[macro_use]
mod sql;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sqlite;

pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
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
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Short driver name (`sqlite`, `postgres`).
    fn driver(&self) -> &'static str;

    /// `Conflict` when the id exists.
    async fn insert_sandbox(&self, sandbox: &Sandbox) -> Result<(), StoreError>;
    /// Replaces the record; `NotFound` when the id does not exist.
    async fn update_sandbox(&self, sandbox: &Sandbox) -> Result<(), StoreError>;
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

    /// A cheap round trip proving the store answers.
    async fn ping(&self) -> Result<(), StoreError>;
}
