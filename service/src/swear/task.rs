//! One generation task, from the engine's events to the client's receipt.
//!
//! The task forwards text to the client's channel and builds the ledger append from
//! exactly the text the client was sent. It stops early when the client goes away (the
//! client channel closes; dropping the engine channel then stops the engine) or when
//! shutdown aborts it, and records the answer as `cancelled` either way. Only once the
//! receipt is durable does the client get it; the request's [`Charge`] is settled before.
//!
//! An answer under offered tools is the model's constrained JSON, which means nothing to
//! the client until it is whole: the task holds it back, reads it into calls or content
//! ([`Answer::from_tool_json`]) when the engine finishes, swears that, and only then sends
//! the content (if any) and the calls with the receipt.

use std::sync::Arc;
use std::time::Instant;

use sworn_ledger::entry::ReceiptJson;
use sworn_ledger::store::AppendRequest;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use super::{
    AbortSignal, Answer, Charge, SwearContext, SwearError, SwearMode, SwornRequest, ToolCall,
};
use crate::scheduler::request::{FinishReason, GenerationEvent, TokenLogprob};

/// Pieces buffered between the generation task and a slow client.
const CLIENT_CHANNEL_DEPTH: usize = 64;

/// What the client side receives.
#[derive(Debug)]
pub enum Outgoing {
    /// More answer text, with the log probabilities of the tokens that made it (empty
    /// unless the request asked for them).
    Text(String, Vec<TokenLogprob>),
    /// The end, with the durable receipt.
    Done(Box<Sworn>),
    /// The generation or the ledger failed.
    Failed(SwearError),
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
    /// The tool calls the answer made (empty unless tools were offered and called).
    pub tool_calls: Vec<ToolCall>,
}

/// Starts the task for `request` over the engine's `events`; the returned channel yields
/// `Text`… then one `Done` or `Failed`. The task settles `charge` before it answers.
pub fn spawn(
    context: Arc<SwearContext>,
    request: SwornRequest,
    charge: Charge,
    events: mpsc::UnboundedReceiver<GenerationEvent>,
) -> mpsc::Receiver<Outgoing> {
    let (client, receiver) = mpsc::channel(CLIENT_CHANNEL_DEPTH);
    tokio::spawn(drive(context, request, charge, events, client));
    receiver
}

