//! SQLite store tests: the conformance suite in memory and on disk, plus
//! what only a file-backed SQLite can show (persistence, WAL, corruption).

use std::sync::Arc;

use sqlx::Row;

use super::*;
use crate::conformance;
use crate::{SandboxFilter, Store};
use stacyvm_core::SandboxId;

async fn file_store(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(&dir.path().join("stacyvm.db"))
        .await
        .expect("open file store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_in_memory() {
    let store = SqliteStore::in_memory()
        .await
        .expect("open in-memory store");
    conformance::run_all(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_on_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    conformance::run_all(Arc::new(file_store(&dir).await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_inserts_on_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(file_store(&dir).await);
    conformance::concurrent_inserts(store, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_inserts_in_memory() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.expect("open"));
    conformance::concurrent_inserts(store, 200).await;
}

#[tokio::test]
async fn data_survives_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested/deeper/stacyvm.db");
    let sandbox = conformance::full_sandbox();
    let template = conformance::full_template();
    {
        let store = SqliteStore::open(&path).await.expect("open");
        assert_eq!(store.path(), Some(path.as_path()));
        store.insert_sandbox(&sandbox).await.expect("insert");
        store.create_template(&template).await.expect("create");
        // Dropped without close(): committed data must still be there.
    }
    assert!(path.is_file(), "database file created with its parents");

    let store = SqliteStore::open(&path).await.expect("reopen");
    assert_eq!(store.get_sandbox(&sandbox.id).await.expect("get"), sandbox);
    assert_eq!(
        store.get_template(&template.name).await.expect("get"),
        template
    );
    store.close().await;

    // A third open after a clean close, migrations already applied.
    let store = SqliteStore::open(&path).await.expect("reopen after close");
    let listed = store
        .list_sandboxes(&SandboxFilter::default())
        .await
        .expect("list");
    assert_eq!(listed, vec![sandbox]);
}

#[tokio::test]
async fn file_store_uses_wal_and_foreign_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = file_store(&dir).await;
    let mode: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(&store.pool)
        .await
        .expect("pragma")
        .get(0);
    assert_eq!(mode, "wal");
    let fk: i64 = sqlx::query("PRAGMA foreign_keys")
        .fetch_one(&store.pool)
        .await
        .expect("pragma")
        .get(0);
    assert_eq!(fk, 1);
    let timeout: i64 = sqlx::query("PRAGMA busy_timeout")
        .fetch_one(&store.pool)
        .await
        .expect("pragma")
        .get(0);
    assert_eq!(timeout, BUSY_TIMEOUT.as_millis() as i64);
}

#[tokio::test]
async fn migrations_are_recorded() {
    let store = SqliteStore::in_memory().await.expect("open");
    let versions: Vec<i64> = sqlx::query("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&store.pool)
        .await
        .expect("read migrations")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let embedded: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
    assert_eq!(versions, embedded);
    assert!(!versions.is_empty());
}

#[tokio::test]
async fn undecodable_rows_are_corrupt() {
    let store = SqliteStore::in_memory().await.expect("open");
    let good = conformance::minimal_sandbox();
    store.insert_sandbox(&good).await.expect("insert");
    let cases = [
        ("state", "'exploded'"),
        ("created_at", "'yesterday'"),
        ("metadata", "'not json'"),
        ("memory_mb", "5000000000"),
        ("owner_id", "' padded '"),
    ];
    for (column, value) in cases {
        let victim = conformance::minimal_sandbox();
        store.insert_sandbox(&victim).await.expect("insert");
        sqlx::query(&format!(
            "UPDATE sandboxes SET {column} = {value} WHERE id = ?"
        ))
        .bind(victim.id.as_str())
        .execute(&store.pool)
        .await
        .expect("damage row");
        match store.get_sandbox(&victim.id).await {
            Err(StoreError::Corrupt(msg)) => {
                assert!(msg.contains(victim.id.as_str()), "{msg}");
                assert!(msg.contains(column), "{msg}");
            }
            other => panic!("damaged {column}: expected Corrupt, got {other:?}"),
        }
        assert!(matches!(
            store.list_sandboxes(&SandboxFilter::default()).await,
            Err(StoreError::Corrupt(_))
        ));
        store.delete_sandbox(&victim.id).await.expect("delete");
    }
    assert_eq!(store.get_sandbox(&good.id).await.expect("get"), good);

    let template = conformance::full_template();
    store.create_template(&template).await.expect("create");
    sqlx::query("UPDATE templates SET ttl = 'soon' WHERE name = ?")
        .bind(&template.name)
        .execute(&store.pool)
        .await
        .expect("damage row");
    match store.get_template(&template.name).await {
        Err(StoreError::Corrupt(msg)) => {
            assert!(msg.contains(&template.name) && msg.contains("ttl"), "{msg}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn closed_store_is_unavailable() {
    let store = SqliteStore::in_memory().await.expect("open");
    store.close().await;
    assert!(matches!(
        store.ping().await,
        Err(StoreError::Unavailable(_))
    ));
    let id = SandboxId::generate();
    assert!(matches!(
        store.get_sandbox(&id).await,
        Err(StoreError::Unavailable(_))
    ));
}

#[tokio::test]
async fn unopenable_path_is_unavailable() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The database path is an existing directory.
    match SqliteStore::open(dir.path()).await {
        Err(StoreError::Unavailable(msg)) => {
            assert!(msg.contains(&dir.path().display().to_string()), "{msg}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // A parent that is a file cannot become a directory.
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").expect("write");
    match SqliteStore::open(&file.join("db.sqlite")).await {
        Err(StoreError::Unavailable(msg)) => assert!(msg.contains("plain-file"), "{msg}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn database_from_a_newer_build_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("stacyvm.db");
    let store = SqliteStore::open(&path).await.expect("open");
    // Pretend a later StacyVM applied a migration this build does not know.
    sqlx::query(
        "INSERT INTO _sqlx_migrations \
         (version, description, success, checksum, execution_time) \
         VALUES (99999, 'from the future', 1, x'00', 0)",
    )
    .execute(&store.pool)
    .await
    .expect("record future migration");
    store.close().await;
    match SqliteStore::open(&path).await {
        Err(StoreError::Unavailable(msg)) => {
            assert!(
                msg.contains("migrating") && msg.contains("stacyvm.db"),
                "{msg}"
            )
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}
