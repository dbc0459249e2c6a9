//! The engine thread's continuous-batching loop.
//!
//! Each turn: admit queued requests while the batch has room (blocking only when nothing
//! runs), prefill the next chunk of a long prompt (when the generator prefills in chunks),
//! drop sequences whose client has gone, then advance all running sequences by one
//! batched step. Once [`super::Scheduler::stop`] is called, the next turn cancels
//! everything instead (see [`cancel_all`]) and the loop returns. Per-sequence bookkeeping (stop strings, `max_tokens`, end of sequence) is
//! the synchronous [`Running::accept`], unit-tested without a model.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};

use tokio::sync::mpsc::UnboundedSender;

use super::request::{FinishReason, GenerationEvent, GenerationRequest, TokenLogprob};
use super::stop::StopMatcher;
use super::{Command, Generator, Job, SchedulerStats, Token};

/// A sequence in the running batch.
pub(crate) struct Running<S> {
    sequence: S,
    events: UnboundedSender<GenerationEvent>,
    stop: StopMatcher,
    generated: u32,
    max_tokens: u32,
    /// Log probabilities of tokens whose text is not out yet.
    logprobs: Vec<TokenLogprob>,
}

impl<S> Running<S> {
    fn new(
        sequence: S,
        request: &GenerationRequest,
        events: UnboundedSender<GenerationEvent>,
    ) -> Self {
        Running {
            sequence,
            stop: StopMatcher::new(request.params.stop().to_vec()),
            generated: 0,
            max_tokens: request.params.max_tokens(),
            logprobs: Vec::new(),
            events,
        }
    }

    /// Takes one generated token; returns the finish reason when the sequence is done.
    pub(crate) fn accept(&mut self, token: Token) -> Option<FinishReason> {
        let Token {
            text,
            finish,
            logprobs,
            ..
        } = token;
        self.generated = self.generated.saturating_add(1);
        self.logprobs.extend(logprobs);
        let scan = self.stop.push(&text);
        self.emit(scan.emit);
        if scan.stopped {
            return Some(FinishReason::Stop);
        }
        let length = (self.generated >= self.max_tokens).then_some(FinishReason::Length);
        let reason = finish.or(length)?;
        let rest = self.stop.flush();
        self.emit(rest);
        Some(reason)
    }

    /// Ends the sequence with `outcome` (releasing its slot), or keeps it in `batch`.
    fn settle<G: Generator<Sequence = S>>(
        self,
        outcome: Option<FinishReason>,
        generator: &mut G,
        stats: &SchedulerStats,
        batch: &mut Vec<Running<S>>,
    ) {
        match outcome {
            Some(reason) => self.end(reason, generator, stats),
            None => batch.push(self),
        }
    }

    /// Releases the slot, then tells the client: once it knows, the slot is free (and
    /// `/metrics` says so).
    fn end<G: Generator<Sequence = S>>(
        self,
        reason: FinishReason,
        generator: &mut G,
        stats: &SchedulerStats,
    ) {
        let Running {
            sequence,
            events,
            generated,
            ..
        } = self;
        release(generator, stats, sequence);
        let _ = events.send(GenerationEvent::Finished {
            reason,
            completion_tokens: generated,
        });
    }

    fn emit(&mut self, text: String) {
        if !text.is_empty() {
            // A closed channel means the client left; the loop notices and drops the sequence.
            let _ = self.events.send(GenerationEvent::Text {
                text,
                tokens: self.generated,
                logprobs: std::mem::take(&mut self.logprobs),
            });
        }
    }
}

/// Frees a sequence's KV slot and counts it free.
fn release<G: Generator>(generator: &mut G, stats: &SchedulerStats, sequence: G::Sequence) {
    generator.release(sequence);
    stats.kv_slots_held.fetch_sub(1, Ordering::Relaxed);
}

