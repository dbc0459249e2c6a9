//! The engine behind a bounded queue, on its own thread.
//!
//! Requests carry their own event channel (mistral.rs's `Request`, TGI's queue entries). The
//! engine thread owns the model and runs a continuous-batching loop ([`batch`]): it admits
//! queued requests while the batch has room, prefills them, then advances every running
//! sequence by one token per step. A finished sequence leaves the batch at once; so does one
//! whose client has gone (its event channel is closed), checked when it leaves the queue and
//! before every step. libtorch never runs on the async runtime.
//!
//! At shutdown [`Scheduler::stop`] ends the loop early: every running sequence finishes
//! at once with [`FinishReason::Cancelled`] (what it generated so far is sworn as for a
//! disconnect), every queued request finishes cancelled with no tokens, and the thread
//! returns — dropping the model on its own thread — even while handles still exist.
//!
//! The engine is reached through two small traits: [`PromptEncoder`] (template + tokenise,
//! and compile a request's output constraint, called on the request path from a blocking
//! task) and [`Generator`] (prefill and batched decode steps, on the engine thread only).

pub mod batch;
pub mod engine_adapter;
pub mod request;
pub mod stop;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use self::request::{
    FinishReason, GenerationEvent, GenerationRequest, PromptInput, TokenLogprob, ToolSyntax,
};
use crate::engine::constraint::{Constraint, ConstraintError, ConstraintSpec};
use crate::histogram::{Histogram, ITERATION_TOKEN_BUCKETS, REQUEST_TOKEN_BUCKETS};

/// An engine failure, reported to clients as a 500 (details only in the operator's log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeneratorError {
    /// The prompt could not be templated or tokenised.
    #[error("prompt could not be encoded: {reason}")]
    Encode {
        /// Why.
        reason: String,
    },
    /// The model failed (libtorch error, out of memory, no free KV slot).
    #[error("generation failed: {reason}")]
    Model {
        /// Why.
        reason: String,
    },
}

/// One generated token.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// Its id.
    pub id: u32,
    /// Its log probability and alternatives, when the request asked for them.
    pub logprobs: Option<TokenLogprob>,
    /// The text it makes final (may be empty while a multi-byte character is incomplete;
    /// with `finish`, whatever the model still held back).
    pub text: String,
    /// Set when the model ended the sequence with this token: `Stop` for end of sequence,
    /// `Length` when its context is full. The scheduler ends sequences at `max_tokens` and
    /// stop strings itself.
    pub finish: Option<FinishReason>,
}

/// Template and tokenise a prompt. Thread-safe and cheap enough to run per request on a
/// blocking task.
pub trait PromptEncoder: Send + Sync + 'static {
    /// The prompt's token ids, chat template applied for chat input.
    fn encode(&self, prompt: &PromptInput) -> Result<Vec<u32>, GeneratorError>;

    /// The text of `tokens`, special tokens included (`/detokenize`); ids outside the
    /// vocabulary are an error.
    fn decode(&self, tokens: &[u32]) -> Result<String, GeneratorError> {
        let _ = tokens;
        Err(GeneratorError::Encode {
            reason: "this model cannot detokenize".to_string(),
        })
    }

    /// How this model's chat template lets it call tools (generic when it has no syntax
    /// of its own, or no template).
    fn tool_syntax(&self) -> ToolSyntax {
        ToolSyntax::Generic
    }

    /// Compiles `spec` for this model (structured outputs), for
    /// [`GenerationRequest::constraint`]. An error is the client's (a schema feature that
    /// cannot be enforced, named in the message) or this model's (it cannot constrain).
    fn constrain(&self, spec: &ConstraintSpec) -> Result<Constraint, ConstraintError> {
        let _ = spec;
        Err(ConstraintError::new(
            "this model cannot constrain its output",
        ))
    }
}

