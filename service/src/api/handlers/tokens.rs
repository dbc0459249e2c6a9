//! `POST /tokenize` and `POST /detokenize`, in vLLM's shapes, for clients that count
//! tokens with the served model's own chat template and tokeniser. Nothing is generated,
//! so nothing is sworn; a key and a request's worth of the key's rate are still needed.
//!
//! `/tokenize` takes `{"model", "prompt"}` (a completion prompt, special tokens added as
//! `/v1/completions` adds them) or `{"model", "messages"}` (rendered with the chat template
//! and the assistant turn opened, as `/v1/chat/completions` does) and answers `{"count",
//! "max_model_len", "tokens", "token_strs": null}`. `/detokenize` takes `{"model",
//! "tokens"}` and answers `{"prompt"}`. Other members are refused by name.

use std::sync::Arc;

use async_openai::types::chat::ChatCompletionRequestMessage;
use futures::Stream;
use serde::Deserialize;
use serde_json::json;
use warp::Buf;
use warp::http::HeaderMap;
use warp::reply::{Reply, Response};

use super::generate::{read_body, with_encoder};
use crate::api::body::{from_object, parse_object};
use crate::api::errors::ApiError;
use crate::api::messages::chat_turn;
use crate::api::request_id::RequestId;
use crate::api::state::AppState;
use crate::api::validation::{MAX_MESSAGES, check_model};
use crate::scheduler::request::PromptInput;

/// The `/tokenize` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenizeBody {
    model: String,
    prompt: Option<String>,
    messages: Option<Vec<ChatCompletionRequestMessage>>,
    /// Only `true` (what generation does) is served.
    add_special_tokens: Option<bool>,
    /// Only `true` (what generation does) is served.
    add_generation_prompt: Option<bool>,
}

/// The `/detokenize` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DetokenizeBody {
    model: String,
    tokens: Vec<u32>,
}

/// Which of the two routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRoute {
    /// `POST /tokenize`.
    Tokenize,
    /// `POST /detokenize`.
    Detokenize,
}

/// `POST /tokenize` or `POST /detokenize`.
pub async fn tokens<S, B>(
    state: Arc<AppState>,
    route: TokenRoute,
    request_id: RequestId,
    headers: HeaderMap,
    body: S,
) -> Response
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf,
{
    let answer = async {
        super::admit(&state, &headers)?;
        let bytes = read_body(body, state.max_body_bytes).await?;
        let (object, _) = parse_object(&bytes)?;
        let value = match route {
            TokenRoute::Tokenize => tokenize(&state, from_object(object)?, &request_id).await?,
            TokenRoute::Detokenize => detokenize(&state, from_object(object)?, &request_id).await?,
        };
        Ok(warp::reply::json(&value).into_response())
    };
    super::respond(&state, &request_id, answer.await)
}

async fn tokenize(
    state: &Arc<AppState>,
    body: TokenizeBody,
    request_id: &RequestId,
) -> Result<serde_json::Value, ApiError> {
    check_model(&body.model, &state.model.id)?;
    for (name, value) in [
        ("add_special_tokens", body.add_special_tokens),
        ("add_generation_prompt", body.add_generation_prompt),
    ] {
        if value == Some(false) {
            return Err(ApiError::unsupported(
                name,
                format!(
                    "`{name}` false is not supported: tokens are counted as generation adds them."
                ),
            ));
        }
    }
    let (prompt, param) = match (body.prompt, body.messages) {
        (Some(text), None) => (PromptInput::Text(text), "prompt"),
        (None, Some(messages)) if messages.is_empty() || messages.len() > MAX_MESSAGES => {
            return Err(ApiError::invalid_value(
                "messages",
                format!(
                    "`messages` must hold 1 to {MAX_MESSAGES} messages. Given: {}",
                    messages.len()
                ),
            ));
        }
        (None, Some(messages)) => {
            let turns = messages
                .into_iter()
                .enumerate()
                .map(|(i, m)| chat_turn(i, m));
            (
                PromptInput::Chat(turns.collect::<Result<_, _>>()?),
                "messages",
            )
        }
        _ => {
            return Err(ApiError::InvalidRequest {
                message: "Give exactly one of `prompt` and `messages`.".to_string(),
                param: Some("prompt".to_string()),
            });
        }
    };
    let tokens = with_encoder(state, param, request_id, move |e| e.encode(&prompt)).await?;
    Ok(json!({
        "count": tokens.len(),
        "max_model_len": state.model.context_length,
        "tokens": tokens,
        "token_strs": null,
    }))
}

async fn detokenize(
    state: &Arc<AppState>,
    body: DetokenizeBody,
    request_id: &RequestId,
) -> Result<serde_json::Value, ApiError> {
    check_model(&body.model, &state.model.id)?;
    let tokens = body.tokens;
    let text = with_encoder(state, "tokens", request_id, move |e| e.decode(&tokens)).await?;
    Ok(json!({ "prompt": text }))
}
