//! `POST /v1/chat/completions` and `POST /v1/completions`.
//!
//! Auth → request budget → body (capped) → parse and check → template and tokenise (blocking
//! task) → context check → token budget → queue → the generation task ([`super::super::swear`])
//! → a whole JSON answer or an event stream. Every failure becomes an envelope here, never a
//! rejection.

use std::sync::Arc;
use std::time::Instant;

use futures::{Stream, StreamExt};
use warp::http::HeaderMap;
use warp::reply::Response;
use warp::{Buf, Reply};

use crate::api::errors::ApiError;
use crate::api::request_id::RequestId;
use crate::api::responses::{self, AnswerMeta, whole_answer};
use crate::api::sse;
use crate::api::state::{AppState, Lifecycle};
use crate::api::validation::{self, Endpoint, ValidRequest};
use crate::scheduler::request::GenerationRequest;
use crate::scheduler::{GeneratorError, PromptEncoder, SubmitError};
use crate::swear::{self, Charge, Outgoing, SwearError, SwornRequest};

/// `POST /v1/chat/completions` or `POST /v1/completions`, as `endpoint` says.
pub async fn answer<S, B>(
    state: Arc<AppState>,
    endpoint: Endpoint,
    request_id: RequestId,
    headers: HeaderMap,
    body: S,
) -> Response
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf,
{
    let arrived = Instant::now();
    let result = run(&state, endpoint, &request_id, &headers, body, arrived).await;
    super::respond(&state, &request_id, result)
}

/// Reads the body, refusing it as soon as it passes `limit` bytes (whatever the
/// `Content-Length` header claims).
pub async fn read_body<S, B>(body: S, limit: usize) -> Result<Vec<u8>, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf,
{
    let mut body = std::pin::pin!(body);
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| ApiError::InvalidRequest {
            message: format!("The request body could not be read: {e}"),
            param: None,
        })?;
        if out.len() + chunk.remaining() > limit {
            return Err(ApiError::BodyTooLarge { limit });
        }
        while chunk.has_remaining() {
            let piece = chunk.chunk();
            out.extend_from_slice(piece);
            let n = piece.len();
            chunk.advance(n);
        }
    }
    Ok(out)
}

async fn run<S, B>(
    state: &Arc<AppState>,
    endpoint: Endpoint,
    request_id: &RequestId,
    headers: &HeaderMap,
    body: S,
    arrived: Instant,
) -> Result<Response, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf,
{
    match state.lifecycle() {
        Lifecycle::Ready => {}
        Lifecycle::Draining => {
            return Err(ApiError::Unavailable {
                message: "The server is shutting down.".to_string(),
                code: "shutting_down",
                retry_after_s: 5,
            });
        }
        Lifecycle::LedgerFailed => {
            return Err(ApiError::Unavailable {
                message: "The log cannot record answers after a storage fault; this instance is restarting.".to_string(),
                code: "ledger_unavailable",
                retry_after_s: 5,
            });
        }
    }
    let tenant = super::admit(state, headers)?;
    let bytes = read_body(body, state.max_body_bytes).await?;
    let checked = match endpoint {
        Endpoint::Chat => validation::check_chat(&bytes, &state.model.id, &state.limits)?,
        Endpoint::Completion => {
            validation::check_completion(&bytes, &state.model.id, &state.limits)?
        }
    };
    drop(bytes);
    let prompt = checked.prompt.clone();
    let param = checked.endpoint.prompt_param();
    let prompt_tokens = with_encoder(state, param, request_id, move |e| e.encode(&prompt)).await?;
    let valid = checked.into_valid(prompt_tokens, state.model.context_length, &state.limits)?;
    // A JSON response_format is compiled for this model's vocabulary before anything is
    // charged or queued: a schema it cannot enforce is a 400 naming what is unsupported.
    let syntax = state.model.encoder.tool_syntax();
    let spec = match (&valid.checked.structured, &valid.checked.tools) {
        (Some(structured), _) => Some(("response_format", structured.shape.constraint())),
        (None, Some(tools)) => tools.constraint(syntax).map(|spec| ("tools", spec)),
        (None, None) => None,
    };
    let constraint = match spec {
        Some((param, spec)) => {
            let compiled = with_encoder(state, param, request_id, move |e| {
                e.constrain(&spec).map_err(|err| GeneratorError::Encode {
                    reason: err.to_string(),
                })
            });
            Some(compiled.await?)
        }
        None => None,
    };
    // Each choice is charged as a request of its own.
    let choices = usize::from(valid.checked.choices.max(1));
    let charged = valid.prompt_tokens.len() as u64 + u64::from(valid.max_tokens());
    state
        .rate_limiter
        .admit_tokens(&tenant, charged * choices as u64)?;
    // From here on each charge is given back by whichever way its choice ends.
    let mut charges: Vec<Charge> = (0..choices)
        .map(|_| {
            let state = state.clone();
            let tenant = tenant.clone();
            Charge::new(charged, move |unused| {
                state.rate_limiter.refund_tokens(&tenant, unused);
            })
        })
        .collect();
    let ValidRequest {
        checked,
        prompt_tokens,
    } = valid;
    let prompt_count = u32::try_from(prompt_tokens.len()).unwrap_or(u32::MAX);
    let submitted = state.scheduler.submit_choices(GenerationRequest {
        prompt_tokens,
        params: checked.sampling.clone(),
        constraint,
        enqueued_at: arrived,
        choices,
    });
    let events = match submitted {
        Ok(events) => events,
        Err(err) => {
            drop(charges);
            return Err(match err {
                SubmitError::QueueFull { capacity } => ApiError::Overloaded {
                    queued: capacity,
                    retry_after_s: state.overload_retry_after_s,
                },
                SubmitError::Stopped => ApiError::Unavailable {
                    message: "The engine has stopped.".to_string(),
                    code: "shutting_down",
                    retry_after_s: 5,
                },
            });
        }
    };
    let logprobs = checked.sampling.logprobs().is_some();
    let meta = AnswerMeta::new(endpoint, request_id, &state.model.id, logprobs);
    let stream = checked.stream;
    let include_usage = checked.include_usage;
    let sworn = SwornRequest {
        request_id: request_id.to_string(),
        tenant: tenant.id.clone(),
        endpoint: endpoint.receipt_name(),
        prompt_tokens: prompt_count,
        sampling: checked.sampling,
        seed_given: checked.seed_given,
        stream,
        response_format: (checked.structured.as_ref()).map(|s| (s.kind(), s.sha256.clone())),
        tools: (checked.tools.as_ref()).map(|t| (t.kind(), t.sha256.clone(), syntax)),
        choice: None,
        prompt_canonical: checked.prompt_canonical,
        arrived,
    };
    if choices == 1 {
        let (Some(charge), Some(events)) = (charges.pop(), events.into_iter().next()) else {
            return Err(ApiError::Internal {
                request_id: request_id.to_string(),
            });
        };
        let outgoing = swear::spawn(state.swear.clone(), sworn, charge, events);
        if stream {
            let events = sse::events(meta, include_usage, outgoing, request_id.to_string());
            return Ok(warp::sse::reply(events).into_response());
        }
        return collect(meta, outgoing, request_id).await;
    }
    // `n` > 1: each choice is sworn on its own, as a request of its own
    // ([`SwornRequest::for_choice`]).
    let outgoing: Vec<_> = (events.into_iter().zip(charges).enumerate())
        .map(|(i, (events, charge))| {
            let choice = sworn.for_choice(i, choices);
            swear::spawn(state.swear.clone(), choice, charge, events)
        })
        .collect();
    if stream {
        let events = sse::choice_events(meta, include_usage, outgoing, request_id.to_string());
        return Ok(warp::sse::reply(events).into_response());
    }
    let answers = futures::future::join_all(outgoing.into_iter().map(whole)).await;
    let mut whole_answers = Vec::with_capacity(answers.len());
    for answer in answers {
        match answer {
            Some(Ok(answer)) => whole_answers.push(answer),
            Some(Err(err)) => return Err(ApiError::from_swear(&err, request_id.as_str())),
            None => {
                return Err(ApiError::Internal {
                    request_id: request_id.to_string(),
                });
            }
        }
    }
    Ok(warp::reply::json(&responses::choices_answer(&meta, whole_answers)).into_response())
}

