//! Server-sent events for `stream: true`.
//!
//! Order: (chat) a role chunk; one chunk per text piece; a chunk with the finish reason; a
//! closing chunk with no choices carrying `usage` (when `stream_options.include_usage`) and
//! the `"sworn"` receipt; then `data: [DONE]`. A failure after the stream began is sent as one
//! `data: {"error":{…}}` event, then `[DONE]`. Dropping the stream (client gone) closes the
//! channel to the generation task, which stops the engine and swears the partial answer.

use std::convert::Infallible;

use futures::Stream;
use futures::stream::{self, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use warp::sse::Event;

use super::errors::ApiError;
use super::responses::{AnswerMeta, ChunkBody, choice_chunk, chunk};
use super::validation::Endpoint;
use crate::swear::Outgoing;

fn data(value: &Value) -> Result<Event, Infallible> {
    Ok(Event::default().data(value.to_string()))
}

fn error_events(err: &ApiError) -> Vec<Result<Event, Infallible>> {
    let envelope = serde_json::to_value(err.envelope()).unwrap_or(Value::Null);
    vec![data(&envelope), Ok(Event::default().data("[DONE]"))]
}

struct StreamState {
    meta: AnswerMeta,
    include_usage: bool,
    outgoing: mpsc::Receiver<Outgoing>,
    request_id: String,
    /// Characters of answer text sent so far (completions' `text_offset`).
    offset: u32,
}

/// The event stream for one answer.
pub fn events(
    meta: AnswerMeta,
    include_usage: bool,
    outgoing: mpsc::Receiver<Outgoing>,
    request_id: String,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let opening = match meta.endpoint {
        Endpoint::Chat => vec![data(&chunk(&meta, ChunkBody::Role))],
        Endpoint::Completion => Vec::new(),
    };
    let state = StreamState {
        meta,
        include_usage,
        outgoing,
        request_id,
        offset: 0,
    };
    let body = stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        let next = state.outgoing.recv().await;
        let meta = &state.meta;
        Some(match next {
            Some(Outgoing::Text(text, logprobs)) => {
                let body = ChunkBody::Text(&text, &logprobs, state.offset);
                let event = vec![data(&chunk(meta, body))];
                let chars = u32::try_from(text.chars().count()).unwrap_or(u32::MAX);
                state.offset = state.offset.saturating_add(chars);
                (event, Some(state))
            }
            Some(Outgoing::Done(sworn)) => {
                let closing = ChunkBody::Closing {
                    sworn: &sworn,
                    include_usage: state.include_usage,
                };
                let mut events = Vec::with_capacity(4);
                if !sworn.tool_calls.is_empty() {
                    events.push(data(&chunk(meta, ChunkBody::ToolCalls(&sworn.tool_calls))));
                }
                let finish = ChunkBody::Finish(sworn.finish_reason, &sworn.tool_calls);
                events.push(data(&chunk(meta, finish)));
                events.push(data(&chunk(meta, closing)));
                events.push(Ok(Event::default().data("[DONE]")));
                (events, None)
            }
            Some(Outgoing::Failed(err)) => (
                error_events(&ApiError::from_swear(&err, &state.request_id)),
                None,
            ),
            // The generation task ended without a final message.
            None => (
                error_events(&ApiError::Internal {
                    request_id: state.request_id.clone(),
                }),
                None,
            ),
        })
    });
    stream::iter(opening).chain(body.flat_map(stream::iter))
}

/// The event stream of an answer with `n` > 1: each choice's chunks as they come (their
/// `index` says whose), each choice's finishing chunk carrying its receipt in the choice
/// (`choices[0].sworn`), then one closing chunk with no choices (and `usage` over all
/// choices when asked for) and `[DONE]`. A choice that fails ends the stream with the
/// error event.
pub fn choice_events(
    meta: AnswerMeta,
    include_usage: bool,
    outgoing: Vec<mpsc::Receiver<Outgoing>>,
    request_id: String,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let choices = outgoing.len();
    let opening: Vec<_> = match meta.endpoint {
        Endpoint::Chat => (0..choices)
            .map(|i| data(&choice_chunk(&meta, i, ChunkBody::Role, None)))
            .collect(),
        Endpoint::Completion => Vec::new(),
    };
    let tagged = outgoing.into_iter().enumerate().map(|(i, mut receiver)| {
        stream::poll_fn(move |cx| receiver.poll_recv(cx)).map(move |message| (i, message))
    });
    let merged = stream::select_all(tagged);
    struct Merge {
        meta: AnswerMeta,
        offsets: Vec<u32>,
        done: usize,
        prompt_tokens: u32,
        completion_tokens: u32,
        failed: bool,
    }
    let state = Merge {
        meta,
        offsets: vec![0; choices],
        done: 0,
        prompt_tokens: 0,
        completion_tokens: 0,
        failed: false,
    };
    let body = merged
        .scan(state, move |state, (i, message)| {
            let meta = &state.meta;
            let events = if state.failed {
                Vec::new()
            } else {
                match message {
                    Outgoing::Text(text, logprobs) => {
                        let body = ChunkBody::Text(&text, &logprobs, state.offsets[i]);
                        let chars = u32::try_from(text.chars().count()).unwrap_or(u32::MAX);
                        state.offsets[i] = state.offsets[i].saturating_add(chars);
                        vec![data(&choice_chunk(meta, i, body, None))]
                    }
                    Outgoing::Done(sworn) => {
                        state.done += 1;
                        state.prompt_tokens = sworn.prompt_tokens;
                        state.completion_tokens =
                            state.completion_tokens.saturating_add(sworn.completion_tokens);
                        let mut events = Vec::with_capacity(4);
                        if !sworn.tool_calls.is_empty() {
                            let calls = ChunkBody::ToolCalls(&sworn.tool_calls);
                            events.push(data(&choice_chunk(meta, i, calls, None)));
                        }
                        let finish = ChunkBody::Finish(sworn.finish_reason, &sworn.tool_calls);
                        events.push(data(&choice_chunk(meta, i, finish, Some(&sworn))));
                        if state.done == choices {
                            let mut closing = chunk(meta, ChunkBody::Role);
                            closing["choices"] = Value::Array(Vec::new());
                            if include_usage {
                                closing["usage"] = serde_json::json!({
                                    "prompt_tokens": state.prompt_tokens,
                                    "completion_tokens": state.completion_tokens,
                                    "total_tokens": state.prompt_tokens.saturating_add(state.completion_tokens),
                                });
                            }
                            events.push(data(&closing));
                            events.push(Ok(Event::default().data("[DONE]")));
                        }
                        events
                    }
                    Outgoing::Failed(err) => {
                        state.failed = true;
                        error_events(&ApiError::from_swear(&err, &request_id))
                    }
                }
            };
            futures::future::ready(Some(events))
        })
        .flat_map(stream::iter);
    stream::iter(opening).chain(body)
}
