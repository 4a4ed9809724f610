//! Pause and resume over the API: state, idempotency, events, metrics and
//! Prometheus counts, `defaults.auto_resume` both ways, hibernate's 501,
//! and a pause that survives a server restart (mock and docker).

mod common;

use common::{TestServer, assert_error};
use serde_json::{Value, json};
use stacyvm_core::EventType;

fn events_of(s: &TestServer, id: &str, kind: EventType) -> Vec<Value> {
    s.recent_events()
        .into_iter()
        .filter(|e| e.kind == kind && e.sandbox_id.as_deref() == Some(id))
        .map(|e| e.data)
        .collect()
}

async fn state(s: &TestServer, id: &str) -> String {
    let (st, sb) = s.get(&format!("/sandboxes/{id}")).await;
    assert_eq!(st, 200, "{sb}");
    sb["state"].as_str().unwrap().to_string()
}

async fn read(s: &TestServer, id: &str, path: &str) -> String {
    let r = s
        .http
        .get(s.url(&format!("/sandboxes/{id}/files?path={path}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_state_events_and_counts() {
    let s = TestServer::start().await;
    let id = s.spawn().await;
    let (st, sb) = s.post(&format!("/sandboxes/{id}/pause"), json!({})).await;
    assert_eq!((st, sb["state"].as_str()), (200, Some("paused")), "{sb}");
    // Pausing a paused sandbox returns it unchanged.
    let (st, sb) = s.post(&format!("/sandboxes/{id}/pause"), json!({})).await;
    assert_eq!((st, sb["state"].as_str()), (200, Some("paused")), "{sb}");
    assert_eq!(state(&s, &id).await, "paused");
    assert_eq!(events_of(&s, &id, EventType::SandboxPaused).len(), 1);

    // Counted by state in /metrics, in Prometheus and in the list filter.
    let (_, m) = s.get("/metrics").await;
    assert_eq!(m["sandboxes"]["by_state"]["paused"], 1, "{m}");
    let prom = s
        .http
        .get(s.url("/metrics/prometheus"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        prom.lines()
            .any(|l| l == r#"stacyvm_sandboxes_total{state="paused",provider="mock"} 1"#),
        "{prom}"
    );
    let (_, list) = s.get("/sandboxes?state=paused").await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");

    // Exec on a paused sandbox resumes it first (defaults.auto_resume).
    let (code, out) = s.sh(&id, "echo hi").await;
    assert_eq!((code, out.as_str()), (0, "hi\n"));
    assert_eq!(state(&s, &id).await, "running");
    let resumed = events_of(&s, &id, EventType::SandboxResumed);
    assert_eq!(resumed.len(), 1, "{resumed:?}");
    assert_eq!(resumed[0]["reason"], "auto");

    // Resuming a running sandbox returns it unchanged, with no event.
    let (st, sb) = s.post(&format!("/sandboxes/{id}/resume"), json!({})).await;
    assert_eq!((st, sb["state"].as_str()), (200, Some("running")), "{sb}");
    assert_eq!(events_of(&s, &id, EventType::SandboxResumed).len(), 1);

    // Hibernate says why it cannot, with the provider's reason.
    let (st, body) = s
        .post(&format!("/sandboxes/{id}/hibernate"), json!({}))
        .await;
    assert_error(st, &body, 501, "not_implemented");
    assert!(body["message"].as_str().unwrap().contains("mock"), "{body}");
    let (_, providers) = s.get("/providers").await;
    assert!(
        providers.to_string().contains("\"hibernate\""),
        "unavailable hibernate listed: {providers}"
    );

    // Unknown sandboxes are 404 on both routes.
    let (st, body) = s.post("/sandboxes/sb-00000000/pause", json!({})).await;
    assert_error(st, &body, 404, "not_found");
    let (st, body) = s.post("/sandboxes/sb-00000000/resume", json!({})).await;
    assert_error(st, &body, 404, "not_found");

    // A paused sandbox can be destroyed; then pause is 404.
    s.post(&format!("/sandboxes/{id}/pause"), json!({})).await;
    let (st, body) = s.delete(&format!("/sandboxes/{id}")).await;
    assert!(st == 200 || st == 204, "{st} {body}");
    let (st, body) = s.post(&format!("/sandboxes/{id}/pause"), json!({})).await;
    assert_error(st, &body, 404, "not_found");
    let (st, body) = s.post(&format!("/sandboxes/{id}/resume"), json!({})).await;
    assert_error(st, &body, 404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auto_resume_calls_on_a_paused_sandbox_answer_409() {
    let s = TestServer::start_with(|c| c.defaults.auto_resume = false).await;
    let id = s.spawn().await;
    s.post(
        &format!("/sandboxes/{id}/files"),
        json!({"path": "/workspace/a.txt", "content": "a"}),
    )
    .await;
    let (st, _) = s.post(&format!("/sandboxes/{id}/pause"), json!({})).await;
    assert_eq!(st, 200);
    let (st, body) = s
        .post(
            &format!("/sandboxes/{id}/exec"),
            json!({"command": "echo hi"}),
        )
        .await;
    assert_error(st, &body, 409, "sandbox_paused");
    let (st, body) = s
        .get(&format!("/sandboxes/{id}/files?path=/workspace/a.txt"))
        .await;
    assert_error(st, &body, 409, "sandbox_paused");
    assert_eq!(state(&s, &id).await, "paused");
    let (st, _) = s.post(&format!("/sandboxes/{id}/resume"), json!({})).await;
    assert_eq!(st, 200);
    assert_eq!(read(&s, &id, "/workspace/a.txt").await, "a");
    let resumed = events_of(&s, &id, EventType::SandboxResumed);
    assert_eq!(resumed[0]["reason"], "requested");
}

/// Pause, stop the server (the runtime stays frozen), start a new one on
/// the same state: the sandbox is still `paused`, resumes with its files.
async fn pause_survives_restart(dir: &std::path::Path, f: fn(&mut stacyvm_server::config::Config)) {
    let s = TestServer::start_in(dir, f).await;
    let id = s.spawn().await;
    s.post(
        &format!("/sandboxes/{id}/files"),
        json!({"path": "/workspace/keep.txt", "content": "kept"}),
    )
    .await;
    let (st, sb) = s.post(&format!("/sandboxes/{id}/pause"), json!({})).await;
    assert_eq!((st, sb["state"].as_str()), (200, Some("paused")), "{sb}");
    s.stop().await;

    let s = TestServer::start_in(dir, f).await;
    assert_eq!(state(&s, &id).await, "paused");
    let adopted = s
        .recent_events()
        .into_iter()
        .filter(|e| {
            e.kind == EventType::ReconcileAction && e.sandbox_id.as_deref() == Some(id.as_str())
        })
        .map(|e| e.data)
        .collect::<Vec<_>>();
    assert_eq!(adopted.len(), 1, "{adopted:?}");
    assert_eq!(adopted[0]["reason"], "runtime still paused", "{adopted:?}");
    let (st, sb) = s.post(&format!("/sandboxes/{id}/resume"), json!({})).await;
    assert_eq!((st, sb["state"].as_str()), (200, Some("running")), "{sb}");
    assert_eq!(read(&s, &id, "/workspace/keep.txt").await, "kept");
    let (code, out) = s.sh(&id, "echo alive").await;
    assert_eq!((code, out.as_str()), (0, "alive\n"));
    let (st, _) = s.delete(&format!("/sandboxes/{id}")).await;
    assert!(st == 200 || st == 204);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_survives_a_server_restart_on_mock() {
    let dir = tempfile::tempdir().unwrap();
    pause_survives_restart(dir.path(), |_| {}).await;
}

const DOCKER_IMAGE: &str = "stacyvm-test/busybox:latest";

/// Docker does not declare pause yet (see `DockerProvider::capabilities`):
/// the call is refused with a clear error and the sandbox keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_is_refused_clearly_on_docker() {
    if !common::docker_image_present(DOCKER_IMAGE) {
        return;
    }
    let s = TestServer::start_with(|c| {
        c.providers.mock.enabled = false;
        c.providers.docker.enabled = true;
        c.providers.default = "docker".into();
        c.defaults.image = DOCKER_IMAGE.into();
    })
    .await;
    let id = s.spawn().await;
    let (st, v) = s.post(&format!("/sandboxes/{id}/pause"), json!({})).await;
    assert!((400..500).contains(&st) || st == 501, "{st} {v}");
    assert!(
        v["code"].is_string() && v["message"].as_str().is_some_and(|m| m.contains("pause")),
        "{v}"
    );
    assert_eq!(state(&s, &id).await, "running");
    let (st, _) = s.delete(&format!("/sandboxes/{id}")).await;
    assert!(st == 200 || st == 204);
    s.stop().await;
}

const NATIVE_IMAGE: &str = "127.0.0.1:5000/stacyvm-test/busybox:latest";

fn native_present() -> bool {
    let root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0;
    let crun = std::process::Command::new("crun")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let agent = std::path::Path::new("/usr/local/lib/stacyvm/stacyvm-agent").exists()
        || std::env::var_os("STACYVM_AGENT").is_some();
    let registry = std::net::TcpStream::connect("127.0.0.1:5000").is_ok();
    common::require(
        root && crun && agent && registry,
        "root, crun, the agent and the local registry",
        "scripts/ci/native.sh and scripts/ci/registry.sh",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_survives_a_server_restart_on_native() {
    if !native_present() {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("svp")
        .tempdir_in("/var/tmp")
        .unwrap();
    pause_survives_restart(dir.path(), |c| {
        c.providers.mock.enabled = false;
        c.providers.native.enabled = true;
        c.providers.native.data_dir = c.database.path.parent().unwrap().join("native");
        c.providers.default = "native".into();
        c.defaults.image = NATIVE_IMAGE.into();
    })
    .await;
}
