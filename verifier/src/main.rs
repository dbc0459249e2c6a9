//! `sworn-verify`: the auditor's command line.

use clap::Parser;

/// Verify Sworn receipts and logs.
#[derive(Debug, Parser)]
#[command(name = "sworn-verify", version)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}
