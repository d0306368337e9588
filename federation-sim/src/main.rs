//! The `federation-sim` binary: `federation-sim serve --config PATH`.
//!
//! Exit codes: 0 after a signal-initiated graceful shutdown, 64 (EX_USAGE) for a bad
//! configuration (with a clear message on stderr), 1 for any other error. Logs go to stderr
//! (`RUST_LOG`, default `info`); the one stdout line is the listening line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use federation_sim::{SimConfig, Simulator};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

const EXIT_BAD_CONFIG: u8 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "federation-sim",
    version,
    about = "A stand-in for the 国保連合会 federation gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the gateway and the control API until SIGINT or SIGTERM.
    Serve {
        /// Path of the TOML configuration file.
        #[arg(long, value_name = "PATH")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Serve { config } => serve(&config),
    }
}

fn serve(config_path: &std::path::Path) -> ExitCode {
    let config = match SimConfig::load(config_path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("federation-sim: bad configuration: {e:#}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("federation-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: SimConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async move {
        let sim = Simulator::open(config)?;
        let shutdown = CancellationToken::new();
        let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let token = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = sigint.recv() => tracing::info!("SIGINT received"),
                _ = sigterm.recv() => tracing::info!("SIGTERM received"),
            }
            token.cancel();
        });
        sim.serve(shutdown, None).await
    })
}