/// One choice read to its end: its text and log probabilities, and its sworn end (or
/// why it failed); `None` if its task ended without either.
async fn whole(
    mut outgoing: tokio::sync::mpsc::Receiver<Outgoing>,
) -> Option<Result<responses::WholeChoice, SwearError>> {
    let mut text = String::new();
    let mut logprobs = Vec::new();
    loop {
        match outgoing.recv().await? {
            Outgoing::Text(piece, tokens) => {
                text.push_str(&piece);
                logprobs.extend(tokens);
            }
            Outgoing::Done(sworn) => {
                return Some(Ok(responses::WholeChoice {
                    text,
                    logprobs,
                    sworn: *sworn,
                }));
            }
            Outgoing::Failed(err) => return Some(Err(err)),
        }
    }
}

/// Templates and tokenises off the async runtime.
/// Runs `work` with the served model's template and tokeniser on a blocking thread: what
/// they refuse (a template that rejects the conversation, an id outside the vocabulary) is
/// a 400 on `param`; anything else a 500 naming the request id.
pub(super) async fn with_encoder<T: Send + 'static>(
    state: &AppState,
    param: &'static str,
    request_id: &RequestId,
    work: impl FnOnce(&dyn PromptEncoder) -> Result<T, GeneratorError> + Send + 'static,
) -> Result<T, ApiError> {
    let encoder = state.model.encoder.clone();
    let internal = || ApiError::Internal {
        request_id: request_id.to_string(),
    };
    let done = tokio::task::spawn_blocking(move || work(encoder.as_ref()))
        .await
        .map_err(|e| {
            tracing::error!(%request_id, error = %e, "tokeniser task failed");
            internal()
        })?;
    done.map_err(|err| match err {
        GeneratorError::Encode { reason } => {
            ApiError::invalid_value(param, format!("`{param}` could not be encoded: {reason}"))
        }
        GeneratorError::Model { reason } => {
            tracing::error!(%request_id, %reason, "encoder failed");
            internal()
        }
    })
}

/// Waits for the whole answer and its receipt.
async fn collect(
    meta: AnswerMeta,
    mut outgoing: tokio::sync::mpsc::Receiver<Outgoing>,
    request_id: &RequestId,
) -> Result<Response, ApiError> {
    let mut text = String::new();
    let mut logprobs = Vec::new();
    loop {
        match outgoing.recv().await {
            Some(Outgoing::Text(piece, tokens)) => {
                text.push_str(&piece);
                logprobs.extend(tokens);
            }
            Some(Outgoing::Done(sworn)) => {
                let index = sworn.receipt.as_ref().map(|r| r.index);
                let mut response = warp::reply::json(&whole_answer(&meta, text, &logprobs, &sworn))
                    .into_response();
                if let Some(index) = index {
                    response.headers_mut().insert("x-sworn-index", index.into());
                }
                return Ok(response);
            }
            Some(Outgoing::Failed(err)) => {
                return Err(ApiError::from_swear(&err, request_id.as_str()));
            }
            None => {
                return Err(ApiError::Internal {
                    request_id: request_id.to_string(),
                });
            }
        }
    }
}
