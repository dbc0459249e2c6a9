//! One OpenAI chat message into the engine's [`ChatTurn`]: the roles and content shapes we
//! serve, and a clear 400 naming `messages[i]` for the ones we refuse (images, audio,
//! custom tool calls, function messages).
//!
//! An assistant message's `tool_calls` and a `tool` message's `tool_call_id` are kept
//! beside the text: the chat template renders them in the model's own tool syntax, or the
//! encoder writes them in the generic form ([`crate::scheduler::engine_adapter`]).

use super::errors::ApiError;
use crate::scheduler::request::{ChatTurn, TurnCall, TurnRole};

/// Converts `messages[i]` into a turn the chat template can render.
pub(super) fn chat_turn(
    i: usize,
    message: async_openai::types::chat::ChatCompletionRequestMessage,
) -> Result<ChatTurn, ApiError> {
    use async_openai::types::chat::{
        ChatCompletionRequestAssistantMessageContent as Assistant,
        ChatCompletionRequestAssistantMessageContentPart as AssistantPart,
        ChatCompletionRequestDeveloperMessageContent as Developer,
        ChatCompletionRequestDeveloperMessageContentPart as DeveloperPart,
        ChatCompletionRequestMessage as M, ChatCompletionRequestSystemMessageContent as System,
        ChatCompletionRequestSystemMessageContentPart as SystemPart,
        ChatCompletionRequestUserMessageContent as User,
        ChatCompletionRequestUserMessageContentPart as UserPart,
    };
    let param = format!("messages[{i}]");
    let unsupported = |what: &str| {
        ApiError::unsupported(
            &format!("messages[{i}]"),
            format!("`messages[{i}]`: {what}"),
        )
    };
    let (role, content) = match message {
        M::System(m) => (
            TurnRole::System,
            match m.content {
                System::Text(t) => t,
                System::Array(parts) => parts
                    .into_iter()
                    .map(|SystemPart::Text(p)| p.text)
                    .collect::<Vec<_>>()
                    .concat(),
            },
        ),
        M::Developer(m) => (
            TurnRole::System,
            match m.content {
                Developer::Text(t) => t,
                Developer::Array(parts) => parts
                    .into_iter()
                    .map(|DeveloperPart::Text(p)| p.text)
                    .collect::<Vec<_>>()
                    .concat(),
            },
        ),
        M::User(m) => {
            let text = match m.content {
                User::Text(t) => t,
                User::Array(parts) => {
                    let mut text = String::new();
                    for part in parts {
                        match part {
                            UserPart::Text(p) => text.push_str(&p.text),
                            UserPart::ImageUrl(_) => {
                                return Err(unsupported("image inputs are not supported"));
                            }
                            UserPart::InputAudio(_) => {
                                return Err(unsupported("audio inputs are not supported"));
                            }
                            UserPart::File(_) => {
                                return Err(unsupported("file inputs are not supported"));
                            }
                        }
                    }
                    text
                }
            };
            (TurnRole::User, text)
        }
        #[allow(deprecated)]
        M::Assistant(m) => {
            if m.function_call.is_some() || m.audio.is_some() {
                return Err(unsupported(
                    "`function_call` and audio in assistant messages are not supported",
                ));
            }
            let calls = match m.tool_calls {
                Some(calls) => called(i, calls)?,
                None => Vec::new(),
            };
            let text = match m.content {
                None => String::new(),
                Some(Assistant::Text(t)) => t,
                Some(Assistant::Array(parts)) => {
                    let mut text = String::new();
                    for part in parts {
                        match part {
                            AssistantPart::Text(p) => text.push_str(&p.text),
                            AssistantPart::Refusal(p) => text.push_str(&p.refusal),
                        }
                    }
                    text
                }
            };
            return Ok(ChatTurn {
                tool_calls: calls,
                ..ChatTurn::text(TurnRole::Assistant, text)
            });
        }
        M::Tool(m) => {
            use async_openai::types::chat::ChatCompletionRequestToolMessageContent as Tool;
            use async_openai::types::chat::ChatCompletionRequestToolMessageContentPart as ToolPart;
            let text = match m.content {
                Tool::Text(t) => t,
                Tool::Array(parts) => parts
                    .into_iter()
                    .map(|ToolPart::Text(p)| p.text)
                    .collect::<Vec<_>>()
                    .concat(),
            };
            return Ok(ChatTurn {
                tool_call_id: Some(m.tool_call_id),
                ..ChatTurn::text(TurnRole::Tool, text)
            });
        }
        M::Function(_) => {
            return Err(ApiError::unsupported(
                &param,
                format!("`{param}`: function messages are not supported; use tools"),
            ));
        }
    };
    Ok(ChatTurn::text(role, content))
}

/// The calls of an assistant message.
fn called(
    i: usize,
    calls: Vec<async_openai::types::chat::ChatCompletionMessageToolCalls>,
) -> Result<Vec<TurnCall>, ApiError> {
    use async_openai::types::chat::ChatCompletionMessageToolCalls as Call;
    let mut written = Vec::with_capacity(calls.len());
    for call in calls {
        let Call::Function(call) = call else {
            return Err(ApiError::unsupported(
                &format!("messages[{i}]"),
                format!("`messages[{i}]`: only function tool calls are supported"),
            ));
        };
        // Arguments are JSON text; text that is not JSON is kept as a string.
        let arguments = serde_json::from_str(&call.function.arguments)
            .unwrap_or(serde_json::Value::String(call.function.arguments));
        written.push(TurnCall {
            id: call.id,
            name: call.function.name,
            arguments,
        });
    }
    Ok(written)
}
