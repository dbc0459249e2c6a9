//! Parse, don't validate: request bytes → `async-openai` types → [`CheckedRequest`] (every
//! field checked, defaults applied) → [`ValidRequest`] (tokenised, context-checked). Only a
//! `ValidRequest` reaches the scheduler and the receipt builder.
//!
//! Messages name the field, the limit and the value received.

use serde_json::Value;
use sworn_ledger::jcs;

use super::body::{from_object, parse_object};
use super::errors::ApiError;
use super::messages::chat_turn;
use super::models::{CreateChatCompletionRequest, CreateCompletionRequest};
use super::response_format::{self, StructuredOutput};
use super::tools::{self, ToolUse};
use async_openai::types::chat::{ChatCompletionStreamOptions, StopConfiguration};

use crate::engine::sampling::{
    MAX_TOP_LOGPROBS, SamplingError, SamplingParams, SamplingRequest, applied_value,
};
use crate::scheduler::request::PromptInput;

/// Most chat messages per request: bounds template work before tokenisation.
pub const MAX_MESSAGES: usize = 1024;

/// Request limits that depend on configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest `max_tokens` a client may ask for.
    pub max_tokens_limit: u32,
    /// `max_tokens` when the client gives none (capped by what the context leaves).
    pub default_max_tokens: u32,
    /// Largest `n`: each choice holds a KV slot, so at most the engine's slot count
    /// (`--max-batch`).
    pub max_choices: u8,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tokens_limit: 4096,
            default_max_tokens: 256,
            max_choices: 16,
        }
    }
}

/// Which endpoint a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Completion,
}

impl Endpoint {
    /// The endpoint's name in receipts (`params.endpoint`).
    pub fn receipt_name(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat.completions",
            Endpoint::Completion => "completions",
        }
    }

    /// The prompt field's name (`messages` or `prompt`), used in errors.
    pub fn prompt_param(self) -> &'static str {
        match self {
            Endpoint::Chat => "messages",
            Endpoint::Completion => "prompt",
        }
    }
}

/// A request whose fields are all checked, before tokenisation.
#[derive(Debug, Clone)]
pub struct CheckedRequest {
    /// Which endpoint.
    pub endpoint: Endpoint,
    /// The model id as asked for (already matched against the served model).
    pub model: String,
    /// The prompt.
    pub prompt: PromptInput,
    /// The canonical (RFC 8785) bytes the prompt commitment covers: the `messages` array as
    /// received, or the prompt string.
    pub prompt_canonical: Vec<u8>,
    /// `max_tokens` / `max_completion_tokens` if the client gave one.
    pub max_tokens: Option<u32>,
    /// Sampling, stop strings and budget, validated (`max_tokens` is final only in a
    /// [`ValidRequest`]).
    pub sampling: SamplingParams,
    /// Whether the seed was chosen by the client (recorded in the receipt).
    pub seed_given: bool,
    /// How many choices (`n`, ≥ 1).
    pub choices: u8,
    /// Server-sent events?
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// A JSON `response_format` (chat only), enforced while decoding.
    pub structured: Option<StructuredOutput>,
    /// The tools offered (chat only).
    pub tools: Option<ToolUse>,
}

/// A request ready for the scheduler: prompt tokenised and fitted into the context.
#[derive(Debug, Clone)]
pub struct ValidRequest {
    /// Every checked field.
    pub checked: CheckedRequest,
    /// Prompt token ids.
    pub prompt_tokens: Vec<u32>,
}

impl ValidRequest {
    /// The resolved completion budget, ≥ 1 (prompt + this fits the context).
    pub fn max_tokens(&self) -> u32 {
        self.checked.sampling.max_tokens()
    }
}

