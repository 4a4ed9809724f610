//! The embedded SQLite store, the default: one file, WAL journal, schema
//! managed by versioned migrations compiled into the binary.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::Sqlite;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use stacyvm_core::Sandbox;

use crate::codec::{SandboxRow, ScopedUsageRow, db_error};
use crate::sql::{SANDBOX_COLUMNS, TEMPLATE_COLUMNS};
use crate::{Admission, AdmissionLimits, Placement, StoreError, Usage, UsageScope, admission};

#[cfg(test)]
mod tests;

/// Schema migrations, embedded at compile time.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a statement waits for another connection's write lock before
/// failing with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections in a file-backed pool. WAL lets readers run beside the one
/// writer; more connections than that only add lock contention.
const FILE_POOL_SIZE: u32 = 4;

/// A [`Store`] kept in an SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The database file; `None` for an in-memory store.
    path: Option<PathBuf>,
}

impl SqliteStore {
    /// Opens (creating when missing, with its parent directories) the
    /// database at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Unavailable(format!("creating directory {}: {e}", parent.display()))
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // With WAL, NORMAL keeps the database consistent on power loss
            // and only risks the last transactions; FULL would fsync on
            // every commit.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(FILE_POOL_SIZE)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(format!("opening {}: {e}", path.display())))?;
        let store = SqliteStore {
            pool,
            path: Some(path.to_path_buf()),
        };
        store.migrate().await?;
        tracing::debug!(path = %path.display(), "sqlite store opened");
        Ok(store)
    }

    /// A private database that lives as long as this store (and its clones):
    /// for tests and throw-away servers.
    pub async fn in_memory() -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .in_memory(true)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        // Each connection to ":memory:" is its own database, so the pool
        // holds exactly one connection and never lets it expire.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(format!("opening in-memory database: {e}")))?;
        let store = SqliteStore { pool, path: None };
        store.migrate().await?;
        Ok(store)
    }

    /// The database file, `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Waits for in-flight statements and closes every connection, leaving
    /// the file checkpointed. Later calls fail with `Unavailable`.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// [`Store::admit_sandbox`](crate::Store::admit_sandbox): SQLite has one
    /// writer at a time, so an immediate transaction (which takes the write
    /// lock at `BEGIN`) makes read-totals-then-insert atomic.
    async fn admit(
        &self,
        sandbox: &Sandbox,
        limits: &AdmissionLimits,
        placement: Option<&Placement>,
    ) -> Result<Admission, StoreError> {
        if placement.is_some() {
            return Err(StoreError::Unavailable(
                "placement on cluster nodes needs the postgres store".into(),
            ));
        }
        let what = format!("sandbox {}", sandbox.id);
        let row = SandboxRow::encode(sandbox);
        let scopes = checked_scopes(sandbox, limits);
        if scopes.is_empty() {
            crate::sql::insert::<Sqlite, _>(row, "")
                .build()
                .execute(&self.pool)
                .await
                .map_err(|e| db_error("inserting", &what, e))?;
            return Ok(Admission::Admitted(sandbox.clone()));
        }
        let err = |e| db_error("admitting", &what, e);
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(err)?;
        let mut qb = sqlx::QueryBuilder::<Sqlite>::new(
            "SELECT scope, sandboxes, memory_mb, vcpus FROM sandbox_usage WHERE scope IN (",
        );
        let mut list = qb.separated(", ");
        for scope in &scopes {
            list.push_bind(scope.key());
        }
        qb.push(")");
        let rows: Vec<ScopedUsageRow> =
            qb.build_query_as().fetch_all(&mut *tx).await.map_err(err)?;
        let (all, owner) = split_usage(rows);
        if let Some(refusal) = admission::refusal(sandbox, limits, all, owner) {
            tx.rollback().await.map_err(err)?;
            return Ok(Admission::Refused(refusal));
        }
        crate::sql::insert::<Sqlite, _>(row, "")
            .build()
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(Admission::Admitted(sandbox.clone()))
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(|e| {
            let at = self.path.as_ref().map_or_else(
                || "in-memory database".to_string(),
                |p| p.display().to_string(),
            );
            StoreError::Unavailable(format!("migrating {at}: {e}"))
        })
    }
}

/// The scopes whose totals decide an admission, in lock order.
pub(crate) fn checked_scopes(sandbox: &Sandbox, limits: &AdmissionLimits) -> Vec<UsageScope> {
    let mut scopes = Vec::new();
    if limits.all.is_limited() {
        scopes.push(UsageScope::All);
    }
    if let Some(owner) = &sandbox.owner_id
        && limits.owner.is_limited()
    {
        scopes.push(UsageScope::Owner(owner.clone()));
    }
    scopes
}

/// The (all, owner) totals among `rows`; a scope without a row holds
/// nothing yet.
pub(crate) fn split_usage(rows: Vec<ScopedUsageRow>) -> (Usage, Usage) {
    let (mut all, mut owner) = (Usage::default(), Usage::default());
    for r in rows {
        if r.scope == "all" {
            all = r.usage();
        } else if r.scope.starts_with("owner:") {
            owner = r.usage();
        }
    }
    (all, owner)
}

sql_store!(
    SqliteStore,
    driver: "sqlite",
    db: Sqlite,
    json_cast: "",
    sandbox_select: SANDBOX_COLUMNS,
    template_select: TEMPLATE_COLUMNS,
);
