//! Forwarding between nodes: a request for the runtime of a sandbox that
//! another node runs (exec, its NDJSON stream, files, logs, destroy) is
//! proxied to that node's `advertise_url`, streamed both ways (a 64 MiB
//! upload or download is never held whole), and its answer streamed back.
//!
//! The internal call is the same route with a signed envelope: HMAC-SHA256
//! with `cluster.secret` over the method, path and query, a timestamp, the
//! calling node and the caller's owner identity (`X-User-ID`). The owning
//! node serves a request only if its signature verifies and is at most
//! [`MAX_SKEW`] old; the API key is not passed on. A signed request is
//! never forwarded again, so forwarding cannot loop. WebSocket sessions are
//! not forwarded (the route answers 409 naming the owner).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use stacyvm_core::{NodeState, SandboxId};

use crate::api::{ApiError, AppState};

/// The calling node's id.
pub const FORWARDED_BY: &str = "x-stacyvm-forwarded-by";
/// Unix seconds when the call was signed.
pub const TIMESTAMP: &str = "x-stacyvm-timestamp";
/// Hex HMAC-SHA256 of the envelope.
pub const SIGNATURE: &str = "x-stacyvm-signature";

/// How far a signed call's timestamp may be from the receiver's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(30);

/// How long connecting to another node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Headers that belong to one hop (RFC 9110 §7.6.1) or that the envelope
/// replaces.
const DROPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "host",
    "x-api-key",
    "authorization",
    FORWARDED_BY,
    TIMESTAMP,
    SIGNATURE,
];

/// Marks a request that arrived signed by another node.
#[derive(Debug, Clone)]
pub struct Forwarded {
    pub from: String,
}

/// Forwarded-request figures for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ForwardStats {
    /// Requests this node proxied to another node.
    pub forwarded_total: u64,
    /// Of those, the ones the other node could not be reached for.
    pub failed_total: u64,
    /// Time to the other node's response head, summed, in microseconds.
    pub latency_total_us: u64,
    /// Signed requests this node served for other nodes.
    pub served_total: u64,
    /// Signed requests refused (bad or stale signature).
    pub rejected_total: u64,
}

