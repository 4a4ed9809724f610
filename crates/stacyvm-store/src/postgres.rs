//! The PostgreSQL store: the same records and encoding as SQLite, for
//! clusters (many servers sharing one database) and for deployments that
//! already run PostgreSQL.

use std::time::Duration;

use sqlx::Postgres;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use stacyvm_core::Sandbox;

use crate::codec::{SandboxRow, ScopedUsageRow, db_error};
use crate::sqlite::{checked_scopes, split_usage};
use crate::{Admission, AdmissionLimits, Placement, StoreError, admission};

mod cluster;
#[cfg(test)]
mod tests;

/// Schema migrations, embedded at compile time.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a call waits for a free connection before giving up.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

const POOL_SIZE: u32 = 8;

/// The sandbox columns as selected: JSON comes back as text for the codec.
const SANDBOX_SELECT: &str = "id, state, provider, image, memory_mb, vcpus, owner_id, \
     created_at, expires_at, metadata::text AS metadata, preview_domain, template, error, node_id";
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

    /// [`Store::admit_sandbox`](crate::Store::admit_sandbox). The totals of
    /// the limited scopes are locked (an upsert that always updates, so a
    /// scope's first sandbox locks a fresh row too) in a fixed order, `all`
    /// then the owner's; concurrent admissions on every server wait for each
    /// other exactly where they compete, and read totals no other
    /// transaction can change before this one commits.
    ///
    /// With `placement`, placements are serialised cluster-wide by a
    /// transaction-level advisory lock taken first (so a node's capacity is
    /// read and filled by one admission at a time), then the node is picked
    /// among the candidates (see `cluster::pick`) in the same transaction.
    async fn admit(
        &self,
        sandbox: &Sandbox,
        limits: &AdmissionLimits,
        placement: Option<&Placement>,
    ) -> Result<Admission, StoreError> {
        let what = format!("sandbox {}", sandbox.id);
        let scopes = checked_scopes(sandbox, limits);
        if scopes.is_empty() && placement.is_none() {
            crate::sql::insert::<Postgres, _>(SandboxRow::encode(sandbox), "::json")
                .build()
                .execute(&self.pool)
                .await
                .map_err(|e| db_error("inserting", &what, e))?;
            return Ok(Admission::Admitted(sandbox.clone()));
        }
        let err = |e| db_error("admitting", &what, e);
        let mut tx = self.pool.begin().await.map_err(err)?;
        if placement.is_some() {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(cluster::PLACEMENT_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        if !scopes.is_empty() {
            let mut qb = sqlx::QueryBuilder::<Postgres>::new("INSERT INTO sandbox_usage (scope) ");
            qb.push_values(&scopes, |mut b, scope| {
                b.push_bind(scope.key());
            });
            qb.push(
                " ON CONFLICT (scope) DO UPDATE SET scope = EXCLUDED.scope \
                 RETURNING scope, sandboxes, memory_mb, vcpus",
            );
            let rows: Vec<ScopedUsageRow> =
                qb.build_query_as().fetch_all(&mut *tx).await.map_err(err)?;
            let (all, owner) = split_usage(rows);
            if let Some(refusal) = admission::refusal(sandbox, limits, all, owner) {
                tx.rollback().await.map_err(err)?;
                return Ok(Admission::Refused(refusal));
            }
        }
        let mut admitted = sandbox.clone();
        if let Some(placement) = placement {
            match cluster::pick(&mut tx, placement, u64::from(sandbox.memory_mb)).await? {
                Ok(node) => admitted.node_id = Some(node),
                Err(unplaced) => {
                    tx.rollback().await.map_err(err)?;
                    return Ok(Admission::Unplaced(unplaced));
                }
            }
        }
        crate::sql::insert::<Postgres, _>(SandboxRow::encode(&admitted), "::json")
            .build()
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(Admission::Admitted(admitted))
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
    store_extra: {
        fn cluster(&self) -> Option<&dyn crate::ClusterStore> {
            Some(self)
        }
    },
);
