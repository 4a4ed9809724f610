//! HTTP API v1 against the real server: exec (sync, NDJSON, WebSocket),
//! files and the events stream.

mod common;

use std::time::Duration;

use common::{TestServer, assert_error};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};

#[tokio::test]
async fn exec_sync_modes_and_errors() {
    let s = TestServer::start_with(|c| {
        c.defaults.max_exec_timeout = stacyvm_core::GoDuration::from_secs(60)
    })
    .await;
    let id = s.spawn().await;
    let url = format!("/sandboxes/{id}/exec");
    let (st, out) = s
        .post(
            &url,
            json!({"command": "echo", "args": ["a b", "$HOME"], "mode": "argv"}),
        )
        .await;
    assert_eq!(st, 200, "{out}");
    assert_eq!(out["stdout"], "a b $HOME\n");
    assert_eq!(out["exit_code"], 0);
    assert!(out["duration"].as_str().unwrap().ends_with('s'));
    let (_, out) = s
        .post(
            &url,
            json!({"command": "echo \"$X\" $1", "args": ["it's"], "env": {"X": "v1"}}),
        )
        .await;
    assert_eq!(out["stdout"], "v1 it's\n");
    let (_, out) = s
        .post(&url, json!({"command": "echo oops >&2; exit 3"}))
        .await;
    assert_eq!(
        (out["exit_code"].as_i64(), out["stderr"].as_str()),
        (Some(3), Some("oops\n"))
    );
    // Paths in commands are relative: the mock runs host processes with the
    // sandbox directory as their working directory.
    let (_, out) = s
        .post(&url, json!({"command": "mkdir -p w && touch w/f"}))
        .await;
    assert_eq!(out["exit_code"], 0);
    let (_, out) = s
        .post(&url, json!({"command": "ls", "workdir": "/w"}))
        .await;
    assert_eq!(out["stdout"], "f\n");
    let (st, e) = s
        .post(&url, json!({"command": "sleep 5", "timeout": "300ms"}))
        .await;
    assert_error(st, &e, 408, "timeout");
    let (st, e) = s
        .post(&url, json!({"command": "true", "timeout": "2h"}))
        .await;
    assert_error(st, &e, 429, "resource_limit");
    let (st, e) = s
        .post(&url, json!({"command": "true", "mode": "bash"}))
        .await;
    assert_error(st, &e, 400, "bad_request");
    let (st, e) = s
        .post(&url, json!({"command": "true", "timeout": "fast"}))
        .await;
    assert_error(st, &e, 400, "bad_request");
    let (st, e) = s
        .post("/sandboxes/sb-0123456789/exec", json!({"command": "true"}))
        .await;
    assert_error(st, &e, 404, "not_found");
    // About 3 MB of argv or of env: 400 naming the limit, streamed too.
    let big = "x".repeat(100 * 1024);
    let many_args = json!({"command": "true", "mode": "argv", "args": vec![big.clone(); 30]});
    let env: serde_json::Map<String, Value> =
        (0..30).map(|i| (format!("BIG{i}"), json!(big))).collect();
    let many_env = json!({"command": "true", "env": env});
    for body in [many_args, many_env] {
        let (st, e) = s.post(&url, body.clone()).await;
        assert_error(st, &e, 400, "bad_request");
        let limit = stacyvm_providers::MAX_EXEC_INPUT_BYTES.to_string();
        assert!(e["message"].as_str().unwrap().contains(&limit), "{e}");
        let mut streamed = body;
        streamed["stream"] = json!(true);
        let (st, e) = s.post(&url, streamed).await;
        assert_error(st, &e, 400, "bad_request");
    }
    let (st, out) = s.post(&url, json!({"command": "echo ok"})).await;
    assert_eq!((st, out["stdout"].as_str()), (200, Some("ok\n")), "{out}");
    s.stop().await;
}