/// Runs until every [`super::Scheduler`] handle is dropped and the batch has drained, or
/// until [`super::Scheduler::stop`].
pub(crate) fn run<G: Generator>(
    mut generator: G,
    jobs: &Receiver<Command>,
    stats: &SchedulerStats,
    stopping: &AtomicBool,
) {
    let max_batch = generator.max_batch().max(1);
    let mut batch: Vec<Running<G::Sequence>> = Vec::with_capacity(max_batch);
    let mut queue_open = true;
    // A request of several choices that waits, first in line, for a slot per choice.
    let mut held: Option<Job> = None;
    // Long prompts prefilled a chunk per turn, in order; only the first has begun.
    let chunk = generator.prefill_chunk().filter(|&c| c > 0);
    let mut prefilling: VecDeque<Prefilling> = VecDeque::new();
    let mut next_key = 0u64;
    loop {
        if stopping.load(Ordering::SeqCst) {
            cancel_all(
                &mut generator,
                &mut batch,
                held.take(),
                &mut prefilling,
                jobs,
                stats,
            );
            return;
        }
        // This turn's work for `iteration_tokens`: prompt tokens prefilled, then decode rows.
        let mut prefilled = 0u64;
        // Admit: collect this turn's jobs, a slot per choice, then prefill them together.
        let mut admitted: Vec<Job> = Vec::new();
        let mut reserved = batch.len() + prefilling.len();
        while reserved < max_batch && !stopping.load(Ordering::SeqCst) {
            let job = match held.take() {
                Some(job) => job,
                None if !queue_open => break,
                None => {
                    let next = if reserved == 0 {
                        jobs.recv().map_err(|_| TryRecvError::Disconnected)
                    } else {
                        jobs.try_recv()
                    };
                    let command = match next {
                        Ok(command) => command,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            queue_open = false;
                            break;
                        }
                    };
                    let Command::Run(job) = command else {
                        continue;
                    };
                    stats.waiting.fetch_sub(1, Ordering::SeqCst);
                    job
                }
            };
            if job.events.iter().all(UnboundedSender::is_closed) {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let choices = job.events.len();
            if choices > max_batch {
                tracing::error!(choices, max_batch, "more choices than KV slots");
                job.finish_all(FinishReason::Error);
                continue;
            }
            if reserved + choices > max_batch {
                held = Some(job);
                break;
            }
            reserved += choices;
            stats
                .max_tokens
                .observe_tokens(u64::from(job.request.params.max_tokens()));
            for events in &job.events {
                let _ = events.send(GenerationEvent::Started {
                    queued_for: job.request.enqueued_at.elapsed(),
                });
            }
            let long = chunk.is_some_and(|c| job.request.prompt_tokens.len() > c);
            if long && choices == 1 {
                next_key += 1;
                prefilling.push_back(Prefilling {
                    key: next_key,
                    job,
                    done: 0,
                });
            } else {
                admitted.push(job);
            }
        }
        if !admitted.is_empty() {
            let requests: Vec<&GenerationRequest> = admitted.iter().map(|j| &j.request).collect();
            let results = generator.start_batch(&requests);
            if results.len() != admitted.len() {
                tracing::error!(got = results.len(), want = admitted.len(), "start_batch");
            }
            let mut results = results.into_iter();
            for job in admitted {
                let choices = job.events.len();
                match results.next() {
                    Some(Ok(started)) if started.len() == choices => {
                        prefilled += job.request.prompt_tokens.len() as u64;
                        for ((sequence, first), events) in started.into_iter().zip(job.events) {
                            stats.kv_slots_held.fetch_add(1, Ordering::Relaxed);
                            let mut running = Running::new(sequence, &job.request, events);
                            let outcome = running.accept(first);
                            running.settle(outcome, &mut generator, stats, &mut batch);
                        }
                    }
                    Some(Ok(started)) => {
                        tracing::error!(got = started.len(), choices, "wrong number of choices");
                        for (sequence, _) in started {
                            generator.release(sequence);
                        }
                        job.finish_all(FinishReason::Error);
                    }
                    Some(Err(err)) => {
                        tracing::error!(error = %err, "prefill failed");
                        job.finish_all(FinishReason::Error);
                    }
                    None => job.finish_all(FinishReason::Error),
                }
            }
        }
        if let Some(chunk) = chunk {
            prefilled += prefill_next(&mut generator, &mut prefilling, chunk, stats, &mut batch);
        }
        // Drop sequences whose client has gone.
        let (gone, kept): (Vec<_>, Vec<_>) = batch.drain(..).partition(|r| r.events.is_closed());
        batch = kept;
        stats
            .dropped
            .fetch_add(gone.len() as u64, Ordering::Relaxed);
        for running in gone {
            release(&mut generator, stats, running.sequence);
        }
        stats.running.store(batch.len(), Ordering::SeqCst);
        if batch.is_empty() {
            if prefilled > 0 {
                stats.iteration_tokens.observe_tokens(prefilled);
            }
            let waiting = held.is_some() || !prefilling.is_empty();
            if queue_open || waiting || stopping.load(Ordering::SeqCst) {
                continue;
            }
            return;
        }
        // One batched step.
        let mut sequences: Vec<&mut G::Sequence> =
            batch.iter_mut().map(|r| &mut r.sequence).collect();
        let stepped = generator.step(&mut sequences);
        // Counted before any sequence of the step is answered.
        stats
            .iteration_tokens
            .observe_tokens(prefilled + batch.len() as u64);
        match stepped {
            Ok(tokens) if tokens.len() == batch.len() => {
                let stepped = std::mem::replace(&mut batch, Vec::with_capacity(max_batch));
                for (mut running, token) in stepped.into_iter().zip(tokens) {
                    let outcome = running.accept(token);
                    running.settle(outcome, &mut generator, stats, &mut batch);
                }
            }
            Ok(tokens) => {
                tracing::error!(
                    got = tokens.len(),
                    want = batch.len(),
                    "engine returned the wrong number of tokens"
                );
                fail_all(&mut generator, stats, &mut batch);
            }
            Err(err) => {
                tracing::error!(error = %err, "decode step failed");
                fail_all(&mut generator, stats, &mut batch);
            }
        }
        stats.running.store(batch.len(), Ordering::SeqCst);
    }
}