/// This node's forwarding: the shared secret and a pooled client.
pub struct Forwarder {
    node_id: String,
    secret: Vec<u8>,
    client: reqwest::Client,
    forwarded: AtomicU64,
    failed: AtomicU64,
    latency_us: AtomicU64,
    served: AtomicU64,
    rejected: AtomicU64,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// The envelope's MAC input: one field per line.
fn envelope(method: &str, path_and_query: &str, ts: u64, from: &str, owner: &str) -> String {
    format!("stacyvm-forward-v1\n{method}\n{path_and_query}\n{ts}\n{from}\n{owner}")
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Forwarder {
    /// `read_timeout` bounds silence on a forwarded response (the longest
    /// exec the node allows, plus a margin).
    pub fn new(node_id: &str, secret: &str, read_timeout: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(read_timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("cannot build the forwarding client: {e}"))?;
        Ok(Forwarder {
            node_id: node_id.to_string(),
            secret: secret.as_bytes().to_vec(),
            client,
            forwarded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            latency_us: AtomicU64::new(0),
            served: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        })
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes a key of any length.
        Hmac::<Sha256>::new_from_slice(&self.secret).expect("hmac accepts any key length")
    }

    /// The signature of an envelope, hex.
    pub fn sign(&self, method: &str, pq: &str, ts: u64, owner: &str) -> String {
        let mut mac = self.mac();
        mac.update(envelope(method, pq, ts, &self.node_id, owner).as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Checks a signed request's envelope; the calling node on success.
    fn verify(
        &self,
        method: &Method,
        pq: &str,
        headers: &HeaderMap,
    ) -> Result<String, &'static str> {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let from = get(FORWARDED_BY).ok_or("missing caller node")?;
        let ts: u64 = get(TIMESTAMP)
            .and_then(|t| t.parse().ok())
            .ok_or("missing or bad timestamp")?;
        if now_secs().abs_diff(ts) > MAX_SKEW.as_secs() {
            return Err("stale signature");
        }
        let sig = hex::decode(get(SIGNATURE).unwrap_or("")).map_err(|_| "malformed signature")?;
        let owner = get("x-user-id").unwrap_or("");
        let mut mac = self.mac();
        mac.update(envelope(method.as_str(), pq, ts, from, owner).as_bytes());
        mac.verify_slice(&sig).map_err(|_| "bad signature")?;
        Ok(from.to_string())
    }

    pub fn stats(&self) -> ForwardStats {
        ForwardStats {
            forwarded_total: self.forwarded.load(Ordering::Relaxed),
            failed_total: self.failed.load(Ordering::Relaxed),
            latency_total_us: self.latency_us.load(Ordering::Relaxed),
            served_total: self.served.load(Ordering::Relaxed),
            rejected_total: self.rejected.load(Ordering::Relaxed),
        }
    }

    /// Proxies `req` to `base` (another node's advertise URL), streaming.
    async fn proxy(&self, owner_node: &str, base: &str, req: Request) -> Response {
        let (parts, body) = req.into_parts();
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| parts.uri.path().to_string());
        let owner = parts
            .headers
            .get("x-user-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let ts = now_secs();
        let mut headers = HeaderMap::new();
        for (name, value) in &parts.headers {
            if !DROPPED.contains(&name.as_str()) {
                headers.append(name.clone(), value.clone());
            }
        }
        let sig = self.sign(parts.method.as_str(), &pq, ts, &owner);
        let pairs = [
            (FORWARDED_BY, self.node_id.clone()),
            (TIMESTAMP, ts.to_string()),
            (SIGNATURE, sig),
        ];
        for (name, value) in pairs {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), v);
            }
        }
        let url = format!("{}{pq}", base.trim_end_matches('/'));
        let started = Instant::now();
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        let sent = self
            .client
            .request(parts.method, &url)
            .headers(headers)
            .body(reqwest::Body::wrap_stream(body.into_data_stream()))
            .send()
            .await;
        self.latency_us
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(node_id = %owner_node, error = %e, "forwarding failed");
                return ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "bad_gateway",
                    format!("node {owner_node}, which runs the sandbox, did not answer"),
                )
                .into_response();
            }
        };
        let mut out = Response::builder().status(resp.status().as_u16());
        if let Some(h) = out.headers_mut() {
            for (name, value) in resp.headers() {
                if !DROPPED.contains(&name.as_str()) && name.as_str() != "content-length" {
                    h.append(name.clone(), value.clone());
                }
            }
            if let Some(len) = resp.headers().get("content-length") {
                h.insert("content-length", len.clone());
            }
        }
        let stream = resp.bytes_stream().map_err(std::io::Error::other);
        out.body(Body::from_stream(stream))
            .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
    }
}

/// Which sandbox a request is about, if its runtime is what it touches:
/// `/api/v1/sandboxes/{id}/...` (but not `extend`, a store write, nor
/// `exec/ws`), and `DELETE /api/v1/sandboxes/{id}`.
fn runtime_target(method: &Method, path: &str) -> Option<SandboxId> {
    let rest = path.strip_prefix("/api/v1/sandboxes/")?;
    let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let wanted = match tail {
        "" => method == Method::DELETE,
        "extend" | "exec/ws" => false,
        _ => true,
    };
    if !wanted {
        return None;
    }
    SandboxId::parse(id)
}

