//! Spawn and destroy under failure: callers that go away at every point of
//! a spawn, providers that fail half-way, destroys that fail and are
//! retried. After each, the store and the provider agree: no `creating`
//! record left behind, no runtime without a record, no record without a
//! runtime, and the usage totals match what is listed.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::fixture::{Fixture, fixture, fixture_with, kinds, limits};
use common::switchable::Switchable;
use common::{TestServer, assert_error};
use serde_json::json;
use stacyvm_core::{EventType, SandboxId, SandboxState};
use stacyvm_providers::Provider;
use stacyvm_providers::mock::MockProvider;
use stacyvm_server::config::DefaultsConfig;
use stacyvm_server::manager::{ManagerError, SpawnRequest, TokioClock};
use stacyvm_store::{MemoryStore, SandboxFilter, Store, UsageScope};

/// Ids of the runtimes the provider runs.
async fn runtimes(p: &Switchable) -> BTreeSet<SandboxId> {
    p.inventory()
        .await
        .unwrap()
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.id)
        .collect()
}

/// The store and the provider agree, nothing is half-made, and the usage
/// total counts exactly the active records.
async fn assert_settled(store: &dyn Store, p: &Switchable) {
    let records = store
        .list_sandboxes(&SandboxFilter::default())
        .await
        .unwrap();
    for r in &records {
        assert_ne!(
            r.state,
            SandboxState::Creating,
            "orphan creating record {}",
            r.id
        );
    }
    let running: BTreeSet<SandboxId> = records
        .iter()
        .filter(|r| r.state == SandboxState::Running)
        .map(|r| r.id.clone())
        .collect();
    assert_eq!(
        runtimes(p).await,
        running,
        "runtimes and running records differ"
    );
    let active = records.iter().filter(|r| r.state.is_active()).count() as u64;
    assert_eq!(
        store.usage(&UsageScope::All).await.unwrap().sandboxes,
        active
    );
}

