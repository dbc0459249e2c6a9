//! `sworn chain deploy` and `sworn chain register`: put SwornAnchor on a chain and register
//! this service's log, from Rust (the local `anvil/` scripts do the same with forge/cast).

use std::path::PathBuf;
use std::str::FromStr;

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use sworn_ledger::anchor::{self, Deployment};
use sworn_ledger::keys::LogKey;

/// Chain operations.
#[derive(Debug, Subcommand)]
pub(crate) enum ChainCommand {
    /// Deploy SwornAnchor from the committed artifact and print its address.
    Deploy(DeployArgs),
    /// Register a log (origin + Ed25519 key + submitter) on a deployed SwornAnchor.
    Register(RegisterArgs),
}

/// `sworn chain deploy`.
#[derive(Debug, Args)]
pub(crate) struct DeployArgs {
    /// JSON-RPC endpoint of the chain.
    #[arg(long, env = "SWORN_RPC")]
    rpc: String,
    /// File holding the deployer's private key in hex (mode 0600 required).
    #[arg(long, env = "SWORN_CHAIN_KEY")]
    chain_key: PathBuf,
    /// Also write the deployment (chain id, address, block, transaction) as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// `sworn chain register`.
#[derive(Debug, Args)]
pub(crate) struct RegisterArgs {
    /// JSON-RPC endpoint of the chain.
    #[arg(long, env = "SWORN_RPC")]
    rpc: String,
    /// File holding the registry owner's private key in hex (mode 0600 required).
    #[arg(long, env = "SWORN_CHAIN_KEY")]
    chain_key: PathBuf,
    /// SwornAnchor's address.
    #[arg(long, env = "SWORN_CONTRACT")]
    contract: String,
    /// The log's origin, e.g. `sworn.example/prod-eu-1`.
    #[arg(long, env = "SWORN_ORIGIN")]
    origin: String,
    /// The log's Ed25519 key file (its public half is registered).
    #[arg(long)]
    log_key: PathBuf,
    /// Address allowed to anchor; defaults to the chain key's own address.
    #[arg(long)]
    submitter: Option<String>,
}

/// Runs a chain subcommand and returns what to print.
pub(crate) fn run(command: &ChainCommand) -> Result<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        match command {
            ChainCommand::Deploy(args) => deploy(args).await,
            ChainCommand::Register(args) => register(args).await,
        }
    })
}

async fn deploy(args: &DeployArgs) -> Result<String> {
    let deployment = anchor::deploy(&args.rpc, &args.chain_key)
        .await
        .with_context(|| format!("deploying SwornAnchor through {}", args.rpc))?;
    if let Some(out) = &args.out {
        write_deployment(out, &deployment)?;
    }
    Ok(format!("{}", deployment.address))
}

async fn register(args: &RegisterArgs) -> Result<String> {
    let contract = Address::from_str(&args.contract)
        .with_context(|| format!("--contract {:?} is not an address", args.contract))?;
    let log_key = LogKey::load(&args.log_key)
        .with_context(|| format!("loading the log key {}", args.log_key.display()))?;
    let submitter = match &args.submitter {
        Some(s) => Address::from_str(s).with_context(|| format!("--submitter {s:?}"))?,
        None => {
            let signer: PrivateKeySigner = anchor::load_chain_key(&args.chain_key)?;
            signer.address()
        }
    };
    let tx = anchor::register_log(
        &args.rpc,
        &args.chain_key,
        contract,
        &args.origin,
        log_key.public_key_bytes(),
        submitter,
    )
    .await
    .with_context(|| format!("registering log {:?} on {contract}", args.origin))?;
    Ok(format!(
        "registered {} (submitter {submitter}) in transaction {tx}",
        args.origin
    ))
}

fn write_deployment(path: &PathBuf, deployment: &Deployment) -> Result<()> {
    let json = serde_json::to_string_pretty(deployment).context("serialising the deployment")?;
    std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
}
