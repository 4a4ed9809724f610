//! The [`Store`](crate::Store) implementation shared by the SQL drivers.
//!
//! SQLite and Postgres store the same rows (see [`crate::codec`]) and differ
//! only in their placeholders (which [`QueryBuilder`] writes for each driver),
//! in how a JSON column is written and read back, and in how they connect.
//! So the statements are built here once, and [`sql_store!`] writes the
//! `Store` methods once for every driver.

use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::StoreError;
use crate::codec::{SandboxRow, TemplateRow};

/// The columns of a `sandboxes` row, in table order.
pub(crate) const SANDBOX_COLUMNS: &str = "id, state, provider, image, memory_mb, vcpus, owner_id, \
     created_at, expires_at, metadata, preview_domain, template, error, node_id";
/// The columns of a `templates` row, in table order.
pub(crate) const TEMPLATE_COLUMNS: &str =
    "name, image, provider, memory_mb, vcpus, ttl, metadata, created_at, updated_at";

/// One column value of a row being written.
pub(crate) enum Value {
    Text(String),
    MaybeText(Option<String>),
    Int(i64),
    /// A JSON document, bound as text and cast by the driver's JSON cast.
    Json(String),
}

/// A row kept in a table with a single-column text key.
pub(crate) trait Record {
    const TABLE: &'static str;
    const KEY: &'static str;
    /// The key value, then every other column in table order.
    fn into_values(self) -> (String, Vec<(&'static str, Value)>);
}

impl Record for SandboxRow {
    const TABLE: &'static str = "sandboxes";
    const KEY: &'static str = "id";
    fn into_values(self) -> (String, Vec<(&'static str, Value)>) {
        use Value::{Int, Json, MaybeText, Text};
        let columns = vec![
            ("state", Text(self.state)),
            ("provider", Text(self.provider)),
            ("image", Text(self.image)),
            ("memory_mb", Int(self.memory_mb)),
            ("vcpus", Int(self.vcpus)),
            ("owner_id", MaybeText(self.owner_id)),
            ("created_at", Text(self.created_at)),
            ("expires_at", Text(self.expires_at)),
            ("metadata", Json(self.metadata)),
            ("preview_domain", MaybeText(self.preview_domain)),
            ("template", MaybeText(self.template)),
            ("error", MaybeText(self.error)),
            ("node_id", MaybeText(self.node_id)),
            ("counted", Int(self.counted)),
        ];
        (self.id, columns)
    }
}

impl Record for TemplateRow {
    const TABLE: &'static str = "templates";
    const KEY: &'static str = "name";
    fn into_values(self) -> (String, Vec<(&'static str, Value)>) {
        use Value::{Int, Json, MaybeText, Text};
        let columns = vec![
            ("image", Text(self.image)),
            ("provider", Text(self.provider)),
            ("memory_mb", Int(self.memory_mb)),
            ("vcpus", Int(self.vcpus)),
            ("ttl", MaybeText(self.ttl)),
            ("metadata", Json(self.metadata)),
            ("created_at", Text(self.created_at)),
            ("updated_at", Text(self.updated_at)),
        ];
        (self.name, columns)
    }
}

/// A query builder that can bind every [`Value`].
pub(crate) trait PushValue {
    /// Binds `value`; a JSON value is followed by `json_cast`.
    fn push_value(&mut self, value: Value, json_cast: &str);
}

impl<'a, DB> PushValue for QueryBuilder<'a, DB>
where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
    Option<String>: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    fn push_value(&mut self, value: Value, json_cast: &str) {
        match value {
            Value::Text(v) => {
                self.push_bind(v);
            }
            Value::MaybeText(v) => {
                self.push_bind(v);
            }
            Value::Int(v) => {
                self.push_bind(v);
            }
            Value::Json(v) => {
                self.push_bind(v).push(json_cast);
            }
        }
    }
}

/// `INSERT INTO table (key, columns...) VALUES (...)`.
pub(crate) fn insert<'a, DB, R>(row: R, json_cast: &str) -> QueryBuilder<'a, DB>
where
    DB: Database,
    R: Record,
    QueryBuilder<'a, DB>: PushValue,
{
    let (key, columns) = row.into_values();
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let mut qb = QueryBuilder::new(format!(
        "INSERT INTO {} ({}, {}) VALUES (",
        R::TABLE,
        R::KEY,
        names.join(", ")
    ));
    qb.push_value(Value::Text(key), json_cast);
    for (_, value) in columns {
        qb.push(", ");
        qb.push_value(value, json_cast);
    }
    qb.push(")");
    qb
}

/// `UPDATE table SET columns... WHERE key = ...`.
pub(crate) fn update<'a, DB, R>(row: R, json_cast: &str) -> QueryBuilder<'a, DB>
where
    DB: Database,
    R: Record,
    QueryBuilder<'a, DB>: PushValue,
{
    let (key, columns) = row.into_values();
    let mut qb = QueryBuilder::new(format!("UPDATE {} SET ", R::TABLE));
    for (i, (name, value)) in columns.into_iter().enumerate() {
        if i > 0 {
            qb.push(", ");
        }
        qb.push(name).push(" = ");
        qb.push_value(value, json_cast);
    }
    qb.push(format!(" WHERE {} = ", R::KEY));
    qb.push_value(Value::Text(key), json_cast);
    qb
}

/// `SELECT selected FROM table WHERE key = ...`.
pub(crate) fn select_one<'a, DB, R>(selected: &str, key: &str) -> QueryBuilder<'a, DB>
where
    DB: Database,
    R: Record,
    QueryBuilder<'a, DB>: PushValue,
{
    let mut qb = QueryBuilder::new(format!(
        "SELECT {selected} FROM {} WHERE {} = ",
        R::TABLE,
        R::KEY
    ));
    qb.push_value(Value::Text(key.to_string()), "");
    qb
}

/// `DELETE FROM table WHERE key = ...`.
pub(crate) fn delete<'a, DB, R>(key: &str) -> QueryBuilder<'a, DB>
where
    DB: Database,
    R: Record,
    QueryBuilder<'a, DB>: PushValue,
{
    let mut qb = QueryBuilder::new(format!("DELETE FROM {} WHERE {} = ", R::TABLE, R::KEY));
    qb.push_value(Value::Text(key.to_string()), "");
    qb
}

/// What a store call that returns nothing gives back.
pub(crate) type Done = Result<(), StoreError>;

/// An update or delete that touched no row did not find `what`.
pub(crate) fn found(rows_affected: u64, what: String) -> Result<(), StoreError> {
    if rows_affected == 0 {
        return Err(StoreError::NotFound(what));
    }
    Ok(())
}

/// Implements [`Store`](crate::Store) for a driver's store type, which must
/// have a `pool` field of the driver's pool type.
///
/// - `db`: the sqlx database type
/// - `json_cast`: appended to a bound JSON value (`""` or `"::json"`)
/// - `sandbox_select`, `template_select`: the column lists to select, each
///   column read back as its codec row field
macro_rules! sql_store {
    (
        $store:ty,
        driver: $driver:literal,
        db: $db:ty,
        json_cast: $json:expr,
        sandbox_select: $sandbox_select:expr,
        template_select: $template_select:expr
        $(, store_extra: { $($extra:tt)* })? $(,)?
    ) => {
        impl $store {
            /// Runs a statement; the number of rows it touched.
            async fn run(
                &self,
                mut qb: ::sqlx::QueryBuilder<'_, $db>,
                operation: &str,
                what: &str,
            ) -> Result<u64, $crate::StoreError> {
                let done = qb
                    .build()
                    .execute(&self.pool)
                    .await
                    .map_err(|e| $crate::codec::db_error(operation, what, e))?;
                Ok(done.rows_affected())
            }

            /// Runs a statement that must touch a row, `NotFound(what)` if none.
            async fn run_on_one(
                &self,
                qb: ::sqlx::QueryBuilder<'_, $db>,
                operation: &str,
                what: String,
            ) -> Result<(), $crate::StoreError> {
                let n = self.run(qb, operation, &what).await?;
                $crate::sql::found(n, what)
            }

            /// Reads the rows of a query.
            async fn rows<R>(
                &self,
                mut qb: ::sqlx::QueryBuilder<'_, $db>,
                operation: &str,
                what: &str,
            ) -> Result<Vec<R>, $crate::StoreError>
            where
                R: for<'r> ::sqlx::FromRow<'r, <$db as ::sqlx::Database>::Row> + Send + Unpin,
            {
                qb.build_query_as()
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| $crate::codec::db_error(operation, what, e))
            }

            /// Reads the row keyed `key`, `NotFound(what)` without.
            async fn row<R>(
                &self,
                selected: &str,
                key: &str,
                what: String,
            ) -> Result<R, $crate::StoreError>
            where
                R: $crate::sql::Record
                    + for<'r> ::sqlx::FromRow<'r, <$db as ::sqlx::Database>::Row>
                    + Send
                    + Unpin,
            {
                let qb = $crate::sql::select_one::<$db, R>(selected, key);
                let rows: Vec<R> = self.rows(qb, "reading", &what).await?;
                rows.into_iter()
                    .next()
                    .ok_or($crate::StoreError::NotFound(what))
            }
        }

        #[::async_trait::async_trait]
        impl $crate::Store for $store {
            fn driver(&self) -> &'static str {
                $driver
            }

            async fn admit_sandbox(
                &self,
                s: &::stacyvm_core::Sandbox,
                limits: &$crate::AdmissionLimits,
                placement: Option<&$crate::Placement>,
            ) -> Result<$crate::Admission, $crate::StoreError> {
                self.admit(s, limits, placement).await
            }

            async fn insert_sandbox(&self, s: &::stacyvm_core::Sandbox) -> $crate::sql::Done {
                let row = $crate::codec::SandboxRow::encode(s);
                let what = format!("sandbox {}", s.id);
                self.run($crate::sql::insert(row, $json), "inserting", &what)
                    .await?;
                Ok(())
            }

            async fn update_sandbox(&self, s: &::stacyvm_core::Sandbox) -> $crate::sql::Done {
                let row = $crate::codec::SandboxRow::encode(s);
                let what = format!("sandbox {}", s.id);
                self.run_on_one($crate::sql::update(row, $json), "updating", what)
                    .await
            }

            async fn usage(
                &self,
                scope: &$crate::UsageScope,
            ) -> Result<$crate::Usage, $crate::StoreError> {
                let mut qb = ::sqlx::QueryBuilder::<$db>::new(
                    "SELECT sandboxes, memory_mb, vcpus FROM sandbox_usage WHERE scope = ",
                );
                qb.push_bind(scope.key());
                let rows: Vec<$crate::codec::UsageRow> =
                    self.rows(qb, "reading", "sandbox usage").await?;
                Ok(rows.into_iter().next().map(Into::into).unwrap_or_default())
            }

            async fn transition(
                &self,
                id: &::stacyvm_core::SandboxId,
                from: &[::stacyvm_core::SandboxState],
                to: ::stacyvm_core::SandboxState,
                error: Option<&str>,
            ) -> Result<Option<::stacyvm_core::Sandbox>, $crate::StoreError> {
                let mut qb = ::sqlx::QueryBuilder::<$db>::new("UPDATE sandboxes SET state = ");
                qb.push_bind(to.as_str().to_string());
                qb.push(", counted = ")
                    .push_bind($crate::codec::counted(to));
                qb.push(", error = ").push_bind(error.map(str::to_string));
                qb.push(" WHERE id = ").push_bind(id.to_string());
                $crate::codec::push_states(&mut qb, from);
                qb.push(" RETURNING ").push($sandbox_select);
                let what = format!("sandbox {id}");
                let rows: Vec<$crate::codec::SandboxRow> = self.rows(qb, "updating", &what).await?;
                rows.into_iter()
                    .next()
                    .map($crate::codec::SandboxRow::decode)
                    .transpose()
            }

            async fn set_expiry(
                &self,
                id: &::stacyvm_core::SandboxId,
                expires_at: ::chrono::DateTime<::chrono::Utc>,
                states: &[::stacyvm_core::SandboxState],
            ) -> Result<Option<::stacyvm_core::Sandbox>, $crate::StoreError> {
                let mut qb = ::sqlx::QueryBuilder::<$db>::new("UPDATE sandboxes SET expires_at = ");
                qb.push_bind($crate::codec::encode_time(&expires_at));
                qb.push(" WHERE id = ").push_bind(id.to_string());
                $crate::codec::push_states(&mut qb, states);
                qb.push(" RETURNING ").push($sandbox_select);
                let what = format!("sandbox {id}");
                let rows: Vec<$crate::codec::SandboxRow> = self.rows(qb, "updating", &what).await?;
                rows.into_iter()
                    .next()
                    .map($crate::codec::SandboxRow::decode)
                    .transpose()
            }

            async fn expire_due(
                &self,
                now: ::chrono::DateTime<::chrono::Utc>,
                node_id: Option<&str>,
            ) -> Result<Vec<::stacyvm_core::Sandbox>, $crate::StoreError> {
                // `counted = 1` selects the partial expiry index.
                let mut qb = ::sqlx::QueryBuilder::<$db>::new(
                    "UPDATE sandboxes SET state = 'destroying', error = NULL \
                     WHERE counted = 1 AND state <> 'destroying' AND expires_at <= ",
                );
                qb.push_bind($crate::codec::encode_time(&now));
                if let Some(node) = node_id {
                    qb.push(" AND node_id = ").push_bind(node.to_string());
                }
                qb.push(" RETURNING ").push($sandbox_select);
                let rows: Vec<$crate::codec::SandboxRow> =
                    self.rows(qb, "expiring", "sandboxes").await?;
                let mut due: Vec<::stacyvm_core::Sandbox> = rows
                    .into_iter()
                    .map($crate::codec::SandboxRow::decode)
                    .collect::<Result<_, _>>()?;
                due.sort_by(|a, b| {
                    a.expires_at
                        .cmp(&b.expires_at)
                        .then_with(|| a.id.cmp(&b.id))
                });
                Ok(due)
            }

            async fn next_expiry(
                &self,
                node_id: Option<&str>,
            ) -> Result<Option<::chrono::DateTime<::chrono::Utc>>, $crate::StoreError> {
                let mut qb = ::sqlx::QueryBuilder::<$db>::new(
                    "SELECT expires_at FROM sandboxes \
                     WHERE counted = 1 AND state <> 'destroying'",
                );
                if let Some(node) = node_id {
                    qb.push(" AND node_id = ").push_bind(node.to_string());
                }
                qb.push(" ORDER BY expires_at LIMIT 1");
                let rows: Vec<$crate::codec::ExpiryRow> =
                    self.rows(qb, "reading", "the next expiry").await?;
                rows.into_iter().next().map(|r| r.decode()).transpose()
            }

            async fn get_sandbox(
                &self,
                id: &::stacyvm_core::SandboxId,
            ) -> Result<::stacyvm_core::Sandbox, $crate::StoreError> {
                let what = format!("sandbox {id}");
                let row: $crate::codec::SandboxRow =
                    self.row($sandbox_select, id.as_str(), what).await?;
                row.decode()
            }

            async fn list_sandboxes(
                &self,
                filter: &$crate::SandboxFilter,
            ) -> Result<Vec<::stacyvm_core::Sandbox>, $crate::StoreError> {
                let mut qb = ::sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {} FROM sandboxes",
                    $sandbox_select
                ));
                $crate::codec::push_filter(&mut qb, filter);
                qb.push(" ORDER BY created_at, id");
                let rows: Vec<$crate::codec::SandboxRow> =
                    self.rows(qb, "listing", "sandboxes").await?;
                rows.into_iter()
                    .map($crate::codec::SandboxRow::decode)
                    .collect()
            }

            async fn count_sandboxes(
                &self,
                filter: &$crate::SandboxFilter,
            ) -> Result<Vec<$crate::SandboxCount>, $crate::StoreError> {
                let mut qb = ::sqlx::QueryBuilder::<$db>::new(
                    "SELECT state, provider, COUNT(*) AS count FROM sandboxes",
                );
                // Destroyed sandboxes are never counted.
                let filter = $crate::SandboxFilter {
                    include_destroyed: false,
                    ..filter.clone()
                };
                $crate::codec::push_filter(&mut qb, &filter);
                qb.push(" GROUP BY state, provider");
                let rows: Vec<$crate::codec::CountRow> =
                    self.rows(qb, "counting", "sandboxes").await?;
                $crate::codec::CountRow::decode_all(rows)
            }

            async fn delete_sandbox(&self, id: &::stacyvm_core::SandboxId) -> $crate::sql::Done {
                let qb = $crate::sql::delete::<_, $crate::codec::SandboxRow>(id.as_str());
                self.run_on_one(qb, "deleting", format!("sandbox {id}"))
                    .await
            }

            async fn create_template(&self, t: &::stacyvm_core::Template) -> $crate::sql::Done {
                let row = $crate::codec::TemplateRow::encode(t);
                let what = format!("template {}", t.name);
                self.run($crate::sql::insert(row, $json), "creating", &what)
                    .await?;
                Ok(())
            }

            async fn update_template(&self, t: &::stacyvm_core::Template) -> $crate::sql::Done {
                let row = $crate::codec::TemplateRow::encode(t);
                let what = format!("template {}", t.name);
                self.run_on_one($crate::sql::update(row, $json), "updating", what)
                    .await
            }

            async fn get_template(
                &self,
                name: &str,
            ) -> Result<::stacyvm_core::Template, $crate::StoreError> {
                let what = format!("template {name}");
                let row: $crate::codec::TemplateRow =
                    self.row($template_select, name, what).await?;
                row.decode()
            }

            async fn list_templates(
                &self,
            ) -> Result<Vec<::stacyvm_core::Template>, $crate::StoreError> {
                let qb = ::sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {} FROM templates ORDER BY name",
                    $template_select
                ));
                let rows: Vec<$crate::codec::TemplateRow> =
                    self.rows(qb, "listing", "templates").await?;
                rows.into_iter()
                    .map($crate::codec::TemplateRow::decode)
                    .collect()
            }

            async fn delete_template(&self, name: &str) -> $crate::sql::Done {
                let qb = $crate::sql::delete::<_, $crate::codec::TemplateRow>(name);
                self.run_on_one(qb, "deleting", format!("template {name}"))
                    .await
            }

            async fn create_api_key(&self, k: &::stacyvm_core::ApiKey) -> $crate::sql::Done {
                let row = $crate::keys::KeyRow::encode(k);
                let what = format!("api key {}", k.id);
                self.run($crate::sql::insert(row, $json), "creating", &what)
                    .await?;
                Ok(())
            }

            async fn find_api_key(
                &self,
                hash: &str,
            ) -> Result<Option<::stacyvm_core::ApiKey>, $crate::StoreError> {
                let mut qb = ::sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {} FROM api_keys WHERE hash = ",
                    $crate::keys::KEY_COLUMNS
                ));
                qb.push_bind(hash.to_string());
                let rows: Vec<$crate::keys::KeyRow> = self.rows(qb, "reading", "api key").await?;
                rows.into_iter()
                    .next()
                    .map($crate::keys::KeyRow::decode)
                    .transpose()
            }

            async fn get_api_key(
                &self,
                id: &str,
            ) -> Result<::stacyvm_core::ApiKey, $crate::StoreError> {
                let what = format!("api key {id}");
                let row: $crate::keys::KeyRow =
                    self.row($crate::keys::KEY_COLUMNS, id, what).await?;
                row.decode()
            }

            async fn list_api_keys(
                &self,
                owner: Option<&::stacyvm_core::OwnerId>,
            ) -> Result<Vec<::stacyvm_core::ApiKey>, $crate::StoreError> {
                let mut qb = ::sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {} FROM api_keys",
                    $crate::keys::KEY_COLUMNS
                ));
                if let Some(owner) = owner {
                    qb.push(" WHERE owner_id = ")
                        .push_bind(owner.as_str().to_string());
                }
                qb.push(" ORDER BY created_at, id");
                let rows: Vec<$crate::keys::KeyRow> = self.rows(qb, "listing", "api keys").await?;
                rows.into_iter().map($crate::keys::KeyRow::decode).collect()
            }

            async fn revoke_api_key(
                &self,
                id: &str,
                at: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<::stacyvm_core::ApiKey, $crate::StoreError> {
                let mut qb = ::sqlx::QueryBuilder::<$db>::new(
                    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ",
                );
                qb.push_bind($crate::codec::encode_time(&at));
                qb.push(") WHERE id = ").push_bind(id.to_string());
                qb.push(" RETURNING ").push($crate::keys::KEY_COLUMNS);
                let what = format!("api key {id}");
                let rows: Vec<$crate::keys::KeyRow> = self.rows(qb, "revoking", &what).await?;
                rows.into_iter()
                    .next()
                    .ok_or($crate::StoreError::NotFound(what))?
                    .decode()
            }

            async fn record_api_key_use(
                &self,
                uses: &[(String, ::chrono::DateTime<::chrono::Utc>)],
            ) -> $crate::sql::Done {
                if uses.is_empty() {
                    return Ok(());
                }
                let err = |e| $crate::codec::db_error("recording", "api key use", e);
                let mut tx = self.pool.begin().await.map_err(err)?;
                for (id, at) in uses {
                    let at = $crate::codec::encode_time(at);
                    let mut qb =
                        ::sqlx::QueryBuilder::<$db>::new("UPDATE api_keys SET last_used_at = ");
                    qb.push_bind(at.clone());
                    qb.push(" WHERE id = ").push_bind(id.clone());
                    qb.push(" AND (last_used_at IS NULL OR last_used_at < ")
                        .push_bind(at);
                    qb.push(")");
                    qb.build().execute(&mut *tx).await.map_err(err)?;
                }
                tx.commit().await.map_err(err)
            }

            async fn ping(&self) -> $crate::sql::Done {
                let qb = ::sqlx::QueryBuilder::<$db>::new("SELECT 1");
                self.run(qb, "pinging", concat!($driver, " database"))
                    .await?;
                Ok(())
            }

            $($($extra)*)?
        }
    };
}
