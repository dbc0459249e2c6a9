//! Builds OpenAI response objects (whole answers and stream chunks) for both endpoints.

use async_openai::types::chat::{
    ChatChoice, ChatChoiceLogprobs, ChatChoiceStream, ChatCompletionMessageToolCall,
    ChatCompletionMessageToolCallChunk, ChatCompletionMessageToolCalls, ChatCompletionTokenLogprob,
    Choice, CompletionFinishReason, FunctionCall, FunctionCallStream, FunctionType, Logprobs,
    TopLogprobs,
};
use serde_json::Value;
use sworn_ledger::entry::ReceiptJson;

use super::models::{
    ChatCompletionResponseMessage, ChatCompletionStreamResponseDelta, CompletionUsage,
    CreateChatCompletionResponse, CreateChatCompletionStreamResponse, CreateCompletionResponse,
    FinishReason as OpenAiFinish, Role,
};
use super::request_id::RequestId;
use super::validation::Endpoint;
use crate::scheduler::request::{FinishReason, TokenLogprob};
use crate::swear::{Sworn, ToolCall};

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
    /// Whether the answer reports log probabilities.
    pub logprobs: bool,
}

impl AnswerMeta {
    /// Metadata for a new answer.
    pub fn new(endpoint: Endpoint, request_id: &RequestId, model: &str, logprobs: bool) -> Self {
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
            logprobs,
        }
    }
}

/// A token's text as the API shows it (bytes that are not UTF-8 on their own, such as
/// part of a character, as U+FFFD) and its bytes.
fn spelled(bytes: &[u8]) -> (String, Option<Vec<u8>>) {
    (
        String::from_utf8_lossy(bytes).into_owned(),
        Some(bytes.to_vec()),
    )
}

/// Chat's `logprobs` member for `tokens`, when the request asked for log probabilities.
fn chat_logprobs(meta: &AnswerMeta, tokens: &[TokenLogprob]) -> Option<ChatChoiceLogprobs> {
    meta.logprobs.then(|| ChatChoiceLogprobs {
        content: Some(
            tokens
                .iter()
                .map(|t| {
                    let (token, bytes) = spelled(&t.bytes);
                    ChatCompletionTokenLogprob {
                        token,
                        logprob: t.logprob,
                        bytes,
                        top_logprobs: (t.top.iter())
                            .map(|(b, logprob)| {
                                let (token, bytes) = spelled(b);
                                TopLogprobs {
                                    token,
                                    logprob: *logprob,
                                    bytes,
                                }
                            })
                            .collect(),
                    }
                })
                .collect(),
        ),
        refusal: None,
    })
}

/// The completions endpoint's `logprobs` member (the legacy shape: parallel lists, each
/// token's alternatives as a map, and each token's character offset from `offset` on).
fn completion_logprobs(
    meta: &AnswerMeta,
    tokens: &[TokenLogprob],
    mut offset: u32,
) -> Option<Logprobs> {
    if !meta.logprobs {
        return None;
    }
    let mut out = Logprobs::default();
    for t in tokens {
        let (token, _) = spelled(&t.bytes);
        out.text_offset.push(offset);
        offset = offset.saturating_add(u32::try_from(token.chars().count()).unwrap_or(0));
        out.tokens.push(token);
        out.token_logprobs.push(Some(t.logprob));
        let top: serde_json::Map<String, Value> = (t.top.iter())
            .map(|(b, l)| (spelled(b).0, Value::from(*l)))
            .collect();
        out.top_logprobs.push(Value::Object(top));
    }
    Some(out)
}

fn usage(sworn: &Sworn) -> CompletionUsage {
    CompletionUsage {
        prompt_tokens: sworn.prompt_tokens,
        completion_tokens: sworn.completion_tokens,
        total_tokens: sworn.prompt_tokens.saturating_add(sworn.completion_tokens),
        ..CompletionUsage::default()
    }
}