/// The model's generation interface. Lives on the engine thread only.
pub trait Generator: Send + 'static {
    /// One sequence's state (its KV slot; released on drop).
    type Sequence: Send;

    /// Most sequences one step may carry.
    fn max_batch(&self) -> usize;

    /// Prefills a new sequence and samples its first token.
    fn start(
        &mut self,
        request: &GenerationRequest,
    ) -> Result<(Self::Sequence, Token), GeneratorError>;

    /// Starts `request.choices` sequences of one prompt, each with its first token (choice
    /// `i` drawing with seed + `i`). A generator that cannot share a prefill serves one
    /// choice only.
    fn start_choices(
        &mut self,
        request: &GenerationRequest,
    ) -> Result<Vec<(Self::Sequence, Token)>, GeneratorError> {
        if request.choices > 1 {
            return Err(GeneratorError::Model {
                reason: "this generator serves one choice per request".to_string(),
            });
        }
        Ok(vec![self.start(request)?])
    }

    /// Starts every request of a turn's admissions (each as [`start_choices`]
    /// (Self::start_choices) would); one result per request, in order. A generator that
    /// can prefill several prompts in one pass does so here.
    fn start_batch(&mut self, requests: &[&GenerationRequest]) -> Vec<Started<Self::Sequence>> {
        requests.iter().map(|r| self.start_choices(r)).collect()
    }

    /// Prompts longer than this are prefilled a chunk per turn, between decode steps
    /// ([`prefill_some`](Self::prefill_some)), so a long prompt does not stall the running
    /// sequences for its whole prefill. `None` (the default): whole at admission.
    fn prefill_chunk(&self) -> Option<usize> {
        None
    }

    /// Prefills up to `budget` more positions of the single-choice `request`, whose partial
    /// prefill the generator keeps under `key` between calls (the first call reserves its
    /// KV slot). `Some`: the prompt is in, and its sequence started with its first token.
    fn prefill_some(
        &mut self,
        key: u64,
        request: &GenerationRequest,
        budget: usize,
    ) -> Result<Option<(Self::Sequence, Token)>, GeneratorError> {
        let _ = (key, budget);
        self.start(request).map(Some)
    }

    /// Drops the partial prefill kept under `key` (its client left, or the scheduler
    /// stops), freeing its slot.
    fn abandon_prefill(&mut self, key: u64) {
        let _ = key;
    }

    /// Advances every sequence by one token, in one batched step. Returns one token per
    /// sequence, in order. An error fails every sequence in the step.
    fn step(&mut self, sequences: &mut [&mut Self::Sequence])
    -> Result<Vec<Token>, GeneratorError>;

    /// Frees a sequence that left the batch (finished, failed or cancelled).
    fn release(&mut self, sequence: Self::Sequence);
}

/// Live counts, read by `/metrics`.
#[derive(Debug)]
pub struct SchedulerStats {
    /// Requests in the queue.
    pub waiting: AtomicUsize,
    /// Sequences in the running batch.
    pub running: AtomicUsize,
    /// Requests dropped because their client had gone (in the queue or mid-generation).
    pub dropped: AtomicU64,
    /// Requests refused because the queue was full.
    pub rejected: AtomicU64,
    /// The engine's KV slots ([`Generator::max_batch`]: one per sequence it can carry).
    pub kv_slots: AtomicUsize,
    /// KV slots held by sequences and by prompts prefilled a chunk at a time: taken when a
    /// prefill succeeds (a chunked one's first chunk), given back when the sequence is
    /// released or the partial prefill abandoned, before its client hears that it finished.
    pub kv_slots_held: AtomicUsize,
    /// `max_tokens` of each request the engine admitted.
    pub max_tokens: Histogram,
    /// Tokens per engine step: the prompts prefilled in it plus the rows of its decode step.
    pub iteration_tokens: Histogram,
}

impl Default for SchedulerStats {
    fn default() -> Self {
        SchedulerStats {
            waiting: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            kv_slots: AtomicUsize::new(0),
            kv_slots_held: AtomicUsize::new(0),
            max_tokens: Histogram::tokens(REQUEST_TOKEN_BUCKETS),
            iteration_tokens: Histogram::tokens(ITERATION_TOKEN_BUCKETS),
        }
    }
}

impl SchedulerStats {
    /// Fraction of the KV cache in use, 0 to 1: slots held over all slots (0 before the
    /// engine has any). A slot's memory is reserved whole for its sequence, so this is
    /// the share of the cache that new requests cannot have.
    pub fn kv_cache_usage(&self) -> f64 {
        let slots = self.kv_slots.load(Ordering::Relaxed);
        if slots == 0 {
            return 0.0;
        }
        let held = self.kv_slots_held.load(Ordering::Relaxed).min(slots);
        held as f64 / slots as f64
    }
}

/// What the engine thread's queue carries.
#[derive(Debug)]
pub(crate) enum Command {
    /// A request to run.
    Run(Job),
    /// Wakes an idle engine thread so it sees [`Scheduler::stop`].
    Wake,
}

/// The sequences a request started, one per choice, each with its first token.
pub type Started<S> = Result<Vec<(S, Token)>, GeneratorError>;

/// A request handed to the engine thread with an event channel per choice.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) request: GenerationRequest,
    pub(crate) events: Vec<UnboundedSender<GenerationEvent>>,
}

impl Job {
    /// Ends every choice with `reason` and nothing generated.
    pub(crate) fn finish_all(&self, reason: FinishReason) {
        for events in &self.events {
            let _ = events.send(GenerationEvent::Finished {
                reason,
                completion_tokens: 0,
            });
        }
    }
}

