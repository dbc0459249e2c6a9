//! The four commands, as library functions the binary and the tests share. Each returns
//! a report (never exits); `CommandError` is for usage and I/O problems only — anything
//! wrong with the verified material is a failed layer in the report.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::time::Duration;

use alloy::primitives::{Address, B256};
use sworn_ledger::anchor::log_id;
use sworn_ledger::checkpoint::Checkpoint;
use sworn_ledger::entry::ReceiptJson;
use sworn_ledger::keys::PinnedKey;
use sworn_ledger::note::parse_note;
use tokio::runtime::Runtime;

use crate::audit::{AuditOptions, AuditOutcome, ChainView, audit_export};
use crate::bundle::{Bundle, MAX_BUNDLE_BYTES};
use crate::chain::{ChainPins, ChainReader, check_anchor};
use crate::cli::{AuditArgs, ChainArgs, CheckpointArgs, ContentArgs, KeyArgs, ReceiptArgs};
use crate::content::{Disclosure, check_content};
use crate::offline::check_offline;
use crate::report::{Layer, Outcome, Report};
use crate::server::{AuditClient, StreamReader};
use crate::state::StateDir;
use crate::trust::load_key;
use crate::watch::{ConsistencyJson, check_checkpoint, note_from_input};

/// Largest content file read by `content` (the ledger's own cap on stored content).
const MAX_CONTENT_BYTES: usize = sworn_ledger::store::DEFAULT_MAX_CONTENT_BYTES;

/// A problem with the command itself: bad flags, unreadable files, unreachable services.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The flags do not make sense together.
    #[error("usage: {0}")]
    Usage(String),
    /// A file, the server or the chain could not be read.
    #[error("{0}")]
    Io(String),
}

fn io(e: impl std::fmt::Display) -> CommandError {
    CommandError::Io(e.to_string())
}

