//! The HTTP calls the scenarios time, and the record of every sandbox the
//! benchmark created so an interrupted run can destroy them all.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::cli::Connection;

/// Sandboxes created and not yet destroyed.
#[derive(Debug, Clone, Default)]
pub struct Tracker(Arc<Mutex<BTreeSet<String>>>);

impl Tracker {
    fn add(&self, id: &str) {
        self.lock().insert(id.to_string());
    }

    fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    pub fn ids(&self) -> Vec<String> {
        self.lock().iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Timings of a streamed exec.
#[derive(Debug, Clone, Copy)]
pub struct StreamTiming {
    pub first_byte: Duration,
    pub exit: Duration,
}

/// A client bound to one server and one provider.
#[derive(Debug, Clone)]
pub struct BenchClient {
    http: reqwest::Client,
    base: String,
    pub provider: String,
    pub image: Option<String>,
    pub tracker: Tracker,
}

impl BenchClient {
    pub fn new(
        conn: &Connection,
        provider: &str,
        image: Option<String>,
        tracker: Tracker,
    ) -> Result<Self> {
        let http = reqwest::Client::builder()
            .default_headers(conn.headers()?)
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(BenchClient {
            http,
            base: conn.api_base(),
            provider: provider.to_string(),
            image,
            tracker,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn check(&self, what: &str, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = req
            .send()
            .await
            .with_context(|| format!("{what}: cannot reach the server at {}", self.base))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        Err(anyhow!(
            "{what}: {} ({}, HTTP {status})",
            body["message"].as_str().unwrap_or("request failed"),
            body["code"].as_str().unwrap_or("")
        ))
    }

    /// Creates a sandbox and returns the sandbox object.
    pub async fn spawn(&self) -> Result<Value> {
        let mut body = json!({"provider": self.provider, "ttl": "30m"});
        if let Some(i) = &self.image {
            body["image"] = json!(i);
        }
        let resp = self
            .check(
                &format!("spawn on {}", self.provider),
                self.http.post(self.url("/sandboxes")).json(&body),
            )
            .await?;
        let sb: Value = resp.json().await?;
        let id = sb["id"]
            .as_str()
            .ok_or_else(|| anyhow!("spawn on {}: no id in the response", self.provider))?;
        self.tracker.add(id);
        Ok(sb)
    }

    pub async fn destroy(&self, id: &str) -> Result<()> {
        self.check(
            &format!("destroy {id}"),
            self.http.delete(self.url(&format!("/sandboxes/{id}"))),
        )
        .await?;
        self.tracker.remove(id);
        Ok(())
    }

    /// Runs `argv` synchronously and fails unless it exits 0.
    pub async fn exec(&self, id: &str, argv: &[&str]) -> Result<()> {
        let body = json!({"command": argv[0], "args": &argv[1..], "mode": "argv"});
        let out: Value = self
            .check(
                &format!("exec in {id}"),
                self.http
                    .post(self.url(&format!("/sandboxes/{id}/exec")))
                    .json(&body),
            )
            .await?
            .json()
            .await?;
        match out["exit_code"].as_i64() {
            Some(0) => Ok(()),
            code => bail!("exec in {id}: {argv:?} exited with {code:?}"),
        }
    }

    /// Runs `argv` streamed; times the first output record and the exit.
    pub async fn exec_stream(&self, id: &str, argv: &[&str]) -> Result<StreamTiming> {
        let body = json!({"command": argv[0], "args": &argv[1..], "mode": "argv", "stream": true});
        let start = Instant::now();
        let resp = self
            .check(
                &format!("streamed exec in {id}"),
                self.http
                    .post(self.url(&format!("/sandboxes/{id}/exec")))
                    .json(&body),
            )
            .await?;
        let mut stream = resp.bytes_stream();
        let mut first_byte = None;
        let mut buf = Vec::new();
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(&chunk?);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let rec: Value = serde_json::from_slice(&line)
                    .with_context(|| format!("streamed exec in {id}: malformed record"))?;
                match rec["stream"].as_str() {
                    Some("stdout" | "stderr") => {
                        first_byte.get_or_insert_with(|| start.elapsed());
                    }
                    Some("exit") => {
                        let exit = start.elapsed();
                        if rec["exit_code"].as_i64() != Some(0) {
                            bail!(
                                "streamed exec in {id}: {argv:?} exited with {}",
                                rec["exit_code"]
                            );
                        }
                        let first_byte = first_byte.ok_or_else(|| {
                            anyhow!("streamed exec in {id}: no output before the exit record")
                        })?;
                        return Ok(StreamTiming { first_byte, exit });
                    }
                    _ => {}
                }
            }
        }
        bail!("streamed exec in {id}: the stream ended without an exit record")
    }

    /// Uploads raw bytes with PUT.
    pub async fn put_file(&self, id: &str, path: &str, data: bytes::Bytes) -> Result<()> {
        self.check(
            &format!("write {path} in {id}"),
            self.http
                .put(self.url(&format!("/sandboxes/{id}/files")))
                .query(&[("path", path)])
                .body(data),
        )
        .await?;
        Ok(())
    }

    /// Downloads a file and checks its length.
    pub async fn get_file(&self, id: &str, path: &str, want_len: usize) -> Result<()> {
        let body = self
            .check(
                &format!("read {path} in {id}"),
                self.http
                    .get(self.url(&format!("/sandboxes/{id}/files")))
                    .query(&[("path", path)]),
            )
            .await?
            .bytes()
            .await?;
        if body.len() != want_len {
            bail!(
                "read {path} in {id}: got {} bytes, wrote {want_len}",
                body.len()
            );
        }
        Ok(())
    }

    /// `process.resident_memory_bytes` from `/metrics`.
    pub async fn server_rss(&self) -> Result<Option<u64>> {
        let m: Value = self
            .check("metrics", self.http.get(self.url("/metrics")))
            .await?
            .json()
            .await?;
        Ok(m["process"]["resident_memory_bytes"].as_u64())
    }

    /// Sum of `stacyvm_sandbox_memory_bytes` over `ids` from the Prometheus
    /// exposition (the server refreshes it with its health checks).
    pub async fn sandbox_memory(&self, ids: &[String]) -> Result<Option<u64>> {
        let text = self
            .check(
                "prometheus metrics",
                self.http.get(self.url("/metrics/prometheus")),
            )
            .await?
            .text()
            .await?;
        let mut total = None;
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("stacyvm_sandbox_memory_bytes{") else {
                continue;
            };
            let Some((labels, value)) = rest.split_once("} ") else {
                continue;
            };
            if ids
                .iter()
                .any(|id| labels.contains(&format!("sandbox=\"{id}\"")))
            {
                let v = value.trim().parse::<f64>().unwrap_or(0.0) as u64;
                *total.get_or_insert(0) += v;
            }
        }
        Ok(total)
    }
}
