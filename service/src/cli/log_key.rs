//! `sworn log-key rotate` and `sworn log-key history`: retire the log's signing key for a
//! new one, on the chain and in the store, on a stopped server (docs/OPERATIONS.md,
//! "Log-key rotation").
//!
//! The rotation takes effect at a boundary both sides can name: the old key's last
//! checkpoint covers every entry and is anchored, final, under seq `L`; the new key signs
//! entries from that tree size on and checkpoints from seq `L + 1` on. The steps, each safe
//! to crash after:
//!
//! 1. Open the store with the old key (holding sled's lock: no server can start), check
//!    that its key history is the chain's.
//! 2. Seal a checkpoint of every entry and anchor it, following it to finality, as the
//!    anchorer of `sworn serve` would.
//! 3. Record the rotation as *pending* in the store (flushed). From here the store refuses
//!    to serve (`StoreError::KeyRotationPending`) until step 5 or `--abort`.
//! 4. Send `rotateKey(logId, newKey, L + 1)` from the log admin's account, unless the chain
//!    already holds exactly that, and wait until it is final.
//! 5. Move the pending rotation into the store's key history (one flushed batch).
//!
//! A crash after 3 leaves a store that does not serve, with a message naming the command
//! that finishes (the same one again: it resumes at 4 and skips the transaction if the chain
//! holds it) or cancels it (`--abort`, refused once the chain holds the rotation). The log
//! never signs with a key the chain does not list for it, and never with a retired one.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use anyhow::{Context, Result, bail};
use sworn_ledger::anchor::{
    AnchorConfig, AnchorStore, Anchorer, ChainReader, StepOutcome, chain_keys, compare_with_chain,
    load_chain_key, log_id, rotate_key_with,
};
use sworn_ledger::key_history::KeyEpoch;
use sworn_ledger::keys::LogKey;
use sworn_ledger::store::{Ledger, LedgerConfig};
use sworn_service::lifecycle::LEDGER_DIR;

/// Deadline of each chain read.
const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between polls of the chain while waiting for an anchor or finality.
const POLL: Duration = Duration::from_millis(500);

/// Log-key operations.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum LogKeyCommand {
    /// Retire the log's key for a new one, on the chain and in the store (server stopped).
    Rotate(RotateArgs),
    /// Print the log's key history (the JSON `sworn-verify --key` reads), server stopped.
    History(StoreArgs),
}

/// Which store, opened with which key.
#[derive(Debug, clap::Args)]
pub(crate) struct StoreArgs {
    /// The data directory of the stopped `sworn serve`.
    #[arg(long, env = "SWORN_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// The log's origin (as given to `sworn serve`).
    #[arg(long, env = "SWORN_ORIGIN", default_value = "sworn.local/dev")]
    origin: String,
    /// The log's current key file [default: DATA_DIR/log.key].
    #[arg(long, env = "SWORN_LOG_KEY")]
    log_key: Option<PathBuf>,
}

/// `sworn log-key rotate`.
#[derive(Debug, clap::Args)]
pub(crate) struct RotateArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The new key file (create it with `sworn keygen --out FILE`).
    #[arg(long)]
    new_key: PathBuf,
    /// JSON-RPC endpoint of the chain.
    #[arg(long, env = "SWORN_RPC")]
    rpc: String,
    /// SwornAnchor's address.
    #[arg(long, env = "SWORN_CONTRACT")]
    contract: String,
    /// The submitter's key file (hex, mode 0600): anchors the old key's last checkpoint.
    #[arg(long, env = "SWORN_CHAIN_KEY")]
    chain_key: PathBuf,
    /// The log admin's key file, which sends `rotateKey` [default: --chain-key].
    #[arg(long)]
    admin_key: Option<PathBuf>,
    /// Cancel a rotation that was begun and whose transaction the chain does not hold.
    #[arg(long)]
    abort: bool,
    /// Give up waiting for anchors and finality after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_s: u64,
}

/// Runs a log-key subcommand and returns what to print.
pub(crate) fn run(command: &LogKeyCommand) -> Result<String> {
    match command {
        LogKeyCommand::History(args) => {
            let ledger = open(args, false)?.0;
            Ok(ledger.key_history().to_json())
        }
        LogKeyCommand::Rotate(args) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("starting the async runtime")?
            .block_on(rotate(args)),
    }
}