/// Parses and checks a chat request body.
pub fn check_chat(
    body: &[u8],
    served_model: &str,
    limits: &Limits,
) -> Result<CheckedRequest, ApiError> {
    let (object, shared) = parse_object(body)?;
    let messages_value = object.get("messages").cloned();
    // Read before the typed parse so that a malformed form gets this module's message.
    let structured = response_format::check(object.get("response_format"))?;
    let tool_use = tools::check(&object)?;
    if structured.is_some() && tool_use.as_ref().is_some_and(ToolUse::offered) {
        return Err(ApiError::unsupported(
            "response_format",
            "A JSON `response_format` together with `tools` is not supported: tool calls \
             already constrain the answer. Use `tool_choice: \"none\"` or drop one.",
        ));
    }
    let request: CreateChatCompletionRequest = from_object(object)?;
    #[allow(deprecated)]
    let CreateChatCompletionRequest {
        messages,
        model,
        max_completion_tokens,
        max_tokens,
        top_logprobs,
        logprobs,
        logit_bias,
        functions,
        function_call,
        audio,
        modalities,
        prediction,
        ..
    } = request;
    check_model(&model, served_model)?;
    if messages.is_empty() {
        return Err(ApiError::invalid_value(
            "messages",
            "`messages` must contain at least one message. Given: 0 messages",
        ));
    }
    if messages.len() > MAX_MESSAGES {
        return Err(ApiError::invalid_value(
            "messages",
            format!(
                "`messages` must contain at most {MAX_MESSAGES} messages. Given: {}",
                messages.len()
            ),
        ));
    }
    let mut turns = Vec::with_capacity(messages.len());
    for (i, message) in messages.into_iter().enumerate() {
        turns.push(chat_turn(i, message)?);
    }
    refuse_if(
        functions.is_some() || function_call.is_some(),
        "functions",
        "Function calling is not supported.",
    )?;
    refuse_if(audio.is_some(), "audio", "Audio output is not supported.")?;
    refuse_if(
        modalities.as_ref().is_some_and(|m| m.len() > 1),
        "modalities",
        "Only text output is supported.",
    )?;
    refuse_if(
        prediction.is_some(),
        "prediction",
        "Predicted outputs are not supported.",
    )?;
    let logprobs = chat_logprobs(logprobs, top_logprobs)?;
    refuse_if(
        logit_bias.as_ref().is_some_and(|b| !b.is_empty()),
        "logit_bias",
        "`logit_bias` is not supported.",
    )?;
    let canonical_messages = messages_value.unwrap_or(Value::Array(Vec::new()));
    let prompt_canonical = jcs::canonicalize(&canonical_messages).map_err(|e| {
        ApiError::invalid_value(
            "messages",
            format!("`messages` cannot be canonicalised for the receipt: {e}"),
        )
    })?;
    let max_tokens = max_completion_tokens.or(max_tokens);
    let param = if max_completion_tokens.is_some() {
        "max_completion_tokens"
    } else {
        "max_tokens"
    };
    let input = match tool_use.as_ref().and_then(ToolUse::offer) {
        Some(offer) => PromptInput::ChatWithTools(turns, offer),
        None => PromptInput::Chat(turns),
    };
    let prompt = (input, prompt_canonical);
    let budget = (max_tokens, param);
    let mut checked = shared.check(Endpoint::Chat, model, prompt, budget, limits)?;
    checked.structured = structured;
    checked.tools = tool_use;
    checked.sampling = checked.sampling.with_logprobs(logprobs);
    Ok(checked)
}

/// Parses and checks a completions request body.
pub fn check_completion(
    body: &[u8],
    served_model: &str,
    limits: &Limits,
) -> Result<CheckedRequest, ApiError> {
    use async_openai::types::chat::Prompt;
    let (object, shared) = parse_object(body)?;
    let request: CreateCompletionRequest = from_object(object)?;
    let CreateCompletionRequest {
        model,
        prompt,
        suffix,
        max_tokens,
        logprobs,
        echo,
        best_of,
        logit_bias,
        ..
    } = request;
    check_model(&model, served_model)?;
    let text = match prompt {
        Prompt::String(text) => text,
        Prompt::StringArray(mut list) if list.len() == 1 => list.remove(0),
        Prompt::StringArray(list) => {
            return Err(ApiError::unsupported(
                "prompt",
                format!(
                    "Batched prompts are not supported: `prompt` must be one string. Given: {} strings",
                    list.len()
                ),
            ));
        }
        Prompt::IntegerArray(_) | Prompt::ArrayOfIntegerArray(_) => {
            return Err(ApiError::unsupported(
                "prompt",
                "Token-id prompts are not supported: `prompt` must be a string.",
            ));
        }
    };
    if text.is_empty() {
        return Err(ApiError::invalid_value(
            "prompt",
            "`prompt` must not be empty.",
        ));
    }
    refuse_if(suffix.is_some(), "suffix", "`suffix` is not supported.")?;
    refuse_if(echo == Some(true), "echo", "`echo` is not supported.")?;
    let logprobs = match logprobs {
        None => None,
        Some(top) => Some(top_count("logprobs", i64::from(top))?),
    };
    refuse_if(
        best_of.is_some_and(|b| b > 1),
        "best_of",
        "`best_of` other than 1 is not supported.",
    )?;
    refuse_if(
        logit_bias.as_ref().is_some_and(|b| !b.is_empty()),
        "logit_bias",
        "`logit_bias` is not supported.",
    )?;
    let prompt_canonical = jcs::canonicalize(&Value::String(text.clone())).map_err(|e| {
        ApiError::invalid_value("prompt", format!("`prompt` cannot be canonicalised: {e}"))
    })?;
    let prompt = (PromptInput::Text(text), prompt_canonical);
    let mut checked = shared.check(
        Endpoint::Completion,
        model,
        prompt,
        (max_tokens, "max_tokens"),
        limits,
    )?;
    checked.sampling = checked.sampling.with_logprobs(logprobs);
    Ok(checked)
}

