//! Manager tests: limits under concurrency, the TTL reaper under paused
//! time, audit events, exec timeouts and startup reconciliation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use stacyvm_core::{EventType, ExecRequest, GoDuration, SandboxId, SandboxState};
use stacyvm_providers::{Provider, SpawnSpec};
use stacyvm_server::config::DefaultsConfig;
use stacyvm_server::manager::{ManagerError, SpawnRequest, SystemClock, TokioClock};
use stacyvm_store::{MemoryStore, Store};

mod common;
use common::fixture::{fixture, fixture_with, kinds, limits};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_spawns_never_over_admit() {
    let f = fixture(DefaultsConfig {
        max_sandboxes: 10,
        ..limits()
    })
    .await;
    let spawns = (0..50).map(|_| {
        let m = f.manager.clone();
        tokio::spawn(async move { m.spawn(&SpawnRequest::default(), None).await })
    });
    let results = futures::future::join_all(spawns).await;
    let ok = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
    let limited = results
        .iter()
        .filter(|r| matches!(r, Ok(Err(ManagerError::ResourceLimit { .. }))))
        .count();
    assert_eq!((ok, limited), (10, 40));
    assert_eq!(f.manager.list(None).await.unwrap().len(), 10);
    let limit_events = kinds(&f.manager)
        .iter()
        .filter(|k| **k == EventType::ResourceLimit)
        .count();
    assert_eq!(limit_events, 40);
}

