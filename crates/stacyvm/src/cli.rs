//! Command-line definitions and dispatch.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};

use crate::client::Connection;
use crate::commands;
use crate::out::println_out;
use crate::{bench, serve};

/// StacyVM: self-hosted sandboxes for AI agents and developer tools.
#[derive(Debug, Parser)]
#[command(name = "stacyvm", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub conn: Connection,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Create a sandbox and print its id.
    Spawn(commands::SpawnArgs),
    /// Run a command in a sandbox, streaming its output; exits with its code.
    Exec(commands::ExecArgs),
    /// List sandboxes.
    List(commands::ListArgs),
    /// Destroy sandboxes.
    Kill {
        /// Sandbox ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Freeze sandboxes in memory (processes, files and sockets are kept).
    Pause {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Thaw paused sandboxes.
    Resume {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Move files in and out of a sandbox.
    #[command(subcommand)]
    Files(commands::FilesCommand),
    /// List the nodes of a cluster, or drain one.
    Nodes(commands::NodesArgs),
    /// Manage the native provider's image cache (pull, list, rm, import, gc).
    Image {
        /// Config file (for the data directory and registry settings).
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        cmd: crate::image_cmd::ImageCommand,
    },
    /// Check or show the configuration.
    #[command(subcommand)]
    Config(serve::ConfigCommand),
    /// Measure spawn, exec, files, load and density per provider.
    Bench(bench::BenchArgs),
    /// Print the OpenAPI 3.1 document of the HTTP API (as served at
    /// /api/v1/openapi.json; `stacyvm openapi > docs/openapi.json`).
    Openapi,
    /// Print the version.
    Version,
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::serve(args).await.map(|()| ExitCode::SUCCESS),
        Command::Spawn(args) => commands::spawn(&cli.conn, args).await,
        Command::Exec(args) => commands::exec(&cli.conn, args).await,
        Command::List(args) => commands::list(&cli.conn, args).await,
        Command::Kill { ids } => commands::kill(&cli.conn, &ids).await,
        Command::Pause { ids } => commands::lifecycle(&cli.conn, &ids, "pause").await,
        Command::Resume { ids } => commands::lifecycle(&cli.conn, &ids, "resume").await,
        Command::Files(cmd) => commands::files(&cli.conn, cmd).await,
        Command::Nodes(args) => commands::nodes(&cli.conn, args).await,
        Command::Image { config, cmd } => serve::image(config.as_deref(), cmd)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Config(cmd) => serve::config(cmd).map(|()| ExitCode::SUCCESS),
        Command::Bench(args) => bench::run(&cli.conn, args).await,
        Command::Openapi => {
            print_raw(&stacyvm_server::api::openapi_json())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Version => {
            println_out(&format!("stacyvm {}", stacyvm_core::VERSION));
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "stacyvm",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Writes `s` to stdout as it is.
fn print_raw(s: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes())?;
    out.flush()?;
    Ok(())
}