/// Chat's `logprobs` (a flag) and `top_logprobs` (alternatives per token, which needs the
/// flag): how many alternatives to report, `None` for no log probabilities.
fn chat_logprobs(logprobs: Option<bool>, top: Option<u8>) -> Result<Option<u8>, ApiError> {
    match (logprobs == Some(true), top) {
        (false, None) => Ok(None),
        (false, Some(_)) => Err(ApiError::invalid_value(
            "top_logprobs",
            "`top_logprobs` needs `logprobs` set to true.",
        )),
        (true, top) => Ok(Some(top_count(
            "top_logprobs",
            i64::from(top.unwrap_or(0)),
        )?)),
    }
}

/// A count of alternatives per token, within [`MAX_TOP_LOGPROBS`].
fn top_count(param: &str, value: i64) -> Result<u8, ApiError> {
    u8::try_from(value)
        .ok()
        .filter(|&n| n <= MAX_TOP_LOGPROBS)
        .ok_or_else(|| {
            ApiError::invalid_value(
                param,
                format!("`{param}` must be between 0 and {MAX_TOP_LOGPROBS}. Given: {value}"),
            )
        })
}

impl CheckedRequest {
    /// Fits the tokenised prompt into the model's context and resolves `max_tokens`.
    pub fn into_valid(
        self,
        prompt_tokens: Vec<u32>,
        context_length: usize,
        limits: &Limits,
    ) -> Result<ValidRequest, ApiError> {
        let prompt_len = prompt_tokens.len();
        let param = self.endpoint.prompt_param();
        if prompt_len == 0 {
            return Err(ApiError::invalid_value(
                param,
                format!("`{param}` tokenised to zero tokens."),
            ));
        }
        let room = context_length.saturating_sub(prompt_len);
        let max_tokens = match self.max_tokens {
            Some(asked) => asked as usize,
            // No budget given: use the default, shrunk to what the context leaves.
            None => (limits.default_max_tokens as usize).min(room),
        };
        if max_tokens == 0 || prompt_len + max_tokens > context_length {
            let max_tokens = max_tokens.max(1);
            return Err(ApiError::ContextLengthExceeded {
                param,
                context_length,
                prompt_tokens: prompt_len,
                max_tokens,
                total: prompt_len + max_tokens,
            });
        }
        let max_tokens = u32::try_from(max_tokens).unwrap_or(u32::MAX);
        let mut checked = self;
        checked.sampling = checked.sampling.with_max_tokens(max_tokens);
        Ok(ValidRequest {
            checked,
            prompt_tokens,
        })
    }
}

/// The fields both endpoints share, read by name from the body (with the `top_k`
/// extension that OpenAI's schema lacks), so that one function checks them for both.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct SharedFields {
    n: Option<u8>,
    seed: Option<i64>,
    stream: Option<bool>,
    stream_options: Option<ChatCompletionStreamOptions>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<u64>,
    frequency_penalty: Option<f32>,
    presence_penalty: Option<f32>,
    stop: Option<StopConfiguration>,
}

