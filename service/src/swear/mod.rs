//! Swearing: the layer between the scheduler's events and the ledger.
//!
//! A generation task ([`spawn`]) owns one request's engine events. It forwards text to the
//! client's channel and, when the engine finishes — or the client goes away, or shutdown
//! cuts the answer ([`InFlight::abort_all`]) — it records exactly what the client was sent
//! in the ledger and only then hands the client its receipt. The task outlives the HTTP
//! handler, so an answer whose client left is still sworn, with finish reason `cancelled`.
//!
//! The layer sees only a narrow [`SwearContext`]: the ledger, the model's identity, a
//! [`MetricsSink`], and the registry of running tasks. What a receipt records about the
//! request is a [`SwornRequest`], built by the API; its failures are a [`SwearError`] the
//! API turns into HTTP. The token budget a request was charged is a [`Charge`] that the
//! task settles exactly once, whatever way the request ends. Dependencies point one way:
//! api → swear → ledger, and swear → scheduler for the event vocabulary.

pub mod answer;
mod charge;
mod in_flight;
mod record;
mod task;

use std::time::Duration;

use sworn_ledger::receipt::ModelInfo;
use sworn_ledger::store::Ledger;

pub use answer::{Answer, ToolCall};
pub use charge::Charge;
pub use in_flight::{AbortSignal, InFlight, InFlightGuard};
pub use record::SwornRequest;
pub use task::{Outgoing, Sworn, spawn};

/// Whether answers are sworn. Only the provenance-overhead benchmark turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwearMode {
    /// Every answer waits for its durable receipt (the product).
    Durable,
    /// Answers skip the ledger: used only to measure what swearing costs.
    SkipForBenchmark,
}

/// Why an answer could not be given with its receipt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwearError {
    /// The engine failed mid-generation; what it produced was sworn with finish reason
    /// `error`, but there is no answer to give.
    #[error("the engine failed; the partial answer was recorded with finish reason `error`")]
    Generation,
    /// The ledger could not make the receipt durable; nothing was acknowledged.
    #[error("the ledger could not record the answer: {reason}")]
    Ledger {
        /// The ledger's error.
        reason: String,
    },
}

/// Where the swearing step reports latencies and outcomes (the API's `/metrics`).
pub trait MetricsSink: Send + Sync + 'static {
    /// The request left the queue after `waited`.
    fn queued(&self, waited: Duration);
    /// The first text went out `after` the request arrived.
    fn first_text(&self, after: Duration);
    /// Text went out `gap` after the previous piece.
    fn next_text(&self, gap: Duration);
    /// The ledger made a receipt durable in `took`.
    fn appended(&self, took: Duration);
    /// The request ended `after` it arrived (receipt written).
    fn answered(&self, after: Duration);
    /// A sworn answer, by finish reason, with its token counts.
    fn succeeded(&self, finish_reason: &'static str, prompt_tokens: u64, completion_tokens: u64);
    /// A failed request, by error label (`ledger`, `internal`).
    fn failed(&self, label: &'static str);
}

/// What the swearing step needs, and nothing more.
pub struct SwearContext {
    /// The log.
    pub ledger: Ledger,
    /// The served model, as receipts name it.
    pub model: ModelInfo,
    /// Swearing on (always, outside the benchmark).
    pub mode: SwearMode,
    /// Latencies and outcomes.
    pub metrics: std::sync::Arc<dyn MetricsSink>,
    /// Running generation tasks.
    pub in_flight: InFlight,
    /// How long a client may take no text before its answer is ended and sworn
    /// `cancelled`, as for a disconnect: a client that never reads must not keep what it
    /// was already sent unsworn.
    pub client_stall_timeout: Duration,
}

impl std::fmt::Debug for SwearContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwearContext")
            .field("model", &self.model.id)
            .field("mode", &self.mode)
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}
