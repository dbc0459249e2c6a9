//! `sworn serve` and `sworn keygen`: wiring the configured parts together.
//!
//! Order of start-up: authentication (refuse to start without keys unless told), data
//! directory and log key (created on first start), the listener (answering 503
//! `model_loading` meanwhile), the ledger (recovers to its last durable entry), the model
//! (on a blocking thread), the engine thread, the anchorer (if configured), then the
//! routes go live. Order of shutdown (SIGINT/SIGTERM): stop taking
//! generation requests, let in-flight ones finish within the grace period and cut the
//! rest (sworn `cancelled`, their clients still get the receipt), flush the ledger and
//! seal a last checkpoint, join the engine thread, stop the anchorer. A storage fault in
//! the ledger starts the same shutdown at once, with no grace (nothing more can be
//! sworn), and `sworn serve` exits non-zero so its supervisor restarts it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sworn_ledger::anchor::{AnchorConfig as ChainConfig, Anchorer, AnchorerHandle, load_chain_key};
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
    let mut ledger_config =
        LedgerConfig::new(config.data_dir.join("ledger"), &config.origin, log_key);
    ledger_config.seal_every_entries = config.seal_every;
    ledger_config.seal_interval = config.seal_interval;
    let ledger = Ledger::open(ledger_config)?;
    tracing::info!(
        origin = ledger.origin(),
        entries = ledger.size(),
        "ledger open"
    );

    let model_path = config.model.clone();
    let (slots, weights) = (config.max_batch, config.weights);
    let engine = tokio::task::spawn_blocking(move || {
        let options = EngineOptions {
            slots,
            weights,
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
    let (scheduler, engine_thread) =
        Scheduler::start(EngineGenerator::new(engine), config.queue_capacity).map_err(|e| {
            ServeError::Model {
                path: config.model.clone(),
                reason: format!("cannot start the engine thread: {e}"),
            }
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

fn start_anchorer(
    anchor: &crate::config::AnchorConfig,
    ledger: &Ledger,
) -> Result<AnchorerHandle, ServeError> {
    let fail = |reason: String| ServeError::Anchor { reason };
    let contract = anchor
        .contract
        .parse()
        .map_err(|e| fail(format!("--contract {}: {e}", anchor.contract)))?;
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