impl SharedFields {
    /// The names read, the only members copied out of the body to read them.
    pub(super) const NAMES: [&'static str; 10] = [
        "n",
        "seed",
        "stream",
        "stream_options",
        "temperature",
        "top_p",
        "top_k",
        "frequency_penalty",
        "presence_penalty",
        "stop",
    ];

    fn check(
        self,
        endpoint: Endpoint,
        model: String,
        (prompt, prompt_canonical): (PromptInput, Vec<u8>),
        (max_tokens, max_tokens_param): (Option<u32>, &'static str),
        limits: &Limits,
    ) -> Result<CheckedRequest, ApiError> {
        let choices = self.n.unwrap_or(1);
        if choices == 0 || choices > limits.max_choices {
            return Err(ApiError::invalid_value(
                "n",
                format!(
                    "`n` must be between 1 and {} on this server. Given: {choices}",
                    limits.max_choices
                ),
            ));
        }
        for (name, value) in [
            ("frequency_penalty", self.frequency_penalty),
            ("presence_penalty", self.presence_penalty),
        ] {
            if let Some(v) = value.filter(|&v| v != 0.0) {
                return Err(ApiError::unsupported(
                    name,
                    format!("`{name}` is not supported (only 0). Given: {v}"),
                ));
            }
        }
        // The sampling options are validated once, by the engine's own rules; a float is
        // applied (and recorded) as the shortest decimal of the f32 the OpenAI types hold.
        let asked = SamplingRequest {
            temperature: self.temperature.map(applied_value),
            top_p: self.top_p.map(applied_value),
            top_k: self.top_k,
            // The seed's bits, reinterpreted: every i64 the client can send is a distinct seed.
            seed: self.seed.map(|s| u64::from_ne_bytes(s.to_ne_bytes())),
            max_tokens,
            stop: match self.stop {
                None => Vec::new(),
                Some(StopConfiguration::String(s)) => vec![s],
                Some(StopConfiguration::StringArray(list)) => list,
            },
        };
        let sampling = asked
            .validate(limits.max_tokens_limit)
            .map_err(|e| sampling_error(&e, max_tokens_param))?;
        let stream = self.stream.unwrap_or(false);
        if self.stream_options.is_some() && !stream {
            return Err(ApiError::invalid_value(
                "stream_options",
                "`stream_options` is only allowed when `stream` is true.",
            ));
        }
        Ok(CheckedRequest {
            endpoint,
            model,
            prompt,
            prompt_canonical,
            max_tokens,
            sampling,
            seed_given: self.seed.is_some(),
            choices,
            stream,
            include_usage: self.stream_options.and_then(|o| o.include_usage) == Some(true),
            structured: None,
            tools: None,
        })
    }
}

/// A refused sampling option as the API's error, naming the field.
fn sampling_error(error: &SamplingError, max_tokens_param: &'static str) -> ApiError {
    let param = match error {
        SamplingError::Temperature { .. } => "temperature",
        SamplingError::TopP { .. } => "top_p",
        SamplingError::TopK { .. } => "top_k",
        SamplingError::MaxTokens { .. } => max_tokens_param,
        SamplingError::StopCount { .. } | SamplingError::StopLength { .. } => "stop",
        SamplingError::BadLogits { .. } => "messages",
    };
    let message = match error {
        SamplingError::MaxTokens { value, limit } => {
            format!("`{max_tokens_param}` must be >= 1 and <= {limit}. Given: {value}")
        }
        other => other.to_string(),
    };
    ApiError::invalid_value(param, message)
}

fn refuse_if(condition: bool, param: &str, message: &str) -> Result<(), ApiError> {
    if condition {
        Err(ApiError::unsupported(param, message))
    } else {
        Ok(())
    }
}

/// The served model's id, or `model_not_found`.
pub(super) fn check_model(model: &str, served: &str) -> Result<(), ApiError> {
    if model.is_empty() {
        return Err(ApiError::InvalidRequest {
            message: "you must provide a model parameter".to_string(),
            param: Some("model".to_string()),
        });
    }
    if model != served {
        return Err(ApiError::ModelNotFound {
            model: model
                .chars()
                .take(sworn_ledger::receipt::MAX_FIELD_LEN)
                .collect(),
        });
    }
    Ok(())
}

#[cfg(test)]
#[path = "validation_tests.rs"]
mod tests;
