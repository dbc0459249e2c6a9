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
    /// A tool's result, answering one of the previous answer's calls.
    Tool,
}

impl TurnRole {
    /// The role name chat templates expect.
    pub fn as_str(self) -> &'static str {
        match self {
            TurnRole::System => "system",
            TurnRole::User => "user",
            TurnRole::Assistant => "assistant",
            TurnRole::Tool => "tool",
        }
    }
}

/// One call of a previous answer, as a chat template reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnCall {
    /// The call's id.
    pub id: String,
    /// The function called.
    pub name: String,
    /// Its arguments (a JSON object; text that was not JSON, as a string).
    pub arguments: serde_json::Value,
}

/// One chat message: its text, and for an answer that called tools its calls, for a tool
/// result the call it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatTurn {
    /// Its role.
    pub role: TurnRole,
    /// Its text.
    pub content: String,
    /// The calls an assistant turn made (empty otherwise).
    pub tool_calls: Vec<TurnCall>,
    /// The call a tool turn answers.
    pub tool_call_id: Option<String>,
}

impl ChatTurn {
    /// A turn of text alone.
    pub fn text(role: TurnRole, content: impl Into<String>) -> Self {
        ChatTurn {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// How a chat template lets a model call tools, and so how calls are asked for,
/// constrained and read back ([`crate::api::tools`], [`crate::swear::Answer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolSyntax {
    /// The template has no tool syntax: tools are described in a system message and a
    /// call is the JSON `{"tool_calls": [{"name", "arguments"}]}` (llama.cpp's generic
    /// form).
    Generic,
    /// Hermes / Qwen2-style templates: the template lists `tools`, and each call is
    /// `<tool_call>\n{"name", "arguments"}\n</tool_call>`.
    Hermes,
    /// Llama-3-style templates: the template lists `tools`, and a call is the JSON
    /// `{"name", "parameters"}` alone.
    Llama3,
}

/// The tools offered with a chat prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOffer {
    /// The callable tools as the request gave them (`[{"type": "function", "function":
    /// {…}}]`), for templates that render `tools` themselves.
    pub tools: serde_json::Value,
    /// The system text that offers them, for templates without tool syntax.
    pub instructions: String,
}

/// The prompt as the client gave it: chat turns (templated by the model) or raw text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptInput {
    /// `/v1/chat/completions`.
    Chat(Vec<ChatTurn>),
    /// `/v1/chat/completions` with tools offered.
    ChatWithTools(Vec<ChatTurn>, ToolOffer),
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
    /// How many answers to generate from the prompt (`n`, ≥ 1): they share one prefill,
    /// and choice `i` draws with the seed in `params` plus `i`.
    pub choices: usize,
}

pub use crate::engine::runner::FinishReason;

/// A generated token's log probability, with the most likely alternatives at its step
/// ([`crate::engine::sampling::logprobs`] says from which distribution).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// The bytes the token stands for.
    pub bytes: Vec<u8>,
    /// ln P(token).
    pub logprob: f32,
    /// The most likely tokens, most likely first: their bytes and ln P.
    pub top: Vec<(Vec<u8>, f32)>,
}

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
        /// The log probabilities of the tokens generated since the previous `Text` (when
        /// the request asked for them): the tokens that made this text, and any held back
        /// with it by a possible stop string.
        logprobs: Vec<TokenLogprob>,
    },
    /// The end.
    Finished {
        /// Why.
        reason: FinishReason,
        /// Tokens generated (counting any held back by a stop string).
        completion_tokens: u32,
    },
}
