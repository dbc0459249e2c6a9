//! `sworn serve` and `sworn keygen`: wiring the configured parts together.
//!
//! Order of start-up: authentication (refuse to start without keys unless told), data
//! directory and log key (created on first start), the listener (answering 503
//! `model_loading` meanwhile), the chain's newest anchor of the log (if anchoring is
//! configured; retried for as long as the chain cannot be reached), the ledger (recovers
//! to its last durable entry) and its comparison with that anchor (a data directory
//! restored from a stale backup, or holding another history, is refused: see
//! [`sworn_ledger::anchor::resume`]), the model (on a blocking thread), the engine
//! thread, the anchorer (if configured), then the routes go live. Order of shutdown
//! (SIGINT/SIGTERM): stop taking generation requests, let in-flight ones finish within the
//! grace period and cut the rest (sworn `cancelled`, their clients still get the
//! receipt), flush the ledger and seal a last checkpoint, join the engine thread, stop the
//! anchorer. A storage fault in the ledger starts the same shutdown at once, with no grace
//! (nothing more can be sworn), and `sworn serve` exits non-zero so its supervisor
//! restarts it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::Address;
use sworn_ledger::anchor::backoff::Backoff;
use sworn_ledger::anchor::{
    AnchorConfig as ChainConfig, Anchorer, AnchorerHandle, BackoffPolicy, ChainReader,
    NewestAnchor, ResumeError, check_extends, load_chain_key, log_id, newest_anchor,
};
use sworn_ledger::keys::LogKey;
use sworn_ledger::store::{Ledger, LedgerConfig};

use crate::api::auth::Auth;
use crate::api::state::{AppState, AppStateParts, ServedModel, SwearMode};
use crate::api::validation::Limits;
use crate::api_keys::KeysFile;
use crate::config::{ServeArgs, ServeConfig};
use crate::engine::runner::{Engine, EngineOptions};
use crate::scheduler::Scheduler;
use crate::scheduler::engine_adapter::EngineGenerator;
use crate::server::{self, ListenOptions, Server};

/// `Retry-After` seconds suggested to clients refused by a full queue.
const OVERLOAD_RETRY_AFTER_S: u64 = 1;

/// The ledger's sled directory inside the data directory (its high-water record lies
/// beside it, `ledger.high-water`).
pub const LEDGER_DIR: &str = "ledger";

