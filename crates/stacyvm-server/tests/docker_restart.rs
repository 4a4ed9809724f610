//! Restart with the Docker provider: stop the server, remove one container
//! by hand, start again: the survivor is re-adopted and usable, the removed
//! one is marked destroyed, each with a `reconcile.action` event.

mod common;

use std::process::Command;
use std::time::Duration;

use common::TestServer;
use serde_json::{Value, json};

const IMAGE: &str = "stacyvm-test/busybox:latest";

fn docker_config(c: &mut stacyvm_server::config::Config) {
    c.providers.mock.enabled = false;
    c.providers.docker.enabled = true;
    c.providers.default = "docker".into();
    c.defaults.image = IMAGE.into();
}

async fn reconcile_events(s: &TestServer) -> Vec<Value> {
    let r = s
        .http
        .get(s.url("/events?types=reconcile.action&last_event_id=evt-0"))
        .send()
        .await
        .unwrap();
    let mut stream = futures::StreamExt::boxed(r.bytes_stream());
    let mut text = String::new();
    // The backlog arrives at once; stop when it has been read.
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout(
        Duration::from_millis(500),
        futures::StreamExt::next(&mut stream),
    )
    .await
    {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_adopts_survivors_and_marks_removed() {
    if !common::docker_image_present(IMAGE) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), docker_config).await;
    let survivor = s.spawn().await;
    let removed = s.spawn().await;
    s.post(
        &format!("/sandboxes/{survivor}/files"),
        json!({"path": "/workspace/keep.txt", "content": "kept"}),
    )
    .await;
    s.stop().await;

    let rm = Command::new("docker")
        .args(["rm", "-f", &format!("stacyvm-{removed}")])
        .output()
        .unwrap();
    assert!(rm.status.success(), "{rm:?}");

    let s = TestServer::start_in(dir.path(), docker_config).await;
    let (st, sb) = s.get(&format!("/sandboxes/{survivor}")).await;
    assert_eq!((st, sb["state"].as_str()), (200, Some("running")), "{sb}");
    let (code, out) = s.sh(&survivor, "cat /workspace/keep.txt").await;
    assert_eq!((code, out.as_str()), (0, "kept"));
    let (st, _) = s.get(&format!("/sandboxes/{removed}")).await;
    assert_eq!(st, 404);

    let events = reconcile_events(&s).await;
    let action = |id: &str| {
        events
            .iter()
            .find(|e| e["sandbox_id"] == id)
            .map(|e| e["data"]["action"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(action(&survivor).as_deref(), Some("adopted"), "{events:?}");
    assert_eq!(action(&removed).as_deref(), Some("destroyed"), "{events:?}");
    s.delete(&format!("/sandboxes/{survivor}")).await;
    s.stop().await;
}
