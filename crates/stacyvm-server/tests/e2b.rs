//! The E2B surface on a real server (mock provider): the control plane's
//! shapes, envd's Connect framing (enveloped streams, unary JSON), and the
//! error shapes the SDKs understand for bad input: never a 5xx or a hang.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::TestServer;
use serde_json::{Value, json};

const KEY: &str = "e2b_0123456789abcdef0123456789abcdef01234567";

struct E2b {
    s: TestServer,
    root: String,
}

impl E2b {
    async fn start() -> Self {
        let s = TestServer::start_with(|c| {
            c.e2b.enabled = true;
            c.auth.enabled = true;
            c.auth.api_key = KEY.into();
        })
        .await;
        let root = s.base.trim_end_matches("/api/v1").to_string();
        E2b { s, root }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.root)
    }

    async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self
            .s
            .http
            .request(method, self.url(path))
            .header("X-API-Key", KEY);
        if let Some(b) = body {
            r = r.json(&b);
        }
        common::decode(r.send().await.unwrap()).await
    }

    /// Creates a sandbox; returns (id, access token).
    async fn create(&self, body: Value) -> (String, String) {
        let (status, v) = self
            .api(reqwest::Method::POST, "/v2/sandboxes", Some(body))
            .await;
        assert_eq!(status, 201, "{v}");
        for k in [
            "sandboxID",
            "clientID",
            "envdVersion",
            "envdAccessToken",
            "templateID",
        ] {
            assert!(v[k].is_string(), "{k} missing in {v}");
        }
        (
            v["sandboxID"].as_str().unwrap().into(),
            v["envdAccessToken"].as_str().unwrap().into(),
        )
    }

    fn envd(&self, path: &str, id: &str, token: &str) -> reqwest::RequestBuilder {
        self.s
            .http
            .post(self.url(path))
            .header("E2b-Sandbox-Id", id)
            .header("E2b-Sandbox-Port", "49983")
            .header("X-Access-Token", token)
    }

    /// A unary envd call: (status, JSON body).
    async fn unary(&self, path: &str, id: &str, token: &str, body: Value) -> (u16, Value) {
        let r = self
            .envd(path, id, token)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        common::decode(r).await
    }

    /// A server-streaming call: (status, messages, end-of-stream JSON).
    async fn stream(
        &self,
        path: &str,
        id: &str,
        token: &str,
        msg: Value,
        timeout_ms: Option<u64>,
    ) -> (u16, Vec<Value>, Value) {
        let mut r = self
            .envd(path, id, token)
            .header("Content-Type", "application/connect+json")
            .body(envelope(0, msg.to_string().as_bytes()));
        if let Some(ms) = timeout_ms {
            r = r.header("Connect-Timeout-Ms", ms.to_string());
        }
        let resp = tokio::time::timeout(Duration::from_secs(30), r.send())
            .await
            .expect("no hang")
            .unwrap();
        let status = resp.status().as_u16();
        let bytes = tokio::time::timeout(Duration::from_secs(30), resp.bytes())
            .await
            .expect("no hang")
            .unwrap();
        let (msgs, end) = frames(&bytes);
        (status, msgs, end)
    }
}

fn envelope(flags: u8, msg: &[u8]) -> Vec<u8> {
    let mut v = vec![flags];
    v.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    v.extend_from_slice(msg);
    v
}

/// Splits a Connect stream body into messages and its end-of-stream JSON.
fn frames(mut b: &[u8]) -> (Vec<Value>, Value) {
    let mut msgs = Vec::new();
    let mut end = Value::Null;
    while b.len() >= 5 {
        let flags = b[0];
        let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
        let v: Value = serde_json::from_slice(&b[5..5 + len]).expect("JSON message");
        if flags & 2 != 0 {
            end = v;
        } else {
            msgs.push(v);
        }
        b = &b[5 + len..];
    }
    assert!(b.is_empty(), "trailing bytes in the stream");
    assert!(end.is_object(), "the stream has no end-of-stream message");
    (msgs, end)
}

