//! The `stacyvm` binary: parse the command line, then either run the server
//! or talk to one. All real work lives in library code.
#![forbid(unsafe_code)]

mod bench;
mod cli;
mod client;
mod commands;
mod image_cmd;
mod out;
mod serve;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