#[tokio::test]
async fn per_owner_limit() {
    let f = fixture(DefaultsConfig {
        max_sandboxes_per_owner: 2,
        ..limits()
    })
    .await;
    let req = |o: &str| SpawnRequest {
        owner_id: Some(o.into()),
        ..Default::default()
    };
    f.manager.spawn(&req("a"), None).await.unwrap();
    f.manager.spawn(&req("a"), None).await.unwrap();
    assert!(matches!(
        f.manager.spawn(&req("a"), None).await,
        Err(ManagerError::ResourceLimit { .. })
    ));
    f.manager.spawn(&req("b"), None).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn reaper_expires_on_time() {
    let f = fixture_with(limits(), Arc::new(TokioClock::new()), None, None).await;
    let tasks = f.manager.start_background();
    let short = f
        .manager
        .spawn(
            &SpawnRequest {
                ttl: Some(GoDuration::from_secs(60)),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let long = f
        .manager
        .spawn(
            &SpawnRequest {
                ttl: Some(GoDuration::from_secs(600)),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert_eq!(
        f.manager.get(&short.id).await.unwrap().state,
        SandboxState::Running
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        f.manager.get(&short.id).await.unwrap().state,
        SandboxState::Destroyed
    );
    assert_eq!(
        f.manager.get(&long.id).await.unwrap().state,
        SandboxState::Running
    );
    // Extending pushes the expiry out.
    f.manager
        .extend(&long.id, Some(GoDuration::from_secs(3000)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(700)).await;
    assert_eq!(
        f.manager.get(&long.id).await.unwrap().state,
        SandboxState::Running
    );
    tokio::time::sleep(Duration::from_secs(2400)).await;
    assert_eq!(
        f.manager.get(&long.id).await.unwrap().state,
        SandboxState::Destroyed
    );
    let k = kinds(&f.manager);
    assert_eq!(
        k.iter()
            .filter(|k| **k == EventType::SandboxExpired)
            .count(),
        2
    );
    f.manager.shutdown();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn ttl_and_exec_timeout_limits() {
    let f = fixture(limits()).await;
    let too_long = SpawnRequest {
        ttl: Some(GoDuration::from_secs(7200)),
        ..Default::default()
    };
    assert!(matches!(
        f.manager.spawn(&too_long, None).await,
        Err(ManagerError::ResourceLimit { .. })
    ));
    let sb = f
        .manager
        .spawn(&SpawnRequest::default(), None)
        .await
        .unwrap();
    let req = |cmd: &str, t: Option<u64>| ExecRequest {
        command: cmd.into(),
        timeout: t.map(|ms| GoDuration(Duration::from_millis(ms))),
        ..Default::default()
    };
    // Over the maximum: refused before running.
    let e = f
        .manager
        .exec(&sb.id, &req("true", Some(200_000)))
        .await
        .unwrap_err();
    assert!(matches!(e, ManagerError::ResourceLimit { .. }), "{e:?}");
    // The default applies when none is given.
    let f2 = fixture(DefaultsConfig {
        default_exec_timeout: GoDuration(Duration::from_millis(300)),
        ..limits()
    })
    .await;
    let sb2 = f2
        .manager
        .spawn(&SpawnRequest::default(), None)
        .await
        .unwrap();
    let e = f2
        .manager
        .exec(&sb2.id, &req("sleep 5", None))
        .await
        .unwrap_err();
    assert!(matches!(e, ManagerError::ExecTimeout(_)), "{e:?}");
    let k = kinds(&f2.manager);
    assert!(k.contains(&EventType::ExecTimeout));
    let k = kinds(&f.manager);
    assert!(k.contains(&EventType::ResourceLimit));
}

#[tokio::test]
async fn every_audit_event_type_is_published() {
    let f = fixture(DefaultsConfig {
        max_sandboxes: 3,
        ..limits()
    })
    .await;
    let m = &f.manager;
    let sb = m.spawn(&SpawnRequest::default(), None).await.unwrap();
    let exec = |c: &str, t: Option<u64>| ExecRequest {
        command: c.into(),
        timeout: t.map(|ms| GoDuration(Duration::from_millis(ms))),
        ..Default::default()
    };
    m.exec(&sb.id, &exec("true", None)).await.unwrap();
    m.exec(&sb.id, &exec("sleep 5", Some(200)))
        .await
        .unwrap_err();
    m.write_file(&sb.id, "/f", Bytes::from_static(b"secret-content"), None)
        .await
        .unwrap();
    let _stream = m.read_file(&sb.id, "/f").await.unwrap();
    // Stream timeout.
    let mut h = m
        .exec_stream(
            &sb.id,
            &ExecRequest {
                stream: true,
                ..exec("sleep 5", Some(200))
            },
            None,
        )
        .await
        .unwrap();
    while h.output.recv().await.is_some() {}
    // Provider failures: exec, file op, destroy, spawn, health.
    f.provider.set_broken(true);
    m.exec(&sb.id, &exec("true", None)).await.unwrap_err();
    m.write_file(&sb.id, "/g", Bytes::new(), None)
        .await
        .unwrap_err();
    m.spawn(&SpawnRequest::default(), None).await.unwrap_err();
    m.refresh_health().await;
    m.destroy(&sb.id).await.unwrap_err();
    f.provider.set_broken(false);
    m.refresh_health().await;
    // Limits.
    for _ in 0..3 {
        let _ = m.spawn(&SpawnRequest::default(), None).await;
    }
    let _ = m.spawn(&SpawnRequest::default(), None).await.unwrap_err();
    let events = m.events().recent(1000);
    let k: Vec<EventType> = events.iter().map(|e| e.kind).collect();
    for want in [
        EventType::SandboxCreated,
        EventType::SandboxRunning,
        EventType::SandboxError,
        EventType::ExecStarted,
        EventType::ExecCompleted,
        EventType::ExecFailed,
        EventType::ExecTimeout,
        EventType::FileWritten,
        EventType::FileRead,
        EventType::OperationFailed,
        EventType::ResourceLimit,
        EventType::ProviderFailed,
        EventType::ProviderRecovered,
    ] {
        assert!(k.contains(&want), "missing {want}: {k:?}");
    }
    // Two timeouts: sync and stream.
    assert_eq!(
        k.iter().filter(|k| **k == EventType::ExecTimeout).count(),
        2
    );
    // Event data never carries file contents.
    for e in &events {
        assert!(!e.data.to_string().contains("secret-content"), "{e:?}");
        assert!(e.id.starts_with("evt-"));
    }
    // Failure events say operation, provider and error.
    let failed = events
        .iter()
        .find(|e| e.kind == EventType::OperationFailed)
        .unwrap();
    for key in ["operation", "provider", "error"] {
        assert!(failed.data.get(key).is_some(), "{failed:?}");
    }
    // Metrics saw it all.
    let ops = m.metrics().snapshot();
    let exec_row = ops.iter().find(|o| o.operation.as_str() == "exec").unwrap();
    assert!(
        exec_row.success_total >= 1 && exec_row.failure_total >= 2,
        "{exec_row:?}"
    );
}

#[tokio::test]
async fn caller_cancellation_is_not_a_timeout() {
    let f = fixture(limits()).await;
    let sb = f
        .manager
        .spawn(&SpawnRequest::default(), None)
        .await
        .unwrap();
    let req = ExecRequest {
        command: "sleep 30".into(),
        stream: true,
        ..Default::default()
    };
    let h = f.manager.exec_stream(&sb.id, &req, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(h);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let k = kinds(&f.manager);
    assert!(!k.contains(&EventType::ExecTimeout), "{k:?}");
    assert!(!k.contains(&EventType::ExecFailed), "{k:?}");
}

#[tokio::test]
async fn reconciliation_adopts_and_marks() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let f = fixture_with(limits(), Arc::new(SystemClock), Some(store.clone()), None).await;
    let kept = f
        .manager
        .spawn(&SpawnRequest::default(), None)
        .await
        .unwrap();
    let gone = f
        .manager
        .spawn(&SpawnRequest::default(), None)
        .await
        .unwrap();
    // The runtime vanishes behind the store's back.
    f.provider.inner.destroy(&gone.id).await.unwrap();
    // A runtime the store does not know.
    let stray = SandboxId::generate();
    let mut labels = BTreeMap::new();
    labels.insert("owner_id".to_string(), "zed".to_string());
    f.provider
        .inner
        .spawn(&SpawnSpec {
            id: stray.clone(),
            image: "busybox".into(),
            memory_mb: 64,
            vcpus: 1,
            metadata: BTreeMap::new(),
            labels,
            network: None,
        })
        .await
        .unwrap();
    let report = f.manager.reconcile().await.unwrap();
    assert_eq!(
        (report.kept, report.destroyed, report.adopted),
        (1, 1, 1),
        "{report:?}"
    );
    assert_eq!(
        store.get_sandbox(&kept.id).await.unwrap().state,
        SandboxState::Running
    );
    assert_eq!(
        store.get_sandbox(&gone.id).await.unwrap().state,
        SandboxState::Destroyed
    );
    let adopted = store.get_sandbox(&stray).await.unwrap();
    assert_eq!(
        (adopted.state, adopted.owner_id.map(|o| o.to_string())),
        (SandboxState::Running, Some("zed".into()))
    );
    let actions = f
        .manager
        .events()
        .recent(100)
        .into_iter()
        .filter(|e| e.kind == EventType::ReconcileAction)
        .count();
    // Kept (re-adopted), destroyed and adopted: one event each.
    assert_eq!(actions, 3);
    // With the provider down, persisted sandboxes become `error`.
    f.provider.set_broken(true);
    f.manager.refresh_health().await;
    let report = f.manager.reconcile().await.unwrap();
    assert_eq!(report.errored, 2, "{report:?}");
    assert_eq!(
        store.get_sandbox(&kept.id).await.unwrap().state,
        SandboxState::Error
    );
    drop(dir);
}

/// A pause cut short between the runtime and the record (the server died
/// after freezing): reconciliation trusts the runtime and records `paused`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_sees_a_frozen_runtime_as_paused() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let f = fixture_with(limits(), Arc::new(SystemClock), Some(store.clone()), None).await;
    let sb = f
        .manager
        .spawn(&SpawnRequest::default(), None)
        .await
        .unwrap();
    f.provider.inner.pause(&sb.id).await.unwrap();
    let report = f.manager.reconcile().await.unwrap();
    assert_eq!(report.kept, 1, "{report:?}");
    assert_eq!(
        store.get_sandbox(&sb.id).await.unwrap().state,
        SandboxState::Paused
    );
    let resumed = f.manager.resume(&sb.id).await.unwrap();
    assert_eq!(resumed.state, SandboxState::Running);
    assert_eq!(
        f.provider.inner.status(&sb.id).await.unwrap(),
        stacyvm_providers::RuntimeStatus::Running
    );
}

/// `defaults.paused_ttl`: zero keeps the clock running (expiry unchanged);
/// otherwise a pause brings the expiry forward to pause + paused_ttl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_ttl_caps_the_expiry_and_zero_keeps_it() {
    let f = fixture(limits()).await;
    let sb = f
        .manager
        .spawn(&SpawnRequest::default(), None)
        .await
        .unwrap();
    let paused = f.manager.pause(&sb.id).await.unwrap();
    assert_eq!(paused.expires_at, sb.expires_at);

    let f = fixture(DefaultsConfig {
        paused_ttl: GoDuration::from_secs(10),
        ..limits()
    })
    .await;
    let sb = f
        .manager
        .spawn(&SpawnRequest::default(), None)
        .await
        .unwrap();
    let before = chrono::Utc::now();
    let paused = f.manager.pause(&sb.id).await.unwrap();
    assert!(paused.expires_at < sb.expires_at);
    assert!(paused.expires_at <= chrono::Utc::now() + chrono::Duration::seconds(10));
    assert!(paused.expires_at >= before + chrono::Duration::seconds(9));
    assert_eq!(
        f.manager.get(&sb.id).await.unwrap().expires_at,
        paused.expires_at
    );
}

/// Pause, resume and destroy racing on one sandbox: it ends destroyed with
/// no runtime left, never paused or running again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_destroy_race_to_a_destroyed_sandbox() {
    let f = fixture(limits()).await;
    for _ in 0..10 {
        let sb = f
            .manager
            .spawn(&SpawnRequest::default(), None)
            .await
            .unwrap();
        let (m1, m2, m3) = (f.manager.clone(), f.manager.clone(), f.manager.clone());
        let (i1, i2, i3) = (sb.id.clone(), sb.id.clone(), sb.id.clone());
        let pauses = tokio::spawn(async move {
            for _ in 0..5 {
                let _ = m1.pause(&i1).await;
                let _ = m1.resume(&i1).await;
            }
        });
        let more = tokio::spawn(async move {
            for _ in 0..5 {
                let _ = m2.pause(&i2).await;
            }
        });
        let destroy = tokio::spawn(async move { m3.destroy(&i3).await });
        pauses.await.unwrap();
        more.await.unwrap();
        destroy.await.unwrap().unwrap();
        let rec = f.manager.get(&sb.id).await.unwrap();
        assert_eq!(rec.state, SandboxState::Destroyed);
        assert_eq!(
            f.provider.inner.status(&sb.id).await.unwrap(),
            stacyvm_providers::RuntimeStatus::Missing
        );
        assert!(matches!(
            f.manager.pause(&sb.id).await,
            Err(ManagerError::NotFound(_))
        ));
    }
}
