//! The Postgres store (cargo feature `postgres`): the same records and
//! encoding as SQLite, for deployments that already run Postgres.

use std::time::Duration;

use sqlx::Postgres;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::StoreError;

#[cfg(test)]
mod tests;

/// Schema migrations, embedded at compile time.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a call waits for a free connection before giving up.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

const POOL_SIZE: u32 = 8;

/// The sandbox columns as selected: JSON comes back as text for the codec.
const SANDBOX_SELECT: &str = "id, state, provider, image, memory_mb, vcpus, owner_id, \
     created_at, expires_at, metadata::text AS metadata, preview_domain, template, error";
/// The template columns as selected, likewise.
const TEMPLATE_SELECT: &str = "name, image, provider, memory_mb, vcpus, ttl, \
     metadata::text AS metadata, created_at, updated_at";

/// A [`Store`] kept in a Postgres database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/db`) and
    /// brings the schema up to date. Error messages never repeat the URL,
    /// which may hold a password.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| StoreError::Unavailable(format!("invalid postgres url: {e}")))?;
        Self::connect_with(options).await
    }

    /// Like [`PostgresStore::connect`], from parsed options (for example with
    /// a `search_path` that selects a schema).
    pub async fn connect_with(options: PgConnectOptions) -> Result<Self, StoreError> {
        let target = format!(
            "postgres database {:?} on {}:{}",
            options.get_database().unwrap_or_default(),
            options.get_host(),
            options.get_port()
        );
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(format!("connecting to {target}: {e}")))?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migrating {target}: {e}")))?;
        tracing::debug!(target = %target, "postgres store connected");
        Ok(PostgresStore { pool })
    }

    /// Waits for in-flight statements and closes every connection. Later
    /// calls fail with `Unavailable`.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

// JSON columns are written through a cast from text and selected as text
// for the codec.
sql_store!(
    PostgresStore,
    driver: "postgres",
    db: Postgres,
    json_cast: "::json",
    sandbox_select: SANDBOX_SELECT,
    template_select: TEMPLATE_SELECT,
);
