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

/// Short leases so that loss is seen within seconds.
const FAST_LEASE: &[(&str, &str)] = &[
    ("STACYVM_CLUSTER_LEASE", "3s"),
    ("STACYVM_CLUSTER_HEARTBEAT_INTERVAL", "1s"),
];

fn node_env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    FAST_LEASE.iter().chain(extra).copied().collect()
}

async fn get(c: &reqwest::Client, url: String) -> (u16, serde_json::Value) {
    json(c.get(url).send().await.unwrap()).await
}

/// Three nodes register and renew their leases; each names itself in
/// `/ready`, on its sandboxes and on its Prometheus series; a generated
/// node id survives a restart; drain stops placement on a node and
/// `stacyvm nodes` shows it. A node killed with `kill -9` is marked `lost`
/// by exactly one survivor within its lease, its sandboxes become `error`
/// (`node_lost`), the others keep serving, and when it comes back it
/// destroys the runtimes the cluster gave up and is `ready` again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_register_drain_and_a_killed_node_is_lost_once() {
    let Some(pg) = Pg::from_env() else { return };
    let db = pg.fresh_database().await;
    let root = tempfile::tempdir().unwrap();
    let mut n1 = Node::start(
        "n1",
        root.path(),
        &db,
        &node_env(&[("STACYVM_CLUSTER_LABELS", "zone=a,disk=ssd")]),
    );
    let n2 = Node::start(
        "n2",
        root.path(),
        &db,
        &node_env(&[("STACYVM_CLUSTER_NODE_ID", "n2")]),
    );
    let n3 = Node::start(
        "n3",
        root.path(),
        &db,
        &node_env(&[("STACYVM_CLUSTER_NODE_ID", "n3")]),
    );
    let c = http();

    let (st, ready) = get(&c, n1.api("/ready")).await;
    assert_eq!(st, 200, "{ready}");
    let n1_id = ready["node"]["id"].as_str().unwrap().to_string();
    assert!(n1_id.starts_with("node-"), "{ready}");
    assert_eq!(ready["node"]["state"], "ready");
    assert_eq!(
        std::fs::read_to_string(n1.dir.join("node-id"))
            .unwrap()
            .trim(),
        n1_id
    );

    let (st, nodes) = get(&c, n2.api("/nodes")).await;
    assert_eq!(st, 200, "{nodes}");
    let nodes = nodes.as_array().unwrap().clone();
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    for n in &nodes {
        assert_eq!(n["state"], "ready", "{n}");
        assert_eq!(
            n["providers"],
            json!([{"name": "mock", "healthy": true}]),
            "{n}"
        );
    }
    let (_, one) = get(&c, n3.api(&format!("/nodes/{n1_id}"))).await;
    assert_eq!(one["labels"], json!({"disk": "ssd", "zone": "a"}), "{one}");
    assert_eq!(one["advertise_url"], n1.url.as_str(), "{one}");
    let (st, e) = get(&c, n3.api("/nodes/nobody")).await;
    assert_eq!((st, e["code"].as_str()), (404, Some("not_found")), "{e}");
    // Heartbeats move the lease on.
    let first = one["last_heartbeat"].as_str().unwrap().to_string();
    eventually(Duration::from_secs(5), "a heartbeat", || async {
        get(&c, n3.api(&format!("/nodes/{n1_id}"))).await.1["last_heartbeat"] != first.as_str()
    })
    .await;

    // A sandbox spawned on n1 is n1's, and n1's series say so.
    let (st, sb) = json(
        c.post(n1.api("/sandboxes"))
            .json(&json!({"ttl": "30m"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (st, sb["node_id"].as_str()),
        (201, Some(n1_id.as_str())),
        "{sb}"
    );
    let sb_id = sb["id"].as_str().unwrap().to_string();
    let (_, sb2) = json(
        c.post(n2.api("/sandboxes"))
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(sb2["node_id"], "n2", "{sb2}");
    let prom = c
        .get(n2.api("/metrics/prometheus"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(prom.contains("node=\"n2\""), "{prom}");
    let (_, n1_view) = get(&c, n2.api(&format!("/nodes/{n1_id}"))).await;
    assert_eq!(n1_view["sandboxes"], 1, "{n1_view}");

    // Drain n3 through the CLI; stacyvm nodes shows it.
    let out = std::process::Command::new(cluster_harness::BIN)
        .args(["--server", &n1.url, "nodes", "--drain", "n3"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = std::process::Command::new(cluster_harness::BIN)
        .args(["--server", &n1.url, "nodes"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("n3 ") && l.contains("draining")),
        "{table}"
    );
    let (_, n3_view) = get(&c, n1.api("/nodes/n3")).await;
    assert_eq!(n3_view["state"], "draining");

    // kill -9 n1: lost within its lease (3s) plus a sweep (1s).
    let killed = Instant::now();
    n1.kill9();
    eventually(Duration::from_secs(10), "n1 to be lost", || async {
        get(&c, n2.api(&format!("/nodes/{n1_id}"))).await.1["state"] == "lost"
    })
    .await;
    assert!(
        killed.elapsed() < Duration::from_secs(8),
        "{:?}",
        killed.elapsed()
    );
    let (_, gone) = get(&c, n2.api(&format!("/sandboxes/{sb_id}"))).await;
    assert_eq!(
        (gone["state"].as_str(), gone["error"].as_str()),
        (Some("error"), Some("node_lost")),
        "{gone}"
    );
    // Exactly one survivor recorded it.
    let claims = [&n2, &n3]
        .iter()
        .map(|n| n.log().matches("node lost: its lease lapsed").count())
        .sum::<usize>();
    assert_eq!(claims, 1);
    // The others keep serving. (Until forwarding exists a node refuses
    // the runtime of another node's sandbox rather than guess.)
    let sb2_id = sb2["id"].as_str().unwrap();
    let (st, e) = json(
        c.post(n3.api(&format!("/sandboxes/{sb2_id}/exec")))
            .json(&json!({"command": "true"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((st, e["code"].as_str()), (409, Some("conflict")), "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("runs on node n2"),
        "{e}"
    );
    let (st, out) = json(
        c.post(n2.api(&format!("/sandboxes/{sb2_id}/exec")))
            .json(&json!({"command": "echo alive"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (st, out["stdout"].as_str()),
        (200, Some("alive\n")),
        "{out}"
    );

    // n1 returns with the same id, destroys what the cluster gave up.
    let mock_dir = n1.dir.join("mock");
    let runtime_left = || {
        std::fs::read_dir(&mock_dir)
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().contains(&sb_id))
            })
            .unwrap_or(false)
    };
    assert!(runtime_left(), "the killed node left its runtime behind");
    n1.restart();
    let (st, ready) = get(&c, n1.api("/ready")).await;
    assert_eq!(
        (st, ready["node"]["id"].as_str()),
        (200, Some(n1_id.as_str())),
        "{ready}"
    );
    assert_eq!(ready["node"]["state"], "ready");
    assert!(!runtime_left(), "the lost sandbox's runtime still exists");
    let (_, after) = get(&c, n2.api(&format!("/sandboxes/{sb_id}"))).await;
    assert_eq!(after["state"], "error", "{after}");
}

const SECRET: (&str, &str) = ("STACYVM_CLUSTER_SECRET", "cluster-test-secret-7f3a");
const BIG_BODY: (&str, &str) = ("STACYVM_SERVER_MAX_BODY_BYTES", "83886080");

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Any node serves any sandbox: sync exec, the NDJSON stream, a 64 MiB
/// upload and download, logs and destroy sent to nodes that do not run the
/// sandbox are forwarded (signed with `cluster.secret`) to the one that
/// does. A client that forges the envelope is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_for_another_nodes_sandbox_are_forwarded() {
    let Some(pg) = Pg::from_env() else { return };
    let db = pg.fresh_database().await;
    let root = tempfile::tempdir().unwrap();
    let env = |id| node_env(&[("STACYVM_CLUSTER_NODE_ID", id), SECRET, BIG_BODY]);
    let n1 = Node::start("n1", root.path(), &db, &env("n1"));
    let n2 = Node::start("n2", root.path(), &db, &env("n2"));
    let n3 = Node::start("n3", root.path(), &db, &env("n3"));
    let c = http();
    let (st, sb) = json(
        c.post(n1.api("/sandboxes"))
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((st, sb["node_id"].as_str()), (201, Some("n1")), "{sb}");
    let id = sb["id"].as_str().unwrap().to_string();

    // Sync exec through n2.
    let (st, out) = json(
        c.post(n2.api(&format!("/sandboxes/{id}/exec")))
            .json(&json!({"command": "echo from-n1; hostname >/dev/null"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (st, out["stdout"].as_str()),
        (200, Some("from-n1\n")),
        "{out}"
    );
    // The NDJSON stream through n3, record by record.
    let text = c
        .post(n3.api(&format!("/sandboxes/{id}/exec")))
        .json(&json!({"command": "echo one; echo two >&2; exit 3", "stream": true}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(records.iter().any(|r| r["data"] == "one\n"), "{text}");
    assert!(records.iter().any(|r| r["exit_code"] == 3), "{text}");

    // 64 MiB up through n3, down through n2.
    let data: Vec<u8> = (0..64 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let r = c
        .put(n3.api(&format!("/sandboxes/{id}/files?path=/data/big.bin")))
        .header("content-type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let back = c
        .get(n2.api(&format!("/sandboxes/{id}/files?path=/data/big.bin")))
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 200);
    let back = back.bytes().await.unwrap();
    assert!(
        back.len() == data.len() && back[..] == data[..],
        "64 MiB came back different"
    );

    // Logs through n2.
    let r = c
        .get(n2.api(&format!("/sandboxes/{id}/logs")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A forged envelope never reaches the route.
    let (st, e) = json(
        c.post(n1.api(&format!("/sandboxes/{id}/exec")))
            .header("x-stacyvm-forwarded-by", "n2")
            .header("x-stacyvm-timestamp", "1")
            .header("x-stacyvm-signature", "00")
            .json(&json!({"command": "true"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((st, e["code"].as_str()), (401, Some("unauthorized")), "{e}");

    // Forwarding cost: median of sync execs, direct and through n2.
    let mut direct = Vec::new();
    let mut forwarded = Vec::new();
    for _ in 0..40 {
        for (node, into) in [(&n1, &mut direct), (&n2, &mut forwarded)] {
            let started = Instant::now();
            let r = c
                .post(node.api(&format!("/sandboxes/{id}/exec")))
                .json(&json!({"command": "true"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap();
            into.push(started.elapsed());
        }
    }
    let (d, f) = (median(direct), median(forwarded));
    eprintln!(
        "exec median: direct {d:?}, forwarded {f:?}, added {:?}",
        f.saturating_sub(d)
    );
    let (_, m) = get(&c, n2.api("/metrics")).await;
    assert!(
        m["cluster"]["forwarding"]["forwarded_total"]
            .as_u64()
            .unwrap()
            >= 40,
        "{}",
        m["cluster"]
    );

    // Destroy through n3.
    let r = c
        .delete(n3.api(&format!("/sandboxes/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let (_, after) = get(&c, n2.api(&format!("/sandboxes/{id}"))).await;
    assert!(
        after["state"] == "destroyed" || after["code"] == "not_found",
        "{after}"
    );
}

const ADMIN_KEY: &str = "cluster-admin-key-2b81";
const PEPPER: (&str, &str) = (
    "STACYVM_AUTH_KEY_PEPPER",
    "pepper-shared-by-every-node-0123456789",
);

/// A stored API key minted on one node works on every node when they share
/// `auth.key_pepper`, and its revocation holds everywhere. Without the
/// shared pepper, minting on a shared database is refused with a clear 409
/// rather than handing out a key that only one node could verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stored_keys_work_on_every_node_with_a_shared_pepper() {
    let Some(pg) = Pg::from_env() else { return };
    let db = pg.fresh_database().await;
    let root = tempfile::tempdir().unwrap();
    let auth = [
        ("STACYVM_AUTH_ENABLED", "true"),
        ("STACYVM_AUTH_ADMIN_API_KEY", ADMIN_KEY),
    ];
    let env = |id| {
        let mut e = node_env(&[("STACYVM_CLUSTER_NODE_ID", id), SECRET, PEPPER]);
        e.extend(auth);
        e
    };
    let n1 = Node::start("n1", root.path(), &db, &env("n1"));
    let n2 = Node::start("n2", root.path(), &db, &env("n2"));
    let c = http();
    let (st, key) = json(
        c.post(n1.api("/keys"))
            .header("X-API-Key", ADMIN_KEY)
            .json(&json!({"owner": "alice"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 201, "{key}");
    let secret = key["key"].as_str().unwrap().to_string();
    let id = key["id"].as_str().unwrap().to_string();
    for node in [&n1, &n2] {
        let (st, list) = json(
            c.get(node.api("/sandboxes"))
                .header("X-API-Key", &secret)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(st, 200, "{}: {list}", node.name);
    }
    let (st, _) = json(
        c.delete(n2.api(&format!("/keys/{id}")))
            .header("X-API-Key", ADMIN_KEY)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(st == 200 || st == 204, "revoke: {st}");
    for node in [&n1, &n2] {
        let n = node.api("/sandboxes");
        eventually(Duration::from_secs(5), "revocation on every node", || {
            let c = c.clone();
            let (n, secret) = (n.clone(), secret.clone());
            async move {
                let st = c
                    .get(n)
                    .header("X-API-Key", secret)
                    .send()
                    .await
                    .unwrap()
                    .status();
                st == 401
            }
        })
        .await;
    }

    // A node of the same cluster without the shared pepper will not mint.
    let mut lone = node_env(&[("STACYVM_CLUSTER_NODE_ID", "n3"), SECRET]);
    lone.extend(auth);
    let n3 = Node::start("n3", root.path(), &db, &lone);
    let (st, body) = json(
        c.post(n3.api("/keys"))
            .header("X-API-Key", ADMIN_KEY)
            .json(&json!({"owner": "alice"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (st, body["code"].as_str()),
        (409, Some("key_pepper_required")),
        "{body}"
    );
    assert!(!body.to_string().contains(PEPPER.1), "{body}");
    assert!(!n1.log().contains(PEPPER.1) && !n3.log().contains(PEPPER.1));
}
