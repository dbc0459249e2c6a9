//! What the scheduler accepts: a validated, tokenised request, and what it sends back.

use std::time::{Duration, Instant};

use crate::engine::constraint::Constraint;
use crate::engine::sampling::SamplingParams;

/// Who said a chat turn (the roles the chat template understands).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnRole {
    /// System or developer instructions.
    System,
    /// The user.
    User,
    /// A previous model answer.
    Assistant,
}

impl TurnRole {
    /// The role name chat templates expect.
    pub fn as_str(self) -> &'static str {
        match self {
            TurnRole::System => "system",
            TurnRole::User => "user",
            TurnRole::Assistant => "assistant",
        }
    }
}

/// One chat message, reduced to text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatTurn {
    /// Its role.
    pub role: TurnRole,
    /// Its text.
    pub content: String,
}

/// The prompt as the client gave it: chat turns (templated by the model) or raw text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptInput {
    /// `/v1/chat/completions`.
    Chat(Vec<ChatTurn>),
    /// `/v1/completions`.
    Text(String),
}

/// A request ready for the engine: tokenised, with the sampling options validated once
/// (by the API or `sworn generate`) and passed to the engine as they are. The scheduler
/// reads its stop strings and `max_tokens` (≥ 1; prompt + this fits the context) from
/// them.
#[derive(Debug, Clone)]
pub struct GenerationRequest {
    /// Prompt token ids (already templated).
    pub prompt_tokens: Vec<u32>,
    /// Sampling, budget and stop strings.
    pub params: SamplingParams,
    /// What the output must match (structured outputs), compiled by
    /// [`PromptEncoder::constrain`](super::PromptEncoder::constrain); `None` for free text.
    pub constraint: Option<Constraint>,
    /// When the request entered the queue.
    pub enqueued_at: Instant,
}

pub use crate::engine::runner::FinishReason;

/// What a request's event channel carries, in order: `Started`, zero or more `Text`, then
/// exactly one `Finished`.
#[derive(Debug, Clone, PartialEq)]
pub enum GenerationEvent {
    /// The engine took the request from the queue.
    Started {
        /// Time spent waiting in the queue.
        queued_for: Duration,
    },
    /// New answer text, safe to show (no stop string can begin inside it any more).
    Text {
        /// The text.
        text: String,
        /// Tokens generated so far.
        tokens: u32,
    },
    /// The end.
    Finished {
        /// Why.
        reason: FinishReason,
        /// Tokens generated (counting any held back by a stop string).
        completion_tokens: u32,
    },
}
