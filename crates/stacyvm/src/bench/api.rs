//! The HTTP calls the scenarios time, and the record of every sandbox the
//! benchmark created so an interrupted run can destroy them all.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use futures::StreamExt;
use stacyvm_core::GoDuration;
use stacyvm_server::api::model::{ExecRequest, Sandbox, SpawnRequest, StreamName};

use crate::client::{Client, Connection};

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

/// The binary's API client bound to one provider, recording every sandbox
/// it creates.
#[derive(Debug, Clone)]
pub struct BenchClient {
    api: Client,
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
        Ok(BenchClient {
            api: Client::pooled(conn, 64)?,
            provider: provider.to_string(),
            image,
            tracker,
        })
    }

    /// Creates a sandbox and returns the sandbox object.
    pub async fn spawn(&self) -> Result<Sandbox> {
        let req = SpawnRequest {
            provider: Some(self.provider.clone()),
            image: self.image.clone(),
            ttl: Some(GoDuration::from_secs(30 * 60)),
            ..SpawnRequest::default()
        };
        let sb = self.api.spawn(&req).await?;
        self.tracker.add(sb.id.as_str());
        Ok(sb)
    }

    pub async fn destroy(&self, id: &str) -> Result<()> {
        self.api.destroy(id).await?;
        self.tracker.remove(id);
        Ok(())
    }

    fn argv(argv: &[&str]) -> ExecRequest {
        ExecRequest {
            command: argv[0].to_string(),
            args: argv[1..].iter().map(|a| a.to_string()).collect(),
            mode: "argv".to_string(),
            ..ExecRequest::default()
        }
    }

    /// Runs `argv` synchronously and fails unless it exits 0.
    pub async fn exec(&self, id: &str, argv: &[&str]) -> Result<()> {
        let out = self.api.exec(id, &Self::argv(argv)).await?;
        match out.exit_code {
            0 => Ok(()),
            code => bail!("exec in {id}: {argv:?} exited with {code}"),
        }
    }

    /// Runs `argv` streamed; times the first output record and the exit.
    pub async fn exec_stream(&self, id: &str, argv: &[&str]) -> Result<StreamTiming> {
        let start = Instant::now();
        let mut records = self.api.exec_stream(id, &Self::argv(argv)).await?;
        let mut first_byte = None;
        while let Some(rec) = records.next().await {
            let rec = rec?;
            match rec.stream {
                StreamName::Stdout | StreamName::Stderr => {
                    first_byte.get_or_insert_with(|| start.elapsed());
                }
                StreamName::Exit => {
                    let exit = start.elapsed();
                    if rec.exit_code != Some(0) {
                        bail!(
                            "streamed exec in {id}: {argv:?} exited with {:?}",
                            rec.exit_code
                        );
                    }
                    let first_byte = first_byte.ok_or_else(|| {
                        anyhow!("streamed exec in {id}: no output before the exit record")
                    })?;
                    return Ok(StreamTiming { first_byte, exit });
                }
            }
        }
        bail!("streamed exec in {id}: the stream ended without an exit record")
    }

    /// Uploads raw bytes with PUT.
    pub async fn put_file(&self, id: &str, path: &str, data: bytes::Bytes) -> Result<()> {
        self.api.put_file(id, path, None, data).await
    }

    /// Downloads a file and checks its length.
    pub async fn get_file(&self, id: &str, path: &str, want_len: usize) -> Result<()> {
        let mut stream = std::pin::pin!(self.api.get_file(id, path).await?);
        let mut len = 0;
        while let Some(chunk) = stream.next().await {
            len += chunk?.len();
        }
        if len != want_len {
            bail!("read {path} in {id}: got {len} bytes, wrote {want_len}");
        }
        Ok(())
    }

    /// `process.resident_memory_bytes` from `/metrics`.
    pub async fn server_rss(&self) -> Result<Option<u64>> {
        Ok(self.api.metrics().await?.process.resident_memory_bytes)
    }

    /// Sum of `stacyvm_sandbox_memory_bytes` over `ids` from the Prometheus
    /// exposition (the server refreshes it with its health checks).
    pub async fn sandbox_memory(&self, ids: &[String]) -> Result<Option<u64>> {
        let text = self.api.prometheus().await?;
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
