//! Wire types. Requests and responses are `async-openai`'s own types (types-only features);
//! this module adds what OpenAI's schema lacks: the top-level `"sworn"` receipt field, the
//! model list, and the audit answers.

use serde::{Deserialize, Serialize};
use sworn_ledger::entry::ReceiptJson;

pub use async_openai::types::chat::{
    ChatChoice, ChatChoiceStream, ChatCompletionResponseMessage, ChatCompletionStreamResponseDelta,
    CompletionUsage, CreateChatCompletionRequest, CreateChatCompletionResponse,
    CreateChatCompletionStreamResponse, FinishReason, Role,
};
pub use async_openai::types::completions::{CreateCompletionRequest, CreateCompletionResponse};

/// A non-streaming chat answer: OpenAI's object plus `"sworn"`, the receipt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwornChatCompletion {
    /// The OpenAI response object, its members at the top level.
    #[serde(flatten)]
    pub completion: CreateChatCompletionResponse,
    /// The receipt, durable in the log before this answer was sent.
    pub sworn: ReceiptJson,
}

/// A non-streaming completion answer plus `"sworn"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwornCompletion {
    /// The OpenAI response object, its members at the top level.
    #[serde(flatten)]
    pub completion: CreateCompletionResponse,
    /// The receipt.
    pub sworn: ReceiptJson,
}

/// One model, as `GET /v1/models` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelCard {
    /// The id clients put in `model`.
    pub id: String,
    /// Always `"model"`.
    pub object: String,
    /// Unix time the server loaded it.
    pub created: u64,
    /// Always `"sworn"`.
    pub owned_by: String,
    /// Maximum context length in tokens (an extension vLLM also reports).
    pub max_model_len: usize,
    /// SHA-256 of the weights file, as every receipt records it.
    pub sha256: String,
}

/// `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelList {
    /// Always `"list"`.
    pub object: String,
    /// The models served (one per instance).
    pub data: Vec<ModelCard>,
}

/// `GET /health` and `/ready` bodies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthStatus {
    /// `ok`, `loading` or `shutting_down`.
    pub status: String,
}
