//! Command-line definitions and dispatch.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::{bench, client, serve};

/// StacyVM: self-hosted sandboxes for AI agents and developer tools.
#[derive(Debug, Parser)]
#[command(name = "stacyvm", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub conn: Connection,
    #[command(subcommand)]
    pub command: Command,
}

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
    pub fn headers(&self) -> anyhow::Result<reqwest::header::HeaderMap> {
        use anyhow::Context;
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
    pub fn api_base(&self) -> String {
        format!("{}/api/v1", self.server.trim_end_matches('/'))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Create a sandbox and print its id.
    Spawn(client::SpawnArgs),
    /// Run a command in a sandbox, streaming its output; exits with its code.
    Exec(client::ExecArgs),
    /// List sandboxes.
    List(client::ListArgs),
    /// Destroy sandboxes.
    Kill {
        /// Sandbox ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Move files in and out of a sandbox.
    #[command(subcommand)]
    Files(client::FilesCommand),
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
    Config(ConfigCommand),
    /// Measure spawn, exec, files, load and density per provider.
    Bench(bench::BenchArgs),
    /// Print the version.
    Version,
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Config file (default: ./stacyvm.yaml, then ~/.stacyvm/config.yaml).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Listen host (overrides server.host).
    #[arg(long)]
    pub host: Option<String>,
    /// Listen port (overrides server.port).
    #[arg(long)]
    pub port: Option<u16>,
    /// Default provider (overrides providers.default).
    #[arg(long)]
    pub provider: Option<String>,
    /// Database file (overrides database.path).
    #[arg(long)]
    pub database: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and report problems.
    Lint {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print the effective configuration with secrets redacted.
    Show {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::serve(args).await.map(|()| ExitCode::SUCCESS),
        Command::Spawn(args) => client::spawn(&cli.conn, args).await,
        Command::Exec(args) => client::exec(&cli.conn, args).await,
        Command::List(args) => client::list(&cli.conn, args).await,
        Command::Kill { ids } => client::kill(&cli.conn, &ids).await,
        Command::Files(cmd) => client::files(&cli.conn, cmd).await,
        Command::Image { config, cmd } => serve::image(config.as_deref(), cmd)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Config(cmd) => serve::config(cmd).map(|()| ExitCode::SUCCESS),
        Command::Bench(args) => bench::run(&cli.conn, args).await,
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

/// Prints a line to stdout (the CLI's output, as opposed to logs).
#[allow(clippy::print_stdout)]
pub fn println_out(s: &str) {
    println!("{s}");
}
