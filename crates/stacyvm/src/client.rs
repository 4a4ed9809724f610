//! The one HTTP client of API v1 in this binary, used by the CLI commands
//! and by `stacyvm bench`. Requests and replies are the server's own
//! contract types (`stacyvm_server::api::model`), so a change of the wire
//! format shows up here at compile time.

use std::pin::Pin;

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use clap::Args;
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use stacyvm_server::api::model::{
    ErrorBody, ExecRequest, ExecResponse, FileInfo, MetricsResponse, Sandbox, SpawnRequest,
    StreamRecord,
};

/// Where the client commands find the server.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// Server URL.
    #[arg(
        long,
        global = true,
        env = "STACYVM_SERVER",
        default_value = "http://127.0.0.1:7423"
    )]
    pub server: String,
    /// API key, when the server has auth enabled.
    #[arg(long, global = true, env = "STACYVM_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Owner identity sent as X-User-ID.
    #[arg(long, global = true, env = "STACYVM_USER_ID")]
    pub user: Option<String>,
}

impl Connection {
    /// Default headers of every request: the API key (marked sensitive so
    /// it never shows in debug output) and the owner id.
    fn headers(&self) -> Result<reqwest::header::HeaderMap> {
        use reqwest::header::{HeaderMap, HeaderValue};
        let mut headers = HeaderMap::new();
        if let Some(k) = self.api_key.as_deref().filter(|k| !k.is_empty()) {
            let mut v = HeaderValue::from_str(k).context("invalid API key")?;
            v.set_sensitive(true);
            headers.insert("x-api-key", v);
        }
        if let Some(u) = self.user.as_deref().filter(|u| !u.is_empty()) {
            headers.insert(
                "x-user-id",
                HeaderValue::from_str(u).context("invalid user id")?,
            );
        }
        Ok(headers)
    }

    /// `SERVER/api/v1`.
    fn api_base(&self) -> String {
        format!("{}/api/v1", self.server.trim_end_matches('/'))
    }
}

/// The records of a streamed exec, in order; blank keep-alive lines are
/// skipped.
pub type RecordStream = Pin<Box<dyn Stream<Item = Result<StreamRecord>> + Send>>;

