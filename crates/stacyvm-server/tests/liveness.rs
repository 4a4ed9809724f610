//! Runtime liveness: a running sandbox whose runtime is gone becomes
//! `unhealthy` (after two checks that agree), comes back to `running` when
//! the runtime does, can be destroyed either way, and is never marked while
//! its provider itself is down.

mod common;

use common::fixture::{Fixture, fixture, kinds, limits};
use stacyvm_core::{EventType, Sandbox, SandboxState};
use stacyvm_server::manager::{LivenessReport, SpawnRequest};

async fn spawn(f: &Fixture) -> Sandbox {
    let req = SpawnRequest::default();
    f.manager.spawn(&req, None).await.unwrap()
}

#[tokio::test]
async fn a_gone_runtime_makes_the_sandbox_unhealthy_until_it_returns() {
    let f = fixture(limits()).await;
    let sb = spawn(&f).await;
    let other = spawn(&f).await;
    let root = f.provider.inner.sandbox_root(&sb.id);
    let moved = root.with_extension("away");

    let report = f.manager.check_liveness().await;
    assert_eq!(
        report,
        LivenessReport {
            checked: 2,
            ..Default::default()
        }
    );

    // The runtime disappears behind the server's back.
    std::fs::rename(&root, &moved).unwrap();
    let report = f.manager.check_liveness().await;
    assert_eq!(report.unhealthy, 0, "one check is not enough");
    assert_eq!(
        f.manager.get(&sb.id).await.unwrap().state,
        SandboxState::Running
    );
    let report = f.manager.check_liveness().await;
    assert_eq!(report.unhealthy, 1);
    let now = f.manager.get(&sb.id).await.unwrap();
    assert_eq!(now.state, SandboxState::Unhealthy);
    assert_eq!(now.error.as_deref(), Some("the sandbox's runtime is gone"));
    assert_eq!(
        f.manager.get(&other.id).await.unwrap().state,
        SandboxState::Running
    );
    let error = f
        .manager
        .events()
        .recent(100)
        .into_iter()
        .find(|e| e.kind == EventType::SandboxError)
        .expect("a sandbox.error event");
    assert_eq!(error.sandbox_id.as_deref(), Some(sb.id.as_str()));
    assert_eq!(error.data["state"], "unhealthy");
    // Further checks change nothing while it stays down.
    assert_eq!(f.manager.check_liveness().await.unhealthy, 0);

    // The runtime comes back.
    std::fs::rename(&moved, &root).unwrap();
    let report = f.manager.check_liveness().await;
    assert_eq!(report.recovered, 1);
    let now = f.manager.get(&sb.id).await.unwrap();
    assert_eq!(now.state, SandboxState::Running);
    assert_eq!(now.error, None);
    assert!(kinds(&f.manager).contains(&EventType::SandboxRunning));

    // An unhealthy sandbox is destroyed like any other.
    std::fs::rename(&root, &moved).unwrap();
    f.manager.check_liveness().await;
    f.manager.check_liveness().await;
    assert_eq!(
        f.manager.get(&sb.id).await.unwrap().state,
        SandboxState::Unhealthy
    );
    let gone = f.manager.destroy(&sb.id).await.unwrap();
    assert_eq!(gone.state, SandboxState::Destroyed);
    assert_eq!(f.manager.check_liveness().await.checked, 1);
}

#[tokio::test]
async fn nothing_is_marked_while_the_provider_is_down() {
    let f = fixture(limits()).await;
    let sb = spawn(&f).await;
    std::fs::remove_dir_all(f.provider.inner.sandbox_root(&sb.id)).unwrap();
    f.provider.set_broken(true);
    f.manager.refresh_health().await;
    for _ in 0..3 {
        assert_eq!(f.manager.check_liveness().await, LivenessReport::default());
    }
    assert_eq!(
        f.manager.get(&sb.id).await.unwrap().state,
        SandboxState::Running
    );
    // Once it answers again the sandbox is judged: two checks, then
    // unhealthy.
    f.provider.set_broken(false);
    f.manager.refresh_health().await;
    f.manager.check_liveness().await;
    assert_eq!(f.manager.check_liveness().await.unhealthy, 1);
}

/// The same on a real Docker daemon through the API: `docker kill` makes
/// the sandbox `unhealthy` within a few health intervals, `docker start`
/// makes it `running` and usable again, and DELETE works on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_docker_container_is_unhealthy_until_started() {
    const IMAGE: &str = "stacyvm-test/busybox:latest";
    if !common::docker_image_present(IMAGE) {
        return;
    }
    let s = common::TestServer::start_with(|c| {
        c.providers.mock.enabled = false;
        c.providers.docker.enabled = true;
        c.providers.default = "docker".into();
        c.providers.health_interval =
            stacyvm_core::GoDuration(std::time::Duration::from_millis(300));
        c.defaults.image = IMAGE.into();
    })
    .await;
    let id = s.spawn().await;
    let container =
        stacyvm_providers::docker::container_name(&stacyvm_core::SandboxId::parse(&id).unwrap());
    let docker = |verb: &str| {
        let out = std::process::Command::new("docker")
            .args([verb, &container])
            .output()
            .unwrap();
        assert!(out.status.success(), "docker {verb}: {out:?}");
    };
    let state_becomes = |want: &'static str| {
        let s = &s;
        let id = id.clone();
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            loop {
                let (st, sb) = s.get(&format!("/sandboxes/{id}")).await;
                assert_eq!(st, 200, "{sb}");
                if sb["state"] == want {
                    return sb;
                }
                assert!(std::time::Instant::now() < deadline, "never {want}: {sb}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    docker("kill");
    let sb = state_becomes("unhealthy").await;
    assert!(sb["error"].as_str().unwrap().contains("runtime"), "{sb}");
    // Listed (and counted) while unhealthy.
    let (_, list) = s.get("/sandboxes").await;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == id.as_str())
    );

    docker("start");
    let sb = state_becomes("running").await;
    assert!(sb.get("error").is_none(), "{sb}");
    assert_eq!(s.sh(&id, "echo back").await, (0, "back\n".to_string()));

    docker("kill");
    state_becomes("unhealthy").await;
    let (st, body) = s.delete(&format!("/sandboxes/{id}")).await;
    assert_eq!(st, 200, "{body}");
    s.stop().await;
}
