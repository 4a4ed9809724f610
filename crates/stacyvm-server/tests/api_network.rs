//! The `network` field of a spawn and `GET /sandboxes/{id}/network`,
//! against the real server on the mock provider: policies are checked
//! before anything is created, and a provider that cannot give a mode
//! refuses it with 400 rather than giving more.

mod common;

use common::{TestServer, assert_error};
use serde_json::json;

#[tokio::test]
async fn spawn_checks_the_policy_and_the_provider_capabilities() {
    let s = TestServer::start().await;
    for (network, needle) in [
        (
            json!({"mode": "allow", "allow": ["bad*.example"]}),
            "network.allow[0] \"bad*.example\"",
        ),
        (
            json!({"mode": "allow", "deny": ["10.0.0.0/33"]}),
            "network.deny[0]",
        ),
        (
            json!({"mode": "none", "allow": ["pypi.org"]}),
            "only used with mode",
        ),
        (json!({"mode": "open"}), "unknown variant `open`"),
        (json!({"mode": "allow", "alow": []}), "alow"),
        // Valid, but the mock gives neither.
        (
            json!({"mode": "allow", "allow": ["pypi.org:443"]}),
            "network mode \"allow\"",
        ),
        (json!({"mode": "host"}), "network mode \"host\""),
    ] {
        let (st, body) = s.post("/sandboxes", json!({"network": network})).await;
        assert_error(st, &body, 400, "bad_request");
        let msg = body["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{network}: {msg}");
    }
    // Nothing was created by the refusals.
    let (_, list) = s.get("/sandboxes").await;
    assert_eq!(list, json!([]));
    // Admission answers the same refusal.
    let (st, body) = s
        .post("/sandboxes/admission", json!({"network": {"mode": "host"}}))
        .await;
    assert_error(st, &body, 400, "bad_request");
    s.stop().await;
}

#[tokio::test]
async fn the_policy_of_a_sandbox_is_readable() {
    let s = TestServer::start().await;
    let (st, sb) = s
        .post("/sandboxes", json!({"network": {"mode": "none"}}))
        .await;
    assert_eq!(st, 201, "{sb}");
    let id = sb["id"].as_str().unwrap();
    let (st, net) = s.get(&format!("/sandboxes/{id}/network")).await;
    assert_eq!((st, net), (200, json!({"mode": "none"})));
    // The mock cannot change a network: the same policy is fine, another
    // is a 400, a bad one a 400 naming the entry.
    let put = |body: serde_json::Value| {
        let url = s.url(&format!("/sandboxes/{id}/network"));
        let http = s.http.clone();
        async move {
            let r = http.put(url).json(&body).send().await.unwrap();
            let st = r.status().as_u16();
            (st, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    assert_eq!(
        put(json!({"mode": "none"})).await,
        (200, json!({"mode": "none"}))
    );
    let (st, body) = put(json!({"mode": "allow", "allow": ["10.0.0.0/8"]})).await;
    assert_error(st, &body, 400, "bad_request");
    let (st, body) = put(json!({"mode": "allow", "allow": ["a..b"]})).await;
    assert_error(st, &body, 400, "bad_request");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("network.allow[0]")
    );
    let (st, _) = s.delete(&format!("/sandboxes/{id}")).await;
    assert!(st == 200 || st == 204);
    let (st, body) = s.get(&format!("/sandboxes/{id}/network")).await;
    assert_error(st, &body, 404, "not_found");
    let (st, body) = s.get("/sandboxes/not-an-id/network").await;
    assert_error(st, &body, 404, "not_found");
    s.stop().await;
}
