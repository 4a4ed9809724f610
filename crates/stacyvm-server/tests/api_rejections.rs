//! Every rejection, the framework's included, answers `{"code","message"}`
//! with the contract's status: path, query, JSON, WebSocket handshake and
//! body-limit rejections, on the API and on the dashboard's routes.

mod common;

use std::time::Duration;

use common::{TestServer, assert_error, decode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends raw bytes and returns (status, body as JSON) of the reply; fails
/// the test if the server does not answer within `within`.
async fn raw(s: &TestServer, request: &str, within: Duration) -> (u16, serde_json::Value) {
    let addr = s
        .base
        .trim_start_matches("http://")
        .trim_end_matches("/api/v1");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = tcp.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(within, read)
        .await
        .expect("the server answers without waiting for the body");
    let text = String::from_utf8_lossy(&buf).to_string();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|b| b.1).unwrap_or("");
    let v = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, v)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test]
async fn invalid_utf8_in_path_segments_is_a_json_400() {
    let s = TestServer::start().await;
    for path in [
        "/sandboxes/%FF%FE",
        "/sandboxes/sb-%FF/logs",
        "/sandboxes/%C3%28/files/list",
        "/sandboxes/%FF/exec/ws",
        "/templates/%FF",
        "/providers/%FF",
    ] {
        let (st, e) = s.get(path).await;
        assert_error(st, &e, 400, "bad_request");
        assert!(
            e["message"].as_str().unwrap().contains("path"),
            "{path}: {e}"
        );
    }
    for path in [
        "/sandboxes/%FF/exec",
        "/sandboxes/%FF%FE/extend",
        "/templates/%80abc/spawn",
    ] {
        let (st, e) = s.post(path, json!({})).await;
        assert_error(st, &e, 400, "bad_request");
    }
    s.stop().await;
}

#[tokio::test]
async fn websocket_route_checks_the_sandbox_before_the_handshake() {
    let s = TestServer::start().await;
    // No upgrade headers at all, and a half handshake: unknown sandbox → 404.
    let (st, e) = s.get("/sandboxes/sb-0123456789/exec/ws").await;
    assert_error(st, &e, 404, "not_found");
    let r = s
        .http
        .get(s.url("/sandboxes/sb-0123456789/exec/ws"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .send()
        .await
        .unwrap();
    let (st, e) = decode(r).await;
    assert_error(st, &e, 404, "not_found");
    // A live sandbox without a proper handshake: 400 in the error shape.
    let id = s.spawn().await;
    let (st, e) = s.get(&format!("/sandboxes/{id}/exec/ws")).await;
    assert_error(st, &e, 400, "bad_request");
    assert!(e["message"].as_str().unwrap().contains("WebSocket"), "{e}");
    let r = s
        .http
        .get(s.url(&format!("/sandboxes/{id}/exec/ws")))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .send()
        .await
        .unwrap();
    let (st, e) = decode(r).await;
    assert_error(st, &e, 400, "bad_request");
    // A destroyed sandbox is gone for the terminal too.
    s.delete(&format!("/sandboxes/{id}")).await;
    let (st, e) = s.get(&format!("/sandboxes/{id}/exec/ws")).await;
    assert_error(st, &e, 404, "not_found");
    s.stop().await;
}

#[tokio::test]
async fn non_object_json_bodies_are_refused() {
    let s = TestServer::start().await;
    let id = s.spawn().await;
    let routes = [
        "/sandboxes".to_string(),
        "/sandboxes/admission".to_string(),
        format!("/sandboxes/{id}/extend"),
        format!("/sandboxes/{id}/exec"),
        format!("/sandboxes/{id}/files"),
        format!("/sandboxes/{id}/files/move"),
        format!("/sandboxes/{id}/files/chmod"),
        "/templates".to_string(),
    ];
    for route in &routes {
        for body in ["[]", "1", "\"x\"", "null", "true", "[{}]"] {
            let r = s
                .http
                .post(s.url(route))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let (st, e) = decode(r).await;
            assert_error(st, &e, 400, "bad_request");
            assert!(
                e["message"].as_str().unwrap().contains("object"),
                "{route} {body}: {e}"
            );
        }
    }
    // The empty body still counts as `{}`, and objects still work.
    let r = s.http.post(s.url("/sandboxes")).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let r = s
        .http
        .post(s.url("/sandboxes"))
        .body(" \n {\"ttl\": \"5m\"} ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    s.stop().await;
}

#[tokio::test]
async fn an_oversized_declared_length_is_refused_before_the_body() {
    let s = TestServer::start_with(|c| c.server.max_body_bytes = 4096).await;
    // No body follows: a server that waited for it would time out here.
    for target in [
        "/api/v1/sandboxes",
        "/api/v1/sandboxes/sb-0123456789/files?path=/x",
        "/",
    ] {
        let req = format!(
            "POST {target} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 99999999999\r\n\r\n"
        );
        let (st, e) = raw(&s, &req, Duration::from_secs(5)).await;
        assert_error(st, &e, 413, "payload_too_large");
        assert!(e["message"].as_str().unwrap().contains("4096"), "{e}");
    }
    // Just under the limit is read (and judged on its content).
    let (st, e) = raw(
        &s,
        "POST /api/v1/sandboxes HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nconnection: close\r\n\r\n[]",
        Duration::from_secs(5),
    )
    .await;
    assert_error(st, &e, 400, "bad_request");
    // A chunked body with no declared length is cut at the limit.
    let id = s.spawn().await;
    let chunks = futures::stream::iter(
        (0..8).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 1024]))),
    );
    let r = s
        .http
        .put(s.url(&format!("/sandboxes/{id}/files?path=/big")))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    let (st, e) = decode(r).await;
    assert_error(st, &e, 413, "payload_too_large");
    s.stop().await;
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_a_json_408() {
    let s = TestServer::start_with(|c| {
        c.server.request_body_timeout = stacyvm_core::GoDuration::from_secs(1)
    })
    .await;
    let id = s.spawn().await;
    // Each declares more than it sends and then goes silent; without the
    // idle timeout the handler would wait for the rest until the client
    // gave up.
    for (target, body) in [
        ("/api/v1/sandboxes".to_string(), "{"),
        (format!("/api/v1/sandboxes/{id}/exec"), "{\"command\":"),
        (format!("/api/v1/sandboxes/{id}/files?path=/part"), "abc"),
    ] {
        let method = if target.contains("files") {
            "PUT"
        } else {
            "POST"
        };
        let req =
            format!("{method} {target} HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n{body}");
        let (st, e) = raw(&s, &req, Duration::from_secs(10)).await;
        assert_error(st, &e, 408, "timeout");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("request_body_timeout"),
            "{e}"
        );
    }
    // Nothing of the cut upload was written.
    let r = s
        .http
        .get(s.url(&format!("/sandboxes/{id}/files?path=/part")))
        .send()
        .await
        .unwrap();
    let (st, e) = decode(r).await;
    assert_error(st, &e, 404, "not_found");
    // A body that arrives slowly but keeps arriving is read whole.
    let addr = s
        .base
        .trim_start_matches("http://")
        .trim_end_matches("/api/v1")
        .to_string();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = br#"{"metadata":{"slow":"yes"}}"#;
    let head = format!(
        "POST /api/v1/sandboxes HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    for piece in body.chunks(9) {
        tokio::time::sleep(Duration::from_millis(600)).await;
        tcp.write_all(piece).await.unwrap();
    }
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut reply))
        .await
        .expect("the slow request is answered")
        .unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");
    s.stop().await;
}