fn open(args: &StoreArgs, allow_pending: bool) -> Result<(Ledger, PathBuf)> {
    let key_path = args
        .log_key
        .clone()
        .unwrap_or_else(|| args.data_dir.join("log.key"));
    let key = LogKey::load(&key_path)
        .with_context(|| format!("loading the log key {}", key_path.display()))?;
    let mut config = LedgerConfig::new(args.data_dir.join(LEDGER_DIR), &args.origin, key);
    config.sealer = false;
    config.allow_pending_key_rotation = allow_pending;
    let ledger = Ledger::open(config).with_context(|| {
        format!(
            "opening the ledger in {} (the server must be stopped)",
            args.data_dir.display()
        )
    })?;
    Ok((ledger, key_path))
}

async fn rotate(args: &RotateArgs) -> Result<String> {
    let origin = &args.store.origin;
    let contract = Address::from_str(&args.contract)
        .with_context(|| format!("--contract {:?} is not an address", args.contract))?;
    let (ledger, _) = open(&args.store, true)?;
    let new_key = LogKey::load(&args.new_key)
        .with_context(|| format!("loading the new key {}", args.new_key.display()))?
        .pinned(origin)?;
    let reader = ChainReader::new(&args.rpc, contract, RPC_TIMEOUT)?;
    let id = log_id(origin);
    let deadline = Instant::now() + Duration::from_secs(args.timeout_s);
    let on_chain = chain_keys(&reader, id)
        .await?
        .with_context(|| format!("log {origin:?} is not registered on {contract}"))?;

    let pending = ledger.pending_key_rotation()?;
    if args.abort {
        return abort(&ledger, pending, &on_chain);
    }
    let pending = match pending {
        Some(p) if p.key != new_key => bail!(
            "a rotation to key id {} is pending; run this command with that --new-key to finish \
             it, or with --abort to cancel it",
            hex::encode(p.key.key_id())
        ),
        Some(p) => {
            eprintln!(
                "sworn: resuming the rotation to key id {} begun earlier (from tree size {}, seq {})",
                hex::encode(p.key.key_id()),
                p.from_size,
                p.from_seq
            );
            p
        }
        None => {
            compare_with_chain(ledger.key_history(), &on_chain).context(
                "refusing to rotate: the store and the chain already disagree about the log's keys",
            )?;
            if ledger.key_history().current() == &new_key {
                bail!("--new-key is the log's current key");
            }
            let seq = drain(&ledger, args, contract, &reader, deadline).await?;
            let epoch = ledger.begin_key_rotation(&new_key, seq + 1)?;
            eprintln!(
                "sworn: rotation recorded as pending: key id {} from tree size {}, seq {}",
                hex::encode(epoch.key.key_id()),
                epoch.from_size,
                epoch.from_seq
            );
            epoch
        }
    };

    let tx = record_on_chain(&pending, args, contract, &reader, deadline).await?;
    let history = ledger.complete_key_rotation()?;
    let on_chain = chain_keys(&reader, id).await?.unwrap_or_default();
    compare_with_chain(&history, &on_chain)
        .context("the rotation is recorded, but the chain's keys read back differently")?;
    Ok(format!(
        "rotated log {origin:?} to key id {} from tree size {} (anchor seq {}){}.\n\
         Start `sworn serve` with --log-key {} from now on; keep the old key file offline.\n\
         Key history (for `sworn-verify --key`):\n{}",
        hex::encode(pending.key.key_id()),
        pending.from_size,
        pending.from_seq,
        tx.map(|t| format!(", transaction {t}")).unwrap_or_default(),
        args.new_key.display(),
        history.to_json()
    ))
}

/// `--abort`: drops a pending rotation the chain does not hold.
fn abort(
    ledger: &Ledger,
    pending: Option<KeyEpoch>,
    on_chain: &[sworn_ledger::anchor::ChainKey],
) -> Result<String> {
    let Some(p) = pending else {
        bail!("no rotation is pending: nothing to abort");
    };
    if holds(on_chain, &p) {
        bail!(
            "the chain already records the rotation to key id {} from seq {}: it cannot be \
             undone; finish it by running this command again without --abort",
            hex::encode(p.key.key_id()),
            p.from_seq
        );
    }
    ledger.abort_key_rotation()?;
    Ok(format!(
        "aborted the pending rotation to key id {}; the log keeps its key",
        hex::encode(p.key.key_id())
    ))
}

/// Whether the chain's newest key is `epoch`'s, from its seq.
fn holds(on_chain: &[sworn_ledger::anchor::ChainKey], epoch: &KeyEpoch) -> bool {
    on_chain.last().is_some_and(|k| {
        k.public_key == epoch.key.public_key_bytes() && k.from_seq == epoch.from_seq
    })
}

