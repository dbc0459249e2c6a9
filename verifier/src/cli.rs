//! The command line (DESIGN §8). Flags shared by several commands are flattened groups.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Verify Sworn receipts, checkpoints and whole logs, layer by layer, trusting only a
/// pinned key, a contract address and an RPC endpoint.
///
/// Exit status: 0 every required layer ok; 1 a layer failed; 2 usage or I/O error;
/// 3 nothing failed but something is pending (e.g. not yet final).
#[derive(Debug, Parser)]
#[command(name = "sworn-verify", version)]
pub struct Cli {
    /// What to verify.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Verify one receipt bundle: signature, inclusion, checkpoint, anchor, finality.
    Receipt(ReceiptArgs),
    /// Check disclosed prompt/response content against a receipt's commitments.
    Content(ContentArgs),
    /// Audit a whole NDJSON export: every entry, checkpoint and anchor.
    Audit(AuditArgs),
    /// Verify a checkpoint and its consistency with the last one seen for its origin.
    Checkpoint(CheckpointArgs),
}

/// The pinned trust root.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// The log's verifier key (`origin+keyid+base64`) or a file holding it; pins the
    /// origin too.
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// Take the keys from the contract (every key it records, `keyAt`) instead; needs --origin, --rpc and
    /// --contract.
    #[arg(long, conflicts_with = "key", requires_all = ["origin", "rpc", "contract"])]
    pub from_chain: bool,
    /// The log's origin (with --from-chain).
    #[arg(long, value_name = "ORIGIN")]
    pub origin: Option<String>,
}

/// Where the chain is.
#[derive(Debug, Clone, Args)]
pub struct ChainArgs {
    /// JSON-RPC endpoint of the chain the log anchors to.
    #[arg(long, value_name = "URL", requires = "contract")]
    pub rpc: Option<String>,
    /// The pinned SwornAnchor contract address.
    #[arg(long, value_name = "ADDR", requires = "rpc")]
    pub contract: Option<String>,
    /// The pinned chain id; the endpoint must report it.
    #[arg(long, value_name = "ID")]
    pub chain_id: Option<u64>,
    /// First block searched for events (the contract's deploy block).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub from_block: u64,
    /// Seconds to wait for each RPC answer.
    #[arg(long, value_name = "S", default_value_t = 20)]
    pub rpc_timeout: u64,
}

/// A Sworn server to fetch from.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Base URL of a Sworn server (e.g. http://127.0.0.1:8080).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// API key for the server's audit routes (the export needs an admin key).
    #[arg(
        long,
        env = "SWORN_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub api_key: Option<String>,
}

/// Output format.
#[derive(Debug, Clone, Copy, Args)]
pub struct OutputArgs {
    /// Machine-readable JSON on stdout instead of the human report.
    #[arg(long)]
    pub json: bool,
}

/// `sworn-verify receipt`.
#[derive(Debug, Clone, Args)]
pub struct ReceiptArgs {
    /// The bundle file (`-` for stdin); or use --request-id with --server.
    #[arg(value_name = "FILE", required_unless_present = "request_id")]
    pub file: Option<PathBuf>,
    /// Fetch the bundle of this request id from --server.
    #[arg(long, value_name = "ID", requires = "server", conflicts_with = "file")]
    pub request_id: Option<String>,
    /// Layers that must be ok (comma-separated), on top of those whose inputs are given.
    #[arg(long, value_delimiter = ',', value_name = "LAYERS")]
    pub require: Vec<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub key: KeyArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub chain: ChainArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub server: ServerArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub output: OutputArgs,
}

/// `sworn-verify content`.
#[derive(Debug, Clone, Args)]
pub struct ContentArgs {
    /// The receipt or bundle file (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub receipt: PathBuf,
    /// The prompt content (the canonical messages array or prompt string).
    #[arg(long, value_name = "FILE")]
    pub prompt: PathBuf,
    /// The response content.
    #[arg(long, value_name = "FILE")]
    pub response: PathBuf,
    /// The request's `response_format` (its canonical JSON bytes): checked against the
    /// receipt's `response_format_sha256`, and the answer against it (valid JSON of that
    /// shape, when it finished with `stop`).
    #[arg(long, value_name = "FILE")]
    pub response_format: Option<PathBuf>,
    /// The tools offered with the request (the canonical JSON of its `{parallel_tool_calls,
    /// tool_choice, tools}` as applied): checked against the receipt's `tools_sha256`, and
    /// the answer's tool calls against them (offered functions, arguments valid under their
    /// schemas), when it finished with `stop`.
    #[arg(long, value_name = "FILE")]
    pub tools: Option<PathBuf>,
    /// The log's verifier key; without it the receipt's signature is not checked.
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub output: OutputArgs,
}

/// `sworn-verify audit`.
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// The export file (`-` for stdin); or use --server.
    #[arg(value_name = "EXPORT", required_unless_present = "server")]
    pub export: Option<PathBuf>,
    /// The log's verifier key or a file holding it.
    #[arg(long, value_name = "KEY")]
    pub key: String,
    /// Threads that verify signatures, the auditing thread among them (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub chain: ChainArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub server: ServerArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub output: OutputArgs,
}

/// `sworn-verify checkpoint`.
#[derive(Debug, Clone, Args)]
pub struct CheckpointArgs {
    /// The checkpoint: note text or `/v1/audit/checkpoint` JSON (`-` for stdin); or use
    /// --server.
    #[arg(value_name = "FILE", required_unless_present = "server")]
    pub file: Option<PathBuf>,
    /// The log's verifier key or a file holding it.
    #[arg(long, value_name = "KEY")]
    pub key: String,
    /// Consistency proof JSON from the last seen size to this one.
    #[arg(long, value_name = "FILE")]
    pub consistency: Option<PathBuf>,
    /// Where last-seen checkpoints are kept (one file per origin).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub chain: ChainArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub server: ServerArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub output: OutputArgs,
}
