//! Cluster mode on a real PostgreSQL, with real `stacyvm serve` processes
//! (own data directories, own ports) on the mock provider. The PostgreSQL
//! is a cluster of its own that these tests stop and start (see
//! `cluster_harness`); nextest runs this binary's tests one at a time.

mod cluster_harness;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster_harness::{Node, Pg, eventually, http, json};
use serde_json::json;

/// The PostgreSQL store is chosen by config alone; a PostgreSQL restart
/// mid-load turns the API into fast 503 `not_ready` answers, the server
/// reconnects by itself, and no acknowledged sandbox is lost. The database
/// password never shows in a reply, the log or `config show`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_survives_a_restart_mid_load() {
    let Some(pg) = Pg::from_env() else { return };
    let db = pg.fresh_database().await;
    let root = tempfile::tempdir().unwrap();
    let node = Node::start("n1", root.path(), &db, &[]);
    let c = http();

    let (st, ready) = json(c.get(node.api("/ready")).send().await.unwrap()).await;
    assert_eq!(
        (st, ready["store"]["driver"].as_str()),
        (200, Some("postgres"))
    );
    let (st, first) = json(
        c.post(node.api("/sandboxes"))
            .json(&json!({"ttl": "30m"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 201, "{first}");

    // Load: spawns back to back, each acknowledged id remembered.
    let acked = Arc::new(Mutex::new(vec![first["id"].as_str().unwrap().to_string()]));
    let refused = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
    let stop = tokio_util_stop();
    let load = {
        let (c, url, acked, refused, stop) = (
            c.clone(),
            node.api("/sandboxes"),
            acked.clone(),
            refused.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match c.post(&url).json(&json!({"ttl": "30m"})).send().await {
                    Ok(r) => {
                        let (st, body) = json(r).await;
                        if st == 201 {
                            acked
                                .lock()
                                .unwrap()
                                .push(body["id"].as_str().unwrap().into());
                        } else {
                            refused
                                .lock()
                                .unwrap()
                                .push(json!({"status": st, "body": body}));
                        }
                    }
                    Err(e) => panic!("the server dropped a request: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    pg.stop();
    // While the store is away: /ready says so, the API answers at once.
    eventually(
        Duration::from_secs(10),
        "ready to say not_ready",
        || async {
            let (st, r) = json(c.get(node.api("/ready")).send().await.unwrap()).await;
            st == 503 && r["status"] == "not_ready" && r["store"]["healthy"] == false
        },
    )
    .await;
    let asked = Instant::now();
    let r = c.get(node.api("/sandboxes")).send().await.unwrap();
    assert_eq!(r.headers()["retry-after"], "1");
    let (st, e) = json(r).await;
    assert_eq!((st, e["code"].as_str()), (503, Some("not_ready")), "{e}");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(c.get(node.api("/live")).send().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_secs(1)).await;

    pg.start();
    eventually(
        Duration::from_secs(30),
        "the store to come back",
        || async { c.get(node.api("/ready")).send().await.unwrap().status() == 200 },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.await.unwrap();

    // Every refusal was the clean 503; every acknowledged sandbox is there.
    for r in refused.lock().unwrap().iter() {
        assert_eq!(r["status"], 503, "{r}");
        assert_eq!(r["body"]["code"], "not_ready", "{r}");
    }
    let (st, listed) = json(c.get(node.api("/sandboxes")).send().await.unwrap()).await;
    assert_eq!(st, 200);
    let listed: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 2, "too little load: {acked:?}");
    for id in &acked {
        assert!(listed.contains(&id.as_str()), "acknowledged {id} was lost");
    }
    // And the server works as before.
    let (st, out) = json(
        c.post(node.api(&format!("/sandboxes/{}/exec", acked[0])))
            .json(&json!({"command": "echo back"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((st, out["stdout"].as_str()), (200, Some("back\n")), "{out}");

    // The password: not in the log, not in config show.
    let log = node.log();
    assert!(log.contains("using the postgres store"), "{log}");
    assert!(!log.contains(&db.password), "password in the log");
    let shown = std::process::Command::new(cluster_harness::BIN)
        .args(["config", "show"])
        .current_dir(&node.dir)
        .env("HOME", &node.dir)
        .env("STACYVM_DATABASE_DRIVER", "postgres")
        .env("STACYVM_DATABASE_URL", &db.url)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("driver: postgres"), "{shown}");
    assert!(!shown.contains(&db.password), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
}

/// A server whose PostgreSQL cannot be reached at start exits non-zero
/// with a message that names the database but not its password.
#[tokio::test]
async fn unreachable_postgres_at_start_fails_without_the_password() {
    let out = std::process::Command::new(cluster_harness::BIN)
        .arg("serve")
        .env("HOME", std::env::temp_dir())
        .env(
            "STACYVM_SERVER_PORT",
            cluster_harness::free_port().to_string(),
        )
        .env("STACYVM_DATABASE_DRIVER", "postgres")
        .env(
            "STACYVM_DATABASE_URL",
            "postgres://someone:pw-never-shown@127.0.0.1:9/nowhere",
        )
        .env("STACYVM_PROVIDERS_MOCK_ENABLED", "true")
        .env("STACYVM_PROVIDERS_DEFAULT", "mock")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nowhere"), "{err}");
    assert!(!err.contains("pw-never-shown"), "{err}");
}

fn tokio_util_stop() -> Arc<std::sync::atomic::AtomicBool> {
    Arc::new(std::sync::atomic::AtomicBool::new(false))
}