/// Why a request was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The queue is at capacity.
    #[error("queue full ({capacity} waiting)")]
    QueueFull {
        /// The queue's capacity.
        capacity: usize,
    },
    /// The engine thread has stopped.
    #[error("the engine has stopped")]
    Stopped,
}

/// The handle the API uses: cheap to clone, safe to share.
#[derive(Debug, Clone)]
pub struct Scheduler {
    queue: SyncSender<Command>,
    capacity: usize,
    stats: Arc<SchedulerStats>,
    stopping: Arc<AtomicBool>,
}

/// The engine thread; joining it waits for every running sequence to finish.
#[derive(Debug)]
pub struct EngineThread {
    handle: Option<JoinHandle<()>>,
}

impl EngineThread {
    /// Waits for the engine thread to drain and exit (after every [`Scheduler`] is dropped).
    pub fn join(mut self) {
        if let Some(handle) = self.handle.take() {
            if handle.join().is_err() {
                tracing::error!("engine thread panicked");
            }
        }
    }
}

impl Scheduler {
    /// Starts the engine thread over `generator` with a queue of `capacity` requests.
    pub fn start<G: Generator>(
        generator: G,
        capacity: usize,
    ) -> std::io::Result<(Scheduler, EngineThread)> {
        // One slot more than the capacity, so a wake-up always finds room.
        let (queue, jobs) = mpsc::sync_channel(capacity + 1);
        let stats = Arc::new(SchedulerStats::default());
        stats
            .kv_slots
            .store(generator.max_batch().max(1), Ordering::Relaxed);
        let stopping = Arc::new(AtomicBool::new(false));
        let thread_stats = stats.clone();
        let thread_stopping = stopping.clone();
        let handle = std::thread::Builder::new()
            .name("sworn-engine".to_string())
            .spawn(move || batch::run(generator, &jobs, &thread_stats, &thread_stopping))?;
        Ok((
            Scheduler {
                queue,
                capacity,
                stats,
                stopping,
            },
            EngineThread {
                handle: Some(handle),
            },
        ))
    }

    /// Queues a request of one choice; its events arrive on the returned channel.
    /// Dropping the receiver cancels the generation.
    pub fn submit(
        &self,
        mut request: GenerationRequest,
    ) -> Result<UnboundedReceiver<GenerationEvent>, SubmitError> {
        request.choices = 1;
        let mut receivers = self.submit_choices(request)?;
        Ok(receivers.remove(0))
    }

    /// Queues a request of `request.choices` (≥ 1) choices; each choice's events arrive on
    /// its own channel, in order. Dropping a receiver cancels that choice.
    pub fn submit_choices(
        &self,
        mut request: GenerationRequest,
    ) -> Result<Vec<UnboundedReceiver<GenerationEvent>>, SubmitError> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(SubmitError::Stopped);
        }
        request.choices = request.choices.max(1);
        let (events, receivers): (Vec<_>, Vec<_>) =
            (0..request.choices).map(|_| unbounded_channel()).unzip();
        request.enqueued_at = Instant::now();
        // Count before sending so the engine's decrement can never run first; the count
        // also keeps the spare slot for [`Scheduler::stop`]'s wake-up.
        let waiting = self.stats.waiting.fetch_add(1, Ordering::SeqCst);
        if waiting >= self.capacity {
            self.stats.waiting.fetch_sub(1, Ordering::SeqCst);
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(SubmitError::QueueFull {
                capacity: self.capacity,
            });
        }
        match self.queue.try_send(Command::Run(Job { request, events })) {
            Ok(()) => Ok(receivers),
            Err(err) => {
                self.stats.waiting.fetch_sub(1, Ordering::SeqCst);
                match err {
                    TrySendError::Full(_) => {
                        self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                        Err(SubmitError::QueueFull {
                            capacity: self.capacity,
                        })
                    }
                    TrySendError::Disconnected(_) => Err(SubmitError::Stopped),
                }
            }
        }
    }

    /// Ends generation now (shutdown): running sequences finish `Cancelled` with what
    /// they generated, queued requests finish `Cancelled` with nothing, new ones are
    /// refused with [`SubmitError::Stopped`], and the engine thread returns. Idempotent.
    pub fn stop(&self) {
        if !self.stopping.swap(true, Ordering::SeqCst) {
            // An idle engine thread is blocked on the queue; a busy one checks the flag
            // before its next step. Full or gone both mean no wake-up is needed.
            let _ = self.queue.try_send(Command::Wake);
        }
    }

    /// Live counts.
    pub fn stats(&self) -> &Arc<SchedulerStats> {
        &self.stats
    }

    /// The queue's capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}