/// A long prompt admitted to be prefilled a chunk per turn.
struct Prefilling {
    /// The generator's name for its partial prefill.
    key: u64,
    job: Job,
    /// Prompt positions prefilled so far.
    done: usize,
}

/// Prefills the next `chunk` positions of the first long prompt; once it is in, its
/// sequence joins `batch`. Returns the positions prefilled.
fn prefill_next<G: Generator>(
    generator: &mut G,
    prefilling: &mut VecDeque<Prefilling>,
    chunk: usize,
    stats: &SchedulerStats,
    batch: &mut Vec<Running<G::Sequence>>,
) -> u64 {
    while let Some(front) = prefilling.front() {
        if front.job.events.iter().all(UnboundedSender::is_closed) {
            if front.done > 0 {
                generator.abandon_prefill(front.key);
                stats.kv_slots_held.fetch_sub(1, Ordering::Relaxed);
            }
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            prefilling.pop_front();
            continue;
        }
        let step = chunk.min(front.job.request.prompt_tokens.len() - front.done);
        // A partial prefill holds its slot from its first chunk on.
        let began = front.done > 0;
        return match generator.prefill_some(front.key, &front.job.request, chunk) {
            Ok(None) => {
                if !began {
                    stats.kv_slots_held.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(front) = prefilling.front_mut() {
                    front.done += step;
                }
                step as u64
            }
            Ok(Some((sequence, first))) => {
                let Some(long) = prefilling.pop_front() else {
                    return 0;
                };
                if !began {
                    stats.kv_slots_held.fetch_add(1, Ordering::Relaxed);
                }
                let Some(events) = long.job.events.into_iter().next() else {
                    release(generator, stats, sequence);
                    return 0;
                };
                let mut running = Running::new(sequence, &long.job.request, events);
                let outcome = running.accept(first);
                running.settle(outcome, generator, stats, batch);
                step as u64
            }
            Err(err) => {
                tracing::error!(error = %err, "chunked prefill failed");
                // The generator freed the slot.
                if began {
                    stats.kv_slots_held.fetch_sub(1, Ordering::Relaxed);
                }
                if let Some(long) = prefilling.pop_front() {
                    long.job.finish_all(FinishReason::Error);
                }
                0
            }
        };
    }
    0
}

/// Shutdown: finishes every running sequence `Cancelled` with what it generated so far,
/// and every queued request `Cancelled` with nothing, so each is sworn and answered.
fn cancel_all<G: Generator>(
    generator: &mut G,
    batch: &mut Vec<Running<G::Sequence>>,
    held: Option<Job>,
    prefilling: &mut VecDeque<Prefilling>,
    jobs: &Receiver<Command>,
    stats: &SchedulerStats,
) {
    if let Some(job) = held {
        job.finish_all(FinishReason::Cancelled);
    }
    for long in prefilling.drain(..) {
        if long.done > 0 {
            generator.abandon_prefill(long.key);
            stats.kv_slots_held.fetch_sub(1, Ordering::Relaxed);
        }
        long.job.finish_all(FinishReason::Cancelled);
    }
    for mut running in batch.drain(..) {
        // Text held back by a possible stop string was generated: deliver it.
        let rest = running.stop.flush();
        running.emit(rest);
        running.end(FinishReason::Cancelled, generator, stats);
    }
    stats.running.store(0, Ordering::SeqCst);
    while let Ok(command) = jobs.try_recv() {
        if let Command::Run(job) = command {
            stats.waiting.fetch_sub(1, Ordering::SeqCst);
            job.finish_all(FinishReason::Cancelled);
        }
    }
}

fn fail_all<G: Generator>(
    generator: &mut G,
    stats: &SchedulerStats,
    batch: &mut Vec<Running<G::Sequence>>,
) {
    for running in batch.drain(..) {
        running.end(FinishReason::Error, generator, stats);
    }
}

#[cfg(test)]
mod tests {
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
        fn start_batch(
            &mut self,
            requests: &[&GenerationRequest],
        ) -> Vec<super::super::Started<Seq>> {
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
}
