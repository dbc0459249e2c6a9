//! The four commands, as library functions the binary and the tests share. Each returns
//! a report (never exits); `CommandError` is for usage and I/O problems only — anything
//! wrong with the verified material is a failed layer in the report.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::time::Duration;

use alloy::primitives::Address;
use sworn_ledger::anchor::log_id;
use sworn_ledger::checkpoint::Checkpoint;
use sworn_ledger::ijson;
use sworn_ledger::note::parse_note;
use sworn_ledger::small_file::{CappedReadError, read_capped};
use tokio::runtime::Runtime;

use crate::audit::{AuditOptions, AuditOutcome, ChainView, audit_export};
use crate::audit_api_client::{AuditClient, StreamReader};
use crate::bundle::MAX_BUNDLE_BYTES;
use crate::chain::{ChainPins, ChainReader, check_anchor};
use crate::cli::{AuditArgs, ChainArgs, CheckpointArgs, ContentArgs, KeyArgs, ReceiptArgs};
pub use crate::command_error::CommandError;
use crate::receipt_check::unauthenticated_content;
pub use crate::receipt_check::{BundleInputs, verify_bundle, verify_bundle_bytes};
use crate::report::{EXIT_OK, Layer, Outcome, Report};
use crate::state::StateDir;
use crate::trust::load_key;
use crate::watch::{ConsistencyJson, check_checkpoint, checkpoint_input, remember};

/// Largest content file read by `content` (the ledger's own cap on stored content).
const MAX_CONTENT_BYTES: usize = sworn_ledger::store::DEFAULT_MAX_CONTENT_BYTES;

/// Any failure as [`CommandError::Io`], with its message.
fn io(e: impl std::fmt::Display) -> CommandError {
    CommandError::Io(e.to_string())
}

/// Reads `path` (`-` = stdin), refusing more than `cap` bytes.
pub fn read_input(path: &Path, cap: usize) -> Result<Vec<u8>, CommandError> {
    let too_large = || CommandError::Io(format!("{}: larger than {cap} bytes", path.display()));
    if path != Path::new("-") {
        return read_capped(path, cap as u64).map_err(|e| match e {
            CappedReadError::TooLarge { .. } | CappedReadError::GrewPastCap { .. } => too_large(),
            other => CommandError::Io(other.to_string()),
        });
    }
    let mut out = Vec::new();
    std::io::stdin()
        .lock()
        .take(cap as u64 + 1)
        .read_to_end(&mut out)
        .map_err(io)?;
    if out.len() > cap {
        return Err(too_large());
    }
    Ok(out)
}

fn chain_reader(args: &ChainArgs) -> Result<Option<(ChainReader, ChainPins)>, CommandError> {
    let (Some(rpc), Some(contract)) = (&args.rpc, &args.contract) else {
        return Ok(None);
    };
    let address: Address = contract
        .parse()
        .map_err(|e| CommandError::Usage(format!("--contract {contract:?}: {e}")))?;
    let reader = ChainReader::new(rpc, address, Duration::from_secs(args.rpc_timeout.max(1)))
        .map_err(|e| CommandError::Usage(e.to_string()))?;
    Ok(Some((
        reader,
        ChainPins {
            chain_id: args.chain_id,
            from_block: args.from_block,
        },
    )))
}

fn server(args: &crate::cli::ServerArgs) -> Result<Option<AuditClient>, CommandError> {
    args.server
        .as_deref()
        .map(|url| AuditClient::new(url, args.api_key.clone()).map_err(io))
        .transpose()
}

/// A new runtime for the chain and server calls (the audit itself is synchronous).
pub fn runtime() -> Result<Runtime, CommandError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io)
}

/// Layers the `receipt` command evaluates, the only ones `--require` may name.
const RECEIPT_LAYERS: [Layer; 7] = [
    Layer::Bundle,
    Layer::Signature,
    Layer::Commitment,
    Layer::Inclusion,
    Layer::Checkpoint,
    Layer::Anchor,
    Layer::Finality,
];

/// `sworn-verify receipt`.
pub fn receipt(args: &ReceiptArgs, rt: &Runtime) -> Result<Report, CommandError> {
    // Flags first: a `--require` the command cannot honour is a usage error, before any
    // input is read or any server asked.
    let required: Vec<Layer> = args
        .require
        .iter()
        .map(|name| match Layer::from_name(name) {
            Some(layer) if RECEIPT_LAYERS.contains(&layer) => Ok(layer),
            Some(_) => Err(CommandError::Usage(format!(
                "--require: the receipt command does not evaluate the {name:?} layer"
            ))),
            None => Err(CommandError::Usage(format!(
                "--require: unknown layer {name:?}"
            ))),
        })
        .collect::<Result<_, _>>()?;
    let bytes = match (&args.request_id, server(&args.server)?) {
        (Some(id), Some(client)) => rt.block_on(client.receipt(id)).map_err(io)?,
        _ => {
            let path = args.file.as_deref().ok_or_else(|| {
                CommandError::Usage("a bundle FILE or --request-id is needed".into())
            })?;
            read_input(path, MAX_BUNDLE_BYTES)?
        }
    };
    let chain = chain_reader(&args.chain)?;
    let inputs = BundleInputs {
        bytes: &bytes,
        request_id: args.request_id.as_deref(),
        ..BundleInputs::default()
    };
    let mut report = verify_bundle(&inputs, &args.key, chain.as_ref(), rt)?;
    for layer in required {
        report.require(layer);
    }
    Ok(report)
}