/// Seals every entry and anchors that checkpoint, final; returns its seq (the chain's
/// newest, holding the whole log).
async fn drain(
    ledger: &Ledger,
    args: &RotateArgs,
    contract: Address,
    reader: &ChainReader,
    deadline: Instant,
) -> Result<u64> {
    let size = ledger.size();
    if size == 0 {
        bail!("the log is empty: nothing was signed with its key, so nothing needs rotating");
    }
    ledger.seal_now()?;
    let signer = load_chain_key(&args.chain_key)?;
    let config = AnchorConfig::new(&args.rpc, contract, ledger.origin());
    let store = Arc::new(ledger.clone());
    let mut anchorer = Anchorer::new(config, signer, Arc::clone(&store))?;
    eprintln!("sworn: anchoring the old key's last checkpoint (tree size {size}) to finality");
    loop {
        let done = store
            .last_record()?
            .filter(|r| r.state.is_finalized() && r.tree_size == size);
        if let Some(record) = done {
            let latest = reader.latest(log_id(ledger.origin())).await?;
            if latest.seq != record.seq || latest.tree_size != size {
                bail!(
                    "the chain's newest anchor is seq {} (size {}), not the final seq {} of size \
                     {size} just recorded",
                    latest.seq,
                    latest.tree_size,
                    record.seq
                );
            }
            return Ok(record.seq);
        }
        if Instant::now() > deadline {
            bail!("the last checkpoint was not anchored and final within --timeout-s");
        }
        match anchorer.step().await {
            Ok(StepOutcome::Refused { .. }) => bail!(
                "the contract refused to anchor the log's last checkpoint: {:?}",
                anchorer.subscribe().borrow().last_error
            ),
            Ok(_) => {}
            Err(e) if e.is_transient() => eprintln!("sworn: chain: {e}; retrying"),
            Err(e) => return Err(e).context("anchoring the last checkpoint"),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Makes the chain hold `epoch`, final: sends `rotateKey` unless it already does. Returns
/// the transaction sent, if one was.
async fn record_on_chain(
    epoch: &KeyEpoch,
    args: &RotateArgs,
    contract: Address,
    reader: &ChainReader,
    deadline: Instant,
) -> Result<Option<alloy::primitives::B256>> {
    let id = log_id(epoch.key.name());
    let mut sent = None;
    loop {
        let on_chain = chain_keys(reader, id).await?.unwrap_or_default();
        if holds(&on_chain, epoch) {
            let last = on_chain.last().map(|k| k.from_size);
            if last != Some(Some(epoch.from_size)) {
                bail!(
                    "the chain records the new key from seq {}, but its boundary is tree size \
                     {:?}, not {}",
                    epoch.from_seq,
                    last.flatten(),
                    epoch.from_size
                );
            }
            // Final: the block the chain is at now is final, so is the rotation below it.
            let now = reader.latest_block_number().await?;
            wait_final(reader, now, deadline).await?;
            if holds(&chain_keys(reader, id).await?.unwrap_or_default(), epoch) {
                return Ok(sent);
            }
            continue; // reorged out: send again
        }
        if on_chain.len() > epoch_index(epoch, &on_chain) {
            bail!("the chain records a key rotation this store does not know; not sending another");
        }
        if Instant::now() > deadline {
            bail!("the rotation was not recorded on chain within --timeout-s");
        }
        let admin = args.admin_key.as_deref().unwrap_or(&args.chain_key);
        let signer = load_chain_key(admin)?;
        let (tx, block) = rotate_key_with(
            &args.rpc,
            signer,
            contract,
            epoch.key.name(),
            epoch.key.public_key_bytes(),
            epoch.from_seq,
        )
        .await
        .context("sending rotateKey")?;
        eprintln!(
            "sworn: rotateKey sent in transaction {tx} (block {block}); waiting for finality"
        );
        sent = Some(tx);
    }
}

/// How many chain keys precede `epoch` if the chain is as the store expects: the keys
/// from before it.
fn epoch_index(epoch: &KeyEpoch, on_chain: &[sworn_ledger::anchor::ChainKey]) -> usize {
    on_chain
        .iter()
        .take_while(|k| k.from_seq < epoch.from_seq)
        .count()
}

async fn wait_final(reader: &ChainReader, block: u64, deadline: Instant) -> Result<()> {
    loop {
        if reader.finalized_number().await?.is_some_and(|f| f >= block) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("block {block} was not final within --timeout-s");
        }
        tokio::time::sleep(POLL).await;
    }
}