fn chat_finish(reason: FinishReason, tool_calls: &[ToolCall]) -> OpenAiFinish {
    match reason {
        FinishReason::Stop if !tool_calls.is_empty() => OpenAiFinish::ToolCalls,
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

/// A whole, non-streamed answer with its receipt; `logprobs` are its tokens' (empty
/// unless the request asked for them).
#[allow(deprecated)]
pub fn whole_answer(
    meta: &AnswerMeta,
    text: String,
    logprobs: &[TokenLogprob],
    sworn: &Sworn,
) -> Value {
    let object = match meta.endpoint {
        Endpoint::Chat => serde_json::to_value(CreateChatCompletionResponse {
            id: meta.id.clone(),
            choices: vec![ChatChoice {
                index: 0,
                message: ChatCompletionResponseMessage {
                    // An answer made only of calls has no content (`null`), as OpenAI's.
                    content: (sworn.tool_calls.is_empty() || !text.is_empty()).then_some(text),
                    tool_calls: (!sworn.tool_calls.is_empty()).then(|| {
                        (sworn.tool_calls.iter())
                            .map(|c| {
                                ChatCompletionMessageToolCalls::Function(
                                    ChatCompletionMessageToolCall {
                                        id: c.id.clone(),
                                        function: FunctionCall {
                                            name: c.name.clone(),
                                            arguments: c.arguments.clone(),
                                        },
                                    },
                                )
                            })
                            .collect()
                    }),
                    role: Role::Assistant,
                    ..ChatCompletionResponseMessage::default()
                },
                finish_reason: Some(chat_finish(sworn.finish_reason, &sworn.tool_calls)),
                logprobs: chat_logprobs(meta, logprobs),
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
                logprobs: completion_logprobs(meta, logprobs, 0),
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

/// One choice of an answer with `n` > 1, read whole.
#[derive(Debug)]
pub struct WholeChoice {
    /// Its text.
    pub text: String,
    /// Its tokens' log probabilities (when asked for).
    pub logprobs: Vec<TokenLogprob>,
    /// Its sworn end.
    pub sworn: Sworn,
}

/// A whole answer of several choices. Each choice is sworn on its own: its receipt is its
/// `sworn` member (inside the choice, not at the top level), and `usage` counts the prompt
/// once and every choice's tokens.
pub fn choices_answer(meta: &AnswerMeta, choices: Vec<WholeChoice>) -> Value {
    let mut completion_tokens = 0u32;
    let mut merged = Vec::with_capacity(choices.len());
    let mut base = Value::Null;
    for (i, choice) in choices.into_iter().enumerate() {
        completion_tokens = completion_tokens.saturating_add(choice.sworn.completion_tokens);
        let mut object = whole_answer(meta, choice.text, &choice.logprobs, &choice.sworn);
        let receipt = object.as_object_mut().and_then(|o| o.remove("sworn"));
        if let Some(mut first) = object["choices"].as_array_mut().and_then(|c| c.pop()) {
            first["index"] = Value::from(i);
            if let (Value::Object(map), Some(receipt)) = (&mut first, receipt) {
                map.insert("sworn".to_string(), receipt);
            }
            merged.push(first);
        }
        if base.is_null() {
            base = object;
        }
    }
    if let Value::Object(map) = &mut base {
        map.insert("choices".to_string(), Value::Array(merged));
        if let Some(Value::Object(usage)) = map.get_mut("usage") {
            let prompt = usage
                .get("prompt_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            usage.insert("completion_tokens".into(), Value::from(completion_tokens));
            usage.insert(
                "total_tokens".into(),
                Value::from(prompt + u64::from(completion_tokens)),
            );
        }
    }
    base
}

/// A stream chunk of choice `index` of an answer with `n` > 1: [`chunk`] with its choices
/// renumbered, and a finishing chunk carrying the choice's receipt as the choice's `sworn`.
pub fn choice_chunk(
    meta: &AnswerMeta,
    index: usize,
    body: ChunkBody<'_>,
    sworn: Option<&Sworn>,
) -> Value {
    let mut object = chunk(meta, body);
    if let Some(choices) = object["choices"].as_array_mut() {
        for choice in choices {
            choice["index"] = Value::from(index);
            if let (Value::Object(map), Some(receipt)) =
                (choice, sworn.and_then(|s| s.receipt.as_ref()))
            {
                map.insert(
                    "sworn".to_string(),
                    serde_json::to_value(receipt).unwrap_or(Value::Null),
                );
            }
        }
    }
    object
}

/// What a stream chunk carries.
#[derive(Debug, Clone, Copy)]
pub enum ChunkBody<'a> {
    /// The first chat chunk: the assistant role, no text yet.
    Role,
    /// Text, with the log probabilities of its tokens, and (completions) the character
    /// offset where it starts in the answer.
    Text(&'a str, &'a [TokenLogprob], u32),
    /// The tool calls, whole (one delta per call, each with its id, name and arguments).
    ToolCalls(&'a [ToolCall]),
    /// The finish reason, no text (and the calls made, which make it `tool_calls`).
    Finish(FinishReason, &'a [ToolCall]),
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
            let choice =
                |delta: ChatCompletionStreamResponseDelta,
                 finish: Option<OpenAiFinish>,
                 logprobs: Option<ChatChoiceLogprobs>| ChatChoiceStream {
                    index: 0,
                    delta,
                    finish_reason: finish,
                    logprobs,
                };
            let choices = match body {
                ChunkBody::Role => vec![choice(
                    ChatCompletionStreamResponseDelta {
                        role: Some(Role::Assistant),
                        content: Some(String::new()),
                        ..ChatCompletionStreamResponseDelta::default()
                    },
                    None,
                    None,
                )],
                ChunkBody::Text(text, logprobs, _) => vec![choice(
                    ChatCompletionStreamResponseDelta {
                        content: Some(text.to_string()),
                        ..ChatCompletionStreamResponseDelta::default()
                    },
                    None,
                    chat_logprobs(meta, logprobs),
                )],
                ChunkBody::ToolCalls(calls) => vec![choice(
                    ChatCompletionStreamResponseDelta {
                        tool_calls: Some(
                            (calls.iter().enumerate())
                                .map(|(i, c)| ChatCompletionMessageToolCallChunk {
                                    index: u32::try_from(i).unwrap_or(u32::MAX),
                                    id: Some(c.id.clone()),
                                    r#type: Some(FunctionType::Function),
                                    function: Some(FunctionCallStream {
                                        name: Some(c.name.clone()),
                                        arguments: Some(c.arguments.clone()),
                                    }),
                                })
                                .collect(),
                        ),
                        ..ChatCompletionStreamResponseDelta::default()
                    },
                    None,
                    None,
                )],
                ChunkBody::Finish(reason, calls) => vec![choice(
                    ChatCompletionStreamResponseDelta::default(),
                    Some(chat_finish(reason, calls)),
                    None,
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
                ChunkBody::Text(text, logprobs, offset) => vec![Choice {
                    text: text.to_string(),
                    index: 0,
                    logprobs: completion_logprobs(meta, logprobs, offset),
                    finish_reason: None,
                }],
                ChunkBody::ToolCalls(_) => Vec::new(),
                ChunkBody::Finish(reason, _) => vec![Choice {
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
