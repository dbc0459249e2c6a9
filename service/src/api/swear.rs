//! One generation, from the queue to its receipt.
//!
//! A spawned task (not the HTTP handler) owns the engine's event channel. It forwards text to
//! the client's channel; when the engine finishes — or the client goes away, which it notices
//! through the closed client channel and answers by dropping the engine channel so the engine
//! stops — it builds the [`AppendRequest`] and waits for the ledger to make the receipt
//! durable. Only then does the client get the receipt. Because this task outlives the
//! handler, a disconnected client's partial answer is still sworn, with finish reason
//! `cancelled`; so is an answer cut at the end of shutdown's grace period
//! ([`super::state::InFlight::abort_all`]), whose client still gets that receipt.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};
use sworn_ledger::entry::ReceiptJson;
use sworn_ledger::receipt::ParamValue;
use sworn_ledger::store::AppendRequest;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use super::auth::Tenant;
use super::errors::ApiError;
use super::request_id::RequestId;
use super::state::{AbortSignal, AppState, SwearMode};
use super::validation::{Endpoint, ValidRequest};
use crate::scheduler::request::{FinishReason, GenerationEvent};

/// Pieces buffered between the generation task and a slow client.
const CLIENT_CHANNEL_DEPTH: usize = 64;

/// What the client side receives.
#[derive(Debug)]
pub enum Outgoing {
    /// More answer text.
    Text(String),
    /// The end, with the durable receipt.
    Done(Box<Sworn>),
    /// The generation or the ledger failed.
    Failed(ApiError),
}

/// A finished, sworn answer.
#[derive(Debug)]
pub struct Sworn {
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Generated tokens.
    pub completion_tokens: u32,
    /// The receipt (`None` only in the benchmark's skip mode).
    pub receipt: Option<ReceiptJson>,
}

/// Everything the task needs about the request.
#[derive(Debug)]
pub struct Generation {
    /// The validated request.
    pub request: ValidRequest,
    /// Who asked.
    pub tenant: Tenant,
    /// Its id.
    pub request_id: RequestId,
    /// When the HTTP request arrived.
    pub arrived: Instant,
}

/// Starts the task; the returned channel yields `Text`… then one `Done` or `Failed`.
pub fn spawn(
    state: Arc<AppState>,
    generation: Generation,
    events: mpsc::UnboundedReceiver<GenerationEvent>,
) -> mpsc::Receiver<Outgoing> {
    let (client, receiver) = mpsc::channel(CLIENT_CHANNEL_DEPTH);
    tokio::spawn(drive(state, generation, events, client));
    receiver
}

async fn drive(
    state: Arc<AppState>,
    generation: Generation,
    mut events: mpsc::UnboundedReceiver<GenerationEvent>,
    client: mpsc::Sender<Outgoing>,
) {
    let in_flight = state.in_flight.enter();
    let mut abort = state.in_flight.abort_signal();
    let metrics = &state.metrics;
    // Exactly the text handed to the client, and the tokens that made it.
    let mut answer = String::new();
    let mut tokens = 0u32;
    let mut last_piece: Option<Instant> = None;
    let (reason, completion_tokens) = loop {
        let event = tokio::select! {
            biased;
            _ = client.closed() => break (FinishReason::Cancelled, tokens),
            // What the engine already said comes first: an answer that ended on its own
            // is not recorded as cancelled.
            event = events.recv() => event,
            _ = abort.aborted() => break (FinishReason::Cancelled, tokens),
        };
        match event {
            Some(GenerationEvent::Started { queued_for }) => metrics.queue.observe(queued_for),
            Some(GenerationEvent::Text {
                text,
                tokens: so_far,
            }) => {
                let now = Instant::now();
                match last_piece {
                    None => metrics.ttft.observe(now - generation.arrived),
                    Some(previous) => metrics.inter_token.observe(now - previous),
                }
                last_piece = Some(now);
                let sent = tokio::select! {
                    biased;
                    sent = client.send(Outgoing::Text(text.clone())) => sent.is_ok(),
                    // A client that stops reading must not hold shutdown.
                    _ = abort.aborted() => false,
                };
                if !sent {
                    break (FinishReason::Cancelled, tokens);
                }
                answer.push_str(&text);
                tokens = so_far;
            }
            Some(GenerationEvent::Finished {
                reason,
                completion_tokens,
            }) => break (reason, completion_tokens),
            // The engine thread stopped without finishing this request.
            None => break (FinishReason::Error, tokens),
        }
    };
    // Stop the engine's work for a departed client before the (slower) ledger write.
    drop(events);
    let request = &generation.request;
    let prompt_tokens = u32::try_from(request.prompt_tokens.len()).unwrap_or(u32::MAX);
    let charged = u64::from(prompt_tokens) + u64::from(request.max_tokens);
    let used = u64::from(prompt_tokens) + u64::from(completion_tokens);
    state
        .rate_limiter
        .refund_tokens(&generation.tenant, charged.saturating_sub(used));

    let receipt = match state.swear_mode {
        SwearMode::SkipForBenchmark => None,
        SwearMode::Durable => {
            let append = append_request(&state, &generation, &answer, completion_tokens, reason);
            let started = Instant::now();
            match state.ledger.append_async(append).await {
                Ok(receipt) => {
                    metrics.append.observe(started.elapsed());
                    Some(receipt.to_json())
                }
                Err(err) => {
                    tracing::error!(request_id = %generation.request_id, error = %err, "ledger append failed");
                    metrics.record_failure("ledger");
                    drop(in_flight);
                    let failed = Outgoing::Failed(ApiError::Internal {
                        request_id: generation.request_id.to_string(),
                    });
                    deliver(&client, failed, &mut abort).await;
                    return;
                }
            }
        }
    };
    // The receipt is durable: shutdown need not wait for the client to take it.
    drop(in_flight);
    metrics.e2e.observe(generation.arrived.elapsed());
    if reason == FinishReason::Error {
        tracing::error!(request_id = %generation.request_id, "generation failed (recorded with finish reason `error`)");
        metrics.record_failure("internal");
        let failed = Outgoing::Failed(ApiError::Internal {
            request_id: generation.request_id.to_string(),
        });
        deliver(&client, failed, &mut abort).await;
        return;
    }
    metrics.record_success(
        reason.as_str(),
        u64::from(prompt_tokens),
        u64::from(completion_tokens),
    );
    // The client may have gone (cancelled): the receipt is durable regardless.
    let done = Outgoing::Done(Box::new(Sworn {
        finish_reason: reason,
        prompt_tokens,
        completion_tokens,
        receipt,
    }));
    deliver(&client, done, &mut abort).await;
}