async fn drive(
    context: Arc<SwearContext>,
    request: SwornRequest,
    charge: Charge,
    mut events: mpsc::UnboundedReceiver<GenerationEvent>,
    client: mpsc::Sender<Outgoing>,
) {
    let in_flight = context.in_flight.enter();
    let mut abort = context.in_flight.abort_signal();
    let metrics = &context.metrics;
    // Exactly the text handed to the client, and the tokens that made it (under offered
    // tools: the text held back, and its tokens' log probabilities).
    let mut answer = String::new();
    let mut tokens = 0u32;
    let held = request.tools_offered();
    let mut held_logprobs = Vec::new();
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
            Some(GenerationEvent::Started { queued_for }) => metrics.queued(queued_for),
            Some(GenerationEvent::Text {
                text,
                tokens: so_far,
                logprobs,
            }) => {
                let now = Instant::now();
                match last_piece {
                    None => metrics.first_text(now - request.arrived),
                    Some(previous) => metrics.next_text(now - previous),
                }
                last_piece = Some(now);
                if held {
                    answer.push_str(&text);
                    held_logprobs.extend(logprobs);
                    tokens = so_far;
                    continue;
                }
                let sent = tokio::select! {
                    biased;
                    sent = client.send(Outgoing::Text(text.clone(), logprobs)) => sent.is_ok(),
                    // A client that stops reading must not hold shutdown, nor its receipt.
                    _ = abort.aborted() => false,
                    () = tokio::time::sleep(context.client_stall_timeout) => {
                        tracing::warn!(
                            request_id = %request.request_id,
                            "the client took no text for {:?}; ending its answer",
                            context.client_stall_timeout
                        );
                        false
                    }
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
    charge.settle(u64::from(request.prompt_tokens) + u64::from(completion_tokens));

    let answer =
        if let (true, FinishReason::Stop, Some((.., syntax))) = (held, reason, &request.tools) {
            Answer::from_tool_output(answer, *syntax, |i| request.call_id(i))
        } else {
            Answer::text(answer)
        };
    let receipt = match context.mode {
        SwearMode::SkipForBenchmark => None,
        SwearMode::Durable => {
            let append = append_request(&context, &request, &answer, completion_tokens, reason);
            let started = Instant::now();
            match context.ledger.append_async(append).await {
                Ok(receipt) => {
                    metrics.appended(started.elapsed());
                    Some(receipt.to_json())
                }
                Err(err) => {
                    tracing::error!(request_id = %request.request_id, error = %err, "ledger append failed");
                    metrics.failed("ledger");
                    drop(in_flight);
                    let reason = err.to_string();
                    deliver(
                        &context,
                        &client,
                        Outgoing::Failed(SwearError::Ledger { reason }),
                        &mut abort,
                    )
                    .await;
                    return;
                }
            }
        }
    };
    // The receipt is durable: shutdown need not wait for the client to take it.
    drop(in_flight);
    metrics.answered(request.arrived.elapsed());
    if reason == FinishReason::Error {
        tracing::error!(request_id = %request.request_id, "generation failed (recorded with finish reason `error`)");
        metrics.failed("internal");
        deliver(
            &context,
            &client,
            Outgoing::Failed(SwearError::Generation),
            &mut abort,
        )
        .await;
        return;
    }
    metrics.succeeded(
        reason.as_str(),
        u64::from(request.prompt_tokens),
        u64::from(completion_tokens),
    );
    if held && !answer.content_text().is_empty() {
        let text = Outgoing::Text(answer.content_text().to_owned(), held_logprobs);
        deliver(&context, &client, text, &mut abort).await;
    }
    // The client may have gone (cancelled): the receipt is durable regardless.
    let done = Outgoing::Done(Box::new(Sworn {
        finish_reason: reason,
        prompt_tokens: request.prompt_tokens,
        completion_tokens,
        receipt,
        tool_calls: answer.tool_calls,
    }));
    deliver(&context, &client, done, &mut abort).await;
}

/// Hands the last message to the client, unless it takes nothing for the stall timeout or
/// shutdown aborts first while it is not reading.
async fn deliver(
    context: &SwearContext,
    client: &mpsc::Sender<Outgoing>,
    last: Outgoing,
    abort: &mut AbortSignal,
) {
    tokio::select! {
        biased;
        _ = client.send(last) => {}
        _ = abort.aborted() => {}
        () = tokio::time::sleep(context.client_stall_timeout) => {}
    }
}

fn append_request(
    context: &SwearContext,
    request: &SwornRequest,
    answer: &Answer,
    completion_tokens: u32,
    reason: FinishReason,
) -> AppendRequest {
    AppendRequest {
        request_id: request.request_id.clone(),
        tenant: request.tenant.clone(),
        model: context.model.clone(),
        params: request.params(),
        prompt: request.prompt_canonical.clone(),
        prompt_tokens: u64::from(request.prompt_tokens),
        response: answer.committed(),
        response_tokens: u64::from(completion_tokens),
        finish_reason: reason.as_str().to_string(),
        time: OffsetDateTime::now_utc(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use sworn_ledger::keys::LogKey;
    use sworn_ledger::receipt::ModelInfo;
    use sworn_ledger::store::{Ledger, LedgerConfig};

    use super::*;
    use crate::engine::sampling::SamplingRequest;
    use crate::scheduler::request::ToolSyntax;
    use crate::swear::{InFlight, MetricsSink};

    struct Quiet;

    impl MetricsSink for Quiet {
        fn queued(&self, _: Duration) {}
        fn first_text(&self, _: Duration) {}
        fn next_text(&self, _: Duration) {}
        fn appended(&self, _: Duration) {}
        fn answered(&self, _: Duration) {}
        fn succeeded(&self, _: &'static str, _: u64, _: u64) {}
        fn failed(&self, _: &'static str) {}
    }

    const PROMPT_TOKENS: u32 = 5;
    const MAX_TOKENS: u32 = 20;

    fn context(dir: &std::path::Path) -> Arc<SwearContext> {
        let key = LogKey::generate_to_file(&dir.join("log.key")).unwrap();
        let ledger = Ledger::open(LedgerConfig::new(
            dir.join("ledger"),
            "sworn.test/swear",
            key,
        ))
        .unwrap();
        Arc::new(SwearContext {
            ledger,
            model: ModelInfo {
                id: "toy".into(),
                sha256: "ab".repeat(32),
                dtype: "f32".into(),
                device: "cpu".into(),
                engine: "sworn test".into(),
                libtorch: "none".into(),
            },
            mode: SwearMode::Durable,
            metrics: Arc::new(Quiet),
            in_flight: InFlight::default(),
            client_stall_timeout: Duration::from_millis(200),
        })
    }

    fn request(id: &str) -> SwornRequest {
        SwornRequest {
            request_id: id.to_string(),
            tenant: "team-a".into(),
            endpoint: "completions",
            prompt_canonical: b"\"hi\"".to_vec(),
            prompt_tokens: PROMPT_TOKENS,
            sampling: SamplingRequest {
                temperature: Some(0.7),
                seed: Some(1),
                max_tokens: Some(MAX_TOKENS),
                ..SamplingRequest::default()
            }
            .validate(u32::MAX)
            .unwrap(),
            seed_given: true,
            stream: true,
            response_format: None,
            tools: None,
            choice: None,
            arrived: Instant::now(),
        }
    }

    /// Starts a task whose charge records every refund.
    fn start(
        context: &Arc<SwearContext>,
        id: &str,
    ) -> (
        mpsc::UnboundedSender<GenerationEvent>,
        mpsc::Receiver<Outgoing>,
        Arc<Mutex<Vec<u64>>>,
    ) {
        let refunds = Arc::new(Mutex::new(Vec::new()));
        let seen = refunds.clone();
        let charged = u64::from(PROMPT_TOKENS + MAX_TOKENS);
        let charge = Charge::new(charged, move |n| seen.lock().unwrap().push(n));
        let (events, engine) = mpsc::unbounded_channel();
        let outgoing = spawn(context.clone(), request(id), charge, engine);
        (events, outgoing, refunds)
    }

    fn text(text: &str, tokens: u32) -> GenerationEvent {
        GenerationEvent::Text {
            text: text.to_string(),
            tokens,
            logprobs: Vec::new(),
        }
    }

    /// Reads the client side to its end: the text, and the last message.
    async fn read_all(outgoing: &mut mpsc::Receiver<Outgoing>) -> (String, Option<Outgoing>) {
        let mut answer = String::new();
        while let Some(message) = outgoing.recv().await {
            match message {
                Outgoing::Text(piece, _) => answer.push_str(&piece),
                last => return (answer, Some(last)),
            }
        }
        (answer, None)
    }

    fn recorded(context: &SwearContext, id: &str) -> (String, u64) {
        let receipt = context.ledger.receipt_by_request_id(id).unwrap().unwrap();
        (
            receipt.body.response.finish_reason.clone(),
            receipt.body.response.tokens,
        )
    }

    #[tokio::test]
    async fn tool_calls_are_held_back_read_whole_and_sworn_as_the_client_gets_them() {
        let dir = tempfile::tempdir().unwrap();
        let context = context(dir.path());
        let offered = |id: &str| SwornRequest {
            tools: Some(("auto", "ab".repeat(32), ToolSyntax::Generic)),
            ..request(id)
        };
        let charge = || Charge::new(1, |_| {});
        // Calls: nothing goes out until the whole JSON is read; the receipt commits to the
        // canonical message with the calls.
        let (events, engine) = mpsc::unbounded_channel();
        let mut outgoing = spawn(context.clone(), offered("req-call"), charge(), engine);
        for piece in [
            r#"{"tool_calls": [{"name": "now", "#,
            r#""arguments": {}}]}"#,
        ] {
            events.send(text(piece, 1)).unwrap();
        }
        events
            .send(GenerationEvent::Finished {
                reason: FinishReason::Stop,
                completion_tokens: 2,
            })
            .unwrap();
        let (sent, last) = read_all(&mut outgoing).await;
        assert_eq!(sent, "", "no raw JSON reaches the client");
        let Some(Outgoing::Done(sworn)) = last else {
            panic!("{last:?}")
        };
        let call = ToolCall {
            id: "call_call_0".into(),
            name: "now".into(),
            arguments: "{}".into(),
        };
        assert_eq!(sworn.tool_calls, std::slice::from_ref(&call));
        let receipt = context
            .ledger
            .receipt_by_request_id("req-call")
            .unwrap()
            .unwrap();
        let salts = receipt.salts.unwrap();
        let expected = Answer {
            content: None,
            tool_calls: vec![call],
        };
        assert!(sworn_ledger::commitment::opens(
            &receipt.body.response.commitment,
            sworn_ledger::commitment::Domain::Response,
            &salts.response,
            &expected.committed(),
        ));
        assert_eq!(
            receipt.body.params.get("tool_choice"),
            Some(&sworn_ledger::receipt::ParamValue::Str("auto".into()))
        );
        // Content: sent once whole, and sworn as plain text.
        let (events, engine) = mpsc::unbounded_channel();
        let mut outgoing = spawn(context.clone(), offered("req-say"), charge(), engine);
        events.send(text(r#"{"content": "4"}"#, 3)).unwrap();
        events
            .send(GenerationEvent::Finished {
                reason: FinishReason::Stop,
                completion_tokens: 3,
            })
            .unwrap();
        let (sent, last) = read_all(&mut outgoing).await;
        assert_eq!(sent, "4");
        assert!(matches!(last, Some(Outgoing::Done(s)) if s.tool_calls.is_empty()));
        let receipt = context
            .ledger
            .receipt_by_request_id("req-say")
            .unwrap()
            .unwrap();
        assert!(sworn_ledger::commitment::opens(
            &receipt.body.response.commitment,
            sworn_ledger::commitment::Domain::Response,
            &receipt.salts.unwrap().response,
            b"4",
        ));
    }

    #[tokio::test]
    async fn a_finished_answer_settles_its_charge_once_with_the_tokens_used() {
        let dir = tempfile::tempdir().unwrap();
        let context = context(dir.path());
        let (events, mut outgoing, refunds) = start(&context, "req-ok");
        events.send(text("ab", 2)).unwrap();
        events
            .send(GenerationEvent::Finished {
                reason: FinishReason::Stop,
                completion_tokens: 3,
            })
            .unwrap();
        let (answer, last) = read_all(&mut outgoing).await;
        assert_eq!(answer, "ab");
        assert!(matches!(last, Some(Outgoing::Done(ref s)) if s.receipt.is_some()));
        assert_eq!(*refunds.lock().unwrap(), vec![u64::from(MAX_TOKENS - 3)]);
        assert_eq!(recorded(&context, "req-ok"), ("stop".to_string(), 3));
    }

    #[tokio::test]
    async fn an_engine_failure_settles_once_and_is_recorded_as_error() {
        let dir = tempfile::tempdir().unwrap();
        let context = context(dir.path());
        let (events, mut outgoing, refunds) = start(&context, "req-error");
        events.send(text("a", 1)).unwrap();
        drop(events);
        let (_, last) = read_all(&mut outgoing).await;
        assert!(matches!(
            last,
            Some(Outgoing::Failed(SwearError::Generation))
        ));
        assert_eq!(*refunds.lock().unwrap(), vec![u64::from(MAX_TOKENS - 1)]);
        assert_eq!(recorded(&context, "req-error"), ("error".to_string(), 1));
    }

    #[tokio::test]
    async fn a_departed_client_settles_once_and_is_recorded_as_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let context = context(dir.path());
        let (events, outgoing, refunds) = start(&context, "req-gone");
        drop(outgoing);
        // The task notices, drops the engine's channel, and swears.
        events.closed().await;
        context.in_flight.wait_idle().await;
        assert_eq!(*refunds.lock().unwrap(), vec![u64::from(MAX_TOKENS)]);
        assert_eq!(recorded(&context, "req-gone"), ("cancelled".to_string(), 0));
    }

    #[tokio::test]
    async fn shutdown_cuts_the_answer_settles_once_and_the_client_gets_the_receipt() {
        let dir = tempfile::tempdir().unwrap();
        let context = context(dir.path());
        let (events, mut outgoing, refunds) = start(&context, "req-cut");
        events.send(text("abc", 3)).unwrap();
        assert!(matches!(outgoing.recv().await, Some(Outgoing::Text(t, _)) if t == "abc"));
        // The engine is still running (its channel stays open) when shutdown gives up.
        context.in_flight.abort_all();
        let (_, last) = read_all(&mut outgoing).await;
        match last {
            Some(Outgoing::Done(sworn)) => {
                assert_eq!(sworn.finish_reason, FinishReason::Cancelled);
                assert!(sworn.receipt.is_some());
            }
            other => panic!("expected the receipt, got {other:?}"),
        }
        assert_eq!(*refunds.lock().unwrap(), vec![u64::from(MAX_TOKENS - 3)]);
        assert_eq!(recorded(&context, "req-cut"), ("cancelled".to_string(), 3));
        drop(events);
    }

    #[tokio::test]
    async fn a_client_that_takes_no_text_is_cut_and_sworn_after_the_stall_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let context = context(dir.path());
        let (events, outgoing, refunds) = start(&context, "req-stalled");
        // More pieces than the client channel holds; the client never reads one.
        for n in 1..=100 {
            events.send(text("x", n)).unwrap();
        }
        // The task gives up on the client, swears, and leaves the engine's channel.
        tokio::time::timeout(Duration::from_secs(10), events.closed())
            .await
            .expect("the task kept waiting for a client that takes nothing");
        context.in_flight.wait_idle().await;
        let (reason, tokens) = recorded(&context, "req-stalled");
        assert_eq!(reason, "cancelled");
        // Exactly what was handed to the client: the pieces its channel took.
        assert_eq!(tokens, CLIENT_CHANNEL_DEPTH as u64);
        assert_eq!(
            *refunds.lock().unwrap(),
            vec![u64::from(MAX_TOKENS).saturating_sub(tokens)]
        );
        drop(outgoing);
    }
}