/// Deadline for each chain call of the start-up comparison (the anchorer's own default).
const CHAIN_CHECK_RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the server could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The API-keys file could not be loaded.
    #[error(transparent)]
    Keys(#[from] crate::api_keys::KeysError),
    /// A file or directory could not be created or read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The log key could not be created or loaded.
    #[error("log key {path}: {reason}")]
    LogKey {
        /// The key file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The ledger could not be opened.
    #[error("ledger: {0}")]
    Ledger(#[from] sworn_ledger::store::StoreError),
    /// The model could not be loaded.
    #[error("model {path}: {reason}")]
    Model {
        /// The model path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Anchoring could not be set up.
    #[error("anchoring: {reason}")]
    Anchor {
        /// Why.
        reason: String,
    },
    /// The data directory's log does not extend what the chain has anchored of it (an
    /// older backup, or another history): serving from it would fork the anchored log.
    #[error("refusing to start: {refusal}.\nWhat to do: {remedy}")]
    NotTheAnchoredLog {
        /// What the chain and the local log hold.
        refusal: ResumeError,
        /// What the operator can do about it.
        remedy: String,
    },
    /// The listener could not start.
    #[error(transparent)]
    Server(#[from] server::ServerError),
    /// The ledger hit a storage fault while serving; the process stops so that its
    /// supervisor restarts it, and the store proves itself again when it is reopened.
    #[error(
        "the ledger stopped writing after a storage fault ({cause}); exiting so this instance is restarted"
    )]
    LedgerFault {
        /// The fault.
        cause: String,
    },
}

/// `sworn keygen` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct KeygenArgs {
    /// Key file to create (mode 0600); it must not exist.
    #[arg(long)]
    pub out: PathBuf,
    /// Print the public key (hex) of the existing key file instead of creating one.
    #[arg(long)]
    pub show: bool,
}

/// Creates a log key (or reads one with `--show`) and returns its public key in hex.
pub fn keygen(args: &KeygenArgs) -> Result<String, ServeError> {
    let key = if args.show {
        load_log_key(&args.out)?
    } else {
        LogKey::generate_to_file(&args.out).map_err(|e| ServeError::LogKey {
            path: args.out.clone(),
            reason: e.to_string(),
        })?
    };
    Ok(hex::encode(key.public_key_bytes()))
}

fn load_log_key(path: &Path) -> Result<LogKey, ServeError> {
    LogKey::load(path).map_err(|e| ServeError::LogKey {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Resolves `args`, then serves until SIGINT or SIGTERM.
pub fn run(args: ServeArgs) -> Result<(), ServeError> {
    // Operational logs only (never prompt or response text); RUST_LOG overrides the level.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let config = args.resolve()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sworn-api")
        .build()
        .map_err(|source| ServeError::Io {
            path: PathBuf::from("(tokio runtime)"),
            source,
        })?;
    runtime.block_on(serve(config))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ServeError + '_ {
    move |source| ServeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Starts everything `config` names and serves until a shutdown signal.
pub async fn serve(config: ServeConfig) -> Result<(), ServeError> {
    let auth = match &config.api_keys {
        Some(path) => Auth::from_file(&KeysFile::load(path)?),
        None => {
            tracing::warn!(
                "=== --insecure-no-auth: NO AUTHENTICATION. Anyone who can reach {} can generate, read every receipt, export and erase the log. ===",
                config.listen
            );
            eprintln!("WARNING: serving WITHOUT authentication (--insecure-no-auth)");
            Auth::Disabled
        }
    };
    std::fs::create_dir_all(&config.data_dir).map_err(io(&config.data_dir))?;
    std::fs::set_permissions(&config.data_dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io(&config.data_dir))?;
    let log_key = if config.log_key.exists() {
        load_log_key(&config.log_key)?
    } else {
        tracing::info!(path = %config.log_key.display(), "creating the log key");
        LogKey::generate_to_file(&config.log_key).map_err(|e| ServeError::LogKey {
            path: config.log_key.clone(),
            reason: e.to_string(),
        })?
    };
    let connections = server::ConnectionLimits {
        max_connections: server::fit_to_fd_limit(config.connections.max_connections),
        ..config.connections
    };
    let server = Server::start_loading_with(
        ListenOptions {
            addr: config.listen,
            tls: config.tls.clone(),
            allow_plain_http: config.allow_plain_http,
        },
        connections,
    )
    .await?;
    tracing::info!(
        url = %server.url(),
        max_connections = connections.max_connections,
        header_read_timeout_s = connections.header_read_timeout.as_secs(),
        body_read_timeout_s = connections.body_read_timeout.as_secs(),
        keep_alive_timeout_s = connections.keep_alive_timeout.as_secs(),
        "listening; answering 503 until the model is loaded"
    );
    // Read before the ledger opens, so that a refused copy is compared at once and
    // nothing of it is sealed or served. While the chain cannot be reached this waits,
    // answering 503; SIGINT and SIGTERM still end the process (no handler is installed
    // yet, and nothing is open that needs closing).
    let newest = match &config.anchor {
        Some(anchor) => Some(read_newest_anchor(anchor, &config.origin).await?),
        None => {
            tracing::warn!(
                "anchoring is off (--no-anchor): the log is not compared with the chain at start, so a data directory restored from a stale backup is caught only at the next start with anchoring"
            );
            None
        }
    };
    let mut ledger_config =
        LedgerConfig::new(config.data_dir.join(LEDGER_DIR), &config.origin, log_key);
    ledger_config.seal_every_entries = config.seal_every;
    ledger_config.seal_interval = config.seal_interval;
    let ledger = Ledger::open(ledger_config)?;
    tracing::info!(
        origin = ledger.origin(),
        entries = ledger.size(),
        "ledger open"
    );
    if let Some(newest) = &newest {
        // On a refusal the ledger is dropped, not shut down: no last checkpoint is sealed.
        check_against_chain(&ledger, newest.as_ref(), &config.data_dir)?;
    }
    if let Some(anchor) = &config.anchor {
        check_keys_against_chain(anchor, &ledger).await?;
    }

    let model_path = config.model.clone();
    let (slots, weights) = (config.max_batch, config.weights);
    let cuda_graphs = config.cuda_graphs;
    let engine = tokio::task::spawn_blocking(move || {
        let options = EngineOptions {
            slots,
            weights,
            cuda_graphs,
            ..EngineOptions::default()
        };
        Engine::load_on_own_thread(&model_path, &options)
    })
    .await
    .map_err(|e| ServeError::Model {
        path: config.model.clone(),
        reason: e.to_string(),
    })?
    .map_err(|e| ServeError::Model {
        path: config.model.clone(),
        reason: e.to_string(),
    })?;
    let info = engine.info().clone();
    tracing::info!(model = %info.id, device = %info.device, dtype = %info.dtype, context = info.max_ctx, slots = info.slots, "model loaded");
    let libtorch = crate::device::DeviceReport::probe().libtorch;
    let served = ServedModel::of_engine(&config.model_id, &engine, libtorch);
    let mut generator =
        EngineGenerator::new(engine).with_prefill_chunk_tokens(config.prefill_chunk_tokens);
    if let Some(tokens) = config.prefill_batch_tokens {
        generator = generator.with_prefill_batch_tokens(tokens);
    }
    let (scheduler, engine_thread) =
        Scheduler::start(generator, config.queue_capacity).map_err(|e| ServeError::Model {
            path: config.model.clone(),
            reason: format!("cannot start the engine thread: {e}"),
        })?;

    let anchorer = match &config.anchor {
        Some(anchor) => Some(start_anchorer(anchor, &ledger)?),
        None => {
            tracing::warn!(
                "anchoring is off (--no-anchor): checkpoints are signed but not anchored on a chain"
            );
            None
        }
    };
    let state = AppState::new(AppStateParts {
        model: served,
        limits: Limits {
            max_tokens_limit: config.max_tokens_limit,
            default_max_tokens: config.default_max_tokens,
            // Each choice of `n` holds a KV slot of its own.
            max_choices: u8::try_from(config.max_batch).unwrap_or(u8::MAX),
        },
        max_body_bytes: config.max_body_bytes,
        auth,
        scheduler,
        ledger,
        swear_mode: SwearMode::Durable,
        anchor: anchorer.as_ref().map(AnchorerHandle::subscribe),
        overload_retry_after_s: OVERLOAD_RETRY_AFTER_S,
        client_stall_timeout: config.client_stall_timeout,
    });
    // SIGHUP's default action ends the process: listen before anyone is told it serves.
    if let Some(path) = config.api_keys.clone() {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(hangups) => drop(tokio::spawn(reload_keys_on_sighup(
                hangups,
                path,
                state.clone(),
            ))),
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGHUP; API keys reload only at restart")
            }
        }
    }
    server.ready(state.clone());
    tracing::info!(url = %server.url(), "serving");
    eprintln!("sworn: serving {} at {}", config.model_id, server.url());

    let mut faults = state.ledger.watch_fault();
    let fault = tokio::select! {
        () = wait_for_signal() => None,
        fault = faults.wait_for(Option::is_some) => fault.ok().and_then(|f| f.clone()),
    };
    let grace = match &fault {
        None => {
            tracing::info!("shutting down: draining in-flight requests");
            config.shutdown_grace
        }
        Some(cause) => {
            // Nothing can be sworn any more: cut in-flight generations at once (their
            // clients get an error, never an unsworn answer) and exit non-zero.
            tracing::error!(%cause, "ledger fault: not ready; stopping so that this instance is restarted");
            std::time::Duration::ZERO
        }
    };
    server::shutdown(server, state, grace).await;
    // The model's tensors are freed on the engine thread, before the runtime (and then
    // libtorch) is torn down.
    if tokio::task::spawn_blocking(move || engine_thread.join())
        .await
        .is_err()
    {
        tracing::error!("the engine thread could not be joined");
    }
    if let Some(anchorer) = anchorer {
        anchorer.shutdown().await;
    }
    match fault {
        None => Ok(()),
        Some(cause) => Err(ServeError::LedgerFault {
            cause: cause.to_string(),
        }),
    }
}

/// Rereads the API-keys file on every SIGHUP: keys added since are accepted, revoked ones
/// refused from the next request on. A file that no longer loads leaves the keys in force.
async fn reload_keys_on_sighup(
    mut hangups: tokio::signal::unix::Signal,
    path: PathBuf,
    state: Arc<AppState>,
) {
    while hangups.recv().await.is_some() {
        let file = path.clone();
        let loaded = tokio::task::spawn_blocking(move || KeysFile::load(&file)).await;
        let loaded = loaded.unwrap_or_else(|e| {
            Err(crate::api_keys::KeysError::Io {
                path: path.clone(),
                source: std::io::Error::other(e.to_string()),
            })
        });
        match loaded {
            Ok(file) => {
                state.replace_auth(Auth::from_file(&file));
                tracing::info!(path = %path.display(), keys = file.key.len(), "API keys reloaded");
            }
            Err(err) => {
                tracing::error!(error = %err, "API keys not reloaded; the keys in force stay");
            }
        }
    }
}

fn contract_address(anchor: &crate::config::AnchorConfig) -> Result<Address, ServeError> {
    anchor.contract.parse().map_err(|e| ServeError::Anchor {
        reason: format!("--contract {}: {e}", anchor.contract),
    })
}

/// The chain's newest anchor of the log `origin` (`None`: nothing anchored yet). Retries
/// with back-off, logging every failure, for as long as the endpoint cannot be reached:
/// a data directory that was not compared with the chain must not serve, and the explicit
/// way to serve without a chain is `--no-anchor`. Anything else (no contract at the
/// address, storage that contradicts the events) refuses to start.
async fn read_newest_anchor(
    anchor: &crate::config::AnchorConfig,
    origin: &str,
) -> Result<Option<NewestAnchor>, ServeError> {
    let fail = |reason: String| ServeError::Anchor { reason };
    let reader = start_up_reader(anchor)?;
    let mut backoff = Backoff::new(BackoffPolicy::default());
    loop {
        match newest_anchor(&reader, log_id(origin), 0).await {
            Ok(newest) => return Ok(newest),
            Err(e) if e.is_transient() => {
                let delay = backoff.next_delay();
                tracing::warn!(
                    rpc = %anchor.rpc,
                    error = %e,
                    attempts = backoff.failures(),
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "cannot reach the chain to compare the log with its newest anchor; not serving until it answers"
                );
                tokio::time::sleep(delay).await;
            }
            Err(e) => {
                return Err(fail(format!(
                    "cannot compare the log with the chain at {}: {e}",
                    anchor.rpc
                )));
            }
        }
    }
}

/// Refuses a ledger that does not extend `newest`, the chain's newest anchor of it.
fn check_against_chain(
    ledger: &Ledger,
    newest: Option<&NewestAnchor>,
    data_dir: &Path,
) -> Result<(), ServeError> {
    match check_extends(newest, ledger.size(), |size| ledger.root(size)) {
        Ok(standing) => {
            tracing::info!(?standing, "the log extends the chain's newest anchor");
            Ok(())
        }
        Err(ResumeError::Store(e)) => Err(ServeError::Ledger(e)),
        Err(refusal) => {
            let remedy = remedy(&refusal, data_dir);
            Err(ServeError::NotTheAnchoredLog { refusal, remedy })
        }
    }
}

/// A reader of the contract for the start-up comparisons with the chain.
fn start_up_reader(anchor: &crate::config::AnchorConfig) -> Result<ChainReader, ServeError> {
    ChainReader::new(
        &anchor.rpc,
        contract_address(anchor)?,
        CHAIN_CHECK_RPC_TIMEOUT,
    )
    .map_err(|e| ServeError::Anchor {
        reason: e.to_string(),
    })
}

/// Refuses a ledger whose key history is not the one the contract records: a rotation
/// only one side knows (docs/OPERATIONS.md, "Log-key rotation"). An unregistered log has
/// no keys on chain to compare (the anchorer reports that).
async fn check_keys_against_chain(
    anchor: &crate::config::AnchorConfig,
    ledger: &Ledger,
) -> Result<(), ServeError> {
    let fail = |reason: String| ServeError::Anchor { reason };
    let reader = start_up_reader(anchor)?;
    let keys = sworn_ledger::anchor::chain_keys(&reader, log_id(ledger.origin()))
        .await
        .map_err(|e| fail(format!("cannot read the log's keys at {}: {e}", anchor.rpc)))?;
    if let Some(keys) = keys {
        sworn_ledger::anchor::compare_with_chain(ledger.key_history(), &keys).map_err(|e| {
            fail(format!(
                "refusing to start: {e}. What to do: docs/OPERATIONS.md, \"Log-key rotation\""
            ))
        })?;
    }
    Ok(())
}

/// What an operator can do about a refused data directory (docs/OPERATIONS.md).
fn remedy(refusal: &ResumeError, data_dir: &Path) -> String {
    let new_log = "start a new log under a new --origin and log key, registered with \
                   `sworn chain register`, and keep this directory for audit.";
    match refusal {
        ResumeError::Behind {
            anchor, local_size, ..
        } => format!(
            "keep this data directory aside (do not delete it) and restore into {dir} a newer \
             backup that holds at least {n} entries (docs/OPERATIONS.md, \"Restore\"), then \
             start again. If no backup holds {n} entries, entries {local_size}..{n} are lost \
             and this log cannot go on without forking: {new_log}",
            dir = data_dir.display(),
            n = anchor.tree_size,
        ),
        ResumeError::Forked { anchor, .. } => format!(
            "this data directory is not a copy of the anchored log (another store under the \
             same origin and key, or entries appended with --no-anchor after a stale restore). \
             Keep it aside and restore into {dir} a backup whose first {n} entries hash to \
             {root} (docs/OPERATIONS.md, \"Restore\"); if there is none, {new_log}",
            dir = data_dir.display(),
            n = anchor.tree_size,
            root = sworn_ledger::merkle::Hash(anchor.root.0),
        ),
        ResumeError::Store(_) => String::new(),
    }
}

fn start_anchorer(
    anchor: &crate::config::AnchorConfig,
    ledger: &Ledger,
) -> Result<AnchorerHandle, ServeError> {
    let fail = |reason: String| ServeError::Anchor { reason };
    let contract = contract_address(anchor)?;
    let signer = load_chain_key(&anchor.chain_key).map_err(|e| fail(e.to_string()))?;
    let config = ChainConfig::new(&anchor.rpc, contract, ledger.origin());
    let anchorer =
        Anchorer::new(config, signer, Arc::new(ledger.clone())).map_err(|e| fail(e.to_string()))?;
    Ok(anchorer.spawn())
}

async fn wait_for_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
