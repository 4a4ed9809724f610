//! `stacyvm serve` and `stacyvm config`: load config, set up logging, run.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use stacyvm_server::app;
use stacyvm_server::config::Config;
use tracing_subscriber::EnvFilter;

use crate::out::println_out;

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

fn load(path: Option<&std::path::Path>) -> Result<(Config, Option<std::path::PathBuf>)> {
    Ok(Config::load(path, std::env::vars())?)
}

fn init_logging(config: &Config) {
    let filter = EnvFilter::try_from_env("STACYVM_LOG")
        .or_else(|_| EnvFilter::try_new(&config.logging.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if config.logging.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub async fn serve(args: ServeArgs) -> Result<()> {
    let (mut config, file) = load(args.config.as_deref())?;
    // Flags are the last layer.
    if let Some(h) = args.host {
        config.server.host = h;
    }
    if let Some(p) = args.port {
        config.server.port = p;
    }
    if let Some(p) = args.provider {
        config.providers.default = p;
    }
    if let Some(d) = args.database {
        config.database.path = d;
    }
    config.validate()?;
    init_logging(&config);
    match &file {
        Some(f) => tracing::info!(config = %f.display(), "configuration loaded"),
        None => tracing::info!("no config file; using defaults and STACYVM_* environment"),
    }
    let listener = app::bind(&config).await?;
    let app = app::build(config, Vec::new())
        .await
        .context("cannot start")?;
    app.run(listener, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown signal received; draining");
}

/// `stacyvm image ...` on the image store the native provider uses.
pub async fn image(
    config: Option<&std::path::Path>,
    cmd: crate::image_cmd::ImageCommand,
) -> Result<()> {
    let (config, _) = load(config)?;
    let store = stacyvm_providers::native::image::ImageStore::open(
        config.providers.native.data_dir.join("images"),
        config.images.clone(),
    )
    .context("cannot open the image store")?;
    crate::image_cmd::run(cmd, &store).await
}

pub fn config(cmd: ConfigCommand) -> Result<()> {
    match cmd {
        ConfigCommand::Lint { config } => {
            let (_, file) = load(config.as_deref())?;
            match file {
                Some(f) => println_out(&format!("{}: ok", f.display())),
                None => println_out("no config file found; defaults and environment: ok"),
            }
        }
        ConfigCommand::Show { config } => {
            let (c, _) = load(config.as_deref())?;
            println_out(c.redacted_yaml().trim_end());
        }
    }
    Ok(())
}