/// The middleware: verifies signed requests from other nodes, and proxies
/// requests for another node's sandbox to it.
pub async fn forward(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let signed = req.headers().contains_key(SIGNATURE);
    let Some(fwd) = app.forwarder.clone() else {
        if signed {
            return ApiError::unauthorized("this node does not take forwarded requests")
                .into_response();
        }
        return next.run(req).await;
    };
    if signed {
        let pq = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        return match fwd.verify(req.method(), &pq, req.headers()) {
            Ok(from) => {
                fwd.served.fetch_add(1, Ordering::Relaxed);
                req.extensions_mut().insert(Forwarded { from });
                next.run(req).await
            }
            Err(why) => {
                fwd.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(reason = why, "refused a forwarded request");
                ApiError::unauthorized("invalid cluster signature").into_response()
            }
        };
    }
    let Some(id) = runtime_target(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let Ok(sb) = app.manager.get(&id).await else {
        return next.run(req).await;
    };
    let Some(owner) = app.manager.foreign_node(&sb).map(str::to_string) else {
        return next.run(req).await;
    };
    match app.manager.node(&owner).await {
        Ok(node) if node.state != NodeState::Lost && sb.state.is_active() => {
            fwd.proxy(&owner, &node.advertise_url, req).await
        }
        // A lost node's sandboxes are answered here, from the store.
        _ => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_every_field_and_expire() {
        let a = Forwarder::new("n1", "s3cret", Duration::from_secs(5)).unwrap();
        let b = Forwarder::new("n2", "s3cret", Duration::from_secs(5)).unwrap();
        let ts = now_secs();
        let pq = "/api/v1/sandboxes/sb-12345678/exec";
        let mut h = HeaderMap::new();
        h.insert(FORWARDED_BY, HeaderValue::from_static("n1"));
        h.insert(TIMESTAMP, HeaderValue::from_str(&ts.to_string()).unwrap());
        h.insert(
            SIGNATURE,
            HeaderValue::from_str(&a.sign("POST", pq, ts, "")).unwrap(),
        );
        assert_eq!(b.verify(&Method::POST, pq, &h), Ok("n1".to_string()));
        assert!(b.verify(&Method::GET, pq, &h).is_err());
        assert!(
            b.verify(&Method::POST, "/api/v1/sandboxes/sb-00000000/exec", &h)
                .is_err()
        );
        h.insert("x-user-id", HeaderValue::from_static("mallory"));
        assert!(b.verify(&Method::POST, pq, &h).is_err(), "owner is signed");
        h.remove("x-user-id");
        let other = Forwarder::new("n3", "other", Duration::from_secs(5)).unwrap();
        assert!(other.verify(&Method::POST, pq, &h).is_err(), "wrong secret");
        let old = ts - 120;
        h.insert(TIMESTAMP, HeaderValue::from_str(&old.to_string()).unwrap());
        h.insert(
            SIGNATURE,
            HeaderValue::from_str(&a.sign("POST", pq, old, "")).unwrap(),
        );
        assert_eq!(b.verify(&Method::POST, pq, &h), Err("stale signature"));
    }

    #[test]
    fn only_runtime_routes_are_forwarded() {
        let id = "sb-1234abcd";
        let t = |m: Method, p: &str| runtime_target(&m, p).map(|s| s.to_string());
        assert_eq!(
            t(Method::POST, &format!("/api/v1/sandboxes/{id}/exec")).as_deref(),
            Some(id)
        );
        assert_eq!(
            t(Method::PUT, &format!("/api/v1/sandboxes/{id}/files")).as_deref(),
            Some(id)
        );
        assert_eq!(
            t(Method::DELETE, &format!("/api/v1/sandboxes/{id}")).as_deref(),
            Some(id)
        );
        assert_eq!(t(Method::GET, &format!("/api/v1/sandboxes/{id}")), None);
        assert_eq!(
            t(Method::POST, &format!("/api/v1/sandboxes/{id}/extend")),
            None
        );
        assert_eq!(
            t(Method::GET, &format!("/api/v1/sandboxes/{id}/exec/ws")),
            None
        );
        assert_eq!(t(Method::GET, "/api/v1/sandboxes"), None);
    }
}