#[tokio::test]
async fn query_rejections_are_json() {
    let s = TestServer::start().await;
    let id = s.spawn().await;
    for path in [
        format!("/sandboxes/{id}/logs?lines=many"),
        format!("/sandboxes/{id}/logs?lines=-1"),
        "/sandboxes?state=sleeping".to_string(),
        "/events?types=nope".to_string(),
        "/events?last_event_id=x".to_string(),
        format!("/sandboxes/{id}/files?path=/a&recursive=maybe"),
    ] {
        let r = if path.contains("recursive") {
            s.http.delete(s.url(&path)).send().await.unwrap()
        } else {
            s.http.get(s.url(&path)).send().await.unwrap()
        };
        let (st, e) = decode(r).await;
        assert_error(st, &e, 400, "bad_request");
    }
    s.stop().await;
}

#[tokio::test]
async fn dashboard_routes_answer_errors_in_the_shape() {
    let s = TestServer::start().await;
    let root = s.base.trim_end_matches("/api/v1").to_string();
    let r = s
        .http
        .get(format!("{root}/no-such-page.js"))
        .send()
        .await
        .unwrap();
    let (st, e) = decode(r).await;
    assert_error(st, &e, 404, "not_found");
    for path in ["/", "/app.js", "/pages/overview.js"] {
        let r = s.http.post(format!("{root}{path}")).send().await.unwrap();
        let (st, e) = decode(r).await;
        assert_error(st, &e, 405, "method_not_allowed");
        let r = s.http.delete(format!("{root}{path}")).send().await.unwrap();
        let (st, e) = decode(r).await;
        assert_error(st, &e, 405, "method_not_allowed");
    }
    s.stop().await;
}

/// A client that sends half a request head and goes quiet loses its
/// connection after `server.header_read_timeout` (slowloris), while a
/// response that streams for longer than that timeout is not cut.
#[tokio::test]
async fn a_stalled_request_head_is_dropped_but_long_streams_are_not() {
    let s = TestServer::start_with(|c| {
        c.server.header_read_timeout = stacyvm_core::GoDuration::from_secs(1);
    })
    .await;
    let addr = s
        .base
        .trim_start_matches("http://")
        .trim_end_matches("/api/v1")
        .to_string();
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(b"GET /api/v1/live HTTP/1.1\r\nHost: x\r\nX-Hal")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stalled.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a stalled request head kept its connection");

    // An exec stream that lasts three times the timeout arrives whole.
    let id = s.spawn().await;
    let text = s
        .http
        .post(s.url(&format!("/sandboxes/{id}/exec")))
        .json(&json!({"command": "echo a; sleep 3; echo b", "stream": true}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("\"a\\n\"") && text.contains("\"b\\n\"") && text.contains("exit_code"),
        "{text}"
    );
    // The server still answers.
    let (st, _) = s.get("/live").await;
    assert_eq!(st, 200);
}
