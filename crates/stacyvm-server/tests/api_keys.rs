//! Stored API keys against the real server: the admin API mints, lists and
//! revokes them; a user key acts only for its owner whatever `X-User-ID`
//! says; scopes gate routes; a revoked key is refused within a second; no
//! key ever appears in an answer.

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use serde_json::{Value, json};

const ADMIN: &str = "admin-key-SECRET-0001";

async fn call(
    s: &TestServer,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value, String) {
    let mut r = s.http.request(method, s.url(path)).header("x-api-key", key);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, v, text)
}

#[tokio::test]
async fn keys_name_owners_scopes_gate_routes_and_revocation_is_prompt() {
    use reqwest::Method as M;
    let s = TestServer::start_with(|c| {
        c.auth.enabled = true;
        c.auth.api_key = String::new();
        c.auth.admin_api_key = ADMIN.into();
    })
    .await;
    let mut answers = Vec::new();
    let mint = async |owner: &str, scope: &str| {
        let (st, v, text) = call(
            &s,
            ADMIN,
            M::POST,
            "/keys",
            Some(json!({"owner": owner, "scope": scope, "name": "ci"})),
        )
        .await;
        assert_eq!(st, 201, "{text}");
        let key = v["key"].as_str().unwrap().to_string();
        assert!(key.starts_with("svm_"), "{key}");
        assert_eq!(v["owner"], owner);
        assert_eq!(v["scope"], scope);
        assert!(v.get("hash").is_none());
        (key, v["id"].as_str().unwrap().to_string())
    };
    let (alice, alice_id) = mint("alice", "user").await;
    let (bob, _) = mint("bob", "user").await;
    let (reader, _) = mint("ops", "read").await;
    let (st, v, _) = call(
        &s,
        ADMIN,
        M::POST,
        "/keys",
        Some(json!({"owner": "e2b-user", "format": "e2b"})),
    )
    .await;
    assert_eq!(st, 201);
    let e2b = v["key"].as_str().unwrap().to_string();
    assert!(e2b.starts_with("e2b_") && e2b[4..].bytes().all(|b| b.is_ascii_hexdigit()));
    let keys = [alice.clone(), bob.clone(), reader.clone(), e2b.clone()];

    // The owner comes from the key, not from X-User-ID.
    let resp = s
        .http
        .post(s.url("/sandboxes"))
        .header("x-api-key", &alice)
        .header("x-user-id", "bob")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let sb: Value = resp.json().await.unwrap();
    assert_eq!(sb["owner_id"], "alice", "{sb}");
    let (st, list, text) = call(&s, &bob, M::GET, "/sandboxes", None).await;
    assert_eq!(st, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{text}");
    answers.push(text);
    let (_, list, text) = call(&s, &alice, M::GET, "/sandboxes", None).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{text}");
    answers.push(text);
    let (st, _, text) = call(&s, &e2b, M::GET, "/sandboxes", None).await;
    assert_eq!(st, 200, "{text}");

    // Scopes.
    for (key, method, path, want) in [
        (&alice, M::GET, "/keys", 403),
        (&alice, M::POST, "/keys", 403),
        (&alice, M::GET, "/metrics", 403),
        (&alice, M::GET, "/diagnostics", 403),
        (&reader, M::GET, "/metrics", 200),
        (&reader, M::GET, "/sandboxes", 200),
        (&reader, M::POST, "/sandboxes", 403),
        (&reader, M::GET, "/keys", 403),
    ] {
        let (st, v, text) = call(&s, key, method.clone(), path, Some(json!({}))).await;
        assert_eq!(st, want, "{method} {path}: {text}");
        if want == 403 {
            assert_eq!(v["code"], "forbidden");
        }
        answers.push(text);
    }
    let (st, v, _) = call(&s, "svm_nope_0000", M::GET, "/sandboxes", None).await;
    assert_eq!((st, v["code"].as_str()), (401, Some("unauthorized")));

    // Listing shows ids and prefixes, never keys.
    let (st, _, text) = call(&s, ADMIN, M::GET, "/keys", None).await;
    assert_eq!(st, 200);
    answers.push(text);
    let (_, one, text) = call(&s, ADMIN, M::GET, "/keys?owner=alice", None).await;
    assert_eq!(one.as_array().map(Vec::len), Some(1), "{text}");
    assert!(one[0]["last_used_at"].is_null() || one[0]["last_used_at"].is_string());

    // Revocation: refused within one second.
    let (st, v, text) = call(&s, ADMIN, M::DELETE, &format!("/keys/{alice_id}"), None).await;
    assert_eq!(st, 200, "{text}");
    assert!(v["revoked_at"].is_string());
    answers.push(text);
    let revoked = Instant::now();
    loop {
        let (st, _, _) = call(&s, &alice, M::GET, "/sandboxes", None).await;
        if st == 401 {
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "revoked key still accepted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (st, _, _) = call(&s, ADMIN, M::GET, "/keys/key_00000000", None).await;
    assert_eq!(st, 404);

    for a in &answers {
        for k in &keys {
            assert!(!a.contains(k.as_str()), "an answer holds a key: {a}");
        }
    }
    s.stop().await;
}

/// Schemathesis found that an `expires_in` of centuries was stored as a
/// five-digit year no store could read back, so every later `/keys` call
/// failed with 500. Such a lifetime is refused, and the longest one allowed
/// still lists, reads and revokes.
#[tokio::test]
async fn a_lifetime_beyond_a_century_is_refused_and_the_longest_allowed_reads_back() {
    use reqwest::Method as M;
    let s = TestServer::start_with(|c| {
        c.auth.enabled = true;
        c.auth.api_key = String::new();
        c.auth.admin_api_key = ADMIN.into();
    })
    .await;
    for too_long in ["876001h", "9999999999h"] {
        let (st, v, text) = call(
            &s,
            ADMIN,
            M::POST,
            "/keys",
            Some(json!({"owner": "alice", "expires_in": too_long})),
        )
        .await;
        assert_eq!(st, 400, "{too_long}: {text}");
        assert_eq!(v["code"], "bad_request", "{text}");
    }
    let (st, v, text) = call(
        &s,
        ADMIN,
        M::POST,
        "/keys",
        Some(json!({"owner": "alice", "expires_in": "876000h"})),
    )
    .await;
    assert_eq!(st, 201, "{text}");
    let id = v["id"].as_str().unwrap().to_string();
    for (method, path) in [
        (M::GET, "/keys".to_string()),
        (M::GET, "/keys?owner=".to_string()),
        (M::GET, format!("/keys/{id}")),
        (M::DELETE, format!("/keys/{id}")),
    ] {
        let (st, _, text) = call(&s, ADMIN, method.clone(), &path, None).await;
        assert!(st == 200 || st == 400, "{method} {path}: {st} {text}");
    }
    let (st, v, text) = call(&s, ADMIN, M::GET, "/keys", None).await;
    assert_eq!(st, 200, "{text}");
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{text}");
    s.stop().await;
}

/// An owner the stores would refuse to read back is refused at the door, so
/// listing keys never fails on a record the API itself wrote.
#[tokio::test]
async fn a_key_for_an_empty_or_malformed_owner_is_refused_and_listing_still_works() {
    use reqwest::Method as M;
    let s = TestServer::start_with(|c| {
        c.auth.enabled = true;
        c.auth.api_key = String::new();
        c.auth.admin_api_key = ADMIN.into();
    })
    .await;
    for owner in ["", "   ", "a/b", "a b"] {
        let (st, v, text) = call(&s, ADMIN, M::POST, "/keys", Some(json!({"owner": owner}))).await;
        assert!(st == 400 || st == 422, "{owner:?}: {st} {text}");
        assert!(v["code"].is_string() && v["message"].is_string(), "{text}");
    }
    let (st, v, text) = call(&s, ADMIN, M::GET, "/keys", None).await;
    assert_eq!(st, 200, "{text}");
    assert_eq!(v.as_array().map(Vec::len), Some(0), "{text}");
}