/// Hands the last message to the client, unless shutdown aborts first while the client
/// is not reading.
async fn deliver(client: &mpsc::Sender<Outgoing>, last: Outgoing, abort: &mut AbortSignal) {
    tokio::select! {
        biased;
        _ = client.send(last) => {}
        _ = abort.aborted() => {}
    }
}

/// Decimal text of an applied float parameter (receipts hold no floats).
fn decimal(value: f32) -> ParamValue {
    ParamValue::Str(format!("{value}"))
}

/// The parameters recorded in the receipt, as applied.
pub fn applied_params(request: &ValidRequest) -> BTreeMap<String, ParamValue> {
    let checked = &request.checked;
    let mut params = BTreeMap::new();
    let endpoint = match checked.endpoint {
        Endpoint::Chat => "chat.completions",
        Endpoint::Completion => "completions",
    };
    params.insert(
        "endpoint".to_string(),
        ParamValue::Str(endpoint.to_string()),
    );
    params.insert(
        "max_tokens".to_string(),
        ParamValue::Int(i64::from(request.max_tokens)),
    );
    params.insert(
        "temperature".to_string(),
        decimal(checked.sampling.temperature),
    );
    params.insert("top_p".to_string(), decimal(checked.sampling.top_p));
    params.insert(
        "top_k".to_string(),
        ParamValue::Int(i64::from(checked.sampling.top_k)),
    );
    // Seeds span all of u64, beyond JSON's safe integers: record the decimal text.
    params.insert(
        "seed".to_string(),
        ParamValue::Str(checked.sampling.seed.to_string()),
    );
    params.insert(
        "seed_from_client".to_string(),
        ParamValue::Bool(checked.seed_given),
    );
    params.insert("stream".to_string(), ParamValue::Bool(checked.stream));
    if !checked.stop.is_empty() {
        // Stop strings may hold control characters and exceed the body's field cap: record
        // SHA-256 of their canonical JSON array, which the client can recompute.
        let array = serde_json::Value::from(checked.stop.clone());
        let canonical = sworn_ledger::jcs::canonicalize(&array).unwrap_or_default();
        params.insert(
            "stop_sha256".to_string(),
            ParamValue::Str(hex::encode(Sha256::digest(canonical))),
        );
    }
    params
}

fn append_request(
    state: &AppState,
    generation: &Generation,
    answer: &str,
    completion_tokens: u32,
    reason: FinishReason,
) -> AppendRequest {
    let request = &generation.request;
    AppendRequest {
        request_id: generation.request_id.to_string(),
        tenant: generation.tenant.id.clone(),
        model: state.model.info.clone(),
        params: applied_params(request),
        prompt: request.checked.prompt_canonical.clone(),
        prompt_tokens: request.prompt_tokens.len() as u64,
        response: answer.as_bytes().to_vec(),
        response_tokens: u64::from(completion_tokens),
        finish_reason: reason.as_str().to_string(),
        time: OffsetDateTime::now_utc(),
    }
}