/// Waits until no spawn is in flight (the held ones were released).
async fn settle(f: &Fixture) {
    for _ in 0..300 {
        let creating = f
            .store
            .list_sandboxes(&SandboxFilter {
                state: Some(SandboxState::Creating),
                ..Default::default()
            })
            .await
            .unwrap();
        if creating.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("spawns did not settle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_goes_away_mid_spawn_leaves_a_listed_sandbox() {
    let f = fixture(limits()).await;
    f.provider.hold_spawns.store(true, Ordering::SeqCst);
    let m = f.manager.clone();
    let call = tokio::spawn(async move { m.spawn(&SpawnRequest::default(), None).await });
    // The runtime exists and the spawn waits: the caller goes away.
    f.provider.wait_held(1).await;
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    f.provider.release.notify_waiters();
    settle(&f).await;
    let listed = f.manager.list(None).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].state, SandboxState::Running);
    assert_settled(&*f.store, &f.provider).await;
    assert!(kinds(&f.manager).contains(&EventType::SandboxRunning));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_dropped_at_any_point_leave_nothing_half_made() {
    let f = fixture(DefaultsConfig {
        max_sandboxes: 40,
        ..limits()
    })
    .await;
    // Drop each spawn after a different delay: before admission, during
    // it, while the provider works and after it answered.
    let mut calls = Vec::new();
    for i in 0..40u64 {
        let m = f.manager.clone();
        calls.push(tokio::spawn(async move {
            let req = SpawnRequest::default();
            let spawn = m.spawn(&req, None);
            tokio::time::timeout(Duration::from_micros(i * 150), spawn).await
        }));
    }
    for c in calls {
        let _ = c.await.unwrap();
    }
    settle(&f).await;
    assert_settled(&*f.store, &f.provider).await;
    // Dropped callers hold no capacity the sandboxes do not.
    let listed = f.manager.list(None).await.unwrap().len();
    assert!(listed <= 40);
    for _ in listed..40 {
        f.manager
            .spawn(&SpawnRequest::default(), None)
            .await
            .unwrap();
    }
    assert!(matches!(
        f.manager.spawn(&SpawnRequest::default(), None).await,
        Err(ManagerError::ResourceLimit { .. })
    ));
}

#[tokio::test]
async fn a_failed_spawn_is_reported_not_listed() {
    let f = fixture(limits()).await;
    f.provider.fail_after_create.store(true, Ordering::SeqCst);
    let err = f
        .manager
        .spawn(&SpawnRequest::default(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, ManagerError::Provider(_)), "{err:?}");
    assert!(f.manager.list(None).await.unwrap().is_empty());
    assert_settled(&*f.store, &f.provider).await;
    // The error event names the sandbox that never was.
    let events = f.manager.events().recent(100);
    let error = events
        .iter()
        .find(|e| e.kind == EventType::SandboxError)
        .expect("sandbox.error published");
    assert!(error.sandbox_id.is_some());
    assert_eq!(error.data["operation"], "spawn");
    let id = SandboxId::parse(error.sandbox_id.as_deref().unwrap()).unwrap();
    assert!(matches!(
        f.manager.get(&id).await,
        Err(ManagerError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_failed_spawn_whose_cleanup_fails_stays_counted_until_retried() {
    let f = fixture_with(limits(), Arc::new(TokioClock::new()), None, None).await;
    f.provider.fail_after_create.store(true, Ordering::SeqCst);
    f.provider.broken_destroy.store(true, Ordering::SeqCst);
    assert!(
        f.manager
            .spawn(&SpawnRequest::default(), None)
            .await
            .is_err()
    );
    let left = f.manager.list(None).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].state, SandboxState::Destroying);
    assert!(left[0].error.as_deref().unwrap().contains("cleanup failed"));
    assert_eq!(f.store.usage(&UsageScope::All).await.unwrap().sandboxes, 1);
    assert_eq!(f.manager.destroy_stats().pending, 1);
    f.provider.broken_destroy.store(false, Ordering::SeqCst);
    let tasks = f.manager.start_background();
    wait_for(|| async { f.manager.list(None).await.unwrap().is_empty() }).await;
    assert_settled(&*f.store, &f.provider).await;
    assert_eq!(f.manager.destroy_stats().pending, 0);
    f.manager.shutdown();
    for t in tasks {
        t.await.unwrap();
    }
}

/// Polls `done` for up to 10 s.
async fn wait_for<F, Fut>(done: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1000 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not met within 10s");
}

#[tokio::test(start_paused = true)]
async fn failed_destroys_are_retried_with_backoff_and_counted() {
    let f = fixture_with(limits(), Arc::new(TokioClock::new()), None, None).await;
    let tasks = f.manager.start_background();
    let sb = f
        .manager
        .spawn(&SpawnRequest::default(), None)
        .await
        .unwrap();
    f.provider.broken_destroy.store(true, Ordering::SeqCst);
    assert!(f.manager.destroy(&sb.id).await.is_err());
    let kept = f.manager.get(&sb.id).await.unwrap();
    assert_eq!(kept.state, SandboxState::Destroying);
    assert!(kept.error.as_deref().unwrap().contains("destroy failed"));
    // Still counted: its runtime still holds resources.
    assert_eq!(f.store.usage(&UsageScope::All).await.unwrap().sandboxes, 1);
    // 1 s, 2 s, 4 s: three more failed attempts within 8 s.
    tokio::time::sleep(Duration::from_millis(7_500)).await;
    let stats = f.manager.destroy_stats();
    assert_eq!(
        (stats.failures_total, stats.retries_total, stats.pending),
        (4, 3, 1)
    );
    f.provider.broken_destroy.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(
        f.manager.get(&sb.id).await.unwrap().state,
        SandboxState::Destroyed
    );
    let stats = f.manager.destroy_stats();
    assert_eq!((stats.retries_total, stats.pending), (4, 0));
    assert_settled(&*f.store, &f.provider).await;
    f.manager.shutdown();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroying_a_sandbox_while_it_is_created_leaves_no_runtime() {
    let f = fixture(limits()).await;
    f.provider.hold_spawns.store(true, Ordering::SeqCst);
    let m = f.manager.clone();
    let call = tokio::spawn(async move { m.spawn(&SpawnRequest::default(), None).await });
    f.provider.wait_held(1).await;
    let creating = f.manager.list(None).await.unwrap().remove(0);
    assert_eq!(creating.state, SandboxState::Creating);
    f.manager.destroy(&creating.id).await.unwrap();
    f.provider.release.notify_waiters();
    let outcome = call.await.unwrap();
    assert!(
        matches!(outcome, Err(ManagerError::NotFound(_))),
        "{outcome:?}"
    );
    assert_eq!(
        f.manager.get(&creating.id).await.unwrap().state,
        SandboxState::Destroyed
    );
    assert_settled(&*f.store, &f.provider).await;
}

#[tokio::test]
async fn reconciliation_settles_what_a_crash_cut_short() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let f = fixture_with(
        limits(),
        Arc::new(TokioClock::new()),
        Some(store.clone()),
        None,
    )
    .await;
    // A crash after admission (record, no runtime), one after the runtime
    // came up (record still creating), and one in the middle of a destroy.
    let mut no_runtime = common::fixture::record("mock");
    no_runtime.state = SandboxState::Creating;
    store.insert_sandbox(&no_runtime).await.unwrap();
    let mut came_up = common::fixture::record("mock");
    came_up.state = SandboxState::Creating;
    store.insert_sandbox(&came_up).await.unwrap();
    f.provider
        .inner
        .spawn(&common::fixture::spec(&came_up))
        .await
        .unwrap();
    let half_destroyed = f
        .manager
        .spawn(&SpawnRequest::default(), None)
        .await
        .unwrap();
    store
        .transition(
            &half_destroyed.id,
            &[SandboxState::Running],
            SandboxState::Destroying,
            None,
        )
        .await
        .unwrap();
    let report = f.manager.reconcile().await.unwrap();
    assert_eq!((report.kept, report.destroyed), (1, 2), "{report:?}");
    assert!(matches!(
        store.get_sandbox(&no_runtime.id).await,
        Err(stacyvm_store::StoreError::NotFound(_))
    ));
    assert_eq!(
        store.get_sandbox(&came_up.id).await.unwrap().state,
        SandboxState::Running
    );
    assert_eq!(
        store.get_sandbox(&half_destroyed.id).await.unwrap().state,
        SandboxState::Destroyed
    );
    assert_settled(&*store, &f.provider).await;
    drop(dir);
}

/// The same over HTTP: a client that disconnects while its spawn is in
/// flight finds the sandbox listed afterwards; a failed spawn answers with
/// the error and is not listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_clients_that_disconnect_mid_spawn() {
    let dir = tempfile::tempdir().unwrap();
    let slow = Arc::new(Switchable::new(
        "slow",
        MockProvider::new(dir.path().join("m")).unwrap(),
    ));
    let store = Arc::new(MemoryStore::new());
    let s = TestServer::start_parts(
        |c| {
            c.providers.mock.enabled = false;
            c.providers.default = "slow".into();
        },
        store.clone(),
        vec![slow.clone()],
    )
    .await;
    slow.hold_spawns.store(true, Ordering::SeqCst);
    let request = s.http.post(s.url("/sandboxes")).json(&json!({})).send();
    let gone =
        tokio::spawn(async move { tokio::time::timeout(Duration::from_secs(2), request).await });
    slow.wait_held(1).await;
    // The client gives up (its connection closes with the dropped future).
    assert!(gone.await.unwrap().is_err());
    slow.release.notify_waiters();
    let mut listed = Vec::new();
    for _ in 0..200 {
        let (status, body) = s.get("/sandboxes").await;
        assert_eq!(status, 200);
        listed = body.as_array().unwrap().clone();
        if listed.iter().all(|sb| sb["state"] == "running") && !listed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["state"], "running");
    assert_settled(&*store, &slow).await;

    slow.hold_spawns.store(false, Ordering::SeqCst);
    slow.fail_after_create.store(true, Ordering::SeqCst);
    let (status, body) = s.post("/sandboxes", json!({})).await;
    assert_error(status, &body, 503, "unavailable");
    let (_, listed) = s.get("/sandboxes").await;
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "the failed spawn is not listed"
    );
    assert_settled(&*store, &slow).await;
    s.stop().await;
}
