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
use super::responses::{AnswerMeta, ChunkBody, chunk};
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
    };
    let body = stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        let next = state.outgoing.recv().await;
        let meta = &state.meta;
        Some(match next {
            Some(Outgoing::Text(text)) => (
                vec![data(&chunk(meta, ChunkBody::Text(&text)))],
                Some(state),
            ),
            Some(Outgoing::Done(sworn)) => {
                let closing = ChunkBody::Closing {
                    sworn: &sworn,
                    include_usage: state.include_usage,
                };
                let events = vec![
                    data(&chunk(meta, ChunkBody::Finish(sworn.finish_reason))),
                    data(&chunk(meta, closing)),
                    Ok(Event::default().data("[DONE]")),
                ];
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