/// A client of one server.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    pub fn new(conn: &Connection) -> Result<Self> {
        Self::build(conn, reqwest::Client::builder())
    }

    /// A client that keeps up to `idle` connections open (concurrent load).
    pub fn pooled(conn: &Connection, idle: usize) -> Result<Self> {
        Self::build(
            conn,
            reqwest::Client::builder().pool_max_idle_per_host(idle),
        )
    }

    fn build(conn: &Connection, builder: reqwest::ClientBuilder) -> Result<Self> {
        Ok(Client {
            http: builder.default_headers(conn.headers()?).build()?,
            base: conn.api_base(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request; an error reply becomes `WHAT: MESSAGE (CODE, HTTP N)`.
    async fn send(&self, what: &str, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = req
            .send()
            .await
            .with_context(|| format!("{what}: cannot reach the server at {}", self.base))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let (message, code) = match resp.json::<ErrorBody>().await {
            Ok(e) => (e.message, e.code),
            Err(_) => ("request failed".to_string(), String::new()),
        };
        Err(anyhow!("{what}: {message} ({code}, HTTP {status})"))
    }

    async fn json<T: DeserializeOwned>(
        &self,
        what: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<T> {
        self.send(what, req)
            .await?
            .json()
            .await
            .with_context(|| format!("{what}: unexpected reply"))
    }

    pub async fn spawn(&self, req: &SpawnRequest) -> Result<Sandbox> {
        let what = match &req.provider {
            Some(p) => format!("spawn on {p}"),
            None => "spawn".to_string(),
        };
        self.json(&what, self.http.post(self.url("/sandboxes")).json(req))
            .await
    }

    pub async fn list(&self) -> Result<Vec<Sandbox>> {
        self.json("list", self.http.get(self.url("/sandboxes")))
            .await
    }

    pub async fn nodes(&self) -> Result<Vec<stacyvm_core::Node>> {
        self.json("list nodes", self.http.get(self.url("/nodes")))
            .await
    }

    pub async fn drain_node(&self, id: &str) -> Result<stacyvm_core::Node> {
        self.json(
            &format!("drain node {id}"),
            self.http.post(self.url(&format!("/nodes/{id}/drain"))),
        )
        .await
    }

    pub async fn destroy(&self, id: &str) -> Result<()> {
        self.send(
            &format!("destroy {id}"),
            self.http.delete(self.url(&format!("/sandboxes/{id}"))),
        )
        .await?;
        Ok(())
    }

    /// `POST /sandboxes/{id}/{action}` (`pause`, `resume`): the sandbox after.
    pub async fn lifecycle(&self, id: &str, action: &str) -> Result<Sandbox> {
        self.json(
            &format!("{action} {id}"),
            self.http
                .post(self.url(&format!("/sandboxes/{id}/{action}"))),
        )
        .await
    }

    /// Runs a command and waits for its result (`stream` is ignored).
    pub async fn exec(&self, id: &str, req: &ExecRequest) -> Result<ExecResponse> {
        let req = ExecRequest {
            stream: false,
            ..req.clone()
        };
        self.json(
            &format!("exec in {id}"),
            self.http
                .post(self.url(&format!("/sandboxes/{id}/exec")))
                .json(&req),
        )
        .await
    }

    /// Runs a command and streams its records as they arrive; the last is
    /// the `exit` record.
    pub async fn exec_stream(&self, id: &str, req: &ExecRequest) -> Result<RecordStream> {
        let req = ExecRequest {
            stream: true,
            ..req.clone()
        };
        let what = format!("streamed exec in {id}");
        let resp = self
            .send(
                &what,
                self.http
                    .post(self.url(&format!("/sandboxes/{id}/exec")))
                    .json(&req),
            )
            .await?;
        Ok(ndjson_records(resp.bytes_stream(), what))
    }

    /// Uploads raw bytes (`PUT .../files?path=&mode=`).
    pub async fn put_file(
        &self,
        id: &str,
        path: &str,
        mode: Option<&str>,
        data: impl Into<reqwest::Body>,
    ) -> Result<()> {
        let mut q = vec![("path", path)];
        if let Some(m) = mode {
            q.push(("mode", m));
        }
        self.send(
            &format!("write {path} in {id}"),
            self.http
                .put(self.url(&format!("/sandboxes/{id}/files")))
                .query(&q)
                .body(data),
        )
        .await?;
        Ok(())
    }

    /// Downloads a file as a stream of chunks.
    pub async fn get_file(
        &self,
        id: &str,
        path: &str,
    ) -> Result<impl Stream<Item = Result<Bytes>> + use<>> {
        let resp = self
            .send(
                &format!("read {path} in {id}"),
                self.http
                    .get(self.url(&format!("/sandboxes/{id}/files")))
                    .query(&[("path", path)]),
            )
            .await?;
        Ok(resp.bytes_stream().map(|c| c.map_err(anyhow::Error::from)))
    }

    pub async fn list_files(&self, id: &str, path: &str) -> Result<Vec<FileInfo>> {
        self.json(
            &format!("list {path} in {id}"),
            self.http
                .get(self.url(&format!("/sandboxes/{id}/files/list")))
                .query(&[("path", path)]),
        )
        .await
    }

    /// `GET /metrics`.
    pub async fn metrics(&self) -> Result<MetricsResponse> {
        self.json("metrics", self.http.get(self.url("/metrics")))
            .await
    }

    /// `GET /metrics/prometheus`, as text.
    pub async fn prometheus(&self) -> Result<String> {
        Ok(self
            .send(
                "prometheus metrics",
                self.http.get(self.url("/metrics/prometheus")),
            )
            .await?
            .text()
            .await?)
    }
}

/// Splits an NDJSON byte stream into records, skipping blank lines.
fn ndjson_records(
    bytes: impl Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
    what: String,
) -> RecordStream {
    let state = (Box::pin(bytes), Vec::<u8>::new(), what, false);
    Box::pin(futures::stream::unfold(
        state,
        |(mut bytes, mut buf, what, done)| async move {
            if done {
                return None;
            }
            loop {
                if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let rec = serde_json::from_slice::<StreamRecord>(&line)
                        .with_context(|| format!("{what}: malformed stream record"));
                    return Some((rec, (bytes, buf, what, false)));
                }
                match bytes.next().await {
                    Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                    Some(Err(e)) => {
                        let err = anyhow!("{what}: the stream broke: {e}");
                        return Some((Err(err), (bytes, buf, what, true)));
                    }
                    None if buf.iter().all(u8::is_ascii_whitespace) => return None,
                    None => {
                        let err = anyhow!("{what}: the stream ended inside a record");
                        return Some((Err(err), (bytes, Vec::new(), what, true)));
                    }
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ndjson_records_split_across_chunks_and_skip_keepalives() {
        let chunks: Vec<reqwest::Result<Bytes>> = vec![
            Ok(Bytes::from_static(b"{\"stream\":\"stdout\",\"da")),
            Ok(Bytes::from_static(
                b"ta\":\"a\\n\"}\n\n\n{\"stream\":\"exit\",",
            )),
            Ok(Bytes::from_static(
                b"\"data\":\"\",\"exit_code\":3,\"duration\":\"1ms\"}\n",
            )),
        ];
        let recs: Vec<StreamRecord> = ndjson_records(futures::stream::iter(chunks), "t".into())
            .map(|r| r.unwrap())
            .collect()
            .await;
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].data, "a\n");
        assert_eq!(recs[1].exit_code, Some(3));
    }

    #[tokio::test]
    async fn a_truncated_stream_is_an_error() {
        let chunks: Vec<reqwest::Result<Bytes>> =
            vec![Ok(Bytes::from_static(b"{\"stream\":\"stdout\""))];
        let recs: Vec<Result<StreamRecord>> =
            ndjson_records(futures::stream::iter(chunks), "t".into())
                .collect()
                .await;
        assert_eq!(recs.len(), 1);
        assert!(recs[0].is_err());
    }
}
