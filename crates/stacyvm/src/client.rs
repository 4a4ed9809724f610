//! Client commands: talk to a StacyVM server over API v1.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::cli::{Connection, println_out};

#[derive(Debug, Args)]
pub struct SpawnArgs {
    #[arg(long)]
    pub image: Option<String>,
    #[arg(long)]
    pub provider: Option<String>,
    #[arg(long)]
    pub template: Option<String>,
    /// Time to live, e.g. 30m.
    #[arg(long)]
    pub ttl: Option<String>,
    #[arg(long)]
    pub memory_mb: Option<u32>,
    #[arg(long)]
    pub vcpus: Option<u32>,
    /// Metadata as KEY=VALUE (repeatable).
    #[arg(long = "metadata", short = 'm', value_parser = parse_kv)]
    pub metadata: Vec<(String, String)>,
    /// Print the whole sandbox object as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    pub id: String,
    /// Run the command through /bin/sh -c (default: argv, no shell).
    #[arg(long)]
    pub shell: bool,
    /// Timeout, e.g. 30s.
    #[arg(long)]
    pub timeout: Option<String>,
    #[arg(long)]
    pub workdir: Option<String>,
    /// Environment as KEY=VALUE (repeatable).
    #[arg(long = "env", short = 'e', value_parser = parse_kv)]
    pub env: Vec<(String, String)>,
    /// The command and its arguments (after --).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum FilesCommand {
    /// Upload a local file.
    Put {
        id: String,
        local: PathBuf,
        remote: String,
        /// Octal mode, e.g. 755.
        #[arg(long)]
        mode: Option<String>,
    },
    /// Download a file (to stdout when LOCAL is omitted).
    Get {
        id: String,
        remote: String,
        local: Option<PathBuf>,
    },
    /// List a directory.
    Ls {
        id: String,
        #[arg(default_value = "/")]
        path: String,
    },
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

/// A small API client.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(conn: &Connection) -> Result<Self> {
        let http = reqwest::Client::builder()
            .default_headers(conn.headers()?)
            .build()?;
        Ok(Api {
            http,
            base: conn.api_base(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request and turns an error body into a readable error.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the server at {}", self.base))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let message = body["message"].as_str().unwrap_or("request failed");
        let code = body["code"].as_str().unwrap_or("");
        Err(anyhow!("{message} ({code}, HTTP {})", status.as_u16()))
    }

    async fn json(&self, req: reqwest::RequestBuilder) -> Result<Value> {
        Ok(self.send(req).await?.json().await?)
    }
}

pub async fn spawn(conn: &Connection, a: SpawnArgs) -> Result<ExitCode> {
    let api = Api::new(conn)?;
    let mut body = json!({});
    for (k, v) in [
        ("image", &a.image),
        ("provider", &a.provider),
        ("template", &a.template),
        ("ttl", &a.ttl),
    ] {
        if let Some(v) = v {
            body[k] = json!(v);
        }
    }
    if let Some(m) = a.memory_mb {
        body["memory_mb"] = json!(m);
    }
    if let Some(v) = a.vcpus {
        body["vcpus"] = json!(v);
    }
    if !a.metadata.is_empty() {
        body["metadata"] = json!(a.metadata.into_iter().collect::<BTreeMap<_, _>>());
    }
    let sb = api
        .json(api.http.post(api.url("/sandboxes")).json(&body))
        .await?;
    if a.json {
        println_out(&serde_json::to_string_pretty(&sb)?);
    } else {
        println_out(sb["id"].as_str().unwrap_or_default());
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn exec(conn: &Connection, a: ExecArgs) -> Result<ExitCode> {
    let api = Api::new(conn)?;
    let (command, args) = a
        .command
        .split_first()
        .ok_or_else(|| anyhow!("a command is required"))?;
    let mut body = json!({
        "command": if a.shell { a.command.join(" ") } else { command.clone() },
        "args": if a.shell { Vec::new() } else { args.to_vec() },
        "mode": if a.shell { "shell" } else { "argv" },
        "stream": true,
        "env": a.env.into_iter().collect::<BTreeMap<_, _>>(),
    });
    if let Some(t) = a.timeout {
        body["timeout"] = json!(t);
    }
    if let Some(w) = a.workdir {
        body["workdir"] = json!(w);
    }
    let resp = api
        .send(
            api.http
                .post(api.url(&format!("/sandboxes/{}/exec", a.id)))
                .json(&body),
        )
        .await?;
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    let mut exit = None;
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk?);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let rec: Value = serde_json::from_slice(&line).context("malformed stream record")?;
            let data = rec["data"].as_str().unwrap_or("");
            match rec["stream"].as_str() {
                Some("stdout") => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(data.as_bytes())?;
                    out.flush()?;
                }
                Some("stderr") => {
                    let mut err = std::io::stderr().lock();
                    err.write_all(data.as_bytes())?;
                    err.flush()?;
                }
                Some("exit") => {
                    if rec["timed_out"].as_bool() == Some(true) {
                        eprintln!("stacyvm: command timed out");
                    }
                    exit = rec["exit_code"].as_i64();
                }
                _ => {}
            }
        }
    }
    match exit {
        // Exit codes are 0..=255 on Unix; a signal death shows as 128+N.
        Some(code) => Ok(ExitCode::from(
            u8::try_from(code.clamp(0, 255)).unwrap_or(1),
        )),
        None => bail!("the stream ended without an exit status"),
    }
}