/// `sworn-verify content`.
pub fn content(args: &ContentArgs, rt: &Runtime) -> Result<Report, CommandError> {
    let bytes = read_input(&args.receipt, MAX_BUNDLE_BYTES)?;
    let prompt = read_input(&args.prompt, MAX_CONTENT_BYTES)?;
    let response = read_input(&args.response, MAX_CONTENT_BYTES)?;
    let format = (args.response_format.as_ref())
        .map(|path| read_input(path, MAX_CONTENT_BYTES))
        .transpose()?;
    let tools = (args.tools.as_ref())
        .map(|path| read_input(path, MAX_CONTENT_BYTES))
        .transpose()?;
    let disclosed = Disclosed {
        prompt: &prompt,
        response: &response,
        response_format: format.as_deref(),
        tools: tools.as_deref(),
    };
    content_of(&bytes, disclosed, args.key.as_deref(), rt)
}

/// What an auditor discloses beside a receipt for `content`.
#[derive(Debug, Clone, Copy)]
pub struct Disclosed<'a> {
    /// The prompt's canonical bytes.
    pub prompt: &'a [u8],
    /// The answer text's bytes.
    pub response: &'a [u8],
    /// The request's `response_format`, canonical bytes, when it had one.
    pub response_format: Option<&'a [u8]>,
    /// The tools offered, canonical bytes, when there were any.
    pub tools: Option<&'a [u8]>,
}

/// The content check on bytes already read. Without a key the receipt is not
/// authenticated (said so), and no erasure can be believed.
pub fn content_of(
    bundle_bytes: &[u8],
    disclosed: Disclosed<'_>,
    key: Option<&str>,
    rt: &Runtime,
) -> Result<Report, CommandError> {
    let inputs = BundleInputs {
        bytes: bundle_bytes,
        prompt: Some(disclosed.prompt),
        response: Some(disclosed.response),
        response_format: disclosed.response_format,
        tools: disclosed.tools,
        request_id: None,
    };
    let mut report = match key {
        Some(key) => {
            let key_args = KeyArgs {
                key: Some(key.to_string()),
                from_chain: false,
                origin: None,
            };
            verify_bundle(&inputs, &key_args, None, rt)?
        }
        None => unauthenticated_content(&inputs),
    };
    report.subject = "content".into();
    Ok(report)
}

/// `sworn-verify audit`.
pub fn audit(args: &AuditArgs, rt: &Runtime) -> Result<AuditOutcome, CommandError> {
    let key = load_key(&args.key).map_err(|e| CommandError::Usage(e.to_string()))?;
    let chain = chain_reader(&args.chain)?;
    let view = match &chain {
        None => None,
        Some((reader, pins)) => Some(
            rt.block_on(chain_view(reader, pins, key.origin()))
                .map_err(io)?,
        ),
    };
    let mut options = AuditOptions {
        progress: !args.output.json,
        ..AuditOptions::default()
    };
    if let Some(t) = args.threads {
        options.threads = t.max(1);
    }
    if let Some(client) = server(&args.server)? {
        if args.export.is_none() {
            let response = rt.block_on(client.export()).map_err(io)?;
            let reader = StreamReader::new(rt, response);
            return audit_export(&key, reader, view.as_ref(), &options)
                .map(with_peak_memory)
                .map_err(io);
        }
    }
    let path = args
        .export
        .as_deref()
        .ok_or_else(|| CommandError::Usage("an EXPORT file or --server is needed".into()))?;
    let input: Box<dyn BufRead> = if path == Path::new("-") {
        Box::new(BufReader::with_capacity(1 << 20, std::io::stdin().lock()))
    } else {
        let file = std::fs::File::open(path)
            .map_err(|e| CommandError::Io(format!("{}: {e}", path.display())))?;
        Box::new(BufReader::with_capacity(1 << 20, file))
    };
    audit_export(&key, input, view.as_ref(), &options)
        .map(with_peak_memory)
        .map_err(io)
}

/// Adds this process's peak resident memory (Linux `VmHWM`) to an audit's facts, so an
/// auditor sees what a streaming audit of their log's size costs.
fn with_peak_memory(mut outcome: AuditOutcome) -> AuditOutcome {
    if let Some(kib) = peak_rss_kib() {
        outcome
            .report
            .fact("peak memory", format!("{kib} KiB resident"));
        outcome.summary.peak_rss_kib = Some(kib);
    }
    outcome
}

