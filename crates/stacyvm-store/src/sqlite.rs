//! The embedded SQLite store, the default: one file, WAL journal, schema
//! managed by versioned migrations compiled into the binary.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite};
use stacyvm_core::{Sandbox, SandboxId, Template};

use crate::codec::{SandboxRow, TemplateRow, db_error, push_filter};
use crate::{SandboxFilter, Store, StoreError};

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

const SANDBOX_COLUMNS: &str = "id, state, provider, image, memory_mb, vcpus, owner_id, \
     created_at, expires_at, metadata, preview_domain, template, error";
const TEMPLATE_COLUMNS: &str =
    "name, image, provider, memory_mb, vcpus, ttl, metadata, created_at, updated_at";

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

#[async_trait]
impl Store for SqliteStore {
    fn driver(&self) -> &'static str {
        "sqlite"
    }

    async fn insert_sandbox(&self, sandbox: &Sandbox) -> Result<(), StoreError> {
        let what = format!("sandbox {}", sandbox.id);
        let r = SandboxRow::encode(sandbox);
        sqlx::query(&format!(
            "INSERT INTO sandboxes ({SANDBOX_COLUMNS}) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(r.id)
        .bind(r.state)
        .bind(r.provider)
        .bind(r.image)
        .bind(r.memory_mb)
        .bind(r.vcpus)
        .bind(r.owner_id)
        .bind(r.created_at)
        .bind(r.expires_at)
        .bind(r.metadata)
        .bind(r.preview_domain)
        .bind(r.template)
        .bind(r.error)
        .execute(&self.pool)
        .await
        .map_err(|e| db_error("inserting", &what, e))?;
        Ok(())
    }

    async fn update_sandbox(&self, sandbox: &Sandbox) -> Result<(), StoreError> {
        let what = format!("sandbox {}", sandbox.id);
        let r = SandboxRow::encode(sandbox);
        let done = sqlx::query(
            "UPDATE sandboxes SET state = ?, provider = ?, image = ?, memory_mb = ?, \
             vcpus = ?, owner_id = ?, created_at = ?, expires_at = ?, metadata = ?, \
             preview_domain = ?, template = ?, error = ? WHERE id = ?",
        )
        .bind(r.state)
        .bind(r.provider)
        .bind(r.image)
        .bind(r.memory_mb)
        .bind(r.vcpus)
        .bind(r.owner_id)
        .bind(r.created_at)
        .bind(r.expires_at)
        .bind(r.metadata)
        .bind(r.preview_domain)
        .bind(r.template)
        .bind(r.error)
        .bind(r.id)
        .execute(&self.pool)
        .await
        .map_err(|e| db_error("updating", &what, e))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(what));
        }
        Ok(())
    }

    async fn get_sandbox(&self, id: &SandboxId) -> Result<Sandbox, StoreError> {
        let what = format!("sandbox {id}");
        let row: Option<SandboxRow> = sqlx::query_as(&format!(
            "SELECT {SANDBOX_COLUMNS} FROM sandboxes WHERE id = ?"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| db_error("reading", &what, e))?;
        row.ok_or(StoreError::NotFound(what))?.decode()
    }

    async fn list_sandboxes(&self, filter: &SandboxFilter) -> Result<Vec<Sandbox>, StoreError> {
        let mut qb =
            QueryBuilder::<Sqlite>::new(format!("SELECT {SANDBOX_COLUMNS} FROM sandboxes"));
        push_filter(&mut qb, filter);
        qb.push(" ORDER BY created_at, id");
        let rows: Vec<SandboxRow> = qb
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(|e| db_error("listing", "sandboxes", e))?;
        rows.into_iter().map(SandboxRow::decode).collect()
    }

    async fn delete_sandbox(&self, id: &SandboxId) -> Result<(), StoreError> {
        let what = format!("sandbox {id}");
        let done = sqlx::query("DELETE FROM sandboxes WHERE id = ?")
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(|e| db_error("deleting", &what, e))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(what));
        }
        Ok(())
    }

    async fn create_template(&self, template: &Template) -> Result<(), StoreError> {
        let what = format!("template {}", template.name);
        let r = TemplateRow::encode(template);
        sqlx::query(&format!(
            "INSERT INTO templates ({TEMPLATE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(r.name)
        .bind(r.image)
        .bind(r.provider)
        .bind(r.memory_mb)
        .bind(r.vcpus)
        .bind(r.ttl)
        .bind(r.metadata)
        .bind(r.created_at)
        .bind(r.updated_at)
        .execute(&self.pool)
        .await
        .map_err(|e| db_error("creating", &what, e))?;
        Ok(())
    }

    async fn update_template(&self, template: &Template) -> Result<(), StoreError> {
        let what = format!("template {}", template.name);
        let r = TemplateRow::encode(template);
        let done = sqlx::query(
            "UPDATE templates SET image = ?, provider = ?, memory_mb = ?, vcpus = ?, \
             ttl = ?, metadata = ?, created_at = ?, updated_at = ? WHERE name = ?",
        )
        .bind(r.image)
        .bind(r.provider)
        .bind(r.memory_mb)
        .bind(r.vcpus)
        .bind(r.ttl)
        .bind(r.metadata)
        .bind(r.created_at)
        .bind(r.updated_at)
        .bind(r.name)
        .execute(&self.pool)
        .await
        .map_err(|e| db_error("updating", &what, e))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(what));
        }
        Ok(())
    }

    async fn get_template(&self, name: &str) -> Result<Template, StoreError> {
        let what = format!("template {name}");
        let row: Option<TemplateRow> = sqlx::query_as(&format!(
            "SELECT {TEMPLATE_COLUMNS} FROM templates WHERE name = ?"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| db_error("reading", &what, e))?;
        row.ok_or(StoreError::NotFound(what))?.decode()
    }

    async fn list_templates(&self) -> Result<Vec<Template>, StoreError> {
        let rows: Vec<TemplateRow> = sqlx::query_as(&format!(
            "SELECT {TEMPLATE_COLUMNS} FROM templates ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| db_error("listing", "templates", e))?;
        rows.into_iter().map(TemplateRow::decode).collect()
    }

    async fn delete_template(&self, name: &str) -> Result<(), StoreError> {
        let what = format!("template {name}");
        let done = sqlx::query("DELETE FROM templates WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(|e| db_error("deleting", &what, e))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(what));
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(|e| db_error("pinging", "sqlite database", e))?;
        Ok(())
    }
}
