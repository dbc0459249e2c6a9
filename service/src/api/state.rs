//! What every handler shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use sworn_ledger::anchor::AnchorStatus;
use sworn_ledger::receipt::ModelInfo;
use sworn_ledger::store::Ledger;
use tokio::sync::watch;

use super::auth::Auth;
use super::metrics::{AnchorFigures, LedgerFigures, Metrics};
use super::rate_limit::RateLimiter;
use super::validation::Limits;
use crate::engine::runner::Engine;
use crate::scheduler::engine_adapter::EnginePromptEncoder;
use crate::scheduler::{PromptEncoder, Scheduler};
pub use crate::swear::SwearMode;
use crate::swear::{InFlight, SwearContext};

/// The one model this instance serves.
#[derive(Clone)]
pub struct ServedModel {
    /// The id clients put in `model`.
    pub id: String,
    /// What receipts record about it (weights hash, dtype, device, versions).
    pub info: ModelInfo,
    /// Context length in tokens.
    pub context_length: usize,
    /// Template + tokeniser.
    pub encoder: Arc<dyn PromptEncoder>,
    /// Unix time it was loaded.
    pub created: u64,
}

impl ServedModel {
    /// The loaded `engine` served as `id`: what its receipts record, with the libtorch
    /// the process loaded, and its own template and tokeniser.
    pub fn of_engine(id: &str, engine: &Engine, libtorch: String) -> ServedModel {
        let info = engine.info();
        ServedModel {
            id: id.to_string(),
            info: ModelInfo {
                id: id.to_string(),
                sha256: info.sha256.clone(),
                dtype: info.dtype.clone(),
                device: info.device.clone(),
                engine: format!("sworn {}", env!("CARGO_PKG_VERSION")),
                libtorch,
            },
            context_length: info.max_ctx,
            encoder: Arc::new(EnginePromptEncoder::new(engine)),
            created: u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0),
        }
    }
}

impl std::fmt::Debug for ServedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedModel")
            .field("id", &self.id)
            .field("context_length", &self.context_length)
            .finish_non_exhaustive()
    }
}

/// Server lifecycle, for `/health` and `/ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Lifecycle {
    /// Model and ledger loaded; serving.
    Ready = 0,
    /// Shutting down: finishing in-flight requests, refusing new ones.
    Draining = 1,
    /// The ledger stopped writing after a storage fault: nothing can be sworn, so
    /// nothing is generated; the process is on its way out for a restart.
    LedgerFailed = 2,
}

/// Shared state behind every route.
#[derive(Debug)]
pub struct AppState {
    /// The model.
    pub model: ServedModel,
    /// Request limits.
    pub limits: Limits,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Authentication: the keys read at start or at the last reload.
    auth: std::sync::RwLock<Arc<Auth>>,
    /// Per-key limits.
    pub rate_limiter: RateLimiter,
    /// The engine queue.
    pub scheduler: Scheduler,
    /// The log.
    pub ledger: Ledger,
    /// Metrics (the swearing step reports into them too).
    pub metrics: Arc<Metrics>,
    /// The swearing step's context: ledger, model identity, metrics, running tasks.
    pub swear: Arc<SwearContext>,
    /// The anchorer's status, when anchoring runs.
    pub anchor: Option<watch::Receiver<AnchorStatus>>,
    /// `Retry-After` seconds suggested when the queue is full.
    pub overload_retry_after_s: u64,
    lifecycle: AtomicU8,
}

/// Everything [`AppState::new`] needs.
#[derive(Debug)]
pub struct AppStateParts {
    /// The model.
    pub model: ServedModel,
    /// Request limits.
    pub limits: Limits,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Authentication.
    pub auth: Auth,
    /// The engine queue.
    pub scheduler: Scheduler,
    /// The log.
    pub ledger: Ledger,
    /// Swearing mode.
    pub swear_mode: SwearMode,
    /// The anchorer's status, when anchoring runs.
    pub anchor: Option<watch::Receiver<AnchorStatus>>,
    /// `Retry-After` on a full queue.
    pub overload_retry_after_s: u64,
    /// How long a streaming client may take no text before its answer is cut and sworn.
    pub client_stall_timeout: std::time::Duration,
}

impl AppState {
    /// The keys in force now.
    pub fn auth(&self) -> Arc<Auth> {
        // A poisoned lock still holds a whole `Arc`: keep serving with it.
        let auth = self
            .auth
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(&auth)
    }

    /// Puts `auth` in force for every request from now on (SIGHUP after `sworn keys add`
    /// or `revoke`); requests already admitted are not affected.
    pub fn replace_auth(&self, auth: Auth) {
        let mut current = self
            .auth
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *current = Arc::new(auth);
    }

    /// Shared state, ready to serve.
    pub fn new(parts: AppStateParts) -> Arc<AppState> {
        let metrics = Arc::new(Metrics::default());
        let swear = Arc::new(SwearContext {
            ledger: parts.ledger.clone(),
            model: parts.model.info.clone(),
            mode: parts.swear_mode,
            metrics: metrics.clone(),
            in_flight: InFlight::default(),
            client_stall_timeout: parts.client_stall_timeout,
        });
        Arc::new(AppState {
            model: parts.model,
            limits: parts.limits,
            max_body_bytes: parts.max_body_bytes,
            auth: std::sync::RwLock::new(Arc::new(parts.auth)),
            rate_limiter: RateLimiter::new(),
            scheduler: parts.scheduler,
            ledger: parts.ledger,
            metrics,
            swear,
            anchor: parts.anchor,
            overload_retry_after_s: parts.overload_retry_after_s,
            lifecycle: AtomicU8::new(Lifecycle::Ready as u8),
        })
    }

    /// The current lifecycle state. A ledger fault shows at once, before the process
    /// has begun to stop.
    pub fn lifecycle(&self) -> Lifecycle {
        if self.ledger.fault().is_some() {
            return Lifecycle::LedgerFailed;
        }
        match self.lifecycle.load(Ordering::SeqCst) {
            0 => Lifecycle::Ready,
            _ => Lifecycle::Draining,
        }
    }

    /// Starts draining: new generation requests get 503.
    pub fn start_draining(&self) {
        self.lifecycle
            .store(Lifecycle::Draining as u8, Ordering::SeqCst);
    }

    /// Ledger and anchor figures for `/metrics`.
    pub fn ledger_figures(&self) -> LedgerFigures {
        let checkpoint_size = self
            .ledger
            .latest_checkpoint()
            .ok()
            .flatten()
            .map_or(0, |c| c.checkpoint.size);
        // Anchor sequence numbers are contiguous from 1 (the contract's), so the last seq
        // is the count.
        let anchors = self.ledger.last_anchor_seq().ok().flatten().unwrap_or(0);
        let anchor = self
            .anchor
            .as_ref()
            .map(|status| AnchorFigures::from(&*status.borrow()));
        LedgerFigures {
            entries: self.ledger.size(),
            checkpoint_size,
            anchors,
            anchor,
        }
    }
}
