//! The `federation-sim` binary: `federation-sim serve --config PATH` runs the simulator;
//! `federation-sim gen-claims --office N --month YYYYMM --members K --style honobono|qkan
//! --out DIR [--seed S] [--service-month YYYYMM] [--insured N,N,…]` writes synthetic claim
//! files (`federation_sim::generate`).
//!
//! Exit codes: 0 after a signal-initiated graceful shutdown (serve) or when the files are
//! written (gen-claims), 64 (EX_USAGE) for bad arguments or a bad configuration (with a clear
//! message on stderr), 1 for any other error. Logs go to stderr (`RUST_LOG`, default `info`);
//! stdout carries only the listening line (serve) or one line per written file (gen-claims).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use federation_sim::{GenOptions, Month, SimConfig, Simulator, Style};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// EX_USAGE: bad command-line arguments or a bad configuration.
const EXIT_USAGE: u8 = 64;

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
    /// Write synthetic claim files (a 711 file and an 821 file) for tests and benchmarks.
    GenClaims {
        /// 事業所番号: 10 digits with a valid check digit.
        #[arg(long, value_name = "N")]
        office: String,
        /// 処理対象年月 (processing month) as YYYYMM; services are in the month before.
        #[arg(long, value_name = "YYYYMM")]
        month: String,
        /// Number of members (one 明細書 and one 給付管理票 each).
        #[arg(long, value_name = "K")]
        members: u32,
        /// Quoting style and file-name convention.
        #[arg(long, value_enum)]
        style: StyleArg,
        /// Output directory (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Seed of the generator: the same arguments give the same bytes.
        #[arg(long, value_name = "S", default_value_t = 1)]
        seed: u64,
        /// サービス提供年月 as YYYYMM (default: the month before --month).
        #[arg(long, value_name = "YYYYMM")]
        service_month: Option<String>,
        /// The members' 被保険者番号, comma-separated, one per member (default: consecutive).
        #[arg(long, value_name = "N,N,…", value_delimiter = ',')]
        insured: Option<Vec<u64>>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum StyleArg {
    /// ほのぼの: only the ID, 被保険者番号 and 摘要 quoted; KK/KY<yymm>01.CSV.
    Honobono,
    /// QKAN: every data item quoted; i<RR><MM>a.csv / b.csv.
    Qkan,
}

impl From<StyleArg> for Style {
    fn from(style: StyleArg) -> Style {
        match style {
            StyleArg::Honobono => Style::Honobono,
            StyleArg::Qkan => Style::Qkan,
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version go to stdout with exit code 0.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(EXIT_USAGE);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Serve { config } => serve(&config),
        Command::GenClaims {
            office,
            month,
            members,
            style,
            out,
            seed,
            service_month,
            insured,
        } => {
            let Some(processing_month) = Month::parse(&month) else {
                eprintln!(
                    "federation-sim: bad --month {month:?}: expected the processing month as YYYYMM"
                );
                return ExitCode::from(EXIT_USAGE);
            };
            let service_month = match service_month.as_deref().map(Month::parse) {
                None => None,
                Some(Some(m)) => Some(m),
                Some(None) => {
                    eprintln!(
                        "federation-sim: bad --service-month {:?}: expected YYYYMM",
                        service_month.unwrap_or_default()
                    );
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            let opts = GenOptions {
                office,
                processing_month,
                members,
                style: style.into(),
                seed,
                service_month,
                insured_numbers: insured,
            };
            gen_claims(&opts, &out)
        }
    }
}

fn gen_claims(opts: &GenOptions, out: &std::path::Path) -> ExitCode {
    let files = match federation_sim::generate(opts) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("federation-sim: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let written = std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create {}", out.display()))
        .and_then(|()| {
            files.iter().try_for_each(|f| {
                let path = out.join(&f.name);
                std::fs::write(&path, &f.bytes)
                    .with_context(|| format!("cannot write {}", path.display()))
            })
        });
    if let Err(e) = written {
        eprintln!("federation-sim: {e:#}");
        return ExitCode::FAILURE;
    }
    for f in &files {
        println!(
            "{} {} bytes {} records (data type {})",
            f.name,
            f.bytes.len(),
            f.records,
            f.data_type
        );
    }
    ExitCode::SUCCESS
}

fn serve(config_path: &std::path::Path) -> ExitCode {
    let config = match SimConfig::load(config_path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("federation-sim: bad configuration: {e:#}");
            return ExitCode::from(EXIT_USAGE);
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
