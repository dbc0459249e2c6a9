//! Builds OpenAI response objects (whole answers and stream chunks) for both endpoints.

use async_openai::types::chat::{ChatChoice, ChatChoiceStream, Choice, CompletionFinishReason};
use serde_json::Value;
use sworn_ledger::entry::ReceiptJson;

use super::models::{
    ChatCompletionResponseMessage, ChatCompletionStreamResponseDelta, CompletionUsage,
    CreateChatCompletionResponse, CreateChatCompletionStreamResponse, CreateCompletionResponse,
    FinishReason as OpenAiFinish, Role,
};
use super::request_id::RequestId;
use super::validation::Endpoint;
use crate::scheduler::request::FinishReason;
use crate::swear::Sworn;

/// The fingerprint reported in every response: the server version.
pub fn system_fingerprint() -> String {
    format!("sworn-{}", env!("CARGO_PKG_VERSION"))
}

/// Identity of one answer, shared by all its chunks.
#[derive(Debug, Clone)]
pub struct AnswerMeta {
    /// Which endpoint.
    pub endpoint: Endpoint,
    /// The response id (`chatcmpl-…` / `cmpl-…`), derived from the request id.
    pub id: String,
    /// Unix seconds.
    pub created: u32,
    /// The model id.
    pub model: String,
}

impl AnswerMeta {
    /// Metadata for a new answer.
    pub fn new(endpoint: Endpoint, request_id: &RequestId, model: &str) -> Self {
        let prefix = match endpoint {
            Endpoint::Chat => "chatcmpl",
            Endpoint::Completion => "cmpl",
        };
        let suffix = request_id.as_str().trim_start_matches("req-");
        let created = time::OffsetDateTime::now_utc().unix_timestamp();
        AnswerMeta {
            endpoint,
            id: format!("{prefix}-{suffix}"),
            created: u32::try_from(created).unwrap_or(u32::MAX),
            model: model.to_string(),
        }
    }
}

fn usage(sworn: &Sworn) -> CompletionUsage {
    CompletionUsage {
        prompt_tokens: sworn.prompt_tokens,
        completion_tokens: sworn.completion_tokens,
        total_tokens: sworn.prompt_tokens.saturating_add(sworn.completion_tokens),
        ..CompletionUsage::default()
    }
}

fn chat_finish(reason: FinishReason) -> OpenAiFinish {
    match reason {
        FinishReason::Length => OpenAiFinish::Length,
        // OpenAI has no word for a cut answer (shutdown's grace period ended); `stop` is the
        // closest, and the receipt in `sworn` records `cancelled`.
        _ => OpenAiFinish::Stop,
    }
}

fn completion_finish(reason: FinishReason) -> CompletionFinishReason {
    match reason {
        FinishReason::Length => CompletionFinishReason::Length,
        _ => CompletionFinishReason::Stop,
    }
}

/// Adds `"sworn"` to a serialised OpenAI object.
fn with_receipt(mut object: Value, receipt: Option<&ReceiptJson>) -> Value {
    if let (Value::Object(map), Some(receipt)) = (&mut object, receipt) {
        map.insert(
            "sworn".to_string(),
            serde_json::to_value(receipt).unwrap_or(Value::Null),
        );
    }
    object
}

/// A whole, non-streamed answer with its receipt.
#[allow(deprecated)]
pub fn whole_answer(meta: &AnswerMeta, text: String, sworn: &Sworn) -> Value {
    let object = match meta.endpoint {
        Endpoint::Chat => serde_json::to_value(CreateChatCompletionResponse {
            id: meta.id.clone(),
            choices: vec![ChatChoice {
                index: 0,
                message: ChatCompletionResponseMessage {
                    content: Some(text),
                    role: Role::Assistant,
                    ..ChatCompletionResponseMessage::default()
                },
                finish_reason: Some(chat_finish(sworn.finish_reason)),
                logprobs: None,
            }],
            created: meta.created,
            model: meta.model.clone(),
            system_fingerprint: Some(system_fingerprint()),
            object: "chat.completion".to_string(),
            usage: Some(usage(sworn)),
            ..CreateChatCompletionResponse::default()
        }),
        Endpoint::Completion => serde_json::to_value(CreateCompletionResponse {
            id: meta.id.clone(),
            choices: vec![Choice {
                text,
                index: 0,
                logprobs: None,
                finish_reason: Some(completion_finish(sworn.finish_reason)),
            }],
            created: meta.created,
            model: meta.model.clone(),
            system_fingerprint: Some(system_fingerprint()),
            object: "text_completion".to_string(),
            usage: Some(usage(sworn)),
        }),
    };
    with_receipt(object.unwrap_or(Value::Null), sworn.receipt.as_ref())
}

