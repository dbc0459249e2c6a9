//! The engine thread's continuous-batching loop.
//!
//! Each turn: admit queued requests while the batch has room (blocking only when nothing
//! runs), drop sequences whose client has gone, then advance all running sequences by one
//! batched step. Once [`super::Scheduler::stop`] is called, the next turn cancels
//! everything instead (see [`cancel_all`]) and the loop returns. Per-sequence bookkeeping (stop strings, `max_tokens`, end of sequence) is
//! the synchronous [`Running::accept`], unit-tested without a model.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};

use tokio::sync::mpsc::UnboundedSender;

use super::request::{FinishReason, GenerationEvent};
use super::stop::StopMatcher;
use super::{Command, Generator, Job, SchedulerStats, Token};

/// A sequence in the running batch.
pub(crate) struct Running<S> {
    sequence: S,
    events: UnboundedSender<GenerationEvent>,
    stop: StopMatcher,
    generated: u32,
    max_tokens: u32,
}

impl<S> Running<S> {
    fn new(sequence: S, job: Job) -> Self {
        Running {
            sequence,
            stop: StopMatcher::new(job.request.params.stop().to_vec()),
            generated: 0,
            max_tokens: job.request.params.max_tokens(),
            events: job.events,
        }
    }

    /// Takes one generated token; returns the finish reason when the sequence is done.
    pub(crate) fn accept(&mut self, token: Token) -> Option<FinishReason> {
        let Token { text, finish, .. } = token;
        self.generated = self.generated.saturating_add(1);
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

    fn emit(&self, text: String) {
        if !text.is_empty() {
            // A closed channel means the client left; the loop notices and drops the sequence.
            let _ = self.events.send(GenerationEvent::Text {
                text,
                tokens: self.generated,
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
    loop {
        if stopping.load(Ordering::SeqCst) {
            cancel_all(&mut generator, &mut batch, jobs, stats);
            return;
        }
        // This turn's work for `iteration_tokens`: prompt tokens prefilled, then decode rows.
        let mut prefilled = 0u64;
        // Admit.
        while queue_open && batch.len() < max_batch && !stopping.load(Ordering::SeqCst) {
            let next = if batch.is_empty() {
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
            if job.events.is_closed() {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            stats
                .max_tokens
                .observe_tokens(u64::from(job.request.params.max_tokens()));
            let _ = job.events.send(GenerationEvent::Started {
                queued_for: job.request.enqueued_at.elapsed(),
            });
            match generator.start(&job.request) {
                Ok((sequence, first)) => {
                    stats.kv_slots_held.fetch_add(1, Ordering::Relaxed);
                    prefilled += job.request.prompt_tokens.len() as u64;
                    let mut running = Running::new(sequence, job);
                    let outcome = running.accept(first);
                    running.settle(outcome, &mut generator, stats, &mut batch);
                }
                Err(err) => {
                    tracing::error!(error = %err, "prefill failed");
                    let _ = job.events.send(GenerationEvent::Finished {
                        reason: FinishReason::Error,
                        completion_tokens: 0,
                    });
                }
            }
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
            if queue_open || stopping.load(Ordering::SeqCst) {
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

/// Shutdown: finishes every running sequence `Cancelled` with what it generated so far,
/// and every queued request `Cancelled` with nothing, so each is sworn and answered.
fn cancel_all<G: Generator>(
    generator: &mut G,
    batch: &mut Vec<Running<G::Sequence>>,
    jobs: &Receiver<Command>,
    stats: &SchedulerStats,
) {
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
            let _ = job.events.send(GenerationEvent::Finished {
                reason: FinishReason::Cancelled,
                completion_tokens: 0,
            });
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
                text: format!("<{id}>"),
                finish: None,
            },
            None => Token {
                id: 0,
                text: String::new(),
                finish: Some(FinishReason::Stop),
            },
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
        fn step(&mut self, sequences: &mut [&mut Seq]) -> Result<Vec<Token>, GeneratorError> {
            self.steps.lock().unwrap().push(sequences.len());
            Ok(sequences.iter_mut().map(|s| token(s)).collect())
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
            },
            capacity,
        )
        .unwrap();
        (scheduler, thread, steps)
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
