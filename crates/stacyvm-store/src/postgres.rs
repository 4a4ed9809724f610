//! The Postgres store (cargo feature `postgres`): the same records and
//! encoding as SQLite, for deployments that already run Postgres.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, QueryBuilder};
use stacyvm_core::{Sandbox, SandboxId, Template};

use crate::codec::{SandboxRow, TemplateRow, db_error, push_filter};
use crate::{SandboxFilter, Store, StoreError};

#[cfg(test)]
mod tests;

/// Schema migrations, embedded at compile time.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a call waits for a free connection before giving up.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

const POOL_SIZE: u32 = 8;

const SANDBOX_COLUMNS: &str = "id, state, provider, image, memory_mb, vcpus, owner_id, \
     created_at, expires_at, metadata, preview_domain, template, error";
/// `SANDBOX_COLUMNS` as selected: JSON comes back as text for the codec.
const SANDBOX_SELECT: &str = "id, state, provider, image, memory_mb, vcpus, owner_id, \
     created_at, expires_at, metadata::text AS metadata, preview_domain, template, error";
const TEMPLATE_COLUMNS: &str =
    "name, image, provider, memory_mb, vcpus, ttl, metadata, created_at, updated_at";
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

#[async_trait]
impl Store for PostgresStore {
    fn driver(&self) -> &'static str {
        "postgres"
    }

    async fn insert_sandbox(&self, sandbox: &Sandbox) -> Result<(), StoreError> {
        let what = format!("sandbox {}", sandbox.id);
        let r = SandboxRow::encode(sandbox);
        sqlx::query(&format!(
            "INSERT INTO sandboxes ({SANDBOX_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::json, $11, $12, $13)"
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
            "UPDATE sandboxes SET state = $1, provider = $2, image = $3, memory_mb = $4, \
             vcpus = $5, owner_id = $6, created_at = $7, expires_at = $8, \
             metadata = $9::json, preview_domain = $10, template = $11, error = $12 \
             WHERE id = $13",
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
            "SELECT {SANDBOX_SELECT} FROM sandboxes WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| db_error("reading", &what, e))?;
        row.ok_or(StoreError::NotFound(what))?.decode()
    }

    async fn list_sandboxes(&self, filter: &SandboxFilter) -> Result<Vec<Sandbox>, StoreError> {
        let mut qb =
            QueryBuilder::<Postgres>::new(format!("SELECT {SANDBOX_SELECT} FROM sandboxes"));
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
        let done = sqlx::query("DELETE FROM sandboxes WHERE id = $1")
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
            "INSERT INTO templates ({TEMPLATE_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7::json, $8, $9)"
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
            "UPDATE templates SET image = $1, provider = $2, memory_mb = $3, vcpus = $4, \
             ttl = $5, metadata = $6::json, created_at = $7, updated_at = $8 WHERE name = $9",
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
            "SELECT {TEMPLATE_SELECT} FROM templates WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| db_error("reading", &what, e))?;
        row.ok_or(StoreError::NotFound(what))?.decode()
    }

    async fn list_templates(&self) -> Result<Vec<Template>, StoreError> {
        let rows: Vec<TemplateRow> = sqlx::query_as(&format!(
            "SELECT {TEMPLATE_SELECT} FROM templates ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| db_error("listing", "templates", e))?;
        rows.into_iter().map(TemplateRow::decode).collect()
    }

    async fn delete_template(&self, name: &str) -> Result<(), StoreError> {
        let what = format!("template {name}");
        let done = sqlx::query("DELETE FROM templates WHERE name = $1")
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
            .map_err(|e| db_error("pinging", "postgres database", e))?;
        Ok(())
    }
}
