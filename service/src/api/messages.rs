//! One OpenAI chat message into the engine's [`ChatTurn`]: the roles and content shapes we
//! serve, and a clear 400 naming `messages[i]` for the ones we refuse (images, audio, tools).

use super::errors::ApiError;
use crate::scheduler::request::{ChatTurn, TurnRole};

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
            if m.tool_calls.is_some() || m.function_call.is_some() || m.audio.is_some() {
                return Err(unsupported(
                    "tool calls and audio in assistant messages are not supported",
                ));
            }
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
            (TurnRole::Assistant, text)
        }
        M::Tool(_) | M::Function(_) => {
            return Err(ApiError::unsupported(
                &param,
                format!("`{param}`: tool and function messages are not supported"),
            ));
        }
    };
    Ok(ChatTurn { role, content })
}
