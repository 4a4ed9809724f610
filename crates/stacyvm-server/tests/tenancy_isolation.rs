//! Owner isolation against the real server: two owners with user keys and
//! an admin key. Every route about one sandbox, tried with the other
//! owner's key, answers exactly what it answers for a sandbox that does
//! not exist (404 `not_found`, same message), and the owner's own key and
//! the admin key get through. Listings, prune, the SSE stream and the
//! metrics a `read` key may see hold only the caller's own sandboxes.

mod common;

use std::time::Duration;

use common::TestServer;
use futures::StreamExt;
use reqwest::Method as M;
use serde_json::{Value, json};

const ADMIN: &str = "admin-key-SECRET-0002";

struct Reply {
    status: u16,
    body: Value,
    text: String,
}

async fn call(s: &TestServer, key: &str, method: M, path: &str, body: Option<Body>) -> Reply {
    let mut r = s.http.request(method, s.url(path)).header("x-api-key", key);
    match body {
        Some(Body::Json(b)) => r = r.json(&b),
        Some(Body::Raw(b)) => r = r.body(b),
        None => {}
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply { status, body, text }
}

#[derive(Clone)]
enum Body {
    Json(Value),
    Raw(&'static str),
}

async fn mint(s: &TestServer, owner: &str, scope: &str) -> String {
    let r = call(
        s,
        ADMIN,
        M::POST,
        "/keys",
        Some(Body::Json(json!({"owner": owner, "scope": scope}))),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["key"].as_str().unwrap().to_string()
}

async fn spawn_as(s: &TestServer, key: &str) -> String {
    let r = call(s, key, M::POST, "/sandboxes", Some(Body::Json(json!({})))).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().unwrap().to_string()
}

/// Every route about one sandbox; `{id}` is replaced.
fn routes() -> Vec<(M, &'static str, Option<Body>)> {
    let j = |v: Value| Some(Body::Json(v));
    vec![
        (M::GET, "/sandboxes/{id}", None),
        (M::POST, "/sandboxes/{id}/extend", j(json!({"ttl": "10m"}))),
        (M::GET, "/sandboxes/{id}/logs", None),
        (M::GET, "/sandboxes/{id}/network", None),
        (
            M::PUT,
            "/sandboxes/{id}/network",
            j(json!({"mode": "none"})),
        ),
        (
            M::POST,
            "/sandboxes/{id}/exec",
            j(json!({"command": "echo hi"})),
        ),
        (
            M::POST,
            "/sandboxes/{id}/exec",
            j(json!({"command": "echo hi", "stream": true})),
        ),
        (M::GET, "/sandboxes/{id}/exec/ws", None),
        (
            M::POST,
            "/sandboxes/{id}/files",
            j(json!({"path": "/tmp/a.txt", "content": "hi"})),
        ),
        (
            M::PUT,
            "/sandboxes/{id}/files?path=/tmp/b.txt",
            Some(Body::Raw("raw")),
        ),
        (M::GET, "/sandboxes/{id}/files?path=/tmp/a.txt", None),
        (M::GET, "/sandboxes/{id}/files/list?path=/tmp", None),
        (M::GET, "/sandboxes/{id}/files/stat?path=/tmp/a.txt", None),
        (
            M::POST,
            "/sandboxes/{id}/files/move",
            j(json!({"old_path": "/tmp/b.txt", "new_path": "/tmp/c.txt"})),
        ),
        (
            M::POST,
            "/sandboxes/{id}/files/chmod",
            j(json!({"path": "/tmp/a.txt", "mode": "600"})),
        ),
        (M::GET, "/sandboxes/{id}/files/glob?pattern=/tmp/*", None),
        (M::DELETE, "/sandboxes/{id}/files?path=/tmp/c.txt", None),
        (M::DELETE, "/sandboxes/{id}", None),
    ]
}

#[tokio::test]
async fn another_owners_sandbox_is_not_found_on_every_route() {
    let s = TestServer::start_with(|c| {
        c.auth.enabled = true;
        c.auth.api_key = String::new();
        c.auth.admin_api_key = ADMIN.into();
    })
    .await;
    let alice = mint(&s, "alice", "user").await;
    let bob = mint(&s, "bob", "user").await;
    let bob_reader = mint(&s, "bob", "read").await;
    let keys = [alice.clone(), bob.clone(), bob_reader.clone()];
    let mut answers = Vec::new();

    let own = spawn_as(&s, &alice).await;
    let bobs = spawn_as(&s, &bob).await;
    // A well-formed id no sandbox has: what "does not exist" looks like.
    let nobody = "sb-00000000";

    for (method, path, body) in routes() {
        let at = |id: &str| path.replace("{id}", id);
        let missing = call(&s, &bob, method.clone(), &at(nobody), body.clone()).await;
        assert_eq!(missing.status, 404, "{method} {path}: {}", missing.text);
        for key in [&bob, &bob_reader] {
            let foreign = call(&s, key, method.clone(), &at(&own), body.clone()).await;
            if key == &bob_reader && method != M::GET {
                // A read key is refused writes before any lookup.
                assert_eq!(foreign.status, 403, "{method} {path}: {}", foreign.text);
                continue;
            }
            if key == &bob_reader && (path.contains("/files") || path.ends_with("/exec/ws")) {
                assert_eq!(foreign.status, 403, "{method} {path}: {}", foreign.text);
                continue;
            }
            assert_eq!(
                (foreign.status, foreign.body["code"].as_str()),
                (404, Some("not_found")),
                "{method} {path} across owners: {}",
                foreign.text
            );
            assert_eq!(
                foreign.text.replace(&own, nobody),
                missing.text,
                "{method} {path}: another owner's sandbox must look like none"
            );
            answers.push(foreign.text);
        }
        // The owner and the admin get through (whatever the route then says).
        if method == M::DELETE && path == "/sandboxes/{id}" {
            continue;
        }
        for key in [&alice, &ADMIN.to_string()] {
            let r = call(&s, key, method.clone(), &at(&own), body.clone()).await;
            // (A file route may 404 on the file, never on the sandbox.)
            assert_ne!(
                r.text,
                missing.text.replace(nobody, &own),
                "{method} {path} as owner/admin"
            );
            assert!(r.status < 500, "{method} {path}: {}", r.text);
        }
    }

    // A percent-encoded id is the same sandbox to the router: still refused.
    let encoded: String = own.bytes().map(|b| format!("%{b:02X}")).collect();
    let r = call(&s, &bob, M::GET, &format!("/sandboxes/{encoded}"), None).await;
    assert_eq!(r.status, 404, "{}", r.text);

    // The WebSocket handshake itself is refused across owners.
    let ws = |id: &str, key: &str| {
        format!(
            "{}?api_key={key}",
            s.url(&format!("/sandboxes/{id}/exec/ws"))
                .replace("http://", "ws://")
        )
    };
    match tokio_tungstenite::connect_async(ws(&own, &bob)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 404)
        }
        other => panic!(
            "bob's websocket to alice's sandbox: {:?}",
            other.map(|_| ())
        ),
    }
    let (mut socket, _) = tokio_tungstenite::connect_async(ws(&own, &alice))
        .await
        .expect("the owner's websocket opens");
    socket.close(None).await.ok();

    // Destroy across owners left the sandbox alone.
    let r = call(&s, &alice, M::GET, &format!("/sandboxes/{own}"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Listings: only one's own; an admin sees both.
    let ids = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    for (key, path, want) in [
        (&bob, "/sandboxes", vec![bobs.clone()]),
        (&bob, "/sandboxes?owner_id=alice", vec![bobs.clone()]),
        (&bob_reader, "/sandboxes", vec![bobs.clone()]),
        (&alice, "/sandboxes", vec![own.clone()]),
    ] {
        let r = call(&s, key, M::GET, path, None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(ids(&r.body), want, "{path}");
        answers.push(r.text);
    }
    let r = call(&s, ADMIN, M::GET, "/sandboxes", None).await;
    let all = ids(&r.body);
    assert!(all.contains(&own) && all.contains(&bobs), "{}", r.text);

    // Prune with a user key touches only the caller's sandboxes.
    let r = call(&s, &bob, M::DELETE, "/sandboxes", None).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Metrics a read key may see count and name only its owner's sandboxes.
    let r = call(&s, &bob_reader, M::GET, "/metrics", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["sandboxes"]["total"], 1, "{}", r.text);
    assert!(r.body.get("cluster").is_none_or(Value::is_null));
    answers.push(r.text);
    let r = call(&s, &bob_reader, M::GET, "/metrics/prometheus", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!r.text.contains(&own), "alice's sandbox in bob's metrics");
    answers.push(r.text);
    let r = call(&s, &bob_reader, M::GET, "/diagnostics", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["sandboxes"]["total"], 1, "{}", r.text);
    answers.push(r.text);
    let r = call(&s, ADMIN, M::GET, "/metrics", None).await;
    assert_eq!(r.body["sandboxes"]["total"], 2, "{}", r.text);

    // Alice's sandbox is still there after all of bob's attempts.
    let r = call(&s, &alice, M::GET, &format!("/sandboxes/{own}"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);

    for a in &answers {
        for k in &keys {
            assert!(!a.contains(k.as_str()), "an answer holds a key: {a}");
        }
    }
    s.stop().await;
}

/// Reads SSE `data:` events until one satisfies `last`; returns them all.
async fn events_until(resp: reqwest::Response, last: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let mut out = Vec::new();
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("an event arrives")
            .unwrap()
            .unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(pos) = buf.find("\n\n") {
            let block: String = buf.drain(..pos + 2).collect();
            if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                let v: Value = serde_json::from_str(data).unwrap();
                let done = last(&v);
                out.push(v);
                if done {
                    return out;
                }
            }
        }
    }
}

#[tokio::test]
async fn the_event_stream_carries_only_the_owners_events() {
    let s = TestServer::start_with(|c| {
        c.auth.enabled = true;
        c.auth.api_key = String::new();
        c.auth.admin_api_key = ADMIN.into();
        c.defaults.max_sandboxes_per_owner = 1;
    })
    .await;
    let alice = mint(&s, "alice", "user").await;
    let bob = mint(&s, "bob", "user").await;
    let bob_reader = mint(&s, "bob", "read").await;
    let open = async |key: &str| {
        let resp = s
            .http
            .get(s.url("/events"))
            .header("x-api-key", key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp
    };
    let bob_stream = open(&bob).await;
    let reader_stream = open(&bob_reader).await;
    let admin_stream = open(ADMIN).await;

    let own = spawn_as(&s, &alice).await;
    let r = call(
        &s,
        &alice,
        M::POST,
        &format!("/sandboxes/{own}/exec"),
        Some(Body::Json(json!({"command": "echo hi"}))),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Alice over her limit: a sandbox-less resource.limit naming alice.
    let r = call(
        &s,
        &alice,
        M::POST,
        "/sandboxes",
        Some(Body::Json(json!({}))),
    )
    .await;
    assert_eq!(r.status, 429, "{}", r.text);
    // Then bob's own sandbox: the marker that everything before was seen.
    let bobs = spawn_as(&s, &bob).await;
    let is_bobs_running = |v: &Value| v["type"] == "sandbox.running" && v["sandbox_id"] == bobs;

    for stream in [bob_stream, reader_stream] {
        let seen = events_until(stream, is_bobs_running).await;
        for e in &seen {
            assert_eq!(e["sandbox_id"], bobs, "bob's stream carried {e}");
        }
        assert!(seen.iter().any(|e| e["type"] == "sandbox.created"));
    }
    let seen = events_until(admin_stream, is_bobs_running).await;
    assert!(
        seen.iter().any(|e| e["sandbox_id"] == own),
        "admin sees all"
    );
    assert!(seen.iter().any(|e| e["type"] == "resource.limit"));
    s.stop().await;
}
