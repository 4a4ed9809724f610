//! The client subcommands (spawn, exec, list, kill, files) over
//! [`crate::client::Client`].

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use futures::StreamExt;
use stacyvm_server::api::model::{ExecRequest, SpawnRequest, StreamName};

use crate::client::{Client, Connection};
use crate::out::println_out;

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

fn parse_duration(flag: &str, s: &str) -> Result<stacyvm_core::GoDuration> {
    stacyvm_core::GoDuration::parse(s).with_context(|| format!("--{flag}"))
}

pub async fn spawn(conn: &Connection, a: SpawnArgs) -> Result<ExitCode> {
    let api = Client::new(conn)?;
    let req = SpawnRequest {
        image: a.image,
        provider: a.provider,
        template: a.template,
        ttl: a
            .ttl
            .as_deref()
            .map(|t| parse_duration("ttl", t))
            .transpose()?,
        memory_mb: a.memory_mb,
        vcpus: a.vcpus,
        metadata: Some(a.metadata.into_iter().collect())
            .filter(|m: &std::collections::BTreeMap<_, _>| !m.is_empty()),
        owner_id: None,
        network: None,
    };
    let sb = api.spawn(&req).await?;
    if a.json {
        println_out(&serde_json::to_string_pretty(&sb)?);
    } else {
        println_out(sb.id.as_str());
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn exec(conn: &Connection, a: ExecArgs) -> Result<ExitCode> {
    let api = Client::new(conn)?;
    let (command, args) = a
        .command
        .split_first()
        .ok_or_else(|| anyhow!("a command is required"))?;
    let req = ExecRequest {
        command: if a.shell {
            a.command.join(" ")
        } else {
            command.clone()
        },
        args: if a.shell { Vec::new() } else { args.to_vec() },
        mode: if a.shell { "shell" } else { "argv" }.to_string(),
        env: a.env.into_iter().collect(),
        workdir: a.workdir.unwrap_or_default(),
        timeout: a
            .timeout
            .as_deref()
            .map(|t| parse_duration("timeout", t))
            .transpose()?,
        stream: true,
    };
    let mut records = api.exec_stream(&a.id, &req).await?;
    while let Some(rec) = records.next().await {
        let rec = rec?;
        match rec.stream {
            StreamName::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(rec.data.as_bytes())?;
                out.flush()?;
            }
            StreamName::Stderr => {
                let mut err = std::io::stderr().lock();
                err.write_all(rec.data.as_bytes())?;
                err.flush()?;
            }
            StreamName::Exit => {
                if rec.timed_out {
                    eprintln!("stacyvm: command timed out");
                }
                let code = rec.exit_code.unwrap_or(-1);
                // Exit codes are 0..=255 on Unix; a signal death shows as 128+N.
                return Ok(ExitCode::from(
                    u8::try_from(code.clamp(0, 255)).unwrap_or(1),
                ));
            }
        }
    }
    bail!("the stream ended without an exit status")
}

pub async fn list(conn: &Connection, a: ListArgs) -> Result<ExitCode> {
    let api = Client::new(conn)?;
    let items = api.list().await?;
    if a.json {
        println_out(&serde_json::to_string_pretty(&items)?);
        return Ok(ExitCode::SUCCESS);
    }
    println_out(&format!(
        "{:<16} {:<11} {:<8} {:<24} {}",
        "ID", "STATE", "PROVIDER", "IMAGE", "EXPIRES"
    ));
    for s in &items {
        println_out(&format!(
            "{:<16} {:<11} {:<8} {:<24} {}",
            s.id.as_str(),
            s.state.as_str(),
            s.provider,
            s.image,
            s.expires_at
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        ));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct NodesArgs {
    /// Stop placement on this node (it keeps serving its sandboxes).
    #[arg(long, value_name = "NODE_ID")]
    pub drain: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `stacyvm nodes`: the cluster's nodes (`--drain ID` drains one first).
pub async fn nodes(conn: &Connection, a: NodesArgs) -> Result<ExitCode> {
    let api = Client::new(conn)?;
    if let Some(id) = &a.drain {
        let node = api.drain_node(id).await?;
        println_out(&format!("{} {}", node.id, node.state));
        return Ok(ExitCode::SUCCESS);
    }
    let items = api.nodes().await?;
    if a.json {
        println_out(&serde_json::to_string_pretty(&items)?);
        return Ok(ExitCode::SUCCESS);
    }
    println_out(&format!(
        "{:<20} {:<9} {:<10} {:<12} {:<28} {}",
        "ID", "STATE", "SANDBOXES", "PROVIDERS", "ADVERTISE", "LAST HEARTBEAT"
    ));
    for n in &items {
        let cap = match n.max_sandboxes {
            0 => n.sandboxes.to_string(),
            max => format!("{}/{max}", n.sandboxes),
        };
        let providers: Vec<String> = n
            .providers
            .iter()
            .map(|p| format!("{}{}", p.name, if p.healthy { "" } else { "!" }))
            .collect();
        println_out(&format!(
            "{:<20} {:<9} {:<10} {:<12} {:<28} {}",
            n.id,
            n.state.as_str(),
            cap,
            providers.join(","),
            n.advertise_url,
            n.last_heartbeat
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn kill(conn: &Connection, ids: &[String]) -> Result<ExitCode> {
    let api = Client::new(conn)?;
    let mut failed = false;
    for id in ids {
        match api.destroy(id).await {
            Ok(()) => println_out(&format!("{id} destroyed")),
            Err(e) => {
                eprintln!("{e:#}");
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

/// `pause` or `resume` each sandbox; prints `ID STATE`.
pub async fn lifecycle(conn: &Connection, ids: &[String], action: &str) -> Result<ExitCode> {
    let api = Client::new(conn)?;
    let mut failed = false;
    for id in ids {
        match api.lifecycle(id, action).await {
            Ok(sb) => println_out(&format!("{id} {}", sb.state)),
            Err(e) => {
                eprintln!("{e:#}");
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
    let api = Client::new(conn)?;
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
            api.put_file(&id, &remote, mode.as_deref(), data).await?;
            println_out(&format!("{} -> {id}:{remote}", local.display()));
        }
        FilesCommand::Get { id, remote, local } => {
            let mut stream = std::pin::pin!(api.get_file(&id, &remote).await?);
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
            for f in api.list_files(&id, &path).await? {
                let kind = if f.is_dir { "d" } else { "-" };
                println_out(&format!(
                    "{kind} {} {:>10} {} {}",
                    f.mode,
                    f.size,
                    f.mod_time
                        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                    f.path
                ));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