fn start(cmd: &str) -> Value {
    json!({"process": {"cmd": "/bin/bash", "args": ["-l", "-c", cmd]}})
}

/// (stdout, stderr, exit code) of a Start stream's events.
fn outputs(msgs: &[Value]) -> (String, String, Option<i64>) {
    let (mut out, mut err, mut code) = (Vec::new(), Vec::new(), None);
    for m in msgs {
        let e = &m["event"];
        if let Some(s) = e["data"]["stdout"].as_str() {
            out.extend(B64.decode(s).unwrap());
        }
        if let Some(s) = e["data"]["stderr"].as_str() {
            err.extend(B64.decode(s).unwrap());
        }
        if e["end"].is_object() {
            code = Some(e["end"]["exitCode"].as_i64().unwrap_or(0));
        }
    }
    (
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
        code,
    )
}

#[tokio::test]
async fn process_start_streams_output_in_connect_frames() {
    let t = E2b::start().await;
    let (id, token) = t.create(json!({"envVars": {"FROM_CREATE": "yes"}})).await;
    let (status, msgs, end) = t
        .stream(
            "/process.Process/Start",
            &id,
            &token,
            start("echo out; echo err >&2; echo $FROM_CREATE; exit 3"),
            Some(10_000),
        )
        .await;
    assert_eq!(status, 200);
    assert!(msgs[0]["event"]["start"]["pid"].as_u64().unwrap() > 0);
    let (out, err, code) = outputs(&msgs);
    // Each stream holds only its own bytes.
    assert_eq!(out, "out\nyes\n");
    assert_eq!(err, "err\n");
    assert_eq!(code, Some(3));
    assert_eq!(end, json!({}));
    t.s.stop().await;
}

#[tokio::test]
async fn a_stream_ends_at_its_deadline_with_deadline_exceeded() {
    let t = E2b::start().await;
    let (id, token) = t.create(json!({})).await;
    let started = Instant::now();
    let (status, msgs, end) = t
        .stream(
            "/process.Process/Start",
            &id,
            &token,
            start("sleep 20"),
            Some(500),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(msgs[0]["event"]["start"].is_object());
    assert_eq!(end["error"]["code"], "deadline_exceeded", "{end}");
    t.s.stop().await;
}

#[tokio::test]
async fn bad_envd_input_gets_connect_error_shapes() {
    let t = E2b::start().await;
    let (id, token) = t.create(json!({})).await;
    // A stream without an envelope: an end-of-stream error, HTTP 200.
    let r = t
        .envd("/process.Process/Start", &id, &token)
        .header("Content-Type", "application/connect+json")
        .body("xx")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, end) = frames(&r.bytes().await.unwrap());
    assert_eq!(end["error"]["code"], "invalid_argument");
    // A message that is not JSON.
    let r = t
        .envd("/process.Process/Start", &id, &token)
        .header("Content-Type", "application/connect+json")
        .body(envelope(0, b"{not json"))
        .send()
        .await
        .unwrap();
    let (_, end) = frames(&r.bytes().await.unwrap());
    assert_eq!(end["error"]["code"], "invalid_argument");
    // No process.
    let (_, _, end) = t
        .stream("/process.Process/Start", &id, &token, json!({}), None)
        .await;
    assert_eq!(end["error"]["code"], "invalid_argument");
    // Unary: bad JSON is 400 invalid_argument; unknown methods 501.
    let r = t
        .envd("/filesystem.Filesystem/Stat", &id, &token)
        .header("Content-Type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    let (status, v) = common::decode(r).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (400, Some("invalid_argument"))
    );
    let (status, v) = t
        .unary("/filesystem.Filesystem/Nope", &id, &token, json!({}))
        .await;
    assert_eq!((status, v["code"].as_str()), (501, Some("unimplemented")));
    let (status, v) = t
        .unary(
            "/filesystem.Filesystem/Stat",
            &id,
            &token,
            json!({"path": "/nope"}),
        )
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (404, Some("not_found")),
        "{v}"
    );
    // A wrong token, another sandbox's token, none at all.
    let (status, v) = t
        .unary(
            "/filesystem.Filesystem/Stat",
            &id,
            "sb-00000000.00",
            json!({"path": "/"}),
        )
        .await;
    assert_eq!((status, v["code"].as_str()), (401, Some("unauthenticated")));
    let (other, other_token) = t.create(json!({})).await;
    let (status, _) = t
        .unary(
            "/filesystem.Filesystem/Stat",
            &id,
            &other_token,
            json!({"path": "/"}),
        )
        .await;
    assert_eq!(status, 401);
    let r =
        t.s.http
            .post(t.url("/filesystem.Filesystem/Stat"))
            .header("E2b-Sandbox-Id", &other)
            .header("Content-Type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 401);
    // A killed sandbox: not found on RPCs, 502 on health.
    let (status, _) = t
        .api(
            reqwest::Method::DELETE,
            &format!("/sandboxes/{other}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let r =
        t.s.http
            .get(t.url("/health"))
            .header("E2b-Sandbox-Id", &other)
            .header("X-Access-Token", &other_token)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 502);
    let (_, _, end) = t
        .stream(
            "/process.Process/Start",
            &other,
            &other_token,
            start("true"),
            None,
        )
        .await;
    assert_eq!(end["error"]["code"], "not_found", "{end}");
    t.s.stop().await;
}

#[tokio::test]
async fn routing_by_host_and_by_token_alone() {
    let t = E2b::start().await;
    let (id, token) = t.create(json!({})).await;
    let port = t.root.rsplit(':').next().unwrap().to_string();
    let r =
        t.s.http
            .get(t.url("/health"))
            .header("Host", format!("49983-{id}.e2b.test:{port}"))
            .header("X-Access-Token", &token)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 204);
    let r =
        t.s.http
            .get(t.url("/health"))
            .header("X-Access-Token", &token)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 204);
    t.s.stop().await;
}