async fn ndjson(s: &TestServer, id: &str, body: Value) -> Vec<Value> {
    let r = s
        .http
        .post(s.url(&format!("/sandboxes/{id}/exec")))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let text = r.text().await.unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn exec_stream_is_ordered_and_ends_with_exit() {
    let s = TestServer::start().await;
    let id = s.spawn().await;
    let recs = ndjson(
        &s,
        &id,
        json!({"command": "echo one; sleep 0.1; echo two >&2; sleep 0.1; echo three; exit 4", "stream": true}),
    )
    .await;
    let last = recs.last().unwrap();
    assert_eq!(
        (last["stream"].as_str(), last["exit_code"].as_i64()),
        (Some("exit"), Some(4))
    );
    let seq: Vec<(String, String)> = recs[..recs.len() - 1]
        .iter()
        .map(|r| {
            (
                r["stream"].as_str().unwrap().into(),
                r["data"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        seq,
        vec![
            ("stdout".into(), "one\n".into()),
            ("stderr".into(), "two\n".into()),
            ("stdout".into(), "three\n".into())
        ]
    );
    let recs = ndjson(
        &s,
        &id,
        json!({"command": "sleep 5", "stream": true, "timeout": "300ms"}),
    )
    .await;
    let last = recs.last().unwrap();
    assert_eq!(
        (last["stream"].as_str(), last["timed_out"].as_bool()),
        (Some("exit"), Some(true))
    );
    assert!(
        recs.iter().any(|r| r["stream"] == "stderr"),
        "a stderr chunk says it timed out: {recs:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn client_disconnect_kills_streamed_command() {
    let s = TestServer::start().await;
    let id = s.spawn().await;
    let r = s
        .http
        .post(s.url(&format!("/sandboxes/{id}/exec")))
        .json(&json!({"command": "echo $$ > pid; echo started; sleep 300", "stream": true}))
        .send()
        .await
        .unwrap();
    let mut body = r.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("started"));
    drop(body);
    let (_, pid) = s.sh(&id, "cat pid").await;
    let pid = pid.trim().to_string();
    let mut gone = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (code, _) = s.sh(&id, &format!("kill -0 {pid} 2>/dev/null")).await;
        if code != 0 {
            gone = true;
            break;
        }
    }
    assert!(gone, "the command of a disconnected client must be killed");
    s.stop().await;
}

#[tokio::test]
async fn websocket_exec() {
    let s = TestServer::start().await;
    let id = s.spawn().await;
    let ws_url = s
        .url(&format!("/sandboxes/{id}/exec/ws"))
        .replace("http://", "ws://");
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::text(
        json!({"type": "start", "command": "read line; echo got:$line; exit 7", "tty": false})
            .to_string(),
    ))
    .await
    .unwrap();
    ws.send(Message::text(
        json!({"type": "stdin", "data": "hello\n"}).to_string(),
    ))
    .await
    .unwrap();
    let mut out = String::new();
    let mut exit = None;
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(t) = msg else { continue };
        let v: Value = serde_json::from_str(&t).unwrap();
        match v["type"].as_str().unwrap() {
            "stdout" => out.push_str(v["data"].as_str().unwrap()),
            "exit" => {
                exit = v["exit_code"].as_i64();
                break;
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!(out, "got:hello\n");
    assert_eq!(exit, Some(7));
    s.stop().await;
}

#[tokio::test]
async fn files_round_trip() {
    let s = TestServer::start().await;
    let id = s.spawn().await;
    let f = |p: &str| format!("/sandboxes/{id}/files{p}");
    let (st, w) = s
        .post(
            &f(""),
            json!({"path": "/app/src/main.py", "content": "print(1)\n", "mode": "755"}),
        )
        .await;
    assert_eq!((st, w), (200, json!({"status": "written"})));
    let (_, out) = s.sh(&id, "cat app/src/main.py").await;
    assert_eq!(out, "print(1)\n");
    // Binary via raw PUT/GET: every byte value, NUL included.
    let data: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let r = s
        .http
        .put(s.url(&f("?path=/bin.dat&mode=0600")))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s
        .http
        .get(s.url(&f("?path=/bin.dat")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(r.bytes().await.unwrap().to_vec(), data);
    let (st, info) = s.get(&f("/stat?path=/bin.dat")).await;
    assert_eq!(st, 200);
    assert_eq!(
        (
            info["size"].as_u64(),
            info["mode"].as_str(),
            info["is_dir"].as_bool()
        ),
        (Some(70_000), Some("0600"), Some(false))
    );
    assert_eq!(
        (info["name"].as_str(), info["path"].as_str()),
        (Some("bin.dat"), Some("/bin.dat"))
    );
    assert!(info["mod_time"].is_string());
    let (st, list) = s.get(&f("/list?path=/app/src")).await;
    assert_eq!(st, 200);
    assert_eq!(list[0]["path"], "/app/src/main.py");
    assert_eq!(list[0]["mode"], "0755");
    let (st, m) = s
        .post(
            &f("/move"),
            json!({"old_path": "/app/src/main.py", "new_path": "/app/main.py"}),
        )
        .await;
    assert_eq!((st, m), (200, json!({"status": "moved"})));
    let (st, c) = s
        .post(&f("/chmod"), json!({"path": "/app/main.py", "mode": "640"}))
        .await;
    assert_eq!((st, c), (200, json!({"status": "chmod applied"})));
    assert_eq!(s.get(&f("/stat?path=/app/main.py")).await.1["mode"], "0640");
    s.post(&f(""), json!({"path": "/app/a/b/c.py", "content": ""}))
        .await;
    let (st, g) = s.get(&f("/glob?pattern=/app/**/*.py")).await;
    assert_eq!(st, 200);
    assert_eq!(g, json!(["/app/a/b/c.py", "/app/main.py"]));
    let (st, e) = s.delete(&f("?path=/app")).await;
    assert_eq!(st, 400, "non-empty dir without recursive: {e}");
    let (st, d) = s.delete(&f("?path=/app&recursive=true")).await;
    assert_eq!((st, d), (200, json!({"status": "deleted"})));
    let (st, e) = s.get(&f("/stat?path=/app")).await;
    assert_error(st, &e, 404, "not_found");
    let r = s
        .http
        .get(s.url(&f("?path=/missing")))
        .send()
        .await
        .unwrap();
    let (st, e) = common::decode(r).await;
    assert_error(st, &e, 404, "not_found");
    s.stop().await;
}

#[tokio::test]
async fn file_paths_never_escape() {
    let s = TestServer::start().await;
    let id = s.spawn().await;
    let f = |p: &str| format!("/sandboxes/{id}/files{p}");
    // A host file beside the sandbox that must stay untouched.
    let secret = s.dir.join("host-secret");
    std::fs::write(&secret, "HOST-SECRET-42").unwrap();
    for path in ["/../host-secret", "/a/../../host-secret", "relative", ""] {
        let r = s
            .http
            .get(s.url(&f(&format!("?path={path}"))))
            .send()
            .await
            .unwrap();
        let (st, e) = common::decode(r).await;
        assert_error(st, &e, 400, "bad_request");
        let (st, e) = s.post(&f(""), json!({"path": path, "content": "x"})).await;
        assert_error(st, &e, 400, "bad_request");
    }
    // A symlink planted inside, pointing out.
    let target = secret.display().to_string();
    s.sh(
        &id,
        &format!("ln -s {target} link; ln -s {} dirlink", s.dir.display()),
    )
    .await;
    for path in ["/link", "/dirlink/host-secret"] {
        let r = s
            .http
            .get(s.url(&f(&format!("?path={path}"))))
            .send()
            .await
            .unwrap();
        let st = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert!(st == 400 || st == 404, "{path}: {st} {body}");
        assert!(
            !body.contains("HOST-SECRET-42"),
            "{path} leaked the host file"
        );
        // A write either is refused or replaces the link itself inside the
        // sandbox; it never follows the link (checked below).
        let (st, _) = s
            .post(&f(""), json!({"path": path, "content": "pwned"}))
            .await;
        if path.starts_with("/dirlink") {
            assert!(
                st == 400 || st == 404,
                "{path}: write through a linked dir answered {st}"
            );
        }
    }
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "HOST-SECRET-42");
    s.stop().await;
}

/// Reads SSE events until `n` have arrived.
async fn read_events(resp: reqwest::Response, n: usize) -> Vec<(String, Value)> {
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let mut out = Vec::new();
    while out.len() < n {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("event arrives")
            .unwrap()
            .unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(pos) = buf.find("\n\n") {
            let block: String = buf.drain(..pos + 2).collect();
            let id = block
                .lines()
                .find_map(|l| l.strip_prefix("id: "))
                .map(str::to_string);
            let data = block.lines().find_map(|l| l.strip_prefix("data: "));
            if let (Some(id), Some(data)) = (id, data) {
                out.push((id, serde_json::from_str(data).unwrap()));
            }
        }
    }
    out
}

#[tokio::test]
async fn events_stream_filters_and_resumes() {
    let s = TestServer::start().await;
    let r = s
        .http
        .get(s.url("/events?types=sandbox.created,sandbox.destroyed"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let id = s.spawn().await;
    s.sh(&id, "true").await;
    s.delete(&format!("/sandboxes/{id}")).await;
    let evs = read_events(r, 2).await;
    let kinds: Vec<_> = evs
        .iter()
        .map(|(_, e)| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["sandbox.created", "sandbox.destroyed"]);
    for (sse_id, e) in &evs {
        assert_eq!(e["id"].as_str(), Some(sse_id.as_str()));
        assert!(sse_id.starts_with("evt-"));
        assert_eq!(e["sandbox_id"].as_str(), Some(id.as_str()));
        assert!(e["timestamp"].is_string());
    }
    // Resume after the first: everything after it comes back from history.
    let r = s
        .http
        .get(s.url(&format!("/events?sandbox_id={id}")))
        .header("last-event-id", evs[0].0.clone())
        .send()
        .await
        .unwrap();
    let resumed = read_events(r, 3).await;
    let kinds: Vec<_> = resumed
        .iter()
        .map(|(_, e)| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds[0], "sandbox.running");
    assert!(kinds.contains(&"exec.completed".to_string()), "{kinds:?}");
    let (st, e) = s.get("/events?types=bogus.type").await;
    assert_error(st, &e, 400, "bad_request");
    s.stop().await;
}