pub async fn list(conn: &Connection, a: ListArgs) -> Result<ExitCode> {
    let api = Api::new(conn)?;
    let items = api.json(api.http.get(api.url("/sandboxes"))).await?;
    if a.json {
        println_out(&serde_json::to_string_pretty(&items)?);
        return Ok(ExitCode::SUCCESS);
    }
    println_out(&format!(
        "{:<16} {:<11} {:<8} {:<24} {}",
        "ID", "STATE", "PROVIDER", "IMAGE", "EXPIRES"
    ));
    for s in items.as_array().into_iter().flatten() {
        let f = |k: &str| s[k].as_str().unwrap_or("").to_string();
        println_out(&format!(
            "{:<16} {:<11} {:<8} {:<24} {}",
            f("id"),
            f("state"),
            f("provider"),
            f("image"),
            f("expires_at")
        ));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn kill(conn: &Connection, ids: &[String]) -> Result<ExitCode> {
    let api = Api::new(conn)?;
    let mut failed = false;
    for id in ids {
        match api
            .send(api.http.delete(api.url(&format!("/sandboxes/{id}"))))
            .await
        {
            Ok(_) => println_out(&format!("{id} destroyed")),
            Err(e) => {
                eprintln!("{id}: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub async fn files(conn: &Connection, cmd: FilesCommand) -> Result<ExitCode> {
    let api = Api::new(conn)?;
    match cmd {
        FilesCommand::Put {
            id,
            local,
            remote,
            mode,
        } => {
            let data = tokio::fs::read(&local)
                .await
                .with_context(|| format!("cannot read {}", local.display()))?;
            let mut q = vec![("path", remote.clone())];
            if let Some(m) = mode {
                q.push(("mode", m));
            }
            api.send(
                api.http
                    .put(api.url(&format!("/sandboxes/{id}/files")))
                    .query(&q)
                    .body(data),
            )
            .await?;
            println_out(&format!("{} -> {id}:{remote}", local.display()));
        }
        FilesCommand::Get { id, remote, local } => {
            let resp = api
                .send(
                    api.http
                        .get(api.url(&format!("/sandboxes/{id}/files")))
                        .query(&[("path", &remote)]),
                )
                .await?;
            let mut stream = resp.bytes_stream();
            let mut out: Box<dyn Write> = match &local {
                Some(p) => Box::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("cannot create {}", p.display()))?,
                ),
                None => Box::new(std::io::stdout().lock()),
            };
            while let Some(chunk) = stream.next().await {
                out.write_all(&chunk?)?;
            }
            out.flush()?;
        }
        FilesCommand::Ls { id, path } => {
            let items = api
                .json(
                    api.http
                        .get(api.url(&format!("/sandboxes/{id}/files/list")))
                        .query(&[("path", &path)]),
                )
                .await?;
            for f in items.as_array().into_iter().flatten() {
                let kind = if f["is_dir"].as_bool() == Some(true) {
                    "d"
                } else {
                    "-"
                };
                println_out(&format!(
                    "{kind} {} {:>10} {} {}",
                    f["mode"].as_str().unwrap_or(""),
                    f["size"].as_u64().unwrap_or(0),
                    f["mod_time"].as_str().unwrap_or(""),
                    f["path"].as_str().unwrap_or("")
                ));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