/// Peak resident set size of this process in KiB, where `/proc` tells it.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Everything the chain says about `origin`'s anchors.
pub async fn chain_view(
    reader: &ChainReader,
    pins: &ChainPins,
    origin: &str,
) -> Result<ChainView, crate::chain::ReadError> {
    let chain_id = reader.chain_id().await?;
    if let Some(pinned) = pins.chain_id {
        if pinned != chain_id {
            return Err(crate::chain::ReadError::Config {
                reason: format!("the endpoint is chain {chain_id}, the pinned chain is {pinned}"),
            });
        }
    }
    if !reader.has_code().await? {
        return Err(crate::chain::ReadError::Config {
            reason: format!(
                "no contract code at {} on chain {chain_id}",
                reader.contract()
            ),
        });
    }
    let events = reader
        .anchored_events(log_id(origin), None, pins.from_block)
        .await?;
    let mut noncanonical = Vec::new();
    for e in &events {
        if reader.canonical_hash(e.block_number).await? != Some(e.block_hash) {
            noncanonical.push(e.seq);
        }
    }
    Ok(ChainView {
        events,
        noncanonical,
        finalized: reader.finalized_number().await?,
        description: format!("chain id {chain_id}, contract {}", reader.contract()),
    })
}

/// `sworn-verify checkpoint`.
pub fn checkpoint(args: &CheckpointArgs, rt: &Runtime) -> Result<Report, CommandError> {
    let key = load_key(&args.key).map_err(|e| CommandError::Usage(e.to_string()))?;
    let client = server(&args.server)?;
    let text = match (&args.file, &client) {
        (Some(path), _) => read_input(path, MAX_BUNDLE_BYTES)?,
        (None, Some(c)) => rt.block_on(c.checkpoint()).map_err(io)?,
        (None, None) => {
            return Err(CommandError::Usage(
                "a checkpoint FILE or --server is needed".into(),
            ));
        }
    };
    let mut report = Report::new("checkpoint");
    let input = match checkpoint_input(&text) {
        Ok(input) => input,
        Err(reason) => {
            report.set(Layer::Checkpoint, true, Outcome::Failed(reason));
            return Ok(report);
        }
    };
    let note = input.note.clone();
    let state = StateDir::new(args.state_dir.clone().unwrap_or_else(StateDir::default_dir));
    let proof_bytes = match (&args.consistency, &client) {
        (Some(path), _) => Some(read_input(path, MAX_BUNDLE_BYTES)?),
        (None, Some(c)) => {
            // Ask the server for a proof from the remembered size to the new one.
            let seen = state.load(key.origin()).map_err(io)?;
            let size = parse_note(&note)
                .ok()
                .and_then(|n| Checkpoint::parse_text(&n.text).ok())
                .map(|c| c.size);
            match (seen, size) {
                (Some(s), Some(n)) if n > s.size => {
                    Some(rt.block_on(c.consistency(s.size, n)).map_err(io)?)
                }
                _ => None,
            }
        }
        _ => None,
    };
    let proof: Option<ConsistencyJson> = match proof_bytes {
        None => None,
        Some(b) => match ijson::parse_as(&b) {
            Ok(p) => Some(p),
            Err(e) => {
                report.set(
                    Layer::Consistency,
                    true,
                    Outcome::Failed(format!("consistency proof is malformed: {e}")),
                );
                return Ok(report);
            }
        },
    };
    let mut signed =
        check_checkpoint(&note, &key, &state, proof.as_ref(), &mut report).map_err(io)?;
    if let (Some(section), Some(verified)) = (&input.section, &signed) {
        let wrong = section.disagreements(&verified.checkpoint);
        if !wrong.is_empty() {
            report.set(
                Layer::Checkpoint,
                true,
                Outcome::Failed(format!(
                    "the JSON's unsigned {} disagree(s) with the signed note",
                    wrong.join(", ")
                )),
            );
            signed = None;
        }
    }
    match chain_reader(&args.chain)? {
        None => {
            report.set(
                Layer::Anchor,
                false,
                Outcome::Skipped("no --rpc/--contract".into()),
            );
            report.set(
                Layer::Finality,
                false,
                Outcome::Skipped("no --rpc/--contract".into()),
            );
        }
        Some((reader, pins)) => {
            rt.block_on(check_anchor(
                &reader,
                &pins,
                key.origin(),
                signed.as_ref(),
                None,
                &mut report,
            ));
        }
    }
    // Only now, with every layer in, may this checkpoint become the one remembered.
    if let Some(signed) = &signed {
        if report.exit_code() == EXIT_OK {
            remember(&state, signed).map_err(io)?;
            report.fact(
                "remembered",
                format!("size {} as last accepted", signed.checkpoint.size),
            );
        } else {
            report.fact("remembered", "nothing: not every required layer passed");
        }
    }
    Ok(report)
}