/// What a stream chunk carries.
#[derive(Debug, Clone, Copy)]
pub enum ChunkBody<'a> {
    /// The first chat chunk: the assistant role, no text yet.
    Role,
    /// Text.
    Text(&'a str),
    /// The finish reason, no text.
    Finish(FinishReason),
    /// The closing chunk: no choices, usage if asked for, and the receipt.
    Closing {
        /// The finished answer.
        sworn: &'a Sworn,
        /// `stream_options.include_usage`.
        include_usage: bool,
    },
}

/// One stream chunk as JSON.
#[allow(deprecated)]
pub fn chunk(meta: &AnswerMeta, body: ChunkBody<'_>) -> Value {
    let (usage_value, receipt) = match &body {
        ChunkBody::Closing {
            sworn,
            include_usage,
        } => (include_usage.then(|| usage(sworn)), sworn.receipt.as_ref()),
        _ => (None, None),
    };
    let object = match meta.endpoint {
        Endpoint::Chat => {
            let choice = |delta: ChatCompletionStreamResponseDelta,
                          finish: Option<OpenAiFinish>| ChatChoiceStream {
                index: 0,
                delta,
                finish_reason: finish,
                logprobs: None,
            };
            let choices = match body {
                ChunkBody::Role => vec![choice(
                    ChatCompletionStreamResponseDelta {
                        role: Some(Role::Assistant),
                        content: Some(String::new()),
                        ..ChatCompletionStreamResponseDelta::default()
                    },
                    None,
                )],
                ChunkBody::Text(text) => vec![choice(
                    ChatCompletionStreamResponseDelta {
                        content: Some(text.to_string()),
                        ..ChatCompletionStreamResponseDelta::default()
                    },
                    None,
                )],
                ChunkBody::Finish(reason) => vec![choice(
                    ChatCompletionStreamResponseDelta::default(),
                    Some(chat_finish(reason)),
                )],
                ChunkBody::Closing { .. } => Vec::new(),
            };
            serde_json::to_value(CreateChatCompletionStreamResponse {
                id: meta.id.clone(),
                choices,
                created: meta.created,
                model: meta.model.clone(),
                system_fingerprint: Some(system_fingerprint()),
                object: "chat.completion.chunk".to_string(),
                usage: usage_value,
                ..CreateChatCompletionStreamResponse::default()
            })
        }
        Endpoint::Completion => {
            let choices = match body {
                ChunkBody::Role => Vec::new(),
                ChunkBody::Text(text) => vec![Choice {
                    text: text.to_string(),
                    index: 0,
                    logprobs: None,
                    finish_reason: None,
                }],
                ChunkBody::Finish(reason) => vec![Choice {
                    text: String::new(),
                    index: 0,
                    logprobs: None,
                    finish_reason: Some(completion_finish(reason)),
                }],
                ChunkBody::Closing { .. } => Vec::new(),
            };
            serde_json::to_value(CreateCompletionResponse {
                id: meta.id.clone(),
                choices,
                created: meta.created,
                model: meta.model.clone(),
                system_fingerprint: Some(system_fingerprint()),
                object: "text_completion".to_string(),
                usage: usage_value,
            })
        }
    };
    with_receipt(object.unwrap_or(Value::Null), receipt)
}
