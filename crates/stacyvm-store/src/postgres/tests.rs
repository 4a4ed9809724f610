//! Postgres store tests against a real server named by
//! `STACYVM_TEST_POSTGRES_URL` (see `scripts/ci/postgres.sh`). Each test
//! works in a fresh schema, so it runs the migrations from scratch and leaves
//! nothing behind. Without the variable the tests fail under `CI` and skip
//! with a printed reason elsewhere.

use std::sync::Arc;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection};

use super::*;
use crate::Store;
use crate::conformance;
use stacyvm_core::SandboxId;

const URL_VAR: &str = "STACYVM_TEST_POSTGRES_URL";

/// A schema created for one test and dropped when it ends.
struct Scratch {
    base: PgConnectOptions,
    schema: String,
}

impl Scratch {
    /// `None` (after saying why) when no server is configured outside CI.
    async fn new() -> Option<Self> {
        let url = match std::env::var(URL_VAR) {
            Ok(url) if !url.is_empty() => url,
            _ if std::env::var_os("CI").is_some() => panic!(
                "{URL_VAR} is not set but CI is: run scripts/ci/postgres.sh and export its output"
            ),
            _ => {
                eprintln!("skipping: {URL_VAR} is not set (see scripts/ci/postgres.sh)");
                return None;
            }
        };
        let base: PgConnectOptions = url.parse().expect("STACYVM_TEST_POSTGRES_URL parses");
        let schema = format!("stacyvm_test_{}", &SandboxId::generate().as_str()[3..]);
        let mut conn = PgConnection::connect_with(&base)
            .await
            .expect("connect to the test postgres server");
        conn.execute(format!("CREATE SCHEMA {schema}").as_str())
            .await
            .expect("create test schema");
        conn.close().await.ok();
        Some(Scratch { base, schema })
    }

    fn options(&self) -> PgConnectOptions {
        self.base
            .clone()
            .options([("search_path", self.schema.as_str())])
    }

    async fn store(&self) -> PostgresStore {
        PostgresStore::connect_with(self.options())
            .await
            .expect("connect postgres store")
    }

    async fn drop_schema(self) {
        let mut conn = PgConnection::connect_with(&self.base)
            .await
            .expect("connect to drop the test schema");
        conn.execute(format!("DROP SCHEMA {} CASCADE", self.schema).as_str())
            .await
            .expect("drop test schema");
        conn.close().await.ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_postgres() {
    let Some(scratch) = Scratch::new().await else {
        return;
    };
    let store = scratch.store().await;
    conformance::run_all(Arc::new(store.clone())).await;
    conformance::concurrent_inserts(Arc::new(store.clone()), 200).await;
    store.close().await;
    scratch.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_conformance_postgres() {
    let Some(scratch) = Scratch::new().await else {
        return;
    };
    let store = scratch.store().await;
    crate::cluster_conformance::run_all(Arc::new(store.clone())).await;
    store.close().await;
    scratch.drop_schema().await;
}

#[tokio::test]
async fn postgres_data_survives_reconnecting() {
    let Some(scratch) = Scratch::new().await else {
        return;
    };
    let sandbox = conformance::full_sandbox();
    let template = conformance::full_template();
    let store = scratch.store().await;
    store.insert_sandbox(&sandbox).await.expect("insert");
    store.create_template(&template).await.expect("create");
    store.close().await;

    // Migrations are already applied: a second connect must not redo them.
    let store = scratch.store().await;
    assert_eq!(store.get_sandbox(&sandbox.id).await.expect("get"), sandbox);
    assert_eq!(
        store.get_template(&template.name).await.expect("get"),
        template
    );
    store.close().await;
    scratch.drop_schema().await;
}

#[tokio::test]
async fn postgres_undecodable_rows_are_corrupt() {
    let Some(scratch) = Scratch::new().await else {
        return;
    };
    let store = scratch.store().await;
    let victim = conformance::minimal_sandbox();
    store.insert_sandbox(&victim).await.expect("insert");
    sqlx::query("UPDATE sandboxes SET state = 'exploded' WHERE id = $1")
        .bind(victim.id.as_str())
        .execute(&store.pool)
        .await
        .expect("damage row");
    match store.get_sandbox(&victim.id).await {
        Err(StoreError::Corrupt(msg)) => assert!(msg.contains(victim.id.as_str()), "{msg}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    store.close().await;
    scratch.drop_schema().await;
}

#[tokio::test]
async fn unreachable_postgres_is_unavailable_without_leaking_the_password() {
    // Nothing listens on port 1; the password must not appear in the error.
    let url = "postgres://stacyvm:hunter2-secret@127.0.0.1:1/stacyvm";
    match PostgresStore::connect(url).await {
        Err(StoreError::Unavailable(msg)) => {
            assert!(!msg.contains("hunter2-secret"), "{msg}");
            assert!(msg.contains("127.0.0.1:1"), "{msg}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(matches!(
        PostgresStore::connect("not a url").await,
        Err(StoreError::Unavailable(_))
    ));
}
