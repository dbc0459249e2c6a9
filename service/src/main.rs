//! `sworn`: the command-line entry point. Everything of substance lives in the library.

#![deny(missing_docs)]

mod cli;

/// mimalloc rather than glibc malloc: sled's copy-on-write pages made malloc a quarter of
/// the ledger's append time, and glibc's per-thread arenas let resident memory drift up.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Result;
use clap::{Parser, Subcommand};
use sworn_service::device::DeviceReport;

/// Sworn: an OpenAI-compatible LLM server whose every answer is signed, logged and anchored.
#[derive(Debug, Parser)]
#[command(name = "sworn", disable_version_flag = true)]
struct Cli {
    /// Print the version, the libtorch version and the devices libtorch sees, then exit.
    #[arg(short = 'V', long = "version")]
    version: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the version report as JSON (for scripts and tests).
    Version,
    /// Generate text for one prompt, streamed to stdout (timings on stderr).
    Generate(cli::generate::GenerateArgs),
    /// Tokenize stdin (one JSON string per line) into JSON arrays of ids on stdout.
    Tokenize(cli::tokenize::TokenizeArgs),
    /// Serve the OpenAI-compatible API; every answer is sworn into the log.
    Serve(Box<sworn_service::config::ServeArgs>),
    /// Manage the API-keys file.
    Keys {
        #[command(subcommand)]
        command: sworn_service::api_keys::KeysCommand,
    },
    /// Create an Ed25519 log key (mode 0600) and print its public key in hex.
    Keygen(sworn_service::lifecycle::KeygenArgs),
    /// Print the `sworn serve` configuration reference (docs/CONFIG.md) as Markdown.
    #[command(hide = true)]
    ConfigReference,
    /// Copy a stopped server's data directory into a new one and check the copy opens
    /// (restoring is the same copy the other way round; see docs/OPERATIONS.md).
    Backup(cli::backup::BackupArgs),
    /// Deploy the SwornAnchor contract and register logs on a chain.
    Chain {
        #[command(subcommand)]
        command: cli::chain::ChainCommand,
    },
    /// Rotate the log's signing key (on the chain and in the store) or print its history.
    LogKey {
        #[command(subcommand)]
        command: cli::log_key::LogKeyCommand,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if cli.version {
        print_version();
        return Ok(());
    }
    match cli.command {
        Some(Command::Version) => {
            let report = DeviceReport::probe();
            let json = serde_json::json!({
                "sworn": env!("CARGO_PKG_VERSION"),
                "libtorch": report.libtorch,
                "cuda_devices": report.cuda_devices,
                "cudnn": report.cudnn,
                "cuda_backend": report.cuda_backend,
                "cpu_threads": report.cpu_threads,
            });
            println!("{json}");
        }
        Some(Command::Generate(args)) => cli::generate::run(&args)?,
        Some(Command::Tokenize(args)) => cli::tokenize::run(&args)?,
        Some(Command::Serve(args)) => sworn_service::lifecycle::run(*args)?,
        Some(Command::Keys { command }) => println!("{}", sworn_service::api_keys::run(&command)?),
        Some(Command::Keygen(args)) => println!("{}", sworn_service::lifecycle::keygen(&args)?),
        Some(Command::Backup(args)) => println!("{}", cli::backup::run(&args)?),
        Some(Command::Chain { command }) => println!("{}", cli::chain::run(&command)?),
        Some(Command::LogKey { command }) => println!("{}", cli::log_key::run(&command)?),
        Some(Command::ConfigReference) => print!("{}", sworn_service::config::reference()),
        None => {
            use clap::CommandFactory;
            Cli::command().print_help()?;
        }
    }
    Ok(())
}

fn print_version() {
    let report = DeviceReport::probe();
    println!("sworn {}", env!("CARGO_PKG_VERSION"));
    println!("libtorch {}", report.libtorch);
    println!(
        "cuda: {} device(s), cudnn: {}, backend {}",
        report.cuda_devices,
        if report.cudnn {
            "available"
        } else {
            "unavailable"
        },
        report.cuda_backend
    );
    println!("cpu threads: {}", report.cpu_threads);
}