/// Reads `path` (`-` = stdin), refusing more than `cap` bytes.
pub fn read_input(path: &Path, cap: usize) -> Result<Vec<u8>, CommandError> {
    let mut out = Vec::new();
    let limit = cap as u64 + 1;
    if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(limit)
            .read_to_end(&mut out)
            .map_err(io)?;
    } else {
        std::fs::File::open(path)
            .and_then(|f| f.take(limit).read_to_end(&mut out))
            .map_err(|e| CommandError::Io(format!("{}: {e}", path.display())))?;
    }
    if out.len() > cap {
        return Err(CommandError::Io(format!(
            "{}: larger than {cap} bytes",
            path.display()
        )));
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

/// `sworn-verify receipt`.
pub fn receipt(args: &ReceiptArgs, rt: &Runtime) -> Result<Report, CommandError> {
    let bytes = match (&args.request_id, server(&args.server)?) {
        (Some(id), Some(client)) => rt.block_on(client.receipt(id)).map_err(io)?,
        _ => {
            let path = args.file.as_deref().ok_or_else(|| {
                CommandError::Usage("a bundle FILE or --request-id is needed".into())
            })?;
            read_input(path, MAX_BUNDLE_BYTES)?
        }
    };
    let required: Vec<Layer> = args
        .require
        .iter()
        .map(|name| {
            Layer::from_name(name)
                .ok_or_else(|| CommandError::Usage(format!("--require: unknown layer {name:?}")))
        })
        .collect::<Result<_, _>>()?;
    let chain = chain_reader(&args.chain)?;
    let mut report = verify_bundle_bytes(&bytes, &args.key, chain.as_ref(), rt)?;
    for layer in required {
        report.require(layer);
    }
    Ok(report)
}

/// Verifies a bundle's bytes: the bundle, offline and (with a chain) anchor layers.
pub fn verify_bundle_bytes(
    bytes: &[u8],
    key_args: &KeyArgs,
    chain: Option<&(ChainReader, ChainPins)>,
    rt: &Runtime,
) -> Result<Report, CommandError> {
    let mut report = Report::new("receipt");
    let bundle = match Bundle::parse(bytes) {
        Ok(b) => b,
        Err(e) => {
            report.set(Layer::Bundle, true, Outcome::Failed(e.to_string()));
            return Ok(report);
        }
    };
    let sections: Vec<&str> = [
        Some("receipt"),
        bundle.inclusion.as_ref().map(|_| "inclusion proof"),
        bundle.checkpoint.as_ref().map(|_| "checkpoint"),
        bundle.anchor.as_ref().map(|_| "anchor record"),
    ]
    .into_iter()
    .flatten()
    .collect();
    report.set(
        Layer::Bundle,
        true,
        Outcome::Ok(format!("sections: {}", sections.join(", "))),
    );
    let key = resolve_key(key_args, chain, &bundle, rt)?;
    let offline = check_offline(&bundle, key.as_ref().ok(), &mut report);
    if let Err(reason) = &key {
        report.set(Layer::Signature, true, Outcome::Failed(reason.clone()));
        if bundle.checkpoint.is_some() {
            report.set(Layer::Checkpoint, true, Outcome::Failed(reason.clone()));
        }
    }
    match chain {
        None => {
            report.set(
                Layer::Anchor,
                false,
                Outcome::Skipped("no --rpc/--contract: not checked on chain".into()),
            );
            report.set(
                Layer::Finality,
                false,
                Outcome::Skipped("no --rpc/--contract".into()),
            );
        }
        Some((reader, pins)) => {
            let origin = key
                .as_ref()
                .map(|k| k.name().to_string())
                .unwrap_or_default();
            rt.block_on(check_anchor(
                reader,
                pins,
                &origin,
                offline.checkpoint.as_ref(),
                bundle.anchor.as_ref(),
                &mut report,
            ));
        }
    }
    Ok(report)
}

/// The pinned key: from `--key`, or from the contract for the bundle's anchor seq. An
/// `Err(reason)` is reported as a failed signature layer.
fn resolve_key(
    args: &KeyArgs,
    chain: Option<&(ChainReader, ChainPins)>,
    bundle: &Bundle,
    rt: &Runtime,
) -> Result<Result<PinnedKey, String>, CommandError> {
    if let Some(arg) = &args.key {
        return load_key(arg)
            .map(Ok)
            .map_err(|e| CommandError::Usage(e.to_string()));
    }
    if !args.from_chain {
        return Err(CommandError::Usage(
            "--key or --from-chain is needed".into(),
        ));
    }
    let (Some(origin), Some((reader, pins))) = (&args.origin, chain) else {
        return Err(CommandError::Usage(
            "--from-chain needs --origin, --rpc and --contract".into(),
        ));
    };
    let id = log_id(origin);
    let seq = rt.block_on(seq_for_bundle(reader, pins, id, bundle));
    let seq = match seq {
        Ok(s) => s,
        Err(e) => return Ok(Err(format!("could not take the key from the chain: {e}"))),
    };
    Ok(match rt.block_on(reader.key_for_seq(id, seq)) {
        Ok(bytes) => PinnedKey::new(origin, &bytes)
            .map_err(|e| format!("the contract's key for seq {seq}: {e}")),
        Err(e) => Err(format!("could not take the key from the chain: {e}")),
    })
}

/// Which seq's key applies: the bundled anchor record's, else the anchor carrying the
/// bundle's checkpoint, else the next seq to be anchored.
async fn seq_for_bundle(
    reader: &ChainReader,
    pins: &ChainPins,
    id: B256,
    bundle: &Bundle,
) -> Result<u64, crate::chain::ReadError> {
    if let Some(seq) = bundle
        .anchor
        .as_ref()
        .and_then(|a| a.get("seq"))
        .and_then(|s| s.as_u64())
    {
        return Ok(seq);
    }
    if let Some(note) = bundle
        .checkpoint
        .as_ref()
        .and_then(|c| c.get("note"))
        .and_then(|n| n.as_str())
    {
        use sha2::Digest;
        let hash = B256::from(<[u8; 32]>::from(sha2::Sha256::digest(note.as_bytes())));
        let events = reader.anchored_events(id, None, pins.from_block).await?;
        if let Some(e) = events.iter().find(|e| e.checkpoint_hash == hash) {
            return Ok(e.seq);
        }
    }
    Ok(reader.latest(id).await?.seq.saturating_add(1))
}

/// `sworn-verify content`.
pub fn content(args: &ContentArgs, rt: &Runtime) -> Result<Report, CommandError> {
    let bytes = read_input(&args.receipt, MAX_BUNDLE_BYTES)?;
    let prompt = read_input(&args.prompt, MAX_CONTENT_BYTES)?;
    let response = read_input(&args.response, MAX_CONTENT_BYTES)?;
    content_of(&bytes, &prompt, &response, args.key.as_deref(), rt)
}

/// The content check on bytes already read.
pub fn content_of(
    bundle_bytes: &[u8],
    prompt: &[u8],
    response: &[u8],
    key: Option<&str>,
    rt: &Runtime,
) -> Result<Report, CommandError> {
    let key_args = KeyArgs {
        key: key.map(str::to_string),
        from_chain: false,
        origin: None,
    };
    let mut report = if key.is_some() {
        verify_bundle_bytes(bundle_bytes, &key_args, None, rt)?
    } else {
        let mut r = Report::new("content");
        r.set(
            Layer::Signature,
            false,
            Outcome::Skipped("no --key: the receipt itself is not authenticated".into()),
        );
        r
    };
    report.subject = "content".into();
    let receipt: Option<ReceiptJson> = Bundle::parse(bundle_bytes)
        .ok()
        .and_then(|b| serde_json::from_value(b.receipt).ok());
    match receipt {
        Some(r) => check_content(&r, Disclosure { prompt, response }, &mut report),
        None => report.set(
            Layer::Commitment,
            true,
            Outcome::Failed("no readable receipt in the file".into()),
        ),
    }
    Ok(report)
}

/// `sworn-verify audit`.
pub fn audit(args: &AuditArgs, rt: &Runtime) -> Result<AuditOutcome, CommandError> {
    let key = load_key(&args.key).map_err(|e| CommandError::Usage(e.to_string()))?;
    let chain = chain_reader(&args.chain)?;
    let view = match &chain {
        None => None,
        Some((reader, pins)) => Some(
            rt.block_on(chain_view(reader, pins, key.name()))
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
    let note = note_from_input(&String::from_utf8_lossy(&text));
    let state = StateDir::new(args.state_dir.clone().unwrap_or_else(StateDir::default_dir));
    let proof_bytes = match (&args.consistency, &client) {
        (Some(path), _) => Some(read_input(path, MAX_BUNDLE_BYTES)?),
        (None, Some(c)) => {
            // Ask the server for a proof from the remembered size to the new one.
            let seen = state.load(key.name()).map_err(io)?;
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
    let mut report = Report::new("checkpoint");
    let proof: Option<ConsistencyJson> = match proof_bytes {
        None => None,
        Some(b) => match serde_json::from_slice(&b) {
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
    let signed = check_checkpoint(&note, &key, &state, proof.as_ref(), &mut report).map_err(io)?;
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
                key.name(),
                signed.as_ref(),
                None,
                &mut report,
            ));
        }
    }
    Ok(report)
}
