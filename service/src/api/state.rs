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
use crate::scheduler::{PromptEncoder, Scheduler};

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

impl std::fmt::Debug for ServedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedModel")
            .field("id", &self.id)
            .field("context_length", &self.context_length)
            .finish_non_exhaustive()
    }
}

/// Whether answers are sworn. Only the provenance-overhead benchmark turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwearMode {
    /// Every answer waits for its durable receipt (the product).
    Durable,
    /// Answers skip the ledger: used only to measure what swearing costs.
    SkipForBenchmark,
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
    /// Authentication.
    pub auth: Auth,
    /// Per-key limits.
    pub rate_limiter: RateLimiter,
    /// The engine queue.
    pub scheduler: Scheduler,
    /// The log.
    pub ledger: Ledger,
    /// Metrics.
    pub metrics: Metrics,
    /// Swearing on (always, outside the benchmark).
    pub swear_mode: SwearMode,
    /// The anchorer's status, when anchoring runs.
    pub anchor: Option<watch::Receiver<AnchorStatus>>,
    /// `Retry-After` seconds suggested when the queue is full.
    pub overload_retry_after_s: u64,
    /// Generation tasks still running (their receipts not yet written).
    pub in_flight: InFlight,
    lifecycle: AtomicU8,
}

/// Counts running generation tasks so shutdown can wait for their receipts, and tells
/// them when shutdown stops waiting for their clients.
#[derive(Debug)]
pub struct InFlight {
    count: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
    abort: watch::Sender<bool>,
}

impl Default for InFlight {
    fn default() -> Self {
        InFlight {
            count: Default::default(),
            idle: Default::default(),
            abort: watch::Sender::new(false),
        }
    }
}

/// Resolves once shutdown has aborted every generation (see [`InFlight::abort_all`]).
#[derive(Debug)]
pub struct AbortSignal(watch::Receiver<bool>);

impl AbortSignal {
    /// Waits for the abort; pending forever if it never comes.
    pub async fn aborted(&mut self) {
        if self.0.wait_for(|aborted| *aborted).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Held by a generation task; dropping it marks the task done.
#[derive(Debug)]
pub struct InFlightGuard<'a>(&'a InFlight);

impl InFlight {
    /// Marks a task as started.
    pub fn enter(&self) -> InFlightGuard<'_> {
        self.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self)
    }

    /// What a generation task watches to learn that shutdown no longer waits for it.
    pub fn abort_signal(&self) -> AbortSignal {
        AbortSignal(self.abort.subscribe())
    }

    /// Shutdown's end of grace: every generation task stops where it is, swears what it
    /// sent as `cancelled`, and stops waiting for a client that does not read.
    pub fn abort_all(&self) {
        self.abort.send_replace(true);
    }

    /// Waits until no task is running.
    pub async fn wait_idle(&self) {
        loop {
            // Register before checking, so a wake-up between the check and the wait is kept.
            let notified = self.idle.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
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
}

impl AppState {
    /// Shared state, ready to serve.
    pub fn new(parts: AppStateParts) -> Arc<AppState> {
        Arc::new(AppState {
            model: parts.model,
            limits: parts.limits,
            max_body_bytes: parts.max_body_bytes,
            auth: parts.auth,
            rate_limiter: RateLimiter::new(),
            scheduler: parts.scheduler,
            ledger: parts.ledger,
            metrics: Metrics::default(),
            swear_mode: parts.swear_mode,
            anchor: parts.anchor,
            overload_retry_after_s: parts.overload_retry_after_s,
            in_flight: InFlight::default(),
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
