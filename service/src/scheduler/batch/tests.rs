//! The batch loop over a generator that spells prompts out: admission, chunked and
//! batched prefill, client departures, stop strings and shutdown.

use std::time::Instant;

use super::super::request::GenerationRequest;
use super::super::{GeneratorError, Scheduler};
use super::*;
use crate::engine::sampling::SamplingRequest;

/// A generator that spells out each prompt's token ids as text, one id per step, then
/// ends; it records the batch sizes it was asked to step.
struct Spell {
    max_batch: usize,
    steps: std::sync::Arc<std::sync::Mutex<Vec<usize>>>,
    /// The number of requests of each `start_batch` call.
    starts: std::sync::Arc<std::sync::Mutex<Vec<usize>>>,
    /// When set, the first step (or the second chunk of a prefill, whichever comes
    /// first) waits for a message on it.
    gate: Option<std::sync::mpsc::Receiver<()>>,
    /// Told when the generator has come to the gate and waits there.
    at_gate: Option<std::sync::mpsc::Sender<()>>,
    /// Chunked prefill: the chunk, and each partial prefill's positions so far.
    chunk: Option<usize>,
    partial: std::collections::HashMap<u64, usize>,
    /// What happened, in order: `step N` (a decode step of N sequences), `chunk K+N`
    /// (N more positions of the prompt under key K), `abandon K`.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

struct Seq {
    ids: Vec<u32>,
    at: usize,
}

fn token(seq: &mut Seq) -> Token {
    let id = seq.ids.get(seq.at).copied();
    seq.at += 1;
    match id {
        Some(id) => Token {
            id,
            logprobs: None,
            text: format!("<{id}>"),
            finish: None,
        },
        None => Token {
            id: 0,
            logprobs: None,
            text: String::new(),
            finish: Some(FinishReason::Stop),
        },
    }
}

impl Spell {
    fn wait(&self, gate: &std::sync::mpsc::Receiver<()>) {
        if let Some(at_gate) = &self.at_gate {
            at_gate.send(()).expect("the test waits for the gate");
        }
        gate.recv().expect("the test opens the gate");
    }
}

impl Generator for Spell {
    type Sequence = Seq;
    fn max_batch(&self) -> usize {
        self.max_batch
    }
    fn start(&mut self, request: &GenerationRequest) -> Result<(Seq, Token), GeneratorError> {
        if request.prompt_tokens.is_empty() {
            return Err(GeneratorError::Model {
                reason: "empty".into(),
            });
        }
        let mut seq = Seq {
            ids: request.prompt_tokens.clone(),
            at: 0,
        };
        let first = token(&mut seq);
        Ok((seq, first))
    }
    fn start_batch(&mut self, requests: &[&GenerationRequest]) -> Vec<super::super::Started<Seq>> {
        self.starts.lock().unwrap().push(requests.len());
        requests.iter().map(|r| self.start_choices(r)).collect()
    }
    fn step(&mut self, sequences: &mut [&mut Seq]) -> Result<Vec<Token>, GeneratorError> {
        if let Some(gate) = self.gate.take() {
            self.wait(&gate);
        }
        self.steps.lock().unwrap().push(sequences.len());
        self.log
            .lock()
            .unwrap()
            .push(format!("step {}", sequences.len()));
        Ok(sequences.iter_mut().map(|s| token(s)).collect())
    }
    fn prefill_chunk(&self) -> Option<usize> {
        self.chunk
    }
    fn prefill_some(
        &mut self,
        key: u64,
        request: &GenerationRequest,
        budget: usize,
    ) -> Result<Option<(Seq, Token)>, GeneratorError> {
        let done = self.partial.remove(&key).unwrap_or(0);
        if done > 0
            && let Some(gate) = self.gate.take()
        {
            self.wait(&gate);
        }
        let now = (done + budget).min(request.prompt_tokens.len());
        self.log
            .lock()
            .unwrap()
            .push(format!("chunk {key}+{}", now - done));
        if now < request.prompt_tokens.len() {
            self.partial.insert(key, now);
            return Ok(None);
        }
        self.start(request).map(Some)
    }
    fn abandon_prefill(&mut self, key: u64) {
        assert!(self.partial.remove(&key).is_some(), "abandoned twice");
        self.log.lock().unwrap().push(format!("abandon {key}"));
    }
    fn release(&mut self, _: Seq) {}
}

fn request(ids: &[u32], max_tokens: u32, stop: &[&str]) -> GenerationRequest {
    let params = SamplingRequest {
        temperature: Some(0.0),
        max_tokens: Some(max_tokens),
        stop: stop.iter().map(|s| s.to_string()).collect(),
        seed: Some(0),
        ..SamplingRequest::default()
    }
    .validate(u32::MAX)
    .unwrap();
    GenerationRequest {
        prompt_tokens: ids.to_vec(),
        params,
        constraint: None,
        enqueued_at: Instant::now(),
        choices: 1,
    }
}

fn drain(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<GenerationEvent>,
) -> (String, FinishReason, u32) {
    let mut text = String::new();
    loop {
        match rx.blocking_recv().expect("channel closed before Finished") {
            GenerationEvent::Started { .. } => {}
            GenerationEvent::Text { text: t, .. } => text.push_str(&t),
            GenerationEvent::Finished {
                reason,
                completion_tokens,
            } => return (text, reason, completion_tokens),
        }
    }
}

fn start(
    max_batch: usize,
    capacity: usize,
) -> (
    Scheduler,
    super::super::EngineThread,
    std::sync::Arc<std::sync::Mutex<Vec<usize>>>,
) {
    let steps = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (scheduler, thread) = Scheduler::start(
        Spell {
            max_batch,
            steps: steps.clone(),
            starts: Default::default(),
            gate: None,
            chunk: None,
            partial: Default::default(),
            at_gate: None,
            log: Default::default(),
        },
        capacity,
    )
    .unwrap();
    (scheduler, thread, steps)
}

#[test]
fn test_batch_prefills_a_long_prompt_in_chunks_between_decode_steps() {
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (open, gate) = std::sync::mpsc::channel();
    let (scheduler, thread) = Scheduler::start(
        Spell {
            max_batch: 4,
            steps: Default::default(),
            starts: Default::default(),
            gate: Some(gate),
            chunk: Some(4),
            partial: Default::default(),
            at_gate: None,
            log: log.clone(),
        },
        8,
    )
    .unwrap();
    // A short request (no longer than a chunk: started whole) runs, its first token
    // out and its first step at the gate, when a prompt of 10 positions arrives, and
    // one of 9 whose client leaves at once.
    let stats = scheduler.stats().clone();
    let mut short = scheduler.submit(request(&[1, 2, 3, 4], 10, &[])).unwrap();
    while !matches!(short.blocking_recv(), Some(GenerationEvent::Text { .. })) {}
    let long: Vec<u32> = (10..20).collect();
    let long_rx = scheduler.submit(request(&long, 20, &[])).unwrap();
    drop(scheduler.submit(request(&[7; 9], 20, &[])).unwrap());
    open.send(()).unwrap();
    assert_eq!(drain(short).0, "<2><3><4>");
    let spelled: String = long.iter().map(|id| format!("<{id}>")).collect();
    assert_eq!(drain(long_rx), (spelled, FinishReason::Stop, 11));
    drop(scheduler);
    thread.join();
    let log = log.lock().unwrap().clone();
    // Chunks of 4, 4 and 2 positions, each followed by a decode step of the short
    // sequence; the long sequence joins once its last chunk is in. The request whose
    // client left is dropped before it begins: nothing to abandon.
    assert_eq!(
        log[..7],
        [
            "step 1",
            "chunk 1+4",
            "step 1",
            "chunk 1+4",
            "step 1",
            "chunk 1+2",
            "step 2"
        ],
        "{log:?}"
    );
    assert!(log.iter().all(|l| !l.contains(" 2+")), "{log:?}");
    assert_eq!(stats.kv_slots_held.load(Ordering::Relaxed), 0);
}

#[test]
fn test_batch_abandons_a_partial_prefill_whose_client_left() {
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (open, gate) = std::sync::mpsc::channel();
    let (at_gate, reached) = std::sync::mpsc::channel();
    let (scheduler, thread) = Scheduler::start(
        Spell {
            max_batch: 2,
            steps: Default::default(),
            starts: Default::default(),
            gate: Some(gate),
            chunk: Some(2),
            partial: Default::default(),
            at_gate: Some(at_gate),
            log: log.clone(),
        },
        8,
    )
    .unwrap();
    // A long prompt alone: its second chunk waits at the gate while its client
    // leaves; the prefill is abandoned before a third, and its slot serves the next.
    let stats = scheduler.stats().clone();
    let gone = scheduler.submit(request(&[5; 400], 4, &[])).unwrap();
    reached.recv().unwrap();
    // Its first chunk is in a slot: the slot is counted held.
    assert_eq!(stats.kv_slots_held.load(Ordering::Relaxed), 1);
    drop(gone);
    open.send(()).unwrap();
    let after = scheduler.submit(request(&[9], 5, &[])).unwrap();
    assert_eq!(drain(after).1, FinishReason::Stop);
    drop(scheduler);
    thread.join();
    let log = log.lock().unwrap().clone();
    assert_eq!(log[..3], ["chunk 1+2", "chunk 1+2", "abandon 1"], "{log:?}");
    assert!(log[3..].iter().all(|l| l.starts_with("step")), "{log:?}");
    assert_eq!(stats.kv_slots_held.load(Ordering::Relaxed), 0);
}

#[test]
fn test_batch_admits_the_requests_that_arrived_during_a_step_in_one_prefill() {
    let starts = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (open, gate) = std::sync::mpsc::channel();
    let (scheduler, thread) = Scheduler::start(
        Spell {
            max_batch: 4,
            steps: Default::default(),
            starts: starts.clone(),
            gate: Some(gate),
            chunk: None,
            partial: Default::default(),
            at_gate: None,
            log: Default::default(),
        },
        8,
    )
    .unwrap();
    // The first request is started alone (its first token is out); its first step
    // waits at the gate while four more arrive. Three fit beside it, the fourth waits
    // for a free slot.
    let mut first = scheduler.submit(request(&[1, 2, 3], 10, &[])).unwrap();
    while !matches!(first.blocking_recv(), Some(GenerationEvent::Text { .. })) {}
    let later: Vec<_> = (0..4)
        .map(|i| scheduler.submit(request(&[10 + i, 20], 10, &[])).unwrap())
        .collect();
    open.send(()).unwrap();
    assert_eq!(drain(first).1, FinishReason::Stop);
    for (i, rx) in (0u32..).zip(later) {
        assert_eq!(drain(rx).0, format!("<{}><20>", 10 + i));
    }
    drop(scheduler);
    thread.join();
    assert_eq!(*starts.lock().unwrap(), vec![1, 3, 1]);
}

#[test]
fn test_batch_finishes_with_stop_length_and_end_of_sequence() {
    let (scheduler, thread, _) = start(4, 8);
    let eos = scheduler.submit(request(&[1, 2], 10, &[])).unwrap();
    let length = scheduler.submit(request(&[1, 2, 3, 4], 3, &[])).unwrap();
    let stop = scheduler.submit(request(&[5, 6, 7], 10, &["<6"])).unwrap();
    assert_eq!(drain(eos), ("<1><2>".into(), FinishReason::Stop, 3));
    assert_eq!(drain(length), ("<1><2><3>".into(), FinishReason::Length, 3));
    assert_eq!(drain(stop), ("<5>".into(), FinishReason::Stop, 2));
    drop(scheduler);
    thread.join();
}

#[test]
fn test_batch_runs_sequences_together_up_to_max_batch() {
    let (scheduler, thread, steps) = start(2, 8);
    let receivers: Vec<_> = (0..4)
        .map(|i| scheduler.submit(request(&[i; 5], 5, &[])).unwrap())
        .collect();
    for rx in receivers {
        assert_eq!(drain(rx).1, FinishReason::Length);
    }
    drop(scheduler);
    thread.join();
    let steps = steps.lock().unwrap();
    assert!(steps.iter().all(|&n| n <= 2), "{steps:?}");
    assert!(
        steps.contains(&2),
        "sequences should share steps: {steps:?}"
    );
}

#[test]
fn test_batch_counts_step_tokens_and_frees_kv_slots_before_answering() {
    let (scheduler, thread, _) = start(2, 8);
    let stats = scheduler.stats().clone();
    assert_eq!(stats.kv_slots.load(Ordering::Relaxed), 2);
    // Prefill of 2 tokens + 1 decode row, then 1 row (end of sequence): steps of 3 and 1.
    let rx = scheduler.submit(request(&[1, 2], 10, &[])).unwrap();
    assert_eq!(drain(rx), ("<1><2>".into(), FinishReason::Stop, 3));
    assert_eq!(stats.kv_slots_held.load(Ordering::Relaxed), 0);
    let text = crate::api::metrics::Metrics::default()
        .render(&stats, &crate::api::metrics::LedgerFigures::default());
    for line in [
        "sworn:iteration_tokens_total_bucket{le=\"1\"} 1",
        "sworn:iteration_tokens_total_bucket{le=\"8\"} 2",
        "sworn:iteration_tokens_total_sum 4",
        "sworn:iteration_tokens_total_count 2",
        "sworn:request_params_max_tokens_sum 10",
        "sworn:request_params_max_tokens_count 1",
        "sworn:kv_cache_usage_perc 0",
    ] {
        assert!(
            text.contains(&format!("{line}\n")),
            "missing `{line}` in\n{text}"
        );
    }
    drop(scheduler);
    thread.join();
}

#[test]
fn test_batch_prefill_failure_is_reported_not_fatal() {
    let (scheduler, thread, _) = start(2, 8);
    let bad = scheduler.submit(request(&[], 5, &[])).unwrap();
    assert_eq!(drain(bad).1, FinishReason::Error);
    let good = scheduler.submit(request(&[9], 5, &[])).unwrap();
    assert_eq!(drain(good).1, FinishReason::Stop);
    drop(scheduler);
    thread.join();
}

#[test]
fn test_batch_dropped_receivers_leave_the_batch() {
    let (scheduler, thread, _) = start(2, 8);
    let gone = scheduler.submit(request(&[1; 1000], 1000, &[])).unwrap();
    drop(gone);
    let kept = scheduler.submit(request(&[2, 2], 10, &[])).unwrap();
    assert_eq!(drain(kept).1, FinishReason::Stop);
    drop(scheduler);
    thread.join();
}

#[test]
fn test_queue_full_is_reported() {
    // A generator whose start blocks until released keeps the queue occupied.
    struct Gate(std::sync::mpsc::Receiver<()>);
    impl Generator for Gate {
        type Sequence = ();
        fn max_batch(&self) -> usize {
            1
        }
        fn start(&mut self, _: &GenerationRequest) -> Result<((), Token), GeneratorError> {
            let _ = self.0.recv();
            Ok((
                (),
                Token {
                    id: 0,
                    logprobs: None,
                    text: String::new(),
                    finish: Some(FinishReason::Stop),
                },
            ))
        }
        fn step(&mut self, _: &mut [&mut ()]) -> Result<Vec<Token>, GeneratorError> {
            Ok(Vec::new())
        }
        fn release(&mut self, _: ()) {}
    }
    let (open, gate) = std::sync::mpsc::channel();
    let (scheduler, thread) = Scheduler::start(Gate(gate), 1).unwrap();
    let mut first = scheduler.submit(request(&[1], 1, &[])).unwrap();
    // Wait until the engine holds the first request (its `Started` event), so the
    // queue itself is empty again.
    assert!(matches!(
        first.blocking_recv(),
        Some(GenerationEvent::Started { .. })
    ));
    let _queued = scheduler.submit(request(&[1], 1, &[])).unwrap();
    assert_eq!(
        scheduler.submit(request(&[1], 1, &[])).unwrap_err(),
        SubmitErrorAlias::QueueFull { capacity: 1 }
    );
    open.send(()).unwrap();
    open.send(()).unwrap();
    drop(scheduler);
    thread.join();
}

#[test]
fn test_stop_cancels_running_and_queued_requests_and_ends_the_thread() {
    // One slot, held by a sequence that never ends on its own; a second request waits.
    let (scheduler, thread, _) = start(1, 8);
    let mut running = scheduler
        .submit(request(&[7; 100_000], 100_000, &[]))
        .unwrap();
    let queued = scheduler.submit(request(&[8], 5, &[])).unwrap();
    // Wait until the first has generated something.
    let mut seen = String::new();
    while seen.is_empty() {
        match running.blocking_recv().unwrap() {
            GenerationEvent::Text { text, .. } => seen.push_str(&text),
            GenerationEvent::Started { .. } => {}
            GenerationEvent::Finished { reason, .. } => panic!("finished early: {reason:?}"),
        }
    }
    scheduler.stop();
    let (rest, reason, tokens) = drain(running);
    assert_eq!(reason, FinishReason::Cancelled);
    seen.push_str(&rest);
    // Every token it generated was delivered, and counted.
    assert_eq!(seen.len(), "<7>".len() * tokens as usize, "{seen}");
    assert!(tokens < 100_000);
    assert_eq!(drain(queued), (String::new(), FinishReason::Cancelled, 0));
    assert_eq!(
        scheduler.submit(request(&[9], 5, &[])).unwrap_err(),
        SubmitErrorAlias::Stopped
    );
    // The thread ends although a handle still exists.
    thread.join();
    assert_eq!(scheduler.stats().waiting.load(Ordering::SeqCst), 0);
    assert_eq!(scheduler.stats().running.load(Ordering::SeqCst), 0);
}

#[test]
fn test_stop_wakes_an_idle_engine_thread() {
    let (scheduler, thread, _) = start(2, 2);
    let answered = scheduler.submit(request(&[1], 5, &[])).unwrap();
    assert_eq!(drain(answered).1, FinishReason::Stop);
    scheduler.stop();
    thread.join();
}

use super::super::SubmitError as SubmitErrorAlias;