#[tokio::test]
async fn files_upload_and_download_octet_stream_and_multipart() {
    let t = E2b::start().await;
    let (id, token) = t.create(json!({})).await;
    let data: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let r = t
        .envd("/files?path=/tmp/bin", &id, &token)
        .header("Content-Type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    let (status, v) = common::decode(r).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v,
        json!([{"name": "bin", "type": "file", "path": "/tmp/bin"}])
    );
    let r =
        t.s.http
            .get(t.url("/files?path=/tmp/bin"))
            .header("E2b-Sandbox-Id", &id)
            .header("X-Access-Token", &token)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), data.as_slice());
    let body = "--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"/tmp/m1\"\r\n\r\none\r\n--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"/tmp/m2\"\r\n\r\ntwo\r\n--XX--\r\n";
    let r = t
        .envd("/files", &id, &token)
        .header("Content-Type", "multipart/form-data; boundary=XX")
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, v) = common::decode(r).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v.as_array().unwrap().len(), 2);
    let r =
        t.s.http
            .get(t.url("/files?path=/tmp/m2"))
            .header("E2b-Sandbox-Id", &id)
            .header("X-Access-Token", &token)
            .send()
            .await
            .unwrap();
    assert_eq!(r.text().await.unwrap(), "two");
    // Missing files are 404 in envd's shape; a bad multipart body is 400.
    let r =
        t.s.http
            .get(t.url("/files?path=/tmp/none"))
            .header("E2b-Sandbox-Id", &id)
            .header("X-Access-Token", &token)
            .send()
            .await
            .unwrap();
    let (status, v) = common::decode(r).await;
    assert_eq!((status, v["code"].as_i64()), (404, Some(404)));
    let r = t
        .envd("/files", &id, &token)
        .header("Content-Type", "multipart/form-data; boundary=XX")
        .body("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Filesystem calls over what was written.
    let (status, v) = t
        .unary(
            "/filesystem.Filesystem/MakeDir",
            &id,
            &token,
            json!({"path": "/tmp/d/e"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["entry"]["type"], "FILE_TYPE_DIRECTORY");
    let (status, v) = t
        .unary(
            "/filesystem.Filesystem/MakeDir",
            &id,
            &token,
            json!({"path": "/tmp/d/e"}),
        )
        .await;
    assert_eq!((status, v["code"].as_str()), (409, Some("already_exists")));
    let (status, v) = t
        .unary(
            "/filesystem.Filesystem/Move",
            &id,
            &token,
            json!({"source": "/tmp/m1", "destination": "/tmp/d/m1"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["entry"]["path"], "/tmp/d/m1");
    let (_, v) = t
        .unary(
            "/filesystem.Filesystem/ListDir",
            &id,
            &token,
            json!({"path": "/tmp/d", "depth": 2}),
        )
        .await;
    let mut names: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["e", "m1"]);
    let (status, _) = t
        .unary(
            "/filesystem.Filesystem/Remove",
            &id,
            &token,
            json!({"path": "/tmp/d"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = t
        .unary(
            "/filesystem.Filesystem/Stat",
            &id,
            &token,
            json!({"path": "/tmp/d"}),
        )
        .await;
    assert_eq!(status, 404);
    t.s.stop().await;
}

#[tokio::test]
async fn control_plane_shapes_filters_and_errors() {
    let t = E2b::start().await;
    // Auth: E2B's error shape, an integer code.
    let r = t.s.http.get(t.url("/v2/sandboxes")).send().await.unwrap();
    let (status, v) = common::decode(r).await;
    assert_eq!((status, v["code"].as_i64()), (401, Some(401)));
    let (a, _) = t
        .create(json!({"templateID": "base", "timeout": 60, "metadata": {"k": "a b&c"}}))
        .await;
    let (b, _) = t.create(json!({"metadata": {"k": "other"}})).await;
    // The SDK's double encoding: urlencode({quote(k): quote(v)}).
    let (status, v) = t
        .api(
            reqwest::Method::GET,
            "/v2/sandboxes?metadata=k%3Da%2520b%2526c",
            None,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let ids: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sandboxID"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [a.as_str()]);
    // Paging.
    let r =
        t.s.http
            .get(t.url("/v2/sandboxes?limit=1"))
            .header("X-API-Key", KEY)
            .send()
            .await
            .unwrap();
    let next = r.headers()["x-next-token"].to_str().unwrap().to_string();
    let first: Value = r.json().await.unwrap();
    assert_eq!(first[0]["sandboxID"], a.as_str());
    let (_, v) = t
        .api(
            reqwest::Method::GET,
            &format!("/v2/sandboxes?limit=1&nextToken={next}"),
            None,
        )
        .await;
    assert_eq!(v[0]["sandboxID"], b.as_str());
    // Bad input: 400s in E2B's shape, never a 5xx.
    for (method, path, body) in [
        (reqwest::Method::GET, "/v2/sandboxes?state=sleeping", None),
        (reqwest::Method::GET, "/v2/sandboxes?limit=0", None),
        (reqwest::Method::GET, "/v2/sandboxes?nextToken=zz", None),
        (
            reqwest::Method::POST,
            "/v2/sandboxes",
            Some(json!({"timeout": -1})),
        ),
        (
            reqwest::Method::POST,
            "/v2/sandboxes",
            Some(json!({"metadata": {"a": 1}})),
        ),
        (reqwest::Method::POST, "/v2/sandboxes", Some(json!([1]))),
    ] {
        let (status, v) = t.api(method, path, body).await;
        assert_eq!(
            (status, v["code"].as_i64()),
            (400, Some(400)),
            "{path}: {v}"
        );
    }
    let (status, v) = t
        .api(reqwest::Method::GET, "/sandboxes/sb-nothere1", None)
        .await;
    assert_eq!((status, v["code"].as_i64()), (404, Some(404)));
    let (status, _) = t
        .api(
            reqwest::Method::POST,
            &format!("/sandboxes/{a}/timeout"),
            Some(json!({"timeout": 600})),
        )
        .await;
    assert_eq!(status, 204);
    let (status, v) = t
        .api(reqwest::Method::GET, &format!("/sandboxes/{a}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(v["state"], "running");
    let (status, v) = t
        .api(
            reqwest::Method::POST,
            &format!("/sandboxes/{a}/pause"),
            Some(json!({})),
        )
        .await;
    assert_eq!((status, v["code"].as_i64()), (501, Some(501)));
    let (status, v) = t
        .api(
            reqwest::Method::POST,
            &format!("/v2/sandboxes/{a}/connect"),
            Some(json!({"timeout": 30})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["sandboxID"], a.as_str());
    // E2B sandboxes are StacyVM sandboxes: API v1 shows them.
    let (status, v) = t
        .api(
            reqwest::Method::GET,
            &format!("/api/v1/sandboxes/{a}"),
            None,
        )
        .await;
    assert_eq!((status, v["metadata"]["k"].as_str()), (200, Some("a b&c")));
    let (status, _) = t
        .api(reqwest::Method::DELETE, &format!("/sandboxes/{a}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = t
        .api(reqwest::Method::DELETE, &format!("/sandboxes/{a}"), None)
        .await;
    assert_eq!(status, 404);
    t.s.stop().await;
}

/// Stored `e2b_<hex>` keys (minted on API v1 with `"format": "e2b"`) work
/// on E2B's control plane and act for their owner only: another owner's
/// sandbox is not found, not listed, and cannot be killed; a read key may
/// list but not create.
#[tokio::test]
async fn stored_e2b_keys_act_for_their_owner() {
    let e = E2b::start().await;
    let mint = |owner: &'static str, scope: &'static str| {
        let e = &e;
        async move {
            let (st, v) = common::decode(
                e.s.http
                    .post(e.url("/api/v1/keys"))
                    .header("X-API-Key", KEY)
                    .json(&json!({"owner": owner, "scope": scope, "format": "e2b"}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(st, 201, "{v}");
            let key = v["key"].as_str().unwrap().to_string();
            assert!(key.starts_with("e2b_"), "{key}");
            key
        }
    };
    let alice = mint("alice", "user").await;
    let bob = mint("bob", "user").await;
    let reader = mint("bob", "read").await;
    let call = |key: String, method: reqwest::Method, path: String, body: Option<Value>| {
        let e = &e;
        async move {
            let mut r =
                e.s.http
                    .request(method, e.url(&path))
                    .header("X-API-Key", key);
            if let Some(b) = body {
                r = r.json(&b);
            }
            common::decode(r.send().await.unwrap()).await
        }
    };
    use reqwest::Method;
    // Alice claims to be bob: the key's owner wins.
    let (st, v) = {
        let r =
            e.s.http
                .post(e.url("/v2/sandboxes"))
                .header("X-API-Key", &alice)
                .header("X-User-ID", "bob")
                .json(&json!({"templateID": "base"}))
                .send()
                .await
                .unwrap();
        common::decode(r).await
    };
    assert_eq!(st, 201, "{v}");
    let id = v["sandboxID"].as_str().unwrap().to_string();
    let (st, v) = call(
        KEY.into(),
        Method::GET,
        format!("/api/v1/sandboxes/{id}"),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["owner_id"], "alice", "{v}");

    let (st, v) = call(alice.clone(), Method::GET, format!("/sandboxes/{id}"), None).await;
    assert_eq!(st, 200, "{v}");
    for (method, path) in [
        (Method::GET, format!("/sandboxes/{id}")),
        (Method::DELETE, format!("/sandboxes/{id}")),
        (Method::POST, format!("/sandboxes/{id}/connect")),
        (Method::POST, format!("/sandboxes/{id}/pause")),
    ] {
        let (st, v) = call(bob.clone(), method.clone(), path.clone(), Some(json!({}))).await;
        assert_eq!(st, 404, "{method} {path}: {v}");
        assert_eq!(v["code"], 404, "{v}");
    }
    let (st, v) = call(
        bob.clone(),
        Method::POST,
        format!("/sandboxes/{id}/timeout"),
        Some(json!({"timeout": 60})),
    )
    .await;
    assert_eq!(st, 404, "{v}");
    let (st, v) = call(bob.clone(), Method::GET, "/v2/sandboxes".into(), None).await;
    assert_eq!((st, v.clone()), (200, json!([])), "{v}");
    let (st, v) = call(alice.clone(), Method::GET, "/v2/sandboxes".into(), None).await;
    assert_eq!(st, 200);
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");

    let (st, v) = call(reader.clone(), Method::GET, "/v2/sandboxes".into(), None).await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = call(
        reader,
        Method::POST,
        "/v2/sandboxes".into(),
        Some(json!({})),
    )
    .await;
    assert_eq!(st, 403, "{v}");
    assert_eq!(v["code"], 403, "{v}");
    let (st, v) = call("e2b_00".into(), Method::GET, "/v2/sandboxes".into(), None).await;
    assert_eq!(st, 401, "{v}");
    assert_eq!(v["code"], 401, "{v}");

    let (st, _) = call(alice, Method::DELETE, format!("/sandboxes/{id}"), None).await;
    assert_eq!(st, 204);
}

/// A command outlives the stream that started it; `Process.Connect` by
/// tag streams its output from then on, a Connect deadline ends only that
/// stream, and `SendSignal` ends the command.
#[tokio::test]
async fn a_command_outlives_its_stream_and_connect_reattaches() {
    let t = E2b::start().await;
    let (id, token) = t.create(json!({})).await;
    let mut msg = start("sleep 0.5; echo later; sleep 30");
    msg["tag"] = json!("job");
    let mut resp = t
        .envd("/process.Process/Start", &id, &token)
        .header("Content-Type", "application/connect+json")
        .body(envelope(0, msg.to_string().as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The start event, then the client goes away.
    let first = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
        .await
        .expect("no hang")
        .unwrap()
        .expect("a first frame");
    let (msgs, _) = {
        let mut b = first.to_vec();
        // Close it as a stream so `frames` can parse it.
        b.extend(envelope(2, b"{}"));
        frames(&b)
    };
    let pid = msgs[0]["event"]["start"]["pid"].as_u64().unwrap();
    drop(resp);

    let (status, msgs, end) = t
        .stream(
            "/process.Process/Connect",
            &id,
            &token,
            json!({"process": {"tag": "job"}}),
            Some(2_000),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(msgs[0]["event"]["start"]["pid"].as_u64(), Some(pid));
    let (out, _, code) = outputs(&msgs);
    assert_eq!(out, "later\n");
    assert_eq!(code, None, "the command goes on");
    assert_eq!(end["error"]["code"], "deadline_exceeded", "{end}");

    let (st, v) = t
        .unary("/process.Process/List", &id, &token, json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["processes"][0]["pid"].as_u64(), Some(pid), "{v}");
    assert_eq!(v["processes"][0]["tag"], "job", "{v}");
    let (st, v) = t
        .unary(
            "/process.Process/SendSignal",
            &id,
            &token,
            json!({"process": {"pid": pid}, "signal": "SIGNAL_SIGKILL"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = t
            .unary("/process.Process/List", &id, &token, json!({}))
            .await;
        if v["processes"].as_array().is_none_or(|a| a.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "still listed: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _, end) = t
        .stream(
            "/process.Process/Connect",
            &id,
            &token,
            json!({"process": {"pid": pid}}),
            Some(2_000),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(end["error"]["code"], "not_found", "{end}");
    t.s.stop().await;
}
